#!/bin/bash
# The Debian package in a real boot (run as root, by CI): a debootstrap
# bookworm root with systemd, booted with systemd-nspawn. The container has
# its own IPC namespace, so every kernel.shm* value below is the container's,
# never this host's.
#   1. builds the .deb with dpkg-buildpackage from a COPY of this tree (or
#      takes DEB=path), and an upgrade of it whose shmprov-drift.service
#      differs by a comment;
#   2. installs it into a root with systemd, systemd-sysv, dbus and
#      cloud-init (cached per day), and boots that root twice: the boot unit
#      sets the limits before sysinit.target, an ordinary service sees them,
#      the drift service repairs a hand-made change, the timer is waiting,
#      and the second boot re-applies without touching the drop-in;
#   3. on the running container: remove stops the timer, purge deletes the
#      drop-in shmprov wrote (and keeps the kernel's limits), a reinstall's
#      units load and start, an upgrade's changed unit is loaded at once,
#      and an operator-edited drop-in survives purge with a message;
#   4. cloud-init with a NoCloud seed made from packaging/cloud-init/
#      user-data.yaml (a local file: apt repository holding the .deb): an
#      invalid profile makes "cloud-init status" say error; a valid one says
#      done, enables the timer, and the next boot sets the limits.
# Nothing is installed or started on this host but the test tools: the
# whole script runs in a private mount + IPC namespace, each container root
# is an overlay over the cached root, and the containers have no network
# but loopback (the cloud-init case installs from the local repository).
#
# Usage: tests/packaging/boot.sh
# Env:   DEB=path          test this .deb instead of building one
#        SHMPROV_CI_CACHE  where the bootable root is cached between runs on
#                          this machine (default /var/cache/shmprov-ci; one
#                          tar per day, older ones are deleted)
#        KEEP=1            keep the work directory for inspection
# Ends with "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "boot.sh: must run as root (debootstrap, systemd-nspawn, namespaces)" >&2
    exit 2
fi
# Everything below runs in its own mount and IPC namespace. File descriptor
# 9 keeps the caller's IPC namespace, to check at the end that the host's
# limits never changed.
if [ -z "${SHMPROV_BOOT_NS:-}" ]; then
    export SHMPROV_BOOT_NS=1
    exec 9</proc/self/ns/ipc
    exec unshare --mount --propagation private --ipc -- bash "$0" "$@"
fi

SRC=$(cd "$(dirname "$0")/../.." && pwd)
MIRROR=http://deb.debian.org/debian
SUITE=bookworm
CACHE_DIR=${SHMPROV_CI_CACHE:-/var/cache/shmprov-ci}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/shmprov-boot.XXXXXX")
LOGS=$WORK/logs
mkdir -p "$LOGS"
. "$SRC/tests/packaging/steps.sh"
host_ipc() { nsenter --ipc=/proc/self/fd/9 -- "$@"; }
host_shm_before=$(host_ipc cat /proc/sys/kernel/shmmax /proc/sys/kernel/shmall /proc/sys/kernel/shmmni | tr '\n' ' ')

nspawn_pid="" cpid="" made_run_dirs=()

