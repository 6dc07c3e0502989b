#!/bin/sh
# Builds the libFuzzer targets with clang in their own build directory and
# runs each one for a bounded time over a copy of its seed corpus, then over
# its regression inputs. Exits non-zero on any crash, leak, timeout, out of
# memory or sanitizer report.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET [TARGET...]]    (default: 60, all)
#
# Environment: BUILD_DIR (default <repo>/build-fuzz), CC (default clang),
# FUZZ_RSS_LIMIT_MB (default 2048), FUZZ_WORK_DIR (default
# $BUILD_DIR/fuzz-work; wiped per target). See tests/fuzz/README.md for
# longer local runs.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift
build=${BUILD_DIR:-$repo/build-fuzz}
work=${FUZZ_WORK_DIR:-$build/fuzz-work}
rss=${FUZZ_RSS_LIMIT_MB:-2048}
targets=${*:-fuzz_profile fuzz_sizes fuzz_sysctld fuzz_proc fuzz_http_answer fuzz_http_retry}

# 0 would be libFuzzer's "no limit": never in CI.
case $seconds in
'' | *[!0-9]* | 0) echo "usage: $0 [SECONDS_PER_TARGET (>= 1) [TARGET...]]" >&2; exit 2 ;;
esac

CC=${CC:-clang} cmake -S "$repo" -B "$build" -DSHMPROV_FUZZ=ON -DSHMPROV_TESTS=OFF -DSHMPROV_WERROR=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086 # targets is a list
cmake --build "$build" -j "$(nproc)" --target $targets >/dev/null

# Leaks count as failures; any report stops the target with a stack.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

# A sanitizer or libFuzzer report anywhere in a log; the exit status is
# checked too, this catches reports a target survived.
reported() {
    grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer|==[0-9]+== ?ERROR' "$1"
}

failed=0
for t in $targets; do
    bin=$build/tests/fuzz/$t
    dir=$work/$t
    rm -rf "$dir"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    # A copy: the run adds and reduces inputs; the seeds stay as committed.
    cp -pR "$here/corpus/$t/." "$dir/corpus/"
    if [ "$t" = fuzz_profile ]; then
        # Every fixture, including ones added after the corpus was seeded.
        cp -p "$repo"/tests/fixtures/bad/*.yaml "$dir/corpus/"
        for f in "$repo"/profiles/*.yaml; do cp -p "$f" "$dir/corpus/profile-${f##*/}"; done
    fi

    set --
    [ -f "$here/dict/$t.dict" ] && set -- -dict="$here/dict/$t.dict"

    status=0
    "$bin" -max_total_time="$seconds" -rss_limit_mb="$rss" -timeout=10 -detect_leaks=1 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$@" "$dir/corpus" \
        >"$dir/fuzz.log" 2>&1 || status=$?

    # Regression inputs: each must now pass (files only; README/.gitkeep are
    # not inputs).
    rstatus=0
    nreg=0
    set --
    for f in "$here/regressions/$t"/*; do
        [ -f "$f" ] || continue
        set -- "$@" "$f"
        nreg=$((nreg + 1))
    done
    if [ "$nreg" -gt 0 ]; then
        "$bin" -rss_limit_mb="$rss" -timeout=10 -detect_leaks=1 "$@" >"$dir/regressions.log" 2>&1 ||
            rstatus=$?
    else
        : >"$dir/regressions.log"
    fi

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz.log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/fuzz.log" | tail -n 1)
    if [ -z "$execs" ]; then
        # Older output: "Done N runs in S second(s)".
        execs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$dir/fuzz.log" | tail -n 1)
    fi
    crashes=$(find "$dir/artifacts" -type f | wc -l)
    bad=0
    if [ "$status" -ne 0 ] || reported "$dir/fuzz.log" || [ "$crashes" -gt 0 ]; then
        bad=1
        [ "$crashes" -gt 0 ] || crashes=1
    fi
    regfail=
    if [ "$rstatus" -ne 0 ] || reported "$dir/regressions.log"; then
        regfail=' (FAILED)'
    fi
    printf '%s: %s execs, %s exec/s, %s crashes, %s regression inputs%s\n' "$t" "${execs:-?}" \
        "${rate:-?}" "$crashes" "$nreg" "$regfail"
    if [ "$bad" -ne 0 ]; then
        failed=1
        echo "  $t: exit status $status; log $dir/fuzz.log" >&2
        find "$dir/artifacts" -type f -exec echo "  reproducer: {}" \; >&2
        grep -E -m 20 -A 12 'ERROR:|runtime error:|deadly signal|Test unit written' "$dir/fuzz.log" |
            sed 's/^/    /' >&2 || true
    fi
    if [ -n "$regfail" ]; then
        failed=1
        echo "  $t: a regression input fails again; log $dir/regressions.log" >&2
        grep -E -m 20 -A 12 'Running:|ERROR:|runtime error:' "$dir/regressions.log" |
            sed 's/^/    /' >&2 || true
    fi
done

if [ "$failed" -ne 0 ]; then
    echo "fuzzing found problems: copy each reproducer to tests/fuzz/regressions/<target>/ once fixed" >&2
    exit 1
fi
echo "fuzzing: no crash, leak, timeout or sanitizer report"
