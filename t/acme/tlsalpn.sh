#!/bin/bash
#
# t/acme/tlsalpn.sh: tls-alpn-01 (RFC 8737) end to end: pebble validates
# through HAProxy and the proxies, in vhost and in dynamic mode.
#
# The demo pool (t/lib/pool.sh) with POOL_ISSUER=acme: pebble (validation
# on) whose "tlsPort" is HAProxy's TLS frontend, pebble-challtestsrv as its
# DNS (every name is 127.0.0.1), CertService with
# `CertServiceACMEChallenges tls-alpn-01` (http-01 off: a certificate can
# only come through tls-alpn-01), three proxies with `Protocols http/1.1
# acme-tls/1` behind HAProxy (TCP mode, PROXY v2).
#
#   1. vhost mode: a normal handshake (ALPN h2,http/1.1 and http/1.1) gets
#      the fallback certificate, not acme-tls/1; an acme-tls/1 handshake
#      for a name with no challenge in progress fails with no certificate
#      (CY00195); a domain PUT is issued by pebble through HAProxy: the
#      proxies answered acme-tls/1 (CY00197) with the certificate CertService
#      handed out (CS00103), pebble logged its tls-alpn-01 validation; once
#      the order is over, acme-tls/1 for that name is refused again.
#   2. dynamic mode (the same proxies restarted with CertSyncActivation
#      dynamic): a normal handshake for the domain of step 1 gets its
#      certificate from the store; a new domain is issued through
#      tls-alpn-01; the domain of step 1 is issued again while the store
#      serves it (the challenge certificate, not the store's, answers
#      acme-tls/1); the new serial is served to normal handshakes.
#
# TLSALPN_BREAK=protocols runs it with the proxies' Protocols left at
# http/1.1 (acme-tls/1 not allowed): the orders must then fail (what
# the test looks like failing).
#
# Output: "ok N - ..." / "not ok N - ..." and a last line "N passed, M
# failed"; non-zero exit status if any failed.  Runs as root (children as
# nobody) or as a user.  Run it under flock /tmp/e2e-acme.lock (pebble's
# fixed ways, like make check-acme).
#
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/t/lib/pool.sh"   # and t/lib/certsuite.sh
tap_init

for p in curl jq openssl pebble pebble-challtestsrv haproxy; do
    command -v "$p" >/dev/null || { echo "1..0 # SKIP $p not found"; exit 0; }
done

cs_tmpdir certsuite-alpn || { echo "Bail out! mktemp failed"; exit 1; }
work=$tmp
chmod 755 "$work"
on_cleanup() {
    pool_stop_all >/dev/null 2>&1
    if [ "$nfail" != 0 ]; then
        pool_log_tail 30 | sed 's/^/# /'
        tail -n 30 "$POOL_DIR/acme/pebble.log" 2>/dev/null | sed 's/^/# pebble: /'
    fi
}

base=$(pool_pick_base) || bail "no free ports"
export POOL_ISSUER=acme
# Every order validates (pebble would reuse a valid authorization at
# random, and the re-issue of step 2 must go through a handshake).
export PEBBLE_AUTHZREUSE=0
export POOL_PEBBLE_TLS_PORT=$base       # HAProxy's TLS frontend
export POOL_CS_EXTRA="CertServiceACMEChallenges tls-alpn-01
LogLevel warn certservice:debug"
if [ "${TLSALPN_BREAK:-}" = protocols ]; then
    export POOL_PX_EXTRA="Protocols http/1.1"
else
    export POOL_PX_EXTRA="Protocols http/1.1 acme-tls/1"
fi
export POOL_SYNC_INTERVAL="2 1"
pool_init "$work/pool" "$base" || bail "pool_init"
pool_pki >/dev/null || bail "pool_pki"
pool_start_acme || bail "pebble did not start"
pool_start_certservice || bail "CertService did not start"

start_proxies() {
    local n
    for n in 1 2 3; do
        pool_start_proxy "$n" || return 1
    done
}
stop_proxies() {
    local n
    for n in 1 2 3; do
        pool_stop_proxy "$n"
    done
}
# Until HAProxy sees the three proxies UP.
wait_lb_up() {
    local i n up
    for ((i = 0; i < 100; i++)); do
        up=0
        for n in 1 2 3; do
            case $(pool_lb_state "$n" 2>/dev/null) in UP*) up=$((up + 1)) ;; esac
        done
        [ "$up" = 3 ] && return 0
        sleep 0.2
    done
    return 1
}

