#!/bin/bash
# shmprov's Prometheus metrics and alert rules with the real tools
# (README.md here): promtool on packaging/prometheus/, then, in a private
# IPC + mount namespace (tests/integration/lib.sh), the real agent writing
# its node_exporter textfile, the real prometheus-node-exporter serving it,
# and a real Prometheus loading the rules and firing ShmprovDrift.
# Usage: run.sh SHMPROV
# Needs root, and Debian's prometheus and prometheus-node-exporter (it
# installs nothing). Listens on 127.0.0.1 only, on free ports; every process
# it starts is stopped at exit, by pid.
set -u
shmprov=$(realpath "$1")
src=$(cd "$(dirname "$(realpath "$0")")/../.." && pwd)
here=$src/tests/metrics
rules=$src/packaging/prometheus/shmprov.rules.yml
rules_test=$src/packaging/prometheus/shmprov.rules.test.yml
. "$src/tests/integration/lib.sh"

py=/usr/bin/python3
promtool=/usr/bin/promtool
prometheus=/usr/bin/prometheus
exporter=/usr/bin/prometheus-node-exporter
die() { bad "$1"; finish; exit 1; }

# count OUTPUT_FILE: check_metrics.py's PASS/FAIL lines, counted here.
count() {
    local line
    while IFS= read -r line; do
        case $line in
        "PASS "*) ok "${line#PASS }" ;;
        "FAIL "*) bad "${line#FAIL }" ;;
        *) echo "    $line" ;;
        esac
    done <"$1"
}

# ---- before the namespace: the tools ----------------------------------------
for t in "$promtool" "$prometheus" "$exporter" /usr/bin/curl /usr/bin/ipcmk "$py"; do
    [ -x "$t" ] || die "$t is installed (apt-get install prometheus prometheus-node-exporter curl util-linux python3)"
done
enter_private_namespace "$@"
started=$SECONDS
echo "# $("$promtool" --version 2>&1 | head -n 1); $("$exporter" --version 2>&1 | head -n 1)"

work=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
# forget PID: a start that failed: stop it, reap it, and drop it from pids
# (so that cleanup never signals a pid the system may have given away).
forget() {
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    pids=("${pids[@]:0:${#pids[@]}-1}")
}
trap 'exit 1' INT TERM

# The apply lock's directory, private like the others; the host's own
# sysctl.conf must not conflict with the profile.
mkdir -p /run/shmprov && mount -t tmpfs -o size=1m,mode=0755 shmprov-run /run/shmprov
printf '# (test) nothing here\n' >/etc/sysctl.conf

# ---- the rules on their own ----------------------------------------------------
# --lint=all --lint-fatal: a lint finding (duplicate rules) fails too.
if "$promtool" check rules --lint=all --lint-fatal "$rules" >"$work/check" 2>&1 &&
    ! grep -qiE 'warn|fail|error' "$work/check"; then
    ok "promtool check rules: $(grep -o 'SUCCESS.*' "$work/check")"
else
    bad "promtool check rules"; sed 's/^/    /' "$work/check"
fi
# (rule_files in the test file are relative to it)
if "$promtool" test rules "$rules_test" >"$work/test" 2>&1 && grep -q SUCCESS "$work/test"; then
    ok "promtool test rules: $(grep -c -- '- name:' "$rules_test") tests"
else
    bad "promtool test rules"; sed 's/^/    /' "$work/test"
fi
# Every alert of the rules file has unit tests.
missing=$(sed -n 's/^ *- alert: *//p' "$rules" | while IFS= read -r a; do
    grep -qE "alertname: $a(,|\$)" "$rules_test" || echo "$a"
done)
if [ -z "$missing" ]; then ok "every alert has unit tests"; else bad "alerts without unit tests: $missing"; fi

K=/proc/sys/kernel
tf=$work/textfile
mkdir -p "$tf"
prof=$work/profile.yaml
printf 'version: 1\nhost: {ram_tier: small}\nmetrics:\n  textfile: %s/shmprov.prom\nsegments:\n  persistent_keys: [0x0052e2c1]\n' \
    "$tf" >"$prof"
