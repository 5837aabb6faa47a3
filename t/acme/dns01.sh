#!/bin/bash
#
# t/acme/dns01.sh: dns-01 end to end: wildcard certificates validated by
# pebble through a real BIND 9, served by a proxy.
#
# Starts, all on loopback and free ports:
#
#   named (primary)      127.0.0.1:P, as nobody when run as root: zones
#                        wild.test (TSIG updates, a secondary), customer.test
#                        (static: _acme-challenge CNAME into the pool's
#                        zone), acme.pool.test (TSIG updates), hooked.test
#                        (updated by the hook command only, with a key of
#                        its own), lag.test (a second NS where nothing
#                        answers); recursion for loopback, so that a CNAME
#                        into another of its zones is answered whole
#   named (secondary)    127.0.0.2:P: wild.test by NOTIFY and zone transfer
#   pebble               validation on; -dnsserver: the primary
#   CertService          CertServiceDNSUpdate for wild.test and
#                        acme.pool.test, CertServiceDNSHook (nsupdate),
#                        CertServiceDNSPropagation 20 P, pre-check on
#   proxy                dynamic activation (wildcard entries by SNI)
#
# and shows:
#
#   1. PUT /v1/domains/*.wild.test: a certificate for *.wild.test from
#      pebble over dns-01; the record was on both authoritative servers
#      (primary and secondary) before pebble was told, and is gone from
#      both afterwards; the proxy serves it for a.wild.test and
#      b.wild.test, pebble's chain
#   2. CNAME delegation: _acme-challenge.customer.test is a CNAME to
#      customer-test.acme.pool.test; *.customer.test is issued, the TXT
#      written in the pool's zone, nothing in customer.test
#   3. the hook: *.hooked.test is published by CertServiceDNSHook (which
#      runs nsupdate with its own key), called with set then unset
#   4. failures are clear: a zone whose second server never answers fails
#      naming that server (ns2.lag.test (127.0.0.3)); a name the hook
#      refuses fails with its exit status; both leave no record behind
#   5. a wildcard on a CertService without dns-01 is a 400 naming the
#      directives; with CertServiceDNSChallenge all a name that is not a
#      wildcard and has no address is issued over dns-01; bad
#      CertServiceDNSUpdate key files fail httpd -t
#
# Output: "ok N - ..." / "not ok N - ...", "# ..." diagnostics, and one last
# line "N passed, M failed"; non-zero exit status if any failed.
#
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/t/lib/certsuite.sh"
tap_init

cs_need curl jq openssl pebble named nsupdate dig \
    -- dbd watchdog || bail "$need_why"
cs_modules || bail "the modules are not built (make)"

cs_tmpdir acme-dns01 || bail "mktemp failed"
cs_layout pebble ns1 ns2 cs2/logs || bail "cannot make the directories in $tmp"
cs2dir=$tmp/cs2

pebble_pid=
ns1_pid=
ns2_pid=
added_lo=
on_cleanup() {
    stop_httpd "$pxdir"
    stop_httpd "$csdir"
    stop_httpd "$cs2dir"
    stop_pids "$pebble_pid" "$ns1_pid" "$ns2_pid"
    [ -z "$added_lo" ] || ip addr del 127.0.0.2/32 dev lo
}

# --- PKI, ports ---------------------------------------------------------------

"$top/t/certservice/make-pki.sh" "$pki" >"$tmp/pki.log" 2>&1 \
    || bail "make-pki.sh failed: $(cat "$tmp/pki.log")"
chmod 755 "$pki"
{
    fallback_cert "$pki" fallback.dns01.invalid \
    && "$top/t/certservice/make-acme-pki.sh" "$pki" dns01
} >"$tmp/pki2.log" 2>&1 || bail "cannot make the test certificates: $(cat "$tmp/pki2.log")"

