#!/bin/sh
# The checks' raw material, printed between markers for tests/platforms/
# check.py: run as the init of an emulated guest (busybox sh; its own
# kernel, nothing to protect) and, for the reference, natively on x86-64
# inside a private IPC and mount namespace (tests/platforms/native.sh).
# It judges nothing itself: every output goes to the host, which checks it.
#
# Usage: guest.sh SHMPROV SHM_HELPER PROFILES_DIR WORK_DIR
# Output: "==BEGIN NAME rc=N==" ... "==END NAME==" for each command's
# stdout, and NAME.stderr sections when it wrote to stderr.
S=$1 H=$2 P=$3 W=$4
mkdir -p "$W"

# run NAME COMMAND...: the command's stdout, exit status and stderr.
run() {
    name=$1
    shift
    "$@" >"$W/out" 2>"$W/err"
    rc=$?
    echo "==BEGIN $name rc=$rc=="
    cat "$W/out"
    echo
    echo "==END $name=="
    if [ -s "$W/err" ]; then
        echo "==BEGIN $name.stderr rc=0=="
        cat "$W/err"
        echo
        echo "==END $name.stderr=="
    fi
}

run uname uname -m
# busybox has no getconf: then the kernel's own word, KernelPageSize.
if command -v getconf >/dev/null 2>&1; then
    run getconf getconf PAGE_SIZE
fi
run smaps grep -m1 KernelPageSize /proc/self/smaps
for tier in small medium large; do
    run "plan.$tier" "$S" --profile "$P/$tier.yaml" --output json plan
done
run apply "$S" --profile "$P/small.yaml" --output json apply --no-report
run verify "$S" --profile "$P/small.yaml" verify
run proc cat /proc/sys/kernel/shmmax /proc/sys/kernel/shmall /proc/sys/kernel/shmmni
# 100000 bytes: 2 pages of 64 KiB, 25 of 4 KiB, counted against shmall.
run segment "$H" create 0x53480001 100000 --attach --touch --detach
run status "$S" --profile "$P/small.yaml" --output json status
# The report of an apply, spooled (--defer-report) and never sent: the
# collector's address is this machine's closed discard port.
cat "$P/small.yaml" >"$W/report.yaml"
cat >>"$W/report.yaml" <<EOF
report:
  url: http://127.0.0.1:9/v1/events
  timeout: 1
  spool_dir: $W/spool
EOF
run apply.report "$S" --profile "$W/report.yaml" --output json apply --defer-report
for f in "$W"/spool/*; do
    [ -f "$f" ] && run event cat "$f"
done
echo "==DONE=="
