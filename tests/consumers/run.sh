#!/bin/bash
# The reports as their consumers read them: the real agent, in a private
# IPC + mount namespace (tests/integration/lib.sh), reports one event of
# every result kind, over HTTP and over HTTPS (mTLS), to receiver.mjs, which
# parses every request with the CloudEvents SDK, ajv, structured-headers...
# (checks.mjs); Python then decodes every body strictly. See README.md.
# Usage: run.sh SHMPROV [OUTDIR]
#   OUTDIR keeps log.jsonl, the raw bodies and expected-latest-state for
#   pg.sh (default: a scratch directory, removed).
set -u
shmprov=$(realpath "$1")
src=$(cd "$(dirname "$(realpath "$0")")/../.." && pwd)
here=$src/tests/consumers
. "$src/tests/integration/lib.sh"

# TAP-style lines ("ok N - ...", "not ok N - ...") instead of lib.sh's
# PASS/FAIL; lib.sh's expect and finish count them as usual.
n=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; }
die() { bad "$1"; echo "1..$n"; finish; exit 1; }

# Before the namespace: the npm packages must be there (npm ci, README.md).
[ -d "$here/node_modules/cloudevents" ] || die "npm packages installed (run: npm ci --prefix tests/consumers)"
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null ||
    die "Node.js 20 or later (cloudevents 10 needs it): $(node --version 2>&1)"

enter_private_namespace "$@"
py=/usr/bin/python3
work=$(mktemp -d)
out=$(realpath -m "${2:-$work/out}")
mkdir -p "$out" && rm -rf "$out/log.jsonl" "$out/bodies" "$out/expected-latest-state"
log=$out/log.jsonl
spool=/var/lib/shmprov/spool
K=/proc/sys/kernel
# The apply lock's directory, private like the others.
mkdir -p /run/shmprov && mount -t tmpfs -o size=1m,mode=0755 shmprov-run /run/shmprov
# No name lookup leaves this machine (the fqdn of a made-up hostname below):
# hosts from /etc/hosts only, in this namespace's private /etc.
sed -i 's/^hosts:.*/hosts: files/' /etc/nsswitch.conf
# The host's own sysctl.conf must not conflict with the profiles.
printf '# (test) nothing here\n' >/etc/sysctl.conf

# ---- the receiver: HTTP, HTTPS with the test PKI, a control port ----
"$src/tests/tls/make_pki.sh" "$work/pki" >"$work/pki.out" 2>&1 || die "make_pki: $(cat "$work/pki.out")"
pki=$work/pki
node "$here/receiver.mjs" --schema "$src/schemas/report.schema.json" --out "$out" \
    --cert "$pki/server.pem" --key "$pki/server.key" --ca "$pki/ca.pem" >"$work/receiver.out" 2>&1 &
receiver=$!
trap 'kill $receiver 2>/dev/null' EXIT
trap 'exit 1' INT TERM # so that the receiver is stopped then too
for _ in $(seq 200); do grep -q '^listening' "$work/receiver.out" && break; sleep 0.05; done
read -r http_port https_port ctl_port < <(sed -n 's/^listening http=\([0-9]*\) https=\([0-9]*\) control=\([0-9]*\)$/\1 \2 \3/p' "$work/receiver.out")
[ -n "${ctl_port:-}" ] || die "the receiver started: $(cat "$work/receiver.out")"

control() { curl -sf -X POST -d "$1" "http://127.0.0.1:$ctl_port/_control" >/dev/null; }
stats() { curl -sf "http://127.0.0.1:$ctl_port/_stats" | "$py" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# check ARGS...: check.mjs's PASS/FAIL lines, counted here; a checker
# that crashes is a failure too, never silence.
count_lines() { # NAME FILE RC
    local line
    while IFS= read -r line; do
        case $line in
        "PASS "*) ok "${line#PASS }" ;;
        "FAIL "*) bad "${line#FAIL }" ;;
        *) echo "# $line" ;;
        esac
    done <"$2"
    [ "$3" = 0 ] || bad "$1 ran to its end (exit $3)"
}
check() {
    node "$here/check.mjs" "$1" "$log" "${@:2}" >"$work/check.out" 2>&1
    count_lines "check.mjs $1" "$work/check.out" $?
}
spooled() { find "$spool" -maxdepth 1 -name '*.json' 2>/dev/null | wc -l; }

