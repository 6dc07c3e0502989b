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

# expect_code NAME CODE COMMAND...: exact exit code.
expect_code() {
    local name=$1 want=$2 got
    shift 2
    "$@" >/dev/null 2>&1
    got=$?
    if [ "$got" -eq "$want" ]; then ok "$name"; else bad "$name (exit $got, expected $want)"; fi
}

finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
}

# Re-executes the calling script inside a new IPC and mount namespace so the
# real kernel code paths run against private limits and the host never
# changes (SPEC §10). Inside: /etc and /var/lib are overlays whose writes go
# to a private tmpfs (so even creating /etc/shmprov leaves the host alone),
# /run and /tmp are private tmpfs, and tmpfs is mounted over every directory
# shmprov writes: /etc/sysctl.d, /run/sysctl.d, /etc/shmprov, /var/lib/shmprov.
enter_private_namespace() {
    if [ -n "${SHMPROV_IN_NAMESPACE:-}" ]; then
        mount --make-rprivate /
        mount -t tmpfs -o size=64m,mode=0700 shmprov-scratch /mnt
        for d in /etc /var/lib; do
            mkdir -p "/mnt/upper$d" "/mnt/work$d"
            mount -t overlay shmprov-overlay -o "lowerdir=$d,upperdir=/mnt/upper$d,workdir=/mnt/work$d" "$d"
        done
        mount -t tmpfs -o size=16m,mode=0755 shmprov-run /run
        mount -t tmpfs -o size=256m,mode=1777 shmprov-tmp /tmp
        for d in /etc/sysctl.d /run/sysctl.d /etc/shmprov /var/lib/shmprov; do
            mkdir -p "$d"
            mount -t tmpfs -o size=4m,mode=0755 shmprov-test "$d"
        done
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "FAIL $0 needs root for unshare --ipc --mount (CI runs as root)"
        echo "0 passed, 1 failed"
        exit 1
    fi
    SHMPROV_IN_NAMESPACE=1 exec unshare --ipc --mount -- "$BASH" "$0" "$@"
}
