#!/bin/bash
# Every bad profile in FIXTURES must be refused with exactly the messages in
# its .expected file (@FILE@ stands for the profile's path), exit code 2, by
# both `validate` and `plan` — and nothing on stdout from plan. Neither
# writes anything, so this suite needs no private namespace (lib.sh).
# Usage: bad_profiles.sh SHMPROV FIXTURES_DIR
set -u
shmprov=$1
fixtures=$2
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check() { # NAME FILE EXPECTED MODE COMMAND...: compares stderr and exit code
    local name=$1 file=$2 expected=$3 mode=$4
    shift 4
    local out="$work/out" err="$work/err" code
    "$@" >"$out" 2>"$err"
    code=$?
    sed -e "s|@FILE@|$file|g" -e "s|@PAGE_SIZE@|$(getconf PAGE_SIZE)|g" "$expected" >"$work/want"
    if [ "$code" -ne 2 ]; then
        bad "$name: exit $code, expected 2"
    elif ! cmp -s "$work/want" "$err"; then
        bad "$name: stderr differs"
        diff -u "$work/want" "$err" | sed 's/^/    /'
    elif [ "$mode" = plan ] && [ -s "$out" ]; then
        bad "$name: plan printed a plan for an invalid profile"
    else
        ok "$name"
    fi
}

for f in "$fixtures"/*.yaml; do
    name=$(basename "$f" .yaml)
    exp="$fixtures/$name.expected"
    if [ ! -f "$exp" ]; then
        bad "$name: no $name.expected"
        continue
    fi
    # Profiles must not be writable by others when shmprov runs as root; the
    # checkout's modes are not ours to trust, so test a private copy.
    cp "$f" "$work/$name.yaml"
    chmod 0644 "$work/$name.yaml"
    check "validate/$name" "$work/$name.yaml" "$exp" validate "$shmprov" validate "$work/$name.yaml"
    check "plan/$name" "$work/$name.yaml" "$exp" plan "$shmprov" --profile "$work/$name.yaml" plan
done

# Generated cases that do not belong in the repository as files.
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' '#' >"$work/huge.yaml"
printf '@FILE@:1:1: error: file is larger than 1048576 bytes (1 MiB); a profile is a few lines\n' >"$work/huge.expected"
check "validate/huge" "$work/huge.yaml" "$work/huge.expected" validate "$shmprov" validate "$work/huge.yaml"
check "plan/huge" "$work/huge.yaml" "$work/huge.expected" plan "$shmprov" --profile "$work/huge.yaml" plan

if [ "$(id -u)" = 0 ]; then
    printf 'version: 1\n' >"$work/groupwritable.yaml"
    chmod 0664 "$work/groupwritable.yaml"
    printf '@FILE@:1:1: error: profile is writable by a user other than root (owner uid 0, mode 0664); refusing to use it as root (chown root and chmod go-w)\n' >"$work/groupwritable.expected"
    check "validate/groupwritable" "$work/groupwritable.yaml" "$work/groupwritable.expected" validate "$shmprov" validate "$work/groupwritable.yaml"
fi

mkdir "$work/adir.yaml"
printf "shmprov: error: cannot read profile '@FILE@': is a directory, not a file\n" >"$work/adir.expected"
check "plan/directory" "$work/adir.yaml" "$work/adir.expected" plan "$shmprov" --profile "$work/adir.yaml" plan

mkfifo "$work/fifo.yaml"
printf "shmprov: error: cannot read profile '@FILE@': not a regular file\n" >"$work/fifo.expected"
check "plan/fifo" "$work/fifo.yaml" "$work/fifo.expected" plan timeout 5 "$shmprov" --profile "$work/fifo.yaml" plan

printf "shmprov: error: cannot read profile '@FILE@': No such file or directory\n" >"$work/missing.expected"
check "plan/missing" "$work/missing.yaml" "$work/missing.expected" plan "$shmprov" --profile "$work/missing.yaml" plan

finish
