#!/bin/bash
#
# t/demo/tls.sh: the demo pool as one TLS endpoint (issue 16, parts 2 to
# 4), in vhost and in dynamic mode: CertService (local CA), the backend,
# three proxies (mod_proxy_protocol, mod_ssl, mod_http2, mod_certsync)
# behind HAProxy (TCP mode, PROXY v2), configured by t/lib/pool.sh as the
# documentation recommends (docs/tls.md).  For each mode, through HAProxy:
#
#   1. HTTP/2: curl gets the backend's page over h2 from each of the three
#      proxies, with the client's address from the PROXY header in the
#      proxy's access log; `openssl s_client -alpn h2` negotiates h2 (an
#      h2-only client); headless Chromium negotiates h2 (its NetLog says
#      next_proto h2), the certificate checked against the pool's CA.
#   2. Misdirected requests: SNI shop.example with Host blog.example gets
#      421 over HTTP/1.1 and over h2 (vhost mode: mod_ssl, AH02032;
#      dynamic mode: mod_certsync, CY00274), also on a resumed TLS 1.3
#      session (dynamic mode) and never reaches the backend.
#   3. Unknown names: a name the store does not have, and no SNI, with
#      the certificate error bypassed, get 403 and never reach the
#      backend; the server acknowledges the SNI of a store name (an empty
#      server_name extension in its TLS 1.2 ServerHello).
#   4. The TLS configuration: no TLS 1.1, no CBC suite, the server's cipher
#      order, HSTS; a short load (h2load, 40 connections) gets only 2xx and
#      no AH10159/AH00484 (MPM limits) in any error log.
#
# TLS_BREAK=http1 runs the proxies with `Protocols http/1.1` (what the
# pool had before): the h2 checks must then fail.
#
# Needs haproxy, curl (with HTTP/2), openssl, h2load (nghttp2-client);
# chromium is optional (its checks are skipped without it).  About 80 s.
# Runs as root (children as nobody) or as a user.  TAP output.
set -u
export LC_ALL=C

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/pool.sh
. "$top/t/lib/pool.sh"   # and t/lib/certsuite.sh
tap_init

for p in haproxy curl openssl h2load; do
    command -v "$p" >/dev/null || { echo "1..0 # SKIP $p not found"; exit 0; }
done
curl -V | grep -qw HTTP2 || { echo "1..0 # SKIP curl without HTTP/2"; exit 0; }
for m in proxy_protocol certservice certsync macro_gen; do
    [ -f "$top/mod_$m/.libs/mod_$m.so" ] \
        || { echo "1..0 # SKIP mod_$m not built (make)"; exit 0; }
done
chromium=$(command -v chromium || command -v chromium-browser || true)

cs_tmpdir certsuite-tls || { echo "Bail out! mktemp failed"; exit 1; }
work=$tmp
chmod 755 "$work"
on_cleanup() {
    pool_stop_all >/dev/null 2>&1
    if [ "$nfail" != 0 ]; then
        pool_log_tail 30 | sed 's/^/# /'
    fi
}

base=$(pool_pick_base) || bail "no free ports"
export POOL_ISSUER=local POOL_SYNC_INTERVAL="1 1"
if [ "${TLS_BREAK:-}" = http1 ]; then
    export POOL_PX_EXTRA="Protocols http/1.1"
fi
pool_init "$work/pool" "$base" || bail "pool_init"
pool_pki >/dev/null || bail "pool_pki"
pool_start_certservice || bail "CertService did not start"
pool_start_backend || bail "the backend did not start"
domains=(shop.example blog.example)
declare -A serial
for d in "${domains[@]}"; do
    serial[$d]=$(pool_add_domain "$d") || bail "cannot add $d"
done

start_proxies() {
    local n
    for n in 1 2 3; do
        pool_start_proxy "$n" || return 1
    done
}
stop_proxies() {
    local n
    for n in 1 2 3; do
        pool_stop_proxy "$n"
    done
}
# Until every proxy presents every domain's serial and HAProxy sees the
# three UP (vhost mode: after each one's staggered restart).
wait_served() {
    local i n d ok_n
    for ((i = 0; i < 600; i++)); do
        ok_n=0
        for n in 1 2 3; do
            for d in "${domains[@]}"; do
                [ "$(pool_served_serial "$n" "$d" 2>/dev/null)" = \
                  "${serial[$d]}" ] || continue 2
            done
            case $(pool_lb_state "$n" 2>/dev/null) in
                UP*) ok_n=$((ok_n + 1)) ;;
            esac
        done
        [ "$ok_n" = 3 ] && return 0
        sleep 0.2
    done
    return 1
}

