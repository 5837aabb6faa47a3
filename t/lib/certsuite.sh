# shellcheck shell=bash
# t/lib/certsuite.sh: the shell helpers shared by the test, benchmark and
# demo scripts (t/*/e2e.sh, t/certservice/mariadb_test.sh, bench/*.sh, and,
# through t/lib/pool.sh, build/demo.sh).  The base of the tree's one shell
# library: t/lib/pool.sh (the demo pool) builds on it, t/lib/rollout.sh
# (load, sampler, for the rollout test and benchmark) on pool.sh, and
# t/lib/twocs.sh (two CertService instances on MariaDB against pebble,
# for the budgets' test and benchmark).
#
# Source it from bash:   . "$top/t/lib/certsuite.sh"
#
# Sourcing only defines functions: it sets no variable, runs no command and
# installs no trap (cs_tmpdir does, when called).  The functions read and
# set the globals named in their comments.  A script does not redefine
# them.
#
#   Test output   tap_init, ok, notok, diag, section, okif, is, bail, die
#   Finding       find_prog, cs_find_httpd, cs_find_moddir, cs_need, cs_run_user,
#                 cs_build_module, cs_modules
#   Cleanup       cs_tmpdir, cs_layout, cs_cleanup (CERTSUITE_KEEP),
#                 stop_pid, stop_pids
#   Ports         port_free, pick_port, wait_port
#   httpd config  load, cs_conf_mpm, cs_conf_modules, cs_conf_user,
#                 common_conf, write_cs_conf (CertService), certsync_conf,
#                 write_px_conf (certsync proxy: the tests' and the pool's),
#                 acme_relay_vhost
#   httpd run     ours, start_httpd, start_httpd_retry, stop_httpd
#   PKI           fallback_cert
#   CertService   cs_curl, cs_req, jqb
#   ACME CA       start_challtestsrv, pebble_conf

# --- Test output -------------------------------------------------------------

# ok DESC...: "ok N - DESC"; counts in n and npass
ok() {
    n=$((n + 1))
    npass=$((npass + 1))
    echo "ok $n - $*"
}
# notok DESC...: "not ok N - DESC"; counts in n and nfail
notok() {
    n=$((n + 1))
    nfail=$((nfail + 1))
    echo "not ok $n - $*"
}
# diag TEXT...: "# " before every line
diag() {
    local line
    while IFS= read -r line; do
        echo "# $line"
    done <<<"$*"
}
# tap_init: the start of a test's output: n=0 npass=0 nfail=0, and T0,
# the script's $SECONDS now (section, elapsed times)
tap_init() {
    n=0
    npass=0
    nfail=0
    T0=$SECONDS
}
# section TITLE: a diagnostic line with the seconds since $T0
section() {
    echo "# --- $* ($((SECONDS - T0)) s)"
}
# okif $? DESC...: ok if the status is 0.  (The status is passed, not
# read inside: a command substitution in DESC would overwrite $?.)  Returns
# that status (okif $? DESC || diag ...).
okif() {
    local rc=$1
    shift
    if [ "$rc" = 0 ]; then ok "$*"; else notok "$*"; fi
    return "$rc"
}
# is GOT WANT DESC...: ok if equal, else both shown; status 1 if not
is() {
    if [ "$1" = "$2" ]; then
        ok "${*:3}"
    else
        notok "${*:3}"
        diag "got:  '$1'"
        diag "want: '$2'"
        return 1
    fi
}
# bail WHY...: stop the test here, as a failure, with the summary line
bail() {
    echo "Bail out! $*"
    nfail=$((${nfail:-0} + 1))
    echo "${npass:-0} passed, $nfail failed"
    exit 1
}

# die WHY...: "SCRIPT: WHY" on stderr, exit 1 (the benchmarks' bail)
die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

# --- Finding programs, httpd and its modules ---------------------------------

# find_prog NAME...: the path of the first NAME found in PATH or in the
# usual sbin/bin directories (and /usr/libexec: mariadbd on some systems);
# status 1 if none
find_prog() {
    local name d
    for name in "$@"; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
        for d in /usr/sbin /usr/local/sbin /usr/bin /usr/local/bin \
                 /usr/libexec; do
            if [ -x "$d/$name" ]; then
                echo "$d/$name"
                return 0
            fi
        done
    done
    return 1
}

# cs_find_httpd: sets APXS (unless set: apxs/apxs2, or empty) and HTTPD
# (unless set: apxs's SBINDIR/TARGET, else apache2/httpd); status 1 if
# HTTPD is not an executable
cs_find_httpd() {
    local sbindir target
    APXS=${APXS:-$(find_prog apxs apxs2 || true)}
    if [ -z "${HTTPD:-}" ] && [ -n "$APXS" ]; then
        sbindir=$("$APXS" -q SBINDIR 2>/dev/null || true)
        target=$("$APXS" -q TARGET 2>/dev/null || true)
        if [ -n "$sbindir" ] && [ -n "$target" ] \
           && [ -x "$sbindir/$target" ]; then
            HTTPD=$sbindir/$target
        fi
    fi
    HTTPD=${HTTPD:-$(find_prog apache2 httpd || true)}
    [ -n "$HTTPD" ] && [ -x "$HTTPD" ]
}

