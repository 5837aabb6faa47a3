# shellcheck shell=bash
#
# t/lib/pool.sh: the demo pool on loopback, as a sourced bash library
# (build/demo.sh, t/dynamic, bench/scale.sh; t/lib/rollout.sh builds on it).
# It sources t/lib/certsuite.sh (find_prog, cs_find_httpd, cs_find_moddir,
# cs_run_user, port_free, wait_port, write_cs_conf, ...).  Source it, then:
#
#   pool_pick_base [FIRST]   a free BASEPORT (BASEPORT..+32 free)
#   pool_init DIR BASEPORT   set the POOL_* variables; DIR is created (or
#                            made by mktemp when empty); ports BASEPORT ..
#                            BASEPORT+32 (see "Ports" below); finds httpd,
#                            its modules, haproxy, the build tree's modules
#   pool_pki                 test PKI in $POOL_DIR/pki (t/certservice/
#                            make-pki.sh: CA, CertService TLS, clients
#                            admin/proxy/proxy2/proxy3, wrap1, roles.conf)
#                            and the proxies' fallback certificate
#   pool_start_acme          (POOL_ISSUER=acme) pebble, validation on, and
#                            pebble-challtestsrv as its DNS (every name is
#                            127.0.0.1); its http-01 goes to HAProxy's plain
#                            HTTP port, then a proxy's relay to CertService
#   pool_start_certservice   CertService: mod_ssl mutual TLS, mod_dbd SQLite,
#                            mod_certservice (local CA, or ACME through
#                            pebble with POOL_ISSUER=acme; wrap1, roles,
#                            CertServiceMaxUnavailable 1)
#   pool_start_backend       the internal web server: a page (SSI) echoing
#                            REMOTE_ADDR, Host, X-Proxy, X-Forwarded-For, ...
#   (POOL_CS_EXTRA: more lines for CertService's virtual host;
#   POOL_PX_EXTRA: more lines at the end of each proxy's httpd.conf)
#   pool_start_proxy N       proxy N (1..3), configured by write_px_conf:
#                            mod_proxy_protocol, mod_ssl, mod_macro_gen TLS
#                            vhosts proxying to the backend, mod_certsync
#                            (pool "demo", host "proxyN", probe, agent,
#                            drain 2s), status port
#   pool_start_haproxy       HAProxy, TCP mode, send-proxy-v2 to the three
#                            proxies, httpchk + agent-check, stats socket
#                            and stats page
#   pool_stop_proxy N        stop one proxy (and its sync daemon)
#   pool_stop_all            stop everything started (idempotent)
#
#   pool_add_domain NAME     admin PUT /v1/domains/NAME; prints the serial
#   pool_cs_serial NAME      the serial CertService has for NAME
#   pool_served_serial N NAME  the serial proxy N presents for NAME (SNI;
#                            "*.x" is asked as "probe.x"), directly
#   pool_lb_request HOST [curl args...]  GET https://HOST/ through HAProxy
#                            (--resolve, --cacert of the demo CA; "*.x"
#                            is asked as "probe.x")
#   pool_cs_curl WHO PATH [curl args...]  CertService with client cert WHO
#                            (admin, proxy, proxy2, proxy3, norole)
#   pool_proxy_status N [QUERY]  proxy N's /certsync-status (JSON)
#   pool_proxy_state N       its sync state (idle, draining, ...)
#   pool_lb_cmd COMMAND      HAProxy stats socket command ("show stat")
#   pool_lb_state N          HAProxy's status of proxyN (UP, DRAIN, DOWN..)
#   pool_json_get KEY        first "KEY" string/number of the JSON on stdin
#   pool_log_tail [LINES]    the last lines of every error log (diagnosis)
#
# Ports (BASEPORT = B): B HAProxy TLS frontend, B+1 HAProxy stats page,
# B+2 CertService, B+3 backend; proxy N: B+10N TLS (PROXY protocol),
# B+10N+1 plain HTTP (/certsync-status, /certsync-health, /server-status),
# B+10N+2 certsync agent (HAProxy agent-check).  Everything listens on
# 127.0.0.1 only.  With POOL_ISSUER=acme also: B+4 pebble, B+5 pebble's
# management, B+6 DNS (challtestsrv), B+7 challtestsrv's management, B+8
# pebble's unused tls-alpn port, B+9 HAProxy's plain HTTP ("port 80"),
# B+10N+3 proxy N's http-01 relay.
#
# Layout of POOL_DIR (stable: tests read these files):
#   pki/                 make-pki.sh's files, fallback.{crt,key}
#   cs/                  httpd.conf, logs/error_log, run/httpd.pid,
#                        db/certservice.db
#   backend/             httpd.conf, htdocs/index.shtml, logs/access_log
#   proxyN/              httpd.conf, logs/{error_log,access_log (TLS),
#                        status_log (status port)}, run/httpd.pid, store/
#                        (CertSyncStoreDir: manifest, state.json, live/)
#   haproxy/             haproxy.cfg, haproxy.pid, haproxy.sock
#
# Addresses: HAProxy connects to the proxies from 127.0.0.2 (`source`), the
# only address trusted to send a PROXY header; 127.0.0.1 is an exception
# (ProxyProtocolExceptions): mod_certsync's own probe and
# pool_served_serial connect directly from there, without a header.
#
# As root every httpd runs its children as nobody/nogroup (the sync daemons
# stay root: they write root-only keys); the tree must then be readable by
# nobody.  Nothing here sets traps or changes the shell's options: the
# caller stops the pool (trap pool_stop_all EXIT).  Functions return
# non-zero on failure and say why on stderr.
#
# Variables set by pool_init: POOL_DIR POOL_TOP POOL_BASE POOL_LB_PORT
# POOL_LB_STATS_PORT POOL_CS_PORT POOL_BACKEND_PORT POOL_HTTPD POOL_MODDIR
# POOL_HAPROXY POOL_USER POOL_GROUP POOL_PKI POOL_CS_URL POOL_LB_ADDR
# POOL_CERTSYNC_POOL POOL_COMPILED.  Knobs the caller may set before
# pool_init: POOL_HTTPD (the httpd binary; default from apxs); before
# pool_start_proxy: POOL_SYNC_INTERVAL ("2 1"), POOL_DRAIN_TIME (2),
# POOL_LEASE_TTL (10: CertService answers a lease request that finds the
# pool's slot taken with Retry-After = until that lease expires, so the TTL
# paces a rollout across the pool), POOL_LOGLEVEL ("warn certsync:info
# proxy_protocol:info"), POOL_ACTIVATION (vhost; "dynamic": one catch-all
# virtual host, certificates per handshake, no restarts), and in dynamic
# mode POOL_CACHE_SIZE (CertSyncCacheSize, 10000) and POOL_PROCS (worker
# processes of 25 threads each, 2).  Configuration lines to add:
# POOL_CS_EXTRA (CertService's virtual host), POOL_PX_EXTRA (each proxy's
# server config); before pool_start_acme: POOL_PEBBLE_TLS_PORT, where
# pebble sends its tls-alpn-01 validations (default B+8, nothing there;
# t/acme/tlsalpn.sh points it at HAProxy's TLS frontend).

