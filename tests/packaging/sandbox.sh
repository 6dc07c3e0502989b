#!/bin/bash
# The sandbox of packaging/systemd/shmprov.service and shmprov-drift.service,
# rebuilt without systemd as PID 1 around the real binary. The run happens
# in a private IPC + mount namespace (tests/integration/lib.sh), so the host's
# limits and files never change.
#
# What is rebuilt from each unit file (parsed here, so unit and test cannot
# drift apart):
#   ProtectSystem=strict   every mount read-only except /proc, /sys and /dev
#   ReadWritePaths=        writable again ("-" prefix: skipped when missing)
#   StateDirectory=, RuntimeDirectory=   created, writable
#   CapabilityBoundingSet= (empty) + NoNewPrivileges=yes   setpriv, root with
#                          no capability at all
#   PrivateNetwork=yes     a new network namespace
#   UMask=                 umask
# What is checked on a trace of the real run (strace), as systemd enforces
# it but cannot be rebuilt here:
#   SystemCallFilter=      every system call made is in the unit's filter
#                          (the groups expanded by systemd-analyze)
#   RestrictAddressFamilies=  every socket family used is allowed
#   MemoryDenyWriteExecute=  no mapping both writable and executable, no
#                          shmat(SHM_EXEC)
#   RestrictNamespaces=    no CLONE_NEW* in clone/clone3/unshare, no setns
#   PrivateTmp/ProtectHome/PrivateDevices   nothing under /tmp, /var/tmp,
#                          /home, /root or /dev is opened
# And, to show that the rebuilt sandbox does bite and why the unit must never
# use them: without ReadWritePaths apply fails and rolls back; with
# /proc/sys read-only (ProtectKernelTunables=) it changes nothing; in a
# private IPC namespace (PrivateIPC=) it "succeeds" while the limits every
# other process sees stay unchanged.
#
# Usage: sandbox.sh SHMPROV SOURCE_DIR   (root; prints "N passed, N failed")
set -u
shmprov=$(readlink -f "$1")
src=$(cd "$2" && pwd)
. "$src/tests/integration/lib.sh"
enter_private_namespace "$@"

boot_unit=$src/packaging/systemd/shmprov.service
drift_unit=$src/packaging/systemd/shmprov-drift.service
py=/usr/bin/python3
K=/proc/sys/kernel
DEFAULT=18446744073692774399
page=$(getconf PAGE_SIZE)
small_max=4294967296
small_all=$((small_max / page))
work=$(mktemp -d)

