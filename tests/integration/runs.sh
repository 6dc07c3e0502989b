#!/bin/bash
# Every run that decides something is visible to the collector (README
# "Reports"): one event per apply result, refusals and failures included,
# verify --report, apply --dry-run --report and remove; drift against the state
# file; the state left behind after a rollback; identity; the JSON number
# and UTF-8 contracts. The real binary in a private IPC + mount (+ UTS)
# namespace, reporting to the test collector on 127.0.0.1. Every body the
# collector gets is checked against the schema, as strict UTF-8, and for
# numbers above 2^53-1.
# Usage: runs.sh SHMPROV SOURCE_DIR
set -u
shmprov=$1
src=$2
. "$src/tests/integration/lib.sh"
start_suite "$@"
start_collector "$work" || { bad "collector started"; finish; exit 1; }
trap 'kill $collector 2>/dev/null' EXIT
url=http://127.0.0.1:$port/v1/events

profile() { # NAME [EXTRA YAML]
    printf 'version: 1\nhost: {ram_tier: small}\nreport:\n  url: %s\n  timeout: 5\n%b' "$url" "${2:-}" >"$work/$1.yaml"
    chmod 0644 "$work/$1.yaml"
}
profile ok
run() { # PROFILE ARGS...: sets code; stdout in $work/out, stderr in $work/err
    local p=$1
    shift
    "$shmprov" --profile "$work/$p.yaml" "$@" >"$work/out" 2>"$work/err"
    code=$?
}
# data EXPR: EXPR over d, the data of the last event the collector got.
data() {
    "$py" - "$work/log.jsonl" "$1" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
body = json.loads(recs[-1]["body"])
ev = body[-1] if isinstance(body, list) else body
d = ev["data"]
r = eval(sys.argv[2])
print(*r) if isinstance(r, tuple) else print(r)
PY
}
events() { grep -c . "$work/log.jsonl" 2>/dev/null || echo 0; }

# ---- changed, then unchanged: sequence and time order them ----
run ok apply
expect "changed/exit-0" test "$code" = 0
expect "changed/result" test "$(data "d['command'], d['result'], d['corrective_change'], d['drift'], d['error']")" = \
    "apply changed False [] None"
expect "changed/state-file" test -s /var/lib/shmprov/state.json
# What a package purge checks before it deletes the drop-in.
record=/var/lib/shmprov/dropin.sha256
expect "changed/dropin-record" test "$(cat "$record")" = \
    "$(sha256sum /etc/sysctl.d/60-shmprov.conf)"
run ok apply
expect "unchanged/result" test "$(data "d['result'], d['dropin']['changed']")" = "unchanged False"
expect "order/sequence-and-time" "$py" - "$work/log.jsonl" <<'PY'
import json, sys
evs = [json.loads(json.loads(l)["body"]) for l in open(sys.argv[1]) if l.strip()]
seq = [e["sequence"] for e in evs]
assert len(seq) == 2 and seq[0] < seq[1] and all(len(s) == 20 for s in seq), seq
assert evs[0]["time"] < evs[1]["time"], [e["time"] for e in evs]
PY

# ---- drift: a hand-made change is put back and said ----
echo 1234567 >/proc/sys/kernel/shmmax
run ok apply
expect "drift-runtime/changed-and-corrective" test "$(data "d['result'], d['corrective_change']")" = "changed True"
expect "drift-runtime/what" test "$(data "[(x['kind'], x['key'], x['found']) for x in d['drift']]")" = \
    "[('runtime', 'kernel.shmmax', '1234567')]"
echo "# edited by hand" >>"$dropin"
expect "dropin-record/sees-the-edit" not sha256sum --check --status "$record"
run ok apply
expect "dropin-record/after-the-repair" sha256sum --check --status "$record"
expect "drift-dropin/what" test "$(data "[(x['kind'], x['file']) for x in d['drift']], d['corrective_change']")" = \
    "[('dropin-edited', '$dropin')] True"
run ok apply
expect "drift/none-after-correction" test "$(data "d['result'], d['drift'], d['corrective_change']")" = "unchanged [] False"

# ---- remove: refused (an edited drop-in, a boot value it cannot read), then removed ----
echo "# edited by hand" >>"$dropin"
run ok remove
expect "remove-edited/refused" test "$code/$(data "d['command'], d['result'], d['error']['code'], d['error']['step']")" = \
    "1/remove refused dropin-not-owned ownership"
run ok apply
printf 'kernel.shmmax = 1e9\n' >/etc/sysctl.d/10-sci.conf
run ok remove
expect "remove-boot-value/refused" test "$code/$(data "d['result'], d['error']['code'], d['error']['step']")" = \
    "1/refused boot-value-unknown boot-values"
