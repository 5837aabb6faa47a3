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
#   1. MariaDB, pebble (validation always valid: this is about who
#      orders when) and CertService A and B, two ACME workers each, on
#      that database (t/lib/twocs.sh, shared with make check-acme-budgets).
#   2. BUDGET_RENEW (60) domains are issued first.
#   3. Then, at once: BUDGET_NEW (1,000) new domains are queued (half
#      through A, half through B) and the first 60 are asked to renew
#      (PUT on a domain with a certificate renews it through the limiter).
#      From here on, one client reads the limiter's row (cs_acme_limits
#      'orders:all': window start, count) every 0.25 s.
#   4. Every second the domains' serials are read, until every new domain
#      has one and every renewal one other than step 2's (or
#      BUDGET_TIMEOUT, 900 s).
#
# Counts only what happened after step 3 began (the instances' and
# pebble's log lines from there, the limiter's windows that started
# then), so step 2's certificates are not counted again.  Prints: the
# limiter's windows (the most orders in one: never above the budget), the
# orders pebble received (as many as certificates: none outside the
# limiter, none twice), how many new domains were issued and renewals
# done, by which instance, and the wait of each (from the start of step 3
# to the instance's CS00019 line for it): max and median, for new domains
# and for renewals, overall and by instance; then "RESULT ok" or "RESULT
# FAIL: ..." (exit 1).  Skips without MariaDB.  Takes 5 to 10 minutes on
# a loaded 2-core machine (not in CI): run it under flock
# /tmp/bench.lock, /tmp/e2e-mariadb.lock and /tmp/e2e-acme.lock (it
# starts MariaDB and pebble).
#
set -u
export LC_ALL=C

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/t/lib/certsuite.sh"
. "$top/t/lib/twocs.sh"

LIMIT=${BUDGET_LIMIT:-30}
WINDOW=${BUDGET_WINDOW:-6}
NEW=${BUDGET_NEW:-1000}
RENEW=${BUDGET_RENEW:-60}
TIMEOUT=${BUDGET_TIMEOUT:-900}

tap_init
# The account's own budget (default 300 orders per 3 h, Let's Encrypt's)
# would stop the run at its 300th order: raised, so that the fleet-wide
# one is the budget under test.
twocs_start bench-budgets "warn certservice:notice" "CertServiceACMEWorkers 2
CertServiceACMEBackoff 2 8
CertServiceACMELimit 100000 3h
CertServiceACMEGlobalLimit $LIMIT ${WINDOW}s"
echo "# budget $LIMIT orders per ${WINDOW}s, fleet-wide; CertService A" \
    "($port_A) and B ($port_B), 2 workers each, one MariaDB, pebble"

# A bulk PUT: one curl per instance, 4 requests at once on kept-alive
# connections (a curl and a TLS handshake per domain made queuing 1,000
# domains take minutes on a loaded machine: the queue was never full).
put_all() { # FILE: one domain per line, alternating A and B
    local i inst port pids=
    echo '{}' >"$tmp/empty.json"
    for i in 0 1; do
        inst=A port=$port_A
        [ "$i" = 0 ] || inst=B port=$port_B
        awk -v i="$i" -v port="$port" -v pki="$pki" -v body="$tmp/empty.json" \
            'NR % 2 == i {
                if (n++) print "next"
                printf "url = \"https://127.0.0.1:%s/v1/domains/%s\"\n", port, $1
                printf "request = PUT\ncacert = \"%s/clients-ca.crt\"\n", pki
                printf "cert = \"%s/admin.crt\"\nkey = \"%s/admin.key\"\n", pki, pki
                printf "header = \"Content-Type: application/json\"\n"
                printf "data-binary = \"@%s\"\noutput = /dev/null\n", body
                printf "write-out = \"%%{http_code}\\n\"\nnoproxy = \"*\"\n"
                printf "max-time = 60\nsilent\nshow-error\n" }' "$1" >"$1.$inst.curl"
        curl -sS --parallel --parallel-max 4 -K "$1.$inst.curl" \
            >"$1.$inst.codes" 2>"$1.$inst.err" &
        pids="$pids $!"
    done
    wait $pids
    cat "$1.A.codes" "$1.B.codes" | sort | uniq -c \
        | sed 's/^/# PUT answers: /'
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
# Only what the instances and pebble log from here on is step 3's: the
# first round's certificates are not counted again.
la0=$(wc -l <"$tmp/A/logs/error_log")
lb0=$(wc -l <"$tmp/B/logs/error_log")
lp0=$(wc -l <"$tmp/pebble/pebble.log")
for i in $(seq 1 "$NEW"); do echo "n$i.new$i.example"; done >"$tmp/new"
t0=$(date +%s.%N)
# The limiter's row every 0.25 s, from now to the end, by one client (a
# client per sample costs more than 0.25 s on a loaded machine): "time
# window_start count" (a window lasts WINDOW seconds: none is missed).
(
    while [ ! -e "$tmp/sampler.stop" ]; do
        echo "SELECT UNIX_TIMESTAMP(NOW(6)), window_start, count FROM
              cs_acme_limits WHERE name = 'orders:all';"
        sleep 0.25
    done | MYSQL_PWD=$(param pass) "$MYSQL" --no-defaults -h 127.0.0.1 \
        -P "$(param port)" -u "$(param user)" -N -B -n "$(param dbname)" \
        >"$tmp/limits"
) &
sampler_pid=$!
put_all "$tmp/new" &
put_pid=$!
put_all "$tmp/renew"
wait "$put_pid"
t_queued=$(echo "$(date +%s.%N) - $t0" | bc)
echo "# queued $NEW new domains and $RENEW renewals in ${t_queued}s"