lb=
# req HOST [curl args...]: through HAProxy, SNI HOST; prints the status,
# the HTTP version, then the body
req() {
    local h=$1
    shift
    curl -sS --noproxy '*' --max-time 10 --cacert "$POOL_TRUST_CA" \
        --resolve "$h:$lb:127.0.0.1" "$@" \
        -w '\n%{http_code} %{http_version}\n' "https://$h:$lb/" 2>&1
}
status_of() { tail -n 1 <<<"$1"; }
backend_lines() { wc -l <"$POOL_DIR/backend/logs/access_log"; }

# chromium_proto URL NETLOG: headless Chromium loads URL (names resolved
# to 127.0.0.1, the pool's CA trusted by its public key); prints what its
# NetLog says was negotiated (next_proto of its sockets), one per line
chromium_proto() {
    local spki prof=$work/chromium-profile
    spki=$(openssl x509 -in "$POOL_TRUST_CA" -noout -pubkey \
           | openssl pkey -pubin -outform der \
           | openssl dgst -sha256 -binary | base64)
    rm -rf "$prof"
    mkdir -p "$prof"
    timeout 60 "$chromium" --headless=new --no-sandbox --disable-gpu \
        --user-data-dir="$prof" --no-first-run --disable-extensions \
        --host-resolver-rules="MAP *.example 127.0.0.1" \
        --ignore-certificate-errors-spki-list="$spki" \
        --log-net-log="$2" --net-log-capture-mode=Default \
        --dump-dom "$1" >"$work/chromium.dom" 2>"$work/chromium.err"
    grep -o '"next_proto":"[^"]*"' "$2" | sort -u | sed 's/.*:"//; s/"$//'
}