chmod 0644 "$prof"
sp() { "$shmprov" --profile "$prof" "$@"; }
# check_metrics.py: the drop-in and boot checks of both keys are 1.
synced=(--in-sync "kernel.shmmax,dropin=1" --in-sync "kernel.shmmax,boot=1"
        --in-sync "kernel.shmall,dropin=1" --in-sync "kernel.shmall,boot=1")

free_port() {
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
# wait_http URL SECONDS PID: until URL answers 2xx, while PID lives.
wait_http() {
    local end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
        curl -sf --max-time 2 -o /dev/null "$1" && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
# scrape OUT: node_exporter's /metrics.
scrape() { curl -sf --max-time 5 "http://127.0.0.1:$ne_port/metrics" >"$1"; }
# promtool_metrics NAME FILE: promtool check metrics, no finding at all.
promtool_metrics() {
    if "$promtool" check metrics <"$2" >"$work/lint" 2>&1 && [ ! -s "$work/lint" ]; then
        ok "$1: promtool check metrics: no finding"
    else
        bad "$1: promtool check metrics"; sed 's/^/    /' "$work/lint"
    fi
}
# sample FILE SELECTOR: the value of the one line starting with SELECTOR.
sample() { awk -v s="$2" 'index($0, s " ") == 1 {print $NF}' "$1"; }
expect_sample() { # NAME FILE SELECTOR VALUE
    local got
    got=$(sample "$2" "$3")
    if [ "$got" = "$4" ]; then ok "$1: $3 $4"; else bad "$1: $3 is '${got}', expected $4"; fi
}

# ---- apply writes the textfile; node_exporter serves it ---------------------
t0=$(date +%s)
expect_code "apply (small tier, metrics.textfile set)" 0 sp apply
expect "apply wrote the textfile" test -s "$tf/shmprov.prom"

ne_port=
for _ in 1 2 3; do # a free port can be taken between the check and the bind
    p=$(free_port)
    "$exporter" --web.listen-address="127.0.0.1:$p" --web.disable-exporter-metrics \
        --collector.disable-defaults --collector.textfile --collector.textfile.directory="$tf" \
        >"$work/exporter.log" 2>&1 &
    ne=$!
    pids+=("$ne")
    if wait_http "http://127.0.0.1:$p/metrics" 10 "$ne"; then ne_port=$p; break; fi
    forget "$ne"
done
[ -n "$ne_port" ] || die "prometheus-node-exporter started: $(tail -n 5 "$work/exporter.log")"
ok "prometheus-node-exporter serves 127.0.0.1:$ne_port (textfile collector only)"

scrape "$work/s1" || die "scrape after apply"
expect_sample "after apply" "$work/s1" 'node_textfile_scrape_error' 0
promtool_metrics "node_exporter scrape after apply" "$work/s1"
sp status --output json >"$work/j1" 2>"$work/j1.err"
sp plan --output json >"$work/p1" 2>/dev/null
# The apply's textfile, against status right after it (nothing changed between).
"$py" "$here/check_metrics.py" "apply's textfile" "$work/s1" "$work/j1" --plan "$work/p1" \
    --last-apply changed --applied-after "$t0" "${synced[@]}" >"$work/c1" 2>&1
count "$work/c1"

# ---- segments in use, orphans, a probe leftover: status writes, node_exporter serves
ipcmk -M 1048576 >/dev/null || die "ipcmk -M (a segment whose creator is gone: an orphan candidate)"
"$py" -c '
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT, IPC_EXCL = 0o1000, 0o2000
# What a shmprov killed in its test allocation leaves: key 0x73686d70, 0600;
# and an orphan whose key the profile lists in segments.persistent_keys.
sys.exit(0 if libc.shmget(0x73686d70, 8192, IPC_CREAT | IPC_EXCL | 0o600) >= 0
         and libc.shmget(0x0052e2c1, 65536, IPC_CREAT | IPC_EXCL | 0o600) >= 0 else 1)' ||
    die "a probe leftover (shmget 0x73686d70) and a persistent orphan (0x0052e2c1)"
sp status --output json >"$work/j2" 2>"$work/j2.err"
scrape "$work/s2" || die "scrape after status"
expect_sample "after status" "$work/s2" 'node_textfile_scrape_error' 0
promtool_metrics "node_exporter scrape after status" "$work/s2"
"$py" "$here/check_metrics.py" "status's textfile" "$work/s2" "$work/j2" --plan "$work/p1" \
    --last-apply changed --applied-after "$t0" "${synced[@]}" >"$work/c2" 2>&1
count "$work/c2"
expect "status saw 3 segments, 2 orphan candidates (one persistent), 1 leftover" "$py" -c '
import json, sys; d = json.load(open(sys.argv[1]))
sys.exit(0 if (d["usage"]["segments"], d["orphan_candidates"], len(d["probe_leftovers"])) == (3, 2, 1) else 1)' "$work/j2"
expect_sample "after status" "$work/s2" 'shmprov_orphan_candidates' 1

# status --output prometheus: the same document on stdout.
sp status --output prometheus >"$work/prom" 2>"$work/prom.err"
expect "status --output prometheus exit 0" test $? -eq 0
promtool_metrics "status --output prometheus" "$work/prom"
"$py" "$here/check_metrics.py" "status --output prometheus" "$work/prom" "$work/j2" --plan "$work/p1" \
    --last-apply changed --applied-after "$t0" >"$work/c3" 2>&1
count "$work/c3"
"$py" "$here/check_metrics.py" --same-as "$work/s2" "status --output prometheus = the served textfile" \
    "$work/prom" "$work/j2" >"$work/c3b" 2>&1
count "$work/c3b"

# ---- drift: verify sees it, the served in_sync says it ----------------------
echo 1 >$K/shmmax
expect_code "verify after echo 1 > shmmax: exit 3" 3 sp verify
scrape "$work/s3" || die "scrape after verify"
expect_sample "after verify (drift)" "$work/s3" 'node_textfile_scrape_error' 0
expect_sample "after verify (drift)" "$work/s3" 'shmprov_in_sync{check="runtime",key="kernel.shmmax"}' 0
expect_sample "after verify (drift)" "$work/s3" 'shmprov_in_sync{check="runtime",key="kernel.shmall"}' 1
expect_sample "after verify (drift)" "$work/s3" 'shmprov_limit_bytes{key="kernel.shmmax",value="running"}' 1
promtool_metrics "node_exporter scrape after verify" "$work/s3"
echo "# served by node_exporter after the drift and verify (excerpt):"
grep -E '^(node_textfile_scrape_error|shmprov_in_sync|shmprov_limit_bytes|shmprov_headroom_bytes|shmprov_last_apply)[{ ]' "$work/s3" |
    sed 's/^/    /'

# ---- a real Prometheus: the rules fire ShmprovDrift for this instance -------
# The rules are a copy of packaging/prometheus/shmprov.rules.yml with
# ShmprovDrift's `for: 75m` shortened to `for: 0s` (nothing else changed), so
# that the alert fires within seconds instead of 75 minutes.
awk '/- alert: ShmprovDrift$/ {d = 1} d && /^ *for: 75m$/ {sub(/75m/, "0s"); d = 0} {print}' "$rules" >"$work/rules.yml"
expect "rules copy: exactly ShmprovDrift's for: 75m -> 0s" "$py" -c '
import sys, yaml
a, b = (yaml.safe_load(open(f))["groups"][0]["rules"] for f in sys.argv[1:])
diff = [(x, y) for x, y in zip(a, b) if x != y]
sys.exit(0 if len(a) == len(b) == 8 and diff == [(a[0], dict(a[0], **{"for": "0s"}))]
         and a[0]["alert"] == "ShmprovDrift" and a[0]["for"] == "75m" else 1)' "$rules" "$work/rules.yml"
"$promtool" check rules "$work/rules.yml" >/dev/null 2>&1 || bad "promtool check rules on the copy"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $work/rules.yml
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:$ne_port']
EOF
prom_port=
for _ in 1 2 3; do
    p=$(free_port)
    rm -rf "$work/tsdb"
    "$prometheus" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
        --web.listen-address="127.0.0.1:$p" --log.level=warn >"$work/prometheus.log" 2>&1 &
    pr=$!
    pids+=("$pr")
    if wait_http "http://127.0.0.1:$p/-/ready" 30 "$pr"; then prom_port=$p; break; fi
    forget "$pr"
done
[ -n "$prom_port" ] || die "prometheus started: $(tail -n 5 "$work/prometheus.log")"
ok "prometheus serves 127.0.0.1:$prom_port, scraping the node_exporter every 1s"
instance=127.0.0.1:$ne_port
if "$py" "$here/wait_alert.py" "$prom_port" ShmprovDrift "$instance" firing 60 >"$work/alert.json"; then
    ok "Prometheus fires ShmprovDrift for $instance"
    echo "# the firing alert (/api/v1/alerts):"
    sed 's/^/    /' "$work/alert.json"
    expect "the alert: severity warning, job node, names kernel.shmmax (runtime) and the instance" "$py" -c '
import json, sys; a = json.load(open(sys.argv[1])); i = sys.argv[2]
l, d = a["labels"], a["annotations"]
sys.exit(0 if l == {"alertname": "ShmprovDrift", "instance": i, "job": "node", "severity": "warning"}
         and "Out of sync (key, check): kernel.shmmax (runtime)." in d["description"]
         and i in d["summary"] and "shmprov verify" in d["description"] else 1)' "$work/alert.json" "$instance"
else
    bad "Prometheus fires ShmprovDrift for $instance within 60 s"; sed 's/^/    /' "$work/alert.json"
    tail -n 20 "$work/prometheus.log" | sed 's/^/    prometheus: /'
fi
# The same data fires two more rules, as it should: shmmax 1 leaves a
# headroom of 1 byte (below the 1 MiB segment in use), and the hand-made
# leftover is there until the next apply.
for a in ShmprovHeadroomLow ShmprovProbeLeftover; do
    if "$py" "$here/wait_alert.py" "$prom_port" "$a" "$instance" firing 15 >"$work/$a.json"; then
        ok "Prometheus fires $a for $instance too ($("$py" -c '
import json, sys; a = json.load(open(sys.argv[1])); l = a["labels"]
print(", ".join((["limited_by=" + l["limited_by"]] if "limited_by" in l else []) + ["value " + a["value"]]))' "$work/$a.json"))"
    else
        bad "Prometheus fires $a for $instance within 15 s"; sed 's/^/    /' "$work/$a.json"
    fi
done

# ---- apply puts it back: in_sync 1 again, the alert resolves ----------------
t1=$(date +%s)
expect_code "apply after the drift: exit 0" 0 sp apply
scrape "$work/s4" || die "scrape after the second apply"
expect_sample "after apply (back)" "$work/s4" 'node_textfile_scrape_error' 0
expect_sample "after apply (back)" "$work/s4" 'shmprov_in_sync{check="runtime",key="kernel.shmmax"}' 1
expect_sample "after apply (back)" "$work/s4" 'shmprov_probe_leftovers' 0
sp status --output json >"$work/j4" 2>/dev/null
"$py" "$here/check_metrics.py" "apply's textfile after the drift" "$work/s4" "$work/j4" --plan "$work/p1" \
    --last-apply changed --applied-after "$t1" "${synced[@]}" >"$work/c4" 2>&1
count "$work/c4"
if "$py" "$here/wait_alert.py" "$prom_port" ShmprovDrift "$instance" gone 30 >"$work/gone.out"; then
    ok "ShmprovDrift resolves after the apply"
else
    bad "ShmprovDrift resolves after the apply within 30 s"; sed 's/^/    /' "$work/gone.out"
fi

# ---- the drop-in edited: the dropin check of every key ----------------------
dropin=/etc/sysctl.d/60-shmprov.conf
printf '# edited by hand\n' >>"$dropin"
expect_code "verify after editing the drop-in: exit 3" 3 sp verify
scrape "$work/s5" || die "scrape after the drop-in edit"
expect_sample "drop-in edited" "$work/s5" 'shmprov_in_sync{check="dropin",key="kernel.shmmax"}' 0
expect_sample "drop-in edited" "$work/s5" 'shmprov_in_sync{check="dropin",key="kernel.shmall"}' 0
expect_sample "drop-in edited" "$work/s5" 'shmprov_in_sync{check="runtime",key="kernel.shmmax"}' 1
expect_code "apply puts the drop-in back: exit 0" 0 sp apply
scrape "$work/s6" || die "scrape after the drop-in repair"
expect_sample "drop-in repaired" "$work/s6" 'shmprov_in_sync{check="dropin",key="kernel.shmmax"}' 1

# ---- another file wins shmmax at boot: boot check, a refused apply, ShmprovApplyRefused
printf 'kernel.shmmax = 8589934592\n' >/etc/sysctl.d/99-zz-test.conf
expect_code "verify with 99-zz-test.conf overriding shmmax: exit 3" 3 sp verify
scrape "$work/s7" || die "scrape after the override"
expect_sample "overridden at boot" "$work/s7" 'shmprov_in_sync{check="boot",key="kernel.shmmax"}' 0
expect_sample "overridden at boot" "$work/s7" 'shmprov_in_sync{check="boot",key="kernel.shmall"}' 1
expect_code "apply refuses (conflicts: refuse): exit 1" 1 sp apply
scrape "$work/s8" || die "scrape after the refusal"
expect_sample "refused" "$work/s8" 'shmprov_last_apply{result="refused"}' 1
expect_sample "refused" "$work/s8" 'node_textfile_scrape_error' 0
promtool_metrics "node_exporter scrape after the refusal" "$work/s8"
if "$py" "$here/wait_alert.py" "$prom_port" ShmprovApplyRefused "$instance" firing 60 >"$work/refused.json"; then
    ok "Prometheus fires ShmprovApplyRefused for $instance (labels: $("$py" -c '
import json, sys; print(json.load(open(sys.argv[1]))["labels"])' "$work/refused.json"))"
else
    bad "Prometheus fires ShmprovApplyRefused for $instance within 60 s"; sed 's/^/    /' "$work/refused.json"
fi
rm /etc/sysctl.d/99-zz-test.conf
expect_code "apply without the conflict: exit 0" 0 sp apply
scrape "$work/s9" || die "scrape after the last apply"
expect_sample "after the last apply" "$work/s9" 'shmprov_last_apply{result="unchanged"}' 1
expect_sample "after the last apply" "$work/s9" 'shmprov_in_sync{check="boot",key="kernel.shmmax"}' 1
if "$py" "$here/wait_alert.py" "$prom_port" ShmprovApplyRefused "$instance" gone 30 >"$work/gone2.out"; then
    ok "ShmprovApplyRefused resolves after a successful apply"
else
    bad "ShmprovApplyRefused resolves within 30 s"; sed 's/^/    /' "$work/gone2.out"
fi
# At the end, every alert that fired has resolved: only ShmprovOrphanSegments
# is left, pending (its for: 1h) for the ipcmk segment.
"$py" -c '
import json, sys, urllib.request
a = json.load(urllib.request.urlopen("http://127.0.0.1:%s/api/v1/alerts" % sys.argv[1], timeout=5))["data"]["alerts"]
print("\n".join("%s %s" % (x["labels"]["alertname"], x["state"]) for x in a))' "$prom_port" >"$work/left" 2>&1
if [ "$(cat "$work/left")" = "ShmprovOrphanSegments pending" ]; then
    ok "alerts left: ShmprovOrphanSegments pending (the ipcmk segment), nothing firing"
else
    bad "alerts left: $(tr '\n' ';' <"$work/left")"
fi
left=$(find "$tf" -mindepth 1 -printf '%f\n')
if [ "$left" = shmprov.prom ] && [ "$(stat -c %a "$tf/shmprov.prom")" = 644 ]; then
    ok "the textfile directory holds only shmprov.prom, mode 0644 (no temporary file left)"
else
    bad "the textfile directory: $(find "$tf" -mindepth 1 -printf '%M %f; ')"
fi
echo "# $((SECONDS - started)) s"
finish