POOL_LIB_SOURCE=${BASH_SOURCE[0]}
# shellcheck source=certsuite.sh
. "$(dirname "$POOL_LIB_SOURCE")/certsuite.sh"

# --- setup -------------------------------------------------------------------

pool_init() { # DIR BASEPORT
    local dir=${1:-} base=${2:-} m APXS=${APXS:-} HTTPD=${POOL_HTTPD:-${HTTPD:-}}
    if [ -z "$base" ] || ! [ "$base" -gt 1024 ] 2>/dev/null \
       || [ "$base" -gt 65500 ]; then
        echo "pool_init: BASEPORT must be 1025..65500" >&2
        return 1
    fi
    POOL_TOP=$(cd "$(dirname "$POOL_LIB_SOURCE")/../.." && pwd)
    if [ -z "$dir" ]; then
        dir=$(mktemp -d "${TMPDIR:-/tmp}/certsuite-pool.XXXXXX") || return 1
    fi
    mkdir -p "$dir" || return 1
    POOL_DIR=$(cd "$dir" && pwd)
    POOL_BASE=$base
    POOL_LB_PORT=$base
    POOL_LB_STATS_PORT=$((base + 1))
    POOL_CS_PORT=$((base + 2))
    POOL_BACKEND_PORT=$((base + 3))
    POOL_CS_URL=https://127.0.0.1:$POOL_CS_PORT
    POOL_LB_ADDR=127.0.0.2
    POOL_CERTSYNC_POOL=demo
    POOL_PKI=$POOL_DIR/pki

    if ! cs_find_httpd; then
        echo "pool_init: no httpd (install apache2-dev, or set POOL_HTTPD)" >&2
        return 1
    fi
    POOL_HTTPD=$HTTPD
    if ! cs_find_moddir; then
        echo "pool_init: no httpd modules directory with mod_ssl.so" >&2
        return 1
    fi
    POOL_MODDIR=$moddir
    POOL_HAPROXY=$(find_prog haproxy || true)
    for m in proxy_protocol certservice certsync macro_gen; do
        if [ ! -f "$POOL_TOP/mod_$m/.libs/mod_$m.so" ]; then
            echo "pool_init: mod_$m is not built (make)" >&2
            return 1
        fi
    done
    cs_run_user
    POOL_USER=$run_user POOL_GROUP=$run_group
    if [ -n "$POOL_USER" ]; then
        chmod 755 "$POOL_DIR"
    fi
    POOL_SYNC_INTERVAL=${POOL_SYNC_INTERVAL:-2 1}
    POOL_DRAIN_TIME=${POOL_DRAIN_TIME:-2}
    POOL_LEASE_TTL=${POOL_LEASE_TTL:-10}
    POOL_LOGLEVEL=${POOL_LOGLEVEL:-warn certsync:info proxy_protocol:info}
    POOL_COMPILED=$("$POOL_HTTPD" -l 2>/dev/null)
    # what load, cs_conf_mpm, cs_conf_user (t/lib/certsuite.sh) read
    compiled=$POOL_COMPILED
    POOL_ISSUER=${POOL_ISSUER:-local}
    POOL_TRUST_CA=$POOL_PKI/ca.crt
}