# profile NAME TIER URL [EXTRA]: a report profile root may use
profile() {
    printf 'version: 1\nhost: {ram_tier: %s}\nreport:\n  url: %s\n  timeout: 5\n%b' "$2" "$3" "${4:-}" >"$work/$1.yaml"
    chmod 0644 "$work/$1.yaml"
}
tls_keys="  ca_file: $pki/ca.pem\n  client_cert: $pki/client.pem\n  client_key: $pki/client.key\n"
for p in http https; do
    if [ $p = http ]; then url=http://127.0.0.1:$http_port/v1/events extra=; else url=https://127.0.0.1:$https_port/v1/events extra=$tls_keys; fi
    profile $p-small small "$url" "$extra"
    profile $p-medium medium "$url" "$extra"
done

# step LABEL EXIT PROFILE ARGS...: shmprov --profile PROFILE ARGS under
# LABEL (the receiver tags the requests it gets with it); it must exit EXIT.
step() {
    local label=$1 want=$2 profile=$3 code
    shift 3
    control "{\"label\": \"$label\"}"
    "$shmprov" --profile "$profile" "$@" >"$work/step.out" 2>"$work/step.err"
    code=$?
    if [ "$code" = "$want" ]; then
        ok "$label: shmprov $* ($(basename "$profile" .yaml)) exits $want"
    else
        bad "$label: shmprov $* ($(basename "$profile" .yaml)) exits $want (exit $code)"
        sed 's/^/#   /' "$work/step.err" | head -n 8
    fi
}

# round PROTO: one event of every result kind over PROTO. It starts from
# the kernel's defaults (http) or from medium (https, after the http
# round): "changed" applies small, the later failure tries medium.
round() {
    local p=$1 small=$work/$1-small.yaml medium=$work/$1-medium.yaml
    step $p/changed 0 "$small" apply
    check event $p/changed changed command=apply corrective=false

    if [ $p = http ]; then
        # A hostname that is not UTF-8 and holds a backslash (sethostname
        # takes any bytes): the body must still be UTF-8, escaped as \xHH.
        host_hex=73686d5c70726f762d636166e9 # shm\prov-caf\xe9
        printf '127.0.1.1 %b\n' "$(sed 's/../\\x&/g' <<<"$host_hex")" >>/etc/hosts
        control '{"label": "http/unchanged"}'
        unshare --uts -- "$py" -c 'import os, socket, sys
socket.sethostname(bytes.fromhex(sys.argv[1]))
os.execv(sys.argv[2], sys.argv[2:])' "$host_hex" "$shmprov" --profile "$small" apply >"$work/step.out" 2>"$work/step.err"
        expect "http/unchanged: shmprov apply exits 0 (hostname shm\\prov-caf\\xe9)" test $? = 0
        check event $p/unchanged unchanged command=apply hostname_hex=$host_hex
    else
        step $p/unchanged 0 "$small" apply
        check event $p/unchanged unchanged command=apply
    fi

    # A hand edit of the running kernel: verify reports drift, the next
    # apply corrects it.
    echo 1000000 >$K/shmmax
    step $p/drift 3 "$small" verify --report
    check event $p/drift drift command=verify
    step $p/corrected 0 "$small" apply
    check event $p/corrected changed command=apply corrective=true
    step $p/in-sync 0 "$small" verify --report
    check event $p/in-sync in-sync command=verify

    local before
    before=$(cat $K/shmmax)
    step $p/dry-run 0 "$medium" apply --dry-run --report
    check event $p/dry-run dry-run command=apply
    expect "$p/dry-run: changed nothing" test "$(cat $K/shmmax)" = "$before"

    # A later file wins kernel.shmmax at boot: refused before any change.
    printf 'kernel.shmmax = 1234567\n' >/etc/sysctl.d/99-zz.conf
    step $p/refused 1 "$medium" apply
    check event $p/refused refused command=apply
    rm /etc/sysctl.d/99-zz.conf

    # A faked /proc/sys/kernel/shmmax (writes land, the kernel's limit does
    # not move, as apply.sh block 8): the test allocation fails, all is put back.
    cat $K/shmmax >"$work/fake-shmmax"
    mount --bind "$work/fake-shmmax" $K/shmmax
    step $p/failed 1 "$medium" apply
    umount $K/shmmax
    check event $p/failed failed command=apply rollback_complete=true

    # A read-only /proc/sys (a container).
    mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
    step $p/not-applicable 0 "$medium" apply
    umount /proc/sys
    check event $p/not-applicable not-applicable command=apply

    # flush: three spooled events go as one batch (over HTTPS: in one
    # TLS handshake).
    rm -rf "$spool"
    spool_three $p "$medium"
    control '{"reset_counters": true}'
    step $p/flush 0 "$medium" flush
    check event $p/flush changed events=3 batches=1
    expect "$p/flush: the spool is empty" test "$(spooled)" = 0
    [ $p = http ] || expect "https/flush: one TLS handshake ($(stats "d['https']['handshakes']"))" test "$(stats "d['https']['handshakes']")" = 1
}

