#!/bin/bash
# Reports over real TLS: Debian's nginx in front of the test collector, with
# a CA, server and client certificates made by openssl right now
# (tests/tls). The agent must succeed with the right CA and client
# certificate, and fail clearly — spooling the event — with a wrong CA, an
# expired server certificate, a missing client certificate, or no CA at all
# (verification is always on). All on 127.0.0.1, in a private namespace.
# Usage: tls.sh SHMPROV SOURCE_DIR
set -u
shmprov=$1
src=$2
. "$src/tests/integration/lib.sh"
start_suite "$@"
spool=/var/lib/shmprov/spool
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Debian's nginx, never its service (tests/tls/find_nginx.sh).
SHMPROV_NGINX=$("$src/tests/tls/find_nginx.sh") || { bad "no nginx"; finish; exit 1; }
export SHMPROV_NGINX

"$src/tests/tls/make_pki.sh" "$work/pki" >"$work/pki.out" 2>&1 || { bad "make_pki: $(cat "$work/pki.out")"; finish; exit 1; }
start_collector "$work" || { bad "collector started"; finish; exit 1; }
upstream=$port
https=$(free_port); expired=$(free_port); noclient=$(free_port)
"$src/tests/tls/nginx.sh" start "$work/pki" "$https" "$expired" "$upstream" "$noclient" >"$work/nginx.out" 2>&1
started=$?
trap '"$src/tests/tls/nginx.sh" stop "$work/pki" >/dev/null 2>&1; kill $collector 2>/dev/null' EXIT
expect "nginx/started" test "$started" = 0
for p in $https $expired $noclient; do "$src/tests/collector/wait_ready.sh" "$p" 5; done

posts() { [ -f "$work/log.jsonl" ] && wc -l <"$work/log.jsonl" || echo 0; }
spooled() { find "$spool" -maxdepth 1 -name '*.json' 2>/dev/null | wc -l; }
profile() { # NAME URL EXTRA
    printf 'version: 1\nhost: {ram_tier: small}\nreport:\n  url: %s\n  timeout: 3\n%b' "$1" "$3" >"$work/$2.yaml"
    chmod 0644 "$work/$2.yaml"
}
run() { # PROFILE: fresh spool, apply, report what happened
    rm -rf "$spool"
    : >"$work/log.jsonl"
    "$shmprov" --profile "$work/$1.yaml" apply >"$work/$1.out" 2>"$work/$1.err"
    code=$?
}
pki=$work/pki
profile "https://localhost:$https/v1/events" mtls "  ca_file: $pki/ca.pem\n  client_cert: $pki/client.pem\n  client_key: $pki/client.key\n"
profile "https://localhost:$https/v1/events" wrongca "  ca_file: $pki/wrong-ca.pem\n  client_cert: $pki/client.pem\n  client_key: $pki/client.key\n"
profile "https://localhost:$expired/v1/events" expired "  ca_file: $pki/ca.pem\n  client_cert: $pki/client.pem\n  client_key: $pki/client.key\n"
profile "https://localhost:$https/v1/events" noclient "  ca_file: $pki/ca.pem\n"
profile "https://localhost:$https/v1/events" systemca "  client_cert: $pki/client.pem\n  client_key: $pki/client.key\n"
profile "https://localhost:$noclient/v1/events" tlsonly "  ca_file: $pki/ca.pem\n"

run mtls
expect "mtls/exit-0" test "$code" = 0
expect "mtls/delivered" grep -q "report delivered" "$work/mtls.err"
expect "mtls/collector-saw-client-cert" grep -q '"X-SSL-Client-Verify", "SUCCESS"' "$work/log.jsonl"
expect "mtls/spool-empty" test "$(spooled)" = 0

run tlsonly
expect "tls-without-client-cert-port/delivered" test "$code" = 0 -a "$(spooled)" = 0 -a "$(posts)" = 1

run wrongca
expect "wrong-ca/exit-0" test "$code" = 0
expect "wrong-ca/spooled" test "$(spooled)" = 1
expect "wrong-ca/nothing-reached-collector" test "$(posts)" = 0
expect "wrong-ca/says-certificate" grep -qi "certificate" "$work/wrongca.err"

