#!/bin/bash
#
# t/certsync/service-faults.sh: a CertService that misbehaves (issue 17, "handled
# well already, keep it tested").
#
# One CertService, and in front of it t/certsync/cs-fault.py, a fault
# proxy the certsync proxy syncs through (its CertSyncServiceURL); the
# proxy runs in vhost mode with CertSyncInterval 1 0 and CertSyncTimeout 2
# (so that a stall fails a cycle in 2 s).  For each fault:
#
#   stall     the request is read, no answer ever comes
#   truncate  the answer stops half way (Content-Length says more)
#   html      200 with an HTML error page
#   badjson   200 with a body that is not JSON
#   http500   500 with an error
#   huge      200 with a 100 MB body
#   drip      the answer, one byte every half second
#
# it shows that the sync fails and the proxy's /certsync-status says so
# (state backoff, last_error naming what went wrong), that what was served
# keeps being served while a domain added meanwhile is not, and that once
# the fault is gone the proxy converges alone: the new domain is served,
# the state is idle and last_error null again.
#
# Output as t/certsync/e2e.sh.  Runs as root or a normal user; talks to
# 127.0.0.1 only.  Environment: HTTPD, APXS; CERTSUITE_KEEP=1|failed.
#
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# shellcheck source=t/lib/certsuite.sh
. "$top/t/lib/certsuite.sh"
# shellcheck source=t/certsync/common.sh
. "$here/common.sh"
tap_init

csy_setup certsync-service python3

fault_pid=
on_cleanup_more() {
    stop_pids "$fault_pid"
}

start_cs
ok "CertService started on 127.0.0.1:$cs_port"

# The fault proxy, on a port picked now (again if it was taken meanwhile).
for _ in 1 2 3 4 5; do
    fault_port=$(pick_port)
    python3 "$here/cs-fault.py" "$fault_port" "$cs_port" "$pki/tls.crt" \
        "$pki/tls.key" "$pki/clients-ca.crt" "$pki/proxy.crt" \
        "$pki/proxy.key" >"$tmp/fault.log" 2>&1 &
    fault_pid=$!
    wait_port "$fault_port" 10 && kill -0 "$fault_pid" 2>/dev/null && break
    stop_pids "$fault_pid"
    fault_pid=
done
[ -n "$fault_pid" ] || bail "cs-fault.py did not start: $(cat "$tmp/fault.log")"
ok "fault proxy (cs-fault.py) on 127.0.0.1:$fault_port in front of it"

fault() { # MODE: the fault proxy's mode
    curl -sS --noproxy '*' --max-time 5 -k -X POST \
        --data-binary "{\"mode\": \"$1\"}" \
        "https://127.0.0.1:$fault_port/__fault/mode" >/dev/null
}

start_px url="https://127.0.0.1:$fault_port" interval="1 0" \
    extra="CertSyncTimeout 2" || bail "the proxy did not start"
ok "proxy started, syncing through the fault proxy (CertSyncTimeout 2)"

px_idle() { [ "$(st state)" = idle ] && [ "$(st last_error)" = null ]; }

: >"$tmp/work/all"
issue base1.faults.test base2.faults.test
cp "$tmp/work/want" "$tmp/work/all"
wait_served "$tmp/work/all" 30
okif $? "two domains served through the fault proxy (mode pass)"
wait_for 20 px_idle

# Each fault and what last_error must say (an extended regular expression).
faults=(
    "stall|[Tt]ime(out| ?d out)"
    "truncate|transfer closed|[Pp]artial"
    "html|malformed JSON"
    "badjson|malformed JSON"
    "http500|HTTP 500: database is down"
    "huge|response too large"
    "drip|[Tt]ime(out| ?d out)"
)
i=0
for f in "${faults[@]}"; do
    mode=${f%%|*}
    want=${f#*|}
    i=$((i + 1))
    section "$mode"
    fault "$mode"
    e0=$(count_lines CY00004)
    failing() {
        [ "$(st state)" = backoff ] \
            && grep -Eq -- "$want" <<<"$(st last_error)" \
            && [ "$(count_lines CY00004)" -gt "$e0" ]
    }
    t=$SECONDS
    wait_for 20 failing
    okif $? "$mode: the cycle fails, the status says backoff and why" \
        "($((SECONDS - t)) s): $(st last_error | cut -c1-110)" \
        || diag "status: $(status)"
    : >"$tmp/work/want"
    issue "new$i.faults.test"
    cp "$tmp/work/want" "$tmp/work/new"
    sleep 1
    wait_served "$tmp/work/all" 10
    okif $? "$mode: what was served keeps being served" \
        || diag "$(head -3 "$tmp/work/mismatch")"
    is "$(served "new$i.faults.test")" "$fallback_serial" \
        "$mode: the domain added meanwhile is not served yet"
    fault pass
    t=$SECONDS
    wait_served "$tmp/work/new" 60
    okif $? "$mode: fault gone, the proxy converges alone: the new domain" \
        "is served ($((SECONDS - t)) s)" || diag "status: $(status)"
    wait_for 20 px_idle
    okif $? "$mode: state idle, last_error null again"
    cat "$tmp/work/new" >>"$tmp/work/all"
done

section "the end"
wait_served "$tmp/work/all" 10
okif $? "every domain serves its serial"
diag "fault proxy: $(curl -sS --noproxy '*' -k \
    "https://127.0.0.1:$fault_port/__fault/mode" 2>/dev/null)"
crash=$(grep -hE 'exit signal|Segmentation|AH00052' "$pxlog" | head -3)
is "$crash" "" "no httpd child crashed"

diag "$((SECONDS - T0)) s in all"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
