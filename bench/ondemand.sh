#!/bin/bash
#
# bench/ondemand.sh: what a flood of random server names costs the pool
# with on-demand issuance on (CertSyncOnDemand, CertServiceOnDemandAsk).
#
# The demo pool (t/lib/pool.sh): CertService (SQLite, local CA) with an
# ask server (t/ondemand/ask-server.py) that refuses every flood name, three
# proxies in dynamic mode behind HAProxy.  t/dynamic/hsclient runs
# OD_N (20,000) TLS handshakes through HAProxy, OD_CONC (8) client
# threads, each for a name picked at random from OD_NAMES (200,000)
# random names (so almost every handshake names a new domain), in three
# cases, the proxies restarted between them:
#
#   known     every handshake for a domain the store has (the baseline)
#   off       random names, CertSyncOnDemand off (default certificate)
#   on        random names, CertSyncOnDemand on (rate OD_RATE/s, burst
#             OD_BURST per proxy)
#   off-direct, on-direct   the same two, to proxy 1 directly (no HAProxy:
#             the client and one proxy share the cores; a higher offered
#             rate, about 1,000 names per second on 2 vCPUs)
#
# For each: handshakes per second, p50/p99 latency, failed handshakes;
# the proxies' on-demand counters (names queued, rate-limited, sent);
# what reached CertService: POST /v1/on-demand requests (its access log),
# asks made, domains added, and CertService's CPU seconds (every httpd
# process of its instance, from /proc) per second of the run.
#
# Prints one Markdown table.  Needs the build tree (make), curl, jq,
# openssl, python3, haproxy.  The machine's cores are shared by the
# client, HAProxy, three proxies and CertService: the figures are the
# pool's on this machine, not a proxy's alone.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../t/lib/pool.sh
. "$top/t/lib/pool.sh"

N=${OD_N:-20000}
CONC=${OD_CONC:-8}
NAMES=${OD_NAMES:-200000}
RATE=${OD_RATE:-5}
BURST=${OD_BURST:-20}
HS=$top/t/dynamic/hsclient

say() { echo "# $*" >&2; }

(cd "$top" && make -s t/dynamic/hsclient >/dev/null) \
    || die "cannot build t/dynamic/hsclient"
cs_tmpdir certsuite-odbench || die "mktemp failed"
work=$tmp
chmod 755 "$work"
ask_pid=''
on_cleanup() {
    pool_stop_all >/dev/null 2>&1
    stop_pids "$ask_pid"
}

base=$(pool_pick_base) || die "no free ports"
ask_port=$((base + 5))
export POOL_ACTIVATION=dynamic POOL_PROCS=2 POOL_SYNC_INTERVAL="10 0"
export POOL_LOGLEVEL="warn"
pool_init "$work/pool" "$base" || die "pool_init"
pool_pki >/dev/null || die "pool_pki"
python3 "$top/t/ondemand/ask-server.py" "$ask_port" 'ok-[a-z0-9-]*\.od\.test' &
ask_pid=$!
wait_port "$ask_port" 10 || die "the ask server did not start"
export POOL_CS_EXTRA="CertServiceOnDemandAsk http://127.0.0.1:$ask_port/allow 2
CustomLog \"$work/cs_access\" \"%r %>s\""
pool_start_certservice || die "CertService did not start"
pool_start_backend || die "backend did not start"
pool_add_domain known.od.test >/dev/null || die "known.od.test not issued"

od -An -v -tx4 -N$((NAMES * 4)) /dev/urandom | tr -s ' ' '\n' | grep . \
    | awk '{ printf "r%s-%d.flood.test\n", $1, NR }' >"$work/random"
yes known.od.test | head -n 1000 >"$work/known"

cs_cpu() { # CPU seconds (user + system) of CertService's httpd processes
    local ppid pid t=0 f
    ppid=$(cat "$POOL_DIR/cs/run/httpd.pid")
    for pid in $ppid $(pgrep -P "$ppid"); do
        f=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || continue
        t=$((t + ${f:-0}))
    done
    echo "$t"
}
proxies() { # start|stop [EXTRA]
    local i
    for i in 1 2 3; do
        if [ "$1" = stop ]; then
            pool_stop_proxy "$i"
        else
            POOL_PX_EXTRA=${2:-} pool_start_proxy "$i" || die "proxy $i"
        fi
    done
    if [ "$1" = start ]; then
        for ((i = 0; i < 100; i++)); do
            [ -e "$POOL_DIR/proxy3/store/live/known.od.test/current" ] \
                && [ -e "$POOL_DIR/proxy1/store/live/known.od.test/current" ] \
                && [ -e "$POOL_DIR/proxy2/store/live/known.od.test/current" ] \
                && break
            sleep 0.2
        done
        sleep 2     # HAProxy's checks see the proxies up
    fi
}
od_sum() { # FIELD: the on-demand counter summed over the three proxies
    local i v t=0
    for i in 1 2 3; do
        v=$(pool_proxy_status "$i" | jq ".dynamic.on_demand.$1 // 0")
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
clk=$(getconf CLK_TCK)

echo "| case | handshakes/s | p50 ms | p99 ms | failed | names queued | rate-limited | sent to CertService | POST /v1/on-demand | asks | domains added | CertService CPU s/s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
first=1
for c in known off on off-direct on-direct; do
    extra=''
    port=$POOL_LB_PORT
    case $c in *-direct) port=$(pool_proxy_port 1 tls) ;; esac
    case $c in on*) extra="CertSyncOnDemand On
CertSyncOnDemandRate $RATE $BURST" ;; esac
    proxies start "$extra"
    [ "$first" = 1 ] && { pool_start_haproxy >/dev/null || die "HAProxy"; }
    first=0
    f=$work/random
    [ "$c" = known ] && f=$work/known
    d0=$(pool_cs_curl admin "/v1/domains?limit=1000" | jq '.domains | length')
    a0=$(curl -sS "http://127.0.0.1:$ask_port/stats" | jq .asks)
    r0=$(grep -c 'POST /v1/on-demand' "$work/cs_access" 2>/dev/null)
    cpu0=$(cs_cpu)
    say "$c: $N handshakes"
    out=$("$HS" -p "$port" -f "$f" -r -n "$N" -c "$CONC")
    sleep 2     # what the daemons still had queued goes out
    cpu1=$(cs_cpu)
    secs=$(sed -n 's/.* seconds \([0-9.]*\) .*/\1/p' <<<"$out")
    rate=$(sed -n 's/.* rate \([0-9.]*\)\/s.*/\1/p' <<<"$out")
    p50=$(sed -n 's/.* p50 \([0-9.]*\) ms.*/\1/p' <<<"$out")
    p99=$(sed -n 's/.* p99 \([0-9.]*\) ms.*/\1/p' <<<"$out")
    failed=$(sed -n 's/.* failed \([0-9]*\) .*/\1/p' <<<"$out")
    a1=$(curl -sS "http://127.0.0.1:$ask_port/stats" | jq .asks)
    r1=$(grep -c 'POST /v1/on-demand' "$work/cs_access" 2>/dev/null)
    d1=$(pool_cs_curl admin "/v1/domains?limit=1000" | jq '.domains | length')
    load=$(echo "scale=3; ($cpu1 - $cpu0) / $clk / ($secs + 2)" | bc)
    echo "| $c | $rate | $p50 | $p99 | $failed | $(od_sum noted) | $(od_sum limited) | $(od_sum sent) | $((r1 - r0)) | $((a1 - a0)) | $((d1 - d0)) | $load |"
    proxies stop
done
