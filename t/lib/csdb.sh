# shellcheck shell=bash
# t/lib/csdb.sh: what the e2e suites of CertService on MariaDB share
# (t/certservice/mariadb_test.sh: one server; t/db/galera.sh: a Galera
# cluster): the prerequisites, the temporary directory with the test PKI,
# the two CertService instances A and B, requests to either, SQL on a
# node, and the check helper.  Source it after t/lib/certsuite.sh; $top
# is the source tree.
#
# Sets or uses: MYSQL, CS_MODULE, tmp, pki, bg_pids, port_A, port_B,
# listen_ports (start_httpd_retry), code, body (cs_req).

# csdb_need [TOOL...]: SKIP (exit 0) when no MariaDB server is installed;
# bail unless curl, jq, openssl, the TOOLs, httpd with mod_dbd, a MariaDB
# client and mod_certservice.so are there.  Sets MYSQL, and CS_MODULE
# (default: the build tree's) as an absolute path.
csdb_need() {
    if ! find_prog mariadbd mysqld >/dev/null; then
        echo "SKIP: no MariaDB server installed (mariadbd/mysqld not" \
             "found; apt-get install mariadb-server)"
        exit 0
    fi
    cs_need curl jq openssl "$@" -- dbd || bail "$need_why"
    MYSQL=$(find_prog mariadb mysql) || bail "no mariadb/mysql client"
    CS_MODULE=${CS_MODULE:-$(cs_build_module certservice)}
    [ -n "${CS_MODULE:-}" ] && [ -f "$CS_MODULE" ] \
        || bail "mod_certservice.so is not built (run make, or set CS_MODULE)"
    CS_MODULE=$(cd "$(dirname "$CS_MODULE")" && pwd)/$(basename "$CS_MODULE")
}

# csdb_setup PREFIX: the temporary directory $tmp (cs_tmpdir: removed on
# exit, after on_cleanup), readable by httpd's children when they run as
# another user, and the test PKI in $pki (t/certservice/make-pki.sh).
# bg_pids: background jobs for csdb_cleanup to stop.
csdb_setup() {
    cs_tmpdir "$1" || bail "mktemp failed"
    pki=$tmp/pki
    bg_pids=()
    # As root the httpd children run as nobody: they must reach the tree.
    cs_run_user
    [ -z "$run_user" ] || chmod 755 "$tmp"
    if ! "$top/t/certservice/make-pki.sh" "$pki" >"$tmp/pki.log" 2>&1; then
        tail -20 "$tmp/pki.log"
        bail "make-pki.sh failed"
    fi
    chmod 755 "$pki"
}

# csdb_cleanup: stops bg_pids and the instances A and B (for on_cleanup,
# which then stops the database).
csdb_cleanup() {
    stop_pids "${bg_pids[@]}"
    stop_httpd "$tmp/A"
    stop_httpd "$tmp/B"
}

# csdb_param PARAMS NAME: a value from an apr_dbd parameter string
# ("host=...;port=...;user=...;pass=...;dbname=...").
csdb_param() {
    local kv kvs
    IFS=';' read -ra kvs <<<"$1"
    for kv in "${kvs[@]}"; do
        if [ "${kv%%=*}" = "$2" ]; then
            printf '%s\n' "${kv#*=}"
            return 0
        fi
    done
    return 1
}

# csdb_sql PARAMS SQL: the rows, tab-separated, no header, of SQL run on
# the server, as the user and in the database of PARAMS.
csdb_sql() {
    MYSQL_PWD=$(csdb_param "$1" pass) "$MYSQL" --no-defaults -h 127.0.0.1 \
        -P "$(csdb_param "$1" port)" -u "$(csdb_param "$1" user)" -N -B \
        "$(csdb_param "$1" dbname)" -e "$2"
}

# csdb_write_conf NAME PARAMS VHOST: $tmp/NAME/httpd.conf for instance
# NAME on a port picked now (port_NAME, listen_ports: start_httpd_retry):
# a CertService with the local CA on the MariaDB of PARAMS, VHOST added
# to its virtual host.
csdb_write_conf() {
    local dir=$tmp/$1 port
    mkdir -p "$dir/logs"
    port=$(pick_port)
    printf -v "port_$1" %s "$port"
    listen_ports=$port
    write_cs_conf "$dir" "$port" log="warn ssl:warn certservice:info dbd:info" \
        dbd=mysql db="$2" server="<IfModule mpm_event_module>
    StartServers 2
    ServerLimit 4
    ThreadsPerChild 25
    MaxRequestWorkers 100
    MaxSpareThreads 100
</IfModule>
<IfModule mpm_worker_module>
    StartServers 2
    ServerLimit 4
    ThreadsPerChild 25
    MaxRequestWorkers 100
</IfModule>" vhost="$3"
}

# csdb_start PARAMS_A PARAMS_B VHOST: CertService instances A and B, each
# on its own database server (or the same one twice), with VHOST; sets
# port_A and port_B; bails if one does not start.
csdb_start() {
    port_A=
    port_B=
    start_httpd_retry "$tmp/A" csdb_write_conf A "$1" "$3" \
        || bail "httpd instance A did not start"
    start_httpd_retry "$tmp/B" csdb_write_conf B "$2" "$3" \
        || bail "httpd instance B did not start"
}

# port_of INST (A or B): its port
port_of() {
    if [ "$1" = A ]; then echo "$port_A"; else echo "$port_B"; fi
}

# other INST: the other instance
other() {
    if [ "$1" = A ]; then echo B; else echo A; fi
}

# req WHO INST METHOD PATH [BODY]: cs_req on instance INST (A or B)
req() {
    cs_req "$1" "$(port_of "$2")" "${@:3}"
}

# check DESC... [ TEST ]: ok if the test (every argument from the "[")
# succeeds; the description is every argument before it.
check() {
    local desc=()
    while [ $# -gt 0 ] && [ "$1" != "[" ]; do
        desc+=("$1")
        shift
    done
    if "$@"; then ok "${desc[*]}"; else notok "${desc[*]}"; fi
}