rm /etc/sysctl.d/10-sci.conf
run ok remove
expect "remove/removed" test "$code/$(data "d['result'], d['dropin']['changed'], d['keys'][0]['source']")" = \
    "0/removed True kernel default"
expect "remove/dropin-and-record-gone" test ! -e "$dropin" -a ! -e "$record"
run ok apply
expect "remove/next-apply-no-drift" test "$(data "d['result'], d['drift']")" = "changed []"

# ---- verify --report: in sync, then drift with each discrepancy ----
run ok verify --report
expect "verify-in-sync/exit-0" test "$code" = 0
expect "verify-in-sync/result" test "$(data "d['command'], d['result'], d['drift']")" = "verify in-sync []"
echo 7654321 >/proc/sys/kernel/shmmax
run ok verify --report
expect "verify-drift/exit-3" test "$code" = 3
expect "verify-drift/result" test "$(data "d['result'], [(x['kind'], x['key'], x['found']) for x in d['drift']]")" = \
    "drift [('runtime', 'kernel.shmmax', '7654321')]"
expect "verify-drift/json-is-the-report" test "$("$shmprov" --profile "$work/ok.yaml" --output json verify 2>/dev/null |
    "$py" -c 'import json,sys; d=json.load(sys.stdin); print(d["result"], d["drift"][0]["kind"])')" = "drift runtime"
n=$(events)
expect_code "verify-no-report/exit-3" 3 "$shmprov" --profile "$work/ok.yaml" verify
expect "verify-no-report/nothing-sent" test "$(events)" = "$n"

# ---- verify --report: every kind of discrepancy, one at a time ----
run ok apply
kinds() { run ok verify --report; echo "$code $(data "sorted({x['kind'] for x in d['drift']})")"; }
mv "$dropin" "$work/dropin.saved"
expect "verify-kind/dropin-missing" test "$(kinds)" = "3 ['dropin-missing']"
ln -s "$work/dropin.saved" "$dropin"
expect "verify-kind/dropin-symlink" test "$(kinds)" = "3 ['dropin-symlink']"
rm "$dropin" && mkdir "$dropin"
expect "verify-kind/dropin-unreadable" test "$(kinds)" = "3 ['dropin-unreadable']"
rmdir "$dropin" && cp "$work/dropin.saved" "$dropin"
# A file name that is not UTF-8 (byte 0xe9) comes out escaped, reversibly.
printf 'kernel.shmmax = %s\n' "$(cat /proc/sys/kernel/shmmax)" >/etc/sysctl.d/99-zz-caf$'\xe9'.conf
expect "verify-kind/overridden" test "$(kinds)" = "3 ['overridden']"
expect "file-name-0xe9/escaped" test "$(data "d['drift'][0]['file']")" = '/etc/sysctl.d/99-zz-caf\xe9.conf'
rm /etc/sysctl.d/99-zz-caf$'\xe9'.conf
# A test segment a killed shmprov left behind: its key, mode 0600, creator gone.
"$py" -c 'import ctypes; assert ctypes.CDLL(None).shmget(0x73686d70, 4096, 0o1600) >= 0'
expect "verify-kind/probe-leftover" test "$(kinds)" = "3 ['probe-leftover']"
run ok apply
expect "verify-kind/apply-removes-the-leftover" test "$(data "len(d['probe_leftovers_removed'])")" = 1
echo 7654321 >/proc/sys/kernel/shmmax

# ---- apply --dry-run --report ----
run ok apply --dry-run --report
expect "dry-run/result" test "$(data "d['result'], d['keys'][0]['after'] == d['keys'][0]['before'], d['dropin']['changed']")" = \
    "dry-run True False"
expect "dry-run/changed-nothing" test "$(cat /proc/sys/kernel/shmmax)" = 7654321
expect_code "usage/report-needs-dry-run" 2 "$shmprov" --profile "$work/ok.yaml" apply --report
expect_code "usage/plan-has-no-report" 2 "$shmprov" --profile "$work/ok.yaml" plan --report

# ---- refused: a boot-order conflict ----
printf 'kernel.shmmax = 4096\n' >/etc/sysctl.d/99-zz-override.conf
run ok apply
expect "refused-conflict/exit-1" test "$code" = 1
expect "refused-conflict/result" test "$(data "d['result'], d['error']['code'], d['error']['step'], d['dropin']['changed']")" = \
    "refused conflict conflicts False"
expect "refused-conflict/keys-as-they-are" test "$(data "d['keys'][0]['after']")" = 7654321
rm /etc/sysctl.d/99-zz-override.conf