# cs_find_moddir: sets moddir to httpd's modules directory (the first with
# mod_ssl.so: apxs's LIBEXECDIR, then the usual places); status 1 (moddir
# empty) if none.  Reads APXS (may be empty).
cs_find_moddir() {
    local d
    moddir=
    for d in ${APXS:+"$("$APXS" -q LIBEXECDIR 2>/dev/null)"} \
             /usr/lib/apache2/modules /usr/lib64/httpd/modules \
             /usr/lib/httpd/modules /usr/local/apache2/modules; do
        if [ -n "$d" ] && [ -f "$d/mod_ssl.so" ]; then
            moddir=$d
            return 0
        fi
    done
    return 1
}

# cs_need PROG... [-- MODULE...]: every PROG in PATH; httpd and its
# modules directory found (cs_find_httpd, cs_find_moddir; sets compiled,
# the output of "$HTTPD" -l); every httpd MODULE compiled in or
# mod_MODULE.so in moddir.  Else status 1 and need_why says what is missing.
cs_need() {
    local p m
    need_why=
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        if ! command -v "$1" >/dev/null 2>&1; then
            need_why="$1 is needed"
            return 1
        fi
        shift
    done
    [ $# = 0 ] || shift
    if ! cs_find_httpd; then
        need_why="no httpd binary (set HTTPD)"
        return 1
    fi
    if ! cs_find_moddir; then
        need_why="no httpd modules directory with mod_ssl.so"
        return 1
    fi
    compiled=$("$HTTPD" -l 2>/dev/null)
    for m in "$@"; do
        if ! grep -q "^ *mod_$m.c\$" <<<"$compiled" \
           && [ ! -f "$moddir/mod_$m.so" ]; then
            need_why="no mod_$m.so in $moddir"
            return 1
        fi
    done
}

# cs_run_user: sets run_user and run_group, the user httpd's children run
# as: nobody and nogroup (or nobody) when running as root, else both empty
cs_run_user() {
    run_user=
    run_group=
    if [ "$(id -u)" = 0 ]; then
        run_user=nobody
        if getent group nogroup >/dev/null 2>&1; then
            run_group=nogroup
        else
            run_group=nobody
        fi
    fi
}

# cs_build_module NAME: the build tree's mod_NAME.so (next to this library,
# else below the current directory); status 1 if not built
cs_build_module() {
    local f top
    top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    for f in "$top/mod_$1/.libs/mod_$1.so" "$PWD/mod_$1/.libs/mod_$1.so"; do
        if [ -f "$f" ]; then
            echo "$f"
            return 0
        fi
    done
    return 1
}

# cs_modules: sets CS_MODULE, CSY_MODULE and MG_MODULE to the build tree's
# mod_certservice, mod_certsync and mod_macro_gen (cs_build_module); status
# 1, naming the first one missing on stderr, if one is not built
cs_modules() {
    CS_MODULE=$(cs_build_module certservice) \
        || { echo "mod_certservice.so not built (make)" >&2; return 1; }
    CSY_MODULE=$(cs_build_module certsync) \
        || { echo "mod_certsync.so not built (make)" >&2; return 1; }
    MG_MODULE=$(cs_build_module macro_gen) \
        || { echo "mod_macro_gen.so not built (make)" >&2; return 1; }
}

# --- Temporary directory and cleanup -----------------------------------------
# One knob for every script: CERTSUITE_KEEP=1 keeps the temporary directory
# (logs, stores, databases); CERTSUITE_KEEP=failed keeps it only when the
# script fails (a check failed, or a non-zero exit).  Otherwise every way
# out (success, failure, bail, Ctrl-C, SIGTERM, SIGHUP) removes it.

# cs_tmpdir NAME: sets tmp to a new directory ${TMPDIR:-/tmp}/NAME.XXXXXX
# and arms cs_cleanup: on EXIT, and INT/TERM/HUP exit 130/143/129 (which
# runs it).  A script may set its own INT/TERM traps afterwards (they must
# exit).  Status 1 if mktemp fails.
cs_tmpdir() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || return 1
    trap cs_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}