declare -A used
newport() {
    local p
    while :; do
        p=$(pick_port)
        if [ -z "${used[$p]:-}" ]; then
            used[$p]=1
            echo "$p"
            return
        fi
    done
}
dns_port=$(newport); used[$dns_port]=1
pebble_port=$(newport); used[$pebble_port]=1
pebble_mgmt=$(newport); used[$pebble_mgmt]=1
http_port=$(newport); used[$http_port]=1
tls01_port=$(newport); used[$tls01_port]=1
cs_port=$(newport); used[$cs_port]=1
cs2_port=$(newport); used[$cs2_port]=1
px_port=$(newport); used[$px_port]=1
st_port=$(newport); used[$st_port]=1
diag "ports: DNS $dns_port (127.0.0.1 and 127.0.0.2), pebble $pebble_port, CertService $cs_port, proxy $px_port"

# --- BIND ---------------------------------------------------------------------

# Two TSIG keys: CertService's, and the hook's own.
tsig-keygen -a hmac-sha256 cs-key >"$tmp/cs-key.conf"
tsig-keygen -a hmac-sha256 hook-key >"$tmp/hook-key.conf"
chmod 600 "$tmp/cs-key.conf"
# The same secret alone, as the other file form.
sed -n 's/.*secret "\(.*\)".*/\1/p' "$tmp/cs-key.conf" >"$tmp/cs-key.secret"
chmod 600 "$tmp/cs-key.secret"

zone_file() { # ZONE EXTRA: SOA, NS ns1 (127.0.0.1), EXTRA lines
    printf '$TTL 30\n@ SOA ns1.%s. admin.%s. 1 30 10 600 30\n@ NS ns1.%s.\nns1 A 127.0.0.1\n%s\n' \
        "$1" "$1" "$1" "$2"
}
# named listens only on addresses of an interface: the secondary needs
# 127.0.0.2 on lo (added as root for the run, removed after; nothing
# else changes: 127.0.0.0/8 is routed to lo anyway).  Without it, no
# secondary (a check skipped says so; build/test.sh as root adds it for
# the whole suite).
nservers=1
if ip -4 addr show dev lo 2>/dev/null | grep -q 'inet 127\.0\.0\.2/'; then
    nservers=2
elif [ "$(id -u)" = 0 ] && ip addr add 127.0.0.2/32 dev lo 2>/dev/null; then
    added_lo=1
    nservers=2
fi
if [ "$nservers" = 2 ]; then
    zone_file wild.test "@ NS ns2.wild.test.
ns2 A 127.0.0.2" >"$tmp/ns1/wild.test.db"
else
    zone_file wild.test "" >"$tmp/ns1/wild.test.db"
fi
zone_file customer.test "_acme-challenge CNAME customer-test.acme.pool.test." \
    >"$tmp/ns1/customer.test.db"
zone_file acme.pool.test "" >"$tmp/ns1/acme.pool.test.db"
zone_file hooked.test "" >"$tmp/ns1/hooked.test.db"
zone_file lag.test "@ NS ns2.lag.test.
ns2 A 127.0.0.3" >"$tmp/ns1/lag.test.db"

named_opts() { # DIR ADDR
    cat <<EOF
options {
    directory "$1"; pid-file "$1/named.pid";
    session-keyfile "$1/session.key"; managed-keys-directory "$1";
    listen-on port $dns_port { $2; }; listen-on-v6 { none; };
    recursion yes; allow-recursion { 127.0.0.0/8; };
    dnssec-validation no;
};
controls { };
EOF
}
{
    named_opts "$tmp/ns1" 127.0.0.1
    cat "$tmp/cs-key.conf" "$tmp/hook-key.conf"
    cat <<EOF
zone "wild.test" { type primary; file "wild.test.db";
    update-policy { grant cs-key zonesub TXT; };
    notify explicit; also-notify { 127.0.0.2 port $dns_port; };
    notify-source 127.0.0.1;
    allow-transfer { 127.0.0.2; }; };
zone "customer.test" { type primary; file "customer.test.db"; };
zone "acme.pool.test" { type primary; file "acme.pool.test.db";
    update-policy { grant cs-key zonesub TXT; }; };
zone "hooked.test" { type primary; file "hooked.test.db";
    update-policy { grant hook-key zonesub TXT; }; };
zone "lag.test" { type primary; file "lag.test.db";
    update-policy { grant cs-key zonesub TXT; }; };
EOF
} >"$tmp/ns1/named.conf"
{
    named_opts "$tmp/ns2" 127.0.0.2
    cat <<EOF
zone "wild.test" { type secondary; file "wild.test.db";
    primaries { 127.0.0.1 port $dns_port; }; transfer-source 127.0.0.2; };
EOF
} >"$tmp/ns2/named.conf"
# As a user of its own when we are root (the journal and the
# secondary's copy are written in its directory).
start_named() { # DIR
    if [ -n "$run_user" ]; then
        chown -R "$run_user" "$1"
        runuser -u "$run_user" -- named -g -4 -c "$1/named.conf" \
            >"$1/named.log" 2>&1 &
    else
        named -g -4 -c "$1/named.conf" >"$1/named.log" 2>&1 &
    fi
}
chmod 755 "$tmp/ns1" "$tmp/ns2"
start_named "$tmp/ns1"
ns1_pid=$!
if [ "$nservers" = 2 ]; then
    start_named "$tmp/ns2"
    ns2_pid=$!
