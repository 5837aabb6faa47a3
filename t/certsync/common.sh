# shellcheck shell=bash
# t/certsync/common.sh: what t/certsync/e2e.sh, t/certsync/clock.sh and
# t/certsync/service-faults.sh share: one CertService and one vhost-mode
# proxy on 127.0.0.1, and the helpers to drive them.  Sourced after
# t/lib/certsuite.sh; sourcing only defines functions.  e2e.sh defines
# its own on_cleanup (SIGCONT to a daemon it stopped, first), issue (one
# kept-alive connection) and wait_served (handshakes in parallel) after.
#
#   csy_setup NAME PROG...   prerequisites (cs_need PROG... -- dbd macro),
#                            modules, $tmp (cs_tmpdir NAME), the layout, the
#                            test PKI and the fallback certificate
#   start_cs                 CertService on $cs_port
#   start_px [NAME=VALUE...] the proxy (write_px_conf options) on $px_port,
#                            status on $st_port; run with $PX_HTTPD if set
#   status, st FIELD         /certsync-status, one field of it (jq -r)
#   served NAME              the serial presented for SNI NAME ("none")
#   issue NAME...            PUT each on CertService; "NAME SERIAL" lines
#                            appended to $tmp/work/want
#   wait_served FILE SECONDS until each "NAME SERIAL" of FILE is served
#   wait_for SECONDS CMD...  until CMD succeeds
#   count_lines PATTERN      lines of the proxy's error log

csy_setup() {
    local name=$1
    shift
    cs_need curl jq openssl "$@" -- dbd macro || bail "$need_why"
    cs_modules || bail "the modules are not built (make)"
    cs_tmpdir "$name" || bail "mktemp failed"
    cs_layout || bail "cannot make the directories in $tmp"
    if ! "$top/t/certservice/make-pki.sh" "$pki" >"$tmp/pki.log" 2>&1; then
        cat "$tmp/pki.log"
        bail "make-pki.sh failed"
    fi
    chmod 755 "$pki"
    fallback_cert "$pki" fallback.e2e.invalid \
        || bail "cannot make the fallback certificate"
    fallback_serial=$(norm_serial "$(openssl x509 -in "$pki/fallback.crt" \
                                       -noout -serial | sed 's/^serial=//')")
    pxlog=$pxdir/logs/error_log
    : >"$tmp/work/want"
}

on_cleanup() {
    stop_httpd "$pxdir"
    stop_httpd "$csdir"
    if declare -F on_cleanup_more >/dev/null; then
        on_cleanup_more
    fi
}

_write_cs() {
    cs_port=$(pick_port)
    listen_ports=$cs_port
    write_cs_conf "$csdir" "$cs_port" log="warn certservice:notice"
}
start_cs() {
    start_httpd_retry "$csdir" _write_cs || bail "CertService did not start"
    req GET "/v1/domains?limit=1"
    [ "$code" = 200 ] \
        || bail "CertService answers GET /v1/domains with $code: $body"
}

_write_px() {
    px_port=$(pick_port)
    st_port=$(pick_port)
    while [ "$st_port" = "$px_port" ]; do st_port=$(pick_port); done
    listen_ports="$st_port $px_port"
    write_px_conf "$pxdir" "$px_port" "$st_port" "$cs_port" e2e "$@"
}
# start_px [NAME=VALUE...]: the ports are picked again on a retry
start_px() {
    HTTPD=${PX_HTTPD:-$HTTPD} start_httpd_retry "$pxdir" _write_px "$@"
}
# restart_px: stop and start the proxy's httpd (same configuration)
stop_px() {
    stop_httpd "$pxdir"
    wait_for 10 port_free "$px_port"
}
start_px_again() {
    HTTPD=${PX_HTTPD:-$HTTPD} start_httpd "$pxdir" "$st_port"
}

req() { cs_req admin "$cs_port" "$@"; }

status() {
    curl -sS --noproxy '*' --max-time 10 \
        "http://127.0.0.1:$st_port/certsync-status" 2>/dev/null
}
st() { status | jq -r ".$1"; }
count_lines() {
    grep -c -- "$1" "$pxlog" 2>/dev/null || true
}

norm_serial() {
    local s
    s=$(tr 'A-F' 'a-f' <<<"$1" | sed 's/^0*//')
    echo "${s:-0}"
}
served() {
    local s
    s=$(timeout 10 openssl s_client -connect "127.0.0.1:$px_port" \
            -servername "$1" </dev/null 2>/dev/null \
        | openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//')
    if [ -n "$s" ]; then norm_serial "$s"; else echo none; fi
}
# issue NAME...: PUT each as admin; "NAME SERIAL" appended to want
issue() {
    local d
    for d in "$@"; do
        req PUT "/v1/domains/$d"
        case $code in
            200 | 201) echo "$d $(norm_serial "$(jqb .serial)")" \
                           >>"$tmp/work/want" ;;
            *) diag "PUT /v1/domains/$d: $code $body"; return 1 ;;
        esac
    done
}
# wait_served FILE SECONDS: what is left is in $tmp/work/mismatch
wait_served() {
    local end=$(($(date +%s) + $2)) d want got
    while :; do
        : >"$tmp/work/mismatch"
        while read -r d want; do
            got=$(served "$d")
            [ "$got" = "$want" ] || echo "$d $want $got" >>"$tmp/work/mismatch"
        done <"$1"
        [ -s "$tmp/work/mismatch" ] || return 0
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.5
    done
}
wait_for() {
    local end=$(($(date +%s) + $1))
    shift
    while :; do
        "$@" && return 0
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.2
    done
}
