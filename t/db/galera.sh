#!/bin/bash
#
# t/db/galera.sh: CertService on a three-node MariaDB Galera cluster.
#
# Starts three mariadbd on loopback as one Galera cluster
# (t/db/galera_cluster.sh: Debian's galera-4), the test PKI, and two
# CertService instances (httpd + mod_ssl + mod_dbd + mod_certservice from
# the build tree): A writes through node 1, B through node 2.  Node 3 is
# where the test reads the tables.  Then, with curl:
#
#   conflicts    4 writers on A and 4 on B issue new names at once (PUT
#                /v1/domains), while a reader pages the change feed
#                through A and B alternately.  Every write takes the
#                counter row, which on Galera is a certification conflict
#                between the nodes, not a lock wait: CertService runs the
#                transaction again (CS00120).  Checked: every PUT answered
#                201 (none 503), the cluster counted conflicts, the
#                instances logged their retries; the reader's cursor never
#                skipped a change (every seq it paged past is in what it
#                read, and what it read is the whole feed, in order, each
#                once); the feed holds every 201's seq with its domain.
#   leases       30 POST .../leases at once, split over A and B, for a pool
#                with CertServiceMaxUnavailable 1 (long ttl, no release):
#                exactly one 201 and 29 409s (no 503: conflicts run
#                again), one row in cs_leases (read on node 3); then 2 for
#                a pool with 2.
#   node killed  node 2 (behind B) SIGKILLed while writers on A and B
#                issue: writes through A keep answering 201 (after the
#                cluster evicts the node, a few seconds); B answers 5xx
#                while its node is down, never a wrong 201; every 201
#                before and after is in the feed (read through A, and in
#                cs_domains on node 3) with the serial it answered: nothing
#                acknowledged is lost.  Node 2 restarted: it rejoins
#                (IST), B answers again, node 2 holds every acknowledged
#                change.
#   logs         no crashed child; CS00121 (gave up) never logged.
#
# Budgets (the ACME limiter rows) are checked cluster-wide by the unit
# tests run across two nodes (see docs/mod_certservice.md, "MariaDB Galera
# cluster": CS_TEST_MYSQL and CS_TEST_MYSQL2 on t/unit/test_cs_store).
#
# Output: "ok N - ..." / "not ok N - ..." per check, then one line
# "N passed, M failed"; exit status non-zero if any failed.  Skips (exit 0)
# when no mariadbd or no Galera library is installed.  6 to 9 minutes on
# the loaded 2-core test machine (most of it starting the cluster and
# rejoining node 2).  With the module from before the retries
# (d160f5b, before c2f016a), checks 3 and 4 fail: PUTs answered 503 on
# conflicts.
#
# Environment: CS_MODULE, HTTPD, APXS as for t/certservice/mariadb_test.sh;
# CS_GALERA_PORT (first of 40 ports, default 35306); CERTSUITE_KEEP=1
# keeps the temporary directory.
#
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/t/lib/certsuite.sh"
# csdb_need, csdb_setup, csdb_start, csdb_sql, req, port_of, check
. "$top/t/lib/csdb.sh"

if ! ls /usr/lib/galera/libgalera_smm.so /usr/lib/libgalera_smm.so \
        >/dev/null 2>&1; then
    echo "SKIP: no Galera library (apt-get install galera-4)"
    exit 0
fi
csdb_need rsync

tap_init
t_start=$(date +%s)

csdb_setup cs-galera-test
gdir=$tmp/galera

on_cleanup() {
    csdb_cleanup
    "$top/t/db/galera_cluster.sh" stop "$gdir" >/dev/null 2>&1
}

t0=$(date +%s)
if ! "$top/t/db/galera_cluster.sh" start "$gdir" >"$tmp/params" \
        2>"$tmp/galera.log"; then
    tail -20 "$tmp/galera.log"
    bail "the Galera cluster did not start"
fi
ok "three-node Galera cluster started in $(($(date +%s) - t0)) s"
params1=$(sed -n 1p "$tmp/params")
params2=$(sed -n 2p "$tmp/params")
params3=$(sed -n 3p "$tmp/params")
sql() { # NODE SQL: rows, tab-separated
    csdb_sql "$(sed -n "${1}p" "$tmp/params")" "$2"
}
wsrep() { # NODE VAR
    sql "$1" "SHOW GLOBAL STATUS LIKE '$2'" 2>/dev/null | cut -f2
}

# --- Two CertService instances, A on node 1, B on node 2 ----------------------

