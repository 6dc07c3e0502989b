#!/bin/bash
# `shmprov plan` end to end, on the real kernel in a private IPC namespace:
# the guide's numbers for every example profile, the diff against an existing
# drop-in, policies, guards, the CLI contract — and that plan changes nothing.
# Usage: plan.sh SHMPROV SOURCE_DIR
set -u
shmprov=$1
src=$2
. "$src/tests/integration/lib.sh"
start_suite "$@"
trap 'rm -rf "$work"' EXIT
memtotal=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) * 1024))

# A profile root accepts: a private copy with safe modes.
for f in "$src"/profiles/*.yaml; do install -m 0644 "$f" "$work/"; done

# jq-free JSON field access: json FILE EXPR (a Python expression on d).
json() { "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# Distinct starting values, so a stray write would show.
echo 123456789 >/proc/sys/kernel/shmmax
echo 2000000 >/proc/sys/kernel/shmall
echo 4096 >/proc/sys/kernel/shmmni
printf 'kernel.sem = 250 32000 32 128\n' >/etc/sysctl.d/10-other.conf

snapshot() {
    {
        cat /proc/sys/kernel/shmmax /proc/sys/kernel/shmall /proc/sys/kernel/shmmni
        find /etc/sysctl.d /run/sysctl.d /etc/shmprov -printf '%p %s %T@ %i\n' | sort
        find /etc/sysctl.d /run/sysctl.d -type f -exec sha256sum {} + | sort
        ipcs -m
    } >"$1"
}
# ---- a symlink at the drop-in path is read through nothing and called out ----
printf 'kernel.shmmax = 1\n' >"$work/real.conf"
ln -s "$work/real.conf" "$dropin"
"$shmprov" plan >"$work/link.txt" 2>/dev/null
expect "symlink/exit-1-apply-would-refuse" test $? = 1
expect "symlink/said" grep -q "^apply would refuse: $dropin is a symbolic link: apply refuses to write through it" "$work/link.txt"
expect "symlink/target-untouched" test "$(cat "$work/real.conf")" = "kernel.shmmax = 1"
rm "$dropin"

snapshot "$work/before"

# ---- the guide's numbers (README "Sizing rules") ----
expect_guide() { # NAME PROFILE SHMMAX SHMALL TIER
    local out="$work/$1.json"
    if ! "$shmprov" --profile "$2" plan --output json >"$out" 2>"$work/$1.err"; then
        bad "numbers/$1 (plan failed: $(cat "$work/$1.err"))"
        return
    fi
    local got
    got=$(json "$out" "'%d %d %s' % (d['keys'][0]['target'], d['keys'][1]['target'], d['derivation']['tier'])")
    if [ "$got" = "$3 $4 $5" ]; then ok "numbers/$1 ($got)"; else bad "numbers/$1: got '$got', expected '$3 $4 $5'"; fi
}
half=$((memtotal / 2 / page * page))
threequarters=$(((memtotal / 100 * 75 + memtotal % 100 * 75 / 100) / page * page))
if [ "$memtotal" -lt $((16 << 30)) ]; then tier=small; elif [ "$memtotal" -lt $((64 << 30)) ]; then tier=medium; else tier=large; fi
expect_guide small "$work/small.yaml" $((4 << 30)) $(((4 << 30) / page)) small
expect_guide medium "$work/medium.yaml" $((16 << 30)) $(((16 << 30) / page)) medium
expect_guide large "$work/large.yaml" $((64 << 30)) $(((64 << 30) / page)) large
expect_guide postgresql "$work/postgresql.yaml" "$half" $((half / page)) "$tier"
expect_guide bigdata "$work/bigdata.yaml" "$threequarters" $((threequarters / page)) "$tier"
expect_guide default "$work/default.yaml" "$half" $((half / page)) "$tier"
if [ "$page" = 4096 ]; then
    expect "numbers/guide-table-4k" test "$(json "$work/small.json" "d['keys'][1]['target']")" = 1048576 -a \
        "$(json "$work/medium.json" "d['keys'][1]['target']")" = 4194304 -a \
        "$(json "$work/large.json" "d['keys'][1]['target']")" = 16777216
fi

# ---- the built-in default (no /etc/shmprov/profile.yaml) ----
"$shmprov" plan >"$work/builtin.txt" 2>"$work/builtin.err"
expect_code "builtin/exit-0" 0 "$shmprov" plan
expect "builtin/says-so-on-stderr" grep -q "no /etc/shmprov/profile.yaml: using the built-in default profile" "$work/builtin.err"
expect "builtin/says-so-in-plan" grep -q "^Profile   <built-in default>" "$work/builtin.txt"
"$shmprov" --profile "$work/default.yaml" plan --output json >"$work/file-default.json" 2>/dev/null
"$shmprov" plan --output json >"$work/builtin.json" 2>/dev/null
expect "builtin/same-bytes-as-profiles-default.yaml" test \
    "$(json "$work/builtin.json" "d['profile']['sha256']")" = "$(sha256sum <"$src/profiles/default.yaml" | cut -d' ' -f1)"
expect "builtin/json-profile-is-builtin" test "$(json "$work/builtin.json" "d['profile']['builtin']")" = True
expect "builtin/note-in-plan" grep -qx "          no /etc/shmprov/profile.yaml: using the built-in default profile" "$work/builtin.txt"
expect "builtin/note-in-json" test "$(json "$work/builtin.json" "d['profile']['note']")" = \
    "no /etc/shmprov/profile.yaml: using the built-in default profile"
expect "builtin/no-note-for-a-file" test "$(json "$work/file-default.json" "d['profile']['note']")" = None
expect "builtin/note-in-status" grep -qx "Profile: <built-in default> (no /etc/shmprov/profile.yaml: using the built-in default profile)" \
    <<<"$("$shmprov" status 2>/dev/null)"
install -m 0644 "$work/medium.yaml" /etc/shmprov/profile.yaml
expect "default-path/used-when-present" test "$("$shmprov" plan --output json 2>/dev/null | "$py" -c 'import json,sys; print(json.load(sys.stdin)["profile"]["path"])')" = /etc/shmprov/profile.yaml
rm /etc/shmprov/profile.yaml

# ---- text plan: derivation in words, table, lowering warning, new file ----
t="$work/builtin.txt"
expect "text/tier-reason" grep -q "^  tier       $tier (auto: MemTotal" "$t"
expect "text/ram" grep -q "^  RAM        $memtotal bytes" "$t"
expect "text/fraction" grep -q "= 50% of RAM (the tier table), rounded down to a page" "$t"
expect "text/page-size" grep -q "^  page size  $page bytes" "$t"
expect "text/policy" grep -q "^  policy     enforce (set exactly the derived values)" "$t"
expect "text/table-shmmax" grep -Eq "^  kernel.shmmax +123456789 +$half +raise$" "$t"
expect "text/table-shmall" grep -Eq "^  kernel.shmall +2000000 +$((half / page)) +(raise|lower|keep)$" "$t"
expect "text/new-file" grep -q "^Drop-in $dropin (new file)" "$t"
expect "text/diff-header" grep -q "^--- /dev/null" "$t"
expect "text/diff-line" grep -q "^+kernel.shmmax = $half$" "$t"

# ---- lowering from the kernel default is called out ----
echo 18446744073692774399 >/proc/sys/kernel/shmmax
"$shmprov" plan >"$work/lower.txt" 2>/dev/null
expect "lower/warning" grep -q "^warning: kernel.shmmax would be lowered from 18446744073692774399 (the kernel's built-in default, effectively unlimited) to $half" "$work/lower.txt"
expect "lower/action" grep -Eq "^  kernel.shmmax +18446744073692774399 +$half +lower$" "$work/lower.txt"
printf 'version: 1\npolicy: raise-only\n' >"$work/raise.yaml"
chmod 0644 "$work/raise.yaml"
"$shmprov" --profile "$work/raise.yaml" plan --output json >"$work/raise.json" 2>/dev/null
expect "raise-only/keeps-default" test "$(json "$work/raise.json" "d['keys'][0]['action'], d['keys'][0]['target'], d['keys'][0]['target_decimal'], d['keys'][0]['persisted']")" = "keep None 18446744073692774399 False"
expect "raise-only/no-warning" test "$(json "$work/raise.json" "len(d['warnings'])")" = 0
expect "raise-only/dropin-comment" grep -q "^# kernel.shmmax: not set (raise-only" <<<"$(json "$work/raise.json" "d['dropin']['content']")"
echo 123456789 >/proc/sys/kernel/shmmax

# ---- an existing drop-in: unchanged, then a diff ----
json "$work/builtin.json" "d['dropin']['content']" | head -c -1 >"$dropin"
snapshot "$work/before"  # the drop-in is now part of the state plan must not touch
"$shmprov" plan >"$work/same.txt" 2>/dev/null
expect "dropin/unchanged" grep -q "^Drop-in $dropin (unchanged)$" "$work/same.txt"
expect "dropin/unchanged-json" test "$("$shmprov" plan --output json 2>/dev/null | "$py" -c 'import json,sys; print(json.load(sys.stdin)["dropin"]["changed"])')" = False
"$shmprov" --profile "$work/small.yaml" plan >"$work/changed.txt" 2>/dev/null
expect "dropin/diff-minus" grep -q "^-kernel.shmmax = $half$" "$work/changed.txt"
expect "dropin/diff-plus" grep -q "^+kernel.shmmax = 4294967296$" "$work/changed.txt"
expect "dropin/diff-labels" grep -q "^--- $dropin$" "$work/changed.txt"
# Past the diff's bound (4096 lines) plan says so, and the key table still
# shows every change.
cp -p "$dropin" "$work/dropin.saved"
seq -f '# line %g' 5000 >"$dropin"
"$shmprov" --profile "$work/small.yaml" plan >"$work/long.txt" 2>/dev/null
expect "dropin/too-long-exit-0" test $? = 0
expect "dropin/too-long-said" grep -qx "(the current file is too long to show a diff)" "$work/long.txt"
expect "dropin/too-long-table" grep -Eq "^  kernel.shmmax +123456789 +4294967296 +raise$" "$work/long.txt"
expect "dropin/too-long-json" test "$("$shmprov" --profile "$work/small.yaml" plan --output json 2>/dev/null |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["dropin"]["diff"], end="")')" = \
    "(the current file is too long to show a diff)"
cp -p "$work/dropin.saved" "$dropin"

# ---- apply --dry-run is exactly plan ----
"$shmprov" --profile "$work/small.yaml" apply --dry-run >"$work/dry.txt" 2>/dev/null
expect "dry-run/same-as-plan" cmp -s "$work/changed.txt" "$work/dry.txt"

# ---- guards: existing segments (real ones, in this namespace) ----
"$py" - "$work/seg-id" <<'PY' &
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.shmget.restype = ctypes.c_int
SHM_NORESERVE = 0o10000
seg = libc.shmget(0, ctypes.c_size_t(3 << 20), 0o600 | 0o1000 | SHM_NORESERVE)
assert seg >= 0, os.strerror(ctypes.get_errno())
open(sys.argv[1], "w").write(str(seg))
time.sleep(30)
PY
segpid=$!
for _ in $(seq 50); do [ -s "$work/seg-id" ] && break; sleep 0.1; done
printf 'version: 1\nlimits:\n  shmmax: 2MiB\n' >"$work/tiny.yaml"
chmod 0644 "$work/tiny.yaml"
"$shmprov" --profile "$work/tiny.yaml" plan >"$work/guard.txt" 2>"$work/guard.err"
code=$?
expect "guard/exit-1" test "$code" = 1
expect "guard/largest-segment" grep -q "^apply would refuse: kernel.shmmax: target 2097152 bytes is below the largest existing segment (3145728 bytes)" "$work/guard.txt"
expect "guard/usage-shown" grep -q "^Usage     1 segments, 3145728 bytes, $(((3 << 20) / page)) pages" "$work/guard.txt"
expect_code "guard/force" 0 "$shmprov" --profile "$work/tiny.yaml" plan --force
ipcrm -m "$(cat "$work/seg-id")"
kill "$segpid" 2>/dev/null
rm -f "$work/seg-id"

# ---- a read-only /proc/sys (as in most containers) is detected and said ----
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
"$shmprov" plan >"$work/ro.txt" 2>/dev/null
expect "container/read-only-proc-sys" grep -q "^  note: apply cannot change the running kernel here: /proc/sys is read-only here (a container?): runtime limits are not applicable here" "$work/ro.txt"
expect "container/json" test "$("$shmprov" plan --output json 2>/dev/null | "$py" -c 'import json,sys; print(json.load(sys.stdin)["runtime"]["writable"])')" = False
umount /proc/sys
expect "container/writable-again" test "$("$shmprov" plan --output json 2>/dev/null | "$py" -c 'import json,sys; print(json.load(sys.stdin)["runtime"]["writable"])')" = True

# ---- CLI contract ----
expect_code "cli/help" 0 "$shmprov" --help
expect "cli/help-on-stdout" test -n "$("$shmprov" --help 2>/dev/null)"
expect "cli/version" test "$("$shmprov" --version)" = "shmprov 0.1.0"
for args in "" "frobnicate" "plan --bogus" "plan extra" "--output yaml plan" "validate --dry-run" "plan --profile" "status --dry-run" "plan --segments" "apply --root"; do
    # shellcheck disable=SC2086
    "$shmprov" $args >"$work/u.out" 2>"$work/u.err"
    code=$?
    if [ "$code" = 2 ] && [ "$(wc -l <"$work/u.err")" = 1 ] && [ ! -s "$work/u.out" ]; then
        ok "usage-error/'$args' ($(cat "$work/u.err"))"
    else
        bad "usage-error/'$args': exit $code, stderr $(wc -l <"$work/u.err") lines"
    fi
done
expect "json/one-document" "$py" -c 'import json,sys; json.load(sys.stdin)' < <("$shmprov" plan --output json 2>/dev/null)
expect "json/stdout-only-json" test -z "$("$shmprov" plan --output json 2>/dev/null | "$py" -c 'import sys,json; s=sys.stdin.read(); json.loads(s)' 2>&1)"
expect_code "validate/builtin" 0 "$shmprov" validate
expect_code "validate/examples" 0 "$shmprov" validate "$work"/*.yaml

# ---- and after all of that, nothing changed ----
snapshot "$work/after"
if cmp -s "$work/before" "$work/after"; then ok "plan-changes-nothing"; else
    bad "plan-changes-nothing"
    diff -u "$work/before" "$work/after"
fi
# ---- a result that never reached its reader is a failure, not a success ----
# (as coreutils' close_stdout: /dev/full stands for a full disk or a pipe
# whose reader went away)
for args in "plan" "plan --output json" "apply --no-report" "apply --no-report --output json" "verify" \
    "verify --output json" "status" "status --output json" "--help" "--version"; do
    # shellcheck disable=SC2086 # word splitting of args is the point
    "$shmprov" --profile "$work/small.yaml" $args >/dev/full 2>"$work/full.err"
    code=$?
    expect "stdout-full/'$args'/exit-1" test "$code" = 1
    expect "stdout-full/'$args'/says-why" grep -q "error: cannot write the result to standard output: No space left on device" "$work/full.err"
done
# ---- a fixed tier that does not fit the host's RAM: warned, and reported ----
# (a fake /proc/meminfo through the test-only SHMPROV_TEST_PROC_DIR)
fakeproc=$work/fakeproc
mkdir -p "$fakeproc/sysvipc"
head -n 1 /proc/sysvipc/shm >"$fakeproc/sysvipc/shm"
printf 'MemTotal:        8388608 kB\n' >"$fakeproc/meminfo"
printf 'version: 1\nhost: {ram_tier: large, workload: bigdata}\n' >"$work/large.yaml"
printf 'version: 1\nhost: {ram_tier: small}\n' >"$work/fits.yaml"
chmod 0644 "$work/large.yaml" "$work/fits.yaml"
tierwarn="ram_tier: large (128 GiB nominal) on a host with 8 GiB of RAM lets shared memory reach 96 GiB, 12.0 times its RAM: is this profile meant for this host?"
SHMPROV_TEST_PROC_DIR=$fakeproc "$shmprov" --profile "$work/large.yaml" plan >"$work/tier.txt" 2>/dev/null
expect "tier-fit/plan-warns" grep -qF "warning: $tierwarn" "$work/tier.txt"
SHMPROV_TEST_PROC_DIR=$fakeproc "$shmprov" --profile "$work/large.yaml" --output json plan >"$work/tier.json" 2>/dev/null
expect "tier-fit/plan-json" test "$(json "$work/tier.json" "[w for w in d['warnings'] if w.startswith('ram_tier')] == ['$tierwarn']")" = True
mkdir -p "$work/image"
SHMPROV_TEST_PROC_DIR=$fakeproc "$shmprov" --profile "$work/large.yaml" --output json apply --root "$work/image" \
    >"$work/tier-apply.json" 2>"$work/tier-apply.err"
expect "tier-fit/apply-warns-once" test "$(grep -cF "warning: $tierwarn" "$work/tier-apply.err")" = 1
expect "tier-fit/apply-reports-it" test "$(json "$work/tier-apply.json" "'$tierwarn' in d['warnings']")" = True
SHMPROV_TEST_PROC_DIR=$fakeproc "$shmprov" --profile "$work/fits.yaml" plan >"$work/fits.txt" 2>/dev/null
expect "tier-fit/a-fitting-tier-is-not-warned" not grep -q "warning: ram_tier" "$work/fits.txt"

finish