cleanup() {
    # Containers first (by the pid this script started), then the mounts
    # below $WORK, deepest first; rm never crosses into another file system.
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$nspawn_pid" 2>/dev/null
        wait "$nspawn_pid" 2>/dev/null
    fi
    for m in $(awk -v r="$WORK/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    if mountpoint -q /run/systemd/nspawn; then umount -l /run/systemd/nspawn; fi
    for ((i = ${#made_run_dirs[@]} - 1; i >= 0; i--)); do rmdir "${made_run_dirs[i]}" 2>/dev/null; done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "work directory kept: $WORK"
    else
        rm -rf --one-file-system "$WORK"
    fi
}
trap cleanup EXIT


# ---------------------------------------------------------------------------
step "tools (systemd-nspawn, debootstrap, dpkg-dev; debhelper to build)"
apt=(apt-get -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
need=(systemd-container debootstrap debian-archive-keyring dpkg-dev util-linux procps python3 python3-yaml)
[ -n "${DEB:-}" ] || need+=(build-essential debhelper fakeroot)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    check "apt-get update" "${apt[@]}" update
    check "apt-get install ${missing[*]}" "${apt[@]}" install "${missing[@]}"
fi
if [ -z "${DEB:-}" ]; then
    copy_source "$WORK/src/shmprov"
    if ! (cd "$WORK/src/shmprov" && dpkg-checkbuilddeps) >/dev/null 2>&1; then
        check "install build dependencies (apt-get build-dep from debian/control)" \
            bash -c "cd '$WORK/src/shmprov' && ${apt[*]} build-dep ./"
    fi
fi
check "systemd-nspawn is there: $(systemd-nspawn --version 2>/dev/null | head -1)" \
    command -v systemd-nspawn
require "the tools"

# ---------------------------------------------------------------------------
if [ -z "${DEB:-}" ]; then
    step "dpkg-buildpackage -b -us -uc"
    check "dpkg-buildpackage -b -us -uc" \
        bash -c "cd '$WORK/src/shmprov' && dpkg-buildpackage -b -us -uc"
    version=$(cd "$WORK/src/shmprov" && dpkg-parsechangelog -S Version)
    DEB=$WORK/src/shmprov_${version}_$(dpkg --print-architecture).deb
else
    step "the given package"
    DEB=$(readlink -f -- "$DEB")
fi
check "the .deb exists: $DEB" test -s "$DEB"
require "the package"
version=$(dpkg-deb -f "$DEB" Version)
arch=$(dpkg-deb -f "$DEB" Architecture)

# The upgrade: the same package as $version+ciboot1, its
# shmprov-drift.service one comment line longer, so the unit file on disk
# is newer than the one systemd loaded.
up_version=$version+ciboot1
dpkg-deb -R "$DEB" "$WORK/upgrade"
sed -i "s/^Version: .*/Version: $up_version/" "$WORK/upgrade/DEBIAN/control"
echo "# (test upgrade $up_version: this unit file changed)" \
    >>"$WORK/upgrade/lib/systemd/system/shmprov-drift.service"
(cd "$WORK/upgrade" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' |
    sort -z | xargs -0 md5sum >DEBIAN/md5sums)
up_deb=$WORK/shmprov_${up_version}_$arch.deb
check "repack the upgrade $up_version (a comment added to shmprov-drift.service)" \
    dpkg-deb --root-owner-group -b "$WORK/upgrade" "$up_deb"
require "the upgrade package"

# ---------------------------------------------------------------------------
step "bootable $SUITE root: systemd, dbus, cloud-init (cached per day)"
# systemd-nspawn keeps a little state under /run/systemd/nspawn: a tmpfs in
# this namespace, so none of it stays on the host.
for d in /run/systemd /run/systemd/nspawn; do
    [ -d "$d" ] || { mkdir "$d" && made_run_dirs+=("$d"); }
done
mount -t tmpfs -o mode=755 tmpfs /run/systemd/nspawn
BASE=$WORK/base
mkdir -p "$CACHE_DIR" "$BASE"
boot_packages=(systemd systemd-sysv dbus cloud-init ca-certificates)
tarball=$CACHE_DIR/$SUITE-boot-$(dpkg --print-architecture)-$(date -u +%Y%m%d).tar
minbase=$CACHE_DIR/$SUITE-minbase-$(dpkg --print-architecture)-$(date -u +%Y%m%d).tar
# A command in a root, no boot: systemd-nspawn gives it /proc, /dev and its
# own IPC namespace, so nothing there can touch this host's limits.
in_root() {
    local root=$1
    shift
    systemd-nspawn -q -D "$root" --register=no --keep-unit --link-journal=no --pipe \
        -E DEBIAN_FRONTEND=noninteractive -E LC_ALL=C.UTF-8 -- "$@" </dev/null
}
if [ -s "$tarball" ] && tar -C "$BASE" --numeric-owner -xpf "$tarball" 2>"$LOGS/untar.log"; then
    pass "root from today's cache $tarball"
else
    rm -rf --one-file-system "$BASE" && mkdir -p "$BASE"
    # tests/packaging/deb.sh caches the same minimal root: start from it.
    if [ -s "$minbase" ] && tar -C "$BASE" --numeric-owner -xpf "$minbase" 2>"$LOGS/untar.log"; then
        pass "minimal root from today's cache $minbase"
    else
        rm -rf --one-file-system "$BASE" && mkdir -p "$BASE"
        check "debootstrap --variant=minbase $SUITE" \
            debootstrap --variant=minbase "$SUITE" "$BASE" "$MIRROR"
    fi
    # No service may start while the packages are installed.
    printf '#!/bin/sh\nexit 101\n' >"$BASE/usr/sbin/policy-rc.d"
    chmod 755 "$BASE/usr/sbin/policy-rc.d"
    check "apt-get update (root)" in_root "$BASE" apt-get update -qq
    check "apt-get install ${boot_packages[*]} (root)" \
        in_root "$BASE" apt-get install -y -qq --no-install-recommends "${boot_packages[@]}"
    check "apt-get satisfy the package's Depends (root)" \
        in_root "$BASE" apt-get satisfy -y -qq --no-install-recommends "$(dpkg-deb -f "$DEB" Depends)"
    rm -f "$BASE/usr/sbin/policy-rc.d"
    in_root "$BASE" apt-get clean
    if [ "$failed" -eq "$step_failed" ]; then
        # The cache holds this root only; older days are dropped.
        rm -f "$CACHE_DIR/$SUITE-boot-$(dpkg --print-architecture)-"*.tar
        if tar -C "$BASE" --numeric-owner --one-file-system -cpf "$tarball.tmp" .; then
            mv "$tarball.tmp" "$tarball"
        else
            rm -f "$tarball.tmp"
        fi
    fi
fi
require "the bootable root"
# The package's run-time dependencies, in the root every container starts
# from: from the mirror only when the cached root lacks one.
depends=$(dpkg-deb -f "$DEB" Depends)
if in_root "$BASE" apt-get satisfy -s "$depends" 2>&1 | grep -q '^Inst '; then
    check "apt-get update (root)" in_root "$BASE" apt-get update -qq
    check "apt-get satisfy the package's Depends (root)" \
        in_root "$BASE" apt-get satisfy -y -qq --no-install-recommends "$depends"
fi
# Timers that would run apt-get on their own in a container: masked, so that
# nothing but the test holds the dpkg lock.
for t in apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$BASE/etc/systemd/system/$t"
done
: >"$BASE/etc/machine-id"
check "the root boots systemd $(in_root "$BASE" dpkg-query -W -f '${Version}' systemd 2>/dev/null)" \
    test -x "$BASE/lib/systemd/systemd"
require "the root's dependencies"

# ---------------------------------------------------------------------------
# Containers.
#
# new_root NAME: a fresh overlay over $BASE at $WORK/NAME/root.
new_root() {
    local d=$WORK/$1
    mkdir -p "$d/upper" "$d/work" "$d/root"
    mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$d/upper,workdir=$d/work" "$d/root"
}
# boot ROOT NAME: boot it in the background (output in $LOGS/NAME.console)
# and wait until systemd says the boot is over (at most 150 s); sets
# $nspawn_pid and $cpid (the container's PID 1, as this namespace sees it).
boot() {
    local root=$1 name=$2 deadline p c state
    : >"$LOGS/$name.console"
    timeout --kill-after=10s 900s systemd-nspawn -D "$root" -M "$name" -b --keep-unit --register=no \
        --link-journal=no --private-network --console=read-only \
        </dev/null >>"$LOGS/$name.console" 2>&1 &
    nspawn_pid=$! cpid=""
    deadline=$((SECONDS + 150))
    while [ -z "$cpid" ] && [ $SECONDS -lt $deadline ] && kill -0 "$nspawn_pid" 2>/dev/null; do
        for p in $(pgrep -P "$nspawn_pid"); do
            for c in $(pgrep -P "$p"); do
                if [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] &&
                    awk '/^NSpid:/ { exit !(NF >= 3 && $NF == 1) }' "/proc/$c/status" 2>/dev/null; then
                    cpid=$c
                fi
            done
        done
        [ -n "$cpid" ] || sleep 0.2
    done
    state=""
    while [ -n "$cpid" ] && [ $SECONDS -lt $deadline ]; do
        state=$(timeout 30 nsenter -t "$cpid" -a -r -w /usr/bin/systemctl is-system-running --wait 2>/dev/null)
        case $state in running | degraded) break ;; esac
        sleep 0.5
    done
    echo "$name: container PID 1 is $cpid here; is-system-running: ${state:-?}"
    [ "$state" = running ]
}
# incont COMMAND...: run in the booted container (its namespaces and root).
incont() {
    nsenter -t "$cpid" -a -r -w /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@" </dev/null
}
# prop UNIT PROPERTY: one property, as systemctl show gives it.
prop() { incont systemctl show -P "$2" "$1" 2>/dev/null; }
# poweroff NAME: shut the container down and wait (at most 60 s) for nspawn.
poweroff() {
    local name=$1 rc deadline=$((SECONDS + 60))
    incont systemctl poweroff --no-block >/dev/null 2>&1
    while kill -0 "$nspawn_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid"
        sleep 5
        kill -KILL "$nspawn_pid" 2>/dev/null
    fi
    wait "$nspawn_pid"
    rc=$?
    nspawn_pid="" cpid=""
    expect "$name: powered off cleanly (systemd-nspawn exit status)" "$rc" 0
}
# Diagnostics for a failed boot: the console and the failed units.
show_boot_failure() {
    echo "    | --- console ($1), last lines:"
    tail -30 "$LOGS/$1.console" | sed 's/^/    | /'
    if [ -n "$cpid" ]; then
        echo "    | --- failed units:"
        incont systemctl --failed --no-legend 2>&1 | sed 's/^/    | /'
    fi
}
# Monotonic microseconds of a unit's state change.
mono() { prop "$1" "$2"; }
# The values in the drop-in, one "key value" a line.
dropin_values() {
    sed -n 's/^kernel\.\(shm[a-z]*\) *= *\([0-9]*\) *$/\1 \2/p' "$1" | sort
}
# The same keys as the running kernel of the container has them.
running_values() {
    local k
    for k in $(dropin_values "$1" | cut -d' ' -f1); do
        echo "$k $(incont cat "/proc/sys/kernel/$k")"
    done
}
# check_boot_unit NAME: shmprov.service ran in this boot, succeeded, before
# sysinit.target, and the container's kernel holds the drop-in's values.
check_boot_unit() {
    local name=$1 root=$2 dropin
    expect "$name: shmprov.service succeeded (Result, ExecMainStatus, ActiveState)" \
        "$(prop shmprov.service Result) $(prop shmprov.service ExecMainStatus) $(prop shmprov.service ActiveState)" \
        "success 0 active"
    local unit_done sysinit
    unit_done=$(mono shmprov.service ActiveEnterTimestampMonotonic)
    sysinit=$(mono sysinit.target ActiveEnterTimestampMonotonic)
    check "$name: shmprov.service was active (${unit_done:-?} us) before sysinit.target (${sysinit:-?} us)" \
        test "${unit_done:-0}" -gt 0 -a "${unit_done:-0}" -le "${sysinit:-0}"
    dropin=$root/etc/sysctl.d/60-shmprov.conf
    check "$name: the drop-in $dropin exists and sets kernel.shmmax" grep -q '^kernel\.shmmax = [0-9]' "$dropin"
    dropin_values "$dropin" >"$LOGS/$name.dropin-values"
    running_values "$dropin" >"$LOGS/$name.running-values"
    expect "$name: the container's /proc/sys/kernel/shm* hold the drop-in's values" \
        "$(tr '\n' ' ' <"$LOGS/$name.running-values")" "$(tr '\n' ' ' <"$LOGS/$name.dropin-values")"
    check "$name: kernel.shmmax is not the kernel's default any more" \
        test "$(incont cat /proc/sys/kernel/shmmax)" != 18446744073692774399
}

# ---------------------------------------------------------------------------
step "install the package into a root (dpkg -i, no systemd running)"
new_root life
LIFE=$WORK/life/root
# cloud-init has no seed here: it stays out of this container's boots.
touch "$LIFE/etc/cloud/cloud-init.disabled"
# An ordinary service (default dependencies) that reads the limits at boot.
cat >"$LIFE/etc/systemd/system/shmprov-ci-reader.service" <<'EOF'
[Unit]
Description=An ordinary service reading the shared memory limits
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'cat /proc/sys/kernel/shmmax /proc/sys/kernel/shmall >/run/shmprov-ci-reader'
[Install]
WantedBy=multi-user.target
EOF
ln -s /etc/systemd/system/shmprov-ci-reader.service \
    "$LIFE/etc/systemd/system/multi-user.target.wants/shmprov-ci-reader.service"
mkdir -p "$LIFE/var/tmp/shmprov-ci"
cp "$DEB" "$up_deb" "$LIFE/var/tmp/shmprov-ci/"
deb_in=/var/tmp/shmprov-ci/$(basename "$DEB")
up_in=/var/tmp/shmprov-ci/$(basename "$up_deb")
check "dpkg -i $(basename "$DEB")" in_root "$LIFE" dpkg -i "$deb_in"
check "shmprov.service and shmprov-drift.timer are enabled" \
    bash -c "cd '$LIFE' && find etc/systemd/system -path '*.wants/shmprov.service' | grep -q . &&
             find etc/systemd/system -path '*.wants/shmprov-drift.timer' | grep -q ."
require "the installation"

# ---------------------------------------------------------------------------
step "first boot: limits set before sysinit.target"
if boot "$LIFE" life1; then pass "life1: booted (systemd-nspawn -b --keep-unit --register=no)"; else
    fail "life1: the container did not finish booting"
    show_boot_failure life1
fi
require "the first boot"
check_boot_unit life1 "$LIFE"
expect "life1: an ordinary service started after boot read the new kernel.shmmax" \
    "$(incont head -1 /run/shmprov-ci-reader 2>&1)" "$(incont cat /proc/sys/kernel/shmmax)"
reader_start=$(mono shmprov-ci-reader.service ExecMainStartTimestampMonotonic)
check "life1: ... and it started (${reader_start:-?} us) after shmprov.service was done" \
    test "${reader_start:-0}" -gt "$(mono shmprov.service ActiveEnterTimestampMonotonic)"
check "life1: ... as every ordinary service does: After=sysinit.target" \
    bash -c "[[ ' $(prop shmprov-ci-reader.service After) ' == *' sysinit.target '* ]]"
expect "life1: a service started now (systemd-run) reads it too" \
    "$(incont systemd-run --wait --pipe -q cat /proc/sys/kernel/shmmax 2>&1)" "$(incont cat /proc/sys/kernel/shmmax)"
incont journalctl -b -o cat -u shmprov.service >"$LOGS/life1.shmprov.journal" 2>&1
sed 's/^/    journal: /' "$LOGS/life1.shmprov.journal" | head -12
stat_before=$(stat -c '%i %Y %s' "$LIFE/etc/sysctl.d/60-shmprov.conf")
sum_before=$(sha256sum <"$LIFE/etc/sysctl.d/60-shmprov.conf")

# ---------------------------------------------------------------------------
step "drift: the timer waits, the drift service repairs a hand-made change"
expect "life1: shmprov-drift.timer is active and waiting" \
    "$(prop shmprov-drift.timer ActiveState) $(prop shmprov-drift.timer SubState)" "active waiting"
next=$(incont systemctl list-timers --all --no-legend shmprov-drift.timer 2>&1 | head -1)
echo "    list-timers: $next"
check "life1: shmprov-drift.timer has a next elapse" \
    bash -c "n=\$1; [ -n \"\$n\" ] && [[ \$n != n/a* ]] && [[ \$n != -* ]]" _ "$next"
want_shmmax=$(incont cat /proc/sys/kernel/shmmax)
# Through this namespace's /proc, which is writable: the container's own
# /proc/sys is read-only to a shell (see the comparison further down).
nsenter -t "$cpid" --ipc -- sh -c 'echo 1 >/proc/sys/kernel/shmmax'
expect "life1: hand-made change: kernel.shmmax is 1 in the container" \
    "$(incont cat /proc/sys/kernel/shmmax)" 1
check "life1: systemctl start shmprov-drift.service" incont systemctl start shmprov-drift.service
expect "life1: the drift service succeeded" \
    "$(prop shmprov-drift.service Result) $(prop shmprov-drift.service ExecMainStatus)" "success 0"
expect "life1: the drift service put kernel.shmmax back" "$(incont cat /proc/sys/kernel/shmmax)" "$want_shmmax"

# The same binary, from a shell and from a unit. Recorded, not a check:
# what README says about containers.
incont mount | grep -E ' on /proc/sys | on /proc ' | sed 's/^/    shell sees: /'
incont shmprov apply --no-report >"$LOGS/shell-apply.txt" 2>&1
echo "    a shell's 'shmprov apply --no-report': exit $?, $(grep -m1 -o 'runtime not applicable here[^.]*' "$LOGS/shell-apply.txt" || head -1 "$LOGS/shell-apply.txt")"
check "life1: a shell's shmprov apply finds /proc/sys read-only (runtime not applicable here)" \
    grep -q 'runtime not applicable here' "$LOGS/shell-apply.txt"
check "life1: a unit with ProtectProc=invisible gets its own, writable /proc/sys" \
    incont systemd-run --wait --pipe -q -p ProtectProc=invisible \
    sh -c 'grep -q " /proc proc rw.*hidepid=invisible" /proc/self/mounts && test -w /proc/sys/kernel/shmmax'
poweroff life1

# ---------------------------------------------------------------------------
step "second boot: re-applied, the drop-in untouched, no duplicate"
if boot "$LIFE" life2; then pass "life2: booted again"; else
    fail "life2: the container did not finish booting"
    show_boot_failure life2
fi
require "the second boot"
check_boot_unit life2 "$LIFE"
expect "life2: the drop-in is the same file, unchanged (inode, mtime, size, sha256)" \
    "$(stat -c '%i %Y %s' "$LIFE/etc/sysctl.d/60-shmprov.conf") $(sha256sum <"$LIFE/etc/sysctl.d/60-shmprov.conf")" \
    "$stat_before $sum_before"
expect "life2: exactly one file in /etc/sysctl.d is shmprov's" \
    "$(grep -l 'Managed by shmprov' "$LIFE"/etc/sysctl.d/* 2>/dev/null)" "$LIFE/etc/sysctl.d/60-shmprov.conf"
expect "life2: each key once in it" \
    "$(grep -c '^kernel\.shmmax' "$LIFE/etc/sysctl.d/60-shmprov.conf") $(grep -c '^kernel\.shmall' "$LIFE/etc/sysctl.d/60-shmprov.conf")" "1 1"

# ---------------------------------------------------------------------------
step "upgrade on the running system: the changed unit is loaded at once"
# The timer has been active since boot and holds shmprov-drift.service
# loaded: without a daemon-reload it would go on running the old unit.
boot_unit_since=$(mono shmprov.service ActiveEnterTimestampMonotonic)
check "life2: shmprov-drift.timer is active before the upgrade" \
    test "$(prop shmprov-drift.timer ActiveState)" = active
incont dpkg -i "$up_in" >"$LOGS/upgrade.txt" 2>&1
expect "dpkg -i $(basename "$up_deb")" "$?" 0
expect "upgrade: dpkg-query says $up_version" "$(incont dpkg-query -W -f "\${Version}" shmprov)" "$up_version"
for u in shmprov-drift.service shmprov.service shmprov-drift.timer; do
    expect "upgrade: systemctl show -p NeedDaemonReload $u" \
        "$(incont systemctl show -p NeedDaemonReload "$u")" NeedDaemonReload=no
done
check "upgrade: the loaded shmprov-drift.service is the new file" \
    bash -c "grep -q 'test upgrade $up_version' '$LIFE$(prop shmprov-drift.service FragmentPath)'"
expect "upgrade: shmprov.service was not restarted" \
    "$(mono shmprov.service ActiveEnterTimestampMonotonic)" "$boot_unit_since"
expect "upgrade: the timer is still active, and shmprov-drift.service did not run" \
    "$(prop shmprov-drift.timer ActiveState) $(mono shmprov-drift.service ExecMainStartTimestampMonotonic)" "active 0"

# ---------------------------------------------------------------------------
step "remove and purge on the running system"
limits_running=$(incont cat /proc/sys/kernel/shmmax /proc/sys/kernel/shmall | tr '\n' ' ')
check "life2: the record /var/lib/shmprov/dropin.sha256 names the drop-in and its sha256" \
    grep -qx "$(sha256sum <"$LIFE/etc/sysctl.d/60-shmprov.conf" | cut -d' ' -f1)  /etc/sysctl.d/60-shmprov.conf" \
    "$LIFE/var/lib/shmprov/dropin.sha256"
check "dpkg --remove shmprov" incont dpkg --remove shmprov
expect "remove: shmprov-drift.timer is stopped" "$(prop shmprov-drift.timer ActiveState)" inactive
check "remove: the drop-in stays until purge" test -f "$LIFE/etc/sysctl.d/60-shmprov.conf"
incont apt-get purge -y shmprov >"$LOGS/purge1.txt" 2>&1
rc=$?
grep -v '^(Reading database' "$LOGS/purge1.txt" | sed 's/^/    | /'
expect "apt-get purge -y shmprov" "$rc" 0
check "purge: the drop-in shmprov wrote is gone" test ! -e "$LIFE/etc/sysctl.d/60-shmprov.conf"
check "purge: it said so, naming the file" grep -q 'removed /etc/sysctl\.d/60-shmprov\.conf' "$LOGS/purge1.txt"
check "purge: /var/lib/shmprov (state, record) is gone" test ! -e "$LIFE/var/lib/shmprov"
expect "remove and purge left the container's running limits alone" \
    "$(incont cat /proc/sys/kernel/shmmax /proc/sys/kernel/shmall | tr '\n' ' ')" "$limits_running"

# ---------------------------------------------------------------------------
step "reinstall on the running system: the units load and start"
incont dpkg -i "$deb_in" >"$LOGS/reinstall.txt" 2>&1
expect "dpkg -i $(basename "$DEB") after the purge" "$?" 0
for u in shmprov.service shmprov-drift.service shmprov-drift.timer; do
    expect "reinstall: $u is loaded, and systemd needs no daemon-reload" \
        "$(prop $u LoadState) NeedDaemonReload=$(prop $u NeedDaemonReload)" "loaded NeedDaemonReload=no"
done
incont systemctl start shmprov.service >"$LOGS/start.txt" 2>&1
rc=$?
sed 's/^/    | /' "$LOGS/start.txt"
expect "systemctl start shmprov.service (exit status, and nothing printed)" "$rc $(wc -c <"$LOGS/start.txt")" "0 0"
expect "reinstall: shmprov.service is active, Result success" \
    "$(prop shmprov.service ActiveState) $(prop shmprov.service Result)" "active success"
# The unit already ran at this boot: start does nothing more, restart
# applies the profile again.
nsenter -t "$cpid" --ipc -- sh -c 'echo 1 >/proc/sys/kernel/shmmax'
incont systemctl start shmprov.service
expect "a second systemctl start does not run the unit again (kernel.shmmax still 1)" \
    "$(incont cat /proc/sys/kernel/shmmax)" 1
check "systemctl restart shmprov.service" incont systemctl restart shmprov.service
expect "systemctl restart applies the profile (kernel.shmmax back)" \
    "$(incont cat /proc/sys/kernel/shmmax)" "$want_shmmax"

# ---------------------------------------------------------------------------
step "an operator-edited drop-in survives purge"
check "the record matches the drop-in after the restart" \
    grep -qx "$(sha256sum <"$LIFE/etc/sysctl.d/60-shmprov.conf" | cut -d' ' -f1)  /etc/sysctl.d/60-shmprov.conf" \
    "$LIFE/var/lib/shmprov/dropin.sha256"
echo '# kept by the operator' >>"$LIFE/etc/sysctl.d/60-shmprov.conf"
edited=$(sha256sum <"$LIFE/etc/sysctl.d/60-shmprov.conf")
incont apt-get purge -y shmprov >"$LOGS/purge2.txt" 2>&1
rc=$?
grep -v '^(Reading database' "$LOGS/purge2.txt" | sed 's/^/    | /'
expect "apt-get purge -y shmprov" "$rc" 0
expect "purge: the edited drop-in is still there, as edited" \
    "$(sha256sum <"$LIFE/etc/sysctl.d/60-shmprov.conf" 2>&1)" "$edited"
check "purge: its output names the kept file and says it was edited" \
    grep -E 'kept /etc/sysctl\.d/60-shmprov\.conf: edited' "$LOGS/purge2.txt"
check "purge: /var/lib/shmprov is gone" test ! -e "$LIFE/var/lib/shmprov"
poweroff life2

# ---------------------------------------------------------------------------
# cloud-init: the shipped user-data, with the package from a local apt
# repository in the container ($1: a name, $2: the workload to write).
cloud_root() {
    local name=$1 workload=$2 root=$WORK/$1/root
    new_root "$name"
    mkdir -p "$root/srv/shmprov-repo" "$root/var/lib/cloud/seed/nocloud"
    cp "$DEB" "$root/srv/shmprov-repo/"
    (cd "$root/srv/shmprov-repo" && dpkg-scanpackages -m . >Packages 2>/dev/null)
    # The container has no network: apt sees the local repository only.
    : >"$root/etc/apt/sources.list"
    # NoCloud only; no network to configure; a locale the minimal root has.
    cat >"$root/etc/cloud/cloud.cfg.d/99-shmprov-ci.cfg" <<'EOF'
datasource_list: [ NoCloud ]
network: {config: disabled}
locale: C.UTF-8
EOF
    printf 'instance-id: %s\nlocal-hostname: %s\n' "$name" "$name" \
        >"$root/var/lib/cloud/seed/nocloud/meta-data"
    python3 - "$SRC/packaging/cloud-init/user-data.yaml" "$workload" \
        >"$root/var/lib/cloud/seed/nocloud/user-data" <<'EOF'
import sys, yaml
ud = yaml.safe_load(open(sys.argv[1]))
ud["apt"] = {"preserve_sources_list": True,
             "sources": {"shmprov-ci.list": {"source": "deb [trusted=yes] file:/srv/shmprov-repo ./"}}}
n = 0
for f in ud["write_files"]:
    if f["path"] == "/etc/shmprov/profile.yaml":
        c = f["content"]
        # No collector in the test: a closed port, and a 1 s deadline.
        for old, new in (("workload: database ", "workload: %s " % sys.argv[2]),
                         ("url: https://collector.example.net/", "url: https://127.0.0.1:9/"),
                         ("timeout: 20 ", "timeout: 1 ")):
            if old not in c:
                sys.exit("user-data: no %r in the profile" % old)
            c = c.replace(old, new)
        f["content"] = c
        n += 1
if n != 1:
    sys.exit("user-data: no /etc/shmprov/profile.yaml in write_files")
print("#cloud-config")
print(yaml.safe_dump(ud, sort_keys=False), end="")
EOF
}
# cloud_boot NAME: boot and wait for cloud-init (at most 300 s).
cloud_boot() {
    local name=$1
    if boot "$WORK/$name/root" "$name"; then pass "$name: booted"; else
        # "degraded" is what a failed cloud-final.service gives: judged below.
        if [ -n "$cpid" ]; then pass "$name: booted (degraded: $(incont systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' '))"
        else fail "$name: the container did not boot"; show_boot_failure "$name"; fi
    fi
    [ -n "$cpid" ] || return 1
    timeout 300 nsenter -t "$cpid" -a -r -w /usr/bin/cloud-init status --wait >/dev/null 2>&1
    incont cloud-init status --long >"$LOGS/$name.status" 2>&1
    echo $? >"$LOGS/$name.status-rc"
    sed 's/^/    | /' "$LOGS/$name.status"
    incont cat /var/log/cloud-init-output.log >"$LOGS/$name.output-log" 2>&1
    incont cat /var/log/cloud-init.log >"$LOGS/$name.log" 2>&1
}

step "cloud-init: an invalid profile (workload: databse) is an error"
check "user-data with workload: databse and a local repository" cloud_root ci-bad databse
if cloud_boot ci-bad; then
    expect "ci-bad: cloud-init status says error (and exits 1)" \
        "$(sed -n 's/^status: //p' "$LOGS/ci-bad.status") $(cat "$LOGS/ci-bad.status-rc")" "error 1"
    check "ci-bad: cloud-init status --long: the runcmd script failed (scripts-user)" \
        grep -qF "('scripts-user', RuntimeError('Runparts: 1 failures (runcmd)" "$LOGS/ci-bad.status"
    check "ci-bad: the package was installed before runcmd" incont dpkg-query -W shmprov
    check "ci-bad: runcmd is one /bin/sh script, set -e first" \
        bash -c "sed -n 1,2p '$WORK/ci-bad/root/var/lib/cloud/instances/ci-bad/scripts/runcmd' |
                 tr '\n' ' ' | grep -qx '#!/bin/sh set -e '"
    check "ci-bad: shmprov's message is in /var/log/cloud-init-output.log" \
        grep -q "error: 'host.workload' must be one of .*'databse'" "$LOGS/ci-bad.output-log"
    check "ci-bad: shmprov's exit status (2) is in /var/log/cloud-init.log, after the runcmd script's name" \
        bash -c "grep -A1 -F \"Command: ['/var/lib/cloud/instance/scripts/runcmd']\" '$LOGS/ci-bad.log' | grep -qx 'Exit code: 2'"
    check "ci-bad: ... and not in /var/log/cloud-init-output.log" \
        bash -c "! grep -q 'Exit code: 2' '$LOGS/ci-bad.output-log'"
    expect "ci-bad: the commands after the failed apply did not run (timer not started)" \
        "$(prop shmprov-drift.timer ActiveState)" inactive
    poweroff ci-bad
fi

step "cloud-init: a valid profile is done, the timer enabled, the limits set"
check "user-data with workload: database and a local repository" cloud_root ci-good database
if cloud_boot ci-good; then
    expect "ci-good: cloud-init status says done (and exits 0)" \
        "$(sed -n 's/^status: //p' "$LOGS/ci-good.status") $(cat "$LOGS/ci-good.status-rc")" "done 0"
    # cloud-final.service, like a shell, sees the container's /proc/sys
    # read-only.
    check "ci-good: shmprov apply ran and said so in /var/log/cloud-init-output.log (runtime not applicable here)" \
        grep -q '^shmprov apply: not-applicable' "$LOGS/ci-good.output-log"
    expect "ci-good: shmprov-drift.timer is enabled and active" \
        "$(incont systemctl is-enabled shmprov-drift.timer) $(prop shmprov-drift.timer ActiveState)" "enabled active"
    expect "ci-good: shmprov.service is enabled" "$(incont systemctl is-enabled shmprov.service)" enabled
    poweroff ci-good
    # A container's /proc/sys is read-only to cloud-init's shell, so the
    # limits come from shmprov.service, at the next boot.
    if boot "$WORK/ci-good/root" ci-good2; then pass "ci-good2: booted again"; else
        fail "ci-good2: the container did not finish booting"
        show_boot_failure ci-good2
    fi
    if [ -n "$cpid" ]; then
        check_boot_unit ci-good2 "$WORK/ci-good/root"
        expect "ci-good2: cloud-init status still says done" \
            "$(incont cloud-init status 2>&1 | sed -n 's/^status: //p')" "done"
        poweroff ci-good2
    fi
fi

# ---------------------------------------------------------------------------
step "the host"
expect "the host's kernel.shmmax, shmall, shmmni are unchanged" \
    "$(host_ipc cat /proc/sys/kernel/shmmax /proc/sys/kernel/shmall /proc/sys/kernel/shmmni | tr '\n' ' ')" \
    "$host_shm_before"

finish
