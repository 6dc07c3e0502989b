#!/bin/sh
# make_pki.sh DIR: a throw-away PKI for the TLS report tests, made with the
# system openssl (3.0 on Debian 12) at test time. Nothing outside DIR is
# read or written (no /etc/ssl/openssl.cnf: every command gets its own config).
#
# DIR/ca.pem, ca.key                 test CA
# DIR/server.pem, server.key         valid server cert: DNS:localhost, IP:127.0.0.1
# DIR/expired.pem, expired.key       same names, signed by the CA, expired in 2020
# DIR/wrong-ca.pem, wrong-ca.key     an unrelated CA (trusting it must fail)
# DIR/client.pem, client.key         client cert for mTLS, signed by the CA
# DIR/wrong-client.pem, wrong-client.key   client cert signed by the wrong CA
#
# Keys are P-256 EC keys (fast to make), mode 0600. Certificates are 0644.
set -eu

dir=${1:?usage: make_pki.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
umask 077

# openssl must not pick up a system or user config
OPENSSL_CONF=$dir/openssl-empty.cnf
export OPENSSL_CONF
: >"$OPENSSL_CONF"

# run CMD...: quiet unless it fails
run() {
    "$@" 2>"$dir/openssl.log" || {
        cat "$dir/openssl.log" >&2
        echo "make_pki: failed: $*" >&2
        exit 1
    }
}

key() {
    run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$1.key"
    chmod 600 "$dir/$1.key"
}

# ca NAME CN: self-signed CA certificate
ca() {
    key "$1"
    cat >"$dir/$1.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = $2
O = shmprov tests
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
    run openssl req -new -x509 -config "$dir/$1.cnf" -key "$dir/$1.key" \
        -sha256 -days 3650 -out "$dir/$1.pem"
}

# leaf NAME CN EXTSECTION SIGNER: CSR + certificate valid from now, 30 days
leaf() {
    key "$1"
    run openssl req -new -config "$dir/leaf.cnf" -key "$dir/$1.key" \
        -subj "/CN=$2/O=shmprov tests" -out "$dir/$1.csr"
    run openssl x509 -req -in "$dir/$1.csr" -CA "$dir/$4.pem" -CAkey "$dir/$4.key" \
        -CAcreateserial -CAserial "$dir/$4.srl" -sha256 -days 30 \
        -extfile "$dir/leaf.cnf" -extensions "$3" -out "$dir/$1.pem"
    rm -f "$dir/$1.csr"
}

cat >"$dir/leaf.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

ca ca "shmprov test CA"
ca wrong-ca "shmprov WRONG test CA"
leaf server localhost server ca
leaf client shmprov-test-client client ca
leaf wrong-client shmprov-wrong-client client wrong-ca

# The expired server certificate. openssl 3.0's "x509 -req" cannot set a start
# date in the past (-not_before arrived in 3.4), "openssl ca" can, given its
# minimal database.
key expired
run openssl req -new -config "$dir/leaf.cnf" -key "$dir/expired.key" \
    -subj "/CN=localhost/O=shmprov tests" -out "$dir/expired.csr"
mkdir -p "$dir/ca-db"
: >"$dir/ca-db/index.txt"
echo 1000 >"$dir/ca-db/serial"
cat >"$dir/ca-db/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
dir = $dir/ca-db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
email_in_dn = no
[any]
commonName = supplied
organizationName = optional
EOF
run openssl ca -batch -notext -config "$dir/ca-db/ca.cnf" \
    -startdate 20200101000000Z -enddate 20200201000000Z \
    -extfile "$dir/leaf.cnf" -extensions server \
    -in "$dir/expired.csr" -out "$dir/expired.pem"
rm -f "$dir/expired.csr" "$dir/openssl.log"

chmod 644 "$dir"/*.pem
chmod 600 "$dir"/*.key

# Self-check: what must verify does, what must not does not.
v() { openssl verify -CAfile "$dir/$1" "$dir/$2" >/dev/null 2>&1; }
v ca.pem server.pem
v ca.pem client.pem
v wrong-ca.pem wrong-client.pem
if v wrong-ca.pem server.pem; then echo "make_pki: server.pem verifies against the wrong CA" >&2; exit 1; fi
if v ca.pem expired.pem; then echo "make_pki: expired.pem is not expired" >&2; exit 1; fi
openssl verify -CAfile "$dir/ca.pem" "$dir/expired.pem" 2>&1 | grep -q 'certificate has expired' || {
    echo "make_pki: expired.pem fails for another reason than expiry" >&2
    exit 1
}
echo "make_pki: PKI ready in $dir"