csdb_start "$params1" "$params2" "CertServiceCertificateLifetime 240h
CertServiceMaxUnavailable 1
CertServiceMaxUnavailable 2 pool2
CertServiceLeaseMaxTTL 600"
ok "CertService A (port $port_A, node 1) and B (port $port_B, node 2)"

# all COND...: 1 if every command (one an argument, run by eval) holds
all() {
    local c
    for c in "$@"; do eval "$c" || { echo 0; return; }; done
    echo 1
}

# --- 1. Conflicts: writers on both nodes, a reader paging -------------------

cf0=$(( $(wsrep 1 wsrep_local_cert_failures) + $(wsrep 2 wsrep_local_cert_failures) \
       + $(wsrep 1 wsrep_local_bf_aborts) + $(wsrep 2 wsrep_local_bf_aborts) ))

W=${GALERA_PUTS:-10}   # PUTs per writer
writer() { # NAME INST: W new names; "code seq serial domain" a line
    local name=$1 inst=$2 i d out=$tmp/w.$1
    : >"$out"
    for i in $(seq 1 $W); do
        d=c$i.$name.galera-test.example
        req admin "$inst" PUT "/v1/domains/$d"
        echo "$code $(jqb .seq 2>/dev/null) $(jqb .serial 2>/dev/null) $d" \
            >>"$out"
    done
}
# reader: pages the feed through A and B in turn until told to stop and
# caught up; "seq domain" of each change it read, and "next since" of each
# page (the cursor it moved from and to)
reader() {
    local since=0 inst=A next more stop=0
    : >"$tmp/r.changes"
    : >"$tmp/r.pages"
    while :; do
        [ -e "$tmp/r.stop" ] && stop=1
        req proxy "$inst" GET "/v1/changes?since=$since&limit=7"
        if [ "$code" != 200 ]; then
            echo "ERR $code" >>"$tmp/r.pages"
            sleep 0.2
            continue
        fi
        jqb -r '.changes[] | "\(.seq) \(.domain)"' >>"$tmp/r.changes"
        next=$(jqb .next)
        more=$(jqb .more)
        echo "$since $next" >>"$tmp/r.pages"
        since=$next
        if [ "$inst" = A ]; then inst=B; else inst=A; fi
        sleep 0.1
        if [ $stop = 1 ] && [ "$more" = false ]; then
            break
        fi
    done
}
rm -f "$tmp/r.stop"
reader &
rpid=$!
bg_pids+=("$rpid")
t0=$(date +%s)
wpids=()
for k in 1 2 3 4; do
    writer a$k A & wpids+=($!)
    writer b$k B & wpids+=($!)
done
bg_pids+=("${wpids[@]}")
wait "${wpids[@]}"
t_w=$(($(date +%s) - t0))
# The reader stops once it has caught up after every node applied every
# write (a node may apply the others' last writes a moment later).
for _ in $(seq 1 100); do
    m1=$(sql 1 "SELECT MAX(seq) FROM cs_changes")
    [ "$m1" = "$(sql 2 "SELECT MAX(seq) FROM cs_changes")" ] \
        && [ "$m1" = "$(sql 3 "SELECT MAX(seq) FROM cs_changes")" ] && break
    sleep 0.2
done
touch "$tmp/r.stop"
wait "$rpid"
cat "$tmp"/w.* >"$tmp/writes"
n_w=$(wc -l <"$tmp/writes")
n_201=$(awk '$1 == 201' "$tmp/writes" | wc -l)
awk '$1 != 201' "$tmp/writes" | head -3 | while read -r l; do diag "$l"; done
check "8 writers (4 via A/node 1, 4 via B/node 2) at once: all $n_w PUTs 201" \
      "(${t_w} s)" [ "$n_201" = $((8 * W)) ]
cf1=$(( $(wsrep 1 wsrep_local_cert_failures) + $(wsrep 2 wsrep_local_cert_failures) \
       + $(wsrep 1 wsrep_local_bf_aborts) + $(wsrep 2 wsrep_local_bf_aborts) ))
retried=$(cat "$tmp/A/logs/error_log" "$tmp/B/logs/error_log" \
          | grep -c 'CS00120' || true)
diag "Galera conflicts (cert failures + BF aborts on nodes 1, 2):" \
     "$((cf1 - cf0)); transactions run again (CS00120): $retried"
c=$(all "[ $((cf1 - cf0)) -gt 0 ]" "[ $retried -gt 0 ]")
check "the nodes saw certification conflicts, and CertService ran them" \
      "again (CS00120 logged $retried times)" [ "$c" = 1 ]