# ---- refused: segments in use (the guard) ----
"$py" - "$work/seg-id" <<'PY' &
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
seg = libc.shmget(0, ctypes.c_size_t(3 << 20), 0o600 | 0o1000 | 0o10000)
assert seg >= 0, os.strerror(ctypes.get_errno())
open(sys.argv[1], "w").write(str(seg))
time.sleep(60)
PY
segpid=$!
for _ in $(seq 50); do [ -s "$work/seg-id" ] && break; sleep 0.1; done
profile tiny 'limits:\n  shmmax: 2MiB\n'
run tiny apply
expect "refused-guard/result" test "$code/$(data "d['result'], d['error']['code'], d['error']['step']")" = \
    "1/refused segments-in-use guard"
kill "$segpid"; wait "$segpid" 2>/dev/null
"$py" -c 'import ctypes,sys; ctypes.CDLL(None).shmctl(int(sys.argv[1]), 0, None)' "$(cat "$work/seg-id")"

# ---- refused: /proc/meminfo unreadable under ram_tier auto ----
mkdir -p "$work/fakeproc"
printf 'version: 1\nreport:\n  url: %s\n  timeout: 5\n' "$url" >"$work/auto.yaml"
chmod 0644 "$work/auto.yaml"
SHMPROV_TEST_PROC_DIR=$work/fakeproc "$shmprov" --profile "$work/auto.yaml" apply >"$work/out" 2>"$work/err"
code=$?
expect "refused-meminfo/result" test "$code/$(data "d['result'], d['error']['code'], d['error']['step'], d['keys'], d['profile']['tier']")" = \
    "1/refused host-unreadable plan [] None"

# ---- refused: the lock is held ----
mkdir -p /run/shmprov
flock /run/shmprov/apply.lock sleep 14 &
lockpid=$!
sleep 0.3
run ok apply
expect "refused-lock/result" test "$code/$(data "d['result'], d['error']['code'], d['error']['step']")" = \
    "1/refused lock-timeout lock"
kill "$lockpid"; wait "$lockpid" 2>/dev/null

# ---- failed and rolled back: the test allocation fails ----
before=$(cat /proc/sys/kernel/shmmax)
# LeakSanitizer cannot run under ptrace: the sanitizer build's straced runs
# go without it.
nolsan="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
ASAN_OPTIONS=$nolsan strace -o /dev/null -e inject=shmget:error=ENOSPC "$shmprov" --profile "$work/ok.yaml" apply >"$work/out" 2>"$work/err"
code=$?
expect "failed/exit-1" test "$code" = 1
expect "failed/result" test "$(data "d['result'], d['error']['code'], d['error']['step'], d['rollback']['complete']")" = \
    "failed probe-failed probe True"
expect "failed/state-left-behind" test "$(data "d['keys'][0]['after'], d['dropin']['changed']")" = "$before False"
expect "failed/runtime-put-back" test "$(cat /proc/sys/kernel/shmmax)" = "$before"

# ---- failed: each error code a failing apply has, and a rollback that could not finish ----
defaults() { echo $DEFAULT >$K/shmmax; echo $DEFAULT >$K/shmall; rm -f "$dropin"; }
defaults
traced() { # STRACE-ARGS...: apply ok.yaml under strace, sets code
    ASAN_OPTIONS=$nolsan strace -o /dev/null "$@" "$shmprov" --profile "$work/ok.yaml" apply >"$work/out" 2>"$work/err"
    code=$?
}
traced -P $K/shmmax -e trace=write -e inject=write:error=EIO
expect "kernel-write/result" test "$code/$(data "d['result'], d['error']['code'], d['error']['step'], d['rollback']['complete']")" = \
    "1/failed kernel-write runtime True"
defaults
# The first write lands, every later one fails: shmmax cannot be put back.
traced -P $K/shmmax -P $K/shmall -e trace=write -e inject=write:error=EIO:when=2+
expect "not-restored/result" test "$code/$(data "d['result'], d['error']['code'], d['rollback']['complete']")" = \
    "1/failed kernel-write False"
expect "not-restored/says-what-it-holds" test "$(data "d['keys'][0]['after'], 'NOT restored' in d['rollback']['message']")" = \
    "$(cat $K/shmmax) True"
defaults
# The third read of shmmax is the read-back right after writing it.
traced -P $K/shmmax -e trace=read -e inject=read:error=EIO:when=3
expect "readback/result" test "$code/$(data "d['result'], d['error']['code'], d['rollback']['complete']")" = \
    "1/failed readback True"
defaults
mount -o remount,ro /etc/sysctl.d
run ok apply
mount -o remount,rw /etc/sysctl.d
expect "io/result" test "$code/$(data "d['result'], d['error']['code'], d['error']['step'], d['rollback']")" = \
    "1/failed io dropin None"
