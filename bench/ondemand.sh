#!/bin/bash
#
# bench/ondemand.sh: what a flood of random server names costs the pool
# with on-demand issuance on (CertSyncOnDemand, CertServiceOnDemandAsk),
# at an offered 1,000 names per second.
#
# The demo pool (t/lib/pool.sh): CertService (SQLite, local CA) with an
# ask server (t/ondemand/ask-server.py) that refuses every flood name, three
# proxies in dynamic mode behind HAProxy (fallback certificate and the
# store's certificates EC P-256).  t/dynamic/hsclient, paced (-R): OD_HS
# (1,000) new TLS connections per second for OD_SECS (20) seconds, each
# started at its time whatever the others take (OD_CONC, 128, client
# threads), each for a name picked at random from OD_NAMES (200,000)
# random names (so almost every handshake names a new domain), and with
# -1: the client sends its ClientHello and reads the server's whole first
# flight (ServerHello to Finished: the certificate chosen, on-demand's
# note taken, the signature made and sent), then closes, so the client's
# own key agreement, signature check and Finished do not compete with the
# proxies for the cores.  The cases, the proxies restarted between them:
#
#   known       every handshake for a domain the store has (the baseline)
#   off         random names, CertSyncOnDemand off (default certificate)
#   on          random names, CertSyncOnDemand on (rate OD_RATE/s, burst
#               OD_BURST per proxy)
#   off-direct, on-direct   the same two to the three proxies directly,
#               round robin (no HAProxy: its CPU is the client's then)
#
# For each: the offered and achieved rates, the starts that were late
# (more than 10 ms after their time: the client or the machine could not
# keep the rate), p50/p99 time to the server's flight, failed handshakes;
# CPU per handshake (user + system, /proc) of the three proxies (every
# process of each httpd instance: children and certsync daemon), of
# HAProxy and of the client; the proxies' on-demand counters (names
# queued, rate-limited, sent); what reached CertService: POST
# /v1/on-demand requests (its access log), asks made, domains added,
# certificates made (the change feed's new entries: the orders), and
# CertService's CPU seconds per second of the run (plus 2 s).  The load
# average at the start of each case is printed too.
#
# Prints one Markdown table.  Needs the build tree (make), curl, jq,
# openssl, python3, haproxy.  The machine's cores are shared by the
# client, HAProxy, three proxies and CertService: the figures are the
# pool's on this machine, not a proxy's alone.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../t/lib/pool.sh
. "$top/t/lib/pool.sh"

HSRATE=${OD_HS:-1000}
SECS=${OD_SECS:-20}
CONC=${OD_CONC:-128}
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

tree_cpu() { # PID: CPU ticks (user + system) of PID and its children
    local pid t=0 f
    for pid in $1 $(pgrep -P "$1"); do
        f=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || continue
        t=$((t + ${f:-0}))
    done
    echo "$t"
}
cs_cpu() { tree_cpu "$(cat "$POOL_DIR/cs/run/httpd.pid")"; }
px_cpu() { # the three proxies
    local i t=0
    for i in 1 2 3; do
        t=$((t + $(tree_cpu "$(cat "$POOL_DIR/proxy$i/run/httpd.pid")")))
    done
    echo "$t"
}
lb_cpu() { tree_cpu "$(cat "$POOL_DIR/haproxy/haproxy.pid")"; }
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
feed_head() { # the change feed's last sequence number
    local since=0 out
    while :; do
        out=$(pool_cs_curl proxy "/v1/changes?since=$since&limit=1000")
        since=$(jq '.next' <<<"$out")
        [ "$(jq '.more' <<<"$out")" = true ] || break
    done
    echo "$since"
}
field() { # NAME: the number after NAME in hsclient's line ($out)
    sed -n "s/^\(.* \)\{0,1\}$1 \([0-9.]*\).*/\2/p" <<<"$out"
}
clk=$(getconf CLK_TCK)
per_hs() { # TICKS HANDSHAKES: microseconds of CPU per handshake
    echo "scale=0; $1 * 1000000 / $clk / $2" | bc
}

echo "| case | load | offered/s | achieved/s | late starts | p50 ms | p99 ms | failed | proxies' CPU µs/handshake | HAProxy µs/hs | client µs/hs | names queued | rate-limited | sent to CertService | POST /v1/on-demand | asks | domains added | certificates made | CertService CPU s/s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
first=1
direct=$(pool_proxy_port 1 tls),$(pool_proxy_port 2 tls),$(pool_proxy_port 3 tls)
for c in ${OD_CASES:-known off on off-direct on-direct}; do
    extra=''
    port=$POOL_LB_PORT
    case $c in *-direct) port=$direct ;; esac
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
    s0=$(feed_head)
    load=$(cut -d' ' -f1 /proc/loadavg)
    cpu0=$(cs_cpu) px0=$(px_cpu) lb0=$(lb_cpu)
    say "$c: $HSRATE/s for $SECS s, load $load"
    out=$("$HS" -p "$port" -f "$f" -r -1 -R "$HSRATE" -t "$SECS" -c "$CONC")
    px1=$(px_cpu) lb1=$(lb_cpu)
    sleep 2     # what the daemons still had queued goes out
    cpu1=$(cs_cpu)
    say "$out"
    n=$(field handshakes)
    secs=$(field seconds)
    a1=$(curl -sS "http://127.0.0.1:$ask_port/stats" | jq .asks)
    r1=$(grep -c 'POST /v1/on-demand' "$work/cs_access" 2>/dev/null)
    d1=$(pool_cs_curl admin "/v1/domains?limit=1000" | jq '.domains | length')
    s1=$(feed_head)
    lbcol=$(per_hs $((lb1 - lb0)) "$n")
    case $c in *-direct) lbcol="($lbcol)" ;; esac
    cs_load=$(echo "scale=3; ($cpu1 - $cpu0) / $clk / ($secs + 2)" | bc)
    client_us=$(echo "scale=0; $(field cpu) * 1000000 / $n" | bc)
    echo "| $c | $load | $(field offered) | $(field rate) | $(field late) | $(field p50) | $(field p99) | $(field failed) | $(per_hs $((px1 - px0)) "$n") | $lbcol | $client_us | $(od_sum noted) | $(od_sum limited) | $(od_sum sent) | $((r1 - r0)) | $((a1 - a0)) | $((d1 - d0)) | $((s1 - s0)) | $cs_load |"
    proxies stop
done
