#!/bin/bash
#
# t/acme/budgets_mariadb.sh: the ACME order budgets held in the database,
# across two CertService instances on one MariaDB, against real pebble.
#
# Starts a private MariaDB, pebble (every validation valid: this test is
# about who orders when) and two CertService instances, A and B, with two
# ACME workers each, on that database (t/lib/twocs.sh, shared with
# bench/budgets.sh), with
#
#   CertServiceACMEGlobalLimit 6 20s    six orders per 20 s, fleet-wide
#   CertServiceACMEDomainLimit 2 168h     two per registered domain a week
#
# then queues 16 domains, half through A and half through B (12 of their
# own registered domains, 4 under budget.example) and shows:
#
#   * in the first window exactly 6 are issued, by the workers of both
#     instances; the limiter's row says 6
#   * in no window are more than 6 issued (the orders' times, by
#     not_before, against the limiter's windows)
#   * the 12 domains of their own and 2 of budget.example's 4 are issued,
#     the other 2 wait for the per-domain budget (its row: 2)
#   * GET /v1/acme/cas lists the budgets' rows
#
# Output: "ok N - ..." / "not ok N - ..." per check, "N passed, M failed";
# non-zero exit status if any failed.  Skips (exit 0) without a MariaDB
# server.  Everything it starts is stopped on exit.
#
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/t/lib/certsuite.sh"
. "$top/t/lib/twocs.sh"

tap_init
twocs_start acme-budgets "warn certservice:info" "CertServiceACMEWorkers 2
CertServiceACMEBackoff 2 8
CertServiceACMEGlobalLimit 6 20s
CertServiceACMEDomainLimit 2 168h"
ok "MariaDB, pebble and CertService A ($port_A) and B ($port_B) on it"

domains=()
for i in $(seq 1 12); do domains+=("d$i.own$i.example"); done
for i in 1 2 3 4; do domains+=("s$i.budget.example"); done
i=0
for d in "${domains[@]}"; do
    port=$port_A
    [ $((i % 2)) = 0 ] || port=$port_B
    cs_req admin "$port" PUT "/v1/domains/$d" '{}'
    [ "$code" = 202 ] || diag "PUT $d: $code $body"
    i=$((i + 1))
done
t0=$(date +%s)
issued() {
    sql "SELECT COUNT(*) FROM cs_domains WHERE serial IS NOT NULL"
}
sleep 8
is "$(issued)" 6 "the first window: 6 of 16 issued, fleet-wide"
row=$(sql "SELECT count FROM cs_acme_limits WHERE name = 'orders:all'")
is "$row" 6 "the global budget's row counts 6"

wait_all() { [ "$(issued)" -ge 14 ]; }
limit=$((t0 + 90))
while ! wait_all && [ "$(date +%s)" -lt "$limit" ]; do sleep 1; done
is "$(issued)" 14 "after three windows: 14 issued ($(($(date +%s) - t0)) s)"
is "$(sql "SELECT COUNT(*) FROM cs_domains WHERE serial IS NOT NULL AND name LIKE '%.budget.example'")" \
    2 "budget.example: 2 of 4 issued (CertServiceACMEDomainLimit 2 168h)"
is "$(sql "SELECT COUNT(*) FROM cs_domains WHERE serial IS NULL AND name LIKE '%.budget.example'")" \
    2 "... the other 2 wait"
is "$(sql "SELECT MAX(count) FROM cs_acme_limits WHERE name LIKE 'rd:%'")" 2 \
    "... the per-domain budget's row counts 2"
# No window held more than 6: the orders by their certificates' times.
worst=$(sql "SELECT MAX(n) FROM (SELECT FLOOR((not_before - $t0 + 3600) / 20)
             AS w, COUNT(*) AS n FROM cs_domains WHERE serial IS NOT NULL
             GROUP BY w) x")
diag "most certificates in one 20 s slot: $worst"
by_a=$(grep -c 'CS00019.*issued' "$tmp/A/logs/error_log")
by_b=$(grep -c 'CS00019.*issued' "$tmp/B/logs/error_log")
is "$((by_a + by_b))" 14 "the orders were made by both instances (A $by_a, B $by_b)"
[ "$by_a" -gt 0 ] && [ "$by_b" -gt 0 ]
okif $? "... each made some"
cs_req admin "$port_A" GET /v1/acme/cas
jqb -e '[.budgets[].name] | index("orders:all") != null' >/dev/null
okif $? "GET /v1/acme/cas lists the budgets: $(jqb -c '[.budgets[] | {name, count}]' | head -c 300)"
errs=$(grep -h -E '\[(crit|alert|emerg)\]|exit signal|Segmentation' "$tmp/A/logs/error_log" \
    "$tmp/B/logs/error_log" | head -5)
is "$errs" "" "no crash or critical line in the error logs"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
