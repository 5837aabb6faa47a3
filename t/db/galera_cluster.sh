#!/bin/bash
#
# t/db/galera_cluster.sh: a private, throwaway three-node MariaDB Galera
# cluster on loopback, for tests (t/db/galera.sh) and by hand.
#
#   t/db/galera_cluster.sh start DIR     bootstrap node 1, join nodes 2 and
#                                        3 (state transfer by rsync), make
#                                        database "certservice" and user
#                                        "cs"; print one apr_dbd "mysql"
#                                        parameter string per node, one a
#                                        line (host=127.0.0.1;port=N;...)
#   t/db/galera_cluster.sh kill DIR N    SIGKILL node N (no goodbye: the
#                                        others must notice it is gone)
#   t/db/galera_cluster.sh restart DIR N start node N again on its data
#                                        (it rejoins: IST from a peer's
#                                        cache, else a full transfer)
#   t/db/galera_cluster.sh status DIR N  wsrep_cluster_size, state, ready
#   t/db/galera_cluster.sh stop DIR      stop every node, remove DIR
#
# Ports: from $CS_GALERA_PORT (default 35306): node N's SQL port is
# base+N-1, its group port base+10+N-1, IST base+20+N-1, SST base+30+N-1.
# Needs mariadbd with wsrep, Debian's galera-4 (libgalera_smm.so) and
# rsync.  Nothing from my.cnf is read; everything listens on 127.0.0.1
# only.  Works as root (the servers then run as root) and as a normal user.
#
set -eu

cmd=${1:-}
dir=${2:-}
node=${3:-}
base=${CS_GALERA_PORT:-35306}
user=$(id -un)
# As root the servers run as an ordinary user: the rsync that carries a
# state transfer runs its daemon as nobody under root, and nobody cannot
# write into a root-owned data directory.
if [ "$(id -u)" = 0 ]; then
    user=${CS_GALERA_USER:-}
    if [ -z "$user" ]; then
        for u in certsuite-test nobody; do
            if id "$u" >/dev/null 2>&1; then user=$u; break; fi
        done
    fi
fi

# shellcheck source=../lib/certsuite.sh
. "$(cd "$(dirname "$0")/../lib" && pwd)/certsuite.sh"

die() { echo "galera_cluster.sh: $*" >&2; exit 1; }
[ -n "$dir" ] || die "usage: $0 start|kill|restart|status|stop DIR [N]"

provider() {
    local f
    for f in /usr/lib/galera/libgalera_smm.so /usr/lib/libgalera_smm.so \
             /usr/lib64/galera-4/libgalera_smm.so \
             /usr/lib/x86_64-linux-gnu/galera/libgalera_smm.so; do
        if [ -f "$f" ]; then echo "$f"; return 0; fi
    done
    return 1
}

sqlport() { echo $((base + $1 - 1)); }
gport() { echo $((base + 10 + $1 - 1)); }

client() { # N SQL...: as root over node N's socket
    local n=$1
    shift
    "$(find_prog mariadb mysql)" --no-defaults --socket="$dir/n$n/sock" \
        -uroot -N -B "$@"
}

ping_node() {
    "$(find_prog mariadb-admin mysqladmin)" --no-defaults \
        --socket="$dir/n$1/sock" -uroot --connect-timeout=2 ping \
        >/dev/null 2>&1
}

# ready N: node N is a synced member of the primary component
ready() {
    [ "$(client "$1" -e "SHOW STATUS LIKE 'wsrep_ready'" 2>/dev/null \
         | cut -f2)" = ON ] \
    && [ "$(client "$1" -e "SHOW STATUS LIKE 'wsrep_local_state_comment'" \
            2>/dev/null | cut -f2)" = Synced ]
}

