#!/bin/bash
#
# bench/budgets.sh: the fleet-wide order budget with a long queue, two
# CertService instances on one MariaDB, against real pebble.
#
# Issue 14 asks: "1,000 queued domains and a budget of 30 per minute, and
# two CertService instances: nothing starves".  At 30 per minute that
# takes 34 minutes; the limiter's window is a directive, so this runs the
# same budget ten times faster, 30 orders per 6 s
# (CertServiceACMEGlobalLimit 30 6s; BUDGET_LIMIT, BUDGET_WINDOW): the
# queue, the scheduler's order and the per-window counting are the same,
# only the clock is ten times faster.
#
#   1. MariaDB (t/db/mariadb.sh), pebble (validation always valid: this is
#      about who orders when) and CertService A and B, two ACME workers
#      each, on that database.
#   2. BUDGET_RENEW (60) domains are issued first.
#   3. Then, at once: BUDGET_NEW (1,000) new domains are queued (half
#      through A, half through B) and the first 60 are asked to renew
#      (PUT on a domain with a certificate renews it through the limiter).
#   4. Every 0.5 s the limiter's row (cs_acme_limits 'orders:all': window
#      start, count) and the domains' serials are read, until every new
#      domain is issued and every renewal done (or BUDGET_TIMEOUT, 900 s).
#
# Prints: orders per window (the limiter's count, the most seen in any
# window, never above the budget), how many were issued and renewed, by
# which instance, the wait of each (from step 3 to its new serial): max
# and median for new domains and for renewals; "RESULT ok" or "RESULT
# FAIL: ..." at the end.  Skips without MariaDB or pebble.  Takes 4 to 6
# minutes (not in CI): run it under flock /tmp/bench.lock.
#
# STATUS (2026-12-05, 23:15): not yet validated.  Its one complete smoke
# run (BUDGET_NEW=200 BUDGET_RENEW=20) issued all 240 certificates over
# both instances and never saw more than 30 orders in the limiter's row,
# but its watch loop counted 240 done for 220 expected and the limiter's
# window_start never changed in 250 samples: the loop's bookkeeping (and
# what 'orders:all' holds between windows) must be checked before its
# figures are used.
#
set -u
export LC_ALL=C

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/t/lib/certsuite.sh"

LIMIT=${BUDGET_LIMIT:-30}
WINDOW=${BUDGET_WINDOW:-6}
NEW=${BUDGET_NEW:-1000}
RENEW=${BUDGET_RENEW:-60}
TIMEOUT=${BUDGET_TIMEOUT:-900}

if ! find_prog mariadbd mysqld >/dev/null; then
    echo "SKIP: no MariaDB server installed"
    exit 0
fi
tap_init
cs_need curl jq openssl pebble -- dbd watchdog || bail "$need_why"
cs_modules || bail "the modules are not built (make)"
MYSQL=$(find_prog mariadb mysql) || bail "no mariadb/mysql client"

cs_tmpdir bench-budgets || bail "mktemp failed"
cs_layout A/logs B/logs pebble || bail "cannot make the directories in $tmp"
dbdir=$tmp/db
pebble_pid=
on_cleanup() {
    stop_httpd "$tmp/A"
    stop_httpd "$tmp/B"
    stop_pids "$pebble_pid"
    [ -d "$dbdir" ] && "$top/t/db/mariadb.sh" stop "$dbdir" >/dev/null 2>&1
}
[ -z "$run_user" ] || chmod 755 "$tmp/A" "$tmp/B"

"$top/t/certservice/make-pki.sh" "$pki" >"$tmp/pki.log" 2>&1 \
    && "$top/t/certservice/make-acme-pki.sh" "$pki" budgets >>"$tmp/pki.log" 2>&1 \
    || bail "cannot make the test PKI: $(tail -5 "$tmp/pki.log")"
