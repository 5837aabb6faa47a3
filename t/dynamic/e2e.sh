#!/bin/bash
#
# t/dynamic/e2e.sh: CertSyncActivation dynamic end to end, on the demo
# pool's components (t/lib/pool.sh): a real CertService (SQLite, local
# CA) and one proxy httpd whose single catch-all TLS virtual host serves
# every domain by SNI, with several worker processes and a cache smaller
# than the working set.
#
#   1. DYN_DOMAINS (1,000) domains synced: a handshake for each presents
#      CertService's certificate, verified against the CA and the name.
#   2. No SNI and unknown names get the virtual host's own certificate; a
#      wildcard serves its subdomains; a name with its own VirtualHost
#      keeps it.
#   3. Under a client loop of handshakes (random names, new connections,
#      verified), 100 domains are renewed and 10 deleted on CertService:
#      the new serials appear within one sync interval, deleted names get
#      the default certificate, no handshake fails, and httpd's pid and
#      configuration generation do not change (no restart).
#   4. Under the same client loop, the sync daemon is SIGKILLed
#      DYN_KILLS (5) times, 1.5 s apart: the parent starts a new daemon
#      (a new pid, CY00008) each time; a domain added and one renewed on
#      CertService after the kills are served within two sync intervals;
#      no handshake fails; httpd's pid and generation do not change.
#   5. The status shows the cache counters and per-domain serials; no
#      plaintext key is on disk; CertSyncUnknownName refuse refuses.
#   6. Bad values of the dynamic-mode directives are refused, naming the
#      directive and the value.
#
# CERTSUITE_KEEP=1 keeps the temporary directory, CERTSUITE_KEEP=failed
# only when a check failed (t/lib/certsuite.sh); the pool's error logs are
# shown when a check failed.
#
# Runs as root (workers as nobody) or as a normal user.  Needs the build
# tree's modules and t/dynamic/hsclient (make check builds both), curl,
# jq, openssl.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/pool.sh
. "$top/t/lib/pool.sh"   # and t/lib/certsuite.sh

N=${DYN_DOMAINS:-1000}
RENEW=${DYN_RENEW:-100}
DELETE=${DYN_DELETE:-10}
INTERVAL=3
JITTER=1
HS=${HSCLIENT:-$top/t/dynamic/hsclient}
tap_init

for p in curl jq openssl; do
    command -v "$p" >/dev/null || { echo "1..0 # SKIP $p not found"; exit 0; }
done
[ -x "$HS" ] || { echo "Bail out! $HS not built (make check builds it)"; exit 1; }

cs_tmpdir certsuite-dyn || { echo "Bail out! mktemp failed"; exit 1; }
work=$tmp
chmod 755 "$work"
on_cleanup() {
    pool_stop_all >/dev/null 2>&1
    if [ "$nfail" != 0 ]; then
        pool_log_tail 30 | sed 's/^/# /'
    fi
}

# cs_bulk METHOD FILE: METHOD /v1/domains/NAME for every name of FILE,
# over one kept-alive connection; prints "NAME SERIAL" for each answer
# that has a serial (PUT), normalised like pool.sh's serials.
cs_bulk() {
    local m=$1 f=$2 cfg=$work/bulk.$$.cfg name
    : >"$cfg"
    while read -r name _; do
        printf 'url = "%s/v1/domains/%s"\n' "$POOL_CS_URL" "$name" >>"$cfg"
    done <"$f"
    pool_cs_curl admin "/v1/domains" -o /dev/null >/dev/null 2>&1
    curl -sS --noproxy '*' --max-time 600 --cacert "$POOL_PKI/clients-ca.crt" \
        --cert "$POOL_PKI/admin.crt" --key "$POOL_PKI/admin.key" \
        -X "$m" -H 'Content-Type: application/json' --data-binary '{}' \
        -w '\n' -K "$cfg" \
    | jq -r 'select(.serial != null) | "\(.domain) \(.serial)"' \
    | while read -r name s; do
        echo "$name $(_pool_serial_norm <<<"$s")"
    done
}