# --- ACME: pebble and its DNS (POOL_ISSUER=acme) ----------------------------

pool_start_acme() {
    local d=$POOL_DIR/acme p
    mkdir -p "$d"
    for p in pebble pebble-challtestsrv; do
        command -v "$p" >/dev/null 2>&1 \
            || { echo "pool_start_acme: $p is not installed" >&2; return 1; }
    done
    # pebble's own TLS certificate (CertServiceACMECA trusts its CA), the
    # key that seals CertService's ACME account key, and the proxies'
    # client certificates as single files for SSLProxyMachineCertificateFile.
    "$POOL_TOP/t/certservice/make-acme-pki.sh" "$POOL_PKI" pool \
        proxy proxy2 proxy3 >"$d/pki.log" 2>&1 || {
        cat "$d/pki.log" >&2
        echo "pool_start_acme: cannot make pebble's certificates" >&2
        return 1
    }
    pebble_conf $((POOL_BASE + 4)) $((POOL_BASE + 5)) $((POOL_BASE + 9)) \
        "${POOL_PEBBLE_TLS_PORT:-$((POOL_BASE + 8))}" "$POOL_PKI" \
        >"$d/pebble.json"
    start_challtestsrv $((POOL_BASE + 6)) $((POOL_BASE + 7)) \
        "$d/challtestsrv.log"
    echo $! >"$d/challtestsrv.pid"
    PEBBLE_VA_NOSLEEP=1 PEBBLE_VA_ALWAYS_VALID='' pebble -config "$d/pebble.json" \
        -dnsserver "127.0.0.1:$((POOL_BASE + 6))" >"$d/pebble.log" 2>&1 &
    echo $! >"$d/pebble.pid"
    if ! wait_port $((POOL_BASE + 4)) 10 \
       || ! wait_port $((POOL_BASE + 5)) 10; then
        tail -n 5 "$d/pebble.log" >&2
        echo "pool_start_acme: pebble did not start" >&2
        return 1
    fi
    # Clients trust pebble's root (made anew at every start).
    if ! curl -sS --noproxy '*' --cacert "$POOL_PKI/acme-tls-ca.crt" \
            -o "$POOL_PKI/pebble-root.pem" \
            "https://127.0.0.1:$((POOL_BASE + 5))/roots/0" \
       || ! grep -q 'BEGIN CERTIFICATE' "$POOL_PKI/pebble-root.pem"; then
        echo "pool_start_acme: cannot fetch pebble's root" >&2
        return 1
    fi
    chmod 644 "$POOL_PKI/pebble-root.pem"
    POOL_TRUST_CA=$POOL_PKI/pebble-root.pem
}