run expired
expect "expired/spooled" test "$code" = 0 -a "$(spooled)" = 1 -a "$(posts)" = 0
expect "expired/says-expired" grep -qi "expired" "$work/expired.err"

# nginx answers a missing client certificate with 400, which shmprov takes
# as "malformed": the event is set aside in rejected/, counted and named,
# never deleted (README: move it back once the certificate is fixed).
run noclient
expect "missing-client-cert/not-delivered" test "$code" = 0 -a "$(spooled)" = 0 -a "$(posts)" = 0
expect "missing-client-cert/set-aside" test "$(find "$spool/rejected" -name '*.json' | wc -l)" = 1
expect "missing-client-cert/says-400" grep -q "refused as malformed (HTTP 400): moved to $spool/rejected/" "$work/noclient.err"

run systemca
expect "verification-always-on/system-CAs-refuse-test-CA" test "$code" = 0 -a "$(spooled)" = 1 -a "$(posts)" = 0

# The spool kept by the failures goes out once the configuration is right.
rm -rf "$spool"
for p in wrongca expired noclient; do "$shmprov" --profile "$work/$p.yaml" apply >/dev/null 2>&1; done
: >"$work/log.jsonl"
"$shmprov" --profile "$work/mtls.yaml" flush >"$work/flush.out" 2>&1
expect "flush-over-mtls/delivers-what-failed" test $? = 0 -a "$(spooled)" = 0

# ---- one TLS handshake per flush and per apply: nginx logs
#      each request's connection serial (conn=) and whether its TLS session
#      was resumed (reused=r) or new (reused=.) ----
access=$pki/nginx/access.log
requests() { grep -c ' conn=' "$access"; }
connections() { sed -n 's/.* conn=\([0-9]*\) .*/\1/p' "$access" | sort -u | wc -l; }
full_handshakes() { grep -c ' reused=\.$' "$access"; }
collector_mode() { curl -sf -X POST -d "{\"mode\": \"$1\", \"reset\": true}" "http://127.0.0.1:$upstream/_control" >/dev/null; }
# A flush of 3 events that the collector takes one by one only (415 for
# the batch): 1 + 3 requests.
rm -rf "$spool"
for _ in 1 2 3; do "$shmprov" --profile "$work/mtls.yaml" apply --defer-report >/dev/null 2>&1; done
collector_mode 'status:415*1,accept'
: >"$work/log.jsonl"
: >"$access"
"$shmprov" --profile "$work/mtls.yaml" flush >"$work/flush415.out" 2>&1
code=$?
expect "one-handshake/flush-415-delivered" test "$code" = 0 -a "$(spooled)" = 0
expect "one-handshake/flush-415-batch-then-3 ($(requests) requests)" test "$(requests)" = 4 -a "$(posts)" = 4
expect "one-handshake/flush-415-one-connection ($(connections))" test "$(connections)" = 1
expect "one-handshake/flush-415-one-full-handshake ($(full_handshakes))" test "$(full_handshakes)" = 4
expect "one-handshake/flush-415-no-warning" not grep -q -e 415 -e warning "$work/flush415.out"
# An apply with 2 events waiting: its own, then the 2.
rm -rf "$spool"
for _ in 1 2; do "$shmprov" --profile "$work/mtls.yaml" apply --defer-report >/dev/null 2>&1; done
collector_mode accept
: >"$work/log.jsonl"
: >"$access"
"$shmprov" --profile "$work/mtls.yaml" apply >"$work/apply3.out" 2>&1
code=$?
expect "one-handshake/apply-delivered" test "$code" = 0 -a "$(spooled)" = 0
expect "one-handshake/apply-own-and-2 ($(requests) requests)" test "$(requests)" = 3 -a "$(posts)" = 3
expect "one-handshake/apply-one-connection ($(connections))" test "$(connections)" = 1
expect "one-handshake/apply-one-full-handshake ($(full_handshakes))" test "$(full_handshakes)" = 3
finish
