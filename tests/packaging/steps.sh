# Shared by the packaging checks that build the .deb (deb.sh, boot.sh):
# steps with their timings, PASS/FAIL lines and the "N passed, N failed"
# ending. The sourcing script sets LOGS (where check() keeps each command's
# output) before its first check.
# shellcheck shell=bash

passed=0 failed=0
declare -a timings=()
step_name="" step_start="" step_failed=0

now() { echo "${EPOCHREALTIME/,/.}"; }
step() {
    end_step
    step_name=$1
    step_start=$(now)
    step_failed=$failed
    echo
    echo "== $step_name"
}
end_step() {
    [ -n "$step_name" ] || return 0
    local t
    t=$(awk -v a="$step_start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    timings+=("$(printf '%7s s  %s' "$t" "$step_name")")
    echo "-- $step_name: ${t} s"
    step_name=""
}
pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }
# check DESCRIPTION COMMAND...: the command's output goes to a log, shown on
# failure.
check() {
    local desc=$1 log
    shift
    log=$LOGS/check-$((passed + failed + 1)).log
    if "$@" >"$log" 2>&1; then
        pass "$desc"
    else
        fail "$desc (exit $?)"
        sed 's/^/    | /' "$log" | tail -40
    fi
}
# expect DESCRIPTION GOT WANT: one equality, both sides shown on failure.
expect() {
    if [ "$2" = "$3" ]; then
        pass "$1"
    else
        fail "$1"
        echo "    | got:  $2"
        echo "    | want: $3"
    fi
}
finish() {
    end_step
    echo
    echo "== time per step"
    printf '%s\n' "${timings[@]}"
    echo
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
# A step that everything after it needs: stop here when a check of the
# current step failed.
require() {
    if [ "$failed" -gt "$step_failed" ]; then
        echo "cannot go on after: $1"
        finish
    fi
}

# copy_source DIR: this tree as it is (uncommitted files included) into DIR,
# without build directories, the VCS or a top-level debian/, and with
# packaging/debian as DIR/debian. A copy, because dpkg-buildpackage writes
# next to its source and apt-get build-dep reads DIR/debian/control.
copy_source() {
    mkdir -p "$1"
    tar -C "$SRC" --exclude=./.git --exclude=./build --exclude='./build-*' \
        --exclude='./obj-*' --exclude=./debian -cf - . | tar -C "$1" -xf -
    cp -a "$1/packaging/debian" "$1/debian"
}
