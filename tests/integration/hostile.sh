#!/bin/bash
# Hostile input, end to end: the real binary against every kind of input an
# attacker or a broken host can hand it (the hardening issue's list), in a
# private IPC + mount namespace (lib.sh). Every case makes the same four
# assertions, reported as one line `hostile/CASE/COMMAND`:
#   - a clear message: stdout or stderr matches what names the file, key or
#     reason (and, where given, does NOT match a known wrong explanation);
#   - no crash: the exit code is the expected one (never >= 124: a signal,
#     or `timeout` killing a hang) and there is no sanitizer report;
#   - nothing written: /proc/sys/kernel/shm*, /etc/sysctl.d, /run/sysctl.d,
#     /etc/shmprov, /var/lib/shmprov and `ipcs -m` are byte for byte the same
#     before and after (report cases: everything but the spool);
#   - bounded: it ends within LIMIT (5 s unless said otherwise; a hard
#     `timeout` stops a hang) and prints a bounded amount of text.
# Some cases add a line of their own (`.../sane-result`, `.../real-tools`...).
# Usage: hostile.sh SHMPROV SOURCE_DIR
set -u
shmprov=$1
src=$2
. "$src/tests/integration/lib.sh"
start_suite "$@"
known_bugs=0

HARD_TIMEOUT=10 # seconds: a hang is killed here (and fails the LIMIT check)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT

json() { "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# Only this namespace's private files count in the boot order: a tmpfs over
# /usr/lib/sysctl.d (= /lib/sysctl.d) hides the host's vendor files, so the
# real systemd-sysctl and sysctl --system can be run as ground truth.
[ -d /usr/lib/sysctl.d ] && mount -t tmpfs -o size=1m shmprov-usrlib /usr/lib/sysctl.d
private_sysctl_dirs() {
    local d
    for d in /etc/sysctl.d /run/sysctl.d /usr/lib/sysctl.d /lib/sysctl.d; do
        [ ! -e "$d" ] || [ "$(stat -f -c %T "$d")" = tmpfs ] || return 1
    done
    [ ! -e /usr/local/lib/sysctl.d ] || [ "$(stat -f -c %T /usr/local/lib/sysctl.d)" = tmpfs ] || return 1
    ! grep -rahv '^[[:space:]]*\(#\|;\|$\)' /etc/sysctl.d /run/sysctl.d /usr/lib/sysctl.d /etc/sysctl.conf |
        tr -d '\r' | grep -aqv '^-\?kernel\.shm'
}

# snapshot FILE [EXCLUDED_DIR]: the kernel limits, every entry (and the
# sha256 of every file) of the directories shmprov may write, and the
# segments (/proc/sysvipc/shm, what `ipcs -m` prints). Builtins and one find:
# forks are most of this suite's time. Not the state file: every apply on
# the live system records its result there, a refusal included (the
# metrics' shmprov_last_apply), so it and the mtime of its directory change
# by design; everything else in /var/lib/shmprov must not.
snapshot() {
    local dirs=(/etc/sysctl.d /run/sysctl.d /etc/shmprov /var/lib/shmprov) d keep=() lines=()
    for d in "${dirs[@]}"; do [ "$d" = "${2:-}" ] || keep+=("$d"); done
    for d in $K/shmmax $K/shmall $K/shmmni /proc/sysvipc/shm; do
        mapfile -t -O "${#lines[@]}" lines <"$d"
    done
    {
        printf '%s\n' "${lines[@]}"
        find "${keep[@]}" -path /var/lib/shmprov/state.json -prune -o -path /var/lib/shmprov -printf '%p %y\n' -o \
            -printf '%p %y %s %T@ %i %m %U\n' -type f -exec sha256sum {} + 2>&1
    } >"$1"
}
same_files() { # A B: same text, without a process
    local a=() b=()
    mapfile -t a <"$1"
    mapfile -t b <"$2"
    [ "${#a[@]}" = "${#b[@]}" ] && [ "${a[*]}" = "${b[*]}" ]
}

# hcase NAME CODES REGEX COMMAND...: one case, four assertions (see the top).
#   CODES: the exit codes that are right ("2", or "0 3" where both are).
#   REGEX: extended regex stdout+stderr must match (the clear message).
# Optional, as assignments in front of the call:
#   NOT=REGEX     the output must not match it (a known wrong explanation)
#   KNOWN_BUG=WHY a recorded, still open bug: reported as KNOWN-BUG, never
#                 counted as passed; fails once it passes (remove the marker)
#   WRITES=any    skip the nothing-written check; WRITES=spool: all but
#                 /var/lib/shmprov must stay the same
#   LIMIT=MS      time bound (default 5000)
#   OUTMAX=BYTES  output bound (default 256 KiB)
#   RSSMAX=KIB    peak RSS bound (through /usr/bin/time)
# Leaves the output in $work/out, $work/err, the code in $code, took in ms.
hcase() {
    local name=$1 codes=$2 re=$3
    shift 3
    local writes=${WRITES:-none} limit=${LIMIT:-5000} outmax=${OUTMAX:-262144} t0 why=() wrap=()
    case $writes in
        none) snapshot "$work/before" ;;
        spool) snapshot "$work/before" /var/lib/shmprov ;;
    esac
    [ -n "${RSSMAX:-}" ] && wrap=(/usr/bin/time -f %M -o "$work/rss")
    t0=${EPOCHREALTIME/[.,]/}
    timeout -k 2 "$HARD_TIMEOUT" "${wrap[@]}" "$@" >"$work/out" 2>"$work/err" </dev/null
    code=$?
    took=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
    if [ "$code" -ge 124 ]; then
        why+=("exit $code: a signal, or killed by timeout (a crash or a hang)")
    elif [[ " $codes " != *" $code "* ]]; then
        why+=("exit $code, expected ${codes// / or }")
    fi
    grep -aqE 'Sanitizer|runtime error:' "$work/err" && why+=("sanitizer report on stderr")
    [ "$took" -le "$limit" ] || why+=("took $took ms, more than $limit")
    local size
    size=$(stat -c %s "$work/out" "$work/err")
    size=$((${size//$'\n'/+}))
    [ "$size" -le "$outmax" ] || why+=("printed $size bytes, more than $outmax")
    if [ -n "${RSSMAX:-}" ]; then
        local rss
        rss=$(tail -n 1 "$work/rss" 2>/dev/null)
        [[ "$rss" =~ ^[0-9]+$ ]] && [ "$rss" -le "$RSSMAX" ] || why+=("peak RSS '$rss' KiB, more than $RSSMAX")
    fi
    grep -aqE -- "$re" "$work/out" "$work/err" || why+=("no message matching /$re/")
    if [ -n "${NOT:-}" ] && grep -aqE -- "$NOT" "$work/out" "$work/err"; then
        why+=("says /$NOT/: $(grep -ahE -- "$NOT" "$work/out" "$work/err" | head -n 1 | cut -c1-200)")
    fi
    case $writes in
        none) snapshot "$work/after" ;;
        spool) snapshot "$work/after" /var/lib/shmprov ;;
    esac
    if [ "$writes" != any ] && ! same_files "$work/before" "$work/after"; then
        why+=("something was written: $(diff "$work/before" "$work/after" | grep '^[<>]' | head -n 4 | tr '\n' ' ')")
    fi
    if [ -n "${KNOWN_BUG:-}" ]; then
        # A bug recorded in an open issue: listed, never counted as a pass;
        # once fixed the marker must go (the check then counts again).
        if [ ${#why[@]} -eq 0 ]; then
            bad "hostile/$name: passes now; remove KNOWN_BUG ($KNOWN_BUG)"
        else
            local IFS=';'
            echo "KNOWN-BUG hostile/$name: ${why[*]} [$KNOWN_BUG]"
            known_bugs=$((known_bugs + 1))
        fi
    elif [ ${#why[@]} -eq 0 ]; then
        ok "hostile/$name ($took ms)"
    else
        local IFS=';'
        bad "hostile/$name: ${why[*]}"
        # what it said: stderr, then the lines of stdout that carry a verdict
        { head -n 6 "$work/err"; grep -aE 'warning|error|refuse|drift|overridden|unreadable|failed|unknown|in sync' "$work/out" | head -n 6; } |
            cut -c1-240 | sed 's/^/    | /'
    fi
}

profile() { # NAME CONTENT: a profile root may use
    printf '%b' "$2" >"$work/$1.yaml"
    chmod 0644 "$work/$1.yaml"
}
profile small 'version: 1\nhost: {ram_tier: small}\n'
profile auto 'version: 1\n'
small=$work/small.yaml
small_max=4294967296
small_all=$((small_max / page))

reset_host() { # kernel defaults, empty sysctl.d directories, no spool
    rm -rf /etc/sysctl.d/* /etc/sysctl.d/.[!.]* /run/sysctl.d/* /var/lib/shmprov/*
    printf '# hostile.sh: nothing here\n' >/etc/sysctl.conf
    echo $DEFAULT >$K/shmmax
    echo $DEFAULT >$K/shmall
    echo 4096 >$K/shmmni
}
baseline() { # PROFILE: applied once (no report), so a later apply changes nothing
    reset_host
    "$shmprov" --profile "$1" apply --no-report >"$work/baseline.out" 2>&1 ||
        bad "hostile/baseline-apply failed: $(tail -n 2 "$work/baseline.out")"
}

###########################################################################
# 1. Hostile profiles: validate, plan, apply --dry-run and apply all refuse
#    (exit 2), name the file and the reason, and write nothing.
###########################################################################
reset_host
profile_cases() { # CASE FILE REGEX
    local c=$1 f=$2 re=$3
    hcase "profile-$c/validate" 2 "$re" "$shmprov" validate "$f"
    hcase "profile-$c/plan" 2 "$re" "$shmprov" --profile "$f" plan
    hcase "profile-$c/apply-dry-run" 2 "$re" "$shmprov" --profile "$f" apply --dry-run
    hcase "profile-$c/apply" 2 "$re" "$shmprov" --profile "$f" apply
}

# Billion laughs: 9 levels of 9 aliases, 9^9 "lol"s once expanded. Aliases
# are refused as they are met, never expanded: fast, small, a few lines.
{
    printf 'version: 1\nl0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in 1 2 3 4 5 6 7 8 9; do
        j=$((i - 1))
        printf 'l%d: &l%d [*l%d,*l%d,*l%d,*l%d,*l%d,*l%d,*l%d,*l%d,*l%d]\n' $i $i $j $j $j $j $j $j $j $j $j
    done
    printf 'host: *l9\n'
} >"$work/laughs.yaml"
chmod 0644 "$work/laughs.yaml"
RSSMAX=131072 OUTMAX=16384 profile_cases billion-laughs "$work/laughs.yaml" \
    "$work/laughs.yaml:[0-9]+:[0-9]+: error: YAML aliases \(\*name\) are not allowed"

head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' '#' >"$work/huge.yaml"
chmod 0644 "$work/huge.yaml"
profile_cases over-1mib "$work/huge.yaml" "$work/huge.yaml:1:1: error: file is larger than 1048576 bytes"
# The bound is exact: 1 MiB itself is a profile (a valid one, padded).
{ printf 'version: 1\n'; head -c $((1024 * 1024 - 11)) /dev/zero | tr '\0' '#'; } >"$work/exact.yaml"
chmod 0644 "$work/exact.yaml"
hcase "profile-exactly-1mib/validate" 0 "$work/exact.yaml: ok" "$shmprov" validate "$work/exact.yaml"
rm -f "$work/huge.yaml" "$work/exact.yaml"

"$py" -c 'print("version: 1\nhost: " + "[" * 10000 + "]" * 10000)' >"$work/deep-seq.yaml"
"$py" -c 'print("version: 1\nhost: " + "{a: " * 10000 + "1" + "}" * 10000)' >"$work/deep-map.yaml"
"$py" -c 'print("version: 1\nhost:\n" + "".join(" " * i + "a:\n" for i in range(1, 1000)) + " " * 1000 + "a: 1")' >"$work/deep-block.yaml"
"$py" -c 'print("version: 1\nhost:\n  " + "- " * 10000 + "1")' >"$work/deep-dash.yaml"
chmod 0644 "$work"/deep-*.yaml
for d in seq map block dash; do
    profile_cases "deep-nesting-$d" "$work/deep-$d.yaml" \
        "$work/deep-$d.yaml:[0-9]+:[0-9]+: error: nesting is deeper than [0-9]+ levels"
done

mkfifo "$work/fifo.yaml"
profile_cases fifo "$work/fifo.yaml" "$work/fifo.yaml.*not a regular file"
profile_cases dev-zero /dev/zero "/dev/zero.*not a regular file"
mkdir "$work/dir.yaml"
profile_cases directory "$work/dir.yaml" "$work/dir.yaml.*is a directory"

# Another user's file, reached through a root-owned symbolic link: its owner
# can rewrite it at will (mode 0644), or chmod it first (mode 0444).
printf 'version: 1\nhost: {ram_tier: small}\n' >"$work/nobody.yaml"
chown 65534:65534 "$work/nobody.yaml"
chmod 0644 "$work/nobody.yaml"
ln -s "$work/nobody.yaml" "$work/link.yaml"
profile_cases symlink-to-other-users-file "$work/link.yaml" "$work/link.yaml.*(uid 65534|owned by)"
cp -p "$work/nobody.yaml" "$work/nobody-ro.yaml"
chmod 0444 "$work/nobody-ro.yaml"
ln -s "$work/nobody-ro.yaml" "$work/link-ro.yaml"
profile_cases symlink-to-other-users-read-only-file "$work/link-ro.yaml" "$work/link-ro.yaml.*(uid 65534|owned by)"
profile gw 'version: 1\nhost: {ram_tier: small}\n'
chmod 0664 "$work/gw.yaml"
profile_cases group-writable "$work/gw.yaml" "$work/gw.yaml.*writable by a user other than root.*mode 0664"

###########################################################################
# 2. Hostile sysctl.d entries. From a host in sync with the profile (so an
#    apply that proceeds has nothing to write either), one entry is added;
#    plan (text and JSON), apply --dry-run, verify, status, apply must not
#    hang, must name it, and keep the boot-order analysis right where it can
#    be right (checked against the real systemd-sysctl and sysctl --system).
###########################################################################
sysctld_cases() { # CASE PLAN_CODES PLAN_RE VERIFY_CODES VERIFY_RE STATUS_RE APPLY_CODES APPLY_RE
    local c=$1
    hcase "sysctld-$c/plan" "$2" "$3" "$shmprov" --profile "$small" plan
    hcase "sysctld-$c/apply-dry-run" "$2" "$3" "$shmprov" --profile "$small" apply --dry-run
    # --output json: the same findings, in the document or on stderr
    hcase "sysctld-$c/plan-json" "$2" "$3" "$shmprov" --profile "$small" --output json plan
    hcase "sysctld-$c/verify" "$4" "$5" "$shmprov" --profile "$small" verify
    hcase "sysctld-$c/status" 0 "$6" "$shmprov" --profile "$small" status
    hcase "sysctld-$c/apply" "$7" "$8" "$shmprov" --profile "$small" apply --no-report
}
# real_tools: what the real systemd-sysctl and sysctl --system set
# kernel.shmmax to at boot from these files ("hang" when they do not end).
real_tools() {
    local out=() t
    for t in /lib/systemd/systemd-sysctl "sysctl -q --system"; do
        echo $DEFAULT >$K/shmmax
        timeout 0.5 $t >/dev/null 2>&1
        if [ $? = 124 ]; then out+=(hang); else out+=("$(cat $K/shmmax)"); fi
    done
    echo $small_max >$K/shmmax
    echo $small_all >$K/shmall
    echo "${out[*]}"
}

# A FIFO: both tools block opening it at boot and apply nothing; shmprov must
# say that (not that a same-named file hides the drop-in: there is none).
baseline "$small"
mkfifo /etc/sysctl.d/50-fifo.conf
NOT='same-named file' sysctld_cases fifo \
    1 '50-fifo\.conf.*FIFO' \
    3 '50-fifo\.conf' \
    '50-fifo\.conf|could not be analysed' \
    1 '50-fifo\.conf'
if private_sysctl_dirs; then
    expect "hostile/sysctld-fifo/real-tools-hang-as-shmprov-says" test "$(real_tools)" = "hang hang"
else
    bad "hostile/sysctld-fifo/real-tools: the sysctl.d directories are not all private; not running them"
fi

# A dangling symbolic link: skipped by both tools (it still masks the name).
baseline "$small"
ln -s /nonexistent/hostile.conf /etc/sysctl.d/50-dangling.conf
sysctld_cases dangling-symlink \
    0 '50-dangling\.conf: dangling symbolic link' \
    0 'in sync' \
    'at boot: shmprov.s drop-in' \
    0 '50-dangling\.conf: dangling symbolic link'

# More than 1 MiB in one line (a comment): systemd-sysctl fails to read the
# file, procps reads one comment; shmprov does not analyse it and must say so
# wherever it reports the boot order (verify too: it claims "boot order").
# A file it cannot analyse may set a key at boot: plan and apply refuse.
baseline "$small"
head -c $((1024 * 1024 + 100)) /dev/zero | tr '\0' '#' >/etc/sysctl.d/50-huge.conf
sysctld_cases huge-file \
    1 '50-huge\.conf: larger than 1048576 bytes' \
    "0 3" '50-huge\.conf' \
    'unknown|50-huge\.conf' \
    1 '50-huge\.conf: larger than 1048576 bytes'

# More than 1 MiB of short lines, then kernel.shmmax = 1, read after the
# drop-in: both real tools read it all and set 1 at boot. An apply that
# writes the drop-in anyway is overridden at the next boot: plan and apply
# must refuse (or at least not pass as "no conflict"), verify must see it.
baseline "$small"
"$py" -c 'import sys; sys.stdout.write(("# " + "x" * 70 + "\n") * 15000 + "kernel.shmmax = 1\n")' \
    >/etc/sysctl.d/99-hugeset.conf
sysctld_cases huge-file-setting-shmmax \
    1 '99-hugeset\.conf' \
    3 '99-hugeset\.conf' \
    'unknown|99-hugeset\.conf' \
    1 '99-hugeset\.conf'
if private_sysctl_dirs; then
    expect "hostile/sysctld-huge-file-setting-shmmax/real-tools-set-1-at-boot" test "$(real_tools)" = "1 1"
else
    bad "hostile/sysctld-huge-file-setting-shmmax/real-tools: the sysctl.d directories are not all private"
fi

# Binary: 256 KiB of (seeded) random bytes, NULs and all, no '=': every line
# is "not an assignment"; the warnings are capped, the analysis unchanged.
baseline "$small"
"$py" -c 'import random,sys; sys.stdout.buffer.write(random.Random(11).randbytes(262144).replace(b"=", b"."))' \
    >/etc/sysctl.d/50-binary.conf
OUTMAX=65536 sysctld_cases binary-file \
    0 '50-binary\.conf' \
    0 'in sync' \
    'at boot: shmprov.s drop-in' \
    0 '50-binary\.conf'

# Lines without '=': ignored by both tools, named by shmprov.
baseline "$small"
printf 'kernel.shmmax 1\njust some words\n' >/etc/sysctl.d/50-noeq.conf
sysctld_cases lines-without-equals \
    0 "50-noeq\.conf:1: not an assignment \(no '='\)" \
    0 'in sync' \
    'at boot: shmprov.s drop-in' \
    0 "50-noeq\.conf:1: not an assignment \(no '='\)"

# CRLF line endings: still an assignment that overrides the drop-in (value
# without the \r), exactly as both real tools read it.
baseline "$small"
printf '# written on another system\r\nkernel.shmmax = 1234567\r\n' >/etc/sysctl.d/99-crlf.conf
sysctld_cases crlf \
    1 '99-crlf\.conf:2 \(kernel\.shmmax = 1234567\) is read after' \
    3 'overridden: kernel\.shmmax: /etc/sysctl\.d/99-crlf\.conf:2' \
    '99-crlf\.conf:2 sets 1234567' \
    1 '99-crlf\.conf:2 \(kernel\.shmmax = 1234567\)'
"$shmprov" --profile "$small" plan --output json >"$work/crlf.json" 2>/dev/null
expect "hostile/sysctld-crlf/json-value-without-cr" test "$(json "$work/crlf.json" \
    "sorted(set((c['file'], c['line'], c['value']) for c in d['conflicts']))")" = \
    "[('/etc/sysctl.d/99-crlf.conf', 2, '1234567')]"
if private_sysctl_dirs; then
    expect "hostile/sysctld-crlf/real-tools-agree" test "$(real_tools)" = "1234567 1234567"
else
    bad "hostile/sysctld-crlf/real-tools: the sysctl.d directories are not all private"
fi

# The drop-in's own path is a FIFO: apply may refuse, but then plan must say
# it would (exit 1), and the message must say why in words.
baseline "$small"
rm "$dropin"
mkfifo "$dropin"
hcase "sysctld-dropin-is-a-fifo/plan" 1 "$dropin.*(not a regular file|FIFO)" "$shmprov" --profile "$small" plan
hcase "sysctld-dropin-is-a-fifo/verify" 3 "$dropin.*(not a regular file|FIFO)" "$shmprov" --profile "$small" verify
hcase "sysctld-dropin-is-a-fifo/status" 0 "shmprov status" "$shmprov" --profile "$small" status
# (and the running values it reports are the real ones, not 0)
NOT='kernel\.shm(max|all): 0 ' hcase "sysctld-dropin-is-a-fifo/apply" 1 "$dropin.*(not a regular file|FIFO)" \
    "$shmprov" --profile "$small" apply --no-report
reset_host

###########################################################################
# 3. Truncated or absurd /proc/meminfo and /proc/sysvipc/shm, through the
#    test-only SHMPROV_TEST_PROC_DIR: a clear message or a sane result.
###########################################################################
proc=$work/proc
mkdir -p "$proc/sysvipc"
header='       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap'
row() { # KEY SHMID SIZE: one row as the kernel prints it (pids of 7 digits)
    printf '%10s %10s %5s %21s %5s %5s %6s %5s %5s %5s %5s %10s %10s %10s %21s %21s\n' \
        "$1" "$2" 600 "$3" 4194301 4194302 0 0 0 0 0 1700000000 0 1700000000 0 0
}
printf '%s\n' "$header" >"$proc/sysvipc/shm"
withproc=(env "SHMPROV_TEST_PROC_DIR=$proc" "$shmprov")
meminfo_rest=$(grep -v '^MemTotal:' /proc/meminfo)
meminfo_case() { # CASE: the auto tier needs MemTotal; plan refuses, says which
    local c=$1
    hcase "proc-meminfo-$c/plan" 1 "cannot read MemTotal \($proc/meminfo: " "${withproc[@]}" --profile "$work/auto.yaml" plan
    hcase "proc-meminfo-$c/apply-dry-run" 1 "cannot read MemTotal \($proc/meminfo: " "${withproc[@]}" --profile "$work/auto.yaml" apply --dry-run
    hcase "proc-meminfo-$c/status" "0 1" "MemTotal|shmprov status" "${withproc[@]}" --profile "$work/auto.yaml" status
}
reset_host
printf '%s\n' "$meminfo_rest" >"$proc/meminfo"
meminfo_case memtotal-missing
printf 'MemTotal:              0 kB\n%s\n' "$meminfo_rest" >"$proc/meminfo"
meminfo_case memtotal-zero
printf 'MemTotal:       %s kB\n%s\n' 1180591620717411303424 "$meminfo_rest" >"$proc/meminfo"
meminfo_case memtotal-2-to-the-70-kb
printf 'MemTotal:       lots kB\n%s\n' "$meminfo_rest" >"$proc/meminfo"
meminfo_case memtotal-garbage
printf 'MemTotal:       2468' >"$proc/meminfo"
meminfo_case truncated-mid-line
"$py" -c 'import random,sys; sys.stdout.buffer.write(random.Random(5).randbytes(4096))' >"$proc/meminfo"
meminfo_case binary
: >"$proc/meminfo"
meminfo_case empty
# The largest MemTotal that fits 64 bits in bytes: derived exactly, no overflow.
printf 'MemTotal:       18014398509481983 kB\n%s\n' "$meminfo_rest" >"$proc/meminfo"
hcase "proc-meminfo-memtotal-max/plan" 0 "RAM +18446744073709550592 bytes" \
    "${withproc[@]}" --profile "$work/auto.yaml" plan
"${withproc[@]}" --profile "$work/auto.yaml" plan --output json >"$work/max.json" 2>/dev/null
# RAM = (2^54 - 1) KiB; shmmax = half of it, down to a page; shmall = shmmax / page.
want=$("$py" -c 'import sys; p = int(sys.argv[1]); r = (2**54 - 1) * 1024; m = r // 2 // p * p; print("large", r, m, m // p)' "$page")
expect "hostile/proc-meminfo-memtotal-max/sane-result" test "$(json "$work/max.json" \
    "d['derivation']['tier'], d['derivation']['ram_bytes_decimal'], d['keys'][0]['target_decimal'], d['keys'][1]['target']")" = "$want"
# Above 2^53-1 a number is null, its exact value a decimal string beside it.
expect "hostile/proc-meminfo-memtotal-max/no-number-above-2^53" test "$(json "$work/max.json" \
    "d['derivation']['ram_bytes'], d['keys'][0]['target']")" = "None None"
hcase "proc-meminfo-memtotal-max/status" 0 "shmprov status" "${withproc[@]}" --profile "$work/auto.yaml" status
# A MemTotal of 1 kB: half of it is less than a page, said in words.
printf 'MemTotal:              1 kB\n%s\n' "$meminfo_rest" >"$proc/meminfo"
hcase "proc-meminfo-memtotal-1kb/plan" 1 "less than one page" "${withproc[@]}" --profile "$work/auto.yaml" plan
# A profile with a fixed tier does not need MemTotal at all.
printf 'MemTotal:       lots kB\n%s\n' "$meminfo_rest" >"$proc/meminfo"
hcase "proc-meminfo-garbage-fixed-tier/plan" 0 "tier +small \(set in the profile\)" \
    "${withproc[@]}" --profile "$small" plan
printf '%s\n' "$(cat /proc/meminfo)" >"$proc/meminfo"

shm_case() { # CASE PLAN_CODES PLAN_RE STATUS_RE
    local c=$1
    hcase "proc-shm-$c/plan" "$2" "$3" "${withproc[@]}" --profile "$small" plan
    hcase "proc-shm-$c/apply-dry-run" "$2" "$3" "${withproc[@]}" --profile "$small" apply --dry-run
    hcase "proc-shm-$c/status" 0 "$4" "${withproc[@]}" --profile "$small" status
    hcase "proc-shm-$c/status-segments" 0 "$4" "${withproc[@]}" --profile "$small" status --segments
}
unreadable='sysvipc/shm.*(malformed|cut short|not the table)'
{ printf '%s\n' "$header"; row 1 1 4096; row 2 2 4096 | head -c 40; } >"$proc/sysvipc/shm"
shm_case truncated-mid-row 0 'cannot read /proc/sysvipc/shm: existing segments are not checked' "$unreadable"
hcase "proc-shm-truncated-mid-row/status-remove-orphans-dry-run" 1 "cannot look for orphans: .*$unreadable" \
    "${withproc[@]}" --profile "$small" status --remove-orphans --dry-run
printf '%s\n' "$header" >"$proc/sysvipc/shm"
shm_case header-only 0 'Usage +0 segments, 0 bytes' 'Segments: 0'
# One segment of 2^64-1 bytes: plan refuses (it exceeds shmmax and shmall).
# Two of them overflow the sum: that is even more, and must refuse too.
{ printf '%s\n' "$header"; row 1 1 18446744073709551615; } >"$proc/sysvipc/shm"
shm_case absurd-size 1 'apply would refuse: kernel\.shmmax: target 4294967296 bytes is below the largest existing segment' 'Segments: 1'
{ printf '%s\n' "$header"; row 1 1 18446744073709551615; row 2 2 18446744073709551615; } >"$proc/sysvipc/shm"
shm_case sizes-overflowing-64-bits 1 'apply would refuse: kernel\.shmmax: target 4294967296 bytes is below the largest existing segment' 'Segments: 2'
{ printf '%s\n' "$header"; row 1 1 -4096; } >"$proc/sysvipc/shm"
shm_case negative-size 0 'cannot read /proc/sysvipc/shm: existing segments are not checked' "$unreadable"
"$py" -c 'import random,sys; sys.stdout.buffer.write(random.Random(3).randbytes(4096))' >"$proc/sysvipc/shm"
shm_case binary 0 'cannot read /proc/sysvipc/shm: existing segments are not checked' "$unreadable"
# 10^6 rows (tens of MB): refused by size, at once.
{ printf '%s\n' "$header"; yes '1 1 600 4096 1 1 0 0 0 0 0 0 0 0 0 0' | head -n 1000000; } >"$proc/sysvipc/shm"
shm_case million-rows 0 'cannot read /proc/sysvipc/shm: existing segments are not checked' 'sysvipc/shm'
# 32768 rows, the kernel's own maximum (IPCMNI), as it prints them: ~5.6 MB.
# A real host can have this table; shmprov must read it.
"$py" - "$header" "$proc/sysvipc/shm" <<'PY'
import sys
fmt = "%10d %10d %5s %21d %5d %5d %6d %5d %5d %5d %5d %10d %10d %10d %21d %21d\n"
with open(sys.argv[2], "w") as f:
    f.write(sys.argv[1] + "\n")
    f.writelines(fmt % (i + 1, 2147000000 + i, "600", 4096, 4194301, 4194302, 0, 0, 0, 0, 0,
                        1700000000, 0, 1700000000, 0, 0) for i in range(32768))
PY
OUTMAX=8000000 shm_case kernel-maximum-32768-rows 0 'Usage +32768 segments' 'Segments: 32768'
"${withproc[@]}" --profile "$small" plan --output json >"$work/rows.json" 2>/dev/null
expect "hostile/proc-shm-kernel-maximum-32768-rows/sane-result" \
    test "$(json "$work/rows.json" "d['usage']['segments'], d['usage']['bytes']")" = "32768 $((32768 * 4096))"
rm -rf "$proc"

###########################################################################
# 4. Hostile answers from the collector (127.0.0.1 only), and hostile token
#    files: apply exits 0 within report.timeout (3 s) + 1.5 s, the event is
#    spooled or delivered (never lost), the token is never printed, and
#    nothing but the spool is written.
###########################################################################
spool=/var/lib/shmprov/spool
spooled() { find "$spool" -maxdepth 1 -name '*.json' 2>/dev/null | wc -l; }
token=tok-$RANDOM$RANDOM-hostile
printf '%s\n' "$token" >"$work/token"
chmod 0600 "$work/token"
report_profile() { # NAME URL TOKEN_FILE
    printf 'version: 1\nhost: {ram_tier: small}\nreport:\n  url: %s\n  token_file: %s\n  timeout: 3\n' \
        "$2" "$3" >"$work/$1.yaml"
    chmod 0644 "$work/$1.yaml"
}
mkdir -p "$work/c1" "$work/c2"
if ! start_collector "$work/c1"; then
    bad "hostile/collector-started"
    finish
    exit 1
fi
pids+=("$collector")
base=http://127.0.0.1:$port
if ! start_collector "$work/c2"; then
    bad "hostile/second-collector-started"
    finish
    exit 1
fi
pids+=("$collector")
target_port=$port
mode() { curl -sf -X POST -d "{\"mode\": \"$1\", \"reset\": true}" "$base/_control" >/dev/null && : >"$work/c1/log.jsonl"; }
posts() { wc -l <"$work/c1/log.jsonl"; }
token_not_printed() { ! grep -aqF "$token" "$work/out" "$work/err"; }

report_profile collector "$base/v1/events" "$work/token"
http_case() { # CASE MODE REGEX [LIMIT]
    local c=$1
    baseline "$work/collector.yaml"
    mode "$2" || bad "hostile/http-$c: the collector refused mode $2"
    WRITES=spool LIMIT=${4:-4500} hcase "http-$c/apply" 0 "$3" "$shmprov" --profile "$work/collector.yaml" apply
    expect "hostile/http-$c/token-never-printed" token_not_printed
}
never_lost() { test "$(spooled)" = 1 -o \( "$(spooled)" = 0 -a -n "$(grep -a 'report delivered' "$work/err")" \); }

http_case 10mb-body big 'report (delivered|not delivered)'
expect "hostile/http-10mb-body/event-not-lost" never_lost
http_case endless-chunked-body endless 'report (delivered|not delivered)'
expect "hostile/http-endless-chunked-body/event-not-lost" never_lost
http_case retry-after-10-years retry-after:315360000 'Retry-After.*past the deadline' 2000
expect "hostile/http-retry-after-10-years/spooled-after-one-attempt" test "$(spooled) $(posts)" = "1 1"
http_case retry-after-date-10-years retry-after-date:315360000 'Retry-After.*past the deadline' 2000
expect "hostile/http-retry-after-date-10-years/spooled-after-one-attempt" test "$(spooled) $(posts)" = "1 1"

# A redirect to another host (localhost, the second collector): never
# followed, so the token never reaches it, whatever the code says about
# keeping the method and body.
cat >"$work/redirector.py" <<'PY'
import http.server, json, sys
location, log = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def answer(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                self.rfile.read(n + 2) if n else self.rfile.readline()
                if not n:
                    break
        else:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(log, "a") as f:
            f.write(json.dumps({"path": self.path, "authorization": self.headers.get("Authorization")}) + "\n")
        self.send_response(int(self.path.rstrip("/").rsplit("/", 1)[-1]))
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_POST = do_PUT = do_GET = answer
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("listening on 127.0.0.1:%d" % s.server_address[1], flush=True)
s.serve_forever()
PY
"$py" "$work/redirector.py" "http://localhost:$target_port/stolen" "$work/redirector.jsonl" >"$work/redirector.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on' "$work/redirector.out" 2>/dev/null && break; sleep 0.05; done
rport=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/redirector.out")
[ -n "$rport" ] || bad "hostile/redirector-started: $(cat "$work/redirector.out")"
for redirect in 301 302 303 307 308; do
    report_profile redirect "http://127.0.0.1:$rport/v1/events/$redirect" "$work/token"
    baseline "$work/redirect.yaml"
    : >"$work/redirector.jsonl"
    : >"$work/c2/log.jsonl"
    WRITES=spool LIMIT=4500 hcase "http-redirect-$redirect-to-another-host/apply" 0 "HTTP $redirect.*redirect" \
        "$shmprov" --profile "$work/redirect.yaml" apply
    # (the collector logs a request before answering it, and a client that
    # followed would wait for that answer: nothing can arrive after apply)
    expect "hostile/http-redirect-$redirect-to-another-host/target-received-nothing" \
        test "$(wc -l <"$work/c2/log.jsonl")" = 0 -a "$(curl -sf "http://127.0.0.1:$target_port/_stats" |
            "$py" -c 'import json,sys; print(json.load(sys.stdin)["total_requests"])')" = 0
    expect "hostile/http-redirect-$redirect-to-another-host/one-attempt-then-spooled" \
        test "$(wc -l <"$work/redirector.jsonl") $(spooled)" = "1 1"
    expect "hostile/http-redirect-$redirect-to-another-host/token-never-printed" token_not_printed
done

# Token files: a symbolic link into another user's file (mode 0600, so only
# the owner check can catch it), group-writable, a FIFO. Nothing is sent,
# the event stays in the spool, apply still exits 0.
printf '%s\n' "$token" >"$work/nobody-token"
chown 65534:65534 "$work/nobody-token"
chmod 0600 "$work/nobody-token"
ln -s "$work/nobody-token" "$work/token-link"
cp "$work/token" "$work/token-gw"
chmod 0620 "$work/token-gw"
mkfifo "$work/token-fifo"
token_case() { # CASE TOKEN_FILE REGEX
    report_profile tokencase "$base/v1/events" "$2"
    baseline "$work/tokencase.yaml"
    mode accept
    WRITES=spool hcase "token-$1/apply" 0 "$3" "$shmprov" --profile "$work/tokencase.yaml" apply
    expect "hostile/token-$1/nothing-sent-event-kept" test "$(posts) $(spooled)" = "0 1"
    expect "hostile/token-$1/token-never-printed" token_not_printed
}
token_case symlink-to-other-users-file "$work/token-link" "token file '$work/token-link' is owned by uid 65534"
token_case group-writable "$work/token-gw" "token file '$work/token-gw' is accessible by group or others \(mode 0620\)"
token_case fifo "$work/token-fifo" "token file '$work/token-fifo'.*not a regular file"

reset_host
echo "$known_bugs known bugs (listed as KNOWN-BUG above, not counted as passed)"
finish