# unit_values UNIT KEY: the values of every KEY= line, space-separated.
unit_values() { sed -n "s/^$2=//p" "$1" | tr '\n' ' ' | sed 's/ *$//'; }
json() { "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
runtime() { echo "$(cat $K/shmmax) $(cat $K/shmall)"; }
reset_kernel() { echo $DEFAULT >$K/shmmax; echo $DEFAULT >$K/shmall; echo 4096 >$K/shmmni; }

# sandboxed UNIT EXTRA -- CMD...: runs CMD the way UNIT would, traced by
# strace into file descriptor 3. EXTRA: "no-rw" leaves out ReadWritePaths=;
# "ro-proc-sys" also makes /proc/sys read-only; "private-ipc" runs it in a
# new IPC namespace.
sandboxed() {
    local unit=$1 extra=$2
    shift 3
    local rw state runtime umask_ net=
    rw=$(unit_values "$unit" ReadWritePaths)
    state=$(unit_values "$unit" StateDirectory)
    runtime=$(unit_values "$unit" RuntimeDirectory)
    umask_=$(unit_values "$unit" UMask)
    [ "$extra" = no-rw ] && rw=
    [ "$(unit_values "$unit" PrivateNetwork)" = yes ] && net="unshare --net"
    [ "$extra" = private-ipc ] && net="$net unshare --ipc"
    # What systemd does before the sandbox: StateDirectory=, RuntimeDirectory=.
    mkdir -p "/var/lib/$state" "/run/$runtime"
    chmod 0755 "/var/lib/$state" "/run/$runtime"
    # shellcheck disable=SC2016 # the script is expanded by the inner bash
    unshare --mount --propagation private -- /bin/bash -c '
        set -e
        umask "$1"; rw=$2; state=$3; runtime=$4; net=$5; extra=$6
        shift 6
        # ProtectSystem=strict: everything read-only but the API file systems.
        awk "{print \$5}" /proc/self/mountinfo | sort -u | while read -r mp; do
            mp=$(printf "%b" "$mp")
            case $mp in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
            mount -o remount,bind,ro "$mp" 2>/dev/null || true
        done
        for p in $rw /var/lib/$state /run/$runtime; do
            optional=
            case $p in -*) p=${p#-}; optional=1 ;; esac
            if [ ! -e "$p" ]; then
                [ -n "$optional" ] && continue
                echo "sandbox: $p does not exist (systemd: 226/NAMESPACE)" >&2
                exit 226
            fi
            mountpoint -q "$p" || mount --bind "$p" "$p"
            mount -o remount,bind,rw "$p"
        done
        if [ "$extra" = ro-proc-sys ]; then
            mount --bind /proc/sys /proc/sys
            mount -o remount,bind,ro /proc/sys
        fi
        # strace writes to the descriptor opened outside, where it is writable.
        exec strace -f -qq -s 256 -o /proc/self/fd/3 $net setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all --no-new-privs -- "$@"
    ' sandbox "$umask_" "$rw" "$state" "$runtime" "$net" "$extra" "$@"
}

# exec_start UNIT: the unit's ExecStart=, with the installed path replaced by
# the binary under test.
exec_start() { unit_values "$1" ExecStart | sed "s|^/usr/sbin/shmprov|$shmprov|"; }

# traced NAME UNIT EXTRA: runs the unit's ExecStart sandboxed under strace;
# NAME.out, NAME.err, NAME.st (the trace from the agent's exec on), NAME.rc.
traced() {
    local name=$1 unit=$2 extra=$3
    # shellcheck disable=SC2046
    sandboxed "$unit" "$extra" -- $(exec_start "$unit") >"$work/$name.out" 2>"$work/$name.err" 3>"$work/$name.full"
    echo $? >"$work/$name.rc"
    # Everything after the agent's own execve is the agent or its children.
    awk -v bin="$shmprov" 'seen { print; next }
        index($0, "execve(\"" bin "\"") && / = 0$/ { seen = 1 }' "$work/$name.full" >"$work/$name.st"
}
rc_of() { cat "$work/$1.rc"; }
# expect_rc NAME RUN WANT: the exit status of a traced run; its stderr if not.
expect_rc() {
    if [ "$(rc_of "$2")" = "$3" ]; then ok "$1"; else
        bad "$1 (exit $(rc_of "$2"), expected $3)"
        sed 's/^/    | /' "$work/$2.err" | head -20
    fi
}

# syscalls_allowed UNIT: the set SystemCallFilter= of UNIT allows, one a line.
expand_group() {
    systemd-analyze syscall-filter "$1" | sed 1d | grep -v '^ *#' | tr -d ' ' | grep . |
        while read -r s; do case $s in @*) expand_group "$s" ;; *) echo "$s" ;; esac; done
}
syscalls_allowed() {
    local allow="" deny="" line item cache
    cache=$work/allowed.$(sed -n 's/^SystemCallFilter=//p' "$1" | md5sum | cut -c1-16)
    if [ -s "$cache" ]; then cat "$cache"; return; fi
    while read -r line; do
        case $line in
        '~'*) for item in ${line#\~}; do deny="$deny $item"; done ;;
        *) for item in $line; do allow="$allow $item"; done ;;
        esac
    done < <(sed -n 's/^SystemCallFilter=//p' "$1")
    comm -23 <(for item in $allow; do case $item in @*) expand_group "$item" ;; *) echo "$item" ;; esac; done | sort -u) \
             <(for item in $deny; do case $item in @*) expand_group "$item" ;; *) echo "$item" ;; esac; done | sort -u) |
        tee "$cache"
}
syscalls_used() {
    sed -E 's/^[0-9]+ +//; s/^<\.\.\. ([a-z0-9_]+) resumed>.*/\1/; s/^([a-z0-9_]+)\(.*/\1/' "$1" |
        grep -E '^[a-z0-9_]+$' | grep -v -x -e exit -e '+++' | sort -u
}
families_used() { grep -oE '(socket|socketpair)\((AF_[A-Z0-9]+)' "$1" | sed 's/.*(//' | sort -u; }
forbidden_opens() { grep -E 'open(at)?\(.*"(/tmp|/var/tmp|/home|/root|/dev)(/|")' "$1"; }