# cs_cleanup: once: the script's on_cleanup function if it defines one
# (stops what it started), then $tmp removed unless CERTSUITE_KEEP says
# otherwise ("# kept DIR").  Runs with errexit off and the signals ignored,
# so that nothing cuts it short.
cs_cleanup() {
    local rc=$?
    set +e
    trap - EXIT
    trap '' INT TERM HUP
    [ -z "${_cs_cleaned:-}" ] || return 0
    _cs_cleaned=1
    if declare -F on_cleanup >/dev/null; then
        on_cleanup
    fi
    [ -n "${tmp:-}" ] && [ -d "$tmp" ] || return 0
    case ${CERTSUITE_KEEP:-} in
        '') rm -rf "$tmp" ;;
        failed)
            if [ "$rc" != 0 ] || [ "${nfail:-0}" != 0 ]; then
                echo "# kept $tmp"
            else
                rm -rf "$tmp"
            fi ;;
        *) echo "# kept $tmp" ;;
    esac
    return 0
}
# cs_layout [DIR...]: the usual layout in $tmp: pki=$tmp/pki,
# csdir=$tmp/cs (logs/, db/), pxdir=$tmp/px (logs/), store=$pxdir/store,
# $tmp/work, and $tmp/DIR for each DIR; cs_run_user, and as root the tree
# readable by httpd's children, the database directory theirs
cs_layout() {
    local d
    pki=$tmp/pki
    csdir=$tmp/cs
    pxdir=$tmp/px
    store=$pxdir/store
    mkdir -p "$csdir/logs" "$csdir/db" "$pxdir/logs" "$tmp/work" || return 1
    for d in "$@"; do
        mkdir -p "$tmp/$d" || return 1
    done
    cs_run_user
    if [ -n "$run_user" ]; then
        chmod 755 "$tmp" "$csdir" "$pxdir" "$tmp/work"
        chown "$run_user:$run_group" "$csdir/db"
    fi
}
# stop_pid PID [TRIES [SIGNAL]]: SIGTERM to PID (if set) and, if it still
# runs after TRIES [100] times 0.1 s, SIGNAL [KILL]; never fails
stop_pid() {
    local pid=$1 tries=${2:-100} i
    if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
        for ((i = 0; i < tries; i++)); do
            kill -0 "$pid" 2>/dev/null || return 0
            sleep 0.1
        done
        kill "-${3:-KILL}" "$pid" 2>/dev/null || true
    fi
    return 0
}
# stop_pids PID...: SIGTERM to each PID that is set (the empty and the
# dead are skipped without error), SIGKILL to any still there after 10 s;
# returns once all are gone (at most 12 s).  It polls (bash reaps its
# children as they end) rather than calling the wait builtin, which cannot
# be bounded: the demo's cleanup once hung after Ctrl-C, before stopping
# anything, at its only wait (check-demo, the pool left running).
stop_pids() {
    local pid i left
    for pid in "$@"; do
        if [ -n "$pid" ]; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for ((i = 0; i < 120; i++)); do
        left=()
        for pid in "$@"; do
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
                left+=("$pid")
            fi
        done
        [ "${#left[@]}" != 0 ] || return 0
        [ "$i" != 100 ] || kill -KILL "${left[@]}" 2>/dev/null || true
        sleep 0.1
    done
    return 0
}

# --- Ports -------------------------------------------------------------------

# port_free PORT: status 0 if nothing accepts on 127.0.0.1:PORT
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
# pick_port: a free port outside the ephemeral range (client sockets)
pick_port() {
    local lo=32768 hi=60999 p
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
    while :; do
        if [ "$lo" -gt 12000 ]; then
            p=$((10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000)))
        elif [ "$hi" -lt 64000 ]; then
            p=$((hi + 1 + (RANDOM * 32768 + RANDOM) % (65535 - hi)))
        else
            p=$((20000 + (RANDOM * 32768 + RANDOM) % 10000))
        fi
        if port_free "$p"; then
            echo "$p"
            return
        fi
    done
}

# wait_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT
# [10 s]; status 1 if nothing does
wait_port() {
    local i n=$((${2:-10} * 10))
    for ((i = 0; i < n; i++)); do
        port_free "$1" || return 0
        sleep 0.1
    done
    return 1
}

# --- httpd configuration -----------------------------------------------------
# These print configuration lines.  They read compiled (the output of
# "$HTTPD" -l), moddir, and run_user/run_group (see cs_run_user).

