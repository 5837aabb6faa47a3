#!/bin/bash
# t/dashboard/e2e.sh: CertService's dashboard in a real browser (make
# check-dashboard; part of make check-e2e).  About 30 s.
#
# A CertService (t/lib/pool.sh) with two ACME CAs that do not answer
# (127.0.0.1:9), so that its numbers have every kind of row: certificates
# imported with 3, 10, 20 and 60 days left (active), domains added through
# ACME that fail at both CAs (error; the CAs down, orders counted), three
# hosts' reports at different points of the feed, a lease.  Then headless
# Chromium (Debian's chromium and chromium-driver, python3-selenium)
# presents the admin client certificate from an NSS database of its own
# and t/dashboard/browser.py clicks the filters and checks the tables
# against the API.  DASHBOARD_SCREENSHOTS=DIR keeps its screenshots there
# (docs/ holds the committed ones).
#
# Chromium picks a client certificate without asking only by policy
# (AutoSelectCertificateForUrls), which it reads from
# /etc/chromium/policies/managed/ alone: the test writes one file there for
# its own origin (https://127.0.0.1:PORT) and removes it on exit.  So it
# runs as root, and skips otherwise.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=t/lib/pool.sh
. "$top/t/lib/pool.sh"
tap_init

skip() { echo "1..0 # SKIP $*"; exit 0; }
for p in chromium chromedriver certutil pk12util openssl curl jq; do
    command -v "$p" >/dev/null 2>&1 || skip "$p not found"
done
/usr/bin/python3 -c 'import selenium' 2>/dev/null \
    || skip "python3-selenium not installed"
[ "$(id -u)" = 0 ] || skip "needs root (a Chromium policy file in /etc)"
[ -f "$top/mod_certservice/.libs/mod_certservice.so" ] \
    || skip "mod_certservice not built (make)"

work=$(mktemp -d "${TMPDIR:-/tmp}/certsuite-dashboard.XXXXXX") \
    || bail "mktemp failed"