fi
dq() { # SERVER NAME TYPE [+opts]: dig's short answer
    dig +time=2 +tries=1 -p "$dns_port" "@$1" "$2" "$3" +short "${@:4}" 2>/dev/null
}
ns_up() {
    grep -q '^127.0.0.1$' <<<"$(dq 127.0.0.1 ns1.wild.test A)" \
    && { [ "$nservers" = 1 ] \
         || grep -q '^ns1.wild.test' <<<"$(dq 127.0.0.2 wild.test SOA +norec)"; }
}
for _ in $(seq 1 100); do ns_up && break; sleep 0.2; done
ns_up || bail "named did not start: $(tail -n 5 "$tmp/ns1/named.log" "$tmp/ns2/named.log")"
if [ "$nservers" = 2 ]; then
    ok "BIND 9 started: primary 127.0.0.1:$dns_port, secondary of wild.test 127.0.0.2:$dns_port ($(named -v))"
else
    # build/test.sh puts 127.0.0.2 on lo for the run: CI has the secondary.
    ok "1: # SKIP no secondary: 127.0.0.2 is not on lo and we are not root to add it (ip addr add 127.0.0.2/32 dev lo)"
fi

# --- pebble -------------------------------------------------------------------

pebble_conf "$pebble_port" "$pebble_mgmt" "$http_port" "$tls01_port" "$pki" \
    >"$tmp/pebble/config.json"
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
PEBBLE_VA_ALWAYS_VALID= \
    pebble -config "$tmp/pebble/config.json" -dnsserver "127.0.0.1:$dns_port" \
    >"$tmp/pebble/pebble.log" 2>&1 &
pebble_pid=$!
wait_port "$pebble_port" && wait_port "$pebble_mgmt" \
    || bail "pebble did not start: $(tail -5 "$tmp/pebble/pebble.log")"
ok "pebble started (validation on), resolving through BIND"

# --- the hook -----------------------------------------------------------------

mkdir -p "$tmp/hook" && chmod 777 "$tmp/hook"
chmod 644 "$tmp/hook-key.conf"    # the hook runs as httpd's user
cat >"$tmp/hook.sh" <<HOOK
#!/bin/sh
# CertServiceDNSHook: \$1 set|unset, \$2 domain, \$3 value, \$4 record name.
echo "\$*" >>"$tmp/hook/calls"
case \$4 in
    *.hooked.test) ;;
    *) echo "hook: no provider for \$4" >&2; exit 4 ;;
esac
if [ "\$1" = set ]; then op=add; ttl=30; else op=delete; ttl=; fi
nsupdate -k "$tmp/hook-key.conf" <<EOF
server 127.0.0.1 $dns_port
zone hooked.test
update \$op \$4 \$ttl TXT \$3
send
EOF
HOOK
chmod 755 "$tmp/hook.sh"

# --- CertService, proxy ------------------------------------------------------

dns_conf="CertServiceDNSUpdate wild.test 127.0.0.1:$dns_port cs-key \"$tmp/cs-key.conf\"
CertServiceDNSUpdate acme.pool.test 127.0.0.1:$dns_port cs-key \"$tmp/cs-key.secret\" hmac-sha256
CertServiceDNSUpdate lag.test 127.0.0.1:$dns_port cs-key \"$tmp/cs-key.conf\"
CertServiceDNSHook \"$tmp/hook.sh\" 20
CertServiceDNSResolver 127.0.0.1:$dns_port
CertServiceDNSPropagation 15 $dns_port"
write_cs_conf "$csdir" "$cs_port" log="warn certservice:info" \
    acme="https://127.0.0.1:$pebble_port/dir" \
    vhost="CertServiceACMEContact mailto:dns01@example.org