check_filters() { # PREFIX UNIT TRACE
    local prefix=$1 unit=$2 st=$3 bad fam allowed_fams
    syscalls_allowed "$unit" >"$work/allowed.txt"
    bad=$(comm -23 <(syscalls_used "$st") "$work/allowed.txt" | tr '\n' ' ')
    expect "$prefix/syscalls-within-SystemCallFilter${bad:+ (outside: $bad)}" test -z "$bad" -a -s "$work/allowed.txt" -a -s "$st"
    allowed_fams=$(unit_values "$unit" RestrictAddressFamilies)
    bad=
    for fam in $(families_used "$st"); do
        case " $allowed_fams " in *" $fam "*) ;; *) bad="$bad $fam" ;; esac
    done
    expect "$prefix/sockets-within-RestrictAddressFamilies=$allowed_fams${bad:+ (used:$bad)}" test -z "$bad"
    bad=$(grep -E '^[0-9]+ +(mmap|mprotect|pkey_mprotect)\(.*(PROT_WRITE\|PROT_EXEC|PROT_EXEC\|PROT_WRITE)|^[0-9]+ +shmat\(.*SHM_EXEC' "$st" | head -3)
    expect "$prefix/MemoryDenyWriteExecute-holds${bad:+ ($bad)}" test -z "$bad"
    bad=$(grep -E '^[0-9]+ +((clone|clone3|unshare)\(.*CLONE_NEW|setns\()' "$st" | head -3)
    expect "$prefix/RestrictNamespaces-holds${bad:+ ($bad)}" test -z "$bad"
    bad=$(forbidden_opens "$st" | head -3)
    expect "$prefix/nothing-opened-in-private-tmp-home-dev${bad:+ ($bad)}" test -z "$bad"
}

# The units themselves: what must and must not be there.
for unit in "$boot_unit" "$drift_unit"; do
    u=$(basename "$unit")
    expect "$u/capability-bounding-set-empty" grep -qx 'CapabilityBoundingSet=' "$unit"
    expect "$u/no-new-privileges" grep -qx 'NoNewPrivileges=yes' "$unit"
    expect "$u/protect-system-strict" grep -qx 'ProtectSystem=strict' "$unit"
    expect "$u/never-PrivateIPC-ProtectKernelTunables-User-ProcSubset" \
        test -z "$(grep -E '^(PrivateIPC|ProtectKernelTunables|PrivateUsers|User|DynamicUser|ProcSubset)=' "$unit")"
done
expect "shmprov.service/defers-the-report" grep -qx 'ExecStart=/usr/sbin/shmprov apply --defer-report' "$boot_unit"
expect "shmprov.service/no-network" grep -qx 'PrivateNetwork=yes' "$boot_unit"

# A collector on 127.0.0.1 for the drift run.
"$py" "$src/tests/collector/collector.py" --port 0 --log "$work/collector.log" >"$work/collector.out" 2>&1 &
collector=$!
trap 'kill $collector 2>/dev/null' EXIT
for _ in $(seq 50); do grep -q '^listening on' "$work/collector.out" && break; sleep 0.1; done
port=$(sed -n 's/^listening on 127\.0\.0\.1://p' "$work/collector.out")
printf 'version: 1\nhost: {ram_tier: small}\nreport: {url: "http://127.0.0.1:%s/v1/events", timeout: 10}\n' "$port" \
    >/etc/shmprov/profile.yaml
chmod 0644 /etc/shmprov/profile.yaml
events() { [ -s "$work/collector.log" ] && wc -l <"$work/collector.log" || echo 0; }
spooled() { find /var/lib/shmprov/spool -maxdepth 1 -name '*.json' 2>/dev/null | wc -l; }

# 1. The boot unit: applies, spools the report, no network, no capability.
reset_kernel
traced boot "$boot_unit" ""
expect_rc boot/exit-0 boot 0
expect "boot/kernel-limits-set" test "$(runtime)" = "$small_max $small_all"
expect "boot/dropin-written-0644-despite-UMask" test "$(stat -c %a /etc/sysctl.d/60-shmprov.conf 2>/dev/null)" = 644
expect "boot/report-spooled-not-sent" test "$(spooled) $(events)" = "1 0"
expect "boot/lock-in-RuntimeDirectory" test -f /run/shmprov/apply.lock
expect "boot/no-socket-at-all" test -z "$(grep -E '^[0-9]+ +(socket|socketpair|connect)\(' "$work/boot.st")"
check_filters boot "$boot_unit" "$work/boot.st"
traced boot2 "$boot_unit" ""
expect "boot/second-run-unchanged" grep -q 'shmprov apply: unchanged' "$work/boot2.out"