tls_port() { pool_proxy_port 1 tls; }
# start_again: proxy 1 with its (edited) httpd.conf, once its ports are
# free (the old generation's children may linger a moment)
start_again() {
    local i p
    for ((i = 0; i < 100; i++)); do
        p=0
        for port in "$(tls_port)" "$(pool_proxy_port 1 status)"; do
            port_free "$port" || p=1
        done
        [ $p = 0 ] && break
        sleep 0.1
    done
    _pool_start_httpd "$POOL_DIR/proxy1" "$(pool_proxy_port 1 status)" \
        "$(tls_port)"
}
status() { pool_proxy_status 1 "$@"; }
gen_of() { # the parent's configuration generation (mod_status)
    curl -sS --noproxy '*' --max-time 5 \
        "http://127.0.0.1:$(pool_proxy_port 1 status)/server-status?auto" \
    | sed -n 's/^ParentServerConfigGeneration: *//p'
}
serial_of_pem() {
    openssl x509 -in "$1" -noout -serial | sed 's/^serial=//' | _pool_serial_norm
}
# handshakes FILE [hsclient args]: one handshake per name; "name serial"
# in $work/out; prints hsclient's summary line
handshakes() {
    local f=$1
    shift
    "$HS" -p "$(tls_port)" -f "$f" -c 4 -o "$work/out" "$@"
}
failed_of() { sed -n 's/.* failed \([0-9]*\) .*/\1/p' <<<"$1"; }
mismatches() { # WANT GOT: names whose served serial differs
    join <(sort "$1") <(sort "$2") | awk '$2 != $3' | wc -l
}
wait_synced() { # NAME SERIAL SECONDS: until the proxy serves it
    local i want=$2 got
    echo "$1" >"$work/one"
    for ((i = 0; i < $3 * 4; i++)); do
        "$HS" -p "$(tls_port)" -f "$work/one" -o "$work/one.out" >/dev/null
        got=$(awk '{print $2}' "$work/one.out")
        [ "$got" = "$want" ] && return 0
        sleep 0.25
    done
    return 1
}

echo "# dynamic activation, $N domains"
base=$(pool_pick_base) || bail "no free ports"
export POOL_ACTIVATION=dynamic POOL_PROCS=3 POOL_CACHE_SIZE=$((N * 3 / 10))
export POOL_SYNC_INTERVAL="$INTERVAL $JITTER"
pool_init "$work/pool" "$base" || bail "pool_init"
pool_pki >/dev/null || bail "pool_pki"
pool_start_certservice || bail "CertService did not start"
pool_start_backend || bail "backend did not start"
fallback=$(serial_of_pem "$POOL_PKI/fallback.crt")

# --- 1. N domains --------------------------------------------------------------
for ((i = 1; i <= N; i++)); do echo "d$i.dyn.test"; done >"$work/names"
t0=$(date +%s)
cs_bulk PUT "$work/names" >"$work/issued"
is "$(wc -l <"$work/issued")" "$N" "CertService issued $N certificates ($(($(date +%s) - t0)) s)"

# A name with its own virtual host (and also on CertService) keeps it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$work/real.key" -out "$work/real.crt" -days 2 \
    -subj "/CN=real.dyn.test" -addext "subjectAltName=DNS:real.dyn.test" \
    2>/dev/null || bail "openssl req"
chmod 644 "$work/real.key"
echo real.dyn.test >"$work/realname"
cs_bulk PUT "$work/realname" >/dev/null
pool_start_proxy 1 || bail "proxy 1 did not start"
pool_stop_proxy 1
cat >>"$POOL_DIR/proxy1/httpd.conf" <<EOF
<VirtualHost 127.0.0.1:$(tls_port)>
    ServerName real.dyn.test
    SSLEngine on
    SSLCertificateFile    "$work/real.crt"
    SSLCertificateKeyFile "$work/real.key"