# load MODULE_NAME FILE.so [SOURCE.c]: a LoadModule line unless the
# module is compiled in (SOURCE.c, by default FILE's name with .c) or not
# in moddir
load() {
    local src=${3:-${2%.so}.c}
    if ! grep -q "^ *$src\$" <<<"$compiled" && [ -f "$moddir/$2" ]; then
        echo "LoadModule $1 $moddir/$2"
    fi
}
# cs_conf_mpm: an MPM (event, else worker, else prefork) unless one is
# compiled in
cs_conf_mpm() {
    local m
    if ! grep -qE '^ *(event|worker|prefork)\.c$' <<<"$compiled"; then
        for m in event worker prefork; do
            if [ -f "$moddir/mod_mpm_$m.so" ]; then
                echo "LoadModule mpm_${m}_module $moddir/mod_mpm_$m.so"
                break
            fi
        done
    fi
}
# cs_conf_modules: an MPM (cs_conf_mpm), mod_unixd, mod_authz_core,
# mod_socache_shmcb and mod_ssl
cs_conf_modules() {
    cs_conf_mpm
    load unixd_module mod_unixd.so mod_unixd.c
    load authz_core_module mod_authz_core.so mod_authz_core.c
    load socache_shmcb_module mod_socache_shmcb.so mod_socache_shmcb.c
    load ssl_module mod_ssl.so mod_ssl.c
}
# cs_conf_user: User and Group lines when run_user is set
cs_conf_user() {
    if [ -n "$run_user" ]; then
        echo "User $run_user"
        echo "Group $run_group"
    fi
}
# common_conf DIR [TIMEOUT]: the start of a small httpd configuration
# with ServerRoot DIR (pid file, logs, SSL session cache in DIR), the
# modules of cs_conf_modules, a small event MPM and Timeout TIMEOUT [30]
common_conf() {
    echo "ServerRoot $1"
    echo "ServerName localhost"
    echo "PidFile $1/httpd.pid"
    echo "DefaultRuntimeDir $1/logs"
    echo "ErrorLog $1/logs/error_log"
    cs_conf_modules
    cs_conf_user
    cat <<EOF
<IfModule mpm_event_module>
    StartServers 1
    ServerLimit 2
    ThreadsPerChild 16
    MaxRequestWorkers 32
    MinSpareThreads 1
    MaxSpareThreads 32
</IfModule>
<IfModule socache_shmcb_module>
    SSLSessionCache "shmcb:$1/logs/ssl_scache(512000)"
</IfModule>
KeepAliveTimeout 5
Timeout ${2:-30}
EOF
}
# _cs_opts NAME=VALUE...: sets the caller's local o_NAME to VALUE for each
# argument; status 1 (and a message) for a NAME the caller has no o_NAME of
_cs_opts() {
    local kv k
    for kv in "$@"; do
        k=${kv%%=*}
        if [ "$k" = "$kv" ] || ! [[ -v o_$k ]]; then
            echo "${FUNCNAME[1]}: unknown option '$kv'" >&2
            return 1
        fi
        printf -v "o_$k" '%s' "${kv#*=}"
    done
}

# write_cs_conf DIR PORT [NAME=VALUE...]: DIR/httpd.conf for a CertService
# on 127.0.0.1:PORT: mod_ssl mutual TLS with the test PKI
# (t/certservice/make-pki.sh: TLS certificate, clients' CA, wrap1,
# roles.conf), mod_dbd, mod_certservice $CS_MODULE.  Options:
#   pki=DIR        the test PKI [$pki]
#   log=LEVELS     LogLevel [warn certservice:notice]
#   timeout=S      Timeout [30]
#   dbd=DRIVER     DBDriver [sqlite3]
#   db=PARAMS      DBDParams [DIR/db/cs.db]
#   acme=URL       issue through the ACME CA at this directory URL (CA
#                  certificate PKI/acme-tls-ca.crt, account seal PKI/seal.*:
#                  t/certservice/make-acme-pki.sh); else the local CA PKI/ca.*
#   common=FUNC    writes the server part: FUNC DIR TIMEOUT [common_conf]
#   server=LINES   more server-level directives (they may override common's)
#   vhost=LINES    more directives in the virtual host
write_cs_conf() {
    local dir=$1 port=$2 o_pki=${pki:-} o_log="warn certservice:notice" \
        o_timeout=30 o_dbd=sqlite3 o_db=$1/db/cs.db o_acme='' \
        o_common=common_conf o_server='' o_vhost='' issuer
    shift 2
    _cs_opts "$@" || return 1
    if [ -n "$o_acme" ]; then
        issuer="CertServiceACMEDirectory $o_acme
    CertServiceACMECA \"$o_pki/acme-tls-ca.crt\"
    CertServiceACMEAccountSeal \"$o_pki/seal.crt\" \"$o_pki/seal.key\""
    else
        issuer="CertServiceLocalCA \"$o_pki/ca.crt\" \"$o_pki/ca.key\""
    fi
    {
        "$o_common" "$dir" "$o_timeout"
        load dbd_module mod_dbd.so mod_dbd.c
        echo "LoadModule certservice_module \"$CS_MODULE\""
        [ -z "$o_server" ] || echo "$o_server"
        cat <<EOF
Listen 127.0.0.1:$port
LogLevel $o_log
DBDriver $o_dbd
DBDParams "$o_db"
<VirtualHost 127.0.0.1:$port>
    ServerName localhost
    SSLEngine on
    SSLCertificateFile    "$o_pki/tls.crt"
    SSLCertificateKeyFile "$o_pki/tls.key"
    SSLCACertificateFile  "$o_pki/clients-ca.crt"
    SSLVerifyClient require
    SSLVerifyDepth 2
    # Else httpd answers TRACE itself, a 200 echo, before any role check.
    TraceEnable off
    CertServiceWrapCertificate "$o_pki/wrap1.crt"
    $issuer
    Include "$o_pki/roles.conf"
EOF
        [ -z "$o_vhost" ] || sed 's/^/    /' <<<"$o_vhost"
        cat <<EOF
    <Location />
        SetHandler certservice
    </Location>
</VirtualHost>
EOF
    } >"$dir/httpd.conf"
}

