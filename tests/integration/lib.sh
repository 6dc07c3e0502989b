# Shared by the integration tests: assertions that count, and the private
# namespace every test that could touch kernel limits or /etc runs in.
pass=0
fail=0

ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

# expect NAME COMMAND...: the command must succeed.
expect() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}

# not COMMAND...: succeeds when the command fails (for expect).
not() { ! "$@"; }

# expect_code NAME CODE COMMAND...: exact exit code.
expect_code() {
    local name=$1 want=$2 got
    shift 2
    "$@" >/dev/null 2>&1
    got=$?
    if [ "$got" -eq "$want" ]; then ok "$name"; else bad "$name (exit $got, expected $want)"; fi
}

# start_collector WORKDIR [MODE]: the test collector (tests/collector) on a
# free port of 127.0.0.1, logging to WORKDIR/log.jsonl. Sets collector (its
# pid) and port; returns 1, having said why, when it did not start.
start_collector() {
    local out=$1/collector.out
    /usr/bin/python3 "$src/tests/collector/collector.py" --port 0 ${2:+--mode "$2"} \
        --log "$1/log.jsonl" >"$out" 2>&1 &
    collector=$!
    for _ in $(seq 400); do grep -q '^listening on' "$out" 2>/dev/null && break; sleep 0.05; done
    port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$out" | head -n 1)
    [ -n "$port" ] || { echo "the test collector did not start: $(cat "$out")" >&2; return 1; }
}

finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
}

# Runs the calling script again inside a new IPC and mount namespace so the
# real kernel code paths run against private limits and the host never
# changes. Inside: /etc, /var/lib and /run are overlays whose
# writes go to a private tmpfs (so even creating /etc/shmprov leaves the host
# alone), and tmpfs is mounted over every directory shmprov writes:
# /etc/sysctl.d, /run/sysctl.d, /etc/shmprov, /var/lib/shmprov. Scratch files
# ($TMPDIR) live on that private tmpfs too. Nothing is mounted over a
# directory that may hold this checkout (such as /tmp or /mnt): the private
# tmpfs hangs on a fresh empty directory the outer run makes and removes.
enter_private_namespace() {
    local scratch rc
    if [ -n "${SHMPROV_NAMESPACE_SCRATCH:-}" ]; then
        scratch=$SHMPROV_NAMESPACE_SCRATCH
        mount --make-rprivate /
        mount -t tmpfs -o size=256m,mode=0700 shmprov-scratch "$scratch"
        for d in /etc /var/lib /run; do
            mkdir -p "$scratch/upper$d" "$scratch/work$d"
            mount -t overlay shmprov-overlay -o "lowerdir=$d,upperdir=$scratch/upper$d,workdir=$scratch/work$d" "$d"
        done
        for d in /etc/sysctl.d /run/sysctl.d /etc/shmprov /var/lib/shmprov; do
            mkdir -p "$d"
            mount -t tmpfs -o size=4m,mode=0755 shmprov-test "$d"
        done
        mkdir -p "$scratch/tmp"
        export TMPDIR="$scratch/tmp"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "FAIL $0 needs root for unshare --ipc --mount (CI runs as root)"
        echo "0 passed, 1 failed"
        exit 1
    fi
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/shmprov-namespace.XXXXXX") || exit 1
    rc=0
    SHMPROV_NAMESPACE_SCRATCH=$scratch unshare --ipc --mount -- "$BASH" "$0" "$@" || rc=$?
    rmdir "$scratch"
    exit $rc
}

# start_suite "$@": how a suite starts. It enters the private namespaces
# (enter_private_namespace), then sets the names the suites share: py, work
# (a scratch directory inside the namespaces), K, dropin, DEFAULT (the
# kernel's default shmmax and shmall) and page.
# shellcheck disable=SC2034 # used by the suites that source this file
start_suite() {
    enter_private_namespace "$@"
    py=/usr/bin/python3
    work=$(mktemp -d)
    K=/proc/sys/kernel
    dropin=/etc/sysctl.d/60-shmprov.conf
    DEFAULT=18446744073692774399
    page=$(getconf PAGE_SIZE)
}
