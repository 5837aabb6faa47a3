#!/bin/bash
#
# t/certsuite/e2e.sh: the certsuite command against the demo pool's
# components (t/lib/pool.sh): a real CertService (SQLite, local CA,
# wrapping certificate wrap1) and one proxy (dynamic activation: it syncs
# and reports without restarts).
#
#   1. usage and configuration errors: exit 2, a clear message; an
#      unreachable CertService: exit 3
#   2. domain add (table and --json), re-issue, list (--json parsed,
#      --state), show, an unknown domain (exit 1, CertService's error)
#   3. pool status: the proxy is listed, caught up with the feed, and
#      serves CertService's serial of every domain (--json parsed);
#      --days says which certificates expire soon
#   4. import: the key sealed here to wrap1 (the envelope is checked with
#      openssl cms and the proxy serves the imported certificate); a key
#      that does not match is refused before anything is sent (exit 1);
#      an envelope that misses a wrapping certificate is refused by
#      CertService (400)
#   5. domain remove, then show: exit 1
#   6. wrap-key rotate --new wrap2: refused (exit 1, "Step 1") while
#      CertService does not seal to wrap2; after CertService is restarted
#      with wrap1 and wrap2: every key opens with wrap2 (openssl cms
#      -decrypt), a second run re-issues nothing
#   7. acme account on a local-CA CertService: exit 1, CertService's 404
#
# CERTSUITE_KEEP=1 keeps the temporary directory (=failed: only after a
# failure).  Runs as root or as a normal user.  Needs the build tree's
# modules, certsuite/certsuite, curl, jq, openssl.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/pool.sh
. "$top/t/lib/pool.sh"   # and t/lib/certsuite.sh

CSC=${CERTSUITE:-$top/certsuite/certsuite}
tap_init
for p in curl jq openssl; do
    command -v "$p" >/dev/null || { echo "1..0 # SKIP $p not found"; exit 0; }
done
[ -x "$CSC" ] || { echo "Bail out! $CSC not built (make)"; exit 1; }

cs_tmpdir certsuite-cli || { echo "Bail out! mktemp failed"; exit 1; }
work=$tmp
chmod 755 "$work"
on_cleanup() {
    pool_stop_all >/dev/null 2>&1
    if [ "$nfail" != 0 ]; then
        pool_log_tail 30 | sed 's/^/# /'
    fi
}