CertServiceACMEWorkers 3
CertServiceACMEBackoff 600 600
CertServiceACMEPreCheck on
$dns_conf"
start_httpd "$csdir" "$cs_port" \
    || bail "CertService did not start: $(tail -5 "$csdir/start.log" "$csdir/logs/error_log")"
req() { cs_req admin "${PORT:-$cs_port}" "$@"; }
req GET "/v1/domains?limit=1"
[ "$code" = 200 ] || bail "CertService answers GET /v1/domains with $code: $body"
ok "CertService started with dns-01 (RFC 2136 for three zones, a hook)"

write_px_conf "$pxdir" "$px_port" "$st_port" "$cs_port" dns01 \
    activation=dynamic fallback=fallback.dns01.invalid
start_httpd "$pxdir" "$st_port" && wait_port "$px_port" \
    || bail "the proxy did not start: $(tail -5 "$pxdir/start.log" "$pxdir/logs/error_log")"
ok "proxy started (dynamic activation): TLS $px_port"

# --- helpers ------------------------------------------------------------------

norm_serial() {
    local s
    s=$(tr 'A-F' 'a-f' <<<"$1" | sed 's/^0*//')
    echo "${s:-0}"
}
served() { # SNI: the serial presented
    local s
    s=$(timeout 10 openssl s_client -connect "127.0.0.1:$px_port" \
            -servername "$1" </dev/null 2>/dev/null \
        | openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//')
    if [ -n "$s" ]; then norm_serial "$s"; else echo none; fi
}
cs_serial() { req GET "/v1/domains/$1"; jqb '.serial // ""'; }
has_cert() { [ -n "$(cs_serial "$1")" ]; }
failed_once() { req GET "/v1/domains/$1"; [ "$(jqb '.acme.attempts // 0')" -ge 1 ]; }
wait_for() {
    local limit=$(($(date +%s) + $1))
    shift
    while ! "$@"; do
        [ "$(date +%s)" -lt "$limit" ] || return 1
        sleep 1
    done
}
show() { req GET "/v1/domains/$1"; diag "$1: $(jqb -c '{state, serial, last_error, acme}')"; }
curl -sS --noproxy '*' --cacert "$pki/acme-tls-ca.crt" \
    "https://127.0.0.1:$pebble_mgmt/roots/0" >"$tmp/work/pebble-root.pem"

# Queue everything at once: the failures take the propagation timeout.
for d in '*.wild.test' '*.customer.test' '*.hooked.test' '*.lag.test' \
         '*.nohook.test'; do
    req PUT "/v1/domains/$d" '{}'
    is "$code" 202 "PUT /v1/domains/$d is queued (202)"
done

# =============================================================================
section "1. a wildcard through RFC 2136 + TSIG, on both authoritative servers"

if wait_for 120 has_cert '*.wild.test'; then
    ok "*.wild.test has a certificate from pebble"
else
    notok "*.wild.test has a certificate from pebble"
    show '*.wild.test'
fi
grep -E 'CS0009[01]:.*wild\.test' "$csdir/logs/error_log" | sed 's/^/# /' | head -4
grep -q "CS00091: dns-01: TXT _acme-challenge.wild.test is answered by all $nservers servers of zone wild.test" \
    "$csdir/logs/error_log"
okif $? "the record was answered by both servers of wild.test (primary, secondary) before pebble was told"
grep -q 'deleted TXT _acme-challenge.wild.test from zone wild.test' "$csdir/logs/error_log"
okif $? "CertService deleted the record after the validation"
gone() { # SERVER NAME: it answers, without a TXT for NAME
    local a
    a=$(dig +time=2 +tries=1 -p "$dns_port" "@$1" "$2" TXT +norec 2>/dev/null)
    grep -qE 'status: (NOERROR|NXDOMAIN)' <<<"$a" \
        && [ -z "$(dq "$1" "$2" TXT +norec)" ]
}
wait_for 10 gone 127.0.0.1 _acme-challenge.wild.test \
    && { [ "$nservers" = 1 ] || wait_for 10 gone 127.0.0.2 _acme-challenge.wild.test; }
okif $? "the record is gone from both servers"
serial=$(norm_serial "$(cs_serial '*.wild.test')")
pserved() { [ "$(served a.wild.test)" = "$serial" ] && [ "$(served b.wild.test)" = "$serial" ]; }
if wait_for 60 pserved; then
    ok "the proxy serves the wildcard certificate (serial $serial) for a.wild.test and b.wild.test"
else
    notok "the proxy serves the wildcard certificate for a.wild.test and b.wild.test"
    diag "served: $(served a.wild.test) $(served b.wild.test), CertService $serial"
fi
timeout 10 openssl s_client -connect "127.0.0.1:$px_port" -servername x.wild.test \
    -showcerts </dev/null 2>/dev/null \
    | awk '/BEGIN CERT/{n++} n{print > ("'"$tmp/work/c"'" n ".pem")}'
openssl x509 -in "$tmp/work/c1.pem" -noout -ext subjectAltName 2>/dev/null | grep -q 'DNS:\*\.wild\.test$'
okif $? "its subjectAltName is DNS:*.wild.test"
openssl verify -CAfile "$tmp/work/pebble-root.pem" -untrusted "$tmp/work/c2.pem" \
    "$tmp/work/c1.pem" >/dev/null 2>&1
okif $? "its chain verifies to pebble's root"

# =============================================================================
section "2. CNAME delegation into the pool's zone"

if wait_for 60 has_cert '*.customer.test'; then
    ok "*.customer.test has a certificate (its _acme-challenge is a CNAME)"
else
    notok "*.customer.test has a certificate (its _acme-challenge is a CNAME)"
    show '*.customer.test'
fi
grep -q 'CS00090: dns-01: added TXT customer-test.acme.pool.test to zone acme.pool.test' \
    "$csdir/logs/error_log"
okif $? "the TXT went to customer-test.acme.pool.test in the pool's zone"
! grep -qE 'CS00090: .* zone customer\.test' "$csdir/logs/error_log"
okif $? "nothing was written to customer.test (the customer's zone)"
gone 127.0.0.1 customer-test.acme.pool.test
okif $? "the delegated record is gone afterwards"

# =============================================================================
section "3. the hook command"

if wait_for 60 has_cert '*.hooked.test'; then
    ok "*.hooked.test has a certificate, published by CertServiceDNSHook"
else
    notok "*.hooked.test has a certificate, published by CertServiceDNSHook"
    show '*.hooked.test'
fi
diag "hook calls: $(tr '\n' '|' <"$tmp/hook/calls")"
grep -qE '^set hooked\.test [A-Za-z0-9_-]{43} _acme-challenge\.hooked\.test$' "$tmp/hook/calls" \
    && grep -qE '^unset hooked\.test [A-Za-z0-9_-]{43} _acme-challenge\.hooked\.test$' "$tmp/hook/calls"
okif $? "the hook ran as HOOK set|unset DOMAIN VALUE NAME"
gone 127.0.0.1 _acme-challenge.hooked.test
okif $? "the hook's record is gone afterwards"

# =============================================================================
section "4. failures name what failed"

if wait_for 90 failed_once '*.lag.test'; then
    req GET '/v1/domains/*.lag.test'
    err=$(jqb .last_error)
    diag "last_error: $err"
    grep -q 'ns2.lag.test (127.0.0.3)' <<<"$err" && ! grep -q 'ns1.lag.test' <<<"$err"
    okif $? "*.lag.test fails naming the server that lags (ns2.lag.test (127.0.0.3)), not the one that has it"
else
    notok "*.lag.test fails"
    show '*.lag.test'
fi
gone 127.0.0.1 _acme-challenge.lag.test
okif $? "the lag.test record was removed after the failed wait"
if wait_for 60 failed_once '*.nohook.test'; then
    req GET '/v1/domains/*.nohook.test'
    err=$(jqb .last_error)
    diag "last_error: $err"
    grep -q 'exit status 4' <<<"$err"
    okif $? "a name the hook refuses fails with the hook's exit status"
else
    notok "*.nohook.test fails"
    show '*.nohook.test'
fi
! grep -qF "$(cat "$tmp/cs-key.secret")" "$csdir/logs/error_log" "$csdir/db/cs.db"
okif $? "the TSIG secret is in no log line and not in the database"

# =============================================================================
section "5. without dns-01; bad configuration"

write_cs_conf "$cs2dir" "$cs2_port" acme="https://127.0.0.1:$pebble_port/dir" \
    db="$cs2dir/cs.db"
[ -z "$run_user" ] || { chmod 755 "$cs2dir"; chown "$run_user" "$cs2dir"; }
if start_httpd "$cs2dir" "$cs2_port"; then
    PORT=$cs2_port req PUT '/v1/domains/*.plain.test' '{}'
    is "$code" 400 "a wildcard on a CertService without dns-01 is a 400"
    grep -q 'CertServiceDNSUpdate or CertServiceDNSHook' <<<"$body"
    okif $? "... naming the directives: $(jqb .error 2>/dev/null || echo "$body")"
    stop_httpd "$cs2dir"
else
    notok "the second CertService (no dns-01) started"
fi
# CertServiceDNSChallenge all: a name that is not a wildcard, whose port 80
# reaches nobody (www.wild.test has no address at all), over dns-01.
write_cs_conf "$cs2dir" "$cs2_port" log="warn certservice:info" \
    acme="https://127.0.0.1:$pebble_port/dir" db="$cs2dir/cs.db" \
    vhost="CertServiceDNSUpdate wild.test 127.0.0.1:$dns_port cs-key \"$tmp/cs-key.conf\"
CertServiceDNSResolver 127.0.0.1:$dns_port
CertServiceDNSPropagation 15 $dns_port
CertServiceDNSChallenge all"
if start_httpd "$cs2dir" "$cs2_port"; then
    PORT=$cs2_port req PUT '/v1/domains/www.wild.test' '{}'
    is "$code" 202 "with CertServiceDNSChallenge all, PUT www.wild.test is queued"
    if PORT=$cs2_port wait_for 60 has_cert www.wild.test; then
        ok "www.wild.test (no address, port 80 reaches nobody) is issued over dns-01"
    else
        notok "www.wild.test is issued over dns-01"
        PORT=$cs2_port show www.wild.test
    fi
    grep -q 'CS00090: dns-01: added TXT _acme-challenge.www.wild.test' "$cs2dir/logs/error_log"
    okif $? "... through its TXT record _acme-challenge.www.wild.test"
    stop_httpd "$cs2dir"
else
    notok "the second CertService (CertServiceDNSChallenge all) started"
fi
chmod 644 "$tmp/cs-key.secret"
write_cs_conf "$cs2dir" "$cs2_port" acme="https://127.0.0.1:$pebble_port/dir" \
    vhost="CertServiceDNSUpdate acme.pool.test 127.0.0.1 cs-key \"$tmp/cs-key.secret\""
out=$("$HTTPD" -t -f "$cs2dir/httpd.conf" 2>&1)
grep -q 'CertServiceDNSUpdate: the TSIG key file .* readable by its owner only' <<<"$out"
okif $? "a TSIG key file others can read fails httpd -t"
chmod 600 "$tmp/cs-key.secret"
echo 'not base64!' >"$tmp/bad.secret"; chmod 600 "$tmp/bad.secret"
write_cs_conf "$cs2dir" "$cs2_port" acme="https://127.0.0.1:$pebble_port/dir" \
    vhost="CertServiceDNSUpdate acme.pool.test 127.0.0.1 cs-key \"$tmp/bad.secret\""
out=$("$HTTPD" -t -f "$cs2dir/httpd.conf" 2>&1)
grep -q 'holds no base64 TSIG secret' <<<"$out"
okif $? "a key file without a base64 secret fails httpd -t"

grep -E 'AH[0-9]+|CS[0-9]+' "$csdir/logs/error_log" | grep -E ':(error|crit|emerg)\]' \
    | grep -vE 'CS00095' | head -5 | sed 's/^/# unexpected: /'

echo "# $SECONDS s"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