# certsync_conf NAME=VALUE...: mod_certsync's directives for a proxy that
# syncs from the CertService at url= with the client certificate cert=
# (PKI/CERT.crt and .key) [proxy]; the clients' CA and wrap1 of pki=
# [$pki]; store= (CertSyncStoreDir); interval= ["1 0"]; pool=, host=;
# probe= (host:port); drain= [0]; restart= (CertSyncRestartTimeout) [30];
# and, when set, agent= (host:port) and ttl= (CertSyncLeaseTTL)
certsync_conf() {
    local o_url='' o_cert=proxy o_pki=${pki:-} o_store='' o_interval="1 0" \
        o_pool='' o_host='' o_probe='' o_drain=0 o_restart=30 o_agent='' o_ttl=''
    _cs_opts "$@" || return 1
    cat <<EOF
CertSyncServiceURL        $o_url
CertSyncServiceCA         "$o_pki/clients-ca.crt"
CertSyncClientCertificate "$o_pki/$o_cert.crt" "$o_pki/$o_cert.key"
CertSyncWrappingKey       "$o_pki/wrap1.crt" "$o_pki/wrap1.key"
CertSyncStoreDir          "$o_store"
CertSyncInterval          $o_interval
CertSyncPool              $o_pool
CertSyncHost              $o_host
CertSyncProbe             $o_probe
CertSyncDrainTime         $o_drain
CertSyncRestartTimeout    $o_restart
EOF
    [ -z "$o_agent" ] || echo "CertSyncAgent             $o_agent"
    [ -z "$o_ttl" ] || echo "CertSyncLeaseTTL          $o_ttl"
}