# Every page moved the cursor to the last seq it returned, and the seqs read
# are exactly the seqs in the whole feed, each once, increasing.
sort -n "$tmp/r.changes" | cut -d' ' -f1 >"$tmp/r.seqs"
skip_ok=1
if ! sort -n -c "$tmp/r.seqs" 2>/dev/null \
   || [ "$(cut -d' ' -f1 "$tmp/r.changes" | tr '\n' ' ')" != \
        "$(tr '\n' ' ' <"$tmp/r.seqs")" ] \
   || [ "$(uniq -d "$tmp/r.seqs" | wc -l)" != 0 ]; then
    skip_ok=0
    diag "the reader's seqs are not increasing and unique"
fi
sql 3 "SELECT seq, domain FROM cs_changes ORDER BY seq" | tr '\t' ' ' \
    >"$tmp/feed3"
if ! cmp -s "$tmp/feed3" "$tmp/r.changes"; then
    skip_ok=0
    diag "reader: $(wc -l <"$tmp/r.changes") changes; node 3's feed:" \
         "$(wc -l <"$tmp/feed3")"
    diff "$tmp/feed3" "$tmp/r.changes" | head -5 | while read -r l; do
        diag "$l"; done
fi
pages=$(grep -vc ERR "$tmp/r.pages")
check "the reader ($pages pages through A and B in turn) read every change" \
      "once, in order: its cursor never skipped one" [ $skip_ok = 1 ]
acked_ok=1
while read -r c s ser d; do
    [ "$c" = 201 ] || continue
    if ! grep -qx "$s $d" "$tmp/feed3"; then
        acked_ok=0
        diag "201 for $d (seq $s) is not in the feed"
    fi
done <"$tmp/writes"
check "every 201's seq and domain is in the feed (node 3)" [ $acked_ok = 1 ]

# --- 2. Leases across the cluster ---------------------------------------------

lease_race() { # POOL N: N POSTs at once; prints the codes
    local pool=$1 n=$2 i inst
    for i in $(seq 1 "$n"); do
        if [ $((i % 2)) = 0 ]; then inst=A; else inst=B; fi
        ( req proxy "$inst" POST "/v1/pools/$pool/leases" \
              "{\"host\":\"h$i.$pool\",\"ttl\":600}"
          echo "$code" >"$tmp/lease.$pool.$i" ) &
    done
    wait
    cat "$tmp"/lease."$pool".* | sort | uniq -c | tr '\n' ' '
}
codes=$(lease_race pool1 30)
n1=$(cat "$tmp"/lease.pool1.* | grep -c '^201$')
rows1=$(sql 3 "SELECT COUNT(*) FROM cs_leases WHERE pool = 'pool1'")
o1=$(cat "$tmp"/lease.pool1.* | grep -vcE '^(201|409)$' || true)
check "30 lease requests at once via A and B, max 1: one 201, the rest" \
      "409 (none 503), one row on node 3 ($codes)" [ "$n1:$rows1:$o1" = 1:1:0 ]
codes=$(lease_race pool2 30)
n2=$(cat "$tmp"/lease.pool2.* | grep -c '^201$')
rows2=$(sql 3 "SELECT COUNT(*) FROM cs_leases WHERE pool = 'pool2'")
o2=$(cat "$tmp"/lease.pool2.* | grep -vcE '^(201|409)$' || true)
check "30 lease requests at once via A and B, max 2: two 201s, the rest" \
      "409, two rows on node 3 ($codes)" [ "$n2:$rows2:$o2" = 2:2:0 ]

# --- 3. A node killed under load ------------------------------------------------

kwriter() { # NAME INST: until told to stop; "code seq serial domain time"
    local name=$1 inst=$2 i=0 d out=$tmp/k.$1
    : >"$out"
    while [ ! -e "$tmp/k.stop" ]; do
        i=$((i + 1))
        d=k$i.$name.galera-test.example
        req admin "$inst" PUT "/v1/domains/$d"
        echo "$code $(jqb .seq 2>/dev/null) $(jqb .serial 2>/dev/null) $d" \
             "$(date +%s%N)" >>"$out"
        [ "$code" = 201 ] || sleep 0.2
    done
}
rm -f "$tmp/k.stop"
kpids=()
for k in 1 2; do
    kwriter ka$k A & kpids+=($!)
    kwriter kb$k B & kpids+=($!)
done
bg_pids+=("${kpids[@]}")
for _ in $(seq 1 300); do
    [ "$(cat "$tmp"/k.* 2>/dev/null | grep -c '^201')" -ge 8 ] && break
    sleep 0.1
