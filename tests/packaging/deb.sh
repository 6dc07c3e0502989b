#!/bin/bash
# The Debian package, checked with the real tools (run as root, by CI):
#   1. builds the .deb with dpkg-buildpackage from a COPY of this tree (the
#      checkout is left untouched);
#   2. lintian --fail-on error,warning; hardening-check on the binary it ships;
#   3. in a minimal bookworm root made by debootstrap --variant=minbase:
#      install, reinstall, run (--version, plan, validate), keep an edited
#      conffile across a reinstall and an upgrade, remove, purge, and check
#      that purge leaves nothing of the package behind, the drop-in shmprov
#      wrote included (and an edited one, with a message).
# The built package is never installed on this host, and no service is
# started anywhere: the whole script runs in a private mount + IPC namespace
# (mounts made for the chroot vanish with it; the chroot's /proc/sys is
# read-only and its shared-memory limits are a private namespace's), and the
# chroot has a policy-rc.d that refuses every start and logs what was asked.
#
# Usage: tests/packaging/deb.sh
# Env:   SHMPROV_CI_CACHE  where the debootstrap root is cached between runs
#                          on this machine (default /var/cache/shmprov-ci;
#                          one tar per day, older ones are deleted)
#        KEEP=1            keep the work directory for inspection
# Ends with "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "deb.sh: must run as root (debootstrap, chroot, namespaces)" >&2
    exit 2
fi
# Everything below runs in its own mount and IPC namespace.
if [ -z "${SHMPROV_DEB_NS:-}" ]; then
    export SHMPROV_DEB_NS=1
    exec unshare --mount --propagation private --ipc -- bash "$0" "$@"
fi

SRC=$(cd "$(dirname "$0")/../.." && pwd)
MIRROR=http://deb.debian.org/debian
SUITE=bookworm
CACHE_DIR=${SHMPROV_CI_CACHE:-/var/cache/shmprov-ci}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/shmprov-deb.XXXXXX")
ROOT=$WORK/root
LOGS=$WORK/logs
mkdir -p "$LOGS"
. "$SRC/tests/packaging/steps.sh"

