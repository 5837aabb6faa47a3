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
"
# make check-galera (t/db/galera.sh): the Galera provider for mariadbd, and
# rsync for a node's state transfer when it rejoins.
PACKAGES="$PACKAGES galera-4 rsync"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
# The suite starts its own servers; the packaged ones stay stopped.
for svc in apache2 haproxy named; do
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
    service "$svc" stop >/dev/null 2>&1 || true
done
echo "install-deps.sh: dependencies installed"