</VirtualHost>
EOF
start_again || {
    ss -ltnp | grep -F -e "127.0.0.1:$(tls_port) " \
        -e "127.0.0.1:$(pool_proxy_port 1 status) " | sed 's/^/# /'
    bail "proxy 1 did not start again"
}

t0=$(date +%s)
for ((i = 0; i < 600; i++)); do
    m=$(grep -c '\.dyn\.test ' "$POOL_DIR/proxy1/store/manifest" 2>/dev/null)
    [ "${m:-0}" -ge $((N + 1)) ] && break
    sleep 0.2
done
[ "${m:-0}" -ge $((N + 1)) ] || bail "the proxy did not sync within 120 s"
ok "synced $N domains in about $(($(date +%s) - t0)) s"
pid0=$(cat "$POOL_DIR/proxy1/run/httpd.pid")
gen0=$(gen_of)

summary=$(handshakes "$work/names" -A "$POOL_PKI/ca.crt")
echo "# every domain once: $summary"
is "$(failed_of "$summary")" 0 "a verified handshake for each of $N domains"
is "$(mismatches "$work/issued" "$work/out")" 0 \
    "each presents the serial CertService issued"

# --- 2. defaults, wildcard, own virtual host --------------------------------------
printf 'unknown.dyn.test\nnot-a-domain\n' >"$work/unknown"
handshakes "$work/unknown" >/dev/null
is "$(awk '{print $2}' "$work/out" | sort -u)" "$fallback" \
    "unknown names get the virtual host's own certificate"
s=$(openssl s_client -connect "127.0.0.1:$(tls_port)" -noservername \
        </dev/null 2>/dev/null | openssl x509 -noout -serial \
    | sed 's/^serial=//' | _pool_serial_norm)
is "$s" "$fallback" "no SNI gets the virtual host's own certificate"
echo '*.wild.dyn.test' >"$work/wild"
w=$(cs_bulk PUT "$work/wild")
test -n "$w"
okif $? "wildcard issued"
if wait_synced x.wild.dyn.test "${w#* }" 30; then
    ok "a wildcard serves x.wild.dyn.test"
else
    notok "a wildcard serves x.wild.dyn.test"
fi
echo y.wild.dyn.test >"$work/w2"
summary=$(handshakes "$work/w2" -A "$POOL_PKI/ca.crt")
is "$(failed_of "$summary")" 0 "... verified for y.wild.dyn.test too"
handshakes "$work/realname" >/dev/null
is "$(awk '{print $2}' "$work/out")" "$(serial_of_pem "$work/real.crt")" \
    "a name with its own VirtualHost keeps its certificate"

# --- 3. renewals and deletions under load, no restart ---------------------------
head -n "$DELETE" "$work/names" >"$work/delete"
tail -n +"$((DELETE + 1))" "$work/names" >"$work/loop"
sed -n "$((DELETE + 1)),$((DELETE + RENEW))p" "$work/names" >"$work/renew"
rm -f "$work/stop"
"$HS" -p "$(tls_port)" -f "$work/loop" -c 3 -r -u "$work/stop" \
    -A "$POOL_PKI/ca.crt" >"$work/loop.out" 2>&1 &
loop=$!
sleep 2
cs_bulk PUT "$work/renew" >"$work/renewed"
cs_bulk DELETE "$work/delete" >/dev/null
t0=$(date +%s.%N)   # every change is on CertService
is "$(wc -l <"$work/renewed")" "$RENEW" "$RENEW domains renewed on CertService"
tail -n 1 "$work/renewed" >"$work/lastrenew"
# One interval (plus its jitter) until the daemon's next cycle, then the
# cycle itself (fetch, verify and install 100 bundles) and this loop's own
# polling: 3 s for those two.
deadline=$((INTERVAL + JITTER + 3))
live=""
for ((i = 0; i < deadline * 4 + 40; i++)); do
    handshakes "$work/renew" >/dev/null
    if [ "$(mismatches "$work/renewed" "$work/out")" = 0 ]; then
        handshakes "$work/delete" >/dev/null
        if [ "$(awk '{print $2}' "$work/out" | sort -u)" = "$fallback" ]; then
            live=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
            break
        fi
    fi
    sleep 0.25