# pool_pick_base [FIRST]: a base port with BASE..BASE+32 free on 127.0.0.1.
# Above the kernel's ephemeral range (Linux: 32768-60999) where it can:
# there a listener cannot collide with some client's outgoing connection.
pool_pick_base() {
    local b p busy tries lo=61000 hi=65400 range
    range=$(cat /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
    if [ -n "$range" ] && [ "${range##*[[:space:]]}" -ge 65000 ] 2>/dev/null; then
        lo=42000
    fi
    b=${1:-$((lo + ($$ % 100) * 40))}
    for ((tries = 0; tries < 60; tries++)); do
        [ $b -gt $hi ] && b=$lo
        busy=0
        for ((p = b; p <= b + 32; p++)); do
            if ! port_free "$p"; then
                busy=1
                break
            fi
        done
        if [ $busy = 0 ]; then
            echo "$b"
            return 0
        fi
        b=$((b + 40))
    done
    return 1
}

# Ports of proxy N: pool_proxy_port N tls|status|agent
pool_proxy_port() {
    case $2 in
        tls) echo $((POOL_BASE + 10 * $1)) ;;
        status) echo $((POOL_BASE + 10 * $1 + 1)) ;;
        agent) echo $((POOL_BASE + 10 * $1 + 2)) ;;
        *) return 1 ;;
    esac
}

pool_pki() {
    if ! "$POOL_TOP/t/certservice/make-pki.sh" "$POOL_PKI" \
         >"$POOL_DIR/pki.log" 2>&1; then
        cat "$POOL_DIR/pki.log" >&2
        echo "pool_pki: make-pki.sh failed" >&2
        return 1
    fi
    # What a name with no certificate of its own gets from a proxy.
    if [ ! -f "$POOL_PKI/fallback.crt" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -nodes -keyout "$POOL_PKI/fallback.key" \
            -out "$POOL_PKI/fallback.crt" -days 30 \
            -subj "/CN=fallback.pool.invalid" \
            -addext basicConstraints=critical,CA:FALSE \
            -addext subjectAltName=DNS:fallback.pool.invalid \
            >/dev/null 2>&1 || {
            echo "pool_pki: cannot make the fallback certificate" >&2
            return 1
        }
    fi
    chmod 755 "$POOL_PKI"
    chmod 644 "$POOL_PKI"/*.crt "$POOL_PKI"/*.key
}

# --- httpd instances -----------------------------------------------------------

_pool_common_conf() { # dir name
    local d=$1
    cat <<EOF
# $2, generated by t/lib/pool.sh
ServerRoot "$d"
ServerName $2.pool.invalid
PidFile "$d/run/httpd.pid"
DefaultRuntimeDir "$d/run"
ErrorLog "$d/logs/error_log"
EOF
    cs_conf_mpm
    load unixd_module mod_unixd.so
    load log_config_module mod_log_config.so
    load authz_core_module mod_authz_core.so
    load authz_host_module mod_authz_host.so
    cs_conf_user
    cat <<EOF
# ServerLimit: twice the processes MaxRequestWorkers needs, so that a
# graceful restart finds free scoreboard slots while the old generation's
# processes finish their connections ("scoreboard is full" otherwise: the
# new generation cannot start a child and does not answer).
# 25 threads a process (httpd's default), two processes at most
# (MaxRequestWorkers 50); MinSpareThreads 10 keeps AH10159 ("within
# MinSpareThreads of MaxRequestWorkers") for real shortages.
<IfModule mpm_event_module>
    StartServers 1
    ServerLimit 4
    ThreadsPerChild 25
    MaxRequestWorkers 50
    MinSpareThreads 10
    MaxSpareThreads 50
</IfModule>
<IfModule mpm_prefork_module>
    StartServers 2
    MaxRequestWorkers 8
</IfModule>
KeepAliveTimeout 5
Timeout 30
EOF
}

_pool_start_httpd() { # dir port-to-wait-for
    local d=$1 p
    for p in "${@:2}"; do
        if ! port_free "$p"; then
            echo "pool: port $p on 127.0.0.1 is already in use" \
                 "(choose another BASEPORT)" >&2
            return 1
        fi
    done
    rm -f "$d/run/httpd.pid"
    if ! "$POOL_HTTPD" -f "$d/httpd.conf" -k start >"$d/logs/start.log" 2>&1
    then
        cat "$d/logs/start.log" >&2
        tail -n 20 "$d/logs/error_log" >&2 2>/dev/null
        echo "pool: httpd did not start ($d/httpd.conf)" >&2
        return 1
    fi
    for p in "${@:2}"; do
        if ! wait_port "$p" 10; then
            tail -n 20 "$d/logs/error_log" >&2 2>/dev/null
            echo "pool: httpd ($d) does not listen on $p" >&2
            return 1
        fi
    done
    # The listeners are open a moment before the pid file is written; a
    # caller that stops httpd right away needs the pid.
    for ((p = 0; p < 100; p++)); do
        [ -s "$d/run/httpd.pid" ] && return 0
        sleep 0.1
    done
    echo "pool: httpd ($d) wrote no pid file" >&2
    return 1
}

_pool_mkdirs() { # dir: logs, run (and readable by the children)
    mkdir -p "$1/logs" "$1/run" || return 1
    chmod 755 "$1" "$1/logs" "$1/run"
}

_pool_relay_conf() { # N cert: proxy N's http-01 relay (POOL_ISSUER=acme)
    [ "$POOL_ISSUER" = acme ] || return 0
    acme_relay_vhost $(($(pool_proxy_port "$1" tls) + 3)) "$POOL_CS_PORT" \
        "$2" "proxy$1-acme.pool.invalid" "$POOL_PKI"
}

# The server part of the pool's TLS servers: the pool's layout, mod_ssl
_pool_tls_common() { # DIR NAME
    _pool_common_conf "$1" "$2"
    load socache_shmcb_module mod_socache_shmcb.so
    load ssl_module mod_ssl.so
    echo "SSLSessionCache \"shmcb:$1/run/ssl_scache(512000)\""
}
# write_cs_conf's and write_px_conf's common= (DIR TIMEOUT)
_pool_cs_common() { _pool_tls_common "$1" certservice; }
_pool_px_common() { _pool_tls_common "$1" "${1##*/}"; } # proxyN

pool_start_certservice() {
    local d=$POOL_DIR/cs
    _pool_mkdirs "$d" || return 1
    mkdir -p "$d/db"
    # The children write the database.
    [ -n "$POOL_USER" ] && chown "$POOL_USER:$POOL_GROUP" "$d/db"
    local acme=
    if [ "$POOL_ISSUER" = acme ]; then
        acme=https://127.0.0.1:$((POOL_BASE + 4))/dir
    fi
    CS_MODULE=$POOL_TOP/mod_certservice/.libs/mod_certservice.so \
    write_cs_conf "$d" "$POOL_CS_PORT" pki="$POOL_PKI" common=_pool_cs_common \
        db="$d/db/certservice.db" acme="$acme" vhost="$(
            [ -z "$acme" ] || echo "CertServiceACMEContact mailto:demo@example.org"
            echo "CertServiceMaxUnavailable 1"
            [ -z "${POOL_CS_EXTRA:-}" ] || echo "$POOL_CS_EXTRA")" || return 1
    _pool_start_httpd "$d" "$POOL_CS_PORT" || return 1
    # The first request makes the schema.
    if [ "$(pool_cs_curl admin "/v1/domains?limit=1" -o /dev/null \
            -w '%{http_code}' 2>&1)" != 200 ]; then
        echo "pool_start_certservice: CertService does not answer" >&2
        return 1
    fi
}

