#!/bin/bash
# Reports for real: the real binary (in a private IPC + mount namespace, as
# every apply test) reporting to the test collector on 127.0.0.1, one mode
# at a time, with the timing bounds the README promises; events are checked
# against schemas/report.schema.json.
# Usage: report.sh SHMPROV SOURCE_DIR
set -u
shmprov=$1
src=$2
. "$src/tests/integration/lib.sh"
start_suite "$@"
spool=/var/lib/shmprov/spool
token=tok-$RANDOM$RANDOM-secret

# ---- the collector ----
start_collector "$work" || { bad "collector started"; finish; exit 1; }
trap 'kill $collector 2>/dev/null' EXIT
base=http://127.0.0.1:$port

mode() { curl -sf -X POST -d "{\"mode\": \"$1\", \"reset\": true}" "$base/_control" >/dev/null; : >"$work/log.jsonl"; }
stat() { curl -sf "$base/_stats" | "$py" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
posts() { wc -l <"$work/log.jsonl"; }
spooled() { find "$spool" -maxdepth 1 -name '*.json' 2>/dev/null | wc -l; }
clear_spool() { rm -rf "$spool"; }
# The last event the collector got (the last of a batch), saved to FILE.
last_event() {
    "$py" -c '
import json,sys
recs=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
body=json.loads(recs[-1]["body"])
json.dump(body[-1] if isinstance(body, list) else body, open(sys.argv[2], "w"))' "$work/log.jsonl" "$1"
}
# last_data FIELD: that member of the last event's data ("None": absent).
last_data() {
    last_event "$work/last.event"
    "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"].get(sys.argv[2]))' "$work/last.event" "$1"
}
valid_last() { last_event "$work/last.event" && "$py" "$src/tests/schema/validate_json.py" "$src/schemas/report.schema.json" --data "$work/last.event" >/dev/null; }
ms() { date +%s%3N; }

printf '%s\n' "$token" >"$work/token"
chmod 0600 "$work/token"
profile() { # NAME URL [TIMEOUT] [EXTRA]
    printf 'version: 1\nhost: {ram_tier: small}\nreport:\n  url: %s\n  token_file: %s\n  timeout: %s\n%b' \
        "$2" "$work/token" "${3:-5}" "${4:-}" >"$work/$1.yaml"
    chmod 0644 "$work/$1.yaml"
}
profile ok "$base/v1/events"
profile short "$base/v1/events" 3
apply() { # PROFILE [ARGS]: runs apply, sets code and took (ms)
    local p=$1 t0
    shift
    t0=$(ms)
    "$shmprov" --profile "$work/$p.yaml" apply "$@" >"$work/out" 2>"$work/err"
    code=$?
    took=$(($(ms) - t0))
}

# ---- delivered: one structured CloudEvent, headers, schema ----
mode accept
clear_spool
apply ok
expect "accept/exit-0" test "$code" = 0
expect "accept/said-delivered" grep -q "report delivered to $base/v1/events" "$work/err"
expect "accept/one-post" test "$(posts)" = 1
expect "accept/spool-empty" test "$(spooled)" = 0
"$py" - "$work/log.jsonl" "$token" >"$work/check.out" 2>&1 <<'PY'
import json, re, sys
rec = json.loads(open(sys.argv[1]).readline())
ev = json.loads(rec["body"])
assert rec["content_type"] == "application/cloudevents+json", rec["content_type"]
assert rec["authorization"] == "Bearer " + sys.argv[2], "bearer token"
assert rec["idempotency_key"] == '"%s"' % ev["id"], "Idempotency-Key is the event id as a Structured Field string"
assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", ev["id"]), ev["id"]
assert ev["specversion"] == "1.0" and ev["type"] == "dev.shmprov.run.v2", ev
machine_id = open("/etc/machine-id").read().strip()
assert re.fullmatch(r"urn:shmprov:host:[0-9a-f]{32}", ev["source"]) and machine_id not in json.dumps(ev), "raw machine-id leaked"
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ev["time"]), ev["time"]
assert re.fullmatch(r"\d{20}", ev["sequence"]), ev.get("sequence")
assert ev["data"]["result"] == "changed", ev["data"]["result"]
open(sys.argv[1] + ".event", "w").write(rec["body"])
print("ok")
PY
expect "accept/cloudevent-and-headers ($(tail -n 1 "$work/check.out"))" test "$(tail -n 1 "$work/check.out")" = ok
expect "accept/data-matches-schema" "$py" "$src/tests/schema/validate_json.py" "$src/schemas/report.schema.json" --data "$work/log.jsonl.event"
expect "accept/token-not-on-stderr" test -z "$(grep -F "$token" "$work/err" "$work/out")"

