#!/bin/bash
#
# t/tickets/e2e.sh: pool-wide TLS session resumption (issue 16, part 1),
# through HAProxy round-robin over the demo pool's three proxies
# (t/lib/pool.sh), in vhost mode and then in dynamic mode.  CertService
# rotates its ticket keys fast: CertServiceTicketKeys $LONG_ROTATE
# $LONG_ACCEPT (30 s, 180 s) for steps 1 and 2, so several rotations fall
# in the reconnects but every ticket stays accepted; then (a graceful
# restart of CertService) $ROTATE $ACCEPT (10 s, 4 s) for step 3.
#
# For each mode:
#   1. every proxy holds the pool's keys (status "ticket_keys"), all the
#      same one issuing; the sealed keys open with the wrapping key
#      (openssl cms) and no proxy file holds a key's plaintext.
#   2. openssl s_client through HAProxy, TLS 1.3 and TLS 1.2: of
#      RECONNECTS (300) reconnects, each offering the ticket the one
#      before got, at least 99 % "Reused"; HAProxy spread them over all
#      three proxies.
#   3. across a rotation: one ticket (TLS 1.3, and one TLS 1.2) resumed
#      through HAProxy every half second until its key's acceptance ends:
#      every try is "Reused"; once the key is gone, the same ticket gets
#      a full handshake ("New"), verified, no error.
#   4. the control: with CertSyncTicketKeys off on every proxy (vhost
#      mode only; a restart), TLS 1.3 reconnects through HAProxy are not
#      resumed across proxies (the check of step 2 can fail).
#
# CERTSUITE_KEEP=1 keeps the temporary directory.  Runs as root (workers
# as nobody) or as a normal user.  Needs haproxy, openssl, curl, jq,
# python3 and the build tree's modules.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/pool.sh
. "$top/t/lib/pool.sh"   # and t/lib/certsuite.sh

ROTATE=${TK_ROTATE:-10}
ACCEPT=${TK_ACCEPT:-4}
LONG_ROTATE=${TK_LONG_ROTATE:-30}
LONG_ACCEPT=${TK_LONG_ACCEPT:-180}
RECONNECTS=${TK_RECONNECTS:-300}
MODES=${TK_MODES:-vhost dynamic}
DOMAIN=shop.tickets.test
tap_init

for p in curl jq openssl python3 haproxy; do
    command -v "$p" >/dev/null || find_prog "$p" >/dev/null \
        || { echo "1..0 # SKIP $p not found"; exit 0; }
done

cs_tmpdir certsuite-tickets || { echo "Bail out! mktemp failed"; exit 1; }
work=$tmp
chmod 755 "$work"
on_cleanup() {
    pool_stop_all >/dev/null 2>&1
    if [ "$nfail" != 0 ]; then
        pool_log_tail 30 | sed 's/^/# /'
    fi
}

