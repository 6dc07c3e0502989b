#!/bin/bash
# The Prometheus metrics (README "Monitoring"): `status --output prometheus`,
# and metrics.textfile written by apply (every result), verify and status.
# The real binary in a private IPC + mount namespace (tests/integration/
# lib.sh): /var/lib is a private overlay there, so node_exporter's textfile
# directory is the namespace's own. Every file and output is linted by
# `promtool check metrics` (Debian package prometheus) when it is installed:
# it must print nothing.
# Usage: metrics.sh SHMPROV SOURCE_DIR
set -u
shmprov=$1
src=$2
. "$src/tests/integration/lib.sh"
start_suite "$@"
dir=/var/lib/prometheus/node-exporter
tf=$dir/shmprov.prom
mkdir -p "$dir"
# Nothing of the host's own textfile directory shows through the overlay.
rm -f "$dir"/*

profile() { # NAME TEXTFILE [EXTRA YAML]
    printf 'version: 1\nhost: {ram_tier: small}\nmetrics:\n  textfile: %s\n%b' "$2" "${3:-}" >"$work/$1.yaml"
    chmod 0644 "$work/$1.yaml"
}
profile ok "$tf"
run() { # ARGS...: sets code; stdout in $work/out, stderr in $work/err
    "$shmprov" --profile "$work/ok.yaml" "$@" >"$work/out" 2>"$work/err"
    code=$?
}
# val SERIES [FILE]: the value of one series ("name{labels}"), "" when absent.
val() { awk -v k="$1" '$1 == k { print $2 }' "${2:-$tf}"; }
count() { grep -c "^$1[{ ]" "${2:-$tf}"; }
lint() { # NAME FILE: promtool check metrics prints nothing
    if [ -z "$promtool" ]; then ok "$1/promtool (not installed: skipped)"; return; fi
    local out
    if out=$("$promtool" check metrics <"$2" 2>&1) && [ -z "$out" ]; then ok "$1/promtool"; else bad "$1/promtool: $out"; fi
}
promtool=$(command -v promtool || true)
no_temps() { [ -z "$(find "$dir" -maxdepth 1 -name '.shmprov-tmp.*')" ]; }
reset() {
    rm -rf "$dropin" /etc/sysctl.d/99-zz-*.conf
    echo $DEFAULT >$K/shmmax
    echo $DEFAULT >$K/shmall
    echo 4096 >$K/shmmni
}

# ---- changed: every family, the figures as the kernel has them ----
reset
before=$(date +%s)
run apply --no-report
after=$(date +%s)
expect "changed/exit-0" test "$code" = 0
expect "changed/written" test -f "$tf" -a ! -L "$tf"
expect "changed/mode-0644" test "$(stat -c %a "$tf")" = 644
expect "changed/result" test "$(val 'shmprov_last_apply{result="changed"}')" = 1
expect "changed/one-result-series" test "$(count shmprov_last_apply)" = 1
expect "changed/timestamp-now" test "$(val shmprov_last_apply_timestamp_seconds)" -ge "$before" -a \
    "$(val shmprov_last_apply_timestamp_seconds)" -le "$after"
expect "changed/last-success-is-it" test "$(val shmprov_last_successful_apply_timestamp_seconds)" = \
    "$(val shmprov_last_apply_timestamp_seconds)"
expect "changed/duration" grep -Eq '^shmprov_last_apply_duration_seconds [0-9]+\.[0-9]{3}$' "$tf"
expect "changed/probe-passed" test "$(val shmprov_last_probe_passed)" = 1
expect "changed/running-is-the-kernel" test "$(val 'shmprov_limit_bytes{key="kernel.shmmax",value="running"}')" = \
    "$(cat $K/shmmax)"
expect "changed/profile-and-derived" test \
    "$(val 'shmprov_limit_bytes{key="kernel.shmmax",value="profile"}') $(val 'shmprov_limit_pages{key="kernel.shmall",value="derived"}')" = \
    "4294967296 $((4294967296 / page))"
expect "changed/shmmni-running-only" test "$(count shmprov_limit_segments)" = 1
expect "changed/in-sync-everywhere" test "$(grep '^shmprov_in_sync' "$tf" | awk '{print $2}' | sort -u)" = 1
expect "changed/six-in-sync-series" test "$(count shmprov_in_sync)" = 6
expect "changed/shmall-bytes" test "$(val shmprov_shmall_bytes)" = "$(( $(cat $K/shmall) * page ))"
expect "changed/headroom" test "$(val 'shmprov_headroom_bytes{limited_by="kernel.shmmax"}')" = 4294967296
expect "changed/usage" test "$(val shmprov_segments) $(val shmprov_orphan_candidates) $(val shmprov_probe_leftovers)" = "0 0 0"
expect "changed/no-spool-without-report-url" test "$(count shmprov_reports_waiting)" = 0
expect "changed/info" grep -Eq "^shmprov_info\{version=\"[^\"]+\",profile_sha256=\"[0-9a-f]{64}\",tier=\"small\",workload=\"general\",policy=\"enforce\",page_size=\"$page\"\} 1$" "$tf"
expect "changed/every-family-has-help-and-type" "$py" - "$tf" <<'PY'
import sys
helps, types, names = set(), set(), set()
for line in open(sys.argv[1]):
    if line.startswith("# HELP "): helps.add(line.split()[2])
    elif line.startswith("# TYPE "): types.add(line.split()[2]); assert line.split()[3] == "gauge", line
    else: names.add(line.split("{")[0].split()[0])
assert names == helps == types, (names ^ helps, names ^ types)
PY
expect "changed/no-temp-files" no_temps
lint changed "$tf"

# ---- unchanged: replaced whole (a new inode), never rewritten in place ----
ino=$(stat -c %i "$tf")
sleep 1
run apply --no-report
expect "unchanged/result" test "$(val 'shmprov_last_apply{result="unchanged"}')" = 1
expect "unchanged/new-inode" test "$(stat -c %i "$tf")" != "$ino"
expect "unchanged/probe-passed" test "$(val shmprov_last_probe_passed)" = 1
expect "unchanged/last-success-moves" test "$(val shmprov_last_successful_apply_timestamp_seconds)" = \
    "$(val shmprov_last_apply_timestamp_seconds)"
expect "unchanged/no-temp-files" no_temps
lint unchanged "$tf"
success=$(val shmprov_last_successful_apply_timestamp_seconds)

# ---- status --output prometheus is the textfile, and writes it too ----
cp "$tf" "$work/after-apply.prom"
run --output prometheus status
expect "status/exit-0" test "$code" = 0
expect "status/stdout-is-what-apply-wrote" cmp -s "$work/out" "$work/after-apply.prom"
expect "status/stdout-is-its-textfile" cmp -s "$work/out" "$tf"
cp "$work/out" "$work/status.prom"
lint status "$work/status.prom"
run --output json status
expect "status/json-unchanged" "$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["command"] == "status"' "$work/out"
expect "status/text-and-json-write-the-textfile-too" cmp -s "$tf" "$work/status.prom"

# ---- --output prometheus is for status only ----
for c in apply verify plan validate flush; do
    "$shmprov" --profile "$work/ok.yaml" --output prometheus $c >"$work/out" 2>"$work/err"
    code=$?
    expect "usage/$c-exit-2" test "$code" = 2
    expect "usage/$c-says-why" grep -q "output prometheus is for 'status' only" "$work/err"
done
expect_code "usage/unknown-format" 2 "$shmprov" --output yaml status

# ---- verify: drift is 0, apply makes it 1 again ----
echo 1 >$K/shmmax
run verify
expect "verify-drift/exit-3" test "$code" = 3
expect "verify-drift/runtime-0" test "$(val 'shmprov_in_sync{key="kernel.shmmax",check="runtime"}')" = 0
expect "verify-drift/running-1" test "$(val 'shmprov_limit_bytes{key="kernel.shmmax",value="running"}')" = 1
expect "verify-drift/others-1" test "$(val 'shmprov_in_sync{key="kernel.shmall",check="runtime"}') $(val 'shmprov_in_sync{key="kernel.shmmax",check="dropin"}')" = "1 1"
expect "verify-drift/last-apply-from-the-state-file" test "$(val 'shmprov_last_apply{result="unchanged"}')" = 1
lint verify-drift "$tf"
run apply --no-report
expect "verify-drift/apply-corrects" test "$(val 'shmprov_in_sync{key="kernel.shmmax",check="runtime"}') $(val 'shmprov_last_apply{result="changed"}')" = "1 1"
run verify
expect "verify-in-sync/exit-0" test "$code" = 0
expect "verify-in-sync/runtime-1" test "$(val 'shmprov_in_sync{key="kernel.shmmax",check="runtime"}')" = 1
success=$(val shmprov_last_successful_apply_timestamp_seconds)

# ---- refused: another file wins at boot ----
printf 'kernel.shmmax = 1234567\n' >/etc/sysctl.d/99-zz-other.conf
sleep 1
run apply --no-report
expect "refused/exit-1" test "$code" = 1
expect "refused/result" test "$(val 'shmprov_last_apply{result="refused"}')" = 1
expect "refused/one-result-series" test "$(count shmprov_last_apply)" = 1
expect "refused/last-success-kept" test "$(val shmprov_last_successful_apply_timestamp_seconds)" = "$success"
expect "refused/newer-than-last-success" test "$(val shmprov_last_apply_timestamp_seconds)" -gt "$success"
expect "refused/no-probe" test -z "$(val shmprov_last_probe_passed)"
expect "refused/boot-0" test "$(val 'shmprov_in_sync{key="kernel.shmmax",check="boot"}') $(val 'shmprov_in_sync{key="kernel.shmall",check="boot"}')" = "0 1"
lint refused "$tf"
run verify
expect "refused/verify-boot-0" test "$(val 'shmprov_in_sync{key="kernel.shmmax",check="boot"}')" = 0
rm /etc/sysctl.d/99-zz-other.conf

# ---- failed: the drop-in path is a directory ----
rm -f "$dropin" && mkdir "$dropin"
run apply --no-report
expect "failed/exit-1" test "$code" = 1
expect "failed/result" test "$(val 'shmprov_last_apply{result="failed"}')" = 1
expect "failed/dropin-0" test "$(val 'shmprov_in_sync{key="kernel.shmmax",check="dropin"}')" = 0
expect "failed/last-success-kept" test "$(val shmprov_last_successful_apply_timestamp_seconds)" = "$success"
lint failed "$tf"
rmdir "$dropin"

# ---- failed by the probe: it ran and did not pass ----
run apply --no-report
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o /dev/null -e inject=shmget:error=ENOSPC "$shmprov" --profile "$work/ok.yaml" apply --no-report \
    >"$work/out" 2>"$work/err"
code=$?
if grep -q "test allocation" "$work/err"; then
    expect "probe-failed/exit-1" test "$code" = 1
    expect "probe-failed/result" test "$(val 'shmprov_last_apply{result="failed"}')" = 1
    expect "probe-failed/probe-0" test "$(val shmprov_last_probe_passed)" = 0
else
    bad "probe-failed/strace-injection: $(tail -n 3 "$work/err")"
fi

# ---- refused at the lock: another apply holds it; the figures are still read ----
mkdir -p /run/shmprov
"$py" -c 'import fcntl, sys, time
f = open("/run/shmprov/apply.lock", "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(30)' >"$work/holder" &
holder=$!
for _ in $(seq 100); do grep -q locked "$work/holder" && break; sleep 0.05; done
run apply --no-report
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
expect "lock/exit-1" test "$code" = 1
expect "lock/result" test "$(val 'shmprov_last_apply{result="refused"}')" = 1
expect "lock/limits-still-there" test "$(val 'shmprov_limit_bytes{key="kernel.shmmax",value="running"}') $(count shmprov_in_sync)" = \
    "$(cat $K/shmmax) 6"
lint lock "$tf"

# ---- not-applicable: a read-only /proc/sys ----
reset
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
run apply --no-report
umount /proc/sys
expect "not-applicable/exit-0" test "$code" = 0
expect "not-applicable/result" test "$(val 'shmprov_last_apply{result="not-applicable"}')" = 1
expect "not-applicable/nothing-in-sync" test "$(val 'shmprov_in_sync{key="kernel.shmmax",check="runtime"}') $(val 'shmprov_in_sync{key="kernel.shmmax",check="dropin"}') $(val 'shmprov_in_sync{key="kernel.shmmax",check="boot"}')" = "0 0 0"
lint not-applicable "$tf"

# ---- not written: --dry-run, --root ----
run apply --no-report
cp "$tf" "$work/before.prom"
sleep 1
run apply --dry-run
expect "dry-run/textfile-untouched" cmp -s "$tf" "$work/before.prom"
mkdir "$work/image"
run apply --no-report --root "$work/image"
expect "root/exit-0" test "$code" = 0
expect "root/textfile-untouched" cmp -s "$tf" "$work/before.prom"

# ---- reports: the spool's figures ----
profile report "$tf" 'report:\n  url: http://127.0.0.1:9/v1/events\n  timeout: 1\n'
"$shmprov" --profile "$work/report.yaml" apply --defer-report >"$work/out" 2>"$work/err"
expect "spool/exit-0" test $? = 0
expect "spool/one-waiting" test "$(val shmprov_reports_waiting) $(val shmprov_reports_dropped) $(val shmprov_reports_quarantined) $(val shmprov_reports_rejected)" = "1 0 0 0"
"$shmprov" --profile "$work/report.yaml" apply --defer-report >/dev/null 2>&1
expect "spool/two-waiting" test "$(val shmprov_reports_waiting)" = 2
echo 7 >/var/lib/shmprov/spool/dropped.count
"$shmprov" --profile "$work/report.yaml" --output prometheus status >"$work/spool.prom" 2>"$work/err"
expect "spool/status-reads-the-counters" test "$(val shmprov_reports_dropped "$work/spool.prom")" = 7
lint spool "$work/spool.prom"

# ---- segments: a probe leftover and an orphan candidate ----
"$py" -c 'import ctypes; assert ctypes.CDLL(None).shmget(0x73686d70, 4096, 0o1600) >= 0'
"$py" -c 'import ctypes; assert ctypes.CDLL(None).shmget(0x00c0ffee, 8192, 0o1600) >= 0'
run verify
expect "segments/verify-leftover" test "$(val shmprov_probe_leftovers) $(val shmprov_orphan_candidates)" = "1 1"
expect "segments/verify-usage" test "$(val shmprov_segments) $(val shmprov_segments_bytes) $(val shmprov_largest_segment_bytes)" = \
    "2 12288 8192"
run status
expect "segments/status" test "$(val shmprov_probe_leftovers) $(val shmprov_orphan_candidates) $(val shmprov_segments_pages)" = \
    "1 1 $(( (4096 + page - 1) / page + (8192 + page - 1) / page ))"
run apply --no-report
expect "segments/apply-removed-the-leftover" test "$(val shmprov_probe_leftovers) $(val shmprov_orphan_candidates)" = "0 1"
profile persistent "$tf" 'segments:\n  persistent_keys: [0x00c0ffee]\n'
"$shmprov" --profile "$work/persistent.yaml" status >/dev/null 2>&1
expect "segments/persistent-not-counted" test "$(val shmprov_orphan_candidates)" = 0
run status --remove-orphans
expect "segments/remove-orphans-exit-0" test "$code" = 0
expect "segments/after-removal-read-again" test "$(val shmprov_orphan_candidates) $(val shmprov_segments)" = "0 0"
lint segments "$tf"

# ---- never partial: readers during 100 rewrites only ever see whole files ----
"$py" - "$tf" "$work/partial" <<'PY' &
import os, sys, time
path, flag = sys.argv[1], sys.argv[2]
end = time.time() + 60
bad = 0
while time.time() < end and not os.path.exists(flag + ".stop"):
    try:
        text = open(path).read()
    except FileNotFoundError:
        bad += 1
        continue
    if not text.endswith("\n") or not text.splitlines()[-1].startswith("shmprov_info{"):
        bad += 1
open(flag, "w").write(str(bad))
PY
reader=$!
for _ in $(seq 100); do "$shmprov" --profile "$work/ok.yaml" status >/dev/null 2>&1; done
touch "$work/partial.stop"
wait "$reader"
expect "atomic/never-partial-nor-missing" test "$(cat "$work/partial")" = 0
expect "atomic/no-temp-files" no_temps

# ---- a symlink at the path is replaced, never followed ----
echo "the link's target" >"$work/target"
rm -f "$tf" && ln -s "$work/target" "$tf"
run apply --no-report
expect "symlink/exit-0" test "$code" = 0
expect "symlink/replaced" test -f "$tf" -a ! -L "$tf"
expect "symlink/target-untouched" test "$(cat "$work/target")" = "the link's target"
expect "symlink/mode-0644" test "$(stat -c %a "$tf")" = 644
expect "symlink/whole" test "$(count shmprov_last_apply) $(tail -n 1 "$tf" | cut -c1-13)" = "1 shmprov_info{"
expect "symlink/no-leftovers" test ! -e "$tf.new"
lint symlink "$tf"

# ---- failures to write are warnings, the exit status is the command's ----
profile missing /var/lib/prometheus/no-such-dir/shmprov.prom
for c in "apply --no-report" verify status; do
    # shellcheck disable=SC2086
    "$shmprov" --profile "$work/missing.yaml" $c >"$work/out" 2>"$work/err"
    code=$?
    expect "missing-dir/$c-exit-0" test "$code" = 0
    expect "missing-dir/$c-warns" grep -q "warning: cannot write the metrics to /var/lib/prometheus/no-such-dir/shmprov.prom: its directory does not exist" "$work/err"
done
expect "missing-dir/not-created" test ! -e /var/lib/prometheus/no-such-dir
echo 1 >$K/shmmax
"$shmprov" --profile "$work/missing.yaml" verify >/dev/null 2>&1
expect "missing-dir/verify-drift-still-exit-3" test $? = 3
"$shmprov" --profile "$work/missing.yaml" apply --no-report >/dev/null 2>&1
rm -f "$tf" && mkdir "$tf"
run apply --no-report
expect "not-a-file/exit-0" test "$code" = 0
expect "not-a-file/warns" grep -q "warning: cannot write the metrics to $tf: " "$work/err"
rmdir "$tf"
# As root a directory's mode does not stop the write: a read-only mount does.
mount --bind "$dir" "$dir" && mount -o remount,bind,ro "$dir"
run apply --no-report
umount "$dir"
expect "read-only/exit-0" test "$code" = 0
expect "read-only/warns" grep -q "warning: cannot write the metrics to $tf: Read-only file system" "$work/err"

# ---- -q hides the warning, never the exit status ----
"$shmprov" -q --profile "$work/missing.yaml" status >/dev/null 2>"$work/err"
expect "quiet/exit-0" test $? = 0
expect "quiet/silent" test ! -s "$work/err"

rm -rf "$work"
finish
