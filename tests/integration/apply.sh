#!/bin/bash
# `shmprov apply` and `shmprov verify` for real: the real binary on the real
# kernel, in a private IPC + mount namespace (lib.sh), with the real
# `sysctl -p` and `systemd-sysctl` reading what it wrote. Each numbered test
# of the issue is its own block; every block starts from a clean state.
# Usage: apply.sh SHMPROV SOURCE_DIR
set -u
shmprov=$1
src=$2
. "$src/tests/integration/lib.sh"
start_suite "$@"

json() { "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
profile() { # NAME CONTENT: a profile root may use
    printf '%b' "$2" >"$work/$1.yaml"
    chmod 0644 "$work/$1.yaml"
}
runtime() { echo "$(cat $K/shmmax) $(cat $K/shmall) $(cat $K/shmmni)"; }
segments() { tail -n +2 /proc/sysvipc/shm | wc -l; }
reset() { # the kernel's defaults and empty sysctl.d directories
    umount -q /etc/sysctl.d 2>/dev/null
    mount -t tmpfs -o size=4m,mode=0755 shmprov-test /etc/sysctl.d
    rm -rf /run/sysctl.d/* /run/shmprov
    printf '# (test) nothing here\n' >/etc/sysctl.conf
    echo $DEFAULT >$K/shmmax
    echo $DEFAULT >$K/shmall
    echo 4096 >$K/shmmni
    ipcrm --all=shm 2>/dev/null
}

profile small 'version: 1\nhost: {ram_tier: small}\n'
profile medium 'version: 1\nhost: {ram_tier: medium}\nlimits: {shmmni: 8192}\n'
small_max=4294967296
small_all=$((small_max / page))

# 1. fresh apply: kernel values, drop-in bytes, probe results, no leftovers
reset
"$shmprov" --profile "$work/small.yaml" plan --output json >"$work/plan1.json" 2>/dev/null
"$shmprov" --profile "$work/small.yaml" apply --no-report --output json >"$work/a1.json" 2>"$work/a1.err"
code=$?
expect "1/fresh-exit-0" test "$code" = 0
expect "1/result-changed" test "$(json "$work/a1.json" "d['result']")" = changed
expect "1/kernel-values" test "$(runtime)" = "$small_max $small_all 4096"
expect "1/dropin-bytes-as-planned" test "$(cat "$dropin")" = "$(json "$work/plan1.json" "d['dropin']['content']")"
expect "1/dropin-mode-0644" test "$(stat -c %a "$dropin")" = 644
expect "1/probe-passed" test "$(json "$work/a1.json" "d['probe']['passed'], d['probe']['upper_bound']['status'], d['probe']['acceptance']['status'], d['probe']['round_trip']['status']")" = "True passed passed passed"
expect "1/no-segment-left" test "$(segments)" = 0
expect "1/ipcs-empty" test -z "$(ipcs -m | awk 'NR>3 && NF')"
expect "1/no-temp-files" test -z "$(ls -A /etc/sysctl.d | grep -v '^60-shmprov.conf$')"

# 2. second apply: unchanged, same inode and mtime, no write to /proc
before=$(stat -c '%i %Y.%y' "$dropin")
# LeakSanitizer cannot run under ptrace: in the sanitizer build, leaks are
# checked by every other run of this suite, not by this one.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -qq -e trace=openat -o "$work/strace.log" \
    "$shmprov" --profile "$work/small.yaml" apply --no-report --output json >"$work/a2.json" 2>/dev/null
expect "2/exit-0" test $? = 0
expect "2/result-unchanged" test "$(json "$work/a2.json" "d['result']")" = unchanged
expect "2/limits-still-proven" test "$(json "$work/a2.json" "d['probe']['upper_bound']['status'], d['probe']['acceptance']['status'], d['probe']['round_trip']['status']")" = "passed passed skipped"
expect "2/same-inode-and-mtime" test "$(stat -c '%i %Y.%y' "$dropin")" = "$before"
expect "2/no-proc-write" test -z "$(grep -E '/proc/sys/kernel/shm.*O_(WRONLY|RDWR)' "$work/strace.log")"
expect "2/no-dropin-write" test -z "$(grep -E 'sysctl.d/.*O_(WRONLY|RDWR|CREAT)' "$work/strace.log")"
expect "2/strace-saw-the-run" grep -q '/proc/sys/kernel/shmmax' "$work/strace.log"

# 3. the real sysctl -p and systemd-sysctl reproduce exactly what apply set
"$shmprov" --profile "$work/medium.yaml" apply --no-report >/dev/null 2>&1
applied=$(runtime)
expect "3/medium-applied" test "$applied" = "17179869184 $((17179869184 / page)) 8192"
echo $DEFAULT >$K/shmmax; echo $DEFAULT >$K/shmall; echo 4096 >$K/shmmni
sysctl -q -p "$dropin" >"$work/sysctl.out" 2>&1
expect "3/sysctl-p-accepts" test $? = 0
expect "3/sysctl-p-same-values" test "$(runtime)" = "$applied"
echo $DEFAULT >$K/shmmax; echo $DEFAULT >$K/shmall; echo 4096 >$K/shmmni
/lib/systemd/systemd-sysctl "$dropin" >"$work/systemd.out" 2>&1
expect "3/systemd-sysctl-accepts" test $? = 0
expect "3/systemd-sysctl-silent" test ! -s "$work/systemd.out"
expect "3/systemd-sysctl-same-values" test "$(runtime)" = "$applied"

# 4. a later file overrides a key: refuse, name it, change nothing
reset
printf '# later\nkernel.shmmax = 1234567\n' >/etc/sysctl.d/99-zz.conf
"$shmprov" --profile "$work/small.yaml" apply --no-report >"$work/a4.out" 2>"$work/a4.err"
expect "4/systemd-rules-exit-1" test $? = 1
expect "4/names-file-and-line" grep -q "/etc/sysctl.d/99-zz.conf:2" "$work/a4.err"
expect "4/nothing-written" test ! -e "$dropin"
expect "4/kernel-untouched" test "$(runtime)" = "$DEFAULT $DEFAULT 4096"
reset
printf 'kernel.shmall = 5\n' >/etc/sysctl.conf
"$shmprov" --profile "$work/small.yaml" apply --no-report >"$work/a4b.out" 2>"$work/a4b.err"
expect "4/procps-rules-exit-1" test $? = 1
expect "4/procps-names-sysctl.conf" grep -q "/etc/sysctl.conf:1" "$work/a4b.err"
expect "4/procps-says-which-rules" grep -q "sysctl --system" "$work/a4b.err"
expect "4/procps-nothing-written" test ! -e "$dropin"
expect "4/procps-kernel-untouched" test "$(runtime)" = "$DEFAULT $DEFAULT 4096"
profile warn 'version: 1\nhost: {ram_tier: small}\nconflicts: warn\n'
"$shmprov" --profile "$work/warn.yaml" apply --no-report >"$work/a4c.out" 2>"$work/a4c.err"
expect "4/conflicts-warn-proceeds" test $? = 0
expect "4/conflicts-warn-warns" grep -q "warning: .*/etc/sysctl.conf:1" "$work/a4c.err"
# The real systemd-sysctl and sysctl --system agree with shmprov's analysis.
# They apply EVERY key they find, so they run only when every directory they
# read is a private tmpfs holding nothing but kernel.shm* (IPC-namespaced).
mount -t tmpfs -o size=1m shmprov-usrlib /usr/lib/sysctl.d
private_sysctl_dirs() {
    local d
    for d in /etc/sysctl.d /run/sysctl.d /usr/lib/sysctl.d /lib/sysctl.d; do
        [ "$(stat -f -c %T "$d")" = tmpfs ] || return 1
    done
    [ ! -e /usr/local/lib/sysctl.d ] || [ "$(stat -f -c %T /usr/local/lib/sysctl.d)" = tmpfs ] || return 1
    ! grep -rhv '^[[:space:]]*\(#\|;\|$\)' /etc/sysctl.d /run/sysctl.d /usr/lib/sysctl.d /etc/sysctl.conf | grep -qv '^-\?kernel\.shm'
}
printf 'kernel.shmmax = 1234567\n' >/etc/sysctl.d/99-zz.conf
"$shmprov" --profile "$work/warn.yaml" plan --output json >"$work/p4.json" 2>/dev/null
expect "4/plan-exit-0-with-warn" test $? = 0
if private_sysctl_dirs; then
    echo $DEFAULT >$K/shmmax; echo $DEFAULT >$K/shmall
    /lib/systemd/systemd-sysctl 2>/dev/null
    expect "4/real-systemd-sysctl-agrees" test "$(cat $K/shmmax) $(cat $K/shmall)" = "1234567 $small_all"
    expect "4/shmprov-systemd-analysis" test "$(json "$work/p4.json" "d['boot_order']['kernel.shmmax']['systemd-sysctl'], d['boot_order']['kernel.shmall']['systemd-sysctl']")" = "/etc/sysctl.d/99-zz.conf:1 /etc/sysctl.d/60-shmprov.conf:13"
    echo $DEFAULT >$K/shmmax; echo $DEFAULT >$K/shmall
    sysctl -q --system >/dev/null 2>&1
    expect "4/real-sysctl-system-agrees" test "$(cat $K/shmmax) $(cat $K/shmall)" = "1234567 5"
    expect "4/shmprov-procps-analysis" test "$(json "$work/p4.json" "d['boot_order']['kernel.shmmax']['sysctl --system'], d['boot_order']['kernel.shmall']['sysctl --system']")" = "/etc/sysctl.d/99-zz.conf:1 /etc/sysctl.conf:1"
else
    bad "4/real-tools: the sysctl.d directories are not all private; refusing to run them"
fi
"$shmprov" --profile "$work/small.yaml" plan >"$work/p4.txt" 2>/dev/null
expect "4/plan-shows-refusal-exit-1" test $? = 1
expect "4/plan-shows-same-analysis" grep -q "^apply would refuse: kernel.shmmax: /etc/sysctl.d/99-zz.conf:1" "$work/p4.txt"
umount /usr/lib/sysctl.d
reset
printf 'kernel.shmmax = 1\n' >/etc/sysctl.d/10-early.conf
expect_code "4/earlier-file-is-fine" 0 "$shmprov" --profile "$work/small.yaml" apply --no-report

# 5. a symlink planted at the drop-in path: refused, target untouched
reset
printf 'precious\n' >"$work/target"
ln -s "$work/target" "$dropin"
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null 2>"$work/a5.err"
expect "5/exit-1" test $? = 1
expect "5/says-symlink" grep -q "symbolic link" "$work/a5.err"
expect "5/target-untouched" test "$(cat "$work/target")" = precious
expect "5/link-still-there" test -L "$dropin"
expect "5/kernel-untouched" test "$(runtime)" = "$DEFAULT $DEFAULT 4096"

# 6. a full disk: exit 1, previous drop-in intact, runtime untouched
reset
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null 2>&1
cp "$dropin" "$work/previous.conf"
umount /etc/sysctl.d
mount -t tmpfs -o size=4k,mode=0755 shmprov-full /etc/sysctl.d
cp "$work/previous.conf" "$dropin"
head -c 4096 /dev/zero >/etc/sysctl.d/00-filler.bin 2>/dev/null
"$shmprov" --profile "$work/medium.yaml" apply --no-report >/dev/null 2>"$work/a6.err"
expect "6/exit-1" test $? = 1
expect "6/says-no-space" grep -q "No space left on device" "$work/a6.err"
expect "6/previous-dropin-intact" cmp -s "$dropin" "$work/previous.conf"
expect "6/runtime-untouched" test "$(runtime)" = "$small_max $small_all 4096"
expect "6/no-temp-left" test -z "$(ls -A /etc/sysctl.d | grep shmprov-tmp)"

# 7. a runtime write fails half-way (read-only bind mount over one file):
#    the previous runtime values and the previous drop-in come back
reset
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null 2>&1
cp "$dropin" "$work/previous.conf"
mount --bind $K/shmall $K/shmall && mount -o remount,bind,ro $K/shmall
"$shmprov" --profile "$work/medium.yaml" apply --no-report >/dev/null 2>"$work/a7.err"
code=$?
umount $K/shmall
expect "7/exit-1" test "$code" = 1
expect "7/says-what-failed" grep -q "cannot write .* to /proc/sys/kernel/shmall: Read-only file system" "$work/a7.err"
expect "7/says-what-was-restored" grep -q "restored: kernel.shmmax restored to $small_max" "$work/a7.err"
expect "7/runtime-restored" test "$(runtime)" = "$small_max $small_all 4096"
expect "7/dropin-restored" cmp -s "$dropin" "$work/previous.conf"
reset
mount --bind $K/shmmni $K/shmmni && mount -o remount,bind,ro $K/shmmni
"$shmprov" --profile "$work/medium.yaml" apply --no-report >/dev/null 2>"$work/a7b.err"
code=$?
umount $K/shmmni
expect "7/fresh-exit-1" test "$code" = 1
expect "7/fresh-runtime-restored" test "$(runtime)" = "$DEFAULT $DEFAULT 4096"
expect "7/fresh-dropin-removed-again" test ! -e "$dropin"

# 8. the probe: no headroom is reported, not failed; a limit not in effect
#    (another agent fighting over it) fails and rolls back
reset
echo $((4 << 30)) >$K/shmmax
"$py" - "$work/segs-ready" <<'PY' &
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
for _ in range(2):  # 2 x 1.5 GiB of the 4 GiB shmall the small profile sets
    assert libc.shmget(0, ctypes.c_size_t(3 << 29), 0o1600 | 0o10000) >= 0
open(sys.argv[1], "w").close()
time.sleep(60)
PY
holder=$!
for _ in $(seq 100); do [ -e "$work/segs-ready" ] && break; sleep 0.05; done
"$shmprov" --profile "$work/small.yaml" apply --no-report --output json >"$work/a8.json" 2>/dev/null
expect "8/no-headroom-exit-0" test $? = 0
expect "8/acceptance-skipped" test "$(json "$work/a8.json" "d['probe']['acceptance']['status']")" = skipped
expect "8/headroom-reported" test "$(json "$work/a8.json" "d['probe']['headroom_bytes']")" = $((small_max - 2 * (3 << 29)))
kill $holder
ipcrm --all=shm
reset
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null 2>&1
cp "$dropin" "$work/previous.conf"
# A faked /proc/sys file (as some container runtimes provide): writes and
# read-backs succeed, but the kernel's real limit never changes. Only the
# test allocation can tell.
echo $small_max >"$work/fake-shmmax"
mount --bind "$work/fake-shmmax" $K/shmmax
"$shmprov" --profile "$work/medium.yaml" apply --no-report --output json >"$work/a8b.json" 2>"$work/a8b.err"
code=$?
fake_after=$(cat $K/shmmax)
umount $K/shmmax
# The real shmmax is small_max: the acceptance of 16 GiB is refused.
expect "8/not-in-effect-probe-caught-it" test "$(json "$work/a8b.json" "d['probe']['passed'], d['probe']['acceptance']['status']")" = "False failed"
expect "8/not-in-effect-fake-restored" test "$fake_after" = "$small_max"
expect "8/not-in-effect-exit-1" test "$code" = 1
expect "8/not-in-effect-says-why" grep -q "test allocation failed: " "$work/a8b.err"
expect "8/not-in-effect-dropin-restored" cmp -s "$dropin" "$work/previous.conf"
expect "8/not-in-effect-shmall-restored" test "$(cat $K/shmall)" = "$small_all"
expect "8/no-segment-left" test "$(segments)" = 0

# 9. raise-only on the kernel defaults changes nothing; enforce lowers, and plan said so
reset
profile raise 'version: 1\nhost: {ram_tier: small}\npolicy: raise-only\n'
"$shmprov" --profile "$work/raise.yaml" apply --no-report --output json >"$work/a9.json" 2>/dev/null
expect "9/raise-only-exit-0" test $? = 0
expect "9/raise-only-kernel-unchanged" test "$(runtime)" = "$DEFAULT $DEFAULT 4096"
expect "9/raise-only-no-key-in-dropin" test -z "$(grep '^kernel\.' "$dropin")"
# The report shows the size the profile asks for beside the kept target.
expect "9/raise-only-derived-beside-target" test "$(json "$work/a9.json" "[(k['key'], k['derived'], k['target'], k['target_decimal'], k['source']) for k in d['keys']][0]")" = "('kernel.shmmax', $small_max, None, '$DEFAULT', 'kept (raise-only)')"
reset
"$shmprov" --profile "$work/small.yaml" plan >"$work/p9.txt" 2>/dev/null
expect "9/plan-says-lower" grep -q "^warning: kernel.shmmax would be lowered from $DEFAULT" "$work/p9.txt"
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null 2>&1
expect "9/enforce-lowered" test "$(runtime)" = "$small_max $small_all 4096"

# 10. two applies at once: serialised by the lock, both succeed, one unchanged
reset
"$shmprov" --profile "$work/small.yaml" apply --no-report --output json >"$work/a10a.json" 2>/dev/null &
p1=$!
"$shmprov" --profile "$work/small.yaml" apply --no-report --output json >"$work/a10b.json" 2>/dev/null &
p2=$!
wait $p1; c1=$?
wait $p2; c2=$?
expect "10/both-exit-0" test "$c1$c2" = 00
expect "10/one-changed-one-unchanged" test "$(printf '%s\n' "$(json "$work/a10a.json" "d['result']")" "$(json "$work/a10b.json" "d['result']")" | sort | tr '\n' ' ')" = "changed unchanged "
exec 9>/run/shmprov/apply.lock
flock 9
echo 424242 >/run/shmprov/apply.lock
start=$(date +%s)
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null 2>"$work/a10c.err"
code=$?
exec 9>&-
expect "10/held-lock-exit-1" test "$code" = 1
expect "10/held-lock-names-pid" grep -q "pid 424242" "$work/a10c.err"
expect "10/held-lock-bounded-wait" test $(($(date +%s) - start)) -le 15

# 11. verify: 0 after apply, 3 after each kind of drift
reset
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null 2>&1
expect_code "11/in-sync-0" 0 "$shmprov" --profile "$work/small.yaml" verify
sysctl -q -w kernel.shmmax=1000000
"$shmprov" --profile "$work/small.yaml" verify >"$work/v1.txt" 2>&1
expect "11/runtime-drift-3" test $? = 3
expect "11/runtime-drift-said" grep -q "runtime: kernel.shmmax: the running kernel has 1000000" "$work/v1.txt"
echo $small_max >$K/shmmax
sed -i 's/^kernel.shmall = .*/kernel.shmall = 1/' "$dropin"
"$shmprov" --profile "$work/small.yaml" verify >"$work/v2.txt" 2>&1
expect "11/edited-drift-3" test $? = 3
expect "11/edited-drift-said" grep -q "dropin-edited" "$work/v2.txt"
rm "$dropin"
"$shmprov" --profile "$work/small.yaml" verify >"$work/v3.txt" 2>&1
expect "11/deleted-drift-3" test $? = 3
expect "11/deleted-drift-said" grep -q "dropin-missing" "$work/v3.txt"
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null 2>&1
printf 'kernel.shmall = 7\n' >/etc/sysctl.d/99-override.conf
"$shmprov" --profile "$work/small.yaml" verify --output json >"$work/v4.json" 2>/dev/null
expect "11/overridden-drift-3" test $? = 3
expect "11/overridden-drift-said" test "$(json "$work/v4.json" "sorted(set(x['kind'] for x in d['drift']))")" = "['overridden']"
rm /etc/sysctl.d/99-override.conf
expect_code "11/in-sync-again-0" 0 "$shmprov" --profile "$work/small.yaml" verify

# 12. --root into an empty directory tree: drop-in only, said so
reset
mkdir -p "$work/image"
"$shmprov" --profile "$work/small.yaml" apply --no-report --root "$work/image" >"$work/a12.out" 2>&1
expect "12/exit-0" test $? = 0
expect "12/dropin-under-root" test -f "$work/image$dropin"
expect "12/kernel-untouched" test "$(runtime)" = "$DEFAULT $DEFAULT 4096"
expect "12/host-dropin-untouched" test ! -e "$dropin"
expect "12/says-skipped" grep -q "runtime and test allocation skipped: --root" "$work/a12.out"
expect "12/content-as-planned" grep -q "^kernel.shmmax = $small_max$" "$work/image$dropin"
expect_code "12/second-root-apply-unchanged" 0 "$shmprov" --profile "$work/small.yaml" apply --no-report --root "$work/image"

# Stale temporary files from a killed run are removed, never read as config.
reset
printf 'kernel.shmmax = 1\n' >"/etc/sysctl.d/.shmprov-tmp.60-shmprov.conf.deadbeef"
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null 2>"$work/stale.err"
expect "stale-temp/exit-0" test $? = 0
expect "stale-temp/removed" test ! -e "/etc/sysctl.d/.shmprov-tmp.60-shmprov.conf.deadbeef"

# A read-only /proc/sys (a container): not applicable, nothing changed, exit 0
reset
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
"$shmprov" --profile "$work/small.yaml" apply --no-report >"$work/ro.out" 2>&1
code=$?
"$shmprov" --profile "$work/small.yaml" apply --no-report --persist-only >"$work/ro2.out" 2>&1
code2=$?
umount /proc/sys
expect "container/exit-0" test "$code" = 0
expect "container/says-not-applicable" grep -q "runtime not applicable here" "$work/ro.out"
expect "container/persist-only-writes-dropin" test "$code2" = 0 -a -f "$dropin"
expect "container/kernel-untouched" test "$(runtime)" = "$DEFAULT $DEFAULT 4096"

# Every JSON document apply printed above is report data: check the schema.
"$py" "$src/tests/schema/validate_json.py" "$src/schemas/report.schema.json" "$work"/a*.json >"$work/schema.out" 2>&1
code=$?
expect "report-schema/every-apply-document-valid ($(tail -n 1 "$work/schema.out"))" test "$code" = 0
[ "$code" = 0 ] || cat "$work/schema.out"

finish