done
test -n "$live"
okif $? "all $RENEW renewed serials served and the $DELETE deleted names get the default certificate ${live:+after $live s}"
if [ -n "$live" ] && awk -v l="$live" -v d="$deadline" 'BEGIN{exit !(l <= d)}'; then
    ok "within one sync interval (${INTERVAL}s + ${JITTER}s jitter + 3s work and polling: $live s <= $deadline s)"
else
    notok "within one sync interval ($live s > $deadline s)"
fi
sleep 2
touch "$work/stop"
wait "$loop"
summary=$(cat "$work/loop.out")
echo "# client loop during the changes: $summary"
total=$(sed -n 's/^handshakes \([0-9]*\) .*/\1/p' <<<"$summary")
test "${total:-0}" -gt 100
okif $? "the client loop ran ($total handshakes)"
is "$(failed_of "$summary")" 0 "no failed handshake during renewals and deletions"
is "$(cat "$POOL_DIR/proxy1/run/httpd.pid")" "$pid0" "httpd's pid unchanged"
is "$(gen_of)" "$gen0" "configuration generation unchanged (no restart)"
is "$(grep -c 'AH00493\|AH00494' "$POOL_DIR/proxy1/logs/error_log")" 0 \
    "no restart in the error log"
grep -q 'CY00028.*live, no restart' "$POOL_DIR/proxy1/logs/error_log"
okif $? "activation logged (CY00028)"

# --- 4. the sync daemon SIGKILLed repeatedly, under load ---------------------
# The daemon is the httpd parent's other child: a SIGKILL must cost neither
# a handshake nor a restart; the parent starts a new daemon (a new pid),
# which carries on from the store.
KILLS=${DYN_KILLS:-5}
parent_of() { ps -o ppid= -p "$1" 2>/dev/null | tr -d ' '; }
# the running daemon: the newest CY00003 pid that is a child of httpd's
# parent (the workers are its children too, but log no CY00003)
daemon_pid() {
    local pid
    for pid in $(sed -n 's/.*CY00003: sync daemon started (pid \([0-9]*\)).*/\1/p' \
                     "$POOL_DIR/proxy1/logs/error_log" | tac); do
        if [ "$(parent_of "$pid")" = "$pid0" ]; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}
died0=$(grep -c 'CY00008' "$POOL_DIR/proxy1/logs/error_log")
rm -f "$work/stop"
"$HS" -p "$(tls_port)" -f "$work/loop" -c 3 -r -u "$work/stop" \
    -A "$POOL_PKI/ca.crt" >"$work/loop.out" 2>&1 &
loop=$!
sleep 1
back=0
pids=""
for ((k = 1; k <= KILLS; k++)); do
    d=$(daemon_pid) || { diag "kill $k: no running daemon found"; break; }
    pids="$pids $d"
    kill -KILL "$d"
    for ((i = 0; i < 50; i++)); do
        nd=$(daemon_pid) && [ "$nd" != "$d" ] && break
        nd=""
        sleep 0.1
    done
    [ -n "$nd" ] && back=$((back + 1))
    sleep 1.5
done
pids="$pids $(daemon_pid)"
is "$back" "$KILLS" "SIGKILL of the sync daemon $KILLS times: a new daemon each time (pids$pids)"
is "$(($(grep -c 'CY00008' "$POOL_DIR/proxy1/logs/error_log") - died0))" "$KILLS" \
    "... each death logged by the parent (CY00008)"
is "$(tr ' ' '\n' <<<"$pids" | sed '/^$/d' | sort -u | wc -l)" "$((KILLS + 1))" \
    "... every daemon a new process"