# 2. The drift service: re-applies what drifted, sends the spool and its own.
echo 12345678 >$K/shmmax
traced drift "$drift_unit" ""
expect_rc drift/exit-0 drift 0
expect "drift/drift-corrected" test "$(runtime)" = "$small_max $small_all"
expect "drift/spool-delivered" test "$(spooled) $(events)" = "0 3"
check_filters drift "$drift_unit" "$work/drift.st"

# 2b. The same over TLS with a client certificate, the collector named by
# host name, behind Debian's nginx (tests/tls/find_nginx.sh fetches it, never
# installing its service).
if SHMPROV_NGINX=$("$src/tests/tls/find_nginx.sh"); then
    export SHMPROV_NGINX
    free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
    pki=/etc/shmprov/pki # where a host keeps them: not in /tmp, which PrivateTmp= hides
    "$src/tests/tls/make_pki.sh" "$pki" >"$work/pki.out" 2>&1
    https=$(free_port)
    "$src/tests/tls/nginx.sh" start "$pki" "$https" "$(free_port)" "$port" >"$work/nginx.out" 2>&1
    trap 'kill $collector 2>/dev/null; "$src/tests/tls/nginx.sh" stop "$pki" >/dev/null 2>&1' EXIT
    "$src/tests/collector/wait_ready.sh" "$https" 5
    printf 'version: 1\nhost: {ram_tier: small}\nreport:\n  url: "https://localhost:%s/v1/events"\n  timeout: 10\n  ca_file: %s\n  client_cert: %s\n  client_key: %s\n' \
        "$https" "$pki/ca.pem" "$pki/client.pem" "$pki/client.key" >/etc/shmprov/profile.yaml
    traced boot3 "$boot_unit" ""
    before=$(events)
    traced drift-tls "$drift_unit" ""
    expect_rc drift-tls/exit-0 drift-tls 0
    expect "drift-tls/spool-delivered-through-mtls" test "$(spooled) $(($(events) - before))" = "0 2"
    expect "drift-tls/client-certificate-verified" test "$(tail -1 "$work/collector.log" | "$py" -c 'import json,sys; print(dict(json.load(sys.stdin)["headers"]).get("X-SSL-Client-Verify"))')" = SUCCESS
    check_filters drift-tls "$drift_unit" "$work/drift-tls.st"
else
    bad "drift-tls: no nginx binary (tests/tls/find_nginx.sh failed)"
fi

# 3. The rebuilt sandbox bites: without ReadWritePaths= the drop-in cannot be
# written, apply fails and puts the kernel back.
reset_kernel
rm -f /etc/sysctl.d/60-shmprov.conf
traced norw "$boot_unit" no-rw
expect_rc without-ReadWritePaths/exit-1 norw 1
expect "without-ReadWritePaths/kernel-untouched" test "$(runtime)" = "$DEFAULT $DEFAULT"

# 4. Why never ProtectKernelTunables=: /proc/sys read-only, nothing applied.
traced tunables "$boot_unit" ro-proc-sys
expect "ProtectKernelTunables/exit-0-but-nothing-applied" test "$(rc_of tunables) $(runtime)" = "0 $DEFAULT $DEFAULT"
expect "ProtectKernelTunables/says-not-applicable" grep -q 'not applicable here' "$work/tunables.err"

# 5. Why never PrivateIPC=: apply succeeds in a throw-away IPC namespace,
# and the limits every other process sees stay as they were.
rm -f /etc/sysctl.d/60-shmprov.conf
traced privipc "$boot_unit" private-ipc
expect "PrivateIPC/exit-0-and-changed" test "$(rc_of privipc)" = 0 -a -n "$(grep 'shmprov apply: changed' "$work/privipc.out")"
expect "PrivateIPC/real-limits-unchanged" test "$(runtime)" = "$DEFAULT $DEFAULT"

ipcrm --all=shm 2>/dev/null
finish
