#!/bin/sh
# Installs everything the suite needs to build and test, from Debian's
# packages.  Run as root on Debian 12 (bookworm) or later.
set -eu

if [ "$(id -u)" != 0 ]; then
    echo "install-deps.sh: run as root (sudo $0)" >&2
    exit 1
fi

PACKAGES="
    build-essential autoconf automake libtool pkg-config
    apache2 apache2-dev
    libssl-dev libcurl4-openssl-dev libjansson-dev libidn2-dev libc-ares-dev libpsl-dev
    libldns-dev bind9 bind9-utils bind9-dnsutils
    mariadb-server libaprutil1-dbd-mysql
    libaprutil1-dbd-sqlite3 sqlite3
    libapache2-mod-perl2 libio-socket-ssl-perl
    haproxy curl nghttp2-client openssl jq socat python3 faketime
    pebble
    clang libclang-rt-dev
    valgrind wrk
    passwd util-linux procps iproute2 e2fsprogs
    dpkg-dev debhelper lintian man-db
"
# Headless Chromium: t/demo/tls.sh (make check-pool-tls: h2 through the
# pool; its checks are skipped without it) and t/dashboard/e2e.sh (the
# dashboard with a client certificate from an NSS database); promtool for
# t/certservice/85_metrics.t.
PACKAGES="$PACKAGES
    prometheus chromium chromium-driver python3-selenium libnss3-tools
"
# make check-galera (t/db/galera.sh): the Galera provider for mariadbd, and
# rsync for a node's state transfer when it rejoins.
PACKAGES="$PACKAGES galera-4 rsync"
# bench/scale_plot.sh (bench/scale.sh's plot in docs/): gnuplot without X.
PACKAGES="$PACKAGES gnuplot-nox"
# t/proxy_protocol/85_nginx.t and bench/proxy_protocol.sh BALANCER=nginx:
# nginx's stream module in front of the PROXY module.
PACKAGES="$PACKAGES nginx libnginx-mod-stream"

export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
# shellcheck disable=SC2086
set -- $PACKAGES
echo "install-deps.sh: apt-get update, then $# packages (a few minutes on" \
     "a fresh machine; seconds when they are installed)"
apt-get update -qq
# A line every 20 s while apt works (how many packages are set up so
# far); its full output only if it fails.
log=$(mktemp "${TMPDIR:-/tmp}/install-deps.XXXXXX")
apt-get install -y --no-install-recommends "$@" >"$log" 2>&1 </dev/null &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
    i=0
    while [ $i -lt 20 ] && kill -0 "$pid" 2>/dev/null; do
        sleep 1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "install-deps.sh: ... $(( $(date +%s) - start )) s," \
             "$(grep -c '^Setting up ' "$log") packages set up so far"
    fi
done
rc=0
wait "$pid" || rc=$?
if [ "$rc" != 0 ]; then
    tail -n 30 "$log" >&2
    echo "install-deps.sh: apt-get install failed; its output: $log" >&2
    exit 1
fi
echo "install-deps.sh: $(grep -c '^Setting up ' "$log") packages set up" \
     "in $(( $(date +%s) - start )) s"
rm -f "$log"
# The suite starts its own servers; the packaged ones stay stopped.
for svc in apache2 haproxy named nginx; do
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
    service "$svc" stop >/dev/null 2>&1 || true
done
echo "install-deps.sh: dependencies installed"