# hs NAME ALPN [PORT]: a handshake (through HAProxy by default); s_client's
# output in $work/hs.out, its status returned.
hs() {
    openssl s_client -connect "127.0.0.1:${3:-$POOL_LB_PORT}" \
        -servername "$1" -alpn "$2" </dev/null >"$work/hs.out" 2>&1
}
hs_subject() { openssl x509 -noout -subject -nameopt RFC2253 <"$work/hs.out" 2>/dev/null; }
hs_serial() { openssl x509 -noout -serial <"$work/hs.out" 2>/dev/null | sed 's/^serial=//' | _pool_serial_norm; }
hs_alpn() { sed -n 's/^ALPN protocol: //p' "$work/hs.out"; }

# issue NAME [SECONDS]: PUT /v1/domains/NAME, then until it has a serial
# (printed) or its order failed (the error printed, status 1).
issue() {
    local name=$1 i out state err s
    out=$(pool_cs_curl admin "/v1/domains/$name" -X PUT \
          -H 'Content-Type: application/json' --data-binary '{}' \
          -w ' %{http_code}')
    case $out in *" 202") ;; *) echo "PUT $name: $out"; return 1 ;; esac
    for ((i = 0; i < ${2:-90} * 2; i++)); do
        out=$(pool_cs_curl admin "/v1/domains/$name")
        state=$(jq -r '.acme.state // empty' <<<"$out")
        s=$(jq -r '.serial // empty' <<<"$out")
        if [ "$state" = valid ] && [ -n "$s" ]; then
            _pool_serial_norm <<<"$s"
            return 0
        fi
        if [ "$state" = failed ]; then
            err=$(jq -r '.acme.last_error // .last_error // empty' <<<"$out")
            echo "failed: $err"
            return 1
        fi
        sleep 0.5
    done
    echo "no certificate after ${2:-90} s: $out"
    return 1
}

# logs_have PATTERN: the proxies' error logs (any of them) match
proxies_log() { cat "$POOL_DIR"/proxy[123]/logs/error_log; }
# count of a fixed string in the proxies' logs
proxies_count() { proxies_log | grep -cF -- "$1"; }

# --- 1. vhost mode ---------------------------------------------------------
section "1. vhost mode"
start_proxies || bail "the proxies did not start"
pool_start_haproxy || bail "HAProxy did not start"
wait_lb_up || bail "HAProxy does not see the three proxies up"
ok "pebble (tlsPort = HAProxy $POOL_LB_PORT), CertService (tls-alpn-01 only), 3 vhost proxies, HAProxy"

D1=alpn-vhost.test
D2=alpn-dyn.test

hs "$D1" h2,http/1.1
rc=$?
subj=$(hs_subject)
[ "$rc" = 0 ] && [ "$subj" = subject=CN=fallback.pool.invalid ] \
    && [ "$(hs_alpn)" != acme-tls/1 ]
okif $? "normal handshake (ALPN h2,http/1.1) through HAProxy: fallback certificate, ALPN '$(hs_alpn)'" \
    || diag "$(tail -n 20 "$work/hs.out")"
hs "$D1" http/1.1
rc=$?
[ "$rc" = 0 ] && [ "$(hs_subject)" = subject=CN=fallback.pool.invalid ] \
    && [ "$(hs_alpn)" = http/1.1 ]
okif $? "normal handshake (ALPN http/1.1): fallback certificate, ALPN http/1.1"

before=$(proxies_count "CY00195: tls-alpn-01: no challenge in progress for $D1")
hs "$D1" acme-tls/1
rc=$?
! grep -q 'BEGIN CERTIFICATE' "$work/hs.out" && [ "$rc" != 0 ] \
    && [ "$(proxies_count "CY00195: tls-alpn-01: no challenge in progress for $D1")" -gt "$before" ]
okif $? "acme-tls/1 for $D1 without a challenge: handshake fails, no certificate sent (CY00195)" \
    || diag "$(tail -n 8 "$work/hs.out")"

t0=$SECONDS
out=$(issue "$D1")
rc=$?
okif $rc "$D1 issued by pebble over tls-alpn-01 through HAProxy and a vhost proxy ($((SECONDS - t0)) s): serial $out" \
    || diag "$out"
