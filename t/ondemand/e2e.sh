#!/bin/bash
#
# t/ondemand/e2e.sh: on-demand issuance end to end, on the demo pool
# (t/lib/pool.sh): a real CertService (SQLite, local CA: no ACME CA is
# needed for the on-demand path), three proxies in dynamic mode with
# CertSyncOnDemand on behind HAProxy, an "ask" server
# (t/ondemand/ask-server.py) that allows only names ok-*.od.test, and a
# webhook receiver (t/acme/notify-receiver.py) for the events.
#
#   1. CertService without CertServiceOnDemandAsk says so at startup
#      (CS00070), and POST /v1/on-demand refuses an unknown name; a proxy
#      may call it, a client without a role may not.
#   2. The first handshake for an allowed name, through HAProxy, gets the
#      default certificate; every proxy then serves CertService's
#      certificate for it within one sync interval of that FIRST
#      HANDSHAKE (the proxies watch the change feed: CertSyncWatch on,
#      OD_WATCH=off to see the suite without it), the proxies that did
#      not see the handshake woken by their watch, and the proxy that saw
#      it within a few seconds.
#   3. A refused name is asked about once: later handshakes (every proxy,
#      again and again) are answered from the proxies' negative caches
#      and CertService's verdicts, the ask server sees one request; one
#      on-demand-refused event reaches the webhook, signed.
#   4. A flood of OD_FLOOD (3,000) random names through HAProxy: every
#      handshake completes (default certificate), zero domains are added,
#      the ask server is hit at most the proxies' rate limits allow, a
#      known domain keeps being served during the flood, and the proxies'
#      counters show the names that were rate-limited.
#   5. Bad values of the new directives are refused, naming the value.
#
# CERTSUITE_KEEP=1 keeps the temporary directory (t/lib/certsuite.sh).
# Runs as root (workers as nobody) or as a normal user.  Needs the build
# tree's modules and t/dynamic/hsclient, curl, jq, openssl, python3,
# haproxy.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/pool.sh
. "$top/t/lib/pool.sh"   # and t/lib/certsuite.sh

INTERVAL=${OD_INTERVAL:-6}
WATCH=${OD_WATCH:-on}
FLOOD=${OD_FLOOD:-3000}
RATE=5
BURST=20
HS=${HSCLIENT:-$top/t/dynamic/hsclient}
tap_init

for p in curl jq openssl python3 haproxy; do
    command -v "$p" >/dev/null || { echo "1..0 # SKIP $p not found"; exit 0; }
done
[ -x "$HS" ] || { echo "Bail out! $HS not built (make t/dynamic/hsclient)"; exit 1; }

cs_tmpdir certsuite-od || { echo "Bail out! mktemp failed"; exit 1; }
work=$tmp
chmod 755 "$work"
ask_pid='' rcv_pid=''
on_cleanup() {
    pool_stop_all >/dev/null 2>&1
    stop_pids "$ask_pid" "$rcv_pid"
    if [ "$nfail" != 0 ]; then
        pool_log_tail 30 | sed 's/^/# /'
    fi
}

asks() { curl -sS --noproxy '*' --max-time 5 "http://127.0.0.1:$ask_port/stats"; }
domains_count() {
    pool_cs_curl admin "/v1/domains?limit=1000" | jq '.domains | length'
}
od_post() { # WHO BODY: POST /v1/on-demand; prints the body, then the code
    pool_cs_curl "$1" /v1/on-demand -X POST -H 'Content-Type: application/json' \
        --data-binary "$2" -w '\n%{http_code}'
}
lb_serial() { # NAME: the serial served through HAProxy
    echo "$1" >"$work/one"
    "$HS" -p "$POOL_LB_PORT" -f "$work/one" -o "$work/one.out" >/dev/null
    awk '{print $2}' "$work/one.out"
}
store_has() { # N NAME: proxy N's store serves NAME (its current version)
    [ -e "$POOL_DIR/proxy$1/store/live/$2/current" ]
}

echo "# on-demand issuance, 3 proxies, sync interval ${INTERVAL}s, CertSyncWatch $WATCH"
base=$(pool_pick_base) || bail "no free ports"
ask_port=$((base + 5))
rcv_port=$((base + 6))
export POOL_ACTIVATION=dynamic POOL_PROCS=2
export POOL_SYNC_INTERVAL="$INTERVAL 0"
export POOL_PX_EXTRA="CertSyncOnDemand On
CertSyncOnDemandRate $RATE $BURST
CertSyncWatch $WATCH"
pool_init "$work/pool" "$base" || bail "pool_init"
pool_pki >/dev/null || bail "pool_pki"
fallback=$(openssl x509 -in "$POOL_PKI/fallback.crt" -noout -serial \
    | sed 's/^serial=//' | _pool_serial_norm)

