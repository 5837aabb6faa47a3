# shellcheck shell=bash
# bench/lib/pp_servers.sh: the servers of bench/proxy_protocol.sh, parts 2
# to 5: the cgroups of APACHE_CPU_QUOTA, the configurations of the Apache
# instances (a), (b), (c) and of the balancer (haproxy or nginx), the TLS
# certificate and checks, check_tools, start_servers, the readers of CPU
# time (Apache, its children, the balancer, the client CPU) and of the
# error logs, and build_perconn_tools (the helpers that parts 4 and 5
# build).
#
# Sourced by bench/proxy_protocol.sh, which defines the globals read here:
# its settings (HTTPD, BALANCER, HAPROXY, NGINX, NGINX_STREAM_MODULE,
# NGINX_PREREAD, WRK, OPENSSL, CC, MODULES_DIR, MODULE_SO, PROXY_VERSION,
# HAPROXY_WAIT_DATA, HAPROXY_SPIN, APACHE_CPU_QUOTA, LISTEN_BUCKETS_RATIO,
# ACCEPT_FILTER, CGROUP_CPU, PIN, CLIENT_CPUS, SAME_INSTANCE, PATHTIME,
# PERCONN_SENDER, TLS), TOP, WORK,
# VARIANTS, LABEL, APACHE_PORT, FRONT_PORT, APACHE_TLS_PORT, FRONT_TLS_PORT,
# the prefixes ON_APACHE_CPUS and ON_CLIENT_CPUS, and die (t/lib/certsuite.sh).
# Sets APACHE_PID, BALANCER_PID, CGROUP, CGROUP_NPROCS, TLS_PARAMS and adds
# to PIDS (which the caller's cleanup stops).

# APACHE_CPU_QUOTA: one cgroup v1 cpu cgroup per Apache instance.
cgroup_create() {   # cgroup_create V
    local v=$1 dir=$CGROUP_CPU/ppbench.$$.$1
    mkdir "$dir" || die "APACHE_CPU_QUOTA: cannot create $dir"
    # shellcheck disable=SC2004  # CGROUP is associative (proxy_protocol.sh)
    CGROUP[$v]=$dir
    echo 100000 >"$dir/cpu.cfs_period_us" \
        && echo $((APACHE_CPU_QUOTA * 1000)) >"$dir/cpu.cfs_quota_us" \
        || die "APACHE_CPU_QUOTA: cannot set the quota of $dir"
}

# Moves PIDS into V's cgroup (a process that has gone is skipped).
cgroup_add() {   # cgroup_add V PID...
    local v=$1 pid
    shift
    for pid in "$@"; do
        echo "$pid" >"${CGROUP[$v]}/cgroup.procs" 2>/dev/null \
            || ! kill -0 "$pid" 2>/dev/null \
            || die "APACHE_CPU_QUOTA: cannot move $pid into ${CGROUP[$v]}"
    done
}

# Moves every process of instance V into its cgroup and checks that each
# one (and so each of its threads) is there.  Sets CGROUP_NPROCS to how
# many processes.
CGROUP_NPROCS=0
cgroup_add_instance() {   # cgroup_add_instance V
    local v=$1 parent=${APACHE_PID[$1]} pids pid cg n=0
    pids="$parent $(pgrep -P "$parent" | tr '\n' ' ')"
    cgroup_add "$v" $pids
    for pid in $pids; do
        cg=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ { print $3 }' /proc/"$pid"/cgroup)
        [ "$CGROUP_CPU$cg" = "${CGROUP[$v]}" ] \
            || die "APACHE_CPU_QUOTA: process $pid of ${LABEL[$v]} is in" \
                "cpu cgroup '$cg', not ${CGROUP[$v]}"
        n=$((n + 1))
    done
    CGROUP_NPROCS=$n
}

# "PERIODS THROTTLED" so far of V's cgroup (cpu.stat), or "0 0".
cgroup_throttling() {   # cgroup_throttling V
    if [ -n "$APACHE_CPU_QUOTA" ] && [ -n "${CGROUP[$1]:-}" ]; then
        awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 }
             END { print p + 0, t + 0 }' "${CGROUP[$1]}/cpu.stat"
    else
        echo 0 0
    fi
}

