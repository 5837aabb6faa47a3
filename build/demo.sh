#!/bin/bash
# The demo pool, all on loopback (t/lib/pool.sh):
#
#   client ──TLS──▶ HAProxy (TCP mode, send-proxy-v2, httpchk + agent-check)
#                     ├──▶ proxy1 ┐ Apache httpd: mod_proxy_protocol, mod_ssl,
#                     ├──▶ proxy2 ├ mod_macro_gen (one TLS vhost per domain),
#                     └──▶ proxy3 ┘ mod_certsync ──mTLS──▶ CertService
#                                      │ ProxyPass               (mod_certservice,
#                                      ▼                          SQLite, ACME)
#                                   backend (a page showing who served it)
#
# Certificates come from pebble (Let's Encrypt's test CA) with real http-01
# validation: pebble asks HAProxy's plain-HTTP port, a proxy relays
# /.well-known/acme-challenge/ to CertService (docs/acme-relay.md);
# pebble-challtestsrv is pebble's DNS.  DEMO_ISSUER=local uses CertService's
# local CA instead (and adds a wildcard domain, which http-01 cannot do).
#
# Adds a few domains on CertService and shows each proxy pick them up:
# sync, restart lease (one proxy at a time), drain (HAProxy sees DRAIN),
# graceful restart, probe, ready.  Then prints how to reach every domain
# through the load balancer and where to look; keeps running until Ctrl-C,
# or, with DEMO_ONESHOT=1 (or no terminal), makes one request per domain
# through HAProxy, prints the answers and exits; DEMO_ONESHOT=0 keeps it
# running without a terminal too (until SIGINT or SIGTERM).
#
# As root on a fresh Debian machine it installs the dependencies first
# (DEMO_INSTALL_DEPS=0 skips that) and builds if needed; the httpd
# children then run as nobody.
# Ports: DEMO_PORT (default 8440) to DEMO_PORT+32, on 127.0.0.1.
# CERTSUITE_KEEP=1 keeps the temporary directory (logs, stores, database,
# and so every private key of the pool); every other way out (the end, a
# failure, Ctrl-C, SIGTERM) stops the pool and removes it: nothing that
# holds a key is left outside it (t/demo/cleanup.sh checks).  Ctrl-C and
# SIGTERM exit 0: they are how the demo is stopped.
# DEMO_ACTIVATION=dynamic runs the proxies in dynamic mode instead: one
# catch-all TLS virtual host, certificates chosen per handshake, live
# without any restart (docs/mod_certsync.md, "Dynamic activation").
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
port=${DEMO_PORT:-8440}
export POOL_ACTIVATION=${DEMO_ACTIVATION:-${POOL_ACTIVATION:-vhost}}
issuer=${DEMO_ISSUER:-acme}
if [ "$issuer" = acme ]; then
    domains=(shop.example blog.example hello.apps.example)
else
    domains=(shop.example blog.example '*.apps.example')
fi
# The host name asked for a wildcard domain.
wildcard_host=hello.apps.example

# Bold only on a terminal: a log file or a pipe gets plain text.
if [ -t 1 ]; then
    bold() { printf '\033[1m%s\033[0m\n' "$*"; }
else
    bold() { printf '%s\n' "$*"; }
fi
say() { bold "== $*"; }
t0=$(date +%s%N)
elapsed() { # seconds since the start, one decimal
    local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    printf '%3d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}
host_of() { # domain: the host name to request
    case $1 in \*.*) echo "${wildcard_host}" ;; *) echo "$1" ;; esac
}

# The ports first, before anything is installed, built or started: a
# busy port is named with the way to move the whole range.
# shellcheck source=t/lib/certsuite.sh
. "$top/t/lib/certsuite.sh"
if ! [ "$port" -ge 1025 ] 2>/dev/null || [ "$port" -gt 65500 ]; then
    echo "demo: DEMO_PORT must be a number from 1025 to 65500 (the demo" \
         "uses DEMO_PORT to DEMO_PORT+32), not '$port'" >&2
    exit 1
fi
for ((p = port; p <= port + 32; p++)); do
    if ! port_free "$p"; then
        echo "demo: port $p (DEMO_PORT+$((p - port)), DEMO_PORT=$port) is" \
             "in use on this machine; the demo needs $port to $((port + 32))" \
             "free: pick another range, e.g. DEMO_PORT=$((port + 100))" \
             "build/demo.sh" >&2
        exit 1
    fi