pool_start_backend() {
    local d=$POOL_DIR/backend
    _pool_mkdirs "$d" || return 1
    mkdir -p "$d/htdocs"
    chmod 755 "$d/htdocs"
    cat >"$d/htdocs/index.shtml" <<'HTML'
backend page for https://<!--#echo var="HTTP_HOST" --><!--#echo var="REQUEST_URI" -->
  served through:   <!--#echo var="HTTP_X_PROXY" --> (REMOTE_ADDR at the backend: <!--#echo var="REMOTE_ADDR" -->)
  X-Forwarded-For:  <!--#echo var="HTTP_X_FORWARDED_FOR" -->  (the client, from the PROXY header)
  load balancer:    <!--#echo var="HTTP_X_LOAD_BALANCER" -->  (the TCP peer the proxy saw)
  TLS at the proxy: <!--#echo var="HTTP_X_TLS" -->
HTML
    chmod 644 "$d/htdocs/index.shtml"
    {
        _pool_common_conf "$d" backend
        load mime_module mod_mime.so
        load include_module mod_include.so
        load dir_module mod_dir.so
        cat <<EOF
LogLevel warn
KeepAliveTimeout 15
# The internal web pool of three proxies: each proxy process keeps up to
# a thread's worth of kept-alive connections here.  Room for all of them,
# in every process and from the start: a process of the event MPM whose
# workers are all busy closes its kept-alive connections ("All workers are
# busy or dying, will close N keep-alive connections"), and a proxy reusing
# one at that moment answers 502.  With 2 processes of 25 threads at the
# start, h2load's 40 concurrent requests (t/demo/tls.sh) filled one, and 2
# of 2,000 requests got a 502 (AH01102); 64 threads a process, all
# processes started at once and none stopped for being idle.
<IfModule mpm_event_module>
    StartServers 4
    ServerLimit 4
    ThreadsPerChild 64
    MaxRequestWorkers 256
    MaxSpareThreads 256
</IfModule>
Listen 127.0.0.1:$POOL_BACKEND_PORT
DocumentRoot "$d/htdocs"
TypesConfig /dev/null
AddType text/plain .shtml
AddOutputFilter INCLUDES .shtml
DirectoryIndex index.shtml
FallbackResource /index.shtml
<Directory "$d/htdocs">
    Options +Includes
    Require all granted
</Directory>
LogFormat "%a host %{Host}i via %{X-Proxy}i for %{X-Forwarded-For}i \"%r\" %>s" backend
CustomLog "$d/logs/access_log" backend
EOF
    } >"$d/httpd.conf"
    _pool_start_httpd "$d" "$POOL_BACKEND_PORT"
}