# s_client through HAProxy (SNI $DOMAIN, verified against the pool's
# CA), one HTTP/1.0 request read to its end: the TLS 1.3 tickets arrive
# before the answer (without reading, s_client may close first and keep
# no ticket)
sclient() {
    printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$DOMAIN" \
    | openssl s_client -connect "127.0.0.1:$POOL_LB_PORT" \
        -servername "$DOMAIN" -verify_hostname "$DOMAIN" \
        -CAfile "$POOL_TRUST_CA" -verify_return_error -ign_eof "$@" 2>&1
}
# reconnects VERSION COUNT: a first connection, then COUNT more, each
# offering the session the one before left (-sess_in/-sess_out: a client
# coming back with its newest ticket); prints "reused total".  (Not
# s_client -reconnect: OpenSSL 3.0's reconnects before a TLS 1.3 ticket
# has arrived, so it reports "New" even against a single server.)
reconnects() {
    local v=$1 count=$2 i out reused=0
    rm -f "$work/chain"
    sclient "-$v" -sess_out "$work/chain" >/dev/null
    for ((i = 0; i < count; i++)); do
        rm -f "$work/chain.next"
        if [ -s "$work/chain" ]; then
            out=$(sclient "-$v" -sess_in "$work/chain" \
                      -sess_out "$work/chain.next")
        else    # no ticket kept from the last one: a new session
            out=$(sclient "-$v" -sess_out "$work/chain.next")
        fi
        if grep -q '^Reused, ' <<<"$out"; then
            reused=$((reused + 1))
        else    # when (seconds into the rotation period), for the diag
            echo "$(date +%s.%N) $(grep -E '^(New|Reused), ' <<<"$out")" \
                >>"$work/missed.$v"
        fi
        [ -s "$work/chain.next" ] && mv "$work/chain.next" "$work/chain"
    done
    echo "$reused $count"
}
lb_sessions() { # the sessions HAProxy sent to each proxy: "n1 n2 n3"
    pool_lb_cmd "show stat" | awk -F, '$1 == "proxies" && $2 ~ /^proxy/ \
        { printf "%s ", $8 }'
}
tk_status() { # N: proxy N's "ticket_keys" status
    pool_proxy_status "$1" | jq -c '.ticket_keys // empty'
}
# wait_all_serve SERIAL: every proxy presents it (vhost mode restarts)
wait_all_serve() {
    local i px s ok3
    for ((i = 0; i < 240; i++)); do
        ok3=0
        for px in 1 2 3; do
            s=$(pool_served_serial "$px" "$DOMAIN" 2>/dev/null)
            [ "$s" = "$1" ] && ok3=$((ok3 + 1))
        done
        [ $ok3 = 3 ] && return 0
        sleep 0.5
    done
    return 1
}
# wait_keys: every proxy holds keys and names one issuing
wait_keys() {
    local i px got
    for ((i = 0; i < 60; i++)); do
        got=0
        for px in 1 2 3; do
            [ "$(tk_status "$px" | jq -r '.issuing // empty')" != "" ] \
                && got=$((got + 1))
        done
        [ $got = 3 ] && return 0
        sleep 0.5
    done
    return 1
}