# csc ARGS...: certsuite with the test's configuration; stdout in out,
# stderr in err, the exit status in rc
csc() {
    "$CSC" -c "$work/certsuite.conf" "$@" >"$work/out" 2>"$work/err"
    rc=$?
    out=$(cat "$work/out")
    err=$(cat "$work/err")
}
# expect_rc WANT DESC: the last csc's status (its stderr shown if not)
expect_rc() {
    is "$rc" "$1" "$2 (exit $1)" || diag "stderr: $err"
}
serial_of_pem() {
    openssl x509 -in "$1" -noout -serial | sed 's/^serial=//' | _pool_serial_norm
}
# key_cms NAME: the DER envelope of NAME's key, from its bundle
key_cms() {
    pool_cs_curl admin "/v1/bundles/$1" | jq -r .key_cms | base64 -d
}
# opens_with NAME WRAP: the envelope opens with WRAP's private key, to the
# key of NAME's certificate
opens_with() {
    local pub
    key_cms "$1" >"$work/env.der"
    openssl cms -decrypt -inform DER -in "$work/env.der" \
        -recip "$POOL_PKI/$2.crt" -inkey "$POOL_PKI/$2.key" 2>/dev/null \
        | openssl pkey -inform DER -pubout 2>/dev/null >"$work/env.pub" \
        || return 1
    pool_cs_curl admin "/v1/bundles/$1" | jq -r .chain_pem \
        | openssl x509 -noout -pubkey >"$work/cert.pub" 2>/dev/null
    cmp -s "$work/env.pub" "$work/cert.pub"
}
wait_served() { # NAME SERIAL SECONDS: until proxy 1 serves it (SNI)
    local i
    for ((i = 0; i < $3 * 4; i++)); do
        [ "$(pool_served_serial 1 "$1")" = "$2" ] && return 0
        sleep 0.25
    done
    return 1
}
wait_caught_up() { # SECONDS: until pool status says proxy1 is 0 behind
    local i
    for ((i = 0; i < $1 * 2; i++)); do
        csc --json pool status
        [ "$rc" = 0 ] && [ "$(jq -r '.hosts[] | select(.host == "proxy1")
                               | .behind' <<<"$out")" = 0 ] && return 0
        sleep 0.5
    done
    return 1
}

echo "# certsuite against CertService and one proxy"
section "pool"
base=$(pool_pick_base) || bail "no free ports"
export POOL_ACTIVATION=dynamic POOL_PROCS=1 POOL_SYNC_INTERVAL="1 0"
pool_init "$work/pool" "$base" || bail "pool_init"
pool_pki >/dev/null || bail "pool_pki"
pool_start_certservice || bail "CertService did not start"
pool_start_proxy 1 || bail "proxy 1 did not start"
cat >"$work/certsuite.conf" <<EOF
# the test's configuration (certsuite(1))
service_url = $POOL_CS_URL
client_cert = $POOL_PKI/admin.crt
client_key  = $POOL_PKI/admin.key
ca          = $POOL_PKI/clients-ca.crt
wrap_cert   = $POOL_PKI/wrap1.crt
timeout     = 20
EOF

section "usage and configuration errors"
csc frobnicate
expect_rc 2 "an unknown command"
[ "$(grep -c "unknown command 'frobnicate'" <<<"$err")" = 1 ]
okif $? "... is named on stderr"
csc domain add localhost
expect_rc 2 "a name CertService would refuse"
"$CSC" -c "$work/none.conf" domain list >/dev/null 2>"$work/err"
rc=$? err=$(cat "$work/err")
expect_rc 2 "a missing configuration file"
grep -q "none.conf" <<<"$err"
okif $? "... is named"
printf 'service_url = https://127.0.0.1:1\nclient_cert = x\nbogus = 1\n' \
    >"$work/bad.conf"
"$CSC" -c "$work/bad.conf" domain list >/dev/null 2>"$work/err"
rc=$? err=$(cat "$work/err")
expect_rc 2 "an unknown setting"
grep -q "bad.conf line 3: unknown setting 'bogus'" <<<"$err"
okif $? "... is named with its file and line"
csc --url "https://127.0.0.1:$(pick_port)" domain list
expect_rc 3 "CertService unreachable"
grep -q "cannot reach CertService" <<<"$err"
okif $? "... says so"

section "domain add, list, show"
csc domain add shop.example.com
expect_rc 0 "domain add"
grep -q "^shop.example.com: added, serial [0-9a-f]*" <<<"$out"
okif $? "... says added and the serial" || diag "$out"
csc --json domain add API.Example.COM. --key-type rsa-2048
expect_rc 0 "domain add --json (a name to normalise, RSA)"
is "$(jq -r '.domain + " " + .key_type + " " + .state' <<<"$out")" \
   "api.example.com rsa-2048 active" "... its JSON parses: name, key type, state"
s_api=$(jq -r .serial <<<"$out" | _pool_serial_norm)
csc --json domain add api.example.com
expect_rc 0 "domain add on a known domain re-issues"
s_api2=$(jq -r .serial <<<"$out" | _pool_serial_norm)
[ -n "$s_api2" ] && [ "$s_api2" != "$s_api" ]
okif $? "... with a new serial"
s_api=$s_api2
csc --json domain list
expect_rc 0 "domain list --json"
is "$(jq -r '[.domains[].domain] | join(" ")' <<<"$out")" \
   "api.example.com shop.example.com" "... lists both, in order"
csc domain list
expect_rc 0 "domain list (table)"
is "$(sed -n 1p <<<"$out" | awk '{print $1, $2, $3}')" "DOMAIN STATE SERIAL" \
   "... has headings"
is "$(tail -n 1 <<<"$out")" "2 domains" "... and a count"
csc --json domain list --state error
is "$(jq '.domains | length' <<<"$out")" 0 "domain list --state error: none"
csc domain show shop.example.com
expect_rc 0 "domain show"
grep -q "^state  *active" <<<"$out"
okif $? "... shows the state" || diag "$out"
csc domain show nowhere.example.com
expect_rc 1 "domain show of an unknown domain"
grep -q "CertService answered 404: unknown domain nowhere.example.com" <<<"$err"
okif $? "... with CertService's reason" || diag "$err"

section "pool status"
s_shop=$(pool_cs_serial shop.example.com)
wait_served shop.example.com "$s_shop" 20
okif $? "the proxy serves shop.example.com"
wait_caught_up 20
okif $? "pool status --json: proxy1 is 0 changes behind the feed" \
    || diag "$out"
is "$(jq -r '.hosts[0].host + " " + (.hosts[0].current|tostring) + " "
             + (.hosts[0].stale|tostring)' <<<"$out")" "proxy1 2 0" \
   "... serves CertService's serial of both domains"
is "$(jq -r '.serving[] | select(.domain == "api.example.com")
             | .current | join(",")' <<<"$out")" "proxy1" \
   "... which host serves which serial"
is "$(jq '.expiring | length' <<<"$out")" 0 \
   "... no certificate expires within 14 days (47-day certificates)"
csc --json pool status --days 60
is "$(jq '.expiring | length' <<<"$out")" 2 "--days 60: both expire within"
csc pool status
expect_rc 0 "pool status (tables)"
grep -q "^proxy1 .*up to date" <<<"$out"
okif $? "... shows proxy1 up to date" || diag "$out"

section "import"
# A certificate from the pool's CA, made here like any other CA's.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes \
    -keyout "$work/imp.key" -out "$work/imp.csr" -subj /CN=imported.example.com \
    2>/dev/null
printf 'subjectAltName=DNS:imported.example.com\n' >"$work/imp.ext"
openssl x509 -req -in "$work/imp.csr" -CA "$POOL_PKI/ca.crt" \
    -CAkey "$POOL_PKI/ca.key" -CAcreateserial -days 20 -out "$work/imp.crt" \
    -extfile "$work/imp.ext" 2>/dev/null
cat "$work/imp.crt" "$POOL_PKI/ca.crt" >"$work/imp.chain"
csc import imported.example.com "$work/imp.chain" "$POOL_PKI/wrap1.key"
expect_rc 1 "import with a key that does not match"
grep -q "not imported: bundle: the key does not match" <<<"$err"
okif $? "... is refused before sending" || diag "$err"
csc --json domain show imported.example.com
expect_rc 1 "... nothing reached CertService"
csc import imported.example.com "$work/imp.chain" "$work/imp.key"
expect_rc 0 "import (the key sealed here)"
grep -q "sealed here to 1 wrapping certificate" <<<"$out"
okif $? "... says where the key was sealed" || diag "$out"
s_imp=$(serial_of_pem "$work/imp.crt")
is "$(pool_cs_serial imported.example.com)" "$s_imp" \
   "CertService has the imported serial"
opens_with imported.example.com wrap1
okif $? "the stored envelope opens with wrap1 to the imported key"
wait_served imported.example.com "$s_imp" 20
okif $? "the proxy serves the imported certificate"
csc --json pool status --days 30
is "$(jq -r '[.expiring[].domain] | join(" ")' <<<"$out")" \
   "imported.example.com" "pool status: the 20-day import expires within 30 days"
# An envelope to wrap2 only: CertService seals to wrap1, so refuses it.
sed "s#wrap1.crt#wrap2.crt#" "$work/certsuite.conf" >"$work/wrap2.conf"
"$CSC" -c "$work/wrap2.conf" import imported.example.com "$work/imp.chain" \
    "$work/imp.key" >/dev/null 2>"$work/err"
rc=$? err=$(cat "$work/err")
expect_rc 1 "import sealed to a certificate CertService does not use"
grep -q "CertService answered 400: .*key_cms is not sealed to the wrapping certificate" <<<"$err"
okif $? "... refused by CertService" || diag "$err"

section "domain remove"
csc domain remove shop.example.com
expect_rc 0 "domain remove"
csc domain show shop.example.com
expect_rc 1 "... then show fails"
csc domain remove shop.example.com
expect_rc 1 "removing it again"

section "wrap-key rotate"
csc wrap-key rotate --new "$POOL_PKI/wrap2.crt" --dry-run --json
expect_rc 0 "rotate --dry-run"
is "$(jq -r '.reissue | join(" ")' <<<"$out")" \
   "api.example.com imported.example.com" "... lists every key to re-wrap"
csc wrap-key rotate --new "$POOL_PKI/wrap2.crt"
expect_rc 1 "rotate before CertService seals to wrap2"
grep -q "Step 1 first" <<<"$err"
okif $? "... says step 1 comes first" || diag "$err"
# Step 1: wrap2 beside wrap1, CertService restarted.
_pool_stop_httpd "$POOL_DIR/cs"
for ((i = 0; i < 50; i++)); do port_free "$POOL_CS_PORT" && break; sleep 0.1; done
POOL_CS_EXTRA="CertServiceWrapCertificate \"$POOL_PKI/wrap2.crt\"" \
    pool_start_certservice || bail "CertService did not start again"
csc --json wrap-key rotate --new "$POOL_PKI/wrap2.crt"
expect_rc 0 "rotate with wrap1 and wrap2 configured"
is "$(jq -r '.complete' <<<"$out")" true "... complete"
all=1
for d in api.example.com imported.example.com; do
    opens_with "$d" wrap2 || all=0
    opens_with "$d" wrap1 || all=0
done
is "$all" 1 "every key opens with wrap2, and still with wrap1 (openssl cms)"
csc --json wrap-key rotate --new "$POOL_PKI/wrap2.crt"
expect_rc 0 "rotate again"
is "$(jq '.reissued | length' <<<"$out")" 0 "... re-issues nothing"
s_api3=$(pool_cs_serial api.example.com)
wait_served api.example.com "$s_api3" 20
okif $? "the proxy (wrap1 only) serves the re-issued certificate"

section "acme account"
csc acme account
expect_rc 1 "acme account without ACME"
grep -q "CertService answered 404" <<<"$err"
okif $? "... CertService's 404 is shown" || diag "$err"

echo "1..$n"
echo "# $((SECONDS - T0)) s"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
