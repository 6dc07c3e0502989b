#!/bin/bash
# Static analysis of the agent; fails on any finding (run by CI).
#   cppcheck   --enable=warning,portability on agent/*.c, with the include
#              directories and defines the build uses (compile_commands.json)
#              and POSIX knowledge (--library=posix: open/close,
#              opendir/closedir... leaks, argument checks). Suppressions only
#              inline, each with its reason: "// cppcheck-suppress ID ; why".
#   clang-tidy the checked-in .clang-tidy (bugprone-*, cert-*,
#              clang-analyzer-*; what is off, and why, is written there) on
#              agent/*.c and the agent's headers, every warning an error.
#   scan-build the clang static analyzer over a fresh build of the whole
#              tree (agent, unit tests) in a temporary directory.
# Nothing is written to the source tree or to BUILD_DIR.
#
# Usage: tests/static/run.sh BUILD_DIR
#   BUILD_DIR: a configured build of this tree (CMakeLists.txt exports
#   compile_commands.json); e.g. cmake -S . -B build-sa
# Env: JOBS (default: nproc), KEEP=1 keeps the scan-build work directory.
# Prints one summary line per tool; exits 1 when any tool found anything,
# 2 on a usage error.
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: no such directory: $1" >&2; exit 2; }
DB=$BUILD/compile_commands.json
JOBS=${JOBS:-$(nproc)}
for tool in cppcheck clang-tidy scan-build python3; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is not installed" >&2; exit 2; }
done
if [ ! -s "$DB" ]; then
    echo "$0: $DB is missing: configure BUILD_DIR with this tree's CMakeLists.txt" >&2
    exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shmprov-static.XXXXXX")
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then
        echo "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
declare -a summary=()
failed=0

