#!/bin/bash
#
# t/db/mariadb.sh: a private, throwaway MariaDB for tests.
#
#   t/db/mariadb.sh start [DIR]    start one on 127.0.0.1 (a free port from
#                                  $CS_MARIADB_PORT, default 33306 up),
#                                  create database "certservice" and user
#                                  "cs" with a random password, and print
#                                  the apr_dbd "mysql" parameters, e.g.
#                                  host=127.0.0.1;port=33306;user=cs;...
#   t/db/mariadb.sh params [DIR]   print those parameters again
#   t/db/mariadb.sh restart [DIR]  start it again on its data directory and
#                                  port, e.g. after it was killed (the
#                                  same parameters; InnoDB recovers what
#                                  was committed)
#   t/db/mariadb.sh stop [DIR]     stop it and remove DIR
#
# DIR (default $CS_MARIADB_DIR, else /tmp/cs-mariadb-<uid>) holds the data
# directory, socket, log and pid file.  Nothing is read from my.cnf
# (--no-defaults) and nothing listens beyond loopback.  Works as root (the
# server then runs as root, which mariadbd allows when told so) and as an
# ordinary user.
#
#   params=$(t/db/mariadb.sh start) && CS_TEST_MYSQL="$params" \
#       t/unit/test_cs_store; t/db/mariadb.sh stop
#
set -eu

cmd=${1:-}
dir=${2:-${CS_MARIADB_DIR:-/tmp/cs-mariadb-$(id -u)}}
user=$(id -un)

# find_prog, port_free
# shellcheck source=../lib/certsuite.sh
. "$(cd "$(dirname "$0")/../lib" && pwd)/certsuite.sh"

need_prog() { # NAME...: find_prog, or a hint on stderr
    find_prog "$@" && return 0
    echo "mariadb.sh: none of $* found (apt-get install mariadb-server)" >&2
    return 1
}

running() {
    [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null
}

client() {
    "$(need_prog mariadb mysql)" --no-defaults --socket="$dir/sock" \
        -uroot "$@"
}

ping() {
    "$(need_prog mariadb-admin mysqladmin)" --no-defaults \
        --socket="$dir/sock" -uroot --connect-timeout=2 ping \
        >/dev/null 2>&1
}

# launch PORT: the server on $dir/data, 127.0.0.1:PORT, in the background;
# status 0 once it answers (up to 30 s: crash recovery), else it is
# stopped and the status is 1 (most likely the port was taken)
launch() {
    local server pid
    server=$(need_prog mariadbd mysqld) || return 1
    # setsid: the server outlives this script and its terminal.
    setsid "$server" --no-defaults --datadir="$dir/data" \
        --socket="$dir/sock" --pid-file="$dir/pid" \
        --log-error="$dir/error.log" --user="$user" \
        --port="$1" --bind-address=127.0.0.1 \
        --skip-name-resolve --innodb-buffer-pool-size=64M \
        </dev/null >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
        if ping; then
            return 0
        fi
        # Gone already: most likely the port was taken.
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    ping && return 0
    kill "$pid" 2>/dev/null || true
    return 1
}

start() {
    local install port pass tries
    if running && [ -f "$dir/params" ]; then
        cat "$dir/params"
        return 0
    fi
    need_prog mariadbd mysqld >/dev/null || return 1
    install=$(need_prog mariadb-install-db mysql_install_db)
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 700 "$dir"
    if ! "$install" --no-defaults --datadir="$dir/data" --user="$user" \
            --auth-root-authentication-method=normal --skip-test-db \
            >"$dir/install.log" 2>&1; then
        echo "mariadb.sh: mariadb-install-db failed:" >&2
        tail -20 "$dir/install.log" >&2
        return 1
    fi
    port=${CS_MARIADB_PORT:-33306}
    for tries in 1 2 3 4 5 6 7 8 9 10; do
        if port_free "$port" && launch "$port"; then
            break
        fi
        port=$((port + 1))
    done
    if ! ping; then
        echo "mariadb.sh: the server did not start:" >&2
        tail -20 "$dir/error.log" >&2 || true
        return 1
    fi
    pass=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    client <<EOF
CREATE DATABASE IF NOT EXISTS certservice CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS 'cs'@'127.0.0.1' IDENTIFIED BY '$pass';
CREATE USER IF NOT EXISTS 'cs'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON certservice.* TO 'cs'@'127.0.0.1';
GRANT ALL ON certservice.* TO 'cs'@'localhost';
EOF
    echo "host=127.0.0.1;port=$port;user=cs;pass=$pass;dbname=certservice" \
        >"$dir/params"
    cat "$dir/params"
}

# restart: start the server again on what start made, on the same port
restart() {
    local port
    if running && ping; then
        cat "$dir/params"
        return 0
    fi
    if [ ! -f "$dir/params" ] || [ ! -d "$dir/data" ]; then
        echo "mariadb.sh: nothing to restart in $dir (start first)" >&2
        return 1
    fi
    port=$(tr ';' '\n' <"$dir/params" | sed -n 's/^port=//p')
    if ! launch "$port"; then
        echo "mariadb.sh: the server did not restart on port $port:" >&2
        tail -20 "$dir/error.log" >&2 || true
        return 1
    fi
    cat "$dir/params"
}

stop() {
    local pid
    if running; then
        pid=$(cat "$dir/pid")
        "$(need_prog mariadb-admin mysqladmin)" --no-defaults \
            --socket="$dir/sock" -uroot shutdown >/dev/null 2>&1 \
            || kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -rf "$dir"
}

case "$cmd" in
    start) start ;;
    restart) restart ;;
    stop) stop ;;
    params)
        if running && [ -f "$dir/params" ]; then
            cat "$dir/params"
        else
            echo "mariadb.sh: not running in $dir" >&2
            exit 1
        fi
        ;;
    *)
        echo "usage: $0 start|restart|stop|params [DIR]" >&2
        exit 2
        ;;
esac