chmod 755 "$pki"
params=$("$top/t/db/mariadb.sh" start "$dbdir" 2>"$tmp/mariadb.log") \
    || bail "t/db/mariadb.sh start failed: $(tail -5 "$tmp/mariadb.log")"
param() { tr ';' '\n' <<<"$params" | sed -n "s/^$1=//p"; }
sql() {
    MYSQL_PWD=$(param pass) "$MYSQL" --no-defaults -h 127.0.0.1 \
        -P "$(param port)" -u "$(param user)" -N -B "$(param dbname)" -e "$1"
}
peb_port=$(pick_port)
peb_mgmt=$(pick_port)
pebble_conf "$peb_port" "$peb_mgmt" 1 2 "$pki" >"$tmp/pebble/config.json"
PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
    pebble -config "$tmp/pebble/config.json" >"$tmp/pebble/pebble.log" 2>&1 &
pebble_pid=$!
wait_port "$peb_port" || bail "pebble did not start"

write_conf() { # NAME
    local dir=$tmp/$1 port
    port=$(pick_port)
    printf -v "port_$1" %s "$port"
    listen_ports=$port
    write_cs_conf "$dir" "$port" log="warn certservice:notice" dbd=mysql \
        db="$params" acme="https://127.0.0.1:$peb_port/dir" \
        vhost="CertServiceACMEWorkers 2
CertServiceACMEBackoff 2 8
CertServiceACMEGlobalLimit $LIMIT ${WINDOW}s"
}
for inst in A B; do
    start_httpd_retry "$tmp/$inst" write_conf "$inst" \
        || bail "CertService $inst did not start"
done
echo "# budget $LIMIT orders per ${WINDOW}s, fleet-wide; CertService A" \
    "($port_A) and B ($port_B), 2 workers each, one MariaDB, pebble"

# A bulk PUT, 8 at once: one curl per domain is the client's cost, not
# CertService's.
put_all() { # FILE: one domain per line, alternating A and B
    echo '{}' >"$tmp/empty.json"
    awk -v a="$port_A" -v b="$port_B" '{ print (NR % 2 ? a : b), $1 }' "$1" \
        | xargs -P 8 -n 2 sh -c 'curl -sS --noproxy "*" --max-time 60 \
            --cacert "$0/clients-ca.crt" --cert "$0/admin.crt" \
            --key "$0/admin.key" -H "Content-Type: application/json" \
            -X PUT --data-binary @"$1" -o /dev/null -w "%{http_code}\n" \
            "https://127.0.0.1:$2/v1/domains/$3"' "$pki" "$tmp/empty.json" \
        | sort | uniq -c | sed 's/^/# PUT answers: /'
}

# --- 2. the domains that will renew ------------------------------------
for i in $(seq 1 "$RENEW"); do echo "r$i.renew$i.example"; done >"$tmp/renew"
put_all "$tmp/renew"
limit=$(($(date +%s) + 120))
while [ "$(sql "SELECT COUNT(*) FROM cs_domains WHERE serial IS NOT NULL")" \
        -lt "$RENEW" ] && [ "$(date +%s)" -lt "$limit" ]; do
    sleep 1
done
n=$(sql "SELECT COUNT(*) FROM cs_domains WHERE serial IS NOT NULL")
[ "$n" = "$RENEW" ] || bail "only $n of $RENEW first certificates issued"
sql "SELECT name, serial FROM cs_domains" | sort >"$tmp/before"
# Wait for a window of its own, so that step 3 starts a fresh one.
sleep "$WINDOW"

# --- 3. the queue ------------------------------------------------------
for i in $(seq 1 "$NEW"); do echo "n$i.new$i.example"; done >"$tmp/new"
t0=$(date +%s.%N)
put_all "$tmp/new" &
put_pid=$!
put_all "$tmp/renew"
wait "$put_pid"
t_queued=$(echo "$(date +%s.%N) - $t0" | bc)
echo "# queued $NEW new domains and $RENEW renewals in ${t_queued}s"