# On exit, once the servers are stopped: Apache's children may outlive the
# parent for a moment, so wait until each cgroup is empty.
remove_cgroups() {
    local v dir
    for v in "${!CGROUP[@]}"; do
        dir=${CGROUP[$v]}
        [ -d "$dir" ] || continue
        for _ in $(seq 50); do
            rmdir "$dir" 2>/dev/null && break
            sleep 0.2
        done
        [ ! -d "$dir" ] || echo "proxy_protocol.sh: could not remove" \
            "cgroup $dir (processes: $(tr '\n' ' ' <"$dir/cgroup.procs"))" >&2
    done
}

# ---------------------------------------------------------------------------
# Apache and the balancer: configuration
# ---------------------------------------------------------------------------

check_tools() {
    local t v port ports
    for t in "$HTTPD" "$(balancer_command)" "$WRK" curl taskset awk ss; do
        command -v "$t" >/dev/null || die "$t not found"
    done
    [ "$BALANCER" != nginx ] || [ -f "$NGINX_STREAM_MODULE" ] \
        || die "$NGINX_STREAM_MODULE not found (Debian: libnginx-mod-stream;" \
            "or set NGINX_STREAM_MODULE)"
    [ -f "$MODULE_SO" ] || die "$MODULE_SO not found: run make first"
    [ -f "$MODULES_DIR/mod_remoteip.so" ] \
        || die "$MODULES_DIR/mod_remoteip.so not found"
    if [ "$TLS" = 1 ]; then
        command -v "$OPENSSL" >/dev/null || die "$OPENSSL not found"
        [ -f "$MODULES_DIR/mod_ssl.so" ] \
            || die "$MODULES_DIR/mod_ssl.so not found"
    fi
    for v in $VARIANTS; do
        ports="${APACHE_PORT[$v]} ${FRONT_PORT[$v]}"
        [ "$TLS" = 0 ] \
            || ports="$ports ${APACHE_TLS_PORT[$v]} ${FRONT_TLS_PORT[$v]}"
        for port in $ports; do
            if ss -Hltn "sport = :$port" | grep -q .; then
                die "port $port is in use (set BASE_PORT)"
            fi
        done
    done
}

# The user Apache's workers run as: when started as root, the invoking
# user (sudo) or nobody; otherwise whoever runs this.
run_user() {
    if [ "$(id -u)" != 0 ]; then
        id -un
    elif [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        echo "$SUDO_USER"
    else
        echo nobody
    fi
}

# User/Group lines: only meaningful (and needed) when started as root.
user_directives() {
    [ "$(id -u)" = 0 ] || return 0
    printf 'User %s\nGroup %s\n' "$(run_user)" "$(id -gn "$(run_user)")"
}

write_apache_conf() {
    local v=$1 dir=$WORK/httpd-$1
    mkdir -p "$dir"
    chmod 755 "$dir"
    {
        cat <<EOF
ServerRoot "$dir"
ServerName 127.0.0.1
Listen 127.0.0.1:${APACHE_PORT[$v]}
PidFile "$dir/httpd.pid"
DefaultRuntimeDir "$dir"
ErrorLog "$dir/error.log"
LogLevel warn
$(user_directives)

LoadModule mpm_event_module "$MODULES_DIR/mod_mpm_event.so"
LoadModule authz_core_module "$MODULES_DIR/mod_authz_core.so"
$([ "$PATHTIME" = 0 ] || echo "LoadModule pp_path_timing_module \"$WORK/mod_pp_path_timing.so\"")

# The same MPM configuration for all three: every worker started up front,
# none stopped or replaced while measuring, and far more workers than wrk
# has connections (with Connection: close, connections that haproxy has
# opened but not yet written to also hold a worker).
StartServers            2
ServerLimit             2
ThreadLimit             64
ThreadsPerChild         64
MaxRequestWorkers       128
MinSpareThreads         8
MaxSpareThreads         128
MaxConnectionsPerChild  0
KeepAlive               On
MaxKeepAliveRequests    0
KeepAliveTimeout        30
Timeout                 30
$([ -z "$LISTEN_BUCKETS_RATIO" ] || echo "ListenCoresBucketsRatio $LISTEN_BUCKETS_RATIO")
$([ -z "$ACCEPT_FILTER" ] || printf 'AcceptFilter http %s\nAcceptFilter https %s\n' "$ACCEPT_FILTER" "$ACCEPT_FILTER")

DocumentRoot "$WORK/htdocs"
<Directory "$WORK/htdocs">
    Require all granted
</Directory>
EOF
        # The TLS virtual host inherits everything above and the PROXY
        # directives below (they are server-wide).  No session cache and no
        # tickets: every connection is a full handshake.
        [ "$TLS" = 0 ] || cat <<EOF

LoadModule ssl_module "$MODULES_DIR/mod_ssl.so"
Listen 127.0.0.1:${APACHE_TLS_PORT[$v]} https
SSLSessionCache none
<VirtualHost 127.0.0.1:${APACHE_TLS_PORT[$v]}>
    ServerName 127.0.0.1
    SSLEngine on
    SSLCertificateFile "$WORK/tls/cert.pem"
    SSLCertificateKeyFile "$WORK/tls/key.pem"
    SSLSessionTickets off
</VirtualHost>
EOF
        case $v in
        b)
            cat <<EOF

LoadModule remoteip_module "$MODULES_DIR/mod_remoteip.so"
RemoteIPProxyProtocol On
LogLevel warn remoteip:info
EOF
            ;;
        c)
            cat <<EOF

LoadModule proxy_protocol_module "$MODULE_SO"
ProxyProtocol On
ProxyProtocolTrustedProxies 127.0.0.1
LogLevel warn proxy_protocol:info
EOF
            ;;
        a)
            # SAME_INSTANCE=1: (c) is this instance's second port.
            [ "$SAME_INSTANCE" = 0 ] || cat <<EOF

