# t/lib/certsuite.sh: shell helpers shared by the CertService / certsync
# test and benchmark scripts (t/certsync/e2e.sh, t/certservice/mariadb_test.sh,
# bench/certservice.sh, bench/certsync.sh).
#
# Source it from bash:   . "$top/t/lib/certsuite.sh"
#
# Sourcing only defines functions: it sets no variable, runs no command and
# installs no trap.  The functions read and set the globals named in their
# comments; a script may define a function of the same name after sourcing
# to replace one (t/certservice/mariadb_test.sh does so for find_prog).
#
#   Test output   ok, notok, diag, section, okif, is, bail
#                                      (the script sets n=0 npass=0 nfail=0)
#   Finding       find_prog, cs_find_httpd, cs_find_moddir, cs_run_user
#   Ports         port_free, pick_port
#   httpd config  load, cs_conf_modules, cs_conf_user, common_conf,
#                 write_cs_conf
#   httpd run     ours, start_httpd, stop_httpd

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
# section TITLE: a diagnostic line with the seconds since $T0
section() {
    echo "# --- $* ($(($(date +%s) - T0)) s)"
}
# okif $? DESC...: ok if the status is 0.  (The status is passed, not
# read inside: a command substitution in DESC would overwrite $?.)
okif() {
    local rc=$1
    shift
    if [ "$rc" = 0 ]; then ok "$*"; else notok "$*"; fi
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
    nfail=$((nfail + 1))
    echo "$npass passed, $nfail failed"
    exit 1
}

# --- Finding programs, httpd and its modules ---------------------------------

# find_prog NAME...: the path of the first NAME found in PATH or in the
# usual sbin/bin directories; status 1 if none
find_prog() {
    local name d
    for name in "$@"; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
        for d in /usr/sbin /usr/local/sbin /usr/bin /usr/local/bin; do
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

# --- httpd configuration -----------------------------------------------------
# These print configuration lines.  They read compiled (the output of
# "$HTTPD" -l), moddir, and run_user/run_group (see cs_run_user).

# load MODULE_NAME FILE.so SOURCE.c: a LoadModule line unless the module
# is compiled in or not in moddir
load() {
    if ! grep -q "^ *$3\$" <<<"$compiled" && [ -f "$moddir/$2" ]; then
        echo "LoadModule $1 $moddir/$2"
    fi
}
# cs_conf_modules: an MPM (unless one is compiled in), mod_unixd,
# mod_authz_core, mod_socache_shmcb and mod_ssl
cs_conf_modules() {
    local m
    if ! grep -qE '^ *(event|worker|prefork)\.c$' <<<"$compiled"; then
        for m in event worker prefork; do
            if [ -f "$moddir/mod_mpm_$m.so" ]; then
                echo "LoadModule mpm_${m}_module $moddir/mod_mpm_$m.so"
                break
            fi
        done
    fi
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
# write_cs_conf DIR PORT LOGLEVEL [TIMEOUT]: DIR/httpd.conf for a
# CertService on 127.0.0.1:PORT: common_conf DIR TIMEOUT, SQLite database
# DIR/db/cs.db, mutual TLS with the test PKI in $pki
# (t/certservice/make-pki.sh), its local CA; module $CS_MODULE
write_cs_conf() {
    {
        common_conf "$1" "${4:-30}"
        load dbd_module mod_dbd.so mod_dbd.c
        echo "LoadModule certservice_module $CS_MODULE"
        cat <<EOF
Listen 127.0.0.1:$2
LogLevel $3
DBDriver sqlite3
DBDParams "$1/db/cs.db"
<VirtualHost 127.0.0.1:$2>
    SSLEngine on
    SSLCertificateFile    $pki/tls.crt
    SSLCertificateKeyFile $pki/tls.key
    SSLCACertificateFile  $pki/clients-ca.crt
    SSLVerifyClient require
    SSLVerifyDepth 2
    CertServiceWrapCertificate $pki/wrap1.crt
    CertServiceLocalCA $pki/ca.crt $pki/ca.key
    Include $pki/roles.conf
    <Location />
        SetHandler certservice
    </Location>
</VirtualHost>
EOF
    } >"$1/httpd.conf"
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
    local pidf=$1/httpd.pid tries=${2:-100} pid i
    [ -f "$pidf" ] || return 0
    pid=$(cat "$pidf" 2>/dev/null)
    ours "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 "$tries"); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
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
# certsync_tls_hosts PORT PKI STORE FALLBACK-NAME: the configuration of a
# vhost-mode proxy's TLS address: the fallback virtual host (PKI/fallback.*)
# first, then one virtual host per domain of STORE's manifest (mod_macro)
certsync_tls_hosts() {
    cat <<CONF
<VirtualHost 127.0.0.1:$1>
    ServerName $4
    SSLEngine on
    SSLCertificateFile    $2/fallback.crt
    SSLCertificateKeyFile $2/fallback.key
</VirtualHost>
<Macro TLSHost \$domain \$certdir>
    <VirtualHost 127.0.0.1:$1>
        ServerAlias \$domain
        SSLEngine on
        SSLCertificateFile    \$certdir/fullchain.pem
        SSLCertificateKeyFile \$certdir/privkey.pem
    </VirtualHost>
</Macro>
MacroGenerate TLSHost $3/manifest
CONF
}