# ---- connection refused: bounded, spooled, exit 0 ----
closed=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
profile refused "http://127.0.0.1:$closed/v1/events" 2
clear_spool
apply refused
expect "refused/exit-0" test "$code" = 0
expect "refused/spooled" test "$(spooled)" = 1
expect "refused/within-deadline (${took} ms)" test "$took" -le 3000
expect "refused/says-kept" grep -q "report not delivered, kept in $spool" "$work/err"

# ---- the collector hangs: apply ends by the deadline + 1 s, event spooled ----
mode hang
clear_spool
apply short
expect "hang/exit-0" test "$code" = 0
expect "hang/within-deadline+1s (${took} ms)" test "$took" -le 4000
expect "hang/spooled" test "$(spooled)" = 1
hang_ms=$took

# ---- 500 then accept: retried, delivered; the spool empties oldest first ----
mode 'status:500*2,accept'
apply ok
expect "retry-5xx/exit-0" test "$code" = 0
expect "retry-5xx/retried" test "$(stat "d['by_status'].get('500', 0)")" = 2
expect "retry-5xx/old-and-new-delivered" test "$(spooled)" = 0
expect "retry-5xx/oldest-first" test "$("$py" -c '
import json,sys
recs=[json.loads(l) for l in open(sys.argv[1])]
ok=[r for r in recs if r["response"]["status"]==202]
print(len(ok), ok[0]["ids"] != ok[1]["ids"])' "$work/log.jsonl")" = "2 True"
expect "retry-5xx/same-id-on-retry" test "$("$py" -c '
import json,sys
recs=[json.loads(l) for l in open(sys.argv[1])]
print(len({r["ids"][0] for r in recs}))' "$work/log.jsonl")" = 2

mode hang
clear_spool
# ---- waiting on the network holds up no other apply (the apply lock is
#      released before reporting; the spool has its own lock) ----
"$shmprov" --profile "$work/short.yaml" apply >/dev/null 2>&1 &
reporter=$!
for _ in $(seq 100); do [ "$(posts)" -ge 1 ] && break; sleep 0.05; done
apply ok --no-report
kill -0 $reporter 2>/dev/null
expect "lock/the-reporting-apply-was-still-waiting" test $? = 0
expect "lock/apply-not-blocked-by-a-reporting-apply (${took} ms)" test "$code" = 0 -a "$took" -le 1500
wait $reporter

# ---- 503 all the time: backoff within the deadline, then spooled ----
mode 'status:503'
clear_spool
apply short
expect "503/exit-0" test "$code" = 0
expect "503/several-attempts" test "$(posts)" -ge 2
expect "503/bounded (${took} ms)" test "$took" -le 4000
expect "503/spooled" test "$(spooled)" = 1

# ---- 429 with Retry-After: honoured when it fits, not slept past the deadline ----
mode 'retry-after:1*1,accept'
clear_spool
apply ok
expect "429/delivered-after-waiting (${took} ms)" test "$code" = 0 -a "$(spooled)" = 0 -a "$took" -ge 1000
mode 'retry-after:30'
clear_spool
apply short
expect "429/too-long-gives-up-at-once (${took} ms)" test "$took" -le 3000 -a "$(spooled)" = 1 -a "$(posts)" = 1

# ---- 401: never retried, kept (the configuration's fault), the error shown ----
mode 'status:401'
clear_spool
apply ok
expect "401/exit-0" test "$code" = 0
expect "401/one-attempt" test "$(posts)" = 1
expect "401/kept" test "$(spooled)" = 1
expect "401/error-shown" grep -q "401" "$work/err"