LoadModule proxy_protocol_module "$MODULE_SO"
Listen 127.0.0.1:${APACHE_PORT[c]}
<VirtualHost 127.0.0.1:${APACHE_PORT[c]}>
    ProxyProtocol $([ "$SAME_INSTANCE" = aa ] && echo Off || echo On)
    ProxyProtocolTrustedProxies 127.0.0.1
</VirtualHost>
LogLevel warn proxy_protocol:info
EOF
            ;;
        esac
    } >"$dir/httpd.conf"
}

write_haproxy_conf() {
    local send_proxy=send-proxy wait_data=""
    [ "$PROXY_VERSION" = 1 ] || send_proxy=send-proxy-v2
    # HAPROXY_WAIT_DATA=1: connect to Apache only once the client has sent
    # something (the same for every frontend).
    [ "$HAPROXY_WAIT_DATA" != 1 ] || wait_data='
    tcp-request inspect-delay 5s
    tcp-request content accept if { req.len gt 0 }'
    # HAPROXY_SPIN=V:N[,V:N]: N us of haproxy's CPU on each connection
    # to V, before it connects (os.clock() is the process's CPU time).
    local -A spin=([a]="" [c]="")
    local lua_load="" one
    if [ -n "$HAPROXY_SPIN" ]; then
        # With HAPROXY_WAIT_DATA=1 haproxy evaluates the rules again from
        # the first once data comes: the spin waits for it too, so that
        # it runs once.
        for one in ${HAPROXY_SPIN//,/ }; do
            spin[${one%%:*}]="
    tcp-request content lua.pp_spin ${one#*:}$([ "$HAPROXY_WAIT_DATA" != 1 ] \
                || echo " if { req.len gt 0 }")"
        done
        lua_load="
    lua-load $WORK/pp_spin.lua"
        cat >"$WORK/pp_spin.lua" <<'EOF'
core.register_action("pp_spin", { "tcp-req" }, function(txn, us)
    local stop = os.clock() + tonumber(us) / 1e6
    while os.clock() < stop do end
end, 1)
EOF
    fi
    cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 4096
    nbthread 1$lua_load

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

listen plain
    bind 127.0.0.1:${FRONT_PORT[a]}${spin[a]}$wait_data
    server apache 127.0.0.1:${APACHE_PORT[a]}

listen remoteip
    bind 127.0.0.1:${FRONT_PORT[b]}$wait_data
    server apache 127.0.0.1:${APACHE_PORT[b]} $send_proxy

listen module
    bind 127.0.0.1:${FRONT_PORT[c]}${spin[c]}$wait_data
    server apache 127.0.0.1:${APACHE_PORT[c]} $([ "$SAME_INSTANCE" = aa ] || echo "$send_proxy")
EOF
    [ "$TLS" = 0 ] || cat >>"$WORK/haproxy.cfg" <<EOF

# TLS passed through (TCP mode): Apache terminates it
listen tls-plain
    bind 127.0.0.1:${FRONT_TLS_PORT[a]}$wait_data
    server apache 127.0.0.1:${APACHE_TLS_PORT[a]}

listen tls-remoteip
    bind 127.0.0.1:${FRONT_TLS_PORT[b]}$wait_data
    server apache 127.0.0.1:${APACHE_TLS_PORT[b]} $send_proxy

listen tls-module
    bind 127.0.0.1:${FRONT_TLS_PORT[c]}$wait_data
    server apache 127.0.0.1:${APACHE_TLS_PORT[c]} $send_proxy
EOF
}

# BALANCER=nginx: nginx's stream module in front of the same ports, one
# worker (as haproxy's one thread).  ssl_preread makes every server wait
# for the client's first bytes before it connects to Apache (on plain
# HTTP it finds no ClientHello and lets them through), and nginx then
# writes the PROXY header and those bytes in one writev(): Apache's
# deferred accept wakes once, with the request there, on every port.
# NGINX_PREREAD=0 leaves ssl_preread off.
write_nginx_conf() {
    local v proxy
    {
        cat <<EOF
load_module $NGINX_STREAM_MODULE;
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.log warn;
events {
    worker_connections 4096;
}
stream {
    ssl_preread $([ "$NGINX_PREREAD" = 1 ] && echo on || echo off);
EOF
        for v in a b c; do
            proxy=""
            [ "$v" = a ] || { [ "$v" = c ] && [ "$SAME_INSTANCE" = aa ]; } \
                || proxy="
        proxy_protocol on;"
            cat <<EOF
    server {
        listen 127.0.0.1:${FRONT_PORT[$v]};
        proxy_pass 127.0.0.1:${APACHE_PORT[$v]};$proxy
    }
EOF
            [ "$TLS" = 0 ] || cat <<EOF
    server {
        listen 127.0.0.1:${FRONT_TLS_PORT[$v]};
        proxy_pass 127.0.0.1:${APACHE_TLS_PORT[$v]};$proxy
    }
EOF
        done
        echo "}"
    } >"$WORK/nginx.conf"
}

# The balancer's command, for check_tools and the heading.
balancer_command() {
    if [ "$BALANCER" = nginx ]; then echo "$NGINX"; else echo "$HAPROXY"; fi
}

# Starts the balancer in the foreground of a background job (pinned with
# the client): sets BALANCER_PID.
start_balancer() {
    if [ "$BALANCER" = nginx ]; then
        write_nginx_conf
        "$NGINX" -t -q -e "$WORK/nginx.log" -c "$WORK/nginx.conf" \
            2>"$WORK/nginx.t.log" \
            || { cat "$WORK/nginx.t.log" >&2; die "bad nginx configuration"; }
        "${ON_CLIENT_CPUS[@]}" "$NGINX" -e "$WORK/nginx.log" \
            -c "$WORK/nginx.conf" >"$WORK/nginx.out" 2>&1 &
    else
        write_haproxy_conf
        "${ON_CLIENT_CPUS[@]}" "$HAPROXY" -db -f "$WORK/haproxy.cfg" \
            >"$WORK/haproxy.log" 2>&1 &
    fi
    BALANCER_PID=$!
    PIDS="$PIDS $!"
}

# A self-signed ECDSA P-256 certificate for 127.0.0.1 (not a CA
# certificate, which mod_ssl would warn about).
make_certificate() {
    mkdir -p "$WORK/tls"
    "$OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -days 2 -subj /CN=127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE \
        -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" \
        >"$WORK/tls/openssl.log" 2>&1 \
        || { cat "$WORK/tls/openssl.log" >&2; die "openssl req failed"; }
}

# s_client PORT [ARGS...]: one request over TLS, with openssl s_client.
s_client() {
    local port=$1
    shift
    printf 'GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' \
        | timeout 10 "$OPENSSL" s_client -connect "127.0.0.1:$port" -ign_eof \
            "$@" 2>&1 || true
}

# Checks that a TLS session through the balancer to V is a full handshake
# and cannot be resumed: a second connection offering the first one's session
# (and ticket, read with the response) must be "New".  Prints the
# protocol and cipher.
check_tls() {
    local v=$1 port=${FRONT_TLS_PORT[$1]} sess=$WORK/tls/session.$1 first
    first=$(s_client "$port" -sess_out "$sess")
    grep -q '^HTTP/1.1 200' <<<"$first" \
        || die "${LABEL[$v]}: no 200 over TLS through $BALANCER"
    grep -q '^New, TLSv1.3' <<<"$(s_client "$port" -sess_in "$sess")" \
        || die "${LABEL[$v]}: TLS session resumed (or not TLS 1.3)"
    sed -n 's/^New, \(.*\)$/\1/p' <<<"$first" | head -1
}

# ---------------------------------------------------------------------------
# Apache and the balancer: starting and checking; CPU readers
# ---------------------------------------------------------------------------

http_code() {   # http_code [-k] URL
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true
}

start_servers() {
    local v code

    mkdir -p "$WORK/htdocs"
    # A small static file: 1 KiB.
    head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/htdocs/index.html"
    chmod -R a+rX "$WORK/htdocs"
    [ "$TLS" = 0 ] || make_certificate

    for v in $VARIANTS; do
        if [ "$SAME_INSTANCE" != 0 ] && [ "$v" = c ]; then
            # (a)'s instance, its second port: the same processes, log and
            # listener threads
            APACHE_PID[c]=${APACHE_PID[a]}
            ln -s httpd-a "$WORK/httpd-c"
            continue
        fi
        write_apache_conf "$v"
        "$HTTPD" -t -f "$WORK/httpd-$v/httpd.conf" 2>"$WORK/httpd-$v/t.log" \
            || { cat "$WORK/httpd-$v/t.log" >&2; die "bad config for $v"; }
        [ -z "$APACHE_CPU_QUOTA" ] || cgroup_create "$v"
        # PATHTIME: the children append to this file (opened after they
        # have switched user).
        : >"$WORK/pathtime.$v"
        chmod 666 "$WORK/pathtime.$v"
        PP_PATH_TIMING_FILE=$WORK/pathtime.$v \
            "${ON_APACHE_CPUS[@]}" "$HTTPD" -f "$WORK/httpd-$v/httpd.conf" \
            -DFOREGROUND &
        # shellcheck disable=SC2004  # associative (proxy_protocol.sh)
        APACHE_PID[$v]=$!
        PIDS="$PIDS $!"
        # The parent at once, so that most likely its children are forked
        # inside; all of them are moved and checked once it answers.
        [ -z "$APACHE_CPU_QUOTA" ] || cgroup_add "$v" "${APACHE_PID[$v]}"
    done
    start_balancer

    # Ready when each answers through the balancer.
    for v in $VARIANTS; do
        for _ in $(seq 50); do
            code=$(http_code "http://127.0.0.1:${FRONT_PORT[$v]}/index.html")
            [ "$code" = 200 ] && break
            kill -0 "${APACHE_PID[$v]}" 2>/dev/null \
                || { cat "$WORK/httpd-$v/error.log" >&2; die "$v died"; }
            sleep 0.2
        done
        [ "$code" = 200 ] || die "${LABEL[$v]} does not answer through $BALANCER"
    done
    if [ -n "$APACHE_CPU_QUOTA" ]; then
        for v in $VARIANTS; do
            cgroup_add_instance "$v"
            echo "APACHE_CPU_QUOTA=$APACHE_CPU_QUOTA: ${LABEL[$v]}:" \
                "$CGROUP_NPROCS processes in ${CGROUP[$v]}" \
                "(cfs_quota_us $(cat "${CGROUP[$v]}/cpu.cfs_quota_us")," \
                "cfs_period_us $(cat "${CGROUP[$v]}/cpu.cfs_period_us"))"
        done
    fi

    # Sanity: (b) and (c) must refuse a connection without a PROXY header
    # (otherwise the header would not be read by the module under test),
    # and (a) must serve it.
    [ "$(http_code "http://127.0.0.1:${APACHE_PORT[a]}/index.html")" = 200 ] \
        || die "(a) does not answer directly"
    for v in ${VARIANTS#a }; do
        [ "$SAME_INSTANCE" != aa ] || break
        code=$(http_code "http://127.0.0.1:${APACHE_PORT[$v]}/index.html")
        [ "$code" != 200 ] \
            || die "${LABEL[$v]} served a request without a PROXY header"
    done
    if [ "$SAME_INSTANCE" = aa ]; then
        echo "servers up: (a) and (c) are two ports of one Apache, neither" \
            "with the PROXY protocol (SAME_INSTANCE=aa: an A/A control)"
    elif [ "$SAME_INSTANCE" = 1 ]; then
        echo "servers up: (a) and (c) are two ports of one Apache" \
            "(SAME_INSTANCE=1); (c) refuses connections without a PROXY header"
    else
        echo "servers up; (b) and (c) refuse connections without a PROXY header"
    fi
    [ "$TLS" = 1 ] || return 0

    # The same over TLS, and no session resumption.
    for v in $VARIANTS; do
        code=$(http_code -k \
            "https://127.0.0.1:${FRONT_TLS_PORT[$v]}/index.html")
        [ "$code" = 200 ] \
            || die "${LABEL[$v]} does not answer over TLS through $BALANCER"
    done
    [ "$(http_code -k \
        "https://127.0.0.1:${APACHE_TLS_PORT[a]}/index.html")" = 200 ] \
        || die "(a) does not answer directly over TLS"
    for v in b c; do
        code=$(http_code -k \
            "https://127.0.0.1:${APACHE_TLS_PORT[$v]}/index.html")
        [ "$code" != 200 ] || die "${LABEL[$v]} served a TLS request" \
            "without a PROXY header"
    done
    for v in $VARIANTS; do
        TLS_PARAMS=$(check_tls "$v")
    done
    echo "TLS: $TLS_PARAMS, ECDSA P-256 certificate; (b) and (c) refuse" \
        "TLS without a PROXY header; a session offered again is not" \
        "resumed (openssl s_client: New), so each connection is a full" \
        "handshake"
}

# CPU time used so far by one Apache instance (every thread of every
# process), in ns, from /proc/PID/task/TID/schedstat.
cpu_ns_of() {   # cpu_ns_of PID...: every thread of these processes
    local p
    for p in "$@"; do
        cat /proc/"$p"/task/*/schedstat 2>/dev/null || true
    done | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
apache_cpu_ns() {
    local parent=${APACHE_PID[$1]}
    # shellcheck disable=SC2046
    cpu_ns_of "$parent" $(pgrep -P "$parent")
}

# CPU time used so far by the balancer (every thread of haproxy, or of
# nginx's master and worker), in ns.
balancer_cpu_ns() {
    # shellcheck disable=SC2046
    cpu_ns_of "$BALANCER_PID" $(pgrep -P "$BALANCER_PID")
}

# "BUSY TOTAL" jiffies so far of the CPU wrk and the balancer run on
# (CLIENT_CPUS when pinned to one CPU, else all CPUs), from /proc/stat.
client_cpu_ticks() {
    local line=cpu
    [ "$PIN" != 1 ] || ! [[ $CLIENT_CPUS =~ ^[0-9]+$ ]] \
        || line=cpu$CLIENT_CPUS
    awk -v l="$line" '$1 == l {
        t = 0; for (i = 2; i <= NF; i++) t += $i
        print t - $5 - $6, t }' /proc/stat
}

# "WARNINGS REFUSED" in an instance's error log so far: lines at level warn
# or worse, and connections refused by the PROXY module (logged at info).
error_log_counts() {
    awk '/\[(proxy_protocol|remoteip):info\]/  { refused++; next }
         /:(emerg|alert|crit|error|warn)\]/     { warnings++ }
         END { print warnings + 0, refused + 0 }' "$WORK/httpd-$1/error.log"
}

# CPU time so far of instance V's children only (not the parent), in ns.
children_cpu_ns() {
    # shellcheck disable=SC2046
    cpu_ns_of $(pgrep -P "${APACHE_PID[$1]}")
}

# Builds the helpers that parts 4 and 5 need.
build_perconn_tools() {
    if [ "$PERCONN_SENDER" = direct ]; then
        "$CC" -O2 -pthread "$TOP/bench/pp_conn_client.c" \
            -o "$WORK/pp_conn_client" || die "cannot build pp_conn_client"
        [ "$PROXY_VERSION" = 1 ] \
            || die "PERCONN_SENDER=direct sends PROXY v1 only"
    fi
    if [ "$PATHTIME" != 0 ]; then
        command -v apxs >/dev/null && command -v apr-1-config >/dev/null \
            || die "PATHTIME=1 needs apxs and apr-1-config (apache2-dev)"
        # shellcheck disable=SC2046
        "$CC" -O2 -shared -fPIC -I"$(apxs -q INCLUDEDIR)" \
            $(apr-1-config --includes --cppflags) \
            "$TOP/bench/mod_pp_path_timing.c" \
            -o "$WORK/mod_pp_path_timing.so" \
            || die "cannot build mod_pp_path_timing.so"
    fi
}