done
t_kill=$(date +%s%N)
"$top/t/db/galera_cluster.sh" kill "$gdir" 2
sleep 12
n_after=$(cat "$tmp"/k.ka* | awk -v t="$t_kill" '$1 == 201 && $5 > t + 8e9' \
          | wc -l)
check "node 2 SIGKILLed under load: writes via A (node 1) answer 201" \
      "again within 8 s ($n_after since)" [ "$n_after" -gt 0 ]
t0=$(date +%s)
if CS_GALERA_PORT=${CS_GALERA_PORT:-35306} \
   "$top/t/db/galera_cluster.sh" restart "$gdir" 2 >"$tmp/restart.log" 2>&1; then
    ok "node 2 restarted and rejoined in $(($(date +%s) - t0)) s"
else
    notok "node 2 restarted and rejoined"
    tail -5 "$tmp/restart.log" | while read -r l; do diag "$l"; done
fi
sleep 3
touch "$tmp/k.stop"
wait "${kpids[@]}"
cat "$tmp"/k.* >"$tmp/kwrites"
bad=$(awk '$1 != 201 && $1 !~ /^5/' "$tmp/kwrites" | wc -l)
awk '$1 != 201 && $1 !~ /^5/' "$tmp/kwrites" | head -3 \
    | while read -r l; do diag "$l"; done
check "during the outage every PUT answered 201 or a 5xx, never a 4xx or" \
      "no answer ($(awk '$1 == 201' "$tmp/kwrites" | wc -l) 201," \
      "$(awk '$1 ~ /^5/' "$tmp/kwrites" | wc -l) 5xx)" [ "$bad" = 0 ]
b_back=$(cat "$tmp"/k.kb* | awk '$1 == 201' | tail -1 | cut -d' ' -f5)
check "B (node 2) answers 201 again after the rejoin" \
      [ "${b_back:-0}" -gt "$t_kill" ]

# Nothing acknowledged is lost: every 201 (of both phases) is in the feed
# read through A and in cs_domains with its serial, on node 3 and node 2.
cat "$tmp/writes" "$tmp/kwrites" | awk '$1 == 201 { print $4, $3, $2 }' \
    | sort >"$tmp/acked"
lost_ok=1
for node in 3 2; do
    sql "$node" "SELECT d.name, d.serial, c.seq FROM cs_domains d JOIN cs_changes c
              ON c.domain = d.name AND c.seq = d.seq" | tr '\t' ' ' \
        | sort >"$tmp/have.$node"
    missing=$(comm -23 "$tmp/acked" "$tmp/have.$node" | wc -l)
    if [ "$missing" != 0 ]; then
        lost_ok=0
        diag "node $node lacks $missing acknowledged writes, e.g." \
             "$(comm -23 "$tmp/acked" "$tmp/have.$node" | head -1)"
    fi
done
feed_ok=1
since=0
: >"$tmp/feedA"
while :; do
    req proxy A GET "/v1/changes?since=$since&limit=500"
    [ "$code" = 200 ] || { feed_ok=0; break; }
    jqb -r '.changes[] | "\(.seq) \(.domain)"' >>"$tmp/feedA"
    since=$(jqb .next)
    [ "$(jqb .more)" = true ] || break
done
awk '{ print $3, $1 }' "$tmp/acked" | sort >"$tmp/acked.feed"
sort "$tmp/feedA" >"$tmp/feedA.s"
[ "$(comm -23 "$tmp/acked.feed" "$tmp/feedA.s" | wc -l)" = 0 ] || feed_ok=0
sort -n -c <(cut -d' ' -f1 "$tmp/feedA") 2>/dev/null || feed_ok=0
check "nothing acknowledged lost: all $(wc -l <"$tmp/acked") 201s in" \
      "cs_domains with their serial and seq on nodes 3 and 2 (rejoined)" \
      [ $lost_ok = 1 ]
check "and in the feed read through A, in order" [ $feed_ok = 1 ]

# --- 4. Logs ------------------------------------------------------------------

crash=$(cat "$tmp/A/logs/error_log" "$tmp/B/logs/error_log" \
        | grep -cE 'exit signal|Segmentation|AH00052' || true)
gaveup=$(cat "$tmp/A/logs/error_log" "$tmp/B/logs/error_log" \
         | grep -c 'CS00121' || true)
check "no crashed child, no transaction given up (CS00121: $gaveup)" \
      [ "$crash:$gaveup" = 0:0 ]
diag "CS00120 retries in all: $(cat "$tmp/A/logs/error_log" \
      "$tmp/B/logs/error_log" | grep -c CS00120); run time" \
     "$(($(date +%s) - t_start)) s"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
