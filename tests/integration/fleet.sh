#!/bin/bash
# Fleet drill: 200 agents — each in its own IPC and mount namespace, so each
# is a host with its own kernel limits, lock and spool — apply and report at
# once to the test collector, which answers 503 for its first 10 seconds.
# Afterwards every event must have arrived at least once, each agent's one
# `flush` must empty its spool, and the collector's figures (duplicates by
# id, peak request rate during the outage) are printed. Bounded: every agent
# gives up by its report.timeout (8 s, so some must wait for the flush).
# Usage: fleet.sh SHMPROV SOURCE_DIR [AGENTS]
set -u
shmprov=$1
src=$2
agents=${3:-200}
. "$src/tests/integration/lib.sh"
start_suite "$@"
start_collector "$work" status:503 || { bad "collector started"; finish; exit 1; }
trap 'kill $collector 2>/dev/null' EXIT
stats() { curl -sf "http://127.0.0.1:$port/_stats" >"$work/stats.json"; }

# One host: its own namespaces, /run (the lock), sysctl.d; its spool stays in
# $work so the flush afterwards finds it.
host() { # N COMMAND...
    local n=$1
    shift
    unshare --ipc --mount -- sh -c '
        mount --make-rprivate / &&
        mount -t tmpfs -o size=1m fleet-run /run &&
        mount -t tmpfs -o size=1m fleet-sysctl /etc/sysctl.d &&
        exec "$@"' host "$@"
}
for n in $(seq "$agents"); do
    mkdir -p "$work/$n"
    printf 'version: 1\nhost: {ram_tier: small}\nreport:\n  url: http://127.0.0.1:%s/v1/events\n  timeout: 8\n  spool_dir: %s/%s/spool\n' \
        "$port" "$work" "$n" >"$work/$n/profile.yaml"
    chmod 0644 "$work/$n/profile.yaml"
done

# The outage: 503 from the first report on, for 10 seconds.
(
    until [ -s "$work/log.jsonl" ]; do sleep 0.05; done
    sleep 10
    curl -sf -X POST -d '{"mode": "accept"}' "http://127.0.0.1:$port/_control" >/dev/null
) &
start=$(date +%s%3N)
pids=()
for n in $(seq "$agents"); do
    host "$n" timeout 60 "$shmprov" --profile "$work/$n/profile.yaml" apply >"$work/$n/out" 2>"$work/$n/err" &
    pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
took=$(($(date +%s%3N) - start))
stats
"$py" -c '
import json,sys
d=json.load(open(sys.argv[1]))
print(d["distinct_ids_accepted"], d["peak_rps_by_status"].get("503", 0), d["total_requests"], d["by_status"].get("503", 0))' "$work/stats.json" >"$work/during"
read -r delivered_live peak503 requests n503 <"$work/during"
waiting=$(find "$work" -path '*/spool/*.json' | wc -l)
expect "drill/every-apply-exit-0 ($failed failed)" test "$failed" = 0
# Each agent is also bounded by `timeout 60` (a timeout counts as failed
# above); the whole drill, 200 processes on a small machine, by 3 minutes.
expect "drill/bounded (${took} ms for $agents agents)" test "$took" -le 180000

for n in $(seq "$agents"); do
    host "$n" "$shmprov" --profile "$work/$n/profile.yaml" flush >"$work/$n/flush" 2>&1 || echo "$n" >>"$work/flush-failed"
done
stats
left=$(find "$work" -path '*/spool/*.json' | wc -l)
read -r distinct dup_ids receipts <<<"$("$py" -c '
import json,sys
d=json.load(open(sys.argv[1]))
print(d["distinct_ids_accepted"], d["duplicate_ids_accepted"], d["duplicate_receipts"])' "$work/stats.json")"
expect "drill/all-spools-empty-after-one-flush" test "$left" = 0 -a ! -e "$work/flush-failed"
expect "drill/every-event-arrived ($distinct of $agents)" test "$distinct" = "$agents"
echo "figures: $agents agents, outage 10 s (503 from the first report), report.timeout 8 s, apply wall time of the whole drill ${took} ms"
echo "figures: delivered during the run $delivered_live, left in spools $waiting, delivered by one flush each: $((distinct - delivered_live))"
echo "figures: $requests requests during the run, $n503 answered 503, peak $peak503 requests/s during the outage"
echo "figures: ids accepted (2xx) more than once: $dup_ids; receipts beyond the first per id: $receipts (503 retries of the same id)"
finish