# --- 1. off by default ---------------------------------------------------------
section "1. without CertServiceOnDemandAsk"
pool_start_certservice || bail "CertService did not start"
grep -q 'CS00070.*on-demand issuance is off' "$POOL_DIR/cs/logs/error_log"
okif $? "startup says on-demand is off (CS00070)"
out=$(od_post proxy '{"domains": ["ok-0.od.test"], "host": "t"}')
is "$(tail -n 1 <<<"$out")" 200 "POST /v1/on-demand answers a proxy"
is "$(head -n 1 <<<"$out" | jq -r '.results[0].status')" refused \
    "... and refuses the name (secure default)"
is "$(od_post norole '{"domains": ["ok-0.od.test"]}' | tail -n 1)" 403 \
    "a client without a role may not call it"
is "$(pool_cs_curl proxy /v1/on-demand -o /dev/null -w '%{http_code}')" 405 \
    "GET is not allowed"
is "$(domains_count)" 0 "no domain added"
_pool_stop_httpd "$POOL_DIR/cs"

# --- CertService with the ask, the pool ------------------------------------------
python3 "$top/t/ondemand/ask-server.py" "$ask_port" 'ok-[a-z0-9-]*\.od\.test' &
ask_pid=$!
head -c 32 /dev/urandom | base64 >"$work/secret"
chmod 644 "$work/secret"
python3 "$top/t/acme/notify-receiver.py" "$rcv_port" "$work/secret" \
    "$work/events.log" 0 &
rcv_pid=$!
wait_port "$ask_port" 10 || bail "the ask server did not start"
wait_port "$rcv_port" 10 || bail "the webhook receiver did not start"
export POOL_CS_EXTRA="CertServiceOnDemandAsk http://127.0.0.1:$ask_port/allow 2
CertServiceNotifyURL http://127.0.0.1:$rcv_port/hook
CertServiceNotifySecret \"$work/secret\""
pool_start_certservice || bail "CertService did not start with the ask"
grep -q "CS00071.*127.0.0.1:$ask_port/allow" "$POOL_DIR/cs/logs/error_log"
okif $? "startup names the ask URL and the budgets (CS00071)"
pool_start_backend || bail "backend did not start"
pool_add_domain known.od.test >/dev/null || bail "known.od.test not issued"
for i in 1 2 3; do pool_start_proxy "$i" || bail "proxy $i did not start"; done
pool_start_haproxy || bail "HAProxy did not start"
for ((i = 0; i < 100; i++)); do
    s=0
    for p in 1 2 3; do store_has "$p" known.od.test && s=$((s + 1)); done
    [ $s = 3 ] && break
    sleep 0.2
done
is "$s" 3 "the three proxies serve known.od.test"
grep -q 'CY00176.*on-demand: new names' "$POOL_DIR/proxy1/logs/error_log"
okif $? "each proxy logs on-demand on at startup (CY00176)"

# --- 2. one allowed name ---------------------------------------------------------
section "2. the first handshake for an allowed name"
name=ok-first.od.test
wake0=0
for p in 1 2 3; do
    w=$(pool_proxy_status "$p" | jq '.counters.watch_wakeups // 0')
    wake0=$((wake0 + ${w:-0}))
done
t0=$(date +%s.%N)
s=$(lb_serial "$name")
is "$s" "$fallback" "the first handshake (through HAProxy) gets the default certificate"
issued='' first='' all=''
for ((i = 0; i < (INTERVAL + 10) * 10; i++)); do
    now=$(date +%s.%N)
    if [ -z "$issued" ] && pool_cs_serial "$name" >/dev/null 2>&1; then
        issued=$(echo "$now - $t0" | bc)
    fi
    s=0
    for p in 1 2 3; do store_has "$p" "$name" && s=$((s + 1)); done
    if [ -z "$first" ] && [ $s -ge 1 ]; then first=$(echo "$now - $t0" | bc); fi
    if [ $s = 3 ]; then all=$(echo "$now - $t0" | bc); break; fi
    sleep 0.1
done
diag "CertService issued $name ${issued:-never} s after the first handshake;" \
    "first proxy ${first:-never} s, all three ${all:-never} s"