# rotation VERSION: step 3 for one protocol version
rotation() {
    local v=$1 now start until tries=0 reused=0 out last
    # A ticket taken early in a key's issuing window: that key (of the
    # period at start) is accepted until start + ROTATE + ACCEPT.
    # (Not a start the long schedule shares: its key has that period.)
    while now=$(date +%s); [ $((now % ROTATE)) != 0 ] \
          || [ $((now % LONG_ROTATE)) = 0 ]; do
        sleep 0.2
    done
    start=$now
    sclient "-$v" -sess_out "$work/sess.$v" >/dev/null
    [ -s "$work/sess.$v" ] || { notok "$MODE, $v: a session to resume"; return; }
    # The key that issued it: the one issuing at start whose window
    # started last (as the proxies choose); accepted until its end.
    until=$(pool_cs_curl proxy /v1/ticket-keys | jq --argjson t "$start" \
        '[.keys[] | select(.issue_from <= $t and $t < .issue_until)]
         | max_by(.issue_from) | .accept_until')
    [ -n "$until" ] && [ "$until" != null ] \
        && [ "$until" -le $((start + ROTATE + ACCEPT)) ] \
        || { notok "$MODE, $v: the key of the ticket ($until)"; return; }
    while now=$(date +%s); [ "$now" -lt $((until - 1)) ]; do
        out=$(sclient "-$v" -sess_in "$work/sess.$v")
        tries=$((tries + 1))
        grep -q '^Reused, ' <<<"$out" && reused=$((reused + 1))
        sleep 0.5
    done
    is "$reused/$tries" "$tries/$tries" "$MODE, $v: a ticket resumes on" \
        "every proxy while its key is accepted ($tries tries over" \
        "$((until - 1 - start)) s, rotate ${ROTATE} s)"
    while [ "$(date +%s)" -le "$until" ]; do sleep 0.2; done
    out=$(sclient "-$v" -sess_in "$work/sess.$v")
    last=$(grep -E '^(New|Reused), ' <<<"$out" | head -n 1)
    if [[ $last == New,* ]] && grep -q 'Verify return code: 0 (ok)' <<<"$out"
    then
        ok "$MODE, $v: once its key is gone, the ticket gets a full" \
           "handshake, verified"
    else
        notok "$MODE, $v: once its key is gone, the ticket gets a full" \
              "handshake, verified"
        diag "$(grep -E '^(New|Reused)|Verify return|error' <<<"$out")"
    fi
}

for MODE in $MODES; do
    section "$MODE mode"
    base=$(pool_pick_base) || bail "no free ports"
    export POOL_ACTIVATION=$MODE POOL_SYNC_INTERVAL="2 1"
    export POOL_CS_EXTRA="CertServiceTicketKeys $LONG_ROTATE $LONG_ACCEPT"
    pool_init "$work/$MODE" "$base" || bail "pool_init"
    pool_pki >/dev/null || bail "pool_pki"
    pool_start_certservice || bail "CertService did not start"
    pool_start_backend || bail "backend did not start"
    serial=$(pool_add_domain "$DOMAIN") || bail "cannot add $DOMAIN"
    for px in 1 2 3; do
        pool_start_proxy "$px" || bail "proxy $px did not start"
    done
    pool_start_haproxy || bail "HAProxy did not start"
    wait_all_serve "$serial" || bail "the proxies do not all serve $DOMAIN"
    wait_keys
    okif $? "$MODE: every proxy holds the pool's ticket keys"
    # Every proxy names the same issuing key (each status is as of its
    # daemon's last cycle: asked until they agree, within two periods).
    for ((i = 0; i < 4 * ROTATE; i++)); do
        iss=$(for px in 1 2 3; do tk_status "$px" | jq -r .issuing; done \
              | sort -u)
        [ "$(wc -l <<<"$iss")" = 1 ] && [ -n "$iss" ] && [ "$iss" != null ] \
            && break
        sleep 0.5
    done
    [ "$(wc -l <<<"$iss")" = 1 ] && [ -n "$iss" ] && [ "$iss" != null ]
    okif $? "$MODE: the three proxies issue with one key" || diag "$iss"

    # The keys as CertService publishes them: sealed like private keys.
    pool_cs_curl proxy /v1/ticket-keys >"$work/tk.json"
    jq -r '.keys[0].key_cms' "$work/tk.json" | base64 -d >"$work/tk.der"
    openssl cms -decrypt -inform DER -in "$work/tk.der" \
        -recip "$POOL_PKI/wrap1.crt" -inkey "$POOL_PKI/wrap1.key" \
        -out "$work/tk.plain" 2>/dev/null
    is "$(stat -c %s "$work/tk.plain" 2>/dev/null)" 80 \
        "$MODE: a published key opens with the wrapping key (openssl cms)"
    is "$(head -c 16 "$work/tk.plain" | od -An -tx1 | tr -d ' \n')" \
        "$(jq -r '.keys[0].name' "$work/tk.json")" \
        "$MODE: ... and holds the name published beside it"
    # The secret halves (HMAC, AES) of every published key, in no file of
    # the pool's proxies (stores, logs, configuration).
    scan=$(python3 - "$work/tk.json" "$POOL_PKI/wrap1.key" "$POOL_DIR" <<'PY'
import base64, json, os, subprocess, sys
keys = json.load(open(sys.argv[1]))["keys"]
secrets = []
for k in keys:
    p = subprocess.run(["openssl", "cms", "-decrypt", "-inform", "DER",
                        "-inkey", sys.argv[2]],
                       input=base64.b64decode(k["key_cms"]),
                       capture_output=True)
    if len(p.stdout) == 80:
        secrets += [p.stdout[16:48], p.stdout[48:80]]
found = []
for d in ("proxy1", "proxy2", "proxy3"):
    for root, _, files in os.walk(os.path.join(sys.argv[3], d)):
        for f in files:
            path = os.path.join(root, f)
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            if any(s in data for s in secrets):
                found.append(path)
print("%d secrets, found in: %s" % (len(secrets), " ".join(found) or "none"))
sys.exit(1 if found or not secrets else 0)
PY
)
    okif $? "$MODE: no proxy file holds a ticket key's plaintext ($scan)"

    for v in tls1_3 tls1_2; do
        before=$(lb_sessions)
        read -r reused total < <(reconnects "$v" "$RECONNECTS")
        after=$(lb_sessions)
        spread=$(paste -d' ' <(tr ' ' '\n' <<<"$before") \
                             <(tr ' ' '\n' <<<"$after") \
                 | awk 'NF == 2 { printf "%d ", $2 - $1 }')
        [ "$total" -ge "$RECONNECTS" ] && \
            [ $((reused * 100)) -ge $((total * 99)) ]
        okif $? "$MODE, $v: $reused of $total reconnects through HAProxy" \
            "Reused (>= 99 %)" || diag "$(awk -v r="$ROTATE" \
                '{ printf "missed at %.1f s into a period: %s\n", $1 % r, $0 }' \
                "$work/missed.$v" 2>/dev/null | head -n 20)"
        rm -f "$work/missed.$v"
        # every proxy took a share of the connections (round robin)
        [ "$(awk '{ for (i = 1; i <= NF; i++) if ($i < 10) bad = 1 }
                 END { print NF == 3 && !bad }' <<<"$spread")" = 1 ]
        okif $? "$MODE, $v: HAProxy spread them over the three proxies" \
            "($spread)"
    done

    # The short schedule: CertService restarted gracefully, the proxies
    # take it at their next cycle.
    sed -i "s/^ *CertServiceTicketKeys .*/    CertServiceTicketKeys $ROTATE $ACCEPT/" \
        "$POOL_DIR/cs/httpd.conf"
    "$POOL_HTTPD" -f "$POOL_DIR/cs/httpd.conf" -k graceful >/dev/null 2>&1
    for ((i = 0; i < 60; i++)); do
        r=0
        for px in 1 2 3; do
            [ "$(tk_status "$px" | jq -r .rotate)" = "$ROTATE" ] && r=$((r + 1))
        done
        [ $r = 3 ] && break
        sleep 0.5
    done
    is "$r" 3 "$MODE: every proxy took the short schedule (rotate $ROTATE s)"
    # one full short period, so the key of the period is a short one
    sleep "$ROTATE"
    rotation tls1_3
    rotation tls1_2

    if [ "$MODE" = vhost ]; then
        # The control: without the pool's keys each proxy has its own.
        for px in 1 2 3; do
            echo "CertSyncTicketKeys Off" >>"$POOL_DIR/proxy$px/httpd.conf"
            "$POOL_HTTPD" -f "$POOL_DIR/proxy$px/httpd.conf" -k graceful \
                >/dev/null 2>&1
        done
        sleep 3
        read -r reused total < <(reconnects tls1_3 10)
        [ $((reused * 100)) -lt $((total * 99)) ]
        okif $? "control: CertSyncTicketKeys Off: $reused of $total" \
            "reconnects Reused (the 99 % check fails without shared keys)"
    fi
    grep -h 'CY0026[0-5]\|CS00141' "$POOL_DIR"/proxy*/logs/error_log \
        "$POOL_DIR/cs/logs/error_log" >"$work/tkerr" 2>/dev/null
    is "$(wc -l <"$work/tkerr")" 0 "$MODE: no ticket key warnings or errors" \
        || diag "$(head -n 5 "$work/tkerr")"
    pool_stop_all >/dev/null 2>&1
done

section "done"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
