#!/bin/sh
# nginx.sh start DIR HTTPS_PORT HTTPS_EXPIRED_PORT UPSTREAM_PORT [HTTPS_NOCLIENT_PORT]
# nginx.sh stop DIR
#
# A private nginx (Debian's package, /usr/sbin/nginx) in front of the test
# collector, for the TLS report tests. DIR must hold the PKI made by
# make_pki.sh. Everything nginx writes (config, pid, logs, temp files) lives
# in DIR/nginx/; the system service, /etc/nginx, /var/log/nginx and
# /var/lib/nginx are never used. Binds 127.0.0.1 only.
#
#   127.0.0.1:HTTPS_PORT          server.pem (valid), client cert required
#                                 (ssl_verify_client on, CA = ca.pem)
#   127.0.0.1:HTTPS_EXPIRED_PORT  expired.pem, otherwise the same
#   127.0.0.1:HTTPS_NOCLIENT_PORT (optional) server.pem, client cert optional
#
# All proxy to the collector at http://127.0.0.1:UPSTREAM_PORT, unbuffered in
# both directions (so slow, cut, hang, endless reach the client as they are),
# never retried upstream, redirects passed through untouched, and with
#   X-SSL-Client-Verify: SUCCESS|NONE|FAILED:...   X-SSL-Client-DN: ...
#   X-Forwarded-Proto: https    X-Forwarded-Port: <listening port>
# added, so the collector log shows what TLS saw. Client connections are
# kept alive (keepalive_timeout: nginx's default), whatever the collector
# does with its own; DIR/nginx/access.log says which connection each
# request came on (conn=, reqs=) and whether its TLS session was resumed
# (reused=r) or new (reused=.).
# nginx itself answers 400 when the client certificate is missing or not
# signed by ca.pem (on the ports that require one).
set -eu

usage() {
    echo "usage: nginx.sh start DIR HTTPS_PORT HTTPS_EXPIRED_PORT UPSTREAM_PORT [HTTPS_NOCLIENT_PORT]" >&2
    echo "       nginx.sh stop DIR" >&2
    exit 2
}