# spool_three PROTO PROFILE: three applies with --defer-report (spooled,
# nothing sent).
spool_three() {
    local before
    before=$(stats "d['requests']")
    control "{\"label\": \"$1/deferred\"}"
    for _ in 1 2 3; do "$shmprov" --profile "$2" apply --defer-report >/dev/null 2>&1; done
    expect "$1/deferred: three events spooled, none sent" test "$(spooled) $(stats "d['requests']")" = "3 $before"
}

round http
round https

# One poison event: the collector refuses batches (415), then one event
# (422 for its id): that one is set aside in rejected/, the others delivered.
rm -rf "$spool"
spool_three http "$work/http-medium.yaml"
poison=$("$py" -c 'import json,sys; f=sorted(sys.argv[1:]); print(json.load(open(f[1]))["id"] if len(f) == 3 else "none")' "$spool"/*.json 2>/dev/null)
control "{\"batch_status\": 415, \"id_status\": {\"$poison\": 422}}"
step http/flush-422 0 "$work/http-medium.yaml" flush
check event http/flush-422 unchanged events=2 batches=0
expect "http/flush-422: the refused event is in rejected/" test -n "$(find "$spool/rejected" -name "*$poison*" 2>/dev/null)"

# One TLS handshake per flush: batches refused (415), so three events go
# one by one, all over the first connection.
rm -rf "$spool"
spool_three https "$work/https-medium.yaml"
control '{"batch_status": 415, "id_status": {}, "reset_counters": true}'
step https/flush-415 0 "$work/https-medium.yaml" flush
check event https/flush-415 unchanged events=3 batches=0
expect "https/flush-415: one TLS handshake per flush ($(stats "d['https']['handshakes']") handshakes, $(stats "d['https']['resumed']") resumed)" \
    test "$(stats "d['https']['handshakes']")" = 1
expect "https/flush-415: one TCP connection per flush ($(stats "d['https']['connections']"))" \
    test "$(stats "d['https']['connections']")" = 1
control '{"batch_status": null}'

# ---- every request, as each consumer reads it ----
check requests
"$py" "$here/check_bodies.py" "$log" >"$work/check.out" 2>&1
count_lines check_bodies.py "$work/check.out" $?
check order

# The events as the SDK parsed them, one request per result kind.
echo "# ---- the events as a consumer's handler got them (cloudevents SDK) ----"
node "$here/check.mjs" show "$log" http/changed http/unchanged http/refused http/failed http/not-applicable \
    http/drift http/in-sync http/corrected http/dry-run http/flush https/flush-415 | sed 's/^/# /'

# For pg.sh: the host's latest state after all of this (the last run was
# an apply that changed nothing).
echo in-sync >"$out/expected-latest-state"
echo "1..$n"
finish