_pool_client_cert() { # N: proxy, proxy2, proxy3
    if [ "$1" = 1 ]; then echo proxy; else echo "proxy$1"; fi
}

pool_start_proxy() { # N
    local n=${1:?pool_start_proxy N} d tls status agent cert
    d=$POOL_DIR/proxy$n
    tls=$(pool_proxy_port "$n" tls)
    status=$(pool_proxy_port "$n" status)
    agent=$(pool_proxy_port "$n" agent)
    cert=$(_pool_client_cert "$n")
    if [ ! -f "$POOL_PKI/$cert.crt" ]; then
        echo "pool_start_proxy: no client certificate $POOL_PKI/$cert.crt" >&2
        return 1
    fi
    _pool_mkdirs "$d" || return 1
    # Certificates from CertService; rollouts staggered by the pool's
    # restart leases, drained through HAProxy's agent-check.
    PP_MODULE=$POOL_TOP/mod_proxy_protocol/.libs/mod_proxy_protocol.so \
    MG_MODULE=$POOL_TOP/mod_macro_gen/.libs/mod_macro_gen.so \
    CSY_MODULE=$POOL_TOP/mod_certsync/.libs/mod_certsync.so \
    write_px_conf "$d" "$tls" "$status" "$POOL_CS_PORT" "$POOL_CERTSYNC_POOL" \
        common=_pool_px_common url="$POOL_CS_URL" pki="$POOL_PKI" \
        host="proxy$n" fallback=fallback.pool.invalid log="$POOL_LOGLEVEL" \
        cert="$cert" interval="$POOL_SYNC_INTERVAL" agent="127.0.0.1:$agent" \
        drain="$POOL_DRAIN_TIME" ttl="$POOL_LEASE_TTL" restart=60 \
        lb="$POOL_LB_ADDR" backend="$POOL_BACKEND_PORT" status=full \
        activation="${POOL_ACTIVATION:-vhost}" procs="${POOL_PROCS:-2}" \
        cache="${POOL_CACHE_SIZE:-10000}" \
        extra="$(_pool_relay_conf "$n" "$cert"
                 [ -z "${POOL_PX_EXTRA:-}" ] || echo "$POOL_PX_EXTRA")" \
        || return 1
    _pool_start_httpd "$d" "$status" "$tls"
}

_pool_stop_httpd() { # dir
    local d=$1 i dpid
    stop_pid "$(cat "$d/run/httpd.pid" 2>/dev/null || true)"
    rm -f "$d/run/httpd.pid"
    # Sync daemons stop within a second of their parent; one whose parent
    # had to be killed is stopped here (only ours: its command line names
    # this configuration).
    sed -n 's/.*CY00003: sync daemon started (pid \([0-9]*\)).*/\1/p' \
        "$d/logs/error_log" 2>/dev/null | while read -r dpid; do
        if [ -r "/proc/$dpid/cmdline" ] \
           && tr '\0' ' ' 2>/dev/null <"/proc/$dpid/cmdline" \
              | grep -qF "$d/httpd.conf"; then
            for ((i = 0; i < 20; i++)); do
                kill -0 "$dpid" 2>/dev/null || break
                sleep 0.1
            done
            kill -TERM "$dpid" 2>/dev/null || true
        fi
    done
    return 0
}

pool_stop_proxy() { # N
    _pool_stop_httpd "$POOL_DIR/proxy${1:?pool_stop_proxy N}"
}

# --- HAProxy -------------------------------------------------------------------

