#!/bin/bash
# The integration runs of shmprov under valgrind memcheck: plan, apply (dry
# run, changing, unchanged, reporting, refused, rolled back), verify,
# validate, status and flush, each on the real kernel in a private IPC +
# mount namespace (lib.sh), as the other suites run them. Every run must end
# with the exit code shmprov is expected to give, zero memcheck errors and
# zero bytes definitely lost, in every process it was made of.
# Usage: valgrind.sh SHMPROV SOURCE_DIR
set -u
shmprov=$1
src=$2
. "$src/tests/integration/lib.sh"
start_suite "$@"
logs=$work/vg
mkdir -p "$logs"
collector=
cleanup() {
    [ -z "$collector" ] || kill "$collector" 2>/dev/null
    mountpoint -q $K/shmall && umount $K/shmall
    ipcrm --all=shm 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

if ! command -v valgrind >/dev/null; then
    bad "valgrind/installed (no valgrind in PATH)"
    finish
    exit 1
fi

# One log file per process (%p): shmprov forks nothing, so a second log
# would be a process nobody expects (apply-changing checks there is one).
# --child-silent-after-fork=no: if it ever forks, the child's errors and
# leak summary land in a log of their own, checked like the agent's.
# shellcheck disable=SC2054 # the commas are valgrind's, inside one word
VALGRIND=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite --error-exitcode=99 --track-fds=no
    --child-silent-after-fork=no)