run_mode() {
    local mode=$1 out cnt i p before proxies resp sess
    lb=$POOL_LB_PORT

    section "$mode mode: HTTP/2 through HAProxy"
    proxies=
    for i in 1 2 3; do
        out=$(req shop.example --http2 --interface 127.0.0.7)
        is "$(status_of "$out")" "200 2" "$mode: h2 request $i answered 200 over HTTP/2"
        p=$(sed -n 's/^ *served through: *\([^ ]*\).*/\1/p' <<<"$out")
        proxies="$proxies $p"
    done
    is "$(tr ' ' '\n' <<<"$proxies" | sed '/^$/d' | sort -u | tr '\n' ' ')" \
        "proxy1 proxy2 proxy3 " "$mode: h2 through each of the three proxies"
    cnt=$(cat "$POOL_DIR"/proxy[123]/logs/access_log \
        | grep -c '^127\.0\.0\.7 .*"GET / HTTP/2\.0" 200')
    okif $((cnt >= 3 ? 0 : 1)) \
        "$mode: the proxies logged the client's address (PROXY header) for h2 requests ($cnt)"
    openssl s_client -connect "127.0.0.1:$lb" -servername shop.example \
        -alpn h2 -CAfile "$POOL_TRUST_CA" -verify_return_error \
        </dev/null >"$work/s_client.out" 2>&1
    is "$(sed -n 's/^ALPN protocol: //p' "$work/s_client.out")" h2 \
        "$mode: an h2-only client (s_client -alpn h2) negotiates h2"
    if [ -n "$chromium" ]; then
        p=$(chromium_proto "https://shop.example:$lb/" "$work/netlog-$mode.json")
        is "$p" h2 "$mode: headless Chromium negotiates h2 (NetLog next_proto)" \
            || diag "$(tail -n 5 "$work/chromium.err")"
        grep -q 'backend page for https://shop.example' "$work/chromium.dom"
        okif $? "$mode: ... and shows the backend's page"
    else
        ok "# SKIP chromium not installed"
        ok "# SKIP chromium not installed"
    fi

    section "$mode mode: misdirected requests and unknown names"
    before=$(backend_lines)
    out=$(req shop.example --http1.1 -H 'Host: blog.example')
    is "$(status_of "$out")" "421 1.1" "$mode: SNI shop.example, Host blog.example: 421 (HTTP/1.1)"
    out=$(req shop.example --http2 -H 'Host: blog.example')
    is "$(status_of "$out")" "421 2" "$mode: the same over h2: 421"
    out=$(req unknown.example -k --http1.1)
    is "$(status_of "$out")" "403 1.1" "$mode: a name the store does not have: 403"
    out=$(req unknown.example -k --http2)
    is "$(status_of "$out")" "403 2" "$mode: ... over h2: 403"
    out=$(curl -sS --noproxy '*' --max-time 10 -k -w '\n%{http_code}\n' \
              "https://127.0.0.1:$lb/" 2>&1)
    is "$(tail -n 1 <<<"$out")" 403 "$mode: no SNI: 403"
    is "$(backend_lines)" "$before" "$mode: none of these reached the backend"
    out=$(req shop.example --http1.1 -H 'Host: shop.example')
    is "$(status_of "$out")" "200 1.1" "$mode: the right Host still gets 200"

    # A resumed session runs no certificate callback: the check then goes
    # by the session's name (directly to proxy 1: resumption across the
    # pool is another matter).
    if [ "$mode" = dynamic ]; then
        sess=$work/sess.pem
        p=$(pool_proxy_port 1 tls)
        printf 'GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n' \
        | openssl s_client -connect "127.0.0.1:$p" -servername shop.example \
              -tls1_3 -sess_out "$sess" -quiet -ign_eof >/dev/null 2>&1
        resp=$(printf 'GET / HTTP/1.1\r\nHost: blog.example\r\nConnection: close\r\n\r\n' \
        | openssl s_client -connect "127.0.0.1:$p" -servername shop.example \
              -tls1_3 -sess_in "$sess" -ign_eof 2>&1)
        grep -q '^Reused, TLSv1.3' <<<"$resp"
        okif $? "$mode: the TLS 1.3 session was resumed"
        grep -q '^HTTP/1.1 421 ' <<<"$resp"
        okif $? "$mode: a resumed session for shop.example with Host blog.example: 421"
    fi

    openssl s_client -connect "127.0.0.1:$lb" -servername shop.example \
        -tls1_2 -tlsextdebug </dev/null >"$work/ext.out" 2>&1
    grep -q 'TLS server extension "server name"' "$work/ext.out"
    okif $? "$mode: SNI acknowledged (server_name in the ServerHello)"

    section "$mode mode: the TLS configuration"
    openssl s_client -connect "127.0.0.1:$lb" -servername shop.example \
        -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' </dev/null >/dev/null 2>&1
    okif $(($? != 0 ? 0 : 1)) "$mode: TLS 1.1 refused"
    openssl s_client -connect "127.0.0.1:$lb" -servername shop.example \
        -tls1_2 -cipher 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:AES128-SHA' \
        </dev/null >/dev/null 2>&1
    okif $(($? != 0 ? 0 : 1)) "$mode: CBC suites refused"
    openssl s_client -connect "127.0.0.1:$lb" -servername shop.example \
        -tls1_2 -cipher 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256' \
        </dev/null >"$work/order.out" 2>&1
    is "$(sed -n 's/^ *Cipher *: //p' "$work/order.out" | head -n 1)" \
        ECDHE-ECDSA-AES128-GCM-SHA256 "$mode: the server's cipher order wins"
    out=$(req shop.example -o /dev/null -D -)
    grep -qi '^strict-transport-security: max-age=63072000' <<<"$out"
    okif $? "$mode: HSTS header"
    h2load -n 2000 -c 40 -m 1 --connect-to="127.0.0.1:$lb" \
        "https://shop.example:$lb/" >"$work/h2load-$mode.out" 2>&1
    cnt=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$work/h2load-$mode.out")
    is "${cnt:-0}" 2000 "$mode: 2000 h2 requests over 40 connections, all 2xx" \
        || diag "$(tail -n 12 "$work/h2load-$mode.out")"
    cnt=$(cat "$POOL_DIR"/proxy[123]/logs/error_log "$POOL_DIR"/backend/logs/error_log \
        | grep -cE 'AH10159|AH00484')
    is "$cnt" 0 "$mode: no AH10159/AH00484 (MPM limits) in any error log"
}

# --- vhost mode ------------------------------------------------------------
start_proxies || bail "the proxies did not start"
pool_start_haproxy || bail "HAProxy did not start"
wait_served || bail "the vhost pool did not serve every domain in 120 s"
run_mode vhost

# --- dynamic mode ----------------------------------------------------------
stop_proxies
rm -rf "$POOL_DIR"/proxy[123]/store
export POOL_ACTIVATION=dynamic
start_proxies || bail "the dynamic proxies did not start"
wait_served || bail "the dynamic pool did not serve every domain in 120 s"
run_mode dynamic

echo "1..$n"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