pool_start_haproxy() {
    local d=$POOL_DIR/haproxy n
    if [ -z "$POOL_HAPROXY" ]; then
        echo "pool_start_haproxy: haproxy is not installed" >&2
        return 1
    fi
    mkdir -p "$d"
    if ! port_free "$POOL_LB_PORT" || ! port_free "$POOL_LB_STATS_PORT"
    then
        echo "pool_start_haproxy: port $POOL_LB_PORT or $POOL_LB_STATS_PORT" \
             "is already in use" >&2
        return 1
    fi
    {
        cat <<EOF
# generated by t/lib/pool.sh
global
    pidfile $d/haproxy.pid
    stats socket $d/haproxy.sock level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s

# TLS passes through (TCP mode); each connection to a proxy starts with a
# PROXY v2 header naming the client.  Checks: httpchk on the proxy's
# status port (503 while it drains) and agent-check on its certsync agent
# ("drain" / "ready").
frontend tls
    bind 127.0.0.1:$POOL_LB_PORT
    default_backend proxies

backend proxies
    balance roundrobin
    option httpchk GET /certsync-health
    default-server source $POOL_LB_ADDR send-proxy-v2 inter 1s fall 2 rise 1 agent-check agent-addr 127.0.0.1 agent-inter 500ms
EOF
        for n in 1 2 3; do
            echo "    server proxy$n 127.0.0.1:$(pool_proxy_port $n tls) check port $(pool_proxy_port $n status) agent-port $(pool_proxy_port $n agent)"
        done
        if [ "$POOL_ISSUER" = acme ]; then
            echo
            echo "# Plain HTTP (\"port 80\"): the CA's http-01 requests."
            echo "listen acme-http"
            echo "    bind 127.0.0.1:$((POOL_BASE + 9))"
            for n in 1 2 3; do
                echo "    server proxy$n 127.0.0.1:$(($(pool_proxy_port $n tls) + 3))"
            done
        fi
        cat <<EOF

listen stats
    mode http
    bind 127.0.0.1:$POOL_LB_STATS_PORT
    stats enable
    stats uri /
    stats refresh 1s
    stats show-legends
EOF
    } >"$d/haproxy.cfg"
    if ! "$POOL_HAPROXY" -c -q -f "$d/haproxy.cfg" >"$d/check.log" 2>&1; then
        cat "$d/check.log" >&2
        return 1
    fi
    rm -f "$d/haproxy.pid"
    if ! "$POOL_HAPROXY" -D -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1; then
        cat "$d/haproxy.log" >&2
        return 1
    fi
    wait_port "$POOL_LB_PORT" 10 || {
        echo "pool_start_haproxy: HAProxy does not listen" >&2
        return 1
    }
    # Until every server has had its first check (status no longer
    # "Initializing"), so that what pool_lb_state says is HAProxy's view.
    for ((n = 0; n < 50; n++)); do
        pool_lb_cmd "show stat" 2>/dev/null | awk -F, '
            $1 == "proxies" && $2 ~ /^proxy/ { seen++; if ($37 ~ /INI/) ini++ }
            END { exit !(seen == 3 && !ini) }' && return 0
        sleep 0.1
    done
    return 0
}

# pool_lb_cmd COMMAND: one command on HAProxy's stats socket
pool_lb_cmd() {
    local sock=$POOL_DIR/haproxy/haproxy.sock
    [ -S "$sock" ] || { echo "pool_lb_cmd: no $sock" >&2; return 1; }
    if command -v socat >/dev/null 2>&1; then
        printf '%s\n' "$1" | socat -t 2 - "UNIX-CONNECT:$sock"
    elif command -v python3 >/dev/null 2>&1; then
        python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
while True:
    b = s.recv(65536)
    if not b:
        break
    sys.stdout.write(b.decode(errors="replace"))' "$sock" "$1"
    else
        perl -MIO::Socket::UNIX -e '
my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "$ARGV[0]: $!\n";
print $s "$ARGV[1]\n";
print while <$s>;' "$sock" "$1"
    fi
}

# pool_lb_state N: HAProxy's status of proxyN: UP, DOWN, DRAIN, MAINT, NOLB,
# maybe followed by details ("UP 1/2": going down, "DRAIN (agent)", ...)
pool_lb_state() {
    pool_lb_cmd "show stat" | awk -F, -v s="proxy$1" \
        '$1 == "proxies" && $2 == s { print $18; found = 1 }
         END { exit !found }'
}

# --- requests ------------------------------------------------------------------

# pool_cs_curl WHO PATH [curl args...]
pool_cs_curl() {
    pki=$POOL_PKI cs_curl "$1" "$POOL_CS_PORT" "${@:2}"
}