chmod 755 "$work"                   # httpd's children (nobody) read below
policy=/etc/chromium/policies/managed/certsuite-dashboard-test-$$.json
finish() {
    local rc=$?
    rm -f "$policy"
    pool_stop_all >/dev/null 2>&1
    if [ $rc = 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$work"
    else
        echo "# left for a look: $work" >&2
    fi
    exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

base=$(pool_pick_base) || bail "no free ports"
pool_init "$work/pool" "$base" || bail "pool_init failed"
section "PKI"
pool_pki || bail "no PKI"
"$top/t/certservice/make-acme-pki.sh" "$POOL_PKI" dashboard \
    >"$work/acme-pki.log" 2>&1 || bail "make-acme-pki.sh failed"
chmod 644 "$POOL_PKI"/*.key
# Two CAs, neither answering: every ACME order fails at both.
POOL_CS_EXTRA="CertServiceACMEDirectory https://127.0.0.1:9/dir
CertServiceACMEAccountSeal \"$POOL_PKI/seal.crt\" \"$POOL_PKI/seal.key\"
CertServiceACMEWorkers 1
CertServiceACMEPreCheck off
CertServiceACMELimit 300 3h
CertServiceACMEGlobalLimit 1000 1h
<CertServiceACMEIssuer backup>
    CertServiceACMEDirectory https://127.0.0.1:9/backup
</CertServiceACMEIssuer>"
pool_start_certservice || { pool_log_tail; bail "CertService did not start"; }
ok "CertService up on port $POOL_CS_PORT"

section "domains, hosts, a lease"
# --- What the dashboard shows ----------------------------------------------
cert() { # NAME DAYS: DIR/NAME.json, an import body
    local n=$1 d=$2 f=$work/$1
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$f.key" -out "$f.csr" -subj "/CN=$n" 2>/dev/null &&
    printf 'subjectAltName=DNS:%s\n' "$n" >"$f.ext" &&
    openssl x509 -req -in "$f.csr" -CA "$POOL_PKI/ca.crt" \
        -CAkey "$POOL_PKI/ca.key" -CAcreateserial -days "$d" \
        -extfile "$f.ext" -out "$f.crt" 2>/dev/null &&
    jq -n --rawfile c "$f.crt" --rawfile k "$f.key" \
        '{chain_pem: $c, key_pem: $k}' >"$f.json"
}
imported=0
for spec in shop.example:3 blog.example:10 www.shop.example:20 \
            api.example:60 static.example:60 mail.example:45; do
    name=${spec%%:*}
    cert "$name" "${spec##*:}" || bail "openssl failed"
    code=$(pool_cs_curl admin "/v1/domains/$name/certificate" -X PUT \
           -H 'Content-Type: application/json' \
           --data-binary "@$work/$name.json" -o "$work/put.out" \
           -w '%{http_code}')
    if [ "$code" = 201 ]; then
        imported=$((imported + 1))
    else
        diag "import $name: $code $(cat "$work/put.out")"
    fi
done
is "$imported" 6 "six certificates imported"
for name in new-shop.example broken.example; do
    code=$(pool_cs_curl admin "/v1/domains/$name" -X PUT \
           -H 'Content-Type: application/json' --data-binary '{}' \
           -o /dev/null -w '%{http_code}')
    is "$code" 202 "$name queued for ACME"
done
# The first fails at both CAs (connection refused): state error, both
# CAs marked down; the second then waits for them (pending).
for ((i = 0; i < 120; i++)); do
    errs=$(pool_cs_curl admin '/v1/domains?state=error' | jq '.domains | length')
    [ "$errs" = 1 ] && break
    sleep 0.25
done
is "$errs" 1 "an ACME domain ends in error (both CAs down)"
head=$(pool_cs_curl proxy '/v1/changes?since=0&limit=1000' | jq .next)
report() { # HOST SEQ STATE
    pool_cs_curl proxy "/v1/hosts/$1/report" -X POST \
        -H 'Content-Type: application/json' -o /dev/null -w '%{http_code}' \
        --data-binary "{\"pool\":\"demo\",\"seq\":$2,\"state\":\"$3\"}"
}
is "$(report proxy1 "$head" ready)" 204 "proxy1 reports the head ($head)"
is "$(report proxy2 "$head" ready)" 204 "proxy2 reports the head"
is "$(report proxy3 $((head - 2)) restart-pending)" 204 \
    "proxy3 reports two changes behind"
code=$(pool_cs_curl proxy /v1/pools/demo/leases -X POST -o /dev/null \
       -H 'Content-Type: application/json' -w '%{http_code}' \
       --data-binary '{"host":"proxy3","ttl":120}')
is "$code" 201 "proxy3 holds a lease"

section "the browser"
# --- The browser -------------------------------------------------------------
home=$work/home
mkdir -p "$home/.pki/nssdb"
openssl pkcs12 -export -in "$POOL_PKI/admin.crt" -inkey "$POOL_PKI/admin.key" \
    -name admin -passout pass: -out "$work/admin.p12" 2>/dev/null \
    && certutil -N -d "sql:$home/.pki/nssdb" --empty-password \
    && pk12util -i "$work/admin.p12" -d "sql:$home/.pki/nssdb" -W '' \
        >/dev/null \
    && certutil -A -d "sql:$home/.pki/nssdb" -n certsuite-test-clients-ca \
        -t C,, -i "$POOL_PKI/clients-ca.crt" \
    || bail "cannot make the browser's NSS database"
mkdir -p "$(dirname "$policy")"
printf '{"AutoSelectCertificateForUrls": ["{\\"pattern\\":\\"https://127.0.0.1:%s\\",\\"filter\\":{\\"ISSUER\\":{\\"CN\\":\\"certsuite test clients CA\\"}}}"]}\n' \
    "$POOL_CS_PORT" >"$policy"
ok "Chromium: the admin certificate for https://127.0.0.1:$POOL_CS_PORT"

# What the browser must find, from the API.
expect() { pool_cs_curl admin "/v1/domains?limit=1000$1" | jq -c '[.domains[].domain]'; }
jq -n --argjson all "$(expect '')" --argjson error "$(expect '&state=error')" \
    --argjson active "$(expect '&state=active')" \
    --argjson exp7 "$(expect '&expiring=7')" \
    --argjson exp14 "$(expect '&expiring=14')" \
    --argjson shop "$(expect '&q=shop')" \
    '{all: $all, error: $error, active: $active, exp7: $exp7,
      exp14: $exp14, shop: $shop}' >"$work/expect.json"
diag "expected: $(jq -c . "$work/expect.json")"

shots=${DASHBOARD_SCREENSHOTS:-$work/shots}
mkdir -p "$shots"
HOME=$home timeout 120 /usr/bin/python3 "$top/t/dashboard/browser.py" \
    "https://127.0.0.1:$POOL_CS_PORT/dashboard/" "$work/expect.json" \
    "$shots" "$work/chrome-profile"
okif $? "the dashboard in Chromium: browser.py's checks passed"

grep -E 'AH[0-9]+|CS[0-9]+' "$POOL_DIR/cs/logs/error_log" \
    | grep -E ':(error|crit|emerg)\]' | head -5 | sed 's/^/# unexpected: /'
echo "# $SECONDS s"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
