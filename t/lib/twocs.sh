# shellcheck shell=bash
# t/lib/twocs.sh: two CertService instances, A and B, on one private
# MariaDB, against one real pebble: the setup t/acme/budgets_mariadb.sh
# (make check-acme-budgets) and bench/budgets.sh share.
#
# Source it after t/lib/certsuite.sh; it only defines twocs_start.

# twocs_start NAME LOGLEVEL VHOST: after tap_init; bails (certsuite.sh's
# bail) on anything missing or failing, and skips (exit 0) without a
# MariaDB server.  In order:
#
#   * checks curl, jq, openssl, pebble, mod_dbd and mod_watchdog, the
#     modules built, a mariadb/mysql client (MYSQL)
#   * cs_tmpdir NAME, cs_layout A/logs B/logs pebble (tmp, pki), the test
#     PKI with make-acme-pki.sh's ACME files, an on_cleanup that stops
#     everything started here
#   * MariaDB (t/db/mariadb.sh) in $tmp/db: its parameters in params,
#     param KEY reads one, sql QUERY runs one (-N -B: tab-separated, no
#     header)
#   * pebble on peb_port (management peb_mgmt) with every validation
#     valid at once (PEBBLE_VA_ALWAYS_VALID: who orders when is what these
#     scripts look at, t/acme/e2e.sh covers validation)
#   * CertService A and B on that database (ports port_A, port_B), log
#     level LOGLEVEL, VHOST the lines added to their virtual host
#     (workers, backoff, budgets)
twocs_start() {
    local name=$1 loglevel=$2 vhost=$3 inst
    if ! find_prog mariadbd mysqld >/dev/null; then
        echo "SKIP: no MariaDB server installed"
        exit 0
    fi
    cs_need curl jq openssl pebble -- dbd watchdog || bail "$need_why"
    cs_modules || bail "the modules are not built (make)"
    MYSQL=$(find_prog mariadb mysql) || bail "no mariadb/mysql client"

    cs_tmpdir "$name" || bail "mktemp failed"
    cs_layout A/logs B/logs pebble \
        || bail "cannot make the directories in $tmp"
    twocs_dbdir=$tmp/db
    twocs_pebble_pid=
    on_cleanup() {
        stop_httpd "$tmp/A"
        stop_httpd "$tmp/B"
        stop_pids "$twocs_pebble_pid"
        [ -d "$twocs_dbdir" ] \
            && "$top/t/db/mariadb.sh" stop "$twocs_dbdir" >/dev/null 2>&1
    }
    [ -z "$run_user" ] || chmod 755 "$tmp/A" "$tmp/B"

    "$top/t/certservice/make-pki.sh" "$pki" >"$tmp/pki.log" 2>&1 \
        && "$top/t/certservice/make-acme-pki.sh" "$pki" budgets \
            >>"$tmp/pki.log" 2>&1 \
        || bail "cannot make the test PKI: $(tail -5 "$tmp/pki.log")"
    chmod 755 "$pki"

    params=$("$top/t/db/mariadb.sh" start "$twocs_dbdir" \
                 2>"$tmp/mariadb.log") \
        || bail "t/db/mariadb.sh start failed: $(tail -5 "$tmp/mariadb.log")"
    param() { tr ';' '\n' <<<"$params" | sed -n "s/^$1=//p"; }
    sql() {
        MYSQL_PWD=$(param pass) "$MYSQL" --no-defaults -h 127.0.0.1 \
            -P "$(param port)" -u "$(param user)" -N -B "$(param dbname)" \
            -e "$1"
    }

    peb_port=$(pick_port)
    peb_mgmt=$(pick_port)
    pebble_conf "$peb_port" "$peb_mgmt" 1 2 "$pki" >"$tmp/pebble/config.json"
    PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
        pebble -config "$tmp/pebble/config.json" \
        >"$tmp/pebble/pebble.log" 2>&1 &
    twocs_pebble_pid=$!
    wait_port "$peb_port" \
        || bail "pebble did not start: $(tail -5 "$tmp/pebble/pebble.log")"

    twocs_loglevel=$loglevel
    twocs_vhost=$vhost
    for inst in A B; do
        start_httpd_retry "$tmp/$inst" _twocs_conf "$inst" \
            || bail "CertService $inst did not start"
    done
}

# _twocs_conf NAME: instance NAME's configuration on a port picked now
# (port_NAME); start_httpd_retry's writer
_twocs_conf() {
    local dir=$tmp/$1 port
    port=$(pick_port)
    printf -v "port_$1" %s "$port"
    listen_ports=$port
    write_cs_conf "$dir" "$port" log="$twocs_loglevel" dbd=mysql \
        db="$params" acme="https://127.0.0.1:$peb_port/dir" \
        vhost="$twocs_vhost"
}