[ -n "$issued" ] && [ "$(echo "$issued <= 2" | bc)" = 1 ]
okif $? "CertService issued it within 2 s of the first handshake (${issued:-never} s)"
[ -n "$first" ] && [ "$(echo "$first <= 4" | bc)" = 1 ]
okif $? "the proxy that saw the handshake has it within 4 s (${first:-never} s)"
[ -n "$all" ] && [ -n "$issued" ] \
    && [ "$(echo "$all - $issued <= $INTERVAL + 1" | bc)" = 1 ]
okif $? "all three have it within one sync interval of its issue ($all s - $issued s <= ${INTERVAL}s + 1s of work)"
[ -n "$all" ] && [ "$(echo "$all <= $INTERVAL" | bc)" = 1 ]
okif $? "all three have it within one sync interval of its FIRST HANDSHAKE (${all:-never} s <= ${INTERVAL}s)"
wake1=0
for p in 1 2 3; do
    w=$(pool_proxy_status "$p" | jq '.counters.watch_wakeups // 0')
    wake1=$((wake1 + ${w:-0}))
done
diag "the proxies' watches started $((wake1 - wake0)) cycles early meanwhile;" \
    "all three served it $(echo "${all:-0} - ${issued:-0}" | bc) s after its issue"
[ $((wake1 - wake0)) -ge 1 ]
okif $? "the watch woke the proxies that did not see the handshake (watch_wakeups +$((wake1 - wake0)) >= 1)"
want=$(pool_cs_serial "$name")
for p in 1 2 3; do
    is "$(pool_served_serial "$p" "$name")" "$want" \
        "proxy $p serves CertService's certificate for $name"
done
is "$(asks | jq -r --arg d "$name" '.domains[$d]')" 1 \
    "the ask server was asked about it once"
grep -q "CS00075.*$name issued" "$POOL_DIR/cs/logs/error_log"
okif $? "CertService logged the on-demand issue (CS00075)"
grep -q "CY00186.*$name is served" "$POOL_DIR"/proxy*/logs/error_log
okif $? "a proxy logged it served (CY00186)"

# --- 3. a refused name -----------------------------------------------------------
section "3. a refused name"
name=nope.od.test
a0=$(asks | jq '.asks')
for ((i = 0; i < 30; i++)); do lb_serial "$name" >/dev/null; sleep 0.1; done
sleep 2
for ((i = 0; i < 30; i++)); do lb_serial "$name" >/dev/null; done
is "$(lb_serial "$name")" "$fallback" "it gets the default certificate"
is "$(asks | jq -r --arg d "$name" '.domains[$d]')" 1 \
    "61 handshakes on three proxies: the ask server was asked once"
is "$(pool_cs_curl admin "/v1/domains/$name" -o /dev/null -w '%{http_code}')" 404 \
    "it is not a domain of CertService"
out=$(od_post proxy2 "{\"domains\": [\"$name\"]}")
is "$(head -n 1 <<<"$out" | jq -r '.results[0].status')" refused \
    "CertService's cached verdict refuses it without asking"
[ "$(head -n 1 <<<"$out" | jq -r '.results[0].retry_after')" -gt 3000 ]
okif $? "... for the rest of its CertServiceOnDemandRefusedTTL"
neg=0
for p in 1 2 3; do
    v=$(pool_proxy_status "$p" | jq '.dynamic.on_demand.negative')
    neg=$((neg + ${v:-0}))
done
[ "$neg" -ge 30 ]
okif $? "the proxies answered the repeats from their negative caches ($neg)"
for ((i = 0; i < 50; i++)); do
    grep -q '"on-demand-refused"' "$work/events.log" 2>/dev/null && break
    sleep 0.2
done
ev=$(jq -c --arg d "$name" 'select(.type == "on-demand-refused" and .domain == $d)' \
    "$work/events.log" 2>/dev/null)
is "$(grep -c . <<<"$ev")" 1 "one on-demand-refused event for $name reached the webhook"
is "$(jq -r '.sig_ok' <<<"$ev" | head -n 1)" true "... signed"

# --- 4. a flood of random names --------------------------------------------------
section "4. a flood of $FLOOD random names"
od -An -v -tx4 -N$((FLOOD * 4)) /dev/urandom | tr -s ' ' '\n' | grep . \
    | awk '{ printf "r%s-%d.flood.test\n", $1, NR }' >"$work/flood"
