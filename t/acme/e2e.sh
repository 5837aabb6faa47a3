#!/bin/bash
#
# t/acme/e2e.sh: ACME issuance and renewal through a real proxy, end to end.
#
# Starts, all on 127.0.0.1 and free ports:
#
#   pebble-challtestsrv  DNS only: every name is 127.0.0.1 (no AAAA),
#                        except names the test maps elsewhere
#   pebble               the ACME CA, validation ON (PEBBLE_VA_ALWAYS_VALID
#                        unset), PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT
#                        (default 25%: one nonce in four refused), its http-01
#                        validation sent to the proxy's plain-HTTP port
#   ca-proxy.py          a fault-injecting HTTPS proxy in front of pebble: 429
#                        + Retry-After on new orders when asked, and ACME
#                        Renewal Information (which pebble 2.4 lacks)
#   CertService          mod_certservice with CertServiceACMEDirectory (the
#                        ca-proxy), SQLite, mutual TLS
#   proxy                httpd with mod_certsync, mod_macro_gen, mod_ssl and
#                        the documented http-01 relay (mod_proxy: ProxyPass
#                        /.well-known/acme-challenge/ to CertService's
#                        /acme-challenge/ with the proxy's client certificate)
#
# and shows:
#
#   1. 20 domains added (PUT /v1/domains/D, 202): each gets a certificate
#      from pebble validated over http-01 through the proxy; the proxy
#      serves each with pebble's chain (leaf + pebble's intermediate, which
#      verifies to pebble's root)
#   2. a domain that resolves elsewhere (127.0.0.2) fails cleanly: the
#      CA's error is in GET /v1/domains/D, and it is retried with backoff
#      (attempts grow, the gaps double)
#   3. badNonce answers (PEBBLE_WFE_NONCEREJECT) were retried: pebble
#      refused nonces and every order still succeeded
#   4. rate limits: the CA answers 429 + Retry-After to new orders: the
#      domain waits (error visible), nobody orders during the pause, then
#      it is issued; CertService's own limiter (CertServiceACMELimit) holds
#      across two CertService instances on one database
#   5. CA down: pebble stopped, a domain added fails with "CA
#      unreachable", is retried with backoff, and issued once pebble is
#      back (a new pebble: the account is registered again)
#   6. renewal: with pebble's certificateValidityPeriod at 90 s a
#      certificate is renewed by itself at about two thirds of its
#      lifetime (read from the certificate), the renewal appears in the
#      change feed and the proxy serves the new serial; with an ARI window
#      offered, the renewal happens inside the window
#   7. account key rollover (POST /v1/acme/account/key-change: same
#      account, new key, later orders succeed), revocation (POST
#      /v1/domains/D/revoke: pebble reports the serial revoked, a new
#      certificate replaces it), and an alternate chain
#      (CertServiceACMEPreferredChain: pebble's second root)
#   8. notifications (CertServiceNotifyURL, CertServiceNotifySecret,
#      CertServiceNotifyCmd, CertServiceNotifyExpiring 80s) all through
#      steps 1 to 7, into notify-receiver.py (which verifies every
#      signature and answers its first request 503) and a command: every
#      event arrives once, signed, at both; each domain of step 1 has
#      exactly one "issued"; the failed order of step 2 carries the CA's
#      problem document; the 503 was retried; the renewal of step 6 is
#      "renewed", and its 90 s certificate "expiring" first; with two
#      instances on one database (step 4) nothing came twice
#   9. ACME profiles, through ca-proxy.py (pebble 2.4 has none; the proxy
#      lists classic, tlsserver and shortlived in meta.profiles and sees
#      each newOrder's "profile"): a domain PUT with {"profile":
#      "shortlived"} is ordered with it and GET shows it; a name that is
#      not one is a 400; a profile the directory does not list fails
#      before any order, named in last_error; one the CA refuses at
#      newOrder shows its invalidProfile problem; CertServiceACMEProfile
#      is the default of domains without one, and a value the CA does not
#      offer is logged (CS00041).  What the profile does to the lifetime
#      is not seen here (pebble's lifetime is its own): the renewal of
#      160-hour and 45-day certificates is in t/unit/test_cs_acme_drive.c.
#  10. External Account Binding against a second pebble that requires it
#      (externalAccountBindingRequired, externalAccountMACKeys): without
#      CertServiceACMEExternalAccountBinding the order fails naming the
#      directive; with a wrong MAC key pebble refuses the account; with
#      the right one an account is made and certificates are issued, and
#      the admin API's key rollover works there; the MAC key is in no
#      log, API answer or database file; bad key files
#      fail httpd -t naming the directive and the file
#  11. several CAs: pebble (through ca-proxy.py) first, the EAB pebble of
#      step 10 second (<CertServiceACMEIssuer backup>, two accounts): with
#      CA 1 stopped a new order and a renewal of CA 1's certificate go to
#      CA 2 (its chain verifies to the EAB pebble's root), GET
#      /v1/acme/cas and GET /metrics show CA 1 down with its error and
#      retry (the metrics: orders by CA and result, the budgets, promtool
#      clean); with CA 1
#      back, renewals return to it; bad sections fail httpd -t naming the
#      directive and the value
#
# Step 2 also runs CertServiceACMEPreCheck: a domain that reaches the pool
# is issued, one that does not fails before any order reaches the CA.
# Step 1 also checks that the renewal times of certificates issued
# together are spread (per-certificate jitter: no renewal storm).
#
# Output: "ok N - ..." / "not ok N - ..." per check, "# ..." diagnostics, and
# one last line "N passed, M failed"; non-zero exit status if any failed.
# Runs as root (httpd's children then run as nobody) or as a normal user.
# Everything it starts is stopped on exit.
#
# Environment:
#   HTTPD, APXS         the httpd binary / apxs to find it and its modules
#   ACME_DOMAINS        domains of step 1 [20]
#   ACME_NONCEREJECT    pebble's PEBBLE_WFE_NONCEREJECT [25]
#   CERTSUITE_KEEP=1    keep the temporary directory
#
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
NDOM=${ACME_DOMAINS:-20}
NONCEREJECT=${ACME_NONCEREJECT:-25}
. "$top/t/lib/certsuite.sh"
tap_init

# --- Prerequisites -----------------------------------------------------------

cs_need curl jq openssl python3 sqlite3 pebble pebble-challtestsrv \
    -- dbd macro proxy proxy_http watchdog || bail "$need_why"

cs_modules || bail "the modules are not built (make)"

# --- Temporary directory, cleanup --------------------------------------------

cs_tmpdir acme-e2e || bail "mktemp failed"
cs_layout cs2/logs pebble || bail "cannot make the directories in $tmp"
cs2dir=$tmp/cs2
[ -z "$run_user" ] || chmod 755 "$cs2dir"

pids=()         # challtestsrv
pebble_pid=
caproxy_pid=
peb2_pid=
nr_pid=         # notify-receiver.py
on_cleanup() {
    local stop=stop_httpd   # without waiting for the outbox (see below)
    declare -F lib_stop_httpd >/dev/null && stop=lib_stop_httpd
    $stop "$pxdir"
    $stop "$csdir"
    $stop "$cs2dir"
    stop_pids "${pids[@]}" "$pebble_pid" "$caproxy_pid" "$peb2_pid" "$nr_pid"
}

# --- PKI ---------------------------------------------------------------------

"$top/t/certservice/make-pki.sh" "$pki" >"$tmp/pki.log" 2>&1 \
    || bail "make-pki.sh failed: $(cat "$tmp/pki.log")"
chmod 755 "$pki"
# The proxy's fallback certificate, then pebble's TLS and the account seal.
{
    fallback_cert "$pki" fallback.e2e.invalid \
    && "$top/t/certservice/make-acme-pki.sh" "$pki" e2e
} >"$tmp/pki2.log" 2>&1 || bail "cannot make the test certificates: $(cat "$tmp/pki2.log")"

# --- Ports -------------------------------------------------------------------

