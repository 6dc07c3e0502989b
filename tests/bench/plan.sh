#!/bin/bash
# Benchmark: `shmprov plan` (built-in default profile, text output) against
# `sysctl kernel.shmmax kernel.shmall kernel.shmmni` in the same run, on the
# same machine. Goals: plan's median wall time within 2x
# of that sysctl call, peak RSS under 4 MiB. Prints the figures and whether
# each goal is met; it is a measurement, so it does not fail the build.
# Usage: tests/bench/plan.sh [SHMPROV]   (RUNS=N to change the run count)
set -euo pipefail
shmprov=$(realpath "${1:-build/shmprov}")
runs=${RUNS:-300}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sysctl_cmd="sysctl kernel.shmmax kernel.shmall kernel.shmmni"
plan_cmd="$shmprov plan"

# -N: no intermediate shell, so the figures are the programs' own.
hyperfine -N --style basic --warmup 30 --runs "$runs" --export-json "$work/times.json" \
    -n sysctl "$sysctl_cmd" -n "shmprov plan" "$plan_cmd" >"$work/hyperfine.txt"
cat "$work/hyperfine.txt"

peak_rss_kib() { # the largest maximum resident set size over 20 runs
    local max=0 kib
    for _ in $(seq 20); do
        kib=$(/usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -n 1)
        [ "$kib" -gt "$max" ] && max=$kib
    done
    echo "$max"
}
# shellcheck disable=SC2086
sysctl_rss=$(peak_rss_kib $sysctl_cmd)
# shellcheck disable=SC2086
plan_rss=$(peak_rss_kib $plan_cmd)

/usr/bin/python3 - "$work/times.json" "$sysctl_rss" "$plan_rss" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
sysctl_rss, plan_rss = int(sys.argv[2]), int(sys.argv[3])
s, p = results["sysctl"], results["shmprov plan"]
ratio = p["median"] / s["median"]
print()
print(f"{'command':<14} {'median':>10} {'mean':>10} {'min':>10} {'peak RSS':>10}")
print(f"{'sysctl':<14} {s['median']*1e3:>8.3f}ms {s['mean']*1e3:>8.3f}ms {s['min']*1e3:>8.3f}ms {sysctl_rss:>7} KiB")
print(f"{'shmprov plan':<14} {p['median']*1e3:>8.3f}ms {p['mean']*1e3:>8.3f}ms {p['min']*1e3:>8.3f}ms {plan_rss:>7} KiB")
print(f"plan / sysctl median wall time: {ratio:.2f}x (goal <= 2x): {'met' if ratio <= 2 else 'NOT met'}")
print(f"plan peak RSS: {plan_rss} KiB (goal < 4096 KiB): {'met' if plan_rss < 4096 else 'NOT met'}")
PY
