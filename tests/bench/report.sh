#!/bin/bash
# Benchmark for reporting, in one private namespace (tests/integration/lib.sh):
#  - `apply` (unchanged) reporting to the test collector on 127.0.0.1 against
#    `apply --no-report`, in the same run;
#  - `apply` when the collector hangs, with report.timeout 3 s (must be at
#    most the deadline + 1 s);
#  - `plan` as built (libcurl dlopen()ed only to send) against the same
#    objects linked with -lcurl, to show what loading libcurl costs.
# Prints figures; a measurement, it does not fail on them.
# Usage: tests/bench/report.sh [SHMPROV] [BUILD_DIR]   (RUNS=N)
set -euo pipefail
shmprov=$(realpath "${1:-build/shmprov}")
build=$(realpath "${2:-$(dirname "$shmprov")}")
src=$(realpath "$(dirname "$0")/../..")
set -- "$shmprov" "$build"
set +e
. "$src/tests/integration/lib.sh"
set -e
enter_private_namespace "$@"

runs=${RUNS:-100}
py=/usr/bin/python3
work=$(mktemp -d)
start_collector "$work"
trap 'kill $collector 2>/dev/null' EXIT
printf 'version: 1\nhost: {ram_tier: small}\nreport:\n  url: http://127.0.0.1:%s/v1/events\n  timeout: 3\n' "$port" >"$work/p.yaml"
chmod 0644 "$work/p.yaml"
"$shmprov" --profile "$work/p.yaml" apply >"$work/first.out" 2>&1 ||
    { echo "report.sh: the first apply failed:" >&2; cat "$work/first.out" >&2; exit 1; }

# plan linked with libcurl: the same objects, plus -lcurl kept although unused.
gcc -o "$work/shmprov-with-libcurl" "$build/CMakeFiles/shmprov.dir/agent/main.c.o" "$build/libshmprov_core.a" \
    -Wl,--no-as-needed -lcurl -Wl,--as-needed -lyaml -ljson-c -lmd -ldl
ldd "$work/shmprov-with-libcurl" | grep -q libcurl ||
    { echo "report.sh: the libcurl-linked variant does not load libcurl" >&2; exit 1; }

hyperfine -N --style basic --warmup 10 --runs "$runs" --export-json "$work/apply.json" \
    -n "apply --no-report" "$shmprov --profile $work/p.yaml apply --no-report" \
    -n "apply + report" "$shmprov --profile $work/p.yaml apply"
hyperfine -N --style basic --warmup 20 --runs "$((runs * 2))" --export-json "$work/plan.json" \
    -n "plan (libcurl dlopen'ed only to send)" "$shmprov --profile $work/p.yaml plan" \
    -n "plan (linked with libcurl)" "$work/shmprov-with-libcurl --profile $work/p.yaml plan"

curl -sf -X POST -d '{"mode": "hang"}' "http://127.0.0.1:$port/_control" >/dev/null
hang=()
for _ in 1 2 3; do
    t0=$(date +%s%3N)
    "$shmprov" --profile "$work/p.yaml" apply >"$work/first.out" 2>&1 ||
    { echo "report.sh: the first apply failed:" >&2; cat "$work/first.out" >&2; exit 1; }
    hang+=($(($(date +%s%3N) - t0)))
done

"$py" - "$work" "${hang[@]}" <<'PY'
import json, sys
work, hang = sys.argv[1], [int(x) for x in sys.argv[2:]]
def med(f):
    return {r["command"]: r["median"] * 1e3 for r in json.load(open(f"{work}/{f}.json"))["results"]}
a, p = med("apply"), med("plan")
print()
for name, ms in list(a.items()) + list(p.items()):
    print(f"{name:<40} median {ms:8.3f} ms")
print(f"apply with a report to 127.0.0.1 costs {a['apply + report'] - a['apply --no-report']:.3f} ms more than --no-report")
print(f"plan linked with libcurl: {p['plan (linked with libcurl)'] / p[next(iter(p))]:.2f}x the wall time of plan as built")
print(f"apply against a hanging collector, report.timeout 3 s: {', '.join(map(str, hang))} ms "
      f"(goal <= 4000 ms: {'met' if max(hang) <= 4000 else 'NOT met'})")
PY
