#!/bin/bash
#
# bench/scale.sh: vhost activation against dynamic activation, side by side
# in one run, at SCALE_SIZES domains (1,000 10,000 100,000).
#
# For each size a store is filled once (bench/mkstore: certificates from
# the pool's CA, keys sealed to its wrapping certificate) and copied for
# each mode; one proxy of the demo pool (build/pool-lib.sh, with a real
# CertService) starts on it:
#
#   cold start      from starting httpd until a handshake for the last
#                   domain of the manifest presents its certificate
#   RSS             of the parent and of the largest worker process
#                   (after the handshake runs; dynamic: with its cache)
#   handshakes      SCALE_HS full TLS handshakes on new connections with
#                   SCALE_CONC client threads (t/dynamic/hsclient), for
#                   one domain and for random domains of the whole store:
#                   handshakes/s and p99 latency
#   activation      100 domains renewed on CertService while a client loop
#                   runs handshakes: time until all 100 new serials are
#                   served, the longest handshake meanwhile (the restart
#                   stall in vhost mode) and failed handshakes
#
# vhost mode runs up to SCALE_VHOST_MAX domains (10,000): at 100,000 its
# start alone takes minutes (see the issue's figures for stock httpd).
# Prints a Markdown table; with gnuplot, also writes SCALE_PLOT
# (docs/scale.png).  Needs the build tree (make), curl, jq, openssl.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../t/rollout/rollout-lib.sh
. "$top/t/rollout/rollout-lib.sh"

SIZES=${SCALE_SIZES:-1000 10000 100000}
VHOST_MAX=${SCALE_VHOST_MAX:-10000}
HS_N=${SCALE_HS:-3000}
CONC=${SCALE_CONC:-4}
CHANGED=${SCALE_CHANGED:-100}
PLOT=${SCALE_PLOT:-$top/docs/scale.png}
HS=$top/t/dynamic/hsclient
MK=$top/bench/mkstore

die() { echo "scale.sh: $*" >&2; exit 1; }
say() { echo "# $*" >&2; }

(cd "$top" && make -s t/dynamic/hsclient bench/mkstore >/dev/null) \
    || die "cannot build t/dynamic/hsclient and bench/mkstore"