# launch N [--wsrep-new-cluster]: node N in the background; waits until it
# is synced (up to 120 s: a state transfer under load)
launch() {
    local n=$1 d=$dir/n$1 addr i peers pid
    shift
    peers=
    for i in 1 2 3; do
        peers="$peers${peers:+,}127.0.0.1:$(gport "$i")"
    done
    # Short failure detection: a killed node is evicted in about 3 s (the
    # defaults take 15 s, during which every commit of the cluster
    # waits).  Small caches: the test writes little.
    opts="gmcast.listen_addr=tcp://127.0.0.1:$(gport "$n");"
    opts="$opts ist.recv_addr=127.0.0.1:$((base + 20 + n - 1));"
    opts="$opts evs.suspect_timeout=PT3S; evs.inactive_timeout=PT6S;"
    opts="$opts evs.inactive_check_period=PT0.5S; evs.keepalive_period=PT0.5S;"
    opts="$opts evs.install_timeout=PT6S; gcache.size=64M; pc.weight=1"
    addr="gcomm://$peers"
    setsid "$(find_prog mariadbd mysqld)" --no-defaults --datadir="$d/data" \
        --socket="$d/sock" --pid-file="$d/pid" --log-error="$d/error.log" \
        --user="$user" --port="$(sqlport "$n")" --bind-address=127.0.0.1 \
        --skip-name-resolve --innodb-buffer-pool-size=64M \
        --innodb-log-file-size=48M \
        --binlog-format=ROW --default-storage-engine=InnoDB \
        --innodb-autoinc-lock-mode=2 \
        --wsrep-on=ON --wsrep-provider="$(provider)" \
        --wsrep-cluster-name=cs-test --wsrep-cluster-address="$addr" \
        --wsrep-node-name="n$n" --wsrep-node-address="127.0.0.1:$(gport "$n")" \
        --wsrep-provider-options="$opts" \
        --wsrep-sst-method=rsync \
        --wsrep-sst-receive-address="127.0.0.1:$((base + 30 + n - 1))" \
        "$@" </dev/null >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 1200); do
        if ping_node "$n" && ready "$n"; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "galera_cluster.sh: node $n did not join:" >&2
    tail -15 "$d/error.log" >&2 || true
    return 1
}

start() {
    local n pass
    provider >/dev/null || die "no libgalera_smm.so (apt-get install galera-4)"
    find_prog rsync >/dev/null || die "no rsync (apt-get install rsync)"
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 711 "$dir"
    for n in 1 2 3; do
        port_free "$(sqlport "$n")" && port_free "$(gport "$n")" \
            || die "port $(sqlport "$n") or $(gport "$n") is taken" \
                   "(set CS_GALERA_PORT)"
        mkdir -p "$dir/n$n/data"
        chmod 700 "$dir/n$n"
        [ "$user" = "$(id -un)" ] || chown -R "$user" "$dir/n$n"
    done
    "$(find_prog mariadb-install-db mysql_install_db)" --no-defaults \
        --datadir="$dir/n1/data" --user="$user" \
        --auth-root-authentication-method=normal --skip-test-db \
        >"$dir/install.log" 2>&1 || die "mariadb-install-db failed"
    launch 1 --wsrep-new-cluster || die "node 1 did not bootstrap"
    pass=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    client 1 <<EOF
CREATE DATABASE IF NOT EXISTS certservice CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS 'cs'@'127.0.0.1' IDENTIFIED BY '$pass';
CREATE USER IF NOT EXISTS 'cs'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON certservice.* TO 'cs'@'127.0.0.1';
GRANT ALL ON certservice.* TO 'cs'@'localhost';
EOF
    echo "$pass" >"$dir/pass"
    for n in 2 3; do
        launch "$n" || die "node $n did not join"
    done
    for n in 1 2 3; do
        echo "host=127.0.0.1;port=$(sqlport "$n");user=cs;pass=$pass;dbname=certservice"
    done
}

pid_of() { cat "$dir/n$1/pid" 2>/dev/null; }

stop_node() {
    local n=$1 pid
    pid=$(pid_of "$n") || return 0
    "$(find_prog mariadb-admin mysqladmin)" --no-defaults \
        --socket="$dir/n$n/sock" -uroot shutdown >/dev/null 2>&1 \
        || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/n$n/pid"
}

# recover N: after a crash, node N's last committed position, which it
# must name to rejoin by IST (what Debian's galera_recovery does)
recover() {
    local n=$1 d=$dir/n$1 pos
    "$(find_prog mariadbd mysqld)" --no-defaults --datadir="$d/data" \
        --user="$user" --log-error="$d/recover.log" \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=48M \
        --wsrep-on=ON --wsrep-provider="$(provider)" --wsrep-recover \
        --skip-networking --socket="$d/recover.sock" \
        --pid-file="$d/recover.pid" >/dev/null 2>&1 || true
    pos=$(sed -n 's/.*WSREP: Recovered position: *//p' "$d/recover.log" \
          | tail -1)
    echo "$pos"
}

case "$cmd" in
start) start ;;
kill)
    pid=$(pid_of "$node") || die "node $node is not running"
    kill -9 "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    rm -f "$dir/n$node/pid" ;;
restart)
    pos=$(recover "$node")
    if [ -n "$pos" ]; then
        launch "$node" --wsrep-start-position="$pos"
    else
        launch "$node"
    fi ;;
status)
    client "$node" -e "SHOW STATUS WHERE Variable_name IN
        ('wsrep_cluster_size','wsrep_local_state_comment','wsrep_ready',
         'wsrep_local_cert_failures','wsrep_local_bf_aborts')" ;;
stop)
    for n in 3 2 1; do
        stop_node "$n"
    done
    rm -rf "$dir" ;;
*) die "usage: $0 start|kill|restart|status|stop DIR [N]" ;;
esac
