#!/bin/bash
# Benchmark: two shmprov binaries side by side, e.g. before and after a
# change: `apply --no-report` on an unchanged host and `plan`. Each binary
# runs in a private IPC + mount namespace of its own (tests/integration/lib.sh),
# so neither reads the other's state; the rounds alternate between them so
# that a machine whose speed drifts during the run slows both alike. Prints
# each median over all rounds and the new/old ratio; the goal is that the
# new binary is not slower than the old by more than 5 %. A measurement, it
# does not fail.
# Usage: tests/bench/compare.sh OLD NEW   (ROUNDS=N, RUNS=N per round)
set -euo pipefail
src=$(realpath "$(dirname "$0")/../..")

if [ "${1:-}" = --one ]; then # one round of one binary, inside its namespace
    shmprov=$2 out=$3
    set +e
    . "$src/tests/integration/lib.sh"
    set -e
    enter_private_namespace "$@"
    profile=$(mktemp -d)/small.yaml
    printf 'version: 1\nhost: {ram_tier: small}\n' >"$profile"
    "$shmprov" --profile "$profile" apply --no-report >/dev/null
    hyperfine -N --style none --warmup 10 --runs "${RUNS:-60}" --export-json "$out" \
        -n apply "$shmprov --profile $profile apply --no-report" -n plan "$shmprov plan" >/dev/null
    exit 0
fi

old=$(realpath "$1") new=$(realpath "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for round in $(seq "${ROUNDS:-5}"); do
    "$0" --one "$old" "$work/old.$round.json"
    "$0" --one "$new" "$work/new.$round.json"
done

/usr/bin/python3 - "$work" "$old" "$new" <<'PY'
import glob, json, statistics, sys
work, old, new = sys.argv[1:]
def times(which, command):
    out = []
    for path in sorted(glob.glob(f"{work}/{which}.*.json")):
        out += next(r["times"] for r in json.load(open(path))["results"] if r["command"] == command)
    return out
print(f"old: {old}\nnew: {new}")
print(f"{'command':<30} {'old median':>11} {'new median':>11} {'new/old':>8}")
for command, label in (("apply", "apply --no-report (unchanged)"), ("plan", "plan")):
    o, n = statistics.median(times("old", command)), statistics.median(times("new", command))
    ratio = n / o
    print(f"{label:<30} {o*1e3:>9.3f}ms {n*1e3:>9.3f}ms {ratio:>7.3f}x  "
          f"(goal <= 1.05x: {'met' if ratio <= 1.05 else 'NOT met'})")
PY