# ---- a poison event (400, 413, 415, 422: malformed): one attempt, then
#      rejected/, counted, reported, and flush no longer fails on it ----
for status in 400 422; do
    mode "status:$status"
    clear_spool
    apply ok
    expect "$status/exit-0" test "$code" = 0
    expect "$status/one-attempt" test "$(posts)" = 1
    expect "$status/not-waiting" test "$(spooled)" = 0
    expect "$status/moved-to-rejected" test "$(find "$spool/rejected" -name '*.json' | wc -l)" = 1
    expect "$status/said-so" grep -q "refused as malformed (HTTP $status): moved to $spool/rejected/" "$work/err"
    "$shmprov" --profile "$work/ok.yaml" flush >"$work/poison-flush.out" 2>&1
    expect "$status/flush-exit-0" test $? = 0
    expect "$status/never-sent-again" test "$(posts)" = 1
    mode accept
    apply ok
    expect "$status/next-report-counts-it" test "$("$py" -c 'import json,sys; print(json.loads(json.loads(open(sys.argv[1]).readline())["body"])["data"]["reports_rejected"])' "$work/log.jsonl")" = 1
    apply ok
    expect "$status/then-cleared" test "$("$py" -c 'import json,sys; print(json.loads(json.loads(open(sys.argv[1]).readlines()[-1])["body"])["data"]["reports_rejected"])' "$work/log.jsonl")" = 0
done

# ---- slow, cut, redirect, a 10 MB body, an endless body ----
mode 'slow:1.5'
clear_spool
apply ok
expect "slow/delivered (${took} ms)" test "$code" = 0 -a "$(spooled)" = 0 -a "$took" -ge 1500
# A body cut short after a 202 status: the collector said accepted.
mode 'cut'
clear_spool
apply short
expect "cut/status-decides (${took} ms)" test "$code" = 0 -a "$(spooled)" = 0 -a "$took" -le 4000
# No answer at all (the connection dropped): retried, then kept.
mode 'drop'
clear_spool
apply short
expect "drop/spooled-not-lost (${took} ms)" test "$code" = 0 -a "$(spooled)" = 1 -a "$took" -le 4000 -a "$(posts)" -ge 2
mode 'redirect'
clear_spool
apply ok
expect "redirect/not-followed" test "$(posts)" = 1 -a "$(spooled)" = 1
mode 'big'
clear_spool
apply short
expect "big-body/bounded (${took} ms)" test "$code" = 0 -a "$took" -le 4000
mode 'endless'
clear_spool
apply short
expect "endless-body/bounded (${took} ms)" test "$code" = 0 -a "$took" -le 4000

# ---- flush: a batch, everything delivered, nothing twice ----
mode 'status:503'
clear_spool
for _ in 1 2 3; do apply short; done
expect "flush/three-waiting" test "$(spooled)" = 3
mode accept
"$shmprov" --profile "$work/ok.yaml" flush >"$work/flush.out" 2>&1
expect "flush/exit-0" test $? = 0
expect "flush/spool-empty" test "$(spooled)" = 0
expect "flush/one-batch" test "$(stat "d['batch_posts'], d['distinct_ids'], d['duplicate_ids']")" = "1 3 0"
expect "flush/batch-content-type" grep -q '"content_type": "application/cloudevents-batch+json"' "$work/log.jsonl"
# A batch has its own Idempotency-Key, a Structured Field string derived
# from its event ids: "batch-" + sha256 of each id and a newline, in order.
"$py" - "$work/log.jsonl" >"$work/batchkey.out" 2>&1 <<'PY'
import hashlib, json, sys
rec = [json.loads(l) for l in open(sys.argv[1])][-1]
ids = [e["id"] for e in json.loads(rec["body"])]
want = '"batch-%s"' % hashlib.sha256("".join(i + "\n" for i in ids).encode()).hexdigest()
assert rec["idempotency_key"] == want, (rec["idempotency_key"], want)
PY
expect "flush/batch-idempotency-key" test $? = 0
mode 'status:415*1,accept'
apply short --no-report
for _ in 1 2; do "$shmprov" --profile "$work/refused.yaml" apply >/dev/null 2>&1; done
"$shmprov" --profile "$work/ok.yaml" flush >"$work/flush2.out" 2>&1
expect "flush/falls-back-one-by-one" test $? = 0 -a "$(spooled)" = 0 -a "$(stat "d['structured_posts']")" = 2
expect "flush/no-415-warning-after-the-fallback" not grep -q "415" "$work/flush2.out"