# write_px_conf DIR TLSPORT STATUSPORT CSPORT POOL [NAME=VALUE...]: the one
# writer of a certsync proxy's DIR/httpd.conf (the tests' proxies and the
# pool's, t/lib/pool.sh).  The proxy syncs from the CertService on
# 127.0.0.1:CSPORT (mod_certsync $CSY_MODULE: certsync_conf with pool POOL,
# store DIR/store, probe of its own TLS port) and serves TLS on TLSPORT
# (mod_macro, mod_macro_gen $MG_MODULE): first a fallback virtual host
# (PKI/fallback.*) for names without a certificate, then one virtual host
# per domain of the store's manifest; /certsync-status on STATUSPORT.
# Options:
#   host=NAME      CertSyncHost [POOL-proxy]
#   fallback=NAME  the fallback virtual host's ServerName
#                  [fallback.POOL.invalid]
#   pki=DIR        the test PKI [$pki]
#   timeout=S      Timeout [30]
#   log=LEVELS     LogLevel [warn certsync:info]
#   common=FUNC    writes the server part: FUNC DIR TIMEOUT [common_conf]
#                  (it loads mod_ssl; with status=full mod_authz_host, with
#                  lb= or status=full mod_log_config unless compiled in)
#   url= cert= interval= drain= agent= ttl= restart=
#                  passed to certsync_conf (defaults there; url=
#                  [https://127.0.0.1:CSPORT])
#   lb=ADDR        a load balancer at ADDR sends a PROXY header on the TLS
#                  port (mod_proxy_protocol $PP_MODULE; 127.0.0.1, the
#                  probe, sends none); an access log DIR/logs/access_log
#   backend=PORT   the TLS virtual hosts proxy to http://127.0.0.1:PORT/
#                  (headers X-Proxy: NAME of host=, X-Load-Balancer,
#                  X-TLS); vhost mode's fallback host then answers 403
#   activation=M   vhost [vhost]; dynamic: one catch-all TLS virtual host,
#                  certificates per handshake, with procs= worker processes
#                  of 8 threads [2] and CertSyncCacheSize cache= [10000]
#   status=S       basic [basic]: /certsync-status only; full: also
#                  /certsync-health and /server-status (mod_status), for
#                  127.0.0.0/8 only, logged to DIR/logs/status_log
#   extra=LINES    more configuration, at the end
write_px_conf() {
    local dir=$1 tls=$2 st=$3 cs=$4 name=$5 o_host=$5-proxy \
        o_fallback=fallback.$5.invalid o_pki=${pki:-} o_timeout=30 \
        o_log="warn certsync:info" o_common=common_conf o_lb='' o_backend='' \
        o_activation=vhost o_procs=2 o_cache=10000 o_status=basic o_extra='' \
        kv own=() sync=()
    shift 5
    for kv in "$@"; do
        case ${kv%%=*} in
            url | cert | interval | drain | agent | ttl | restart)
                sync+=("$kv") ;;
            *) own+=("$kv") ;;
        esac
    done
    _cs_opts "${own[@]}" || return 1
    case $o_activation/$o_status in
        vhost/basic | vhost/full | dynamic/basic | dynamic/full) ;;
        *)
            echo "write_px_conf: activation=$o_activation," \
                 "status=$o_status?" >&2
            return 1
            ;;
    esac
    {
        "$o_common" "$dir" "$o_timeout"
        if [ -n "$o_backend" ]; then
            load headers_module mod_headers.so mod_headers.c
            load proxy_module mod_proxy.so mod_proxy.c
            load proxy_http_module mod_proxy_http.so mod_proxy_http.c
        fi
        if [ "$o_status" = full ]; then
            load status_module mod_status.so mod_status.c
        fi
        load macro_module mod_macro.so mod_macro.c
        # shellcheck disable=SC2153 # PP_MODULE: the caller's
        [ -z "$o_lb" ] || echo "LoadModule proxy_protocol_module \"$PP_MODULE\""
        echo "LoadModule macro_gen_module \"$MG_MODULE\""
        echo "LoadModule certsync_module \"$CSY_MODULE\""
        echo "LogLevel $o_log"
        _px_tls_conf
        if [ -n "$o_lb" ]; then
            cat <<EOF
LogFormat "%a (load balancer %{PROXY_PROTOCOL_PEER_ADDR}e) SNI %{SSL_TLS_SNI}x \"%r\" %>s" pool
CustomLog "$dir/logs/access_log" pool
EOF
        fi
        cat <<EOF

# Certificates from CertService; a new generation probes its own TLS
# listener for the new serials (and the store rolls back if it fails).
$(certsync_conf url="https://127.0.0.1:$cs" pki="$o_pki" store="$dir/store" \
      pool="$name" host="$o_host" probe="127.0.0.1:$tls" "${sync[@]}")
EOF
        if [ -n "$o_lb" ]; then
            cat <<EOF

# The TLS listener: every connection from the load balancer ($o_lb)
# starts with a PROXY header; 127.0.0.1 (the certsync probe, direct
# checks) connects without one.
ProxyProtocol On
ProxyProtocolTrustedProxies $o_lb
ProxyProtocolExceptions 127.0.0.1
EOF
        else
            echo
        fi
        echo "Listen 127.0.0.1:$tls https"
        if [ "$o_activation" = dynamic ]; then
            _px_dynamic_vhost
        else
            _px_macro_vhosts
        fi
        echo
        _px_status_vhost
        [ -z "$o_extra" ] || printf '\n%s\n' "$o_extra"
    } >"$dir/httpd.conf"
}
# The parts of write_px_conf's configuration; they read its variables.
# _px_tls_conf: HTTP/2 and the TLS settings of every TLS virtual host, as
# docs/tls.md gives them (Mozilla's "intermediate" for Apache 2.4 and
# OpenSSL 3.0, with the server's cipher order)
_px_tls_conf() {
    load http2_module mod_http2.so mod_http2.c
    cat <<EOF

# TLS as docs/tls.md recommends: HTTP/2 (ALPN h2) and HTTP/1.1, TLS 1.2
# and 1.3, AEAD ciphers with forward secrecy only (no CBC), the server's
# order.
<IfModule http2_module>
    Protocols h2 http/1.1
</IfModule>
SSLProtocol         -all +TLSv1.2 +TLSv1.3
SSLOpenSSLConfCmd   Curves X25519:prime256v1:secp384r1
SSLCipherSuite      ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305
SSLHonorCipherOrder on
EOF
}
# _px_to_backend INDENT: a TLS virtual host's way to backend=, with the
# headers the pool's backend page shows (nothing without backend=)
_px_to_backend() {
    [ -n "$o_backend" ] || return 0
    sed "s/^/$1/" <<EOF
ProxyPreserveHost On
# ttl=2: an idle pooled connection is not reused after 2s, well
# before the backend's KeepAliveTimeout (15s) closes it (a reuse
# racing that close answers 502).
ProxyPass / http://127.0.0.1:$o_backend/ ttl=2
RequestHeader set X-Proxy "$o_host"
RequestHeader set X-Load-Balancer "%{PROXY_PROTOCOL_PEER_ADDR}e"
RequestHeader set X-TLS "%{SSL_PROTOCOL}s, SNI %{SSL_TLS_SNI}s, certificate serial %{SSL_SERVER_M_SERIAL}s"
# HSTS (docs/tls.md): browsers use HTTPS only for this name for 2 years.
Header always set Strict-Transport-Security "max-age=63072000"
EOF
}
# vhost activation: the fallback virtual host first (what a name without
# its own gets), then one virtual host per domain of the store's manifest
_px_macro_vhosts() {
    cat <<EOF
# The first virtual host of the address: names without a certificate.
<VirtualHost 127.0.0.1:$tls>
    ServerName $o_fallback
    SSLEngine on
    SSLCertificateFile    "$o_pki/fallback.crt"
    SSLCertificateKeyFile "$o_pki/fallback.key"
EOF
    [ -z "$o_backend" ] || cat <<EOF
    <Location />
        Require all denied
    </Location>
    ErrorDocument 403 "$o_host: no certificate for this name"
EOF
    cat <<EOF
</VirtualHost>

# One virtual host per domain of the store's manifest.
<Macro TLSHost \$domain \$certdir>
    <VirtualHost 127.0.0.1:$tls>
        MacroGenerateServerName \$domain
        SSLEngine on
        SSLCertificateFile    \$certdir/fullchain.pem
        SSLCertificateKeyFile \$certdir/privkey.pem
EOF
    _px_to_backend "        "
    cat <<EOF
    </VirtualHost>
</Macro>
MacroGenerate TLSHost "$dir/store/manifest"
EOF
}
# dynamic activation: one catch-all TLS virtual host serves every domain of
# the store; its own certificate is for names the store does not have
_px_dynamic_vhost() {
    cat <<EOF
# procs= worker processes, all started at once and never stopped for
# being idle (MaxSpareThreads = MaxRequestWorkers: each keeps its cache);
# MinSpareThreads well below MaxRequestWorkers (equal, every busy thread
# was "within MinSpareThreads of MaxRequestWorkers", AH10159); ServerLimit
# leaves room for a graceful restart's new generation.
<IfModule mpm_event_module>
    StartServers $o_procs
    ServerLimit $((o_procs * 2))
    ThreadsPerChild 25
    MaxRequestWorkers $((o_procs * 25))
    MinSpareThreads 10
    MaxSpareThreads $((o_procs * 25))
</IfModule>
CertSyncActivation dynamic
CertSyncCacheSize  $o_cache
<VirtualHost 127.0.0.1:$tls>
    ServerName $o_fallback
    SSLEngine on
    SSLCertificateFile    "$o_pki/fallback.crt"
    SSLCertificateKeyFile "$o_pki/fallback.key"
    CertSyncCatchAll On
EOF
    _px_to_backend "    "
    echo "</VirtualHost>"
}
# the plain HTTP status port (status=): no PROXY header there
_px_status_vhost() {
    echo "# Plain HTTP for people and for health checks: no PROXY header here."
    echo "Listen 127.0.0.1:$st http"
    if [ "$o_status" = full ]; then
        cat <<EOF
LogFormat "%h %l %u %t \"%r\" %>s %b" common
<VirtualHost 127.0.0.1:$st>
    ServerName $o_host-status.${o_fallback#*.}
EOF
    else
        echo "<VirtualHost 127.0.0.1:$st>"
    fi
    [ -z "$o_lb" ] || echo "    ProxyProtocol Off"
    if [ "$o_status" = full ]; then
        cat <<EOF
    CustomLog "$dir/logs/status_log" common
    <Location /certsync-status>
        SetHandler certsync-status
        Require ip 127.0.0.0/8
    </Location>
    <Location /certsync-health>
        SetHandler certsync-health
        Require ip 127.0.0.0/8
    </Location>
    <Location /server-status>
        SetHandler server-status
        Require ip 127.0.0.0/8
    </Location>
</VirtualHost>
EOF
    else
        cat <<EOF
    <Location /certsync-status>
        SetHandler certsync-status
    </Location>
</VirtualHost>
EOF
    fi
}

# acme_relay_vhost PORT CSPORT CERT NAME [PKI [LOG]]: a plain HTTP virtual
# host on 127.0.0.1:PORT (Listen included) that relays the ACME CA's
# http-01 requests to CertService on localhost:CSPORT (docs/acme-relay.md)
# with the client certificate PKI/CERT.pem [$pki]; ServerName NAME; with
# LOG, a CustomLog there ("HOST REQUEST STATUS")
acme_relay_vhost() {
    local p=${5:-$pki}
    cat <<EOF
# http-01 (docs/acme-relay.md): the CA's "port 80" comes here, any host.
Listen 127.0.0.1:$1 http
<VirtualHost 127.0.0.1:$1>
    ServerName $4
    <IfModule proxy_protocol_module>
        ProxyProtocol Off
    </IfModule>
EOF
    [ -z "${6:-}" ] || echo "    CustomLog \"$6\" \"%{Host}i %r %>s\""
    cat <<EOF
    SSLProxyEngine on
    SSLProxyVerify require
    SSLProxyCACertificateFile "$p/clients-ca.crt"
    SSLProxyMachineCertificateFile "$p/$3.pem"
    ProxyPass        /.well-known/acme-challenge/ https://localhost:$2/acme-challenge/ timeout=10
    ProxyPassReverse /.well-known/acme-challenge/ https://localhost:$2/acme-challenge/
</VirtualHost>
EOF
}

# --- Running httpd -----------------------------------------------------------

# ours PID: the process runs with a configuration from our directory $tmp
# (an httpd parent or a sync daemon forked from it), not a reused pid
ours() {
    [ -n "$1" ] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" \
        | grep -qF -- "$tmp/"
}
# start_httpd DIR PORT [TRIES]: start httpd with DIR/httpd.conf (output in
# DIR/start.log) and wait until PORT answers, TRIES [100] times 0.1 s
start_httpd() {
    local dir=$1 port=$2 tries=${3:-100} i
    rm -f "$dir/httpd.pid"
    if ! "$HTTPD" -f "$dir/httpd.conf" -k start >"$dir/start.log" 2>&1; then
        return 1
    fi
    for i in $(seq 1 "$tries"); do
        if ! port_free "$port"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
# stop_httpd DIR [TRIES]: SIGTERM to the httpd of DIR/httpd.pid if it is
# ours, SIGKILL if it still runs after TRIES [100] times 0.1 s
stop_httpd() {
    local pidf=$1/httpd.pid pid
    [ -f "$pidf" ] || return 0
    pid=$(cat "$pidf" 2>/dev/null)
    ours "$pid" || return 0
    stop_pid "$pid" "${2:-100}"
}
# start_httpd_retry DIR WRITE... : start httpd on ports picked now: the
# command WRITE... picks them (pick_port), writes DIR/httpd.conf and sets
# listen_ports to the ports httpd then listens on (the first is waited
# for, start_httpd DIR PORT $start_tries [100], the others must answer
# too).  Up to 5 times with new ports when one was taken meanwhile ("in
# use"); else the end of DIR's start.log and error_log as diagnostics and
# status 1.
start_httpd_retry() {
    local dir=$1 attempt p up
    shift
    for attempt in 1 2 3 4 5; do
        listen_ports=
        "$@" || return 1
        up=
        if start_httpd "$dir" "${listen_ports%% *}" "${start_tries:-100}"; then
            up=1
            for p in $listen_ports; do
                port_free "$p" && up=
            done
        fi
        [ -z "$up" ] || return 0
        grep -qs "in use" "$dir/start.log" "$dir/logs/error_log" || break
        stop_httpd "$dir" "${start_tries:-100}"
    done
    tail -20 "$dir/start.log" "$dir/logs/error_log" 2>/dev/null \
        | sed 's/^/# /'
    return 1
}
# fallback_cert DIR NAME: DIR/fallback.{crt,key}, a self-signed P-256
# certificate for NAME: what a proxy presents for a name without a
# certificate of its own (the key readable by httpd's children)
fallback_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1/fallback.key" -out "$1/fallback.crt" -days 30 \
        -subj "/CN=$2" -addext basicConstraints=critical,CA:FALSE \
        >/dev/null 2>&1 \
    && chmod 644 "$1/fallback.key"
}
# --- Talking to CertService --------------------------------------------------

# cs_curl WHO PORT PATH [curl args...]: curl to the CertService on
# 127.0.0.1:PORT with the client certificate $pki/WHO.{crt,key}
cs_curl() {
    local who=$1 port=$2 path=$3
    shift 3
    curl -sS --noproxy '*' --max-time 30 --cacert "$pki/clients-ca.crt" \
        --cert "$pki/$who.crt" --key "$pki/$who.key" "$@" \
        --url "https://127.0.0.1:$port$path"
}
# cs_req WHO PORT METHOD PATH [BODY]: cs_curl with a JSON BODY; sets code
# (000: no answer) and body (curl's error then), the response headers in
# $last_rf.hdr.  Safe in background jobs: the files ($tmp/req.PID.*) are
# per process.
cs_req() {
    local who=$1 port=$2 method=$3 path=$4 data=${5-} rf=$tmp/req.$BASHPID
    local args=(-X "$method" -o "$rf.body" -D "$rf.hdr" -w '%{http_code}')
    last_rf=$rf
    if [ -n "$data" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$data")
    fi
    rm -f "$rf.body" "$rf.hdr"
    code=$(cs_curl "$who" "$port" "$path" "${args[@]}" 2>"$rf.err") \
        || code=000
    body=$(cat "$rf.body" 2>/dev/null)
    [ "$code" != 000 ] || body="curl: $(cat "$rf.err")"
}
# jqb JQ-ARGS...: jq -r on the last answer's body
jqb() { jq -r "$@" <<<"$body"; }

# --- pebble, the test ACME CA ------------------------------------------------

# start_challtestsrv DNSPORT MGMTPORT LOG: pebble-challtestsrv in the
# background ($! is its pid), the DNS server on 127.0.0.1:DNSPORT that
# answers 127.0.0.1 for every name (no IPv6), its management API on
# MGMTPORT, no challenge servers of its own; output to LOG
start_challtestsrv() {
    pebble-challtestsrv -dns01 "127.0.0.1:$1" -management "127.0.0.1:$2" \
        -http01 "" -https01 "" -tlsalpn01 "" \
        -defaultIPv4 127.0.0.1 -defaultIPv6 "" >"$3" 2>&1 &
}
# pebble_conf PORT MGMTPORT HTTPPORT TLSPORT PKI [VALIDITY]: pebble's JSON
# configuration: ACME on 127.0.0.1:PORT, management on MGMTPORT, http-01
# asked on HTTPPORT, tls-alpn-01 on TLSPORT, its TLS certificate
# PKI/acme-tls.{crt,key} (t/certservice/make-acme-pki.sh), no OCSP, no
# external account binding; certificates valid VALIDITY seconds (pebble's
# default when not given)
pebble_conf() {
    cat <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$1",
    "managementListenAddress": "127.0.0.1:$2",
    "certificate": "$5/acme-tls.crt",
    "privateKey": "$5/acme-tls.key",
    "httpPort": $3,
    "tlsPort": $4,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false${6:+,
    \"certificateValidityPeriod\": $6}
  }
}
EOF
}