# pool_json_get KEY: the first "KEY": value (string or number) on stdin
pool_json_get() {
    grep -o "\"$1\" *: *\(\"[^\"]*\"\|[-0-9.]*\|null\|true\|false\)" \
        | head -n 1 | sed 's/^[^:]*: *//; s/^"//; s/"$//'
}

_pool_serial_norm() { # stdin: a serial in any case, with colons
    tr -d ': \n' | tr 'A-F' 'a-f' | sed 's/^0*//'
    echo
}

# pool_add_domain NAME [JSON body]: prints the new serial
pool_add_domain() {
    local name=$1 body=${2:-'{}'} out code
    out=$(pool_cs_curl admin "/v1/domains/$name" -X PUT \
          -H 'Content-Type: application/json' --data-binary "$body" \
          -w '\n%{http_code}') || { echo "pool_add_domain: $out" >&2; return 1; }
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    case $code in
        200|201) pool_json_get serial <<<"$out" | _pool_serial_norm ;;
        202)    # queued for ACME: until the certificate is there
            for ((code = 0; code < 240; code++)); do
                pool_cs_serial "$name" && return 0
                sleep 0.5
            done
            echo "pool_add_domain $name: no certificate after 120 s:" \
                 "$(pool_cs_curl admin "/v1/domains/$name")" >&2
            return 1 ;;
        *) echo "pool_add_domain $name: HTTP $code: $out" >&2; return 1 ;;
    esac
}

# pool_cs_serial NAME: CertService's current serial of NAME
pool_cs_serial() {
    local s
    s=$(pool_cs_curl admin "/v1/domains/$1" | pool_json_get serial)
    [ -n "$s" ] && [ "$s" != null ] || return 1
    _pool_serial_norm <<<"$s"
}

# pool_sni NAME: the name to ask for: "*.x" -> "probe.x" (like certsync)
pool_sni() {
    case $1 in
        \*.*) echo "probe.${1#\*.}" ;;
        *) echo "$1" ;;
    esac
}

# pool_served_serial N NAME: the serial proxy N presents for NAME
pool_served_serial() {
    local port sni s
    port=$(pool_proxy_port "$1" tls)
    sni=$(pool_sni "$2")
    s=$(openssl s_client -connect "127.0.0.1:$port" -servername "$sni" \
            </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null)
    s=${s#serial=}
    [ -n "$s" ] || return 1
    _pool_serial_norm <<<"$s"
}

# pool_lb_request HOST [curl args...]: GET https://HOST/ through HAProxy
pool_lb_request() {
    local host
    host=$(pool_sni "$1")
    shift
    curl -sS --noproxy '*' --max-time 10 --cacert "$POOL_TRUST_CA" \
        --resolve "$host:$POOL_LB_PORT:127.0.0.1" "$@" \
        "https://$host:$POOL_LB_PORT/"
}

# pool_proxy_status N [QUERY]: /certsync-status of proxy N
pool_proxy_status() {
    curl -sS --noproxy '*' --max-time 5 \
        "http://127.0.0.1:$(pool_proxy_port "$1" status)/certsync-status${2:+?$2}"
}

# pool_proxy_state N: its sync state (idle, draining, restarting, ...)
pool_proxy_state() {
    pool_proxy_status "$1" 2>/dev/null | pool_json_get state
}

# pool_log_tail [LINES]: the end of every error log
pool_log_tail() {
    local f
    for f in "$POOL_DIR"/*/logs/error_log "$POOL_DIR"/haproxy/haproxy.log; do
        [ -s "$f" ] || continue
        echo "--- $f"
        tail -n "${1:-20}" "$f"
    done
}

# --- stopping ------------------------------------------------------------------

pool_stop_all() {
    local n d
    [ -n "${POOL_DIR:-}" ] || return 0
    # HAProxy: 5 s to stop, then it is left alone (SIGCONT: a no-op)
    stop_pid "$(cat "$POOL_DIR/haproxy/haproxy.pid" 2>/dev/null || true)" 50 CONT
    rm -f "$POOL_DIR/haproxy/haproxy.pid"
    for d in proxy1 proxy2 proxy3 backend cs; do
        if [ -d "$POOL_DIR/$d" ]; then
            _pool_stop_httpd "$POOL_DIR/$d"
        fi
    done
    for n in pebble challtestsrv; do
        stop_pids "$(cat "$POOL_DIR/acme/$n.pid" 2>/dev/null || true)"
        rm -f "$POOL_DIR/acme/$n.pid"
    done
    return 0
}