# ---- a bounded spool: the oldest are dropped, and the next report says how many ----
profile tiny "$base/v1/events" 1 "  spool_max_events: 2\n"
mode 'status:503'
clear_spool
for _ in 1 2 3 4; do apply tiny; done
expect "bounded/keeps-two" test "$(spooled)" = 2
expect "bounded/counts-dropped" test "$(cat "$spool/dropped.count" 2>/dev/null | tr -d '[:space:]')" = 2
mode accept
# This run's event is sent first, then the backlog: the first request an
# apply makes carries its own report.
own_dropped() { "$py" -c '
import json,sys
recs=[json.loads(l) for l in open(sys.argv[1])]
print(json.loads(recs[int(sys.argv[2])]["body"])["data"]["reports_dropped"])' "$work/log.jsonl" "$1"; }
before=$(posts)
apply tiny
# Of the 2 dropped, the report left waiting (made after the first drop)
# carries 1 already: this one carries the other, so that the collector's
# sum over the reports it takes counts each drop once.
expect "bounded/next-report-carries-the-count" test "$(own_dropped "$before") $(own_dropped $((before + 1)))" = "1 1"
expect "bounded/own-report-then-the-one-left" test "$(posts)" = $((before + 2))
expect "bounded/all-delivered" test "$(spooled)" = 0
# Spooling that report (before sending it) pushed out one more, which the
# next report carries; then the count is back to 0.
before=$(posts)
apply tiny
expect "bounded/the-next-drop-carried-next" test "$(own_dropped "$before")" = 1
before=$(posts)
apply tiny
expect "bounded/count-cleared-once-reported" test "$(own_dropped "$before")" = 0

# ---- a damaged event in the spool: quarantined, counted, reported once;
#      flush delivers and counts exactly what was in a 2xx body ----
mode 'status:503'
clear_spool
for _ in 1 2; do apply short; done
cut=00000000000000000001-0000abcd-0000-4000-8000-00000000abcd.json
printf '{"specversion":"1.0","id":"0000abcd-0000-4000-8000-00000000abcd","type":"dev.shmprov.run.v1","data":{"resu' >"$spool/$cut"
chmod 0600 "$spool/$cut"
expect "quarantine/three-waiting" test "$(spooled)" = 3
mode accept
"$shmprov" --profile "$work/ok.yaml" flush >"$work/flush-q.out" 2>"$work/flush-q.err"
expect "quarantine/flush-exit-0" test $? = 0
expect "quarantine/collector-got-exactly-two" test "$(stat "d['events_received'], d['distinct_ids'], d['batch_posts']")" = "2 2 1"
expect "quarantine/says-2-delivered-1-quarantined ($(cat "$work/flush-q.out"))" \
    grep -q "^shmprov flush: 2 delivered, 0 rejected, 1 quarantined, 0 waiting in $spool\$" "$work/flush-q.out"
expect "quarantine/moved-out-of-the-spool" test -f "$spool/quarantine/$cut" -a ! -e "$spool/$cut" -a "$(spooled)" = 0
expect "quarantine/private-directory" test "$(command stat -c %a "$spool/quarantine")" = 700
expect "quarantine/warning-names-both-paths-and-why" grep -qF \
    "warning: spooled report $spool/$cut is not JSON (cut short or damaged): moved to $spool/quarantine/$cut, never to be sent" \
    "$work/flush-q.err"
expect "quarantine/counted" test "$(cat "$spool/quarantined.count" 2>/dev/null)" = 1
"$shmprov" --profile "$work/ok.yaml" flush >"$work/flush-q2.out" 2>&1
expect "quarantine/never-retried" test $? = 0 -a "$(posts)" = 1 -a -f "$spool/quarantine/$cut"
apply ok
expect "quarantine/next-report-carries-the-count" test "$(last_data reports_quarantined)" = 1
expect "quarantine/that-report-matches-schema" valid_last
expect "quarantine/count-cleared-once-reported" test "$(cat "$spool/quarantined.count" 2>/dev/null)" = 0
apply ok
expect "quarantine/the-one-after-says-0" test "$(last_data reports_quarantined)" = 0
# Not JSON at all, in --output json: counted there too; nothing sent.
mode accept
clear_spool
mkdir -p -m 0700 "$spool"
printf 'garbage' >"$spool/00000000000000000001-0000abce-0000-4000-8000-00000000abce.json"
"$shmprov" --profile "$work/ok.yaml" --output json flush >"$work/flush-q3.out" 2>/dev/null
expect "quarantine/flush-json-says-so" test "$("$py" -c '
import json,sys; d=json.load(open(sys.argv[1])); print(d["delivered"], d["quarantined"], d["waiting"])' "$work/flush-q3.out")" = "0 1 0"
expect "quarantine/nothing-sent" test "$(posts)" = 0

# ---- a damaged drop counter: a warning; the report goes out saying the
#      count is unknown, and the counter is rewritten ----
mode accept
clear_spool
mkdir -p -m 0700 "$spool"
printf 'abc' >"$spool/dropped.count"
apply ok
expect "damaged-counter/apply-exit-0" test "$code" = 0
expect "damaged-counter/delivered" grep -q "report delivered to $base/v1/events" "$work/err"
expect "damaged-counter/not-lost" test -z "$(grep LOST "$work/err")"
expect "damaged-counter/warned-naming-file-and-why" \
    grep -qF "warning: report spool counter $spool/dropped.count is damaged (not a number): rewritten to count from 0" "$work/err"
expect "damaged-counter/event-says-unknown" test "$(last_data reports_dropped_unknown) $(last_data reports_dropped)" = "True 0"
expect "damaged-counter/event-matches-schema" valid_last
expect "damaged-counter/rewritten" test "$(cat "$spool/dropped.count")" = 0
apply ok
expect "damaged-counter/unknown-said-once" test "$(last_data reports_dropped_unknown)" = None
expect "damaged-counter/warned-once" test -z "$(grep 'dropped.count' "$work/err")"
# Damaged while the collector is down: the spooled event carries it.
printf '' >"$spool/dropped.count"
apply refused
expect "damaged-counter/collector-down-spooled" test "$code" = 0 -a "$(spooled)" = 1
"$shmprov" --profile "$work/ok.yaml" flush >/dev/null 2>&1
expect "damaged-counter/flushed-event-says-unknown" test "$(last_data reports_dropped_unknown)" = True

# ---- the spool cannot take the event: sent directly, LOST only when the
#      collector cannot have it either ----
mode accept
clear_spool
mkdir -p "$spool"
mount -t tmpfs -o ro,size=1m,mode=0700 shmprov-ro-spool "$spool"
apply ok
expect "ro-spool/apply-exit-0" test "$code" = 0
expect "ro-spool/delivered-directly" grep -qF \
    "warning: report delivered directly (could not spool it: cannot write to the report spool '$spool': Read-only file system)" \
    "$work/err"
expect "ro-spool/not-lost" test -z "$(grep LOST "$work/err")"
expect "ro-spool/one-post" test "$(posts)" = 1
expect "ro-spool/event-matches-schema" valid_last
apply refused
expect "ro-spool-collector-down/apply-exit-0" test "$code" = 0
expect "ro-spool-collector-down/LOST-with-both-reasons" grep -qE \
    "error: report LOST: could not spool it \(cannot write to the report spool '$spool': Read-only file system\) and sending it directly failed: http://127.0.0.1:$closed/v1/events: " \
    "$work/err"
apply ok --defer-report
expect "ro-spool-deferred/apply-exit-0" test "$code" = 0
expect "ro-spool-deferred/LOST-saying-why" grep -qF \
    "error: report LOST: cannot write to the report spool '$spool': Read-only file system; it was to be spooled only, not sent" \
    "$work/err"
expect "ro-spool-deferred/nothing-sent" test "$(posts)" = 1
umount "$spool"
# A spool that cannot even be opened: its counts are unknown, not 0.
printf 'x' >"$work/not-a-directory"
profile nospool "$base/v1/events" 5 "  spool_dir: $work/not-a-directory\n"
mode accept
apply nospool
expect "unopenable-spool/delivered-directly" test "$code" = 0 -a "$(posts)" = 1 -a -n "$(grep -F "report delivered directly (could not spool it: cannot open the report spool '$work/not-a-directory': Not a directory)" "$work/err")"
expect "unopenable-spool/counts-unknown" test "$(last_data reports_dropped_unknown) $(last_data reports_quarantined_unknown)" = "True True"
expect "unopenable-spool/event-matches-schema" valid_last

# ---- splay: only the report waits, within the splay ----
profile splay "$base/v1/events" 5 "  splay: 1\n"
apply splay
expect "splay/delivered-within-splay+1s (${took} ms)" test "$code" = 0 -a "$(spooled)" = 0 -a "$took" -le 2500

# ---- SIGKILL mid-send: the event is in the spool, the next run delivers it ----
mode hang
clear_spool
"$shmprov" --profile "$work/ok.yaml" apply >/dev/null 2>&1 &
victim=$!
for _ in $(seq 100); do [ "$(posts)" -ge 1 ] && break; sleep 0.05; done
kill -9 $victim
wait $victim 2>/dev/null
killed_id=$("$py" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["ids"][0])' "$work/log.jsonl")
expect "sigkill/event-in-spool" test -n "$(ls "$spool" | grep -F "$killed_id")"
mode accept
apply ok
expect "sigkill/next-run-delivers-it" grep -q "\"$killed_id\"" <<<"$(curl -sf "$base/_stats")"
expect "sigkill/spool-empty" test "$(spooled)" = 0

# ---- --defer-report (boot): spooled, nothing sent; the next run sends it ----
mode accept
clear_spool
apply ok --defer-report
expect "defer/nothing-sent" test "$(posts)" = 0 -a "$code" = 0
expect "defer/spooled" test "$(spooled)" = 1
"$shmprov" --profile "$work/ok.yaml" flush >/dev/null 2>&1
expect "defer/flush-sends-it" test "$(posts)" = 1 -a "$(spooled)" = 0

# ---- no report: --no-report, no url ----
mode accept
apply ok --no-report
expect "no-report/nothing-sent" test "$(posts)" = 0
printf 'version: 1\nhost: {ram_tier: small}\n' >"$work/nourl.yaml"
chmod 0644 "$work/nourl.yaml"
apply nourl
expect "no-url/nothing-sent" test "$(posts)" = 0
expect_code "flush-without-url/exit-2" 2 "$shmprov" --profile "$work/nourl.yaml" flush

# ---- the token: refused when others may read it, never shown ----
chmod 0640 "$work/token"
clear_spool
apply ok
expect "token/group-readable-refused" grep -q "token file '$work/token' is accessible by group or others" "$work/err"
expect "token/apply-still-exit-0" test "$code" = 0
expect "token/event-kept" test "$(spooled)" = 1
expect "token/nothing-sent" test "$(posts)" = 0
expect "token/never-printed" test -z "$(grep -F "$token" "$work/err" "$work/out")"
chmod 0600 "$work/token"

# ==== delivery: one connection per run and per flush, this
#      run's event first, a key on every request, counts carried once ====
# The collector logs each request's client address: one address, one
# connection.
conns() { "$py" -c 'import json,sys; print(len({json.loads(l)["client"] for l in open(sys.argv[1]) if l.strip()}))' "$work/log.jsonl"; }
# Every request in the log carries its Idempotency-Key: "<id>" for one
# event, "batch-<sha256 of each id and a newline>" for a batch.
keys_ok() {
    "$py" - "$work/log.jsonl" <<'PY'
import hashlib, json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert recs, "no request"
for n, r in enumerate(recs):
    if r["kind"] == "batch":
        want = "batch-" + hashlib.sha256("".join(i + "\n" for i in r["ids"]).encode()).hexdigest()
    else:
        assert r["kind"] == "structured" and len(r["ids"]) == 1, (n, r["kind"], r["ids"])
        want = r["ids"][0]
    assert r["idempotency_key"] == '"%s"' % want, (n, r["idempotency_key"], want)
PY
}
spooled_ids() { ls "$spool" | sed -n 's/^[0-9]\{20\}-\(.*\)\.json$/\1/p' | tr '\n' ' '; } # oldest first
logged_ids() { "$py" -c 'import json,sys; [print(" ".join(json.loads(l)["ids"])) for l in open(sys.argv[1]) if l.strip()]' "$work/log.jsonl"; }
# The id of the first request is none of the ids that were waiting before.
own_first() { local own; own=$(logged_ids | head -n 1); [ -n "$own" ] && [ "${backlog/$own/}" = "$backlog" ]; }
# carried FIELD: the sum of data.FIELD over the distinct events the
# collector answered with a 2xx (single or in a batch), and their number.
carried() {
    "$py" - "$work/log.jsonl" "$1" <<'PY'
import json, sys
seen = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if (r["response"]["status"] or 0) // 100 != 2:
        continue
    body = json.loads(r["body"])
    for ev in body if isinstance(body, list) else [body]:
        seen[ev["id"]] = ev["data"].get(sys.argv[2], 0)
print(sum(seen.values()), len(seen))
PY
}
counter() { cat "$spool/$1.count" 2>/dev/null | tr -d '[:space:]'; }

# ---- apply: this run's event and the backlog on one connection ----
mode accept
clear_spool
for _ in 1 2; do apply ok --defer-report; done
backlog=$(spooled_ids)
apply ok
expect "session/apply-delivers-own-and-backlog" test "$code" = 0 -a "$(spooled)" = 0 -a "$(posts)" = 3
expect "session/apply-one-connection ($(conns))" test "$(conns)" = 1
expect "session/apply-own-first" own_first
expect "session/apply-then-the-backlog-oldest-first" test "$(logged_ids | tail -n +2 | tr '\n' ' ')" = "$backlog"
expect "keys/apply-own-and-backlog" keys_ok

# ---- flush: a batch refused with 415, then one by one, one connection,
#      and no 415 warning once the events are in ----
mode accept
clear_spool
for _ in 1 2 3; do apply ok --defer-report; done
backlog=$(spooled_ids)
mode 'status:415*1,accept'
"$shmprov" --profile "$work/ok.yaml" --output json flush >"$work/fallback.json" 2>"$work/fallback.err"
code=$?
expect "session/flush-415-exit-0-all-delivered" test "$code" = 0 -a "$(spooled)" = 0
expect "session/flush-415-batch-then-one-by-one" test "$(stat "d['batch_posts'], d['structured_posts'], d['distinct_ids_accepted']")" = "1 3 3"
expect "session/flush-415-one-connection ($(conns))" test "$(conns)" = 1
expect "session/flush-415-oldest-first" test "$(logged_ids | tail -n +2 | tr '\n' ' ')" = "$backlog"
expect "keys/flush-batch-and-fallback" keys_ok
expect "fallback/no-415-warning ($(tr '\n' ' ' <"$work/fallback.err"))" test -z "$(grep -e 415 -e warning "$work/fallback.err")"
expect "fallback/json-says-3-delivered-no-error" test "$("$py" -c '
import json,sys; d=json.load(open(sys.argv[1])); print(d["delivered"], d["waiting"], d["error"])' "$work/fallback.json")" = "3 0 None"

# ---- the spool cannot take the event: the direct send has its key too ----
mode accept
clear_spool
mkdir -p "$spool"
mount -t tmpfs -o ro,size=1m,mode=0700 shmprov-ro-spool "$spool"
apply ok
umount "$spool"
expect "keys/direct-send" test "$(posts)" = 1 -a -n "$(grep -F 'report delivered directly' "$work/err")"
expect "keys/direct-send-has-its-key" keys_ok

# ---- a slow collector: this run's event goes first, the backlog gets
#      what is left of the deadline (3 s: 1.2 s each, the third is cut) ----
mode accept
clear_spool
for _ in 1 2; do apply short --defer-report; done
backlog=$(spooled_ids)
mode 'slow:1.2'
apply short
expect "slow-backlog/exit-0-within-deadline+1s (${took} ms)" test "$code" = 0 -a "$took" -le 4000
expect "slow-backlog/own-delivered" grep -q "report delivered" "$work/err"
expect "slow-backlog/own-first ($(logged_ids | head -n 1))" own_first
expect "slow-backlog/then-the-oldest ($(logged_ids | tr '\n' ' '))" test "$(logged_ids | sed -n 2p)" = "${backlog%% *}"
expect "slow-backlog/the-newest-still-waiting" test "$(spooled_ids)" = "$(echo "$backlog" | cut -d' ' -f2) " -a "$(posts)" = 3
expect "keys/slow-backlog" keys_ok

# ---- each count is carried by one delivered event: the sum over the
#      events the collector took is what was dropped, quarantined,
#      rejected; the counter goes back to 0 whoever delivers the events ----
# flush: 5 deferred reports in a spool of 2 (3 dropped, and the 2 left
# carry part of the count), flushed, then 2 applies: 7 reports.
mode accept
clear_spool
for _ in 1 2 3 4 5; do apply tiny --defer-report; done
"$shmprov" --profile "$work/tiny.yaml" flush >/dev/null 2>&1
for _ in 1 2; do apply tiny; done
read -r sum took_in <<<"$(carried reports_dropped)"
expect "counted-once/flush: ${sum} reported for $((7 - took_in)) dropped" test "$took_in" = 4 -a "$sum" = 3
expect "counted-once/flush: counter back to 0" test "$(counter dropped)" = 0
# The same delivered as an apply's backlog (one more dropped there): 8.
mode accept
clear_spool
for _ in 1 2 3 4 5; do apply tiny --defer-report; done
for _ in 1 2 3; do apply tiny; done
read -r sum took_in <<<"$(carried reports_dropped)"
expect "counted-once/backlog: ${sum} reported for $((8 - took_in)) dropped" test "$took_in" = 4 -a "$sum" = 4
expect "counted-once/backlog: counter back to 0" test "$(counter dropped)" = 0
# Quarantined: one damaged event, counted while two reports wait.
profile quick "$base/v1/events" 1
mode 'status:401'
clear_spool
apply quick --defer-report
printf 'garbage' >"$spool/00000000000000000001-0000abcf-0000-4000-8000-00000000abcf.json"
"$shmprov" --profile "$work/quick.yaml" flush >/dev/null 2>&1
for _ in 1 2; do apply quick --defer-report; done
mode accept
"$shmprov" --profile "$work/quick.yaml" flush >/dev/null 2>&1
apply quick
read -r sum took_in <<<"$(carried reports_quarantined)"
expect "counted-once/quarantined: ${sum} reported for 1 quarantined" test "$took_in" = 4 -a "$sum" = 1 -a "$(find "$spool/quarantine" -type f | wc -l)" = 1
expect "counted-once/quarantined: counter back to 0" test "$(counter quarantined)" = 0
# Rejected: this run's event refused as malformed while two reports wait.
mode 'status:422'
clear_spool
apply quick
for _ in 1 2; do apply quick --defer-report; done
mode accept
for _ in 1 2; do apply quick; done
read -r sum took_in <<<"$(carried reports_rejected)"
expect "counted-once/rejected: ${sum} reported for 1 rejected" test "$took_in" = 4 -a "$sum" = 1 -a "$(find "$spool/rejected" -type f | wc -l)" = 1
expect "counted-once/rejected: counter back to 0" test "$(counter rejected)" = 0

# ---- libcurl is loaded only when a report is sent ----
expect "dlopen/not-linked" test -z "$(ldd "$shmprov" | grep libcurl)"
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -qq -e trace=openat -o "$work/plan.strace" "$shmprov" plan >/dev/null 2>&1
expect "dlopen/plan-never-opens-libcurl" test -z "$(grep libcurl "$work/plan.strace")"

echo "figures: hang ${hang_ms} ms with report.timeout 3 s"
finish