declare -A used
newport() { # a free port not handed out before
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
dns_port=$(newport)
cts_port=$(newport)
pebble_port=$(newport)
pebble_mgmt=$(newport)
pebble_tls01=$(newport)
caproxy_port=$(newport)
http_port=$(newport)
px_port=$(newport)
st_port=$(newport)
cs_port=$(newport)
cs2_port=$(newport)
peb2_port=$(newport)
peb2_mgmt=$(newport)
peb2_tls01=$(newport)
nr_port=$(newport)
for v in dns_port cts_port pebble_port pebble_mgmt caproxy_port http_port \
         px_port st_port cs_port cs2_port peb2_port peb2_mgmt peb2_tls01 \
         nr_port; do
    used[${!v}]=1
done
diag "ports: dns $dns_port, pebble $pebble_port (mgmt $pebble_mgmt), ca-proxy $caproxy_port, proxy http $http_port https $px_port status $st_port, CertService $cs_port / $cs2_port"

# --- DNS, pebble, ca-proxy ---------------------------------------------------

start_challtestsrv "$dns_port" "$cts_port" "$tmp/challtestsrv.log"
pids+=($!)
wait_port "$cts_port" || bail "pebble-challtestsrv did not start: $(tail -5 "$tmp/challtestsrv.log")"
cts() { # path json: challtestsrv's management API
    curl -sS --noproxy '*' --max-time 10 -X POST -d "$2" \
        "http://127.0.0.1:$cts_port$1" >/dev/null
}

# start_pebble VALIDITY: pebble with that certificateValidityPeriod (s)
start_pebble() {
    pebble_conf "$pebble_port" "$pebble_mgmt" "$http_port" "$pebble_tls01" \
        "$pki" "$1" >"$tmp/pebble/config.json"
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=$NONCEREJECT \
    PEBBLE_AUTHZREUSE=0 PEBBLE_VA_ALWAYS_VALID= PEBBLE_ALTERNATE_ROOTS=1 \
        pebble -config "$tmp/pebble/config.json" \
        -dnsserver "127.0.0.1:$dns_port" >>"$tmp/pebble/pebble.log" 2>&1 &
    pebble_pid=$!
    wait_port "$pebble_port" && wait_port "$pebble_mgmt"
}
stop_pebble() {
    stop_pids "$pebble_pid"
    pebble_pid=
}
# 5 years: nothing renews during steps 1 to 5.
start_pebble 157766400 || bail "pebble did not start: $(tail -5 "$tmp/pebble/pebble.log")"

start_caproxy() {
    python3 "$here/ca-proxy.py" "$caproxy_port" "$pebble_port" \
        "$pki/acme-tls.crt" "$pki/acme-tls.key" >>"$tmp/ca-proxy.log" 2>&1 &
    caproxy_pid=$!
    wait_port "$caproxy_port"
}
stop_caproxy() {
    stop_pids "$caproxy_pid"
    caproxy_pid=
}
start_caproxy || bail "ca-proxy.py did not start: $(tail -5 "$tmp/ca-proxy.log")"
fault() { # path [json]: the ca-proxy's control API
    curl -sS --noproxy '*' --max-time 10 --cacert "$pki/acme-tls-ca.crt" \
        ${2:+-X POST -d "$2"} "https://127.0.0.1:$caproxy_port/__fault/$1"
}
castat() { fault stats | jq -r ".$1"; }
castq() { fault stats | jq -r "$1"; }     # a whole jq expression
ok "pebble (validation on, $NONCEREJECT% nonces refused), pebble-challtestsrv and ca-proxy.py started"

# --- Notifications: the webhook receiver, the command ------------------------

mkdir -p "$tmp/notify" && chmod 777 "$tmp/notify"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/notify.secret"
python3 "$here/notify-receiver.py" "$nr_port" "$tmp/notify.secret" \
    "$tmp/notify/webhook.jsonl" 1 >>"$tmp/notify-receiver.log" 2>&1 &
nr_pid=$!
wait_port "$nr_port" || bail "notify-receiver.py did not start: $(tail -5 "$tmp/notify-receiver.log")"
# The command: one JSON line per run (its arguments, the event it read).
cat >"$tmp/notify-cmd.sh" <<CMD
#!/bin/sh
jq -c --arg t "\$1" --arg d "\$2" '{arg_type: \$t, arg_domain: \$d, event: .}' >>"$tmp/notify/cmd.jsonl"
CMD
chmod 755 "$tmp/notify-cmd.sh"
notify_conf="CertServiceNotifyURL http://127.0.0.1:$nr_port/hook
CertServiceNotifySecret \"$tmp/notify.secret\"
CertServiceNotifyCmd \"$tmp/notify-cmd.sh\"
CertServiceNotifyExpiring 80s"

# --- CertService -------------------------------------------------------------

# write_cs DIR PORT LIMIT WINDOW [LINE]: a CertService on the database of
# $csdir (LINE: one more directive)
write_cs() {
    write_cs_conf "$1" "$2" log="warn certservice:info" db="$csdir/db/cs.db" \
        acme="https://127.0.0.1:$caproxy_port/dir" \
        vhost="CertServiceACMEContact mailto:e2e@example.org
CertServiceACMEWorkers 3
CertServiceACMELimit $3 $4
CertServiceACMEBackoff 2 16
$notify_conf${5:+
$5}"
}
write_cs "$csdir" "$cs_port" 1000 60
start_httpd "$csdir" "$cs_port" \
    || bail "CertService did not start: $(tail -5 "$csdir/start.log" "$csdir/logs/error_log")"

# req METHOD PATH [BODY]: as admin on the first CertService (or $PORT)
req() { cs_req admin "${PORT:-$cs_port}" "$@"; }
req GET "/v1/domains?limit=1"
[ "$code" = 200 ] || bail "CertService answers GET /v1/domains with $code: $body"
ok "CertService started with ACME (directory through ca-proxy.py)"

# --- proxy -------------------------------------------------------------------

# The proxy, with the http-01 relay (docs/acme-relay.md): port 80 of
# every proxy, any host.
write_px_conf "$pxdir" "$px_port" "$st_port" "$cs_port" acme \
    fallback=fallback.e2e.invalid extra="$(
        load proxy_module mod_proxy.so mod_proxy.c
        load proxy_http_module mod_proxy_http.so mod_proxy_http.c
        acme_relay_vhost "$http_port" "$cs_port" proxy acme-relay.invalid \
            "$pki" "$pxdir/logs/relay_log")"
start_httpd "$pxdir" "$st_port" && wait_port "$px_port" && wait_port "$http_port" \
    || bail "the proxy did not start: $(tail -5 "$pxdir/start.log" "$pxdir/logs/error_log")"
ok "proxy started: TLS $px_port, http-01 relay $http_port, status $st_port"

# The relay answers nothing that is not in progress.
c=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' \
    -H 'Host: nothing.test' "http://127.0.0.1:$http_port/.well-known/acme-challenge/abcDEF123")
is "$c" 404 "the relay answers 404 for a token not in progress"

# --- probing -----------------------------------------------------------------