S1=$out
n197=$(proxies_count "CY00197: tls-alpn-01: answering acme-tls/1 for $D1")
[ "$n197" -ge 1 ]
okif $? "the proxies answered acme-tls/1 for $D1 ($n197 handshakes, CY00197)"
grep -q "CS00103: proxy '.*': tls-alpn-01 certificate of $D1" "$POOL_DIR/cs/logs/error_log"
okif $? "CertService handed the challenge certificate to a proxy (CS00103, role proxy)"
grep -q "CS00102: acme: $D1: tls-alpn-01 certificate published" \
    "$POOL_DIR/cs/logs/error_log"
okif $? "CertService made and stored the tls-alpn-01 certificate of $D1 (CS00102)"
grep -q "Starting 3 validations" "$POOL_DIR/acme/pebble.log"
okif $? "pebble validated (its log: 'Starting 3 validations'), through HAProxy's $POOL_LB_PORT"

# The proxies keep a challenge 5 s: after that, no challenge for D1.
sleep 6
hs "$D1" acme-tls/1
rc=$?
! grep -q 'BEGIN CERTIFICATE' "$work/hs.out" && [ "$rc" != 0 ]
okif $? "after the order, acme-tls/1 for $D1 is refused again (the challenge left the store)"

# --- 2. dynamic mode -------------------------------------------------------
section "2. dynamic mode"
stop_proxies
# Fresh stores: a dynamic proxy syncs everything from the start.
rm -rf "$POOL_DIR"/proxy[123]/store
export POOL_ACTIVATION=dynamic
start_proxies || bail "the dynamic proxies did not start"
wait_lb_up || bail "HAProxy does not see the dynamic proxies up"
ok "the three proxies restarted with CertSyncActivation dynamic"

served=
for ((i = 0; i < 60; i++)); do
    hs "$D1" h2,http/1.1 && served=$(hs_serial)
    [ -n "$S1" ] && [ "$served" = "$S1" ] && break
    sleep 0.5
done
[ -n "$S1" ] && [ "$served" = "$S1" ] && [ "$(hs_alpn)" != acme-tls/1 ]
okif $? "normal handshake for $D1 in dynamic mode: its certificate from the store (serial $served)"

before=$(proxies_count "CY00197: tls-alpn-01: answering acme-tls/1 for $D2")
t0=$SECONDS
out=$(issue "$D2")
rc=$?
okif $rc "$D2 issued over tls-alpn-01 through HAProxy and a dynamic proxy ($((SECONDS - t0)) s): serial $out" \
    || diag "$out"
S2=$out
[ "$(proxies_count "CY00197: tls-alpn-01: answering acme-tls/1 for $D2")" -gt "$before" ]
okif $? "dynamic proxies answered acme-tls/1 for $D2 (CY00197)"

# Again for D1, which the store (and every proxy's cache) serves: the
# acme-tls/1 handshake must get the challenge certificate, not the store's.
before=$(proxies_count "CY00197: tls-alpn-01: answering acme-tls/1 for $D1")
out=$(issue "$D1")
rc=$?
[ "$rc" = 0 ] && [ "$out" != "$S1" ]
okif $? "$D1, served from the store, issued again over tls-alpn-01: new serial $out" \
    || diag "$out"
S1b=$out
[ "$(proxies_count "CY00197: tls-alpn-01: answering acme-tls/1 for $D1")" -gt "$before" ]
okif $? "... the dynamic proxies answered its acme-tls/1 handshakes with the challenge certificate"

served=
for ((i = 0; i < 60; i++)); do
    hs "$D1" http/1.1 && served=$(hs_serial)
    [ "$served" = "$S1b" ] && break
    sleep 0.5
done
[ "$served" = "$S1b" ]
okif $? "normal handshakes for $D1 get the new serial $S1b through HAProxy"
served=
for ((i = 0; i < 60; i++)); do
    hs "$D2" h2,http/1.1 && served=$(hs_serial)
    [ -n "$S2" ] && [ "$served" = "$S2" ] && break
    sleep 0.5
done
[ -n "$S2" ] && [ "$served" = "$S2" ]
okif $? "normal handshakes for $D2 get its certificate (serial $served)"

echo "1..$n"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
