#!/bin/sh
# find_nginx.sh: prints the path of Debian's nginx binary for the TLS tests.
# Never installs the package: on a machine run by systemd that would start
# nginx on port 80. Where /usr/sbin/nginx is absent, Debian's nginx package
# is downloaded and unpacked into a cache of the tests' own.
set -eu
if [ -x /usr/sbin/nginx ]; then
    echo /usr/sbin/nginx
    exit 0
fi
cache=/var/cache/shmprov-ci/nginx
if [ ! -x "$cache/usr/sbin/nginx" ]; then
    mkdir -p "$cache"
    (cd "$cache" && apt-get download nginx >/dev/null 2>&1 && dpkg-deb -x nginx_*.deb .) || {
        echo "find_nginx.sh: cannot fetch Debian's nginx package" >&2
        exit 1
    }
fi
echo "$cache/usr/sbin/nginx"