# Not root: the kernel's limits cannot be changed (the profile and the
# lock are where that user can read and open them).
cp "$work/ok.yaml" /etc/shmprov/ok.yaml
mkdir -p /run/shmprov && touch /run/shmprov/apply.lock && chmod 0666 /run/shmprov/apply.lock
setpriv --reuid=nobody --regid=nogroup --clear-groups "$shmprov" --profile /etc/shmprov/ok.yaml apply >"$work/out" 2>"$work/err"
code=$?
expect "permission/result" test "$code/$(data "d['result'], d['error']['code'], d['error']['step']")" = \
    "1/failed permission runtime"

# ---- not applicable: read-only /proc/sys ----
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
run ok apply
expect "not-applicable/result" test "$code/$(data "d['result'], d['runtime_skipped'] is not None")" = "0/not-applicable True"
umount /proc/sys

# ---- raise-only keeps a higher running value, and says what it derived ----
echo 999999999999 >/proc/sys/kernel/shmmax
profile raise 'policy: raise-only\n'
run raise apply
expect "raise-only/derived-beside-target" test "$(data "d['keys'][0]['target'], d['keys'][0]['derived'] < d['keys'][0]['target'], d['keys'][0]['source']")" = \
    "999999999999 True kept (raise-only)"

# ---- numbers above 2^53-1: null plus _decimal ----
echo 18446744073692774399 >/proc/sys/kernel/shmmax
run raise apply
expect "numbers/unlimited-as-decimal" test "$(data "d['keys'][0]['target'], d['keys'][0]['target_decimal'], d['keys'][0]['before_decimal']")" = \
    "None 18446744073692774399 18446744073692774399"

# ---- identity: a hostname that is not UTF-8, an unreadable machine-id ----
unshare --uts -- "$py" -c '
import socket, subprocess, sys
socket.sethostname(b"host\xff\xe9x")
sys.exit(subprocess.call([sys.argv[1], "--profile", sys.argv[2], "apply"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL))' \
    "$shmprov" "$work/ok.yaml"
expect "hostname-0xff/escaped" test "$(data "d['host']['hostname']")" = 'host\xff\xe9x'
src_with_id=$("$py" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])["body"])' "$work/log.jsonl" |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["source"])')
: >"$work/empty-machine-id"
mount --bind "$work/empty-machine-id" /etc/machine-id
run ok apply
run ok apply
umount /etc/machine-id
expect "machine-id-unreadable/host-id-kept" test -s /var/lib/shmprov/host-id
expect "machine-id-unreadable/one-source-per-host" "$py" - "$work/log.jsonl" "$src_with_id" <<'PY'
import json, sys
evs = [json.loads(json.loads(l)["body"]) for l in open(sys.argv[1]) if l.strip()]
a, b = evs[-2]["source"], evs[-1]["source"]
assert a == b and a != sys.argv[2] and a.startswith("urn:shmprov:host:"), (a, b, sys.argv[2])
PY

# ---- labels go into every report ----
profile labelled 'labels:\n  role: db\n  env: prod\n'
run labelled apply
expect "labels/in-report" test "$(data "sorted(d['labels'].items())")" = "[('env', 'prod'), ('role', 'db')]"

# ---- every body: the schema, strict UTF-8, no number above 2^53-1 ----
expect "all-bodies ($(events) events)" "$py" - "$work/log.jsonl" "$src/schemas/report.schema.json" <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[2]))
v = jsonschema.Draft202012Validator(schema)
def big(text):
    assert abs(int(text)) <= 2**53 - 1, text
    return int(text)
results, codes, kinds = set(), set(), set()
for line in open(sys.argv[1]):
    rec = json.loads(line)
    # The collector keeps "body" only when the bytes decode as strict UTF-8.
    assert "body" in rec, "a body that is not UTF-8: %s" % rec.get("body_base64")
    body = json.loads(rec["body"], parse_int=big)
    for ev in body if isinstance(body, list) else [body]:
        assert ev["type"] == "dev.shmprov.run.v2"
        errors = list(v.iter_errors(ev["data"]))
        assert not errors, errors[0]
        results.add(ev["data"]["result"])
        codes.add((ev["data"]["error"] or {}).get("code"))
        kinds |= {x["kind"] for x in ev["data"]["drift"]}
# Every value the schema allows is produced by some run of this suite.
P = schema["properties"]
for seen, allowed in ((results, P["result"]["enum"]), (codes - {None}, P["error"]["oneOf"][1]["properties"]["code"]["enum"]),
                      (kinds, P["drift"]["items"]["properties"]["kind"]["enum"])):
    assert seen == set(allowed), set(allowed) ^ seen
PY
finish