if [ -d "$src/tests/valgrind" ]; then
    for s in "$src"/tests/valgrind/*.supp; do [ -e "$s" ] && VALGRIND+=(--suppressions="$s"); done
fi

# vg NAME WANT ARGS...: runs shmprov ARGS under memcheck, stdout and stderr
# to $work/NAME.out and .err; three checks: the exit code (99 is memcheck's
# own), no error and no definite leak in any process's log. Sets nprocs (how
# many processes logged). A failure shows the log.
vg() {
    local name=$1 want=$2 code f e n=0 errs=0 leaks=0
    shift 2
    rm -f "$logs/$name".*.log
    "${VALGRIND[@]}" --log-file="$logs/$name.%p.log" "$shmprov" "$@" >"$work/$name.out" 2>"$work/$name.err"
    code=$?
    if [ "$code" = "$want" ]; then ok "valgrind/$name/exit-$want"; else
        bad "valgrind/$name/exit-$want (exit $code; 99 = memcheck found errors)"
        sed 's/^/    stderr: /' "$work/$name.err" | tail -n 20
    fi
    for f in "$logs/$name".*.log; do
        [ -e "$f" ] || continue
        n=$((n + 1))
        # The summaries are the last thing valgrind writes: a process killed
        # before them has none, and counts as a failure.
        e=0
        grep -q "ERROR SUMMARY: 0 errors from 0 contexts" "$f" || { errs=$((errs + 1)); e=1; }
        grep -q -e "definitely lost: 0 bytes in 0 blocks" -e "All heap blocks were freed" "$f" ||
            { leaks=$((leaks + 1)); e=1; }
        [ "$e" = 0 ] || sed "s|^|    $(basename "$f"): |" "$f"
    done
    nprocs=$n
    if [ "$n" = 0 ]; then
        bad "valgrind/$name/no-errors (no valgrind log in $logs)"
        bad "valgrind/$name/no-definite-leaks (no valgrind log in $logs)"
        return
    fi
    if [ "$errs" = 0 ]; then ok "valgrind/$name/no-errors"; else bad "valgrind/$name/no-errors ($errs of $n processes)"; fi
    if [ "$leaks" = 0 ]; then ok "valgrind/$name/no-definite-leaks"; else bad "valgrind/$name/no-definite-leaks ($leaks of $n processes)"; fi
}

json() { "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
profile() { # NAME CONTENT: a profile root may use
    printf '%b' "$2" >"$work/$1.yaml"
    chmod 0644 "$work/$1.yaml"
}
runtime() { echo "$(cat $K/shmmax) $(cat $K/shmall) $(cat $K/shmmni)"; }
limits() { echo "$1" >$K/shmmax; echo "$2" >$K/shmall; echo "$3" >$K/shmmni; }
reset() { # distinct starting limits, empty sysctl.d directories, no segments
    umount -q /etc/sysctl.d 2>/dev/null
    mount -t tmpfs -o size=4m,mode=0755 shmprov-test /etc/sysctl.d
    rm -rf /run/sysctl.d/* /run/shmprov
    printf '# (test) nothing here\n' >/etc/sysctl.conf
    limits 123456789 2000000 4000
    ipcrm --all=shm 2>/dev/null
}
for f in "$src"/profiles/*.yaml; do install -m 0644 "$f" "$work/"; done
profile small 'version: 1\nhost: {ram_tier: small}\n'
profile medium 'version: 1\nhost: {ram_tier: medium}\nlimits: {shmmni: 8192}\n'
small_max=4294967296
small_all=$((small_max / page))
t0=$(date +%s)

# ---- plan: the built-in default and every example profile, text and JSON ----
reset
vg plan-builtin-text 0 plan
expect "valgrind/plan-builtin-text/is-builtin" grep -q "^Profile   <built-in default>" "$work/plan-builtin-text.out"
vg plan-builtin-json 0 plan --output json
expect "valgrind/plan-builtin-json/is-builtin" test "$(json "$work/plan-builtin-json.out" "d['profile']['builtin']")" = True
for f in "$src"/profiles/*.yaml; do
    p=$(basename "$f" .yaml)
    vg "plan-$p-text" 0 --profile "$work/$p.yaml" plan
    expect "valgrind/plan-$p-text/planned" grep -q "^  kernel.shmmax " "$work/plan-$p-text.out"
    vg "plan-$p-json" 0 --profile "$work/$p.yaml" plan --output json
    expect "valgrind/plan-$p-json/one-document" test "$(json "$work/plan-$p-json.out" "d['keys'][0]['key']")" = kernel.shmmax
done

# ---- apply ----
vg apply-dry-run 0 --profile "$work/small.yaml" apply --dry-run
expect "valgrind/apply-dry-run/changed-nothing" test "$(runtime)" = "123456789 2000000 4000" -a ! -e "$dropin"

vg apply-changing 0 --profile "$work/small.yaml" apply --no-report --output json
expect "valgrind/apply-changing/changed" test "$(json "$work/apply-changing.out" "d['result'], d['probe']['round_trip']['status']")" = "changed passed"
expect "valgrind/apply-changing/kernel-values" test "$(runtime)" = "$small_max $small_all 4000"
expect "valgrind/apply-changing/one-process ($nprocs processes)" test "$nprocs" = 1

vg apply-unchanged 0 --profile "$work/small.yaml" apply --no-report --output json
expect "valgrind/apply-unchanged/unchanged" test "$(json "$work/apply-unchanged.out" "d['result'], d['probe']['round_trip']['status']")" = "unchanged skipped"

# Reports to the test collector (libcurl is dlopen()ed: slow under
# valgrind, hence the generous report.timeout).
if start_collector "$work"; then
    base=http://127.0.0.1:$port
    printf 'tok-%s-secret\n' "$RANDOM$RANDOM" >"$work/token"
    chmod 0600 "$work/token"
    profile report "version: 1\nhost: {ram_tier: medium}\nreport:\n  url: $base/v1/events\n  token_file: $work/token\n  timeout: 120\n"
    reset
    rm -rf /var/lib/shmprov/spool
    vg apply-report 0 --profile "$work/report.yaml" apply
    expect "valgrind/apply-report/delivered" grep -q "report delivered to $base/v1/events" "$work/apply-report.err"
    expect "valgrind/apply-report/one-post" test "$(wc -l <"$work/log.jsonl")" = 1
    json "$work/log.jsonl" "d['body']" >"$work/event.json" 2>/dev/null
    "$py" "$src/tests/schema/validate_json.py" "$src/schemas/report.schema.json" --data "$work/event.json" \
        >"$work/schema.out" 2>&1
    expect "valgrind/apply-report/data-matches-schema ($(tail -n 1 "$work/schema.out"))" test $? = 0

    vg apply-defer-report 0 --profile "$work/report.yaml" apply --defer-report
    expect "valgrind/apply-defer-report/spooled-not-sent" test "$(wc -l <"$work/log.jsonl")" = 1 -a \
        "$(find /var/lib/shmprov/spool -maxdepth 1 -name '*.json' | wc -l)" = 1
    vg flush 0 --profile "$work/report.yaml" flush
    expect "valgrind/flush/sent" test "$(wc -l <"$work/log.jsonl")" = 2 -a \
        "$(find /var/lib/shmprov/spool -maxdepth 1 -name '*.json' | wc -l)" = 0
    kill "$collector"
    wait "$collector" 2>/dev/null
    collector=
else
    bad "valgrind/collector-started"
fi

# Refused: a later file wins kernel.shmmax at boot.
reset
printf '# later\nkernel.shmmax = 1234567\n' >/etc/sysctl.d/99-zz.conf
vg apply-refused 1 --profile "$work/small.yaml" apply --no-report
expect "valgrind/apply-refused/names-file-and-line" grep -q "/etc/sysctl.d/99-zz.conf:2" "$work/apply-refused.err"
expect "valgrind/apply-refused/kernel-untouched" test "$(runtime)" = "123456789 2000000 4000"

# Rolled back: a runtime write fails half-way (read-only bind mount).
reset
"$shmprov" --profile "$work/small.yaml" apply --no-report >/dev/null 2>&1
mount --bind $K/shmall $K/shmall && mount -o remount,bind,ro $K/shmall
vg apply-rollback 1 --profile "$work/medium.yaml" apply --no-report
umount $K/shmall
expect "valgrind/apply-rollback/says-restored" grep -q "restored: kernel.shmmax restored to $small_max" "$work/apply-rollback.err"
expect "valgrind/apply-rollback/runtime-restored" test "$(runtime)" = "$small_max $small_all 4000"

# ---- verify: in sync, then drifted ----
vg verify-in-sync 0 --profile "$work/small.yaml" verify
echo 1000000 >$K/shmmax
vg verify-drifted 3 --profile "$work/small.yaml" verify
expect "valgrind/verify-drifted/said" grep -q "runtime: kernel.shmmax: the running kernel has 1000000" "$work/verify-drifted.out" "$work/verify-drifted.err"
echo $small_max >$K/shmmax
rm "$dropin"
vg verify-drifted-json 3 --profile "$work/small.yaml" verify --output json
expect "valgrind/verify-drifted-json/dropin-missing" test "$(json "$work/verify-drifted-json.out" "sorted(set(x['kind'] for x in d['drift']))")" = "['dropin-missing']"

# ---- validate: the built-in default, the examples, every bad fixture ----
vg validate-builtin 0 validate
vg validate-good 0 validate "$work"/bigdata.yaml "$work"/default.yaml "$work"/large.yaml \
    "$work"/medium.yaml "$work"/postgresql.yaml "$work"/small.yaml
mkdir "$work/bad"
for f in "$src"/tests/fixtures/bad/*.yaml; do install -m 0644 "$f" "$work/bad/"; done
badfiles=("$work"/bad/*.yaml)
vg validate-bad 2 validate "${badfiles[@]}"
expect "valgrind/validate-bad/every-file-refused" test \
    "$(grep -o "^$work/bad/[^:]*" "$work/validate-bad.err" | sort -u | wc -l)" = "${#badfiles[@]}"
vg plan-bad 2 --profile "${badfiles[0]}" plan

# ---- status, with a real segment whose creator is gone ----
seg=$("$py" -c 'import ctypes; l = ctypes.CDLL(None); print(l.shmget(0, ctypes.c_size_t(1 << 20), 0o1600))')
vg status 0 --profile "$work/small.yaml" status
vg status-segments-json 0 --profile "$work/small.yaml" status --segments --output json
expect "valgrind/status-segments-json/lists-the-segment" grep -q "\"id\": *$seg\b" "$work/status-segments-json.out"
vg status-remove-orphans-dry-run 0 --profile "$work/small.yaml" status --remove-orphans --dry-run
ipcrm --all=shm 2>/dev/null

echo "valgrind runs took $(($(date +%s) - t0)) s"
finish
