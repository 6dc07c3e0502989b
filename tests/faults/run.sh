#!/bin/bash
# Systematic syscall fault injection (tests/faults/README.md): every
# occurrence of every swept system call of seven scenarios, each fault that
# fits it, injected with the real strace, in two workers that each run in
# their own `unshare --ipc --mount` namespace with tmpfs over every
# directory shmprov writes. The host's limits and /etc never change.
# Usage: run.sh SHMPROV SOURCE_DIR SHM_HELPER [--stride N] [--jobs N]
#               [--scenario NAME] [--only SYSCALL:N:FAULT] [--log-dir DIR]
# The last line is "N passed, M failed" (cases); the exit status is 0 only
# when every case passed and the sanity checks held.
set -u
if [ $# -lt 3 ]; then
    echo "usage: $0 SHMPROV SOURCE_DIR SHM_HELPER [--stride N] [--jobs N] [--scenario NAME] [--only SYSCALL:N:FAULT]" >&2
    exit 2
fi
src=$2
if [ "$(id -u)" != 0 ]; then
    echo "FAIL $0 needs root for unshare --ipc --mount (CI runs as root)"
    echo "0 passed, 1 failed"
    exit 1
fi
# Only the straced runs get detect_leaks=0 (LeakSanitizer cannot run under
# ptrace); sweep.py sets it for them and leaves every other run alone.
exec /usr/bin/python3 "$src/tests/faults/sweep.py" "$@"