done

if [ "$(id -u)" = 0 ] && [ "${DEMO_INSTALL_DEPS:-1}" != 0 ]; then
    "$top/build/install-deps.sh"
fi
cd "$top"
built() { # every module is in the build tree
    local m
    for m in proxy_protocol certservice certsync macro_gen; do
        [ -f "mod_$m/.libs/mod_$m.so" ] || return 1
    done
}
if ! built; then
    say "building (a few minutes the first time)"
    [ -x configure ] || ./autogen.sh >/dev/null 2>&1
    [ -f Makefile ] || ./configure >/dev/null
    make -j2 >/dev/null
fi

# shellcheck source=t/lib/pool.sh
. "$top/t/lib/pool.sh"
cs_tmpdir certsuite-demo || exit 1
dir=$tmp
on_cleanup() {
    pool_stop_all
}
trap 'echo; say "stopping"; exit 0' INT TERM
fail() {
    echo "demo: $*" >&2
    pool_log_tail 15 >&2 || true
    exit 1
}

POOL_ISSUER=$issuer
pool_init "$dir" "$port" || exit 1
t0=$(date +%s%N)
say "the pool in $dir (as $(id -un)${POOL_USER:+, httpd children as $POOL_USER})"
pool_pki || fail "no PKI"
echo "$(elapsed)  test PKI: CA, CertService's TLS certificate, client certificates, wrapping key"
if [ "$issuer" = acme ]; then
    pool_start_acme || fail "pebble did not start"
    echo "$(elapsed)  pebble           https://127.0.0.1:$((port + 4))/dir  (ACME CA, validation on; DNS: pebble-challtestsrv)"
    issued_by="ACME through pebble, http-01 via HAProxy :$((port + 9)) and the proxies"
else
    issued_by="local CA"
fi
pool_start_certservice || fail "CertService did not start"
echo "$(elapsed)  CertService      https://127.0.0.1:$POOL_CS_PORT  (mutual TLS, SQLite, $issued_by)"
pool_start_backend || fail "the backend did not start"
echo "$(elapsed)  backend          http://127.0.0.1:$POOL_BACKEND_PORT"
for n in 1 2 3; do
    pool_start_proxy "$n" || fail "proxy$n did not start"
    echo "$(elapsed)  proxy$n           TLS 127.0.0.1:$(pool_proxy_port "$n" tls)" \
         " status http://127.0.0.1:$(pool_proxy_port "$n" status)" \
         " agent :$(pool_proxy_port "$n" agent)"
done
pool_start_haproxy || fail "HAProxy did not start"
echo "$(elapsed)  HAProxy          TLS 127.0.0.1:$POOL_LB_PORT  stats http://127.0.0.1:$POOL_LB_STATS_PORT/"

say "adding ${#domains[@]} domains on CertService (admin client certificate)"
declare -A serial
for d in "${domains[@]}"; do
    serial[$d]=$(pool_add_domain "$d") || fail "cannot add $d"
    echo "$(elapsed)  PUT /v1/domains/$d  -> serial ${serial[$d]}"
done

if [ "$POOL_ACTIVATION" = dynamic ]; then
    say "dynamic activation: each proxy syncs and serves the new certificates at once, no restart"
    echo "       (HAProxy's view on the right)"
else
    say "rollout: each proxy syncs, takes the pool's restart lease, drains, restarts, probes"
    echo "       (one proxy at a time: CertServiceMaxUnavailable 1; HAProxy's view on the right)"
