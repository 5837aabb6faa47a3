#!/bin/bash
#
# bench/resumption.sh: TLS handshakes through the pool for new clients and
# for resuming clients, side by side (issue 16, part 1).
#
# A demo pool of t/lib/pool.sh on 127.0.0.1 (CertService, backend, three
# proxies, HAProxy round-robin with the PROXY protocol), in RES_MODE
# (dynamic by default: one catch-all virtual host).  The pool's ticket
# keys are shared (CertSyncTicketKeys On, the default).  For each
# protocol version of RES_VERSIONS, openssl s_time through HAProxy, RES_
# CLIENTS processes at once for RES_SECONDS:
#
#   new      every connection a full handshake (s_time -new), one
#            request (GET /, a small page from the backend) on each
#   resume   every connection after the first resumes the first one's
#            session with its ticket (s_time -reuse); HAProxy sends each
#            to the next proxy, so nearly every resumption lands on a proxy
#            that did not issue the ticket
#
# Reported per run: handshakes/s (all clients), the share that s_time saw
# resumed ('r' of its progress marks), and the proxies' CPU per handshake
# (user + system time of every process of the three httpds, from
# /proc/PID/stat, over the run, divided by the handshakes).  The clients,
# HAProxy and the proxies share the machine: compare the columns of one
# run, not absolute figures across machines.
#
# Usage: bench/resumption.sh   (build first: make; needs openssl, curl,
#                               jq, haproxy)
# Environment [defaults]:
#   RES_MODE       vhost or dynamic [dynamic]
#   RES_VERSIONS   [tls1_3 tls1_2]
#   RES_SECONDS    seconds per run [10]
#   RES_CLIENTS    s_time processes at once [2]
#   CERTSUITE_KEEP=1 keeps the pool's directory
set -u
export LC_ALL=C

top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../t/lib/pool.sh
. "$top/t/lib/pool.sh"

MODE=${RES_MODE:-dynamic}
VERSIONS=${RES_VERSIONS:-tls1_3 tls1_2}
SECONDS_RUN=${RES_SECONDS:-10}
CLIENTS=${RES_CLIENTS:-2}
DOMAIN=shop.bench.test
HZ=$(getconf CLK_TCK)

for p in openssl curl jq; do
    command -v "$p" >/dev/null || die "$p not found"
done

cs_tmpdir certsuite-resumption || die "mktemp failed"
work=$tmp
chmod 755 "$work"
on_cleanup() { pool_stop_all >/dev/null 2>&1; }

# CPU ticks (user + system) of every process of the three proxies' httpds
proxy_ticks() {
    local d pid total=0 t
    for d in proxy1 proxy2 proxy3; do
        for pid in $(pgrep -f "$POOL_DIR/$d/httpd.conf"); do
            t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null)
            total=$((total + ${t:-0}))
        done
    done
    echo "$total"
}

# run VERSION new|reuse: "handshakes resumed_share cpu_ms_per_handshake"
run() {
    local v=$1 how=$2 i t0 t1 conns=0 reused=0 marks c r
    t0=$(proxy_ticks)
    for ((i = 0; i < CLIENTS; i++)); do
        # -www: one request each, read to its end, so that TLS 1.3's
        # tickets (sent after the handshake) arrive before the close
        openssl s_time -connect "127.0.0.1:$POOL_LB_PORT" "-$v" "-$how" \
            -www / -time "$SECONDS_RUN" >"$work/st.$i" 2>&1 &
    done
    wait
    t1=$(proxy_ticks)
    for ((i = 0; i < CLIENTS; i++)); do
        c=$(sed -n 's/^\([0-9]*\) connections in .* real seconds.*/\1/p' \
            "$work/st.$i" | tail -n 1)
        conns=$((conns + ${c:-0}))
        # progress marks: '*' a new session, 'r' a reused one
        marks=$(grep -v ' ' "$work/st.$i" | tr -cd '*r')
        r=$(tr -cd 'r' <<<"$marks" | wc -c)
        reused=$((reused + r))
    done
    awk -v c="$conns" -v r="$reused" -v d="$((t1 - t0))" -v hz="$HZ" \
        -v s="$SECONDS_RUN" 'BEGIN {
            printf "%.0f %.1f %.2f\n", c / s, c ? 100 * r / c : 0,
                   c ? 1000 * d / hz / c : 0 }'
}

echo "# bench/resumption.sh: $MODE mode, $CLIENTS clients, ${SECONDS_RUN}s a run, $(nproc) CPUs"
base=$(pool_pick_base) || die "no free ports"
export POOL_ACTIVATION=$MODE POOL_SYNC_INTERVAL="5 1"
pool_init "$work/pool" "$base" || die "pool_init"
pool_pki >/dev/null || die "pool_pki"
pool_start_certservice || die "CertService did not start"
pool_start_backend || die "backend did not start"
serial=$(pool_add_domain "$DOMAIN") || die "cannot add $DOMAIN"
for px in 1 2 3; do
    pool_start_proxy "$px" || die "proxy $px did not start"
done
pool_start_haproxy || die "HAProxy did not start"
for ((i = 0; i < 120; i++)); do
    k=0
    for px in 1 2 3; do
        [ "$(pool_proxy_status "$px" | jq -r '.ticket_keys.issuing // empty')" ] \
            && k=$((k + 1))
    done
    [ $k = 3 ] && break
    sleep 0.5
done
[ $k = 3 ] || die "the proxies do not hold the pool's ticket keys"
sleep 2

printf '%-8s %-7s %12s %9s %14s\n' version clients "handshakes/s" \
    "resumed%" "proxy CPU ms/hs"
for v in $VERSIONS; do
    read -r hn rn cn < <(run "$v" new)
    read -r hr rr cr < <(run "$v" reuse)
    printf '%-8s %-7s %12s %9s %14s\n' "$v" new "$hn" "$rn" "$cn"
    printf '%-8s %-7s %12s %9s %14s\n' "$v" resume "$hr" "$rr" "$cr"
    awk -v v="$v" -v a="$hn" -v b="$hr" -v c="$cn" -v d="$cr" 'BEGIN {
        printf "# %s: resuming %.1fx the handshakes/s of new clients, %.1fx less proxy CPU each\n", v, (a ? b / a : 0), (d > 0 ? c / d : 0) }'
done