norm_serial() {
    local s
    s=$(tr 'A-F' 'a-f' <<<"$1" | sed 's/^0*//')
    echo "${s:-0}"
}
served() { # SNI name: the serial presented ("none": no handshake)
    local s
    s=$(timeout 10 openssl s_client -connect "127.0.0.1:$px_port" \
            -servername "$1" </dev/null 2>/dev/null \
        | openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//')
    if [ -n "$s" ]; then norm_serial "$s"; else echo none; fi
}
cs_serial() { # domain: the serial CertService has ("" if none)
    req GET "/v1/domains/$1"
    jqb '.serial // ""'
}
# wait_for SECONDS CMD...: until CMD succeeds; status 1 on timeout
wait_for() {
    local limit=$(($(date +%s) + $1))
    shift
    while ! "$@"; do
        [ "$(date +%s)" -lt "$limit" ] || return 1
        sleep 1
    done
}
# The outbox has nothing left to deliver.
drained() {
    local n
    n=$(sqlite3 "$csdir/db/cs.db" "SELECT COUNT(*) FROM cs_notify_events WHERE state <> 'sent'" 2>/dev/null)
    [ "$n" = 0 ]
}
# A CertService stopped while its notification thread runs the command
# runs it again after the claim expired (at least once, as documented):
# the steps below stop an instance only when its outbox is drained, so
# that step 8 can show every event delivered exactly once.
eval "lib_$(declare -f stop_httpd)"
stop_httpd() {
    [ "$1" = "$pxdir" ] || wait_for 30 drained
    lib_stop_httpd "$@"
}
# domains_active D...: every one has a serial at CertService
domains_active() {
    local d
    for d in "$@"; do
        [ -n "$(cs_serial "$d")" ] || return 1
    done
}
# served_all D...: the proxy presents CertService's serial for every one
served_all() {
    local d
    for d in "$@"; do
        [ "$(served "$d")" = "$(norm_serial "$(cs_serial "$d")")" ] || return 1
    done
}

# =============================================================================
section "1. $NDOM domains through pebble, validated over http-01 by the proxy"

domains=()
for i in $(seq 1 "$NDOM"); do
    domains+=("d$i.acme.test")
done
codes=
for d in "${domains[@]}"; do
    req PUT "/v1/domains/$d" '{}'
    codes="$codes$code "
done
is "$(tr ' ' '\n' <<<"$codes" | sort -u | tr '\n' ' ')" " 202 " \
    "PUT /v1/domains/D answers 202 (queued) for all $NDOM"
req GET "/v1/domains/d1.acme.test"
diag "just queued: $(jqb -c '{state, acme}')"
t1=$(date +%s)
if wait_for 240 domains_active "${domains[@]}"; then
    ok "all $NDOM domains have a certificate ($(($(date +%s) - t1)) s)"
else
    notok "all $NDOM domains have a certificate"
    for d in "${domains[@]}"; do
        req GET "/v1/domains/$d"
        diag "$d: $(jqb -c '{state, serial, last_error, acme}')"
    done
fi
req GET "/v1/domains/d1.acme.test"
is "$(jqb '.acme.state')/$(jqb '.acme.attempts')" "valid/0" \
    "the queue shows the job valid, no failed attempt"
life=$(( $(jqb .not_after) - $(jqb .not_before) ))
renew=$(jqb .acme.renew_at)
nb=$(jqb .not_before)
frac=$(( life > 0 ? (renew - nb) * 1000 / life : 0 ))
[ "$frac" -ge 610 ] && [ "$frac" -le 670 ]
okif $? "renewal scheduled at ${frac} per mille of the lifetime the certificate states ($life s)"
# Certificates issued within seconds of each other: renewals spread over
# the jitter (5% of the lifetime), all distinct.
ras=$(for d in "${domains[@]}"; do req GET "/v1/domains/$d"; jqb .acme.renew_at; done | sort -n)
spread=$(( ($(tail -1 <<<"$ras") - $(head -1 <<<"$ras")) * 1000 / life ))
[ "$(uniq <<<"$ras" | wc -l)" = "$NDOM" ] && [ "$spread" -ge $((NDOM >= 10 ? 25 : 5)) ]
okif $? "their renewals are spread: $NDOM distinct times over ${spread} per mille of the lifetime (no renewal storm)"

# The chain is pebble's.
curl -sS --noproxy '*' --cacert "$pki/acme-tls-ca.crt" \
    "https://127.0.0.1:$pebble_mgmt/roots/0" >"$tmp/work/pebble-root.pem"
curl -sS --noproxy '*' --cacert "$pki/acme-tls-ca.crt" \
    "https://127.0.0.1:$pebble_mgmt/intermediates/0" >"$tmp/work/pebble-int.pem"
grep -q 'BEGIN CERTIFICATE' "$tmp/work/pebble-root.pem" \
    || diag "no pebble root: $(head -c 200 "$tmp/work/pebble-root.pem")"

if wait_for 120 served_all "${domains[@]}"; then
    ok "the proxy serves every domain with the serial CertService has"
else
    notok "the proxy serves every domain with the serial CertService has"
    for d in "${domains[@]}"; do
        diag "$d: served $(served "$d"), CertService $(cs_serial "$d")"
    done
fi
bad=0
for d in "${domains[@]}"; do
    timeout 10 openssl s_client -connect "127.0.0.1:$px_port" -servername "$d" \
        -showcerts </dev/null 2>/dev/null \
        | awk '/BEGIN CERT/{n++} n{print > ("'"$tmp/work/c"'" n ".pem")} /END CERT/{}' 
    # c1 leaf, c2 intermediate
    if ! openssl verify -CAfile "$tmp/work/pebble-root.pem" \
            -untrusted "$tmp/work/c2.pem" "$tmp/work/c1.pem" >/dev/null 2>&1 \
       || ! cmp -s <(openssl x509 -in "$tmp/work/c2.pem" -outform DER) \
                   <(openssl x509 -in "$tmp/work/pebble-int.pem" -outform DER) \
       || ! openssl x509 -in "$tmp/work/c1.pem" -noout -ext subjectAltName \
            | grep -q "DNS:$d\$"; then
        bad=$((bad + 1))
        diag "$d: chain not pebble's: $(openssl x509 -in "$tmp/work/c1.pem" -noout -issuer -subject 2>&1)"
    fi
    rm -f "$tmp/work"/c*.pem
done
is "$bad" 0 "every domain is served with pebble's chain (leaf for the name + pebble's intermediate, verifying to pebble's root)"
finalized=$(castat finalize)
[ "$finalized" -ge "$NDOM" ]
okif $? "pebble finalized $finalized orders (validation on: each was validated by a request through the proxy)"
missing=0
for d in "${domains[@]}"; do
    grep -qE "^$d(:$http_port)? GET /\.well-known/acme-challenge/[A-Za-z0-9_-]+ HTTP/1\.1 200\$" \
        "$pxdir/logs/relay_log" || missing=$((missing + 1))
done
is "$missing" 0 "for every domain the CA fetched its token through the proxy's relay (200 in the relay's log)"

# =============================================================================
section "2. a domain that does not resolve to us"

cts /add-a '{"host":"elsewhere.acme.test.","addresses":["127.0.0.2"]}'
req PUT /v1/domains/elsewhere.acme.test '{}'
is "$code" 202 "PUT of a domain resolving to 127.0.0.2 is queued"
attempts_ge() { # domain n
    req GET "/v1/domains/$1"
    [ "$(jqb '.acme.attempts')" -ge "$2" ] 2>/dev/null
}
wait_for 60 attempts_ge elsewhere.acme.test 1
req GET /v1/domains/elsewhere.acme.test
err=$(jqb '.last_error // ""')
diag "last_error: $err"
grep -q 'urn:ietf:params:acme:error:' <<<"$err" && [ "$(jqb .state)" = error ]
okif $? "the failure is visible in GET /v1/domains/D with the CA's error (state error)"
first_next=$(( $(jqb .acme.next_attempt) - $(jqb .updated) ))
wait_for 60 attempts_ge elsewhere.acme.test 3
req GET /v1/domains/elsewhere.acme.test
third_next=$(( $(jqb .acme.next_attempt) - $(jqb .updated) ))
diag "attempt 1: next in ${first_next} s; attempt $(jqb .acme.attempts): next in ${third_next} s"
[ "$(jqb .acme.attempts)" -ge 3 ] && [ "$third_next" -gt "$first_next" ]
okif $? "it is retried with a growing backoff"
[ -z "$(jqb '.serial // ""')" ]
okif $? "no certificate for it"
is "$(served elsewhere.acme.test)" \
   "$(norm_serial "$(openssl x509 -in "$pki/fallback.crt" -noout -serial | sed 's/^serial=//')")" \
   "the proxy does not serve it (fallback certificate)"
[ "$(castat 'orders_for["elsewhere.acme.test"]')" -ge 1 ]
okif $? "without the pre-check, orders for it reached the CA ($(castat 'orders_for["elsewhere.acme.test"]'))"
req DELETE /v1/domains/elsewhere.acme.test

# The pre-check keeps such a domain from the CA.
stop_httpd "$csdir"
write_cs "$csdir" "$cs_port" 1000 60 \
    "CertServiceACMEPreCheck $http_port 127.0.0.1:$dns_port"
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart"
cts /add-a '{"host":"pc-bad.acme.test.","addresses":["127.0.0.2"]}'
req PUT /v1/domains/pc-good.acme.test '{}'
req PUT /v1/domains/pc-bad.acme.test '{}'
wait_for 60 domains_active pc-good.acme.test
okif $? "with CertServiceACMEPreCheck, a domain that reaches us is issued"
wait_for 60 attempts_ge pc-bad.acme.test 2
req GET /v1/domains/pc-bad.acme.test
diag "last_error: $(jqb .last_error)"
grep -q 'pre-check: .*127.0.0.2' <<<"$(jqb .last_error)" \
    && [ "$(jqb .acme.attempts)" -ge 2 ]
okif $? "a domain that does not reach us fails the pre-check (visible, retried)"
is "$(castat 'orders_for["pc-bad.acme.test"] // 0')" 0 \
    "no order for it reached the CA (nothing counts against the CA's limits)"
req DELETE /v1/domains/pc-bad.acme.test
stop_httpd "$csdir"
write_cs "$csdir" "$cs_port" 1000 60
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart"

# =============================================================================
section "3. bad nonces"

bn=$(castat bad_nonce)
diag "badNonce answers from pebble so far: $bn"
[ "$bn" -ge 1 ]
okif $? "pebble refused nonces ($bn badNonce answers) and every order still completed"

# =============================================================================
section "4. rate limits"

nb0=$(castat new_order)
# Retry-After 10 s: the check below runs 3 s after the second PUT, which
# on a loaded machine may come several seconds after the first 429.
fault ratelimit '{"count": 2, "retry_after": 10}' >/dev/null
req PUT /v1/domains/limited.acme.test '{}'
wait_for 30 attempts_ge limited.acme.test 1
req GET /v1/domains/limited.acme.test
err=$(jqb '.last_error // ""')
diag "last_error: $err"
grep -q rateLimited <<<"$err"
okif $? "a 429 from the CA is visible (rateLimited)"
t_limited=$(date +%s)
req PUT /v1/domains/limited2.acme.test '{}'
sleep 3
is "$(castat rate_limited)" 1 "during the CA's Retry-After nobody else orders (cluster-wide pause)"
if wait_for 60 domains_active limited.acme.test limited2.acme.test; then
    ok "after the pause both are issued ($(($(date +%s) - t_limited)) s)"
else
    notok "after the pause both are issued"
fi
# CertService's own limiter, shared by two instances on one database.
stop_httpd "$csdir"
write_cs "$csdir" "$cs_port" 3 40
write_cs "$cs2dir" "$cs2_port" 3 40
start_httpd "$csdir" "$cs_port" && start_httpd "$cs2dir" "$cs2_port" \
    || bail "CertService did not restart"
o0=$(castat orders_created)
lim=()
for i in 1 2 3 4 5 6; do
    lim+=("lim$i.acme.test")
    if [ $((i % 2)) = 0 ]; then PORT=$cs2_port req PUT "/v1/domains/lim$i.acme.test" '{}'
    else req PUT "/v1/domains/lim$i.acme.test" '{}'; fi
done
sleep 15
o1=$(($(castat orders_created) - o0))
active=0
for d in "${lim[@]}"; do
    [ -n "$(cs_serial "$d")" ] && active=$((active + 1))
done
diag "after 15 s: the CA created $o1 orders, $active of 6 domains issued"
[ "$o1" -le 3 ] && [ "$active" -le 3 ]
okif $? "CertServiceACMELimit 3 per 40 s holds across two instances on one database"
grep -h 'CS00018' "$csdir/logs/error_log" "$cs2dir/logs/error_log" | tail -2 \
    | while read -r l; do diag "$l"; done
if wait_for 90 domains_active "${lim[@]}"; then
    ok "the rest are issued in the next window"
else
    notok "the rest are issued in the next window"
fi
stop_httpd "$cs2dir"
stop_httpd "$csdir"
write_cs "$csdir" "$cs_port" 1000 60
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart"

# =============================================================================
section "5. CA down"

stop_pebble
stop_caproxy
req PUT /v1/domains/down.acme.test '{}'
wait_for 30 attempts_ge down.acme.test 2
req GET /v1/domains/down.acme.test
err=$(jqb '.last_error // ""')
diag "last_error: $err"
[ "$(jqb .acme.attempts)" -ge 2 ] && grep -q 'CA unreachable' <<<"$err"
okif $? "CA down (connection refused): the failure is visible and retried"
# A new pebble, certificates of 90 s from now on (step 6).
start_pebble 90 || bail "pebble did not start again"
start_caproxy || bail "ca-proxy.py did not start again"
if wait_for 60 domains_active down.acme.test; then
    ok "pebble back (a new one): the domain is issued"
else
    notok "pebble back (a new one): the domain is issued"
fi

# =============================================================================
section "6. renewal"

req GET /v1/domains/down.acme.test
s1=$(jqb .serial)
life=$(( $(jqb .not_after) - $(jqb .not_before) ))
renew_in=$(( $(jqb .acme.renew_at) - $(date +%s) ))
diag "lifetime $life s (from the certificate), renewal in $renew_in s"
req GET "/v1/changes?since=0&limit=1000"
seq1=$(jqb '[.changes[] | select(.domain == "down.acme.test")] | last | .seq')
renewed() {
    local s
    s=$(cs_serial down.acme.test)
    [ -n "$s" ] && [ "$s" != "$s1" ]
}
if wait_for 120 renewed; then
    s2=$(cs_serial down.acme.test)
    ok "renewed by itself at about two thirds of its $life s lifetime"
else
    s2=
    notok "renewed by itself at about two thirds of its $life s lifetime"
fi
req GET "/v1/changes?since=$seq1&limit=1000"
is "$(jqb --arg s "$s2" '[.changes[] | select(.domain == "down.acme.test" and .op == "upsert" and .serial == $s)] | length')" 1 \
    "the renewal is in the change feed"
if [ -n "$s2" ] && wait_for 60 served_all down.acme.test; then
    ok "the proxy serves the renewed certificate"
else
    notok "the proxy serves the renewed certificate (served $(served down.acme.test), want $s2)"
fi

# ARI: the directory offers renewalInfo; the window decides.
now=$(date +%s)
fault ari "{\"start\": $((now + 20)), \"end\": $((now + 30)), \"retry_after\": 5}" >/dev/null
stop_httpd "$csdir"   # a fresh directory fetch
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart"
req PUT /v1/domains/ari.acme.test '{}'
wait_for 60 domains_active ari.acme.test
req GET /v1/domains/ari.acme.test
sa=$(jqb .serial)
ra=$(jqb .acme.renew_at)
diag "ARI window $((now + 20))..$((now + 30)); renewal planned at $ra"
[ "$ra" -ge $((now + 20)) ] && [ "$ra" -lt $((now + 30)) ]
okif $? "with renewalInfo offered, the renewal is planned inside the CA's window"
ari_renewed() {
    local s
    s=$(cs_serial ari.acme.test)
    [ -n "$s" ] && [ "$s" != "$sa" ]
}
wait_for 60 ari_renewed
t_ari=$(date +%s)
[ "$t_ari" -ge $((now + 20)) ]
okif $? "renewed inside the window (at +$((t_ari - now)) s), before two thirds of the lifetime"
fault ari '{"end": 0}' >/dev/null
[ "$(castat renewal_info)" -ge 1 ]
okif $? "renewalInfo was asked ($(castat renewal_info) times)"

# =============================================================================
section "7. account key rollover, revocation"

req GET /v1/acme/account
acct1=$(jqb .account)
thumb1=$(jqb .key_thumbprint)
req POST /v1/acme/account/key-change '{}'
is "$code" 200 "POST /v1/acme/account/key-change: 200 ($(jqb -c . | head -c 300))"
[ "$(jqb .account)" = "$acct1" ] && [ -n "$thumb1" ] \
    && [ "$(jqb .key_thumbprint)" != "$thumb1" ]
okif $? "same account, new key"
req PUT /v1/domains/after-rollover.acme.test '{}'
if wait_for 60 domains_active after-rollover.acme.test; then
    ok "orders after the rollover succeed (signed with the new key)"
else
    req GET /v1/domains/after-rollover.acme.test
    notok "orders after the rollover succeed: $(jqb -c .acme)"
fi
req GET /v1/domains/after-rollover.acme.test
rs=$(jqb .serial)
req POST /v1/domains/after-rollover.acme.test/revoke '{"reason": 4}'
is "$code" 202 "POST /v1/domains/D/revoke: 202 (revoked, new certificate queued)"
st=$(curl -sS --noproxy '*' --cacert "$pki/acme-tls-ca.crt" \
    "https://127.0.0.1:$pebble_mgmt/cert-status-by-serial/$rs" | jq -r .Status)
is "$st" Revoked "pebble reports serial $rs revoked"
replaced() {
    local s
    s=$(cs_serial after-rollover.acme.test)
    [ -n "$s" ] && [ "$s" != "$rs" ]
}
wait_for 60 replaced
okif $? "the revoked certificate is replaced"

# Alternate chains: pebble offers one to its second root.
curl -sS --noproxy '*' --cacert "$pki/acme-tls-ca.crt" \
    "https://127.0.0.1:$pebble_mgmt/roots/1" >"$tmp/work/root1.pem"
alt_cn=$(openssl x509 -in "$tmp/work/root1.pem" -noout -subject -nameopt multiline \
    | sed -n 's/^ *commonName *= *//p')
diag "alternate root: $alt_cn"
stop_httpd "$csdir"
write_cs "$csdir" "$cs_port" 1000 60 "CertServiceACMEPreferredChain \"$alt_cn\""
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart"
req PUT /v1/domains/alt-chain.acme.test '{}'
wait_for 60 domains_active alt-chain.acme.test
cs_curl proxy "$cs_port" /v1/bundles/alt-chain.acme.test | jq -r .chain_pem \
    >"$tmp/work/alt-chain.pem"
n_certs=$(grep -c 'BEGIN CERT' "$tmp/work/alt-chain.pem")
openssl verify -CAfile "$tmp/work/root1.pem" -untrusted "$tmp/work/alt-chain.pem" \
    "$tmp/work/alt-chain.pem" >/dev/null 2>&1
okif $? "CertServiceACMEPreferredChain picks the alternate chain (verifies to pebble's second root; $n_certs certificates)"

# =============================================================================
section "8. notifications"

# Let the outbox drain (the 503's retry waits 30 s).
wait_for 90 drained
okif $? "the outbox drained: every row sent ($(sqlite3 "$csdir/db/cs.db" "SELECT sink, state, COUNT(*) FROM cs_notify_events GROUP BY sink, state" | tr '\n' ' '))"
wh=$tmp/notify/webhook.jsonl
cmdlog=$tmp/notify/cmd.jsonl
diag "webhook: $(curl -s --noproxy '*' "http://127.0.0.1:$nr_port/stats")"
diag "events: $(jq -r 'select(.status == 200) | .type' "$wh" | sort | uniq -c | tr '\n' ' ')"
is "$(jq -s '[.[] | select((.sig_ok and .ts_ok and .id_ok) | not)] | length' "$wh")" 0 \
    "every request was signed (HMAC-SHA256 over timestamp.body), fresh, and named its event"
is "$(jq -s '[.[] | select(.dup)] | length' "$wh")" 0 \
    "no event was delivered twice (two instances on one database in step 4)"
first=$(jq -s -r '.[0] | "\(.status) \(.id)"' "$wh")
fid=${first#* }
[ "${first% *}" = 503 ] \
    && [ "$(jq -s --arg i "$fid" '[.[] | select(.id == $i and .status == 200)] | length' "$wh")" = 1 ]
okif $? "the first request got 503; the event was retried and delivered once"
miss=0
for d in "${domains[@]}"; do
    [ "$(jq -s --arg d "$d" '[.[] | select(.status == 200 and .domain == $d and .type == "issued")] | length' "$wh")" = 1 ] \
        || { miss=$((miss + 1)); diag "$d: $(jq -s -c --arg d "$d" '[.[] | select(.domain == $d) | [.type, .status]]' "$wh")"; }
done
is "$miss" 0 "each of the ${#domains[@]} domains of step 1 has exactly one issued event"
is "$(jq -s '[.[] | select(.status == 200 and .domain == "down.acme.test" and .type == "renewed")] | length > 0' "$wh")" true \
    "the renewal of step 6 is a renewed event"
is "$(jq -s '[.[] | select(.status == 200 and .type == "expiring" and .domain == "down.acme.test")] | length > 0' "$wh")" true \
    "a 90 s certificate within 80 s of its end, not renewed yet, is an expiring event"
pf=$(jq -s -c '[.[] | select(.status == 200 and .type == "failed" and .domain == "elsewhere.acme.test")] | first | .event' "$wh")
diag "failed: $(head -c 600 <<<"$pf")"
grep -q '^urn:ietf:params:acme:error:' <<<"$(jq -r '.problem.type // ""' <<<"$pf")" \
    && [ -n "$(jq -r '.problem.detail // ""' <<<"$pf")" ] \
    && [ "$(jq -r '.attempts // 0' <<<"$pf")" -ge 1 ]
okif $? "the failed order of step 2 carries the CA's problem document (type, detail)"
is "$(jq -s '[.[] | select(.status == 200 and .type == "failed" and .domain == "pc-bad.acme.test" and .event.problem == null)] | length > 0' "$wh")" true \
    "a pre-check failure is a failed event without a problem document (no CA involved)"
is "$(jq -r '.event.id' "$cmdlog" | sort | uniq -d | wc -l)" 0 "the command ran once per event"
is "$(jq -r '.event.id' "$cmdlog" | sort | tr '\n' ' ')" \
   "$(jq -r 'select(.status == 200) | .id' "$wh" | sort | tr '\n' ' ')" \
    "the command got the same events as the webhook ($(wc -l <"$cmdlog") runs)"
is "$(jq -s '[.[] | select(.arg_type != .event.type or .arg_domain != .event.domain)] | length' "$cmdlog")" 0 \
    "the command's arguments are the event's type and domain"
is "$(cat "$csdir/logs/error_log" "$cs2dir/logs/error_log" 2>/dev/null | grep -c -F "$(cat "$tmp/notify.secret")")" 0 \
    "the secret is in no log"

# =============================================================================
section "9. ACME profiles (through ca-proxy.py: pebble 2.4 has none)"

# ca-proxy.py lists classic, tlsserver and shortlived in meta.profiles and
# records the "profile" of every newOrder; pebble issues as always.
req PUT /v1/domains/short.acme.test '{"profile":"shortlived"}'
is "$code/$(jqb .acme.profile)/$(jqb .acme.profile_source)" \
    "202/shortlived/domain" \
    "PUT /v1/domains/D {\"profile\":\"shortlived\"}: 202, the answer shows the domain's profile"
if wait_for 60 domains_active short.acme.test; then
    ok "a domain with profile shortlived is issued"
else
    req GET /v1/domains/short.acme.test
    notok "a domain with profile shortlived is issued: $(jqb -c .acme)"
fi
is "$(castq '[.profiles_for["short.acme.test"][]] | unique | join(",")')" \
    shortlived "its order asked the CA for profile shortlived (newOrder seen by ca-proxy.py)"
req GET /v1/domains/short.acme.test
is "$(jqb .acme.profile)" shortlived "GET /v1/domains/D shows profile shortlived"
# Its renewal is looked at at the end of this section: pebble issues 90 s
# certificates since step 5, as a short-lived profile would (pebble 2.4
# cannot tie a lifetime to a profile; the lifetime comes from the
# certificate, whatever the CA called it).
short_serial=$(jqb '.serial // ""')
short_nb=$(jqb '.not_before // 0')
short_life=$(( $(jqb '.not_after // 0') - short_nb ))
short_plan=$(( $(jqb '.acme.renew_at // 0') - short_nb ))
is "$(castq '.profiles_for["alt-chain.acme.test"] | (length > 0 and all(. == null))')" \
    true "a domain without a profile was ordered without one (no \"profile\" in newOrder)"

req PUT /v1/domains/syntax.acme.test '{"profile":"short lived"}'
is "$code" 400 "a profile name that is not one: 400"
grep -q "profile 'short lived' is not a profile name" <<<"$(jqb .error)"
okif $? "the 400 names it: $(jqb .error)"

req PUT /v1/domains/unoffered.acme.test '{"profile":"longlived"}'
is "$code" 202 "a profile the directory does not list is queued (202) ..."
wait_for 30 attempts_ge unoffered.acme.test 1
req GET /v1/domains/unoffered.acme.test
diag "last_error: $(jqb .last_error)"
grep -q "profile 'longlived' (chosen for the domain): the CA's directory does not offer" \
    <<<"$(jqb .last_error)" && [ "$(jqb .state)" = error ]
okif $? "... and fails, last_error naming it and what the CA offers"
is "$(castq '.orders_for["unoffered.acme.test"] // 0')" 0 \
    "no order for it reached the CA"
req DELETE /v1/domains/unoffered.acme.test

# The CA refuses a profile its directory listed when CertService read it:
# the CA's invalidProfile problem is what the domain shows.
fault profiles '{"accept": ["classic", "shortlived"]}' >/dev/null
req PUT /v1/domains/refused.acme.test '{"profile":"tlsserver"}'
wait_for 30 attempts_ge refused.acme.test 1
req GET /v1/domains/refused.acme.test
diag "last_error: $(jqb .last_error)"
grep -q 'urn:ietf:params:acme:error:invalidProfile' <<<"$(jqb .last_error)"
okif $? "a profile the CA refuses at newOrder: its invalidProfile problem is in last_error"
[ "$(castat invalid_profile)" -ge 1 ]
okif $? "ca-proxy.py refused $(castat invalid_profile) order(s) with invalidProfile"
fault profiles '{}' >/dev/null
req DELETE /v1/domains/refused.acme.test

# The pool's default, and one the CA does not offer.
stop_httpd "$csdir"
write_cs "$csdir" "$cs_port" 1000 60 "CertServiceACMEProfile tlsserver"
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart"
req PUT /v1/domains/pooldefault.acme.test '{}'
is "$(jqb .acme.profile)/$(jqb .acme.profile_source)" \
    "tlsserver/CertServiceACMEProfile" \
    "a domain without its own profile shows the pool's (CertServiceACMEProfile tlsserver)"
wait_for 60 domains_active pooldefault.acme.test
okif $? "... and is issued"
is "$(castq '[.profiles_for["pooldefault.acme.test"][]] | unique | join(",")')" \
    tlsserver "its order asked for profile tlsserver"
stop_httpd "$csdir"
write_cs "$csdir" "$cs_port" 1000 60 "CertServiceACMEProfile longlived"
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart"
has_profile_error() {
    grep -q "CS00041.*CertServiceACMEProfile longlived: the CA's directory does not offer" \
        "$csdir/logs/error_log"
}
wait_for 20 has_profile_error
okif $? "CertServiceACMEProfile longlived: the worker logs an error naming the directive and the value (CS00041)"
grep -h CS00041 "$csdir/logs/error_log" | tail -1 | while read -r l; do diag "$l"; done
stop_httpd "$csdir"
write_cs "$csdir" "$cs_port" 1000 60
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart"

# The shortlived domain's renewal is planned before two thirds of its
# certificate's lifetime, and happens then (the new certificate's
# notBefore is when the CA issued it: the plan plus the order's time).
short_renewed() {
    local s
    s=$(cs_serial short.acme.test)
    [ -n "$s" ] && [ "$s" != "$short_serial" ]
}
[ "$short_life" -gt 0 ] && [ "$short_plan" -gt 0 ] \
    && [ $((short_plan * 3)) -lt $((short_life * 2)) ]
okif $? "a shortlived certificate's renewal is planned before 2/3 of its lifetime ($short_plan of $short_life s)"
if [ "$short_life" -gt 0 ] \
    && wait_for $((short_nb + short_life - $(date +%s))) short_renewed; then
    req GET /v1/domains/short.acme.test
    at=$(( $(jqb .not_before) - short_nb ))
    diag "shortlived: renewal planned at $short_plan s, issued at $at s of $short_life s"
    [ "$at" -le $((short_plan + 20)) ]
    okif $? "... and renewed then ($at s into its $short_life s lifetime, planned $short_plan s)"
else
    notok "... and renewed then (not renewed within its $short_life s)"
fi
is "$(castq '.profiles_for["short.acme.test"] | "\(length >= 2) \(unique | join(","))"')" \
    "true shortlived" "its renewal asked for profile shortlived again"

# =============================================================================
section "10. External Account Binding (a second pebble that requires it)"

# A base64url MAC key as CAs hand them out, and a wrong one.
mac_key() { openssl rand 32 | base64 | tr '+/' '-_' | tr -d '=\n'; }
eab_key=$(mac_key)
eab_bad=$(mac_key)
pebble_conf "$peb2_port" "$peb2_mgmt" "$http_port" "$peb2_tls01" "$pki" \
    | jq --arg k "$eab_key" '.pebble.externalAccountBindingRequired = true
        | .pebble.externalAccountMACKeys = {"kid-e2e": $k}' \
    >"$tmp/pebble/eab.json"
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=$NONCEREJECT PEBBLE_AUTHZREUSE=0 \
PEBBLE_VA_ALWAYS_VALID= \
    pebble -config "$tmp/pebble/eab.json" -dnsserver "127.0.0.1:$dns_port" \
    >>"$tmp/pebble/eab.log" 2>&1 &
peb2_pid=$!
wait_port "$peb2_port" || bail "the EAB pebble did not start: $(tail -5 "$tmp/pebble/eab.log")"
dir2="https://127.0.0.1:$peb2_port/dir"
d2=$(curl -sS --noproxy '*' --cacert "$pki/acme-tls-ca.crt" "$dir2")
is "$(jq -r .meta.externalAccountRequired <<<"$d2")" true \
    "the second pebble's directory says meta.externalAccountRequired"

# write_cs_eab [LINE]: the first CertService, same database, issuing
# through the EAB pebble (LINE: the binding)
write_cs_eab() {
    write_cs_conf "$csdir" "$cs_port" log="warn certservice:info" \
        db="$csdir/db/cs.db" acme="$dir2" \
        vhost="CertServiceACMEContact mailto:e2e@example.org
CertServiceACMEWorkers 2
CertServiceACMELimit 1000 60
CertServiceACMEBackoff 2 8${1:+
$1}"
}
# last_error_has DOMAIN TEXT: the domain's last_error contains TEXT
last_error_has() {
    req GET "/v1/domains/$1"
    jqb '.last_error // ""' | grep -qF -- "$2"
}
install -m 600 /dev/null "$tmp/work/eab-good.key"
printf '%s\n' "$eab_key" >"$tmp/work/eab-good.key"
install -m 600 /dev/null "$tmp/work/eab-bad.key"
printf '%s\n' "$eab_bad" >"$tmp/work/eab-bad.key"

# Bad key files fail the configuration (httpd -t), naming directive and file.
conf_error() { # FILE: httpd -t's complaint about a binding with FILE
    write_cs_eab "CertServiceACMEExternalAccountBinding kid-e2e $1"
    "$HTTPD" -t -f "$csdir/httpd.conf" 2>&1 | grep -F CertServiceACMEExternalAccountBinding
}
printf 'not/base64+url\n' >"$tmp/work/eab-b64.key"; chmod 600 "$tmp/work/eab-b64.key"
: >"$tmp/work/eab-empty.key"; chmod 600 "$tmp/work/eab-empty.key"
install -m 644 /dev/null "$tmp/work/eab-open.key"; printf '%s\n' "$eab_key" >"$tmp/work/eab-open.key"
e=$(conf_error "$tmp/work/eab-b64.key")
grep -q "eab-b64.key.*not base64url" <<<"$e"
okif $? "a MAC key file that is not base64url fails httpd -t: $e"
e=$(conf_error "$tmp/work/eab-empty.key")
grep -q "eab-empty.key.*empty" <<<"$e"
okif $? "an empty MAC key file fails httpd -t: $e"
e=$(conf_error "$tmp/work/eab-missing.key")
grep -q "cannot read the MAC key file.*eab-missing.key" <<<"$e"
okif $? "a missing MAC key file fails httpd -t: $e"
e=$(conf_error "$tmp/work/eab-open.key")
grep -q "eab-open.key.*group or others" <<<"$e"
okif $? "a MAC key file others may read fails httpd -t: $e"
grep -qF -- "$eab_key" <<<"$e"
okif $((! $?)) "httpd -t's messages do not quote the key"
e=$(conf_error "$tmp/work/eab-good.key RS256")
grep -q "'RS256' is not a MAC algorithm" <<<"$e"
okif $? "an algorithm that is not HS256/384/512 fails httpd -t: $e"
write_cs_eab "CertServiceACMEExternalAccountBinding kid-e2e $tmp/work/eab-good.key hs512"
e=$("$HTTPD" -t -f "$csdir/httpd.conf" 2>&1)
grep -q "Syntax OK" <<<"$e"
okif $? "a good MAC key file with hs512 passes httpd -t: $e"

# Without a binding: the order fails, naming the directive.
stop_httpd "$csdir"
write_cs_eab
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart: $(tail -5 "$csdir/logs/error_log")"
req PUT /v1/domains/eab-none.acme.test '{}'
if wait_for 60 last_error_has eab-none.acme.test CertServiceACMEExternalAccountBinding; then
    ok "without a binding the order fails, naming the directive: $(jqb -r .last_error)"
else
    notok "without a binding the order fails, naming the directive: $(jqb -c '{last_error, acme}')"
fi
grep -q 'CS00020.*eab-none.acme.test.*External Account Binding.*CertServiceACMEExternalAccountBinding' \
    "$csdir/logs/error_log"
okif $? "CS00020 in the error log says so"

# A wrong MAC key: pebble refuses the account.
stop_httpd "$csdir"
write_cs_eab "CertServiceACMEExternalAccountBinding kid-e2e $tmp/work/eab-bad.key"
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart: $(tail -5 "$csdir/logs/error_log")"
req PUT /v1/domains/eab-wrong.acme.test '{}'
if wait_for 60 last_error_has eab-wrong.acme.test newAccount; then
    ok "with a wrong MAC key pebble refuses the account: $(jqb -r .last_error)"
else
    notok "with a wrong MAC key pebble refuses the account: $(jqb -c '{last_error, acme}')"
fi
req GET /v1/domains/eab-wrong.acme.test
is "$(jqb -r '.serial // "none"')" none "no certificate with the wrong key"

# The right key: an account at the EAB pebble, certificates issued (the
# two failed domains too, on their next try).
stop_httpd "$csdir"
write_cs_eab "CertServiceACMEExternalAccountBinding kid-e2e $tmp/work/eab-good.key"
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart: $(tail -5 "$csdir/logs/error_log")"
grep -q 'CS00050.*key id kid-e2e, HS256' "$csdir/logs/error_log"
okif $? "CS00050 logs the binding's key id at startup"
req PUT /v1/domains/eab-ok.acme.test '{}'
if wait_for 90 domains_active eab-ok.acme.test eab-none.acme.test eab-wrong.acme.test; then
    ok "with the right MAC key: account made, certificates issued by the EAB pebble"
else
    for d in eab-ok eab-none eab-wrong; do
        req GET "/v1/domains/$d.acme.test"
        diag "$d: $(jqb -c '{serial, last_error, acme}')"
    done
    notok "with the right MAC key: account made, certificates issued by the EAB pebble"
fi
req GET /v1/acme/account
acct_answer=$body
grep -q "127.0.0.1:$peb2_port/" <<<"$(jqb -r .account)"
okif $? "the account is the EAB pebble's: $(jqb -r .account)"
grep -q "acme: new account https://127.0.0.1:$peb2_port/" "$csdir/logs/error_log"
okif $? "CS00014 logged the new account"
# The chain is the EAB pebble's.
curl -sS --noproxy '*' --cacert "$pki/acme-tls-ca.crt" \
    "https://127.0.0.1:$peb2_mgmt/roots/0" >"$tmp/work/peb2-root.pem"
cs_curl proxy "$cs_port" /v1/bundles/eab-ok.acme.test | jq -r .chain_pem \
    >"$tmp/work/eab-chain.pem"
openssl verify -CAfile "$tmp/work/peb2-root.pem" -untrusted "$tmp/work/eab-chain.pem" \
    "$tmp/work/eab-chain.pem" >/dev/null 2>&1
okif $? "eab-ok.acme.test's chain verifies to the EAB pebble's root"
# The admin API's client binds too (it looks the account up first).
acct2=$(jq -r .account <<<"$acct_answer")
req POST /v1/acme/account/key-change '{}'
is "$code" 200 "key rollover at the EAB pebble: 200 ($(jqb -c . | head -c 300))"
is "$(jqb -r .account)" "$acct2" "same account after the rollover"
answers_kc=$body
req PUT /v1/domains/eab-rolled.acme.test '{}'
wait_for 60 domains_active eab-rolled.acme.test
okif $? "an order after the rollover at the EAB pebble succeeds"

# The MAC keys are nowhere: logs, API answers, the database.
answers=$acct_answer$answers_kc
for d in eab-ok eab-none eab-wrong eab-rolled; do
    req GET "/v1/domains/$d.acme.test"
    answers="$answers$body"
done
req GET "/v1/domains?limit=1000"
answers="$answers$body"
leaks=
for k in "$eab_key" "$eab_bad"; do
    grep -rlF -- "$k" "$csdir/logs" "$pxdir/logs" "$cs2dir/logs" \
        "$csdir/db" 2>/dev/null && leaks="$leaks files"
    grep -qF -- "$k" <<<"$answers" && leaks="$leaks api"
done
is "$leaks" "" "the MAC keys appear in no log file, API answer or database file"

# =============================================================================
section "11. Several CAs: failover to the EAB pebble and back"

# CA 1 is pebble through ca-proxy.py ("default"), CA 2 the EAB pebble of
# step 10 in a <CertServiceACMEIssuer backup> section.  CA 1 "stops" as
# ca-proxy.py stops (connection refused) and returns as it starts again.
# job_ca DOMAIN: the CA that issued the domain's certificate
job_ca() {
    sqlite3 "$csdir/db/cs.db" "SELECT ca FROM cs_acme_jobs WHERE domain = '$1'"
}
job_ca_is() { [ "$(job_ca "$1")" = "$2" ]; }
# issued_at DOMAIN CA: a certificate (a new serial, when OLD is set) from CA
issued_at() {
    local s
    s=$(cs_serial "$1")
    [ -n "$s" ] && [ "$s" != "${3:-}" ] && job_ca_is "$1" "$2"
}
write_cs_multi() { # [LINE]: both CAs (LINE: one more directive)
    write_cs_conf "$csdir" "$cs_port" log="warn certservice:info" \
        db="$csdir/db/cs.db" acme="https://127.0.0.1:$caproxy_port/dir" \
        vhost="CertServiceACMEContact mailto:e2e@example.org
CertServiceACMEWorkers 2
CertServiceACMELimit 1000 60
CertServiceACMEBackoff 2 8
<CertServiceACMEIssuer backup>
    CertServiceACMEDirectory $dir2
    CertServiceACMECA \"$pki/acme-tls-ca.crt\"
    CertServiceACMEExternalAccountBinding kid-e2e \"$tmp/work/eab-good.key\"
    CertServiceACMEAccounts 2
</CertServiceACMEIssuer>${1:+
$1}"
}
# Configuration errors name the directive and the value.
multi_error() { # LINE: httpd -t's complaint
    write_cs_multi "$1"
    "$HTTPD" -t -f "$csdir/httpd.conf" 2>&1 | grep -v "Syntax OK"
}
e=$(multi_error "<CertServiceACMEIssuer Bad_Name>
CertServiceACMEDirectory $dir2
</CertServiceACMEIssuer>")
grep -q "'Bad_Name' is not a CA name" <<<"$e"
okif $? "a CA name that is not one fails httpd -t: $e"
e=$(multi_error "<CertServiceACMEIssuer third>
CertServiceACMEWorkers 4
</CertServiceACMEIssuer>")
grep -q "CertServiceACMEWorkers is not allowed inside <CertServiceACMEIssuer third>" <<<"$e"
okif $? "a directive that is not the CA's own fails inside the section: $e"
e=$(multi_error "<CertServiceACMEIssuer third>
CertServiceACMEProfile shortlived
</CertServiceACMEIssuer>")
grep -q "<CertServiceACMEIssuer third> needs a CertServiceACMEDirectory" <<<"$e"
okif $? "a section without a directory fails httpd -t: $e"
e=$(multi_error "<CertServiceACMEIssuer backup>
CertServiceACMEDirectory $dir2
</CertServiceACMEIssuer>")
grep -q "a CA of that name is configured already" <<<"$e"
okif $? "two sections of one name fail httpd -t: $e"
e=$(multi_error "CertServiceACMEAccounts 0")
grep -q "CertServiceACMEAccounts" <<<"$e"
okif $? "CertServiceACMEAccounts 0 fails httpd -t: $e"

stop_httpd "$csdir"
write_cs_multi
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart: $(tail -5 "$csdir/logs/error_log")"
grep -q 'CS00082.*CA 2, backup: https://127.0.0.1:'"$peb2_port"'/dir, 2 account(s), External Account Binding key id kid-e2e' \
    "$csdir/logs/error_log"
okif $? "CS00082 logs the second CA, its accounts and its binding's key id at startup"

# Both up: a new domain goes to CA 1.
req PUT /v1/domains/mc-a.acme.test '{}'
wait_for 60 issued_at mc-a.acme.test default
okif $? "both CAs up: mc-a.acme.test issued by CA 1 (default)"
serial_a=$(cs_serial mc-a.acme.test)

# CA 1 down: new orders and renewals go to CA 2.
stop_caproxy
req PUT /v1/domains/mc-b.acme.test '{}'
if wait_for 90 issued_at mc-b.acme.test backup; then
    ok "CA 1 down: the new mc-b.acme.test issued by CA 2 (backup, EAB)"
else
    req GET /v1/domains/mc-b.acme.test
    notok "CA 1 down: the new mc-b.acme.test issued by CA 2: $(jqb -c '{serial, last_error, acme}') ca=$(job_ca mc-b.acme.test)"
fi
cs_curl proxy "$cs_port" /v1/bundles/mc-b.acme.test | jq -r .chain_pem \
    >"$tmp/work/mc-b-chain.pem"
openssl verify -CAfile "$tmp/work/peb2-root.pem" -untrusted "$tmp/work/mc-b-chain.pem" \
    "$tmp/work/mc-b-chain.pem" >/dev/null 2>&1
okif $? "... its chain verifies to the EAB pebble's root"
req PUT /v1/domains/mc-a.acme.test '{}'
wait_for 90 issued_at mc-a.acme.test backup "$serial_a"
okif $? "CA 1 down: the renewal of mc-a.acme.test (issued by CA 1) goes to CA 2"
grep -q "CS00080.*mc-a.acme.test moved from CA default to CA backup" "$csdir/logs/error_log"
okif $? "CS00080 logs the move"
grep -q "CS00047.*CA default (https://127.0.0.1:$caproxy_port/dir) is down" "$csdir/logs/error_log"
okif $? "CS00047 logs CA 1 down"
req GET /v1/acme/cas
is "$code" 200 "GET /v1/acme/cas: 200"
is "$(jqb -r '[.cas[] | "\(.order):\(.name):\(.state)"] | join(" ")')" \
    "1:default:down 2:backup:up" "... CA 1 down, CA 2 up, in their order"
jqb -e '.cas[0].failures >= 1 and (.cas[0].last_error | test("unreachable"))
        and .cas[0].next_retry > 0 and .cas[1].accounts == 2' >/dev/null
okif $? "... with CA 1's failures, last error and next retry: $(jqb -c '.cas[0] | {failures, last_error, next_retry}')"
jqb -e '[.budgets[].name] | index("orders:backup:1") != null' >/dev/null
okif $? "... and the budgets' rows (orders:backup:1 among them)"
# The same in the metrics (docs/mod_certservice.md, "Metrics").
req GET /metrics
metric() { grep -F "$1 " <<<"$body" | head -1 | awk '{print $NF}'; }
is "$(metric 'certservice_acme_ca_up{ca="default",order="1"}')/$(metric \
    'certservice_acme_ca_up{ca="backup",order="2"}')" "0/1" \
    "GET /metrics: CA 1 down, CA 2 up"
[ "$(metric 'certservice_acme_orders_total{ca="default",result="down"}')" -ge 1 ] \
    && [ "$(metric 'certservice_acme_orders_total{ca="backup",result="valid"}')" -ge 2 ] \
    && [ "$(metric 'certservice_acme_orders_total{ca="default",result="valid"}')" -ge 1 ] \
    2>/dev/null
okif $? "... orders by CA and result: $(grep '^certservice_acme_orders_total' <<<"$body" | tr '\n' ' ')"
[ -n "$(metric 'certservice_acme_budget_remaining{scope="account",ca="backup",account="2"}')" ] \
    && [ "$(metric 'certservice_acme_budget_limit{scope="account",ca="default",account="1"}')" = 1000 ]
okif $? "... the accounts' budgets: $(grep '^certservice_acme_budget_remaining' <<<"$body" | tr '\n' ' ')"
if command -v promtool >/dev/null 2>&1; then
    out=$(promtool check metrics <<<"$body" 2>&1)
    okif $? "... promtool check metrics: clean${out:+: $out}"
fi
serial_b=$(cs_serial mc-b.acme.test)
serial_a=$(cs_serial mc-a.acme.test)

# CA 1 back: renewals return to it once its retry time has come.
start_caproxy || bail "ca-proxy.py did not restart"
sleep 9
req PUT /v1/domains/mc-b.acme.test '{}'
if wait_for 90 issued_at mc-b.acme.test default "$serial_b"; then
    ok "CA 1 back: the renewal of mc-b.acme.test (issued by CA 2) returns to CA 1"
else
    req GET /v1/domains/mc-b.acme.test
    notok "CA 1 back: the renewal of mc-b.acme.test returns to CA 1: $(jqb -c '{serial, last_error}') ca=$(job_ca mc-b.acme.test)"
fi
req PUT /v1/domains/mc-a.acme.test '{}'
wait_for 90 issued_at mc-a.acme.test default "$serial_a"
okif $? "CA 1 back: mc-a.acme.test renewed at CA 1 again"
grep -q "CS00048.*CA default .* answers again" "$csdir/logs/error_log"
okif $? "CS00048 logs CA 1 back"
req GET /v1/acme/cas
is "$(jqb -r '[.cas[] | "\(.name):\(.state)"] | join(" ")')" \
    "default:up backup:up" "GET /v1/acme/cas: both up again"
stop_httpd "$csdir"
write_cs "$csdir" "$cs_port" 1000 60
start_httpd "$csdir" "$cs_port" || bail "CertService did not restart"

# No unexpected errors in the logs.
errs=$(grep -h -E '\[(crit|alert|emerg)\]|exit signal|Segmentation' \
    "$csdir/logs/error_log" "$cs2dir/logs/error_log" \
    "$pxdir/logs/error_log" 2>/dev/null | head -5)
is "$errs" "" "no crash or critical line in the error logs"

echo "# $((SECONDS - T0)) s"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