cleanup() {
    # Unmount what was mounted in the chroot before deleting anything, and
    # never let rm cross into another file system.
    if [ -d "$ROOT" ]; then
        for m in $(awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r); do
            umount -l "$m" 2>/dev/null || true
        done
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "work directory kept: $WORK"
    else
        rm -rf --one-file-system "$WORK"
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
step "tools (debhelper, lintian, debootstrap) and build dependencies"
copy_source "$WORK/src/shmprov"
# Wait for the dpkg lock rather than fail when another apt runs.
apt=(apt-get -o DPkg::Lock::Timeout=600)
check "apt-get update" "${apt[@]}" update -qq
check "install packaging tools" "${apt[@]}" install -y -qq --no-install-recommends \
    build-essential debhelper dpkg-dev fakeroot lintian debootstrap \
    debian-archive-keyring util-linux xz-utils devscripts
check "install build dependencies (apt-get build-dep from debian/control)" \
    bash -c "cd '$WORK/src/shmprov' && ${apt[*]} build-dep -y -qq --no-install-recommends ./"
require "tool installation"

# ---------------------------------------------------------------------------
step "dpkg-buildpackage -b -us -uc"
check "dpkg-buildpackage -b -us -uc" \
    bash -c "cd '$WORK/src/shmprov' && dpkg-buildpackage -b -us -uc"
version=$(cd "$WORK/src/shmprov" && dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
DEB=$WORK/src/shmprov_${version}_${arch}.deb
check "the .deb exists: $(basename "$DEB")" test -s "$DEB"
require "the build"
echo "package: $(basename "$DEB"): $(stat -c %s "$DEB") bytes" \
    "($(du -h "$DEB" | cut -f1)), Installed-Size $(dpkg-deb -f "$DEB" Installed-Size) KiB"

# ---------------------------------------------------------------------------
step "package contents and maintainer scripts"
dpkg-deb -c "$DEB" | awk '{ print $6 }' | sed 's|^\./|/|' >"$WORK/contents"
mkdir -p "$WORK/control"
dpkg-deb -e "$DEB" "$WORK/control"
for f in /usr/sbin/shmprov /usr/share/man/man8/shmprov.8.gz /etc/shmprov/profile.yaml \
         /lib/systemd/system/shmprov.service /lib/systemd/system/shmprov-drift.service \
         /lib/systemd/system/shmprov-drift.timer /usr/share/shmprov/schemas/profile.schema.json \
         /usr/share/shmprov/schemas/report.schema.json /usr/share/shmprov/profiles/default.yaml \
         /usr/share/shmprov/prometheus/shmprov.rules.yml /usr/share/shmprov/prometheus/shmprov.rules.test.yml \
         /usr/share/doc/shmprov/copyright; do
    check "ships $f" grep -qx -- "$f" "$WORK/contents"
done
# The alert rules as shipped: promtool's lint and their unit tests.
mkdir -p "$WORK/prom" && dpkg-deb -x "$DEB" "$WORK/prom"
check "the shipped rules pass promtool check rules" \
    promtool check rules --lint=all --lint-fatal "$WORK/prom/usr/share/shmprov/prometheus/shmprov.rules.yml"
check "the shipped rules pass their unit tests" \
    promtool test rules "$WORK/prom/usr/share/shmprov/prometheus/shmprov.rules.test.yml"
# The flags of debian/rules (dpkg-buildflags) and of CMakeLists.txt together:
# the binary that ships must be as hardened as the one CI builds.
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/sbin/shmprov >"$WORK/shmprov.packaged"
check "the packaged binary is hardened (PIE, stack protector, fortify, RELRO, bind-now)" \
    "$SRC/tests/static/hardening.sh" "$WORK/shmprov.packaged"
check "/etc/shmprov/profile.yaml is a conffile" \
    grep -qx /etc/shmprov/profile.yaml "$WORK/control/conffiles"
check "Depends names libcurl4 (dlopen()ed, invisible to shlibdeps)" \
    bash -c "dpkg-deb -f '$DEB' Depends | grep -Eq '(^|, )libcurl4( |,|$)'"
# The maintainer scripts may enable units but never start or restart one:
# installing a package must not change kernel limits or send a report.
check "postinst enables shmprov.service and shmprov-drift.timer" \
    bash -c "grep -q \"deb-systemd-helper enable 'shmprov.service'\" '$WORK/control/postinst' &&
             grep -q \"deb-systemd-helper enable 'shmprov-drift.timer'\" '$WORK/control/postinst'"
check "postinst does not enable shmprov-drift.service (the timer runs it)" \
    bash -c "! grep -q \"enable 'shmprov-drift.service'\" '$WORK/control/postinst'"
# The unit files are loaded, not started, after install and upgrade, and
# reloaded after removal.
check "postinst reloads systemd (daemon-reload) after the units are enabled" \
    bash -c "awk '/deb-systemd-helper enable/ { e = 1 } e && /systemctl --system daemon-reload/ { r = 1 }
                  END { exit !r }' '$WORK/control/postinst'"
check "postrm reloads systemd on remove" \
    grep -q 'systemctl --system daemon-reload' "$WORK/control/postrm"
# (debhelper's own snippets pass the action in a variable: any
# deb-systemd-invoke but "stop" counts.)
check "no maintainer script starts or restarts a unit" \
    bash -c "! cat '$WORK'/control/{preinst,postinst,prerm,postrm} 2>/dev/null | grep -v '^[[:space:]]*#' |
             grep -E 'deb-systemd-invoke|systemctl[^|;]*(start|restart)' | grep -v 'deb-systemd-invoke stop '"

# ---------------------------------------------------------------------------
step "lintian --fail-on error,warning"
# As an unprivileged user: lintian unpacks the archive and advises against
# running as root.
lintdir=$(mktemp -d "${TMPDIR:-/var/tmp}/shmprov-lintian.XXXXXX")
chmod 755 "$lintdir"
cp "$DEB" "$lintdir/"
echo "--- lintian output (empty when clean; I: and overridden tags shown too)"
if setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$lintdir" TMPDIR="$lintdir" \
        lintian --fail-on error,warning --display-info --show-overrides \
        "$lintdir/$(basename "$DEB")" 2>&1 | tee "$LOGS/lintian.log"
then
    echo "--- end of lintian output"
    pass "lintian --fail-on error,warning"
else
    echo "--- end of lintian output"
    fail "lintian --fail-on error,warning"
fi
rm -rf "$lintdir"

# ---------------------------------------------------------------------------
step "minimal $SUITE root (debootstrap --variant=minbase, cached per day)"
mkdir -p "$CACHE_DIR" "$ROOT"
tarball=$CACHE_DIR/$SUITE-minbase-$arch-$(date -u +%Y%m%d).tar
if [ -s "$tarball" ] && tar -C "$ROOT" --numeric-owner -xpf "$tarball" 2>"$LOGS/untar.log"; then
    pass "debootstrap root from today's cache $tarball"
else
    rm -rf --one-file-system "$ROOT" && mkdir -p "$ROOT"
    if debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1; then
        pass "debootstrap --variant=minbase $SUITE"
        # The cache holds the pristine root only; older days are dropped.
        rm -f "$CACHE_DIR/$SUITE-minbase-$arch-"*.tar
        if tar -C "$ROOT" --numeric-owner --one-file-system -cpf "$tarball.tmp" . 2>/dev/null; then
            mv "$tarball.tmp" "$tarball"
        else
            rm -f "$tarball.tmp"
        fi
    else
        fail "debootstrap --variant=minbase $SUITE"
        tail -30 "$LOGS/debootstrap.log"
    fi
fi
require "the $SUITE root"

# policy-rc.d: no service may start; every request is logged, so the test
# sees what the maintainer scripts asked for.
cat >"$ROOT/usr/sbin/policy-rc.d" <<'EOF'
#!/bin/sh
echo "$*" >>/var/log/policy-rc.d.log
exit 101
EOF
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

# Mounts, all in this namespace: /proc (shmprov plan reads it) with /proc/sys
# read-only, so nothing in the chroot can change a kernel limit; the host's
# /dev/null & co.; a tmpfs /run.
mount -t proc proc "$ROOT/proc"
mount --bind "$ROOT/proc/sys" "$ROOT/proc/sys"
mount -o remount,bind,ro "$ROOT/proc/sys"
for d in null zero full random urandom; do
    [ -e "$ROOT/dev/$d" ] || touch "$ROOT/dev/$d"
    mount --bind "/dev/$d" "$ROOT/dev/$d"
done
mount -t tmpfs -o mode=755 tmpfs "$ROOT/run"
mkdir -p "$ROOT/run/lock"
check "the chroot's /proc/sys is read-only" \
    bash -c "! echo 1 2>/dev/null >'$ROOT/proc/sys/kernel/shmmni'"

inroot() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

# ---------------------------------------------------------------------------
step "runtime dependencies and systemd in the chroot"
depends=$(dpkg-deb -f "$DEB" Depends)
echo "Depends: $depends"
check "apt-get update (chroot)" inroot apt-get update -qq
check "apt-get satisfy the package's Depends (chroot)" \
    inroot apt-get satisfy -y -qq --no-install-recommends "$depends"
# systemd is not a dependency, but the hosts the package is for run it:
# with systemctl present, deb-systemd-helper enables units through
# "systemctl preset", as it does there. (It cannot reach any systemd: the
# chroot's /run is an empty tmpfs.)
check "apt-get install systemd (chroot)" \
    inroot apt-get install -y -qq --no-install-recommends systemd
require "the runtime dependencies"
# From here on the maintainer scripts see /run/systemd/system and take the
# "systemd is running" paths, so every start or stop they ask for reaches
# policy-rc.d, which refuses it and logs it.
mkdir -p "$ROOT/run/systemd/system"

# What the root holds before the package: purge must bring it back to this.
snapshot() {
    (cd "$ROOT" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./run -o -path ./tmp \
        -o -path ./var/log -o -path ./var/cache -o -path ./var/lib/dpkg -o -path ./var/lib/apt \) \
        -prune -o -printf '%y %p\n') | sed 's| \./| /|' | sort
}
snapshot >"$WORK/before.txt"
: >"$ROOT/var/log/policy-rc.d.log"
: >"$WORK/policy-rc.d.log"
cp "$DEB" "$ROOT/tmp/"
deb_in=/tmp/$(basename "$DEB")

# An upgrade whose default profile differs, so dpkg must decide about the
# edited conffile: the same package repacked as $version+ciupgrade1 with
# one more comment line in /etc/shmprov/profile.yaml.
up_version=$version+ciupgrade1
mkdir -p "$WORK/upgrade"
dpkg-deb -R "$DEB" "$WORK/upgrade/tree"
sed -i "s/^Version: .*/Version: $up_version/" "$WORK/upgrade/tree/DEBIAN/control"
echo "# (test upgrade $up_version: the packaged default changed)" \
    >>"$WORK/upgrade/tree/etc/shmprov/profile.yaml"
up_deb=$WORK/upgrade/shmprov_${up_version}_$arch.deb
check "repack the upgrade $up_version" \
    dpkg-deb --root-owner-group -b "$WORK/upgrade/tree" "$up_deb"
cp "$up_deb" "$ROOT/tmp/"
up_in=/tmp/$(basename "$up_deb")

# Only "UNIT stop" requests are expected in policy-rc.d's log. Each call
# judges the requests made since the previous one.
no_starts() {
    local log=$ROOT/var/log/policy-rc.d.log
    cat "$log" >>"$WORK/policy-rc.d.log"
    ! grep -Ev '^[^ ]+ stop$' "$log"
    local ok=$?
    : >"$log"
    return $ok
}
enabled_links() {
    (cd "$ROOT" && find etc/systemd/system -type l 2>/dev/null | sort)
}
check_running() {
    local what=$1
    check "$what: shmprov --version says $version" \
        bash -c "[ \"\$(chroot '$ROOT' /usr/sbin/shmprov --version)\" = 'shmprov ${version%%+*}' ]"
    check "$what: shmprov plan exits 0 and reads /etc/shmprov/profile.yaml" \
        bash -c "chroot '$ROOT' /usr/sbin/shmprov plan >'$LOGS/plan.txt' 2>&1 &&
                 grep -q '^Profile   /etc/shmprov/profile.yaml' '$LOGS/plan.txt'"
    check "$what: shmprov validate /etc/shmprov/profile.yaml" \
        inroot shmprov validate /etc/shmprov/profile.yaml
}

# ---------------------------------------------------------------------------
step "install: dpkg -i"
check "dpkg -i $(basename "$DEB")" inroot dpkg -i "$deb_in" </dev/null
check "dpkg-query: install ok installed $version" \
    bash -c "[ \"\$(chroot '$ROOT' dpkg-query -W -f '\${Status} \${Version}' shmprov)\" = 'install ok installed $version' ]"
require "the installation"
check_running "installed"
check "shmprov.service is enabled (a symlink in a .wants directory)" \
    bash -c "cd '$ROOT' && find etc/systemd/system -type l -path '*.wants/shmprov.service' | grep -q ."
check "shmprov-drift.timer is enabled" \
    bash -c "cd '$ROOT' && find etc/systemd/system -type l -path '*.wants/shmprov-drift.timer' | grep -q ."
check "shmprov-drift.service is not enabled (only the timer starts it)" \
    bash -c "cd '$ROOT' && ! find etc/systemd/system -type l -name shmprov-drift.service | grep -q ."
check "installing started no unit (policy-rc.d's log)" no_starts
enabled_links >"$WORK/links-installed.txt"

# ---------------------------------------------------------------------------
step "reinstall: dpkg -i the same package again"
check "dpkg -i $(basename "$DEB") again" inroot dpkg -i "$deb_in" </dev/null
check_running "reinstalled"
check "reinstalling started no unit" no_starts
check "reinstall kept the same unit links" \
    bash -c "diff -u '$WORK/links-installed.txt' <(cd '$ROOT' && find etc/systemd/system -type l | sort)"

# ---------------------------------------------------------------------------
step "an edited conffile survives a reinstall and an upgrade"
check "edit /etc/shmprov/profile.yaml: policy raise-only" \
    sed -i -E 's/^policy: enforce( |$)/policy: raise-only\1/' "$ROOT/etc/shmprov/profile.yaml"
check "the edit is in place" grep -q '^policy: raise-only' "$ROOT/etc/shmprov/profile.yaml"
check "shmprov validate accepts the edited profile" \
    inroot shmprov validate /etc/shmprov/profile.yaml
check "shmprov plan --output json shows the edited policy" \
    bash -c "chroot '$ROOT' shmprov --output json plan | tr -d ' \n' | grep -q '\"policy\":\"raise-only\"'"
# Same version: the packaged conffile did not change, so dpkg keeps the
# edit without asking (stdin is /dev/null: a prompt would fail the step).
check "dpkg -i the same version (no prompt)" inroot dpkg -i "$deb_in" </dev/null
check "the edit survived the reinstall" grep -q '^policy: raise-only' "$ROOT/etc/shmprov/profile.yaml"
# An operator's "systemctl disable" survives the upgrade too.
check "systemctl disable shmprov-drift.timer (operator)" \
    inroot systemctl --root=/ disable shmprov-drift.timer
# New version with a changed default: --force-confold keeps the operator's
# file and puts the new default next to it.
check "dpkg -i --force-confold the upgrade $up_version" \
    inroot dpkg -i --force-confold "$up_in" </dev/null
check "dpkg-query: install ok installed $up_version" \
    bash -c "[ \"\$(chroot '$ROOT' dpkg-query -W -f '\${Status} \${Version}' shmprov)\" = 'install ok installed $up_version' ]"
check "the edit survived the upgrade" grep -q '^policy: raise-only' "$ROOT/etc/shmprov/profile.yaml"
check "the new default is next to it as profile.yaml.dpkg-dist" \
    grep -q "test upgrade $up_version" "$ROOT/etc/shmprov/profile.yaml.dpkg-dist"
check_running "upgraded"
check "upgrading started no unit" no_starts
check "the upgrade did not re-enable the disabled timer" \
    bash -c "cd '$ROOT' && ! find etc/systemd/system -type l -name shmprov-drift.timer | grep -q ."
check "the upgrade kept shmprov.service enabled" \
    bash -c "cd '$ROOT' && find etc/systemd/system -type l -path '*.wants/shmprov.service' | grep -q ."

# ---------------------------------------------------------------------------
step "remove, then purge"
inroot dpkg -L shmprov | sort >"$WORK/owned.txt"
check "dpkg --remove shmprov" inroot dpkg --remove shmprov </dev/null
check "remove: the binary is gone" test ! -e "$ROOT/usr/sbin/shmprov"
check "remove: the edited conffile stays until purge" \
    grep -q '^policy: raise-only' "$ROOT/etc/shmprov/profile.yaml"
check "remove: prerm asked to stop the drift timer (policy-rc.d refused)" \
    grep -qx 'shmprov-drift.timer stop' "$ROOT/var/log/policy-rc.d.log"
check "removing started no unit" no_starts
# What shmprov itself leaves in its state directory: an undelivered report.
mkdir -p "$ROOT/var/lib/shmprov/spool"
echo '{}' >"$ROOT/var/lib/shmprov/spool/undelivered.json"
# And the drop-in an apply wrote, named with its sha256 in the record
# (written here: the chroot's /proc/sys is read-only, so no apply there
# writes one).
made_sysctl_d=0
[ -d "$ROOT/etc/sysctl.d" ] || { mkdir "$ROOT/etc/sysctl.d" && made_sysctl_d=1; }
put_dropin() {
    printf '# Managed by shmprov.\nkernel.shmmax = 4294967296\n' >"$ROOT/etc/sysctl.d/60-shmprov.conf"
    echo "$(sha256sum <"$ROOT/etc/sysctl.d/60-shmprov.conf" | cut -d' ' -f1)  /etc/sysctl.d/60-shmprov.conf" \
        >"$ROOT/var/lib/shmprov/dropin.sha256"
}
put_dropin
inroot dpkg --purge shmprov </dev/null >"$LOGS/purge.txt" 2>&1
rc=$?
sed 's/^/    | /' "$LOGS/purge.txt"
check "dpkg --purge shmprov" test "$rc" -eq 0
check "purge: the drop-in shmprov wrote is gone" test ! -e "$ROOT/etc/sysctl.d/60-shmprov.conf"
check "purge: it said so, naming the file" \
    grep -q '^shmprov: removed /etc/sysctl.d/60-shmprov.conf' "$LOGS/purge.txt"
[ "$made_sysctl_d" = 0 ] || rmdir "$ROOT/etc/sysctl.d"
check "purge: dpkg no longer knows shmprov" \
    bash -c "! chroot '$ROOT' dpkg-query -W -f '\${Status}' shmprov 2>/dev/null | grep -q installed"
left=$(while read -r p; do
           [ "$p" != /. ] || continue
           [ -e "$ROOT$p" ] || [ -L "$ROOT$p" ] || continue
           # A directory that existed before the package (/usr,
           # /lib/systemd/system, ...) stays. /lib is a symlink to usr/lib.
           real=$(readlink -f -- "$ROOT$p")
           grep -qx "d ${real#"$ROOT"}" "$WORK/before.txt" || echo "$p"
       done <"$WORK/owned.txt")
check "purge: every path of dpkg -L is gone (but pre-existing directories)" test -z "$left"
[ -z "$left" ] || printf '    left: %s\n' $left
for p in /etc/shmprov /usr/share/shmprov /usr/share/doc/shmprov /var/lib/shmprov; do
    check "purge: $p is gone" test ! -e "$ROOT$p"
done
check "purge: no unit links left" \
    bash -c "cd '$ROOT' && ! find etc/systemd/system -type l -name 'shmprov*' 2>/dev/null | grep -q ."
snapshot >"$WORK/after.txt"
check "purge: the root is as before the package (find, but /var/lib/dpkg, logs, caches)" \
    diff -u "$WORK/before.txt" "$WORK/after.txt"
check "purge started no unit" no_starts

# ---------------------------------------------------------------------------
step "an edited drop-in survives purge"
check "dpkg -i $(basename "$DEB")" inroot dpkg -i "$deb_in" </dev/null
mkdir -p "$ROOT/etc/sysctl.d" "$ROOT/var/lib/shmprov"
put_dropin
echo '# kept by the operator' >>"$ROOT/etc/sysctl.d/60-shmprov.conf"
inroot dpkg --purge shmprov </dev/null >"$LOGS/purge-edited.txt" 2>&1
rc=$?
sed 's/^/    | /' "$LOGS/purge-edited.txt"
check "dpkg --purge shmprov" test "$rc" -eq 0
check "purge: the edited drop-in is still there, as edited" \
    grep -qx '# kept by the operator' "$ROOT/etc/sysctl.d/60-shmprov.conf"
check "purge: its output names the file and says it was edited" \
    grep -q '^shmprov: kept /etc/sysctl.d/60-shmprov.conf: edited since shmprov wrote it' "$LOGS/purge-edited.txt"
check "purge: /var/lib/shmprov is gone" test ! -e "$ROOT/var/lib/shmprov"
check "installing and purging started no unit" no_starts

echo
echo "--- policy-rc.d requests (all refused):"
sed 's/^/    /' "$WORK/policy-rc.d.log"

finish