# After the kills: a new domain and a renewal reach the workers within a
# couple of sync intervals (a new daemon syncs at once, then each interval).
printf 'k1.dyn.test\n%s\n' "$(tail -n 1 "$work/names")" >"$work/afterkill"
t0=$(date +%s.%N)
cs_bulk PUT "$work/afterkill" >"$work/afterkill.issued"
is "$(wc -l <"$work/afterkill.issued")" 2 "a domain added and one renewed on CertService after the kills"
deadline=$((2 * (INTERVAL + JITTER) + 3))
live=""
for ((i = 0; i < deadline * 4; i++)); do
    handshakes "$work/afterkill" >/dev/null
    if [ "$(mismatches "$work/afterkill.issued" "$work/out")" = 0 ]; then
        live=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
        break
    fi
    sleep 0.25
done
test -n "$live"
okif $? "... both served by the last daemon's sync ${live:+after $live s }(<= $deadline s: two intervals, their jitter, 3 s)"
touch "$work/stop"
wait "$loop"
summary=$(cat "$work/loop.out")
echo "# client loop during the kills: $summary"
total=$(sed -n 's/^handshakes \([0-9]*\) .*/\1/p' <<<"$summary")
test "${total:-0}" -gt 100
okif $? "the client loop ran ($total handshakes)"
is "$(failed_of "$summary")" 0 "no failed handshake while the daemon was killed"
is "$(cat "$POOL_DIR/proxy1/run/httpd.pid")" "$pid0" "httpd's parent pid unchanged"
is "$(gen_of)" "$gen0" "configuration generation unchanged (no restart)"
is "$(grep -c 'AH00493\|AH00494\|AH00052\|Segmentation' \
      "$POOL_DIR/proxy1/logs/error_log")" 0 "no restart, no crashed child in the error log"

# --- 5. status, keys on disk, refuse -----------------------------------------------
st=$(status)
for k in hits misses evictions cache_capacity; do
    v=$(jq -r ".dynamic.$k // 0" <<<"$st")
    test "$v" -gt 0
    okif $? "status: dynamic.$k = $v (> 0)"
done
# Every miss read its key from key.seal, which the daemon wrote beside
# key.cms: none had to open the envelope (RSA-OAEP) itself.
is "$(jq -r '.dynamic.envelopes' <<<"$st")" 0 \
    "status: dynamic.envelopes = 0 (every key from key.seal)"
