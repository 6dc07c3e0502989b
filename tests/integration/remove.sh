#!/bin/bash
# `shmprov remove`, the inverse of apply, for real: the real binary on the
# real kernel in a private IPC + mount namespace (lib.sh), the real
# systemd-sysctl reading what is left, the test collector on 127.0.0.1.
# Every block starts from a clean state.
# Usage: remove.sh SHMPROV SOURCE_DIR
set -u
shmprov=$1
src=$2
. "$src/tests/integration/lib.sh"
start_suite "$@"
record=/var/lib/shmprov/dropin.sha256
state=/var/lib/shmprov/state.json
# LeakSanitizer cannot run under ptrace: the straced runs go without it.
nolsan="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

# Only what this suite writes is read at boot: the host's own sysctl.d
# files set global keys that the real systemd-sysctl must never write.
for d in /usr/lib/sysctl.d /lib/sysctl.d; do
    [ -d "$d" ] && ! mountpoint -q "$d" && mount -t tmpfs -o size=4m,mode=0755 shmprov-test "$d"
done

json() { "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
profile() { # NAME CONTENT: a profile root may use
    printf '%b' "$2" >"$work/$1.yaml"
    chmod 0644 "$work/$1.yaml"
}
runtime() { echo "$(cat $K/shmmax) $(cat $K/shmall) $(cat $K/shmmni)"; }
defaults() { echo $DEFAULT >$K/shmmax; echo $DEFAULT >$K/shmall; echo 4096 >$K/shmmni; }
reset() { # the kernel's defaults, empty sysctl.d directories, no state
    for d in /etc/sysctl.d /usr/lib/sysctl.d; do
        umount -q "$d" 2>/dev/null
        mount -t tmpfs -o size=4m,mode=0755 shmprov-test "$d"
    done
    rm -rf /run/sysctl.d/* /run/shmprov /var/lib/shmprov/*
    printf '# (test) nothing here\n' >/etc/sysctl.conf
    defaults
    ipcrm --all=shm 2>/dev/null
}
# What a removal changes: the sysctl.d files (bytes and modes), the
# runtime, the apply the state file remembers, the purge record. (Every
# run on the live system records itself as the state's last_run.)
snapshot() {
    for f in /etc/sysctl.d/* /usr/lib/sysctl.d/* "$record"; do
        [ -e "$f" ] && echo "$f $(stat -c %a "$f") $(sha256sum <"$f")"
    done
    [ -e "$state" ] && json "$state" "d['last_apply']"
    runtime
}
remove() { # NAME ARGS...: remove with the small profile; code, $work/NAME.{json,err}
    local name=$1
    shift
    "$shmprov" --profile "$work/small.yaml" --output json remove "$@" >"$work/$name.json" 2>"$work/$name.err"
    code=$?
}
apply_small() { "$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null 2>&1; }

profile small 'version: 1\nhost: {ram_tier: small}\n'
small_max=4294967296
small_all=$((small_max / page))

# 1. apply, then remove: drop-in and record gone, kernel defaults back, proven
reset
apply_small
expect "1/applied" test "$(runtime)" = "$small_max $small_all 4096"
remove r1
expect "1/exit-0" test "$code" = 0
expect "1/result-removed" test "$(json "$work/r1.json" "d['command'], d['result'], d['error']")" = "remove removed None"
expect "1/dropin-gone" test ! -e "$dropin"
expect "1/purge-record-gone" test ! -e "$record"
expect "1/runtime-kernel-defaults" test "$(runtime)" = "$DEFAULT $DEFAULT 4096"
expect "1/probe-passed" test "$(json "$work/r1.json" "d['probe']['passed']")" = True
expect "1/report-keys" test "$(json "$work/r1.json" "[(k['key'], k['before'], k['target_decimal'], k['source'], k['action']) for k in d['keys']]")" = \
    "[('kernel.shmmax', $small_max, '$DEFAULT', 'kernel default', 'raise'), ('kernel.shmall', $small_all, '$DEFAULT', 'kernel default', 'raise')]"
expect "1/dropin-in-report" test "$(json "$work/r1.json" "d['dropin']['changed'], d['dropin']['sha256'], d['dropin']['sha256_on_disk']")" = "True None None"
expect "1/state-forgets-the-apply" test "$(json "$state" "d['last_apply'], d['last_run']['result']")" = "None removed"
expect "1/next-apply-sees-no-drift" test "$("$shmprov" --profile "$work/small.yaml" --output json apply --no-report 2>/dev/null |
    "$py" -c 'import json,sys; d=json.load(sys.stdin); print(d["result"], d["drift"])')" = "changed []"

# 2. other files set keys: each key goes to the boot-order winner of what is
# left, as the real systemd-sysctl decides it
reset
printf 'kernel.shmmax = 123456789\n' >/usr/lib/sysctl.d/50-shm.conf
# Same name as shmprov's: hidden by it, read once it is gone.
printf 'kernel.shmall = 777777\nkernel.shmmax = 1\n' >/usr/lib/sysctl.d/60-shmprov.conf
printf 'kernel.shmmax = 2222222\n' >/etc/sysctl.d/10-early.conf
apply_small
expect "2/applied" test "$(runtime)" = "$small_max $small_all 4096"
"$shmprov" --profile "$work/small.yaml" remove --dry-run >"$work/r2-dry.txt" 2>&1
expect "2/dry-run-names-the-sources" grep -q "kernel.shmall: $small_all -> 777777 (/usr/lib/sysctl.d/60-shmprov.conf:1)" "$work/r2-dry.txt"
remove r2
expect "2/exit-0" test "$code" = 0
expect "2/runtime-from-the-files" test "$(runtime)" = "1 777777 4096"
expect "2/winning-file" test "$(json "$work/r2.json" "[k['winning_file']['systemd-sysctl'] for k in d['keys']]")" = \
    "['/usr/lib/sysctl.d/60-shmprov.conf:2', '/usr/lib/sysctl.d/60-shmprov.conf:1']"
removed=$(runtime)
defaults
/lib/systemd/systemd-sysctl >"$work/systemd2.out" 2>&1
expect "2/real-systemd-sysctl-agrees" test "$(runtime)" = "$removed"
rm /usr/lib/sysctl.d/60-shmprov.conf
apply_small
remove r2b
expect "2/next-winner-50-shm" test "$(runtime)" = "123456789 $DEFAULT 4096"
removed=$(runtime)
defaults
/lib/systemd/systemd-sysctl >/dev/null 2>&1
expect "2/real-systemd-sysctl-agrees-again" test "$(runtime)" = "$removed"

# 3. an edited drop-in is refused, nothing changed; --force removes it
reset
apply_small
echo "kernel.shmmni = 5000" >>"$dropin"
before=$(snapshot)
remove r3
expect "3/exit-1" test "$code" = 1
expect "3/refused-not-owned" test "$(json "$work/r3.json" "d['result'], d['error']['code'], d['error']['step']")" = \
    "refused dropin-not-owned ownership"
expect "3/says-edited" grep -q "refusing to remove $dropin: edited since shmprov wrote it" "$work/r3.err"
expect "3/nothing-changed" test "$(snapshot)" = "$before"
remove r3f --force
expect "3/force-exit-0" test "$code/$(json "$work/r3f.json" "d['result']")" = "0/removed"
expect "3/force-deleted" test ! -e "$dropin"
# The edit set shmmni too: the file's keys go back to their boot values.
expect "3/force-runtime-defaults" test "$(runtime)" = "$DEFAULT $DEFAULT 4096"

# 4. no record: shmprov's header and the profile's text, else refused
reset
apply_small
rm -f "$state" "$record"
remove r4
expect "4/rendered-removed" test "$code/$(json "$work/r4.json" "d['result']")" = "0/removed"
printf 'kernel.shmmax = 1048576\n' >"$dropin"
remove r4b
expect "4/foreign-refused" test "$code/$(json "$work/r4b.json" "d['error']['code']")" = "1/dropin-not-owned"
expect "4/foreign-said" grep -q "not shmprov's: it does not start with shmprov's header" "$work/r4b.err"
"$shmprov" --profile "$work/small.yaml" plan --output json 2>/dev/null | json /dev/stdin "d['dropin']['content']" |
    sed 's/^kernel.shmmax = .*/kernel.shmmax = 1/' >"$dropin"
remove r4c
expect "4/header-but-other-text-refused" test "$code/$(json "$work/r4c.json" "d['error']['code']")" = "1/dropin-not-owned"

# 5. a symbolic link or a directory: refused even with --force
reset
apply_small
mv "$dropin" "$work/real.conf"
ln -s "$work/real.conf" "$dropin"
before=$(snapshot)
remove r5 --force
expect "5/symlink-refused" test "$code/$(json "$work/r5.json" "d['result'], d['error']['code'], d['error']['step']")" = \
    "1/refused io dropin"
expect "5/symlink-kept" test -L "$dropin" -a "$(snapshot)" = "$before"
rm "$dropin" && mkdir "$dropin"
remove r5b --force
expect "5/directory-refused" test "$code/$(json "$work/r5b.json" "d['error']['code']")" = "1/io"
rmdir "$dropin"

# 6. --keep-runtime deletes the file only; a later remove sets the runtime
reset
apply_small
ASAN_OPTIONS=$nolsan strace -f -qq -e trace=openat -o "$work/strace6.log" \
    "$shmprov" --profile "$work/small.yaml" --output json remove --keep-runtime >"$work/r6.json" 2>"$work/r6.err"
code=$?
expect "6/exit-0" test "$code/$(json "$work/r6.json" "d['result']")" = "0/removed"
expect "6/dropin-gone" test ! -e "$dropin"
expect "6/runtime-untouched" test "$(runtime)" = "$small_max $small_all 4096"
expect "6/no-proc-write" test -z "$(grep -E '/proc/sys/kernel/shm.*O_(WRONLY|RDWR)' "$work/strace6.log")"
expect "6/says-so" test "$(json "$work/r6.json" "d['runtime_skipped'] is not None, d['probe']")" = "True None"
remove r6b
expect "6/later-remove-sets-runtime" test "$code/$(json "$work/r6b.json" "d['result']")/$(runtime)" = \
    "0/removed/$DEFAULT $DEFAULT 4096"

# 7. --dry-run changes nothing and says what would be done
reset
printf 'kernel.shmall = 55555\n' >/etc/sysctl.d/10-early.conf
apply_small
before="$(snapshot) $(sha256sum <"$state")"
"$shmprov" --profile "$work/small.yaml" remove --dry-run >"$work/r7.txt" 2>&1
code=$?
expect "7/exit-0" test "$code" = 0
expect "7/nothing-changed-not-even-the-state" test "$(snapshot) $(sha256sum <"$state")" = "$before"
expect "7/would-delete" grep -q "drop-in $dropin: would be deleted" "$work/r7.txt"
expect "7/key-from-to-default" grep -q "kernel.shmmax: $small_max -> $DEFAULT (kernel default)" "$work/r7.txt"
expect "7/key-from-to-file" grep -q "kernel.shmall: $small_all -> 55555 (/etc/sysctl.d/10-early.conf:1)" "$work/r7.txt"
remove r7j --dry-run
expect "7/json-dry-run" test "$code/$(json "$work/r7j.json" "d['result'], d['dropin']['changed']")" = "0/dry-run False"
expect "7/json-nothing-changed" test "$(snapshot) $(sha256sum <"$state")" = "$before"

# 8. --root DIR: the drop-in under DIR only; no runtime, no state
reset
apply_small
mkdir -p "$work/image"
"$shmprov" --profile "$work/small.yaml" apply --no-report --root "$work/image" >/dev/null 2>&1
before=$(snapshot)
"$shmprov" --profile "$work/small.yaml" remove --root "$work/image" >"$work/r8.txt" 2>&1
code=$?
expect "8/exit-0" test "$code" = 0
expect "8/gone-under-root" test ! -e "$work/image$dropin"
expect "8/host-untouched" test "$(snapshot)" = "$before"
expect "8/says-root" grep -q "running kernel not touched: --root" "$work/r8.txt"
expect_code "8/relative-root-usage" 2 "$shmprov" --profile "$work/small.yaml" remove --root image

# 9. a failure in the middle rolls everything back
reset
apply_small
chmod 0600 "$dropin"
before=$(snapshot)
ASAN_OPTIONS=$nolsan strace -o /dev/null -e inject=shmget:error=ENOSPC \
    "$shmprov" --profile "$work/small.yaml" --output json remove >"$work/r9.json" 2>"$work/r9.err"
code=$?
expect "9/probe-fails-exit-1" test "$code" = 1
expect "9/result-failed" test "$(json "$work/r9.json" "d['result'], d['error']['code'], d['rollback']['complete'], d['dropin']['changed']")" = \
    "failed probe-failed True False"
expect "9/all-put-back-mode-too" test "$(snapshot)" = "$before"
expect "9/says-restored" grep -q "restored: .*drop-in $dropin restored to its previous bytes" "$work/r9.err"
ASAN_OPTIONS=$nolsan strace -o /dev/null -P $K/shmmax -e trace=write -e inject=write:error=EIO \
    "$shmprov" --profile "$work/small.yaml" --output json remove >"$work/r9b.json" 2>"$work/r9b.err"
code=$?
expect "9/kernel-write-fails" test "$code/$(json "$work/r9b.json" "d['error']['code'], d['rollback']['complete']")" = "1/kernel-write True"
expect "9/kernel-write-put-back" test "$(snapshot)" = "$before"
expect "9/record-kept" sha256sum --check --status "$record"
chmod 0644 "$dropin"

# 10. remove twice: the second has nothing to remove
reset
apply_small
remove r10a
remove r10b
expect "10/second-exit-0" test "$code/$(json "$work/r10b.json" "d['result'], d['probe']")" = "0/unchanged None"
"$shmprov" --profile "$work/small.yaml" remove >"$work/r10c.txt" 2>&1
expect "10/says-nothing-to-remove" grep -q "^shmprov remove: nothing to remove" "$work/r10c.txt"

# 11. a boot value shmprov cannot read: refused, named; --keep-runtime still works
reset
apply_small
printf '# a comment\nkernel.shmmax = 0x1000\n' >/etc/sysctl.d/99-hex.conf
before=$(snapshot)
remove r11
expect "11/refused" test "$code/$(json "$work/r11.json" "d['result'], d['error']['code'], d['error']['step']")" = \
    "1/refused boot-value-unknown boot-values"
expect "11/names-file-line" grep -q "/etc/sysctl.d/99-hex.conf:2 sets kernel.shmmax to '0x1000'" "$work/r11.err"
expect "11/nothing-changed" test "$(snapshot)" = "$before"
remove r11b --keep-runtime
expect "11/keep-runtime-removes" test "$code/$(json "$work/r11b.json" "d['result']")" = "0/removed"

# 12. no profile: the drop-in the last apply recorded; said; no report
reset
start_collector "$work" || bad "12/collector started"
trap 'kill $collector 2>/dev/null' EXIT
url=http://127.0.0.1:$port/v1/events
profile reporting "version: 1\nhost: {ram_tier: small}\nreport:\n  url: $url\n  timeout: 5\nmetrics:\n  textfile: /var/lib/shmprov/shmprov.prom\n"
"$shmprov" --profile "$work/reporting.yaml" apply >/dev/null 2>&1
mv "$work/reporting.yaml" "$work/gone.yaml"
events=$(grep -c . "$work/log.jsonl")
"$shmprov" --profile "$work/reporting.yaml" remove >"$work/r12.txt" 2>"$work/r12.err"
code=$?
expect "12/exit-0" test "$code" = 0
expect "12/says-the-recorded-drop-in" grep -q "no profile $work/reporting.yaml: removing the drop-in the last apply recorded, $dropin" "$work/r12.err"
expect "12/removed" test ! -e "$dropin" -a "$(runtime)" = "$DEFAULT $DEFAULT 4096"
expect "12/no-report" test "$(grep -c . "$work/log.jsonl")" = "$events"

# 13. the report reaches the collector; the metrics say removed
mv "$work/gone.yaml" "$work/reporting.yaml"
"$shmprov" --profile "$work/reporting.yaml" apply >/dev/null 2>&1
"$shmprov" --profile "$work/reporting.yaml" remove >/dev/null 2>"$work/r13.err"
expect "13/exit-0" test $? = 0
expect "13/report-removed" "$py" - "$work/log.jsonl" "$src/schemas/report.schema.json" <<'PY'
import json, sys, jsonschema
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ev = json.loads(recs[-1]["body"])
ev = ev[-1] if isinstance(ev, list) else ev
jsonschema.Draft202012Validator(json.load(open(sys.argv[2]))).validate(ev["data"])
assert (ev["data"]["command"], ev["data"]["result"]) == ("remove", "removed"), ev["data"]["result"]
PY
expect "13/metrics-removed" grep -q '^shmprov_last_apply{result="removed"} 1$' /var/lib/shmprov/shmprov.prom
expect "13/metrics-runtime" grep -q "^shmprov_limit_bytes{key=\"kernel.shmmax\",value=\"running\"} $DEFAULT$" /var/lib/shmprov/shmprov.prom
kill "$collector" 2>/dev/null

# 14. read-only /proc/sys (a container): the drop-in goes, the runtime is not applicable
reset
apply_small
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
remove r14
umount /proc/sys
expect "14/exit-0" test "$code/$(json "$work/r14.json" "d['result']")" = "0/removed"
expect "14/says-not-applicable" grep -q "not applicable" "$work/r14.json"
expect "14/dropin-gone-runtime-kept" test ! -e "$dropin" -a "$(runtime)" = "$small_max $small_all 4096"

# 15. procps reads /etc/sysctl.conf last: a different value there is said
reset
apply_small
printf 'kernel.shmmax = 8888888\n' >/etc/sysctl.conf
remove r15
expect "15/removed-as-systemd-sysctl" test "$code/$(runtime)" = "0/$DEFAULT $DEFAULT 4096"
expect "15/procps-difference-warned" test "$(json "$work/r15.json" "d['warnings']")" = \
    "[\"kernel.shmmax: 'sysctl --system' would set 8888888 from /etc/sysctl.conf:1, not what systemd-sysctl sets at boot\"]"
printf '# (test) nothing here\n' >/etc/sysctl.conf

# 16. the options
expect_code "16/keep-runtime-is-remove-only" 2 "$shmprov" --profile "$work/small.yaml" apply --keep-runtime
expect_code "16/persist-only-is-apply-only" 2 "$shmprov" --profile "$work/small.yaml" remove --persist-only
expect_code "16/no-report-flag" 0 "$shmprov" --profile "$work/small.yaml" remove --no-report
expect_code "16/no-argument" 2 "$shmprov" --profile "$work/small.yaml" remove extra
expect "16/help" sh -c "'$shmprov' --help | grep -q '^  remove '"

# Every JSON document remove printed is report data: check the schema.
"$py" "$src/tests/schema/validate_json.py" "$src/schemas/report.schema.json" "$work"/r*.json >"$work/schema.out" 2>&1
code=$?
expect "report-schema/every-remove-document-valid ($(tail -n 1 "$work/schema.out"))" test "$code" = 0
[ "$code" = 0 ] || cat "$work/schema.out"

finish