work=$(mktemp -d "${TMPDIR:-/tmp}/certsuite-scale.XXXXXX")
chmod 755 "$work"
cleanup() {
    pool_stop_all >/dev/null 2>&1
    [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

base=$(rt_pick_base) || die "no free ports"
export POOL_SYNC_INTERVAL="2 1" POOL_PROCS=2 POOL_LOGLEVEL=warn
pool_init "$work/pool" "$base" >/dev/null || die "pool_init"
pool_pki >/dev/null || die "pool_pki"
pool_start_certservice || die "CertService"
pool_start_backend || die "backend"
tls=$(pool_proxy_port 1 tls)
cs_seq=0

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
rss_mb() { awk '/^VmRSS/{printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null; }
field() { sed -n "s/.* $1 \([0-9.]*\).*/\1/p" <<<"$2"; }

# The serial of the current version of NAME in STORE (as hsclient prints).
store_serial() {
    openssl x509 -noout -serial -in "$1/live/$2/current/fullchain.pem" \
        | sed 's/^serial=0*//' | tr 'A-F' 'a-f'
}

# cs_put FILE: PUT every name of FILE on one connection; "NAME SERIAL"
# lines on stdout; the last seq in $work/seq
cs_put() {
    local cfg=$work/put.cfg name
    sed 's|.*|url = "'"$POOL_CS_URL"'/v1/domains/&"|' "$1" >"$cfg"
    curl -sS --noproxy '*' --max-time 900 --cacert "$POOL_PKI/clients-ca.crt" \
        --cert "$POOL_PKI/admin.crt" --key "$POOL_PKI/admin.key" -X PUT \
        -H 'Content-Type: application/json' --data-binary '{}' -w '\n' \
        -K "$cfg" >"$work/put.json"
    jq -r 'select(.seq != null) | .seq' "$work/put.json" | sort -n | tail -n 1 \
        >"$work/seq"
    jq -r 'select(.serial != null) | "\(.domain) \(.serial)"' "$work/put.json" \
    | while read -r name s; do
        echo "$name $(tr 'A-F' 'a-f' <<<"$s" | sed 's/^0*//')"
    done
}

# run MODE SIZE: one proxy on a copy of the SIZE store; appends a row
run() {
    local mode=$1 size=$2 d=$POOL_DIR/proxy1 last want t0 got cold pid
    local one rnd child c r loop act stall lfail
    say "$mode, $size domains"
    pool_stop_proxy 1 >/dev/null 2>&1
    rm -rf "$d"
    mkdir -p "$d/logs" "$d/run"
    cp -a "$work/store-$size" "$d/store"
    echo "$cs_seq" >"$d/store/cursor"     # CertService's earlier changes: seen
    last=d$size.scale.test
    want=$(store_serial "$d/store" "$last")
    echo "$last" >"$work/last"
    t0=$(now)
    POOL_ACTIVATION=$mode pool_start_proxy 1 >/dev/null 2>&1
    cold=""
    while [ "$(since "$t0" | cut -d. -f1)" -lt 900 ]; do
        "$HS" -p "$tls" -f "$work/last" -o "$work/last.out" >/dev/null
        if [ "$(awk '{print $2}' "$work/last.out")" = "$want" ]; then
            cold=$(since "$t0")
            break
        fi
        sleep 0.1
    done
    [ -n "$cold" ] || { say "  did not serve $last within 900 s"; return 1; }
    pid=$(cat "$d/run/httpd.pid")
    say "  cold start ${cold}s"

    head -n 1 "$work/names-$size" >"$work/one"
    "$HS" -p "$tls" -f "$work/one" -n 200 -c "$CONC" >/dev/null   # warm
    one=$("$HS" -p "$tls" -f "$work/one" -n "$HS_N" -c "$CONC")
    rnd=$("$HS" -p "$tls" -f "$work/names-$size" -r -n "$HS_N" -c "$CONC")
    say "  one domain:     $one"
    say "  random domains: $rnd"
    child=0
    for c in $(pgrep -P "$pid"); do
        # the sync daemon is a child too; it has no listening sockets
        grep -q "CY00003: sync daemon started (pid $c)" "$d/logs/error_log" \
            && continue
        r=$(rss_mb "$c")
        [ "${r:-0}" -gt "$child" ] && child=$r
    done

    shuf -n "$CHANGED" "$work/names-$size" >"$work/changed"
    rm -f "$work/stop"
    "$HS" -p "$tls" -f "$work/names-$size" -r -c 2 -u "$work/stop" \
        >"$work/loop.out" &
    loop=$!
    sleep 1
    cs_put "$work/changed" >"$work/changed.want"
    cs_seq=$(cat "$work/seq")
    t0=$(now)
    act=""
    while [ "$(since "$t0" | cut -d. -f1)" -lt 900 ]; do
        "$HS" -p "$tls" -f "$work/changed" -c 2 -o "$work/changed.got" >/dev/null
        if [ -z "$(join <(sort "$work/changed.want") <(sort "$work/changed.got") \
                   | awk '$2 != $3')" ]; then
            act=$(since "$t0")
            break
        fi
        sleep 0.5
    done
    sleep 1
    touch "$work/stop"
    wait "$loop"
    stall=$(field max "$(cat "$work/loop.out")")
    lfail=$(field failed "$(cat "$work/loop.out")")
    say "  activation ${act:-(not within 900 s)}s; loop: $(cat "$work/loop.out")"
    printf '| %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s | %s | %s |\n' \
        "$size" "$mode" "$cold" "$(rss_mb "$pid")" "$child" \
        "$(field rate "$one")" "$(field p99 "$one")" \
        "$(field rate "$rnd")" "$(field p99 "$rnd")" \
        "${act:--}" "$stall" "$lfail" \
        "$(grep -c 'AH00493' "$d/logs/error_log")" >>"$work/rows"
    echo "$size $mode $cold $(rss_mb "$pid") $child $(field p99 "$one") $(field p99 "$rnd") ${act:-0} $stall" \
        >>"$work/plot.dat"
    pool_stop_proxy 1 >/dev/null 2>&1
}

: >"$work/rows"
: >"$work/plot.dat"
for size in $SIZES; do
    say "filling a store with $size domains"
    t0=$(now)
    "$MK" "$work/store-$size" "$POOL_PKI/ca.crt" "$POOL_PKI/ca.key" \
        "$POOL_PKI/wrap1.crt" "$size" scale.test 2 || die "mkstore"
    say "  $(since "$t0") s"
    # As the sync daemon leaves them: the workers' group may read the
    # sealed keys (dynamic mode); plaintext keys stay 0600.
    find "$work/store-$size" -name key.cms -exec chmod 640 {} +
    if [ "$(id -u)" = 0 ]; then
        find "$work/store-$size" -name key.cms -exec chgrp "$POOL_GROUP" {} +
    fi
    seq 1 "$size" | sed 's/.*/d&.scale.test/' >"$work/names-$size"
    if [ "$size" -le "$VHOST_MAX" ]; then
        run vhost "$size"
    fi
    run dynamic "$size"
    rm -rf "$work/store-$size"
done

echo
echo "Handshakes: $HS_N per case, $CONC client threads, new connection each;"
echo "activation: $CHANGED domains renewed on CertService, client loop of 2 threads."
echo
echo "| domains | mode | cold start s | parent RSS MB | largest child RSS MB | 1 domain: hs/s / p99 ms | random: hs/s / p99 ms | activation s | longest handshake during activation ms | failed | graceful restarts |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
cat "$work/rows"

if command -v gnuplot >/dev/null 2>&1 && [ -s "$work/plot.dat" ]; then
    gnuplot <<EOF 2>/dev/null && echo && echo "plot: $PLOT"
set terminal pngcairo size 1200,420 font ",10" noenhanced
set output "$PLOT"
set multiplot layout 1,3 title "vhost vs dynamic activation (bench/scale.sh)"
set logscale x
set xlabel "domains"
set key top left
set style data linespoints
set title "cold start (s)"
plot "< grep ' vhost ' $work/plot.dat" using 1:3 title "vhost" lw 2, \
     "< grep ' dynamic ' $work/plot.dat" using 1:3 title "dynamic" lw 2
set title "largest worker RSS (MB)"
plot "< grep ' vhost ' $work/plot.dat" using 1:5 title "vhost" lw 2, \
     "< grep ' dynamic ' $work/plot.dat" using 1:5 title "dynamic" lw 2
set title "handshake p99 (ms), random domains"
plot "< grep ' vhost ' $work/plot.dat" using 1:7 title "vhost" lw 2, \
     "< grep ' dynamic ' $work/plot.dat" using 1:7 title "dynamic" lw 2, \
     "< grep ' dynamic ' $work/plot.dat" using 1:6 title "dynamic, 1 domain" lw 1 dt 2
unset multiplot
EOF
fi
