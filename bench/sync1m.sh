#!/bin/bash
#
# bench/sync1m.sh STORE PKI: the sync daemon's part of bench/scale.sh at a
# size where bench/mkstore cannot fill a store in the time there is
# (issue 18: 1,000,000 domains; mkstore made 145 to 430 a second on the
# loaded 2-core machine): one proxy in dynamic mode with a real CertService
# on STORE (moved into the proxy, deleted at the end), made with the pool
# PKI in PKI (a bench/scale.sh run's pool/pki); REAL (300,000) of its
# domains dN.scale.test have versions from mkstore, the rest may be stubs
# (bench/fill_stubs.py: a directory and the current link, what the daemon
# reads; fill_stubs.py also writes the manifest and the cursor).
#
# Times the daemon's start (its prune of the whole store and first cycle)
# to idle, renews CHANGED (100) of the first REAL domains on CertService
# with a client loop on them, and prints how long until the proxy presents
# every new serial, then the status (health, degraded, generation slots),
# a ?domains page, the manifest and the sync errors logged (CY00004,
# CY00011, CY00027). Logs are copied to $SYNC1M_KEEP (/tmp/sync1m).
#
# The key files of the REAL domains are made readable by httpd's group
# first, as the sync daemon and bench/scale.sh leave them (a run that
# skipped it had every old version answered with the fallback: CY00034).
# The client loop verifies each chain against the pool's CA and the name
# (hsclient -A): a handshake answered with the fallback counts as failed.
#
# SYNC1M_TOP=DIR: the modules of another build tree (say, /work/main, for
# a before/after side by side); SYNC1M_KEEP_STORE=1: the store is moved
# back to STORE at the end (its cursor reset to 0, for the next run);
# SYNC1M_PRUNE_WAIT=S: wait up to S seconds for the end of the start's
# prune in steps (CY00230) and print it.
#
#   SCALE_SIZES=1000000 SCALE_VHOST_MAX=1 bench/scale.sh   # interrupted:
#   mv $tmp/store-1000000 /tmp/1m/store; cp -a $tmp/pool/pki /tmp/1m/pki
#   python3 bench/fill_stubs.py /tmp/1m/store 1000000
#   REAL=320000 nice -n 10 bench/sync1m.sh /tmp/1m/store /tmp/1m/pki
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
STORE=${1:?usage: bench/sync1m.sh STORE PKI (see the header)}
PKI=${2:?usage: bench/sync1m.sh STORE PKI}
KEEP=${SYNC1M_KEEP:-/tmp/sync1m}
mkdir -p "$KEEP"
. "$top/t/lib/pool.sh"
HS=$top/t/dynamic/hsclient
CHANGED=${CHANGED:-100}
REAL=${REAL:-300000}
say() { echo "# $(date +%T) $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
rss_mb() { awk '/^VmRSS/{printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null; }

cs_tmpdir certsuite-1m || die "mktemp failed"
work=$tmp
chmod 755 "$work"
on_cleanup() {
    pool_stop_all >/dev/null 2>&1
    rm -rf "$KEEP/logs-proxy2"
    cp -a "$POOL_DIR/proxy2/logs" "$KEEP/logs-proxy2" 2>/dev/null
    cp "$POOL_DIR/proxy2/store/manifest" "$KEEP/manifest.after" 2>/dev/null
    if [ "${SYNC1M_KEEP_STORE:-0}" = 1 ] && [ -d "$POOL_DIR/proxy2/store" ]; then
        echo 0 >"$POOL_DIR/proxy2/store/cursor"
        mv "$POOL_DIR/proxy2/store" "$STORE"
    fi
}
base=$(pool_pick_base) || die "no free ports"
export POOL_SYNC_INTERVAL="2 1" POOL_PROCS=2 POOL_LOGLEVEL=warn
pool_init "$work/pool" "$base" >/dev/null || die "pool_init"
if [ -n "${SYNC1M_TOP:-}" ]; then
    POOL_TOP=$(cd "$SYNC1M_TOP" && pwd)
    say "modules of $POOL_TOP ($(git -C "$POOL_TOP" log --oneline -1 2>/dev/null | cut -c1-60))"
fi
mkdir -p "$POOL_PKI" && cp -a "$PKI"/. "$POOL_PKI/" || die "pki"
pool_start_certservice || die "CertService"
pool_start_backend || die "backend"

d=$POOL_DIR/proxy2
rm -rf "$d"; mkdir -p "$d/logs" "$d/run"
mv "$STORE" "$d/store" || die "store"
# the workers (httpd's Group) read the sealed keys of the real domains
seq 1 "$REAL" | sed "s|.*|$d/store/live/d&.scale.test|" \
    | xargs -r sh -c 'g=$0; find "$@" -mindepth 2 -maxdepth 2 -name "key.[cs]*" \
        -exec chmod 640 {} + -exec chgrp "$g" {} +' "$POOL_GROUP" 2>/dev/null
say "key files of d1..d$REAL: $(stat -c '%A %G' "$(readlink -f "$d/store/live/d1.scale.test/current")/key.seal" 2>/dev/null)"
say "manifest $(stat -c %s "$d/store/manifest") bytes, $(($(wc -l <"$d/store/manifest") - 1)) lines"
t0=$(now)
POOL_ACTIVATION=dynamic pool_start_proxy 2 >/dev/null 2>"$work/start.err" \
    || { cat "$work/start.err" >&2; die "proxy 2"; }
log=$d/logs/error_log
# the daemon: the parent's child that is not a worker (root)
dpid() { ps -o pid=,user= --ppid "$(cat "$d/run/httpd.pid")" | awk '$2 == "root" {print $1; exit}'; }
say "proxy 2 started in $(since "$t0") s; daemon pid $(dpid)"
# the daemon's start (prune of the whole store) and first cycle
for ((i = 0; i < 1800; i++)); do
    st=$(pool_proxy_status 2 2>/dev/null)
    s=$(jq -r .state <<<"$st" 2>/dev/null)
    [ "$s" = idle ] && break
    [ $((i % 30)) = 0 ] && say "  state $s, daemon RSS $(rss_mb "$(dpid)") MB, CPU $(ps -o times= -p "$(dpid)" 2>/dev/null) s"
    sleep 1
done
say "daemon idle after $(since "$t0") s: $(jq -c '{state, health, load_balancer, degraded, degraded_reasons, cursor}' <<<"$st")"
say "  daemon RSS $(rss_mb "$(dpid)") MB, CPU $(ps -o times= -p "$(dpid)") s"

# 100 renewals (domains mkstore finished), a client loop on them meanwhile
seq 1 "$REAL" | shuf -n "$CHANGED" | sed 's/.*/d&.scale.test/' >"$work/changed"
cfg=$work/put.cfg
sed 's|.*|url = "'"$POOL_CS_URL"'/v1/domains/&"|' "$work/changed" >"$cfg"
rm -f "$work/stop"
# the old versions first: every one served, the right certificate
say "before the renewals, each changed name once: $("$HS" -p "$(pool_proxy_port 2 tls)" -f "$work/changed" -A "$POOL_PKI/ca.crt")"
"$HS" -p "$(pool_proxy_port 2 tls)" -f "$work/changed" -r -c 2 -u "$work/stop" -A "$POOL_PKI/ca.crt" >"$work/loop" &
cpu0=$(ps -o times= -p "$(dpid)")
curl -sS --noproxy '*' --max-time 900 --cacert "$POOL_PKI/clients-ca.crt" \
    --cert "$POOL_PKI/admin.crt" --key "$POOL_PKI/admin.key" -X PUT \
    -H 'Content-Type: application/json' --data-binary '{}' -w '\n' \
    -K "$cfg" >"$work/put.json"
jq -r 'select(.serial != null) | "\(.domain) \(.serial)"' "$work/put.json" \
| while read -r name s; do echo "$name $(tr 'A-F' 'a-f' <<<"$s" | sed 's/^0*//')"; done >"$work/want"
say "PUT $(wc -l <"$work/want") domains on CertService"
t1=$(now); act=
while [ "$(since "$t1" | cut -d. -f1)" -lt 600 ]; do
    "$HS" -p "$(pool_proxy_port 2 tls)" -f "$work/changed" -c 2 -o "$work/got" >/dev/null
    if [ -z "$(join <(sort "$work/want") <(sort "$work/got") | awk '$2 != $3')" ] \
       && [ "$(wc -l <"$work/got")" -ge "$(wc -l <"$work/want")" ]; then
        act=$(since "$t1"); break
    fi
    sleep 0.5
done
sleep 1; touch "$work/stop"; wait
say "activation: ${act:-NOT within 600 s} s after the PUTs returned; loop: $(cat "$work/loop")"
st=$(pool_proxy_status 2)
say "status: $(jq -c '{state, health, load_balancer, degraded, degraded_reasons, cursor, service_cursor, last_error, prune_error, gen: .dynamic.generation_slots, changes: .dynamic.changes, revalidated: .dynamic.revalidated}' <<<"$st")"
say "daemon RSS $(rss_mb "$(dpid)") MB, CPU $(ps -o times= -p "$(dpid)") s (before the PUTs: $cpu0)"
say "?domains&limit=3: $(pool_proxy_status 2 'domains&limit=3' | jq -c '.dynamic | {served, next}')"
say "?domains&after=d999999.scale.test: $(pool_proxy_status 2 'domains&after=d999999.scale.test&limit=3' | jq -c '.dynamic | {served, next}')"
say "manifest after: $(stat -c %s "$d/store/manifest") bytes, $(($(wc -l <"$d/store/manifest") - 1)) lines; head: $(sed -n 2p "$d/store/manifest")"
say "log: CY00004 $(grep -c CY00004 "$log"), CY00011 $(grep -c CY00011 "$log"), CY00027 $(grep -c CY00027 "$log"), CY00045 $(grep -c CY00045 "$log")"
grep -h 'CY00004\|CY00011\|CY00027\|CY00005\|CY00028' "$log" | tail -n 6 | cut -c1-300 >&2
say "workers RSS: $(for c in $(pgrep -P "$(cat "$d/run/httpd.pid")"); do echo -n "$c:$(rss_mb "$c") "; done)"
if [ -n "${SYNC1M_PRUNE_WAIT:-}" ]; then
    for ((i = 0; i < SYNC1M_PRUNE_WAIT; i++)); do
        grep -q 'CY00230\|CY00231' "$log" && break
        sleep 1
    done
    say "start's prune: $( (grep -h 'CY00230\|CY00231' "$log" || echo "not done within $SYNC1M_PRUNE_WAIT s") | cut -c1-400)"
    say "daemon RSS $(rss_mb "$(dpid)") MB, CPU $(ps -o times= -p "$(dpid)") s; status $(pool_proxy_status 2 | jq -c '{state, prune_error, cursor}')"
fi
say "RSS at the end (the daemon first): $(for c in $(pgrep -P "$(cat "$d/run/httpd.pid")"); do echo -n "$c:$(rss_mb "$c") "; done)"