fi
declare -A last done_count
deadline=$(( $(date +%s) + 120 ))
while :; do
    stat=$(pool_lb_cmd "show stat" 2>/dev/null || true)
    ready=0
    for n in 1 2 3; do
        # A proxy that served them all still does (a new generation only
        # ever adds them): no more handshakes for it.
        served=${done_count[$n]:-0}
        if [ "$served" != "${#domains[@]}" ]; then
            served=0
            for d in "${domains[@]}"; do
                s=$(pool_served_serial "$n" "$d" 2>/dev/null || true)
                [ "$s" = "${serial[$d]}" ] && served=$((served + 1))
            done
            done_count[$n]=$served
        fi
        state=$(pool_proxy_state "$n" 2>/dev/null || true)
        # UP, DOWN, DRAIN (agent-check said "drain"), ...
        lb=$(awk -F, -v s="proxy$n" \
                 '$1 == "proxies" && $2 == s { split($18, w, " "); print w[1] }' \
                 <<<"$stat")
        if [ "$lb" = UP ] && [ "$served" = "${#domains[@]}" ]; then
            ready=$((ready + 1))
        fi
        line=$(printf 'proxy%s  certsync %-18s haproxy %-6s serves %d/%d' \
                   "$n" "${state:-(restarting)}" "${lb:-?}" "$served" \
                   "${#domains[@]}")
        if [ "${last[$n]:-}" != "$line" ]; then
            last[$n]=$line
            echo "$(elapsed)  $line"
        fi
    done
    [ "$ready" = 3 ] && break
    [ "$(date +%s)" -lt "$deadline" ] || fail "the pool did not converge in 120s"
    sleep 0.3
done
say "every proxy serves every domain ($(elapsed) since the start)"

lb_curl() { # host: the curl command line through the load balancer
    echo "curl --cacert $POOL_TRUST_CA --resolve $1:$POOL_LB_PORT:127.0.0.1 https://$1:$POOL_LB_PORT/"
}
echo
bold "Through the load balancer (add --interface 127.0.0.7 to come from another address):"
for d in "${domains[@]}"; do
    echo "  $(lb_curl "$(host_of "$d")")"
done
echo
bold "Where to look:"
for n in 1 2 3; do
    s=$(pool_proxy_port "$n" status)
    echo "  proxy$n: http://127.0.0.1:$s/certsync-status (JSON; ?metrics)," \
         "/certsync-health, /server-status"
done
echo "  HAProxy: http://127.0.0.1:$POOL_LB_STATS_PORT/"
if command -v socat >/dev/null 2>&1; then
    echo "           echo 'show stat' | socat stdio UNIX-CONNECT:$POOL_DIR/haproxy/haproxy.sock"
fi
echo "  CertService: curl --cacert $POOL_PKI/clients-ca.crt" \
     "--cert $POOL_PKI/admin.crt --key $POOL_PKI/admin.key" \
     "$POOL_CS_URL/v1/domains"
echo "  logs: $POOL_DIR/*/logs/"

case ${DEMO_ONESHOT:-} in
    0) oneshot= ;;
    '') oneshot=1; [ ! -t 0 ] || oneshot= ;;
    *) oneshot=1 ;;
esac
if [ -n "$oneshot" ]; then
    echo
    say "one request per domain through HAProxy, from client address 127.0.0.7"
    for d in "${domains[@]}"; do
        h=$(host_of "$d")
        echo "\$ $(lb_curl "$h") --interface 127.0.0.7"
        pool_lb_request "$h" --interface 127.0.0.7 || fail "request for $h failed"
        echo
    done
    say "a client that skips the load balancer is refused (no PROXY header)"
    p1=$(pool_proxy_port 1 tls)
    echo "\$ curl --interface 127.0.0.7 --cacert ... --resolve shop.example:$p1:127.0.0.1 https://shop.example:$p1/"
    if curl -sS --noproxy '*' --max-time 5 --interface 127.0.0.7 \
            --cacert "$POOL_TRUST_CA" \
            --resolve "shop.example:$p1:127.0.0.1" "https://shop.example:$p1/"
    then
        fail "proxy1 answered a client that is not the load balancer"
    fi
    echo
    grep -h 'PP00004' "$POOL_DIR/proxy1/logs/error_log" || true
    echo
    say "the proxies' access logs (client address from the PROXY header)"
    for n in 1 2 3; do
        sed "s/^/proxy$n: /" "$POOL_DIR/proxy$n/logs/access_log"
    done
    exit 0
fi
echo
say "running: try the commands above; Ctrl-C stops everything"
# Idle on a pipe nobody writes to: read returns at once on INT or TERM, and
# there is no child to stop.  (A "sleep & wait" here, with a wait for that
# sleep in the cleanup, once left the pool running after Ctrl-C.)
if ! mkfifo "$dir/idle" || ! exec {idle}<>"$dir/idle"; then
    fail "cannot open $dir/idle"
fi
while :; do
    read -r -t 3600 -u "$idle" || [ $? -gt 128 ] || fail "cannot read $dir/idle"
done