# --- 4. watch ------------------------------------------------------------
: >"$tmp/limits"
: >"$tmp/seen"           # name serial seconds-after-t0
total=$((NEW + RENEW))
ndone=0
end=$(($(date +%s) + TIMEOUT))
while [ "$ndone" -lt "$total" ] && [ "$(date +%s)" -lt "$end" ]; do
    now=$(echo "$(date +%s.%N) - $t0" | bc)
    sql "SELECT window_start, count FROM cs_acme_limits WHERE name = 'orders:all'" \
        >>"$tmp/limits"
    # Names with a new serial, not seen before: stamped now.
    sql "SELECT name, serial FROM cs_domains" \
        | awk -v now="$now" 'FILENAME == ARGV[1] { old[$1] = $2; next }
              FILENAME == ARGV[2] { seen[$1] = 1; next }
              $2 != "NULL" && $2 != "" && $2 != old[$1] && !seen[$1] {
                  print $1, $2, now }' "$tmp/before" "$tmp/seen" - \
        >>"$tmp/seen"
    ndone=$(wc -l <"$tmp/seen")
    sleep 0.5
done
elapsed=$(echo "$(date +%s.%N) - $t0" | bc)

# --- results -----------------------------------------------------------
max_window=$(sort -n "$tmp/limits" | awk '{ if ($2 > m[$1]) m[$1] = $2 }
    END { x = 0; for (w in m) if (m[w] > x) x = m[w]; print x }')
windows=$(awk '{print $1}' "$tmp/limits" | sort -u | wc -l)
full=$(sort -n "$tmp/limits" | awk -v l="$LIMIT" '{ if ($2 > m[$1]) m[$1] = $2 }
    END { n = 0; for (w in m) if (m[w] == l) n++; print n }')
stats() { # PATTERN: max and median wait of the names matching it
    grep -E "$1" "$tmp/seen" | awk '{print $3}' | sort -n \
        | awk '{ a[NR] = $1 } END { if (!NR) { print "none"; exit }
                printf "n=%d max=%.1fs median=%.1fs\n", NR, a[NR],
                a[int((NR + 1) / 2)] }'
}
new_done=$(grep -c '^n' "$tmp/seen")
ren_done=$(grep -c '^r' "$tmp/seen")
by_a=$(grep -c 'CS00019' "$tmp/A/logs/error_log")
by_b=$(grep -c 'CS00019' "$tmp/B/logs/error_log")
echo "# orders per ${WINDOW}s window (the limiter's row, sampled every 0.5 s):" \
    "most $max_window in one window (budget $LIMIT), $full of $windows windows full"
echo "# done in ${elapsed}s: $new_done of $NEW new issued, $ren_done of $RENEW renewed"
echo "# wait of new domains: $(stats '^n')"
echo "# wait of renewals:    $(stats '^r')"
echo "# certificates by A: $by_a, by B: $by_b (both rounds)"
echo "# ideal: $(( (NEW + RENEW + LIMIT - 1) / LIMIT )) windows of ${WINDOW}s =" \
    "$(( (NEW + RENEW + LIMIT - 1) / LIMIT * WINDOW ))s"
errs=$(grep -h -E '\[(crit|alert|emerg)\]|exit signal|Segmentation' \
    "$tmp/A/logs/error_log" "$tmp/B/logs/error_log" | head -3)
fail=
[ "$max_window" -le "$LIMIT" ] || fail="$fail; a window had $max_window orders"
[ "$new_done" = "$NEW" ] || fail="$fail; $((NEW - new_done)) new domains not issued"
[ "$ren_done" = "$RENEW" ] || fail="$fail; $((RENEW - ren_done)) renewals not done"
[ "$by_a" -gt 0 ] && [ "$by_b" -gt 0 ] || fail="$fail; one instance made no order"
[ -z "$errs" ] || fail="$fail; crash lines: $errs"
if [ -z "$fail" ]; then
    echo "RESULT ok"
else
    echo "RESULT FAIL: ${fail#; }"
    exit 1
fi