r1=$(sed -n 1p "$work/renewed")
st=$(status "domain=${r1% *}")
is "$(jq -r ".dynamic.served[\"${r1% *}\"].store" <<<"$st")" "${r1#* }" \
    "status ?domain= shows the served serial"
d1=$(head -n 1 "$work/delete")
st=$(status "domain=$d1")
is "$(jq -r ".dynamic.served[\"$d1\"].store" <<<"$st")" null \
    "... and none for a deleted domain"
is "$(find "$POOL_DIR/proxy1/store" -name privkey.pem | wc -l)" 0 \
    "no plaintext key in the store"
test "$(find "$POOL_DIR/proxy1/store" -name key.cms | wc -l)" -ge "$N"
okif $? "sealed keys (key.cms) in the store"
bad=$(find "$POOL_DIR/proxy1/store" -name key.cms -perm /o=rwx | wc -l)
is "$bad" 0 "no key.cms readable by others"
is "$(find "$POOL_DIR/proxy1/store" -name key.seal | wc -l)" \
    "$(find "$POOL_DIR/proxy1/store" -name key.cms | wc -l)" \
    "a key.seal beside every key.cms"
bad=$(find "$POOL_DIR/proxy1/store" -name key.seal -perm /o=rwx | wc -l)
is "$bad" 0 "no key.seal readable by others"

pool_stop_proxy 1
# A store from before key.seal: the next daemon writes the missing ones,
# a batch per cycle, while the workers open key.cms meanwhile.
find "$POOL_DIR/proxy1/store" -name key.seal -delete
sed -i 's/^    CertSyncCatchAll On$/    CertSyncCatchAll On\n    CertSyncUnknownName refuse/' \
    "$POOL_DIR/proxy1/httpd.conf"
# Only what this start logs counts.
since=$(($(wc -l <"$POOL_DIR/proxy1/logs/error_log") + 1))
start_again || bail "proxy 1 did not start with refuse"
for ((i = 0; i < 300; i++)); do
    tail -n +"$since" "$POOL_DIR/proxy1/logs/error_log" | grep -q 'CY00038' \
        && break
    sleep 0.1
done
tail -n +"$since" "$POOL_DIR/proxy1/logs/error_log" \
    | grep -q 'CY00038.*every current version has its key.seal'
okif $? "key.seal written again for a store without them (CY00038)"
cur=$(find "$POOL_DIR/proxy1/store/live" -maxdepth 2 -name current | wc -l)
is "$(find -L "$POOL_DIR/proxy1/store/live" -mindepth 3 -maxdepth 3 \
          -path '*/current/key.seal' | wc -l)" "$cur" \
    "... beside every current version's key.cms"
handshakes "$work/unknown" >/dev/null
is "$(awk '{print $2}' "$work/out" | sort -u)" "-" \
    "CertSyncUnknownName refuse: no handshake for unknown names"
summary=$(handshakes "$work/renew" -A "$POOL_PKI/ca.crt")
is "$(failed_of "$summary")" 0 "... known names still served"
grep -q 'CY00033' "$POOL_DIR/proxy1/logs/error_log"
okif $? "refusals logged (CY00033)"
is "$(grep -c 'AH00052\|Segmentation\|CY00035' \
      "$POOL_DIR/proxy1/logs/error_log")" 0 "no crashed child, no refused certificate"

# --- 6. bad configuration: refused, naming the directive and the value ----------
pool_stop_proxy 1
conf=$POOL_DIR/proxy1/httpd.conf
# conf_fails SED-SCRIPT PATTERN DESC [start]: the proxy's configuration
# edited by SED-SCRIPT is refused by httpd -t (or, with "start", by a
# start), with PATTERN in what httpd says
conf_fails() {
    local out rc
    sed "$1" "$conf" >"$work/bad.conf"
    if [ "${4:-}" = start ]; then
        out=$("$POOL_HTTPD" -f "$work/bad.conf" -k start 2>&1)
        rc=$?
        out="$out$(cat "$POOL_DIR/proxy1/logs/error_log")"
        if [ $rc = 0 ]; then
            sleep 1
            "$POOL_HTTPD" -f "$work/bad.conf" -k stop >/dev/null 2>&1
        fi
    else
        out=$("$POOL_HTTPD" -t -f "$work/bad.conf" 2>&1)
        rc=$?
    fi
    if [ $rc != 0 ] && grep -qF -- "$2" <<<"$out"; then
        ok "$3"
    else
        notok "$3"
        diag "exit $rc: $(tail -n 3 <<<"$out")"
    fi
}
conf_fails 's/^    CertSyncCatchAll On$/    CertSyncCatchAll On\n    CertSyncUnknownName bogus/' \
    "CertSyncUnknownName: 'bogus' is neither 'default' nor 'refuse'" \
    "CertSyncUnknownName bogus is refused"
conf_fails 's/^CertSyncCacheSize .*/CertSyncCacheSize 0/' \
    "CertSyncCacheSize: '0' is not a number between 1 and 10000000" \
    "CertSyncCacheSize 0 is refused"
conf_fails 's/^CertSyncActivation dynamic$/CertSyncActivation dynamic\nCertSyncCatchAll On/' \
    "CertSyncCatchAll belongs in the catch-all TLS <VirtualHost>" \
    "CertSyncCatchAll in the main server is refused"
conf_fails 's/^CertSyncActivation dynamic$/CertSyncActivation vhost/' \
    "CY00029: CertSyncCatchAll On needs CertSyncActivation dynamic" \
    "CertSyncCatchAll On without dynamic activation: httpd does not start" \
    start

echo "1..$n"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