is "$(sort -u "$work/flood" | wc -l)" "$FLOOD" "$FLOOD distinct random names"
d0=$(domains_count)
a0=$(asks | jq '.asks')
t0=$(date +%s)
rm -f "$work/stop"
"$HS" -p "$POOL_LB_PORT" -f <(yes known.od.test | head -n 100000) -c 1 \
    -u "$work/stop" -A "$POOL_PKI/ca.crt" >"$work/known.sum" 2>&1 &
known_pid=$!
summary=$("$HS" -p "$POOL_LB_PORT" -f "$work/flood" -c 8)
touch "$work/stop"
wait "$known_pid"
t1=$(date +%s)
dur=$((t1 - t0 > 0 ? t1 - t0 : 1))
echo "# flood: $summary"
echo "# known.od.test meanwhile: $(cat "$work/known.sum")"
is "$(sed -n 's/.* failed \([0-9]*\) .*/\1/p' <<<"$summary")" 0 \
    "every flood handshake completed"
is "$(sed -n 's/.* failed \([0-9]*\) .*/\1/p' "$work/known.sum")" 0 \
    "known.od.test was served, verified, throughout the flood"
sleep 3     # what the daemons still had queued
a1=$(asks | jq '.asks')
bound=$((3 * (BURST + RATE * (dur + 4))))
diag "ask server: $((a1 - a0)) asks for the flood ($dur s; bound 3 x ($BURST + $RATE x $((dur + 4)) s) = $bound)"
[ $((a1 - a0)) -le "$bound" ]
okif $? "the ask server was hit at most the proxies' rate allows ($((a1 - a0)) <= $bound)"
is "$(domains_count)" "$d0" "zero domains added by the flood"
lim=0
for p in 1 2 3; do
    v=$(pool_proxy_status "$p" | jq '.dynamic.on_demand.limited')
    lim=$((lim + ${v:-0}))
done
[ "$lim" -gt $((FLOOD / 2)) ]
okif $? "the proxies' rate limits kept most flood names local ($lim limited)"
is "$(lb_serial known.od.test)" "$(pool_cs_serial known.od.test)" \
    "known.od.test is still served after the flood"
nev=$(jq -r 'select(.type == "on-demand-refused") | .id' "$work/events.log" | sort | uniq -d | wc -l)
is "$nev" 0 "no on-demand-refused event delivered twice"

# --- 5. configuration ----------------------------------------------------------
section "5. bad values"
conf_fails() { # CONF SED EXPECT DESC
    local f=$POOL_DIR/$1/httpd.conf out
    sed "$2" "$f" >"$f.bad"
    out=$("$POOL_HTTPD" -t -f "$f.bad" 2>&1)
    if grep -qF -- "$3" <<<"$out"; then ok "$4"; else notok "$4"; diag "$out"; fi
}
conf_fails proxy1 's/^CertSyncOnDemandRate .*/CertSyncOnDemandRate 0/' \
    "CertSyncOnDemandRate: '0'" "CertSyncOnDemandRate 0 is refused"
conf_fails proxy1 's/^CertSyncOnDemand On/CertSyncOnDemandWait 31/' \
    "CertSyncOnDemandWait: '31'" "CertSyncOnDemandWait 31 is refused"
conf_fails cs "s|CertServiceOnDemandAsk .*|CertServiceOnDemandAsk ftp://x/allow|" \
    "CertServiceOnDemandAsk: 'ftp://x/allow' is not an https:// or http:// URL" \
    "CertServiceOnDemandAsk with an ftp URL is refused"
conf_fails cs "s|CertServiceOnDemandAsk .*|CertServiceOnDemandLimit 10 0|" \
    "CertServiceOnDemandLimit: '0' is not a number of seconds" \
    "CertServiceOnDemandLimit 10 0 is refused"
pool_stop_all >/dev/null 2>&1
f=$POOL_DIR/proxy1/httpd.conf
sed 's/^CertSyncActivation dynamic$/CertSyncActivation vhost/; /CertSyncCatchAll On/d' "$f" >"$f.bad"
out=$("$POOL_HTTPD" -f "$f.bad" -k start 2>&1)
sleep 1
out="$out $(tail -n 5 "$POOL_DIR/proxy1/logs/error_log")"
stop_pid "$(cat "$POOL_DIR/proxy1/run/httpd.pid" 2>/dev/null)"
grep -qF "CY00174" <<<"$out"
okif $? "CertSyncOnDemand On without dynamic activation: httpd does not start (CY00174)"

echo "1..$n"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