# Every agent/*.c must be in the compile database: a file the build does
# not compile would otherwise be analysed with guessed flags, or not at all.
# The agent's entries alone go to $WORK/agent/compile_commands.json, which
# cppcheck and clang-tidy read:
#  - cppcheck refuses a database naming a file not generated yet (such as
#    default_profile.c in a build that was only configured);
#  - without _FORTIFY_SOURCE: for clang, glibc's headers turn snprintf,
#    memcpy... into macros for __builtin___*_chk, which clang-tidy's checks
#    (cert-err33-c above all) do not recognise, so findings would vanish.
mapfile -t sources < <(cd "$SRC" && ls agent/*.c)
mkdir -p "$WORK/agent"
missing=$(python3 - "$DB" "$SRC" "$WORK/agent/compile_commands.json" "${sources[@]}" <<'PY'
import json, os, re, shlex, sys
db, src, out, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
fortify = re.compile(r"^(-Wp,)?-[DU]_FORTIFY_SOURCE(=.*)?$")
entries = {os.path.normpath(os.path.join(e["directory"], e["file"])): e for e in json.load(open(db))}
wanted = [entries[f] for f in (os.path.join(src, f) for f in files) if f in entries]
for e in wanted:
    if "arguments" in e:
        e["arguments"] = [a for a in e["arguments"] if not fortify.match(a)]
    else:
        e["command"] = shlex.join(a for a in shlex.split(e["command"]) if not fortify.match(a))
json.dump(wanted, open(out, "w"), indent=1)
print(" ".join(f for f in files if os.path.join(src, f) not in entries))
PY
)
if [ -n "$missing" ]; then
    echo "$0: not in $DB (not in the build, or BUILD_DIR is of another tree): $missing" >&2
    exit 2
fi

# ---------------------------------------------------------------------------
echo "== cppcheck $(cppcheck --version | awk '{ print $2 }')"
start=$(now)
# --project: the -I and -D of each file's real compile command (agent/*.c
# only); only the configuration they define is checked.
cppcheck --project="$WORK/agent/compile_commands.json" --std=c11 --library=posix \
    --enable=warning,portability --error-exitcode=1 --inline-suppr -j "$JOBS" --quiet \
    --template='{file}:{line}:{column}: {severity}: {message} [{id}]' >"$WORK/cppcheck.out" 2>&1
rc=$?
n=$(grep -cE '^[^ ]+:[0-9]+:[0-9]+: [a-z]+: .*\[[A-Za-z0-9_]+\]$' "$WORK/cppcheck.out")
cat "$WORK/cppcheck.out"
if [ "$rc" -ne 0 ] || [ "$n" -ne 0 ]; then
    failed=1
    summary+=("cppcheck:   FAIL, $n finding(s) (exit $rc), $(since "$start") s")
else
    summary+=("cppcheck:   ok, 0 findings in ${#sources[@]} files, $(since "$start") s")
fi

# ---------------------------------------------------------------------------
echo "== $(clang-tidy --version | grep -m1 -o 'LLVM version [0-9.]*' | sed 's/LLVM/clang-tidy/')"
start=$(now)
# One process per file, JOBS at a time. A finding in a header shows once
# per file that includes it: counted once.
printf '%s\n' "${sources[@]}" | (cd "$SRC" && xargs -P "$JOBS" -I{} \
    sh -c 'clang-tidy -p "$1/agent" --config-file="$2/.clang-tidy" --warnings-as-errors="*" --quiet "$2/$3" \
               >"$4/tidy.$(echo "$3" | tr / _).out" 2>&1 || echo "$3" >>"$4/tidy.failed"' \
    sh "$WORK" "$SRC" {} "$WORK")
cat "$WORK"/tidy.*.out | grep -v -e '^[0-9]* warnings\? generated\.$' -e '^Suppressed [0-9]* warnings' \
    -e '^Use -header-filter=' -e '^Error while processing ' -e '^[0-9]* warnings\? treated as errors\?$' \
    >"$WORK/clang-tidy.out"
n=$(grep -E '^[^ ]+:[0-9]+:[0-9]+: (error|warning): ' "$WORK/clang-tidy.out" | sort -u | wc -l)
nfailed=$(sort -u "$WORK/tidy.failed" 2>/dev/null | wc -l)
cat "$WORK/clang-tidy.out"
if [ "$n" -ne 0 ] || [ "$nfailed" -ne 0 ]; then
    failed=1
    summary+=("clang-tidy: FAIL, $n finding(s), $nfailed file(s) not clean, $(since "$start") s")
else
    summary+=("clang-tidy: ok, 0 findings in ${#sources[@]} files, $(since "$start") s")
fi

# ---------------------------------------------------------------------------
echo "== scan-build (clang $(clang --version | grep -m1 -o 'version [0-9.]*' | cut -d' ' -f2))"
start=$(now)
# A fresh build directory: scan-build must see every file compiled.
# --status-bugs: exit 1 when the analyzer reports anything. SHMPROV_HARDEN
# off: the analyzer models the plain libc calls that FORTIFY would replace.
scan-build --status-bugs -o "$WORK/scan-build" \
    cmake -S "$SRC" -B "$WORK/build" -DSHMPROV_WERROR=ON -DSHMPROV_HARDEN=OFF >"$WORK/scan-configure.out" 2>&1
rc=$?
if [ "$rc" -eq 0 ]; then
    scan-build --status-bugs -o "$WORK/scan-build" \
        cmake --build "$WORK/build" -j "$JOBS" >"$WORK/scan-build.out" 2>&1
    rc=$?
else
    cat "$WORK/scan-configure.out"
fi
grep -E '^/[^ ]+:[0-9]+:[0-9]+: warning: |^scan-build: ' "$WORK/scan-build.out" 2>/dev/null
n=$(grep -oE '^scan-build: [0-9]+ bugs? found' "$WORK/scan-build.out" 2>/dev/null | grep -oE '[0-9]+' || echo 0)
if [ "$rc" -ne 0 ] || [ "$n" -ne 0 ]; then
    failed=1
    if [ "$n" -eq 0 ]; then
        tail -30 "$WORK/scan-build.out" 2>/dev/null
        summary+=("scan-build: FAIL, the build under scan-build failed (exit $rc), $(since "$start") s")
    else
        KEEP=1
        summary+=("scan-build: FAIL, $n bug(s) (HTML report: $WORK/scan-build), $(since "$start") s")
    fi
else
    summary+=("scan-build: ok, 0 bugs, $(since "$start") s")
fi

echo
printf '%s\n' "${summary[@]}"
exit "$failed"