# --- 4. watch ------------------------------------------------------------
# Until every new domain has a serial and every renewal a serial other
# than step 2's.
# Progress stopped for 60 s (twice the time a window needs) ends the
# watch with the limiter's rows shown.
total=$((NEW + RENEW))
ndone=0
end=$(($(date +%s) + TIMEOUT))
last=-1
moved=$(date +%s)
while [ "$ndone" -lt "$total" ] && [ "$(date +%s)" -lt "$end" ]; do
    sleep 1
    sql "SELECT name, serial FROM cs_domains" >"$tmp/now"
    ndone=$(awk 'FILENAME == ARGV[1] { old[$1] = $2; next }
        $2 != "NULL" && $2 != "" && $2 != old[$1] { n++ }
        END { print n + 0 }' "$tmp/before" "$tmp/now")
    if [ "$ndone" != "$last" ]; then
        last=$ndone
        moved=$(date +%s)
    elif [ $(($(date +%s) - moved)) -ge 60 ]; then
        echo "# stalled at $ndone of $total for 60 s; the limiters:"
        sql "SELECT name, window_start, count, paused_until FROM cs_acme_limits" \
            | sed 's/^/#   /'
        break
    fi
done
elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
sleep 2     # an order still under way shows in the logs
: >"$tmp/sampler.stop"   # its loop ends, the client reads its end
wait "$sampler_pid"

# --- results -----------------------------------------------------------
# done: "kind name" of the names whose serial changed (the database).
awk 'FILENAME == ARGV[1] { old[$1] = $2; next }
     $2 != "NULL" && $2 != "" && $2 != old[$1] {
         print (substr($1, 1, 1) == "n" ? "new" : "renewal"), $1 }' \
    "$tmp/before" "$tmp/now" >"$tmp/done"
new_done=$(grep -c '^new ' "$tmp/done")
ren_done=$(grep -c '^renewal ' "$tmp/done")
# The orders step 3 made, from the instances' own lines (CS00019:
# "[time] ... acme: issued|renewed DOMAIN: serial ..."): "instance kind
# domain seconds-after-t0", the time the certificate was stored.
{
    tail -n +"$((la0 + 1))" "$tmp/A/logs/error_log" | sed 's/^/A /'
    tail -n +"$((lb0 + 1))" "$tmp/B/logs/error_log" | sed 's/^/B /'
} | sed -n 's/^\([AB]\) \[[A-Za-z]* \([^]]*\)\].*CS00019.* acme: \(issued\|renewed\) \([^:]*\): serial.*/\1 \3 \4 \2/p' \
    >"$tmp/orders.raw"
cut -d' ' -f4- "$tmp/orders.raw" | date -f - +%s.%N \
    | awk -v t0="$t0" '{ printf "%.2f\n", $1 - t0 }' >"$tmp/orders.t"
# ... and the time each was queued (its PUT's CS00023 line), so the 5th
# column is its wait in the queue.
{
    tail -n +"$((la0 + 1))" "$tmp/A/logs/error_log"
    tail -n +"$((lb0 + 1))" "$tmp/B/logs/error_log"
} | sed -n 's/^\[[A-Za-z]* \([^]]*\)\].*CS00023: .*: \([^ ]*\) queued for ACME issuance.*/\2 \1/p' \
    >"$tmp/queued.raw"
cut -d' ' -f2- "$tmp/queued.raw" | date -f - +%s.%N \
    | awk -v t0="$t0" '{ printf "%.2f\n", $1 - t0 }' \
    | paste -d' ' <(cut -d' ' -f1 "$tmp/queued.raw") - >"$tmp/queued"
cut -d' ' -f1-3 "$tmp/orders.raw" | paste -d' ' - "$tmp/orders.t" \
    | awk 'FILENAME == ARGV[1] { q[$1] = $2; next }
           { print $0, ($3 in q ? sprintf("%.2f", $4 - q[$3]) : "?") }' \
        "$tmp/queued" - >"$tmp/orders"
t_last_put=$(sort -n -k2 "$tmp/queued" | tail -1 | cut -d' ' -f2)
orders=$(wc -l <"$tmp/orders")
dups=$(awk '{ print $3 }' "$tmp/orders" | sort | uniq -d | wc -l)
new_ordered=$(awk '$2 == "issued"' "$tmp/orders" | wc -l)
ren_ordered=$(awk '$2 == "renewed"' "$tmp/orders" | wc -l)
# Per window of the limiter (window_start): the highest count sampled;
# the window step 2 left in the row (started before t0) is not step 3's.
samples=$(wc -l <"$tmp/limits")
awk -v t0="${t0%.*}" '$2 >= t0 { if (!($2 in m) || $3 > m[$2]) m[$2] = $3 }
     END { for (w in m) print w, m[w] }' "$tmp/limits" | sort -n \
    >"$tmp/windows"
windows=$(wc -l <"$tmp/windows")
max_window=$(awk 'BEGIN { x = 0 } $2 > x { x = $2 } END { print x }' "$tmp/windows")
full=$(awk -v l="$LIMIT" '$2 == l' "$tmp/windows" | wc -l)
granted=$(awk '{ s += $2 } END { print s + 0 }' "$tmp/windows")
# What pebble saw: its "Added order" lines since step 3 (1 s resolution),
# each in the last limiter window started by then (an order granted at a
# window's end and received in the next second counts in the next).
tail -n +"$((lp0 + 1))" "$tmp/pebble/pebble.log" \
    | sed -n 's/^Pebble \([0-9]*\)\/\([0-9]*\)\/\([0-9]*\) \([0-9:]*\) Added order .*/\1-\2-\3 \4/p' \
    | date -f - +%s >"$tmp/ca_orders"
ca_orders=$(wc -l <"$tmp/ca_orders")
ca_max=$(awk 'FILENAME == ARGV[1] { w[++n] = $1; next }
    { k = 0; for (i = 1; i <= n; i++) if (w[i] <= $1) k = i; c[k]++ }
    END { x = 0; for (k in c) if (c[k] > x) x = c[k]; print x }' \
    "$tmp/windows" "$tmp/ca_orders")
stats() { # COLUMN KIND [INSTANCE]: "n=.. max=..s median=..s" of the waits
    awk -v c="$1" -v k="$2" -v i="${3:-}" '$2 == k && (i == "" || $1 == i) { print $c }' \
        "$tmp/orders" | sort -n \
        | awk '{ a[NR] = $1 } END { if (!NR) { print "n=0"; exit }
                printf "n=%d max=%.1fs median=%.1fs\n", NR, a[NR],
                a[int((NR + 1) / 2)] }'
}
echo "# limiter 'orders:all' ($samples samples, every 0.25 s): $windows" \
    "windows of ${WINDOW}s, the most in one $max_window (budget $LIMIT)," \
    "$full full, $granted granted in all"
echo "# pebble: $ca_orders orders since step 3; the most in one limiter" \
    "window by pebble's clock (1 s resolution): $ca_max"
echo "# orders made (CS00019 lines of A and B since step 3): $orders" \
    "($new_ordered issued, $ren_ordered renewed; $dups domains ordered twice)"
echo "# done in ${elapsed}s: $new_done of $NEW new issued, $ren_done of" \
    "$RENEW renewed (serials in the database)"
for i in A B; do
    echo "# by $i: $(awk -v i="$i" '$1 == i && $2 == "issued"' "$tmp/orders" | wc -l)" \
        "issued, $(awk -v i="$i" '$1 == i && $2 == "renewed"' "$tmp/orders" | wc -l) renewed"
done
echo "# the last PUT was logged ${t_last_put}s after the start of step 3"
echo "# wait from the start of step 3 to the certificate (its CS00019 line):"
for k in issued renewed; do
    echo "#   $k: all $(stats 4 $k); by A $(stats 4 $k A); by B $(stats 4 $k B)"
done
echo "# wait in the queue, from the domain's PUT (its CS00023 line):"
for k in issued renewed; do
    echo "#   $k: all $(stats 5 $k); by A $(stats 5 $k A); by B $(stats 5 $k B)"
done
echo "# ideal: $(( (NEW + RENEW + LIMIT - 1) / LIMIT )) windows of ${WINDOW}s =" \
    "$(( (NEW + RENEW + LIMIT - 1) / LIMIT * WINDOW ))s"
errs=$(grep -h -E '\[(crit|alert|emerg)\]|exit signal|Segmentation' \
    "$tmp/A/logs/error_log" "$tmp/B/logs/error_log" | head -3)
fail=
[ "$windows" -gt 0 ] || fail="$fail; the limiter's row was never sampled"
[ "$max_window" -le "$LIMIT" ] || fail="$fail; a window had $max_window orders"
[ "$new_done" = "$NEW" ] || fail="$fail; $((NEW - new_done)) new domains not issued"
[ "$ren_done" = "$RENEW" ] || fail="$fail; $((RENEW - ren_done)) renewals not done"
[ "$new_ordered" = "$NEW" ] && [ "$ren_ordered" = "$RENEW" ] \
    || fail="$fail; $new_ordered issued and $ren_ordered renewed logged"
[ "$dups" = 0 ] || fail="$fail; $dups domains ordered twice"
[ "$ca_orders" = "$orders" ] \
    || fail="$fail; pebble received $ca_orders orders for $orders certificates"
for i in A B; do
    grep -q "^$i " "$tmp/orders" || fail="$fail; $i made no order"
done
[ -z "$errs" ] || fail="$fail; crash lines: $errs"
if [ -z "$fail" ]; then
    echo "RESULT ok"
else
    echo "RESULT FAIL: ${fail#; }"
    exit 1
fi