# SHMPROV_NGINX, not NGINX: nginx itself reads $NGINX (inherited sockets).
nginx_bin=${SHMPROV_NGINX:-/usr/sbin/nginx}
unset SHMPROV_NGINX
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
[ $# -ge 2 ] || usage
dir=$(cd "$2" && pwd)
run=$dir/nginx
pidfile=$run/nginx.pid

running_pid() {
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

start() {
    [ $# -ge 5 ] || usage
    https=$3 expired=$4 upstream=$5 noclient=${6:-}
    for f in ca.pem server.pem server.key expired.pem expired.key; do
        [ -r "$dir/$f" ] || { echo "nginx.sh: $dir/$f missing (run make_pki.sh $dir)" >&2; exit 1; }
    done
    if pid=$(running_pid); then
        echo "nginx.sh: already running in $dir (pid $pid)" >&2
        exit 1
    fi
    mkdir -p "$run/tmp"
    # As root, workers would otherwise run as "nobody" and could not enter a
    # 0700 scratch directory. Not root: the directive would only warn.
    user=
    [ "$(id -u)" = 0 ] && user="user root;"

    cat >"$run/nginx.conf" <<EOF
# written by tests/tls/nginx.sh: private test instance, not the system nginx
daemon on;
master_process on;
worker_processes 1;
$user
pid $pidfile;
error_log $run/error.log notice;

events {
    worker_connections 4096;
}

http {
    default_type application/octet-stream;
    server_tokens off;

    # conn: the connection's serial number, one per TCP connection and so
    # one per TLS handshake; reqs: the request's number on it; reused: "r"
    # when the handshake resumed a TLS session, "." for a full one.
    log_format tls '\$remote_addr:\$server_port [\$time_iso8601] "\$request" \$status '
                   '\$body_bytes_sent \$ssl_protocol client_verify=\$ssl_client_verify '
                   'client_dn="\$ssl_client_s_dn" upstream=\$upstream_status '
                   'rt=\$request_time conn=\$connection reqs=\$connection_requests '
                   'reused=\$ssl_session_reused';
    access_log $run/access.log tls;

    client_body_temp_path $run/tmp/body;
    proxy_temp_path       $run/tmp/proxy;
    fastcgi_temp_path     $run/tmp/fastcgi;
    uwsgi_temp_path       $run/tmp/uwsgi;
    scgi_temp_path        $run/tmp/scgi;

    client_max_body_size 64m;

    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
    ssl_client_certificate $dir/ca.pem;
    ssl_verify_depth 2;

    upstream collector {
        server 127.0.0.1:$upstream;
    }

    proxy_http_version 1.1;
    proxy_set_header Host \$http_host;
    proxy_set_header Connection "";
    proxy_set_header X-SSL-Client-Verify \$ssl_client_verify;
    proxy_set_header X-SSL-Client-DN \$ssl_client_s_dn;
    proxy_set_header X-Forwarded-Proto https;
    proxy_set_header X-Forwarded-Port \$server_port;
    proxy_buffering off;
    proxy_request_buffering off;
    proxy_redirect off;
    proxy_next_upstream off;
    proxy_connect_timeout 5s;
    proxy_send_timeout 600s;
    proxy_read_timeout 600s;

    server {
        listen 127.0.0.1:$https ssl;
        server_name localhost;
        ssl_certificate     $dir/server.pem;
        ssl_certificate_key $dir/server.key;
        ssl_verify_client on;
        location / { proxy_pass http://collector; }
    }

    server {
        listen 127.0.0.1:$expired ssl;
        server_name localhost;
        ssl_certificate     $dir/expired.pem;
        ssl_certificate_key $dir/expired.key;
        ssl_verify_client on;
        location / { proxy_pass http://collector; }
    }
EOF
    if [ -n "$noclient" ]; then
        cat >>"$run/nginx.conf" <<EOF

    server {
        listen 127.0.0.1:$noclient ssl;
        server_name localhost;
        ssl_certificate     $dir/server.pem;
        ssl_certificate_key $dir/server.key;
        ssl_verify_client optional;
        location / { proxy_pass http://collector; }
    }
EOF
    fi
    echo "}" >>"$run/nginx.conf"

    # -e: Debian's build would otherwise log to stderr/its default before the
    # config is read; -p: relative paths resolve under DIR/nginx, never /usr/share/nginx
    set -- -e "$run/error.log" -p "$run/" -c "$run/nginx.conf"
    if ! "$nginx_bin" -t -q "$@"; then
        echo "nginx.sh: config test failed, see $run/error.log" >&2
        exit 1
    fi
    "$nginx_bin" "$@" || { echo "nginx.sh: nginx failed to start, see $run/error.log" >&2; exit 1; }
    for p in $https $expired $noclient; do
        "$here/../collector/wait_ready.sh" "$p" 5 || {
            echo "nginx.sh: port $p not ready; error.log:" >&2
            tail -n 20 "$run/error.log" >&2
            exit 1
        }
    done
    echo "nginx.sh: running (pid $(cat "$pidfile")), https 127.0.0.1:$https, expired 127.0.0.1:$expired${noclient:+, no-client-cert 127.0.0.1:$noclient} -> 127.0.0.1:$upstream"
}

stop() {
    if ! pid=$(running_pid); then
        echo "nginx.sh: not running in $dir"
        rm -f "$pidfile"
        return 0
    fi
    workers=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    # TERM = fast shutdown: does not wait for requests the collector is
    # deliberately holding (hang, slow, endless), as QUIT would.
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "nginx.sh: nginx $pid ignored TERM for 5 s, killing it and its workers" >&2
        kill -KILL "$pid" 2>/dev/null || true
        for w in $workers; do
            kill -KILL "$w" 2>/dev/null || true
        done
    fi
    rm -f "$pidfile"
    echo "nginx.sh: stopped (pid $pid)"
}

case $cmd in
start) start "$@" ;;
stop) stop ;;
*) usage ;;
esac
