#!/bin/bash
# Benchmark: `shmprov apply --no-report`, a run that changes everything (the
# drop-in removed and the kernel's defaults back before each run) and an
# unchanged run, against `sysctl -p` of the same drop-in — all in one private
# IPC + mount namespace (tests/integration/lib.sh), so the host is never
# touched. Goals: unchanged within 1.5x and changing
# within 3x of sysctl -p's median wall time; peak RSS under 4 MiB. The same
# two runs again with metrics.textfile set (node_exporter's textfile written
# at every apply): goal at most 1 ms more than without, median against median.
# Prints the figures and whether each goal is met; a measurement, it does not
# fail.
# Usage: tests/bench/apply.sh [SHMPROV]   (RUNS=N to change the run count)
set -euo pipefail
shmprov=$(realpath "${1:-build/shmprov}")
src=$(realpath "$(dirname "$0")/../..")
set -- "$shmprov"
set +e
. "$src/tests/integration/lib.sh"
set -e
enter_private_namespace "$@"

runs=${RUNS:-200}
work=$(mktemp -d)
dropin=/etc/sysctl.d/60-shmprov.conf
printf 'version: 1\nhost: {ram_tier: small}\n' >"$work/small.yaml"
textfile=/var/lib/prometheus/node-exporter/shmprov.prom
mkdir -p "$(dirname "$textfile")"
printf 'version: 1\nhost: {ram_tier: small}\nmetrics:\n  textfile: %s\n' "$textfile" >"$work/metrics.yaml"
chmod 0644 "$work/small.yaml" "$work/metrics.yaml"
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null

apply_cmd="$shmprov --profile $work/small.yaml apply --no-report"
metrics_cmd="$shmprov --profile $work/metrics.yaml apply --no-report"
sysctl_cmd="sysctl -q -p $dropin"
reset_cmd="rm -f $dropin; echo 18446744073692774399 >/proc/sys/kernel/shmmax; echo 18446744073692774399 >/proc/sys/kernel/shmall"

hyperfine -N --style basic --warmup 20 --runs "$runs" --export-json "$work/steady.json" \
    -n "sysctl -p" "$sysctl_cmd" -n "apply (unchanged)" "$apply_cmd" \
    -n "apply (unchanged, textfile)" "$metrics_cmd"
# With -N hyperfine splits commands into words itself, so the reset is an
# explicit bash -c; only the apply is timed. Check first that a reset really
# makes the next apply a changing one (and one that forks for the round trip).
bash -c "$reset_cmd"
$apply_cmd --output json >"$work/check.json"
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["result"] == "changed" and d["probe"]["round_trip"]["status"] == "passed", d' "$work/check.json"
$apply_cmd --output json >"$work/check.json"
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["result"] == "unchanged", d' "$work/check.json"
# ... and that the textfile case writes it. (Changed: the drop-in's header
# names the profile, another file here; the warmup runs above absorb that.)
rm -f "$textfile"
$metrics_cmd >/dev/null
grep -q '^shmprov_last_apply{result="changed"} 1$' "$textfile"
hyperfine --style basic --warmup 10 --runs "$runs" --export-json "$work/changing.json" -N \
    --prepare "bash -c '$reset_cmd'" -n "apply (changing)" "$apply_cmd" \
    -n "apply (changing, textfile)" "$metrics_cmd"
# Leave the namespace's drop-in in place for the RSS runs below.
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null

peak_rss_kib() { # the largest maximum resident set size over 20 runs; $1 resets first when set
    local max=0 kib reset=$1
    shift
    for _ in $(seq 20); do
        [ -n "$reset" ] && bash -c "$reset"
        kib=$(/usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -n 1)
        [ "$kib" -gt "$max" ] && max=$kib
    done
    echo "$max"
}
# shellcheck disable=SC2086
rss_sysctl=$(peak_rss_kib "" $sysctl_cmd)
# shellcheck disable=SC2086
rss_unchanged=$(peak_rss_kib "" $apply_cmd)
# shellcheck disable=SC2086
rss_changing=$(peak_rss_kib "$reset_cmd" $apply_cmd)
# shellcheck disable=SC2086
rss_metrics=$(peak_rss_kib "$reset_cmd" $metrics_cmd)

/usr/bin/python3 - "$work" "$rss_sysctl" "$rss_unchanged" "$rss_changing" "$rss_metrics" <<'PY'
import json, sys
work = sys.argv[1]
rss = {"sysctl -p": int(sys.argv[2]), "apply (unchanged)": int(sys.argv[3]), "apply (changing)": int(sys.argv[4]),
       "apply (unchanged, textfile)": int(sys.argv[5]), "apply (changing, textfile)": int(sys.argv[5])}
r = {}
for f in ("steady", "changing"):
    for x in json.load(open(f"{work}/{f}.json"))["results"]:
        r[x["command"]] = x
base = r["sysctl -p"]["median"]
print()
print(f"{'command':<28} {'median':>10} {'mean':>10} {'min':>10} {'peak RSS':>10} {'vs sysctl -p':>13}")
for name in ("sysctl -p", "apply (unchanged)", "apply (changing)", "apply (unchanged, textfile)",
             "apply (changing, textfile)"):
    x = r[name]
    print(f"{name:<28} {x['median']*1e3:>8.3f}ms {x['mean']*1e3:>8.3f}ms {x['min']*1e3:>8.3f}ms {rss[name]:>7} KiB {x['median']/base:>12.2f}x")
for name, goal in (("apply (unchanged)", 1.5), ("apply (changing)", 3.0)):
    ratio = r[name]["median"] / base
    print(f"{name}: {ratio:.2f}x sysctl -p (goal <= {goal}x): {'met' if ratio <= goal else 'NOT met'}")
for run in ("unchanged", "changing"):
    extra = (r[f"apply ({run}, textfile)"]["median"] - r[f"apply ({run})"]["median"]) * 1e3
    print(f"apply ({run}) with metrics.textfile: {extra:+.3f} ms median (goal <= +1 ms): {'met' if extra <= 1.0 else 'NOT met'}")
worst = max(rss["apply (unchanged)"], rss["apply (changing)"], rss["apply (changing, textfile)"])
print(f"apply peak RSS: {worst} KiB (goal < 4096 KiB): {'met' if worst < 4096 else 'NOT met'}")
PY
