#!/bin/bash
#
# t/certservice/mariadb_test.sh: two CertService instances on one MariaDB.
#
# Starts a private MariaDB (t/db/mariadb.sh), makes the test PKI
# (t/certservice/make-pki.sh) and two Apache httpd instances, A and B, on
# two loopback ports, each with mod_ssl, mod_dbd (DBDriver mysql) and
# mod_certservice from the build tree, sharing that one database.  Then,
# with curl and the PKI's client certificates:
#
#   storage      domains issued through A and B alternately read back
#                through the other instance (bundle, admin view, batch,
#                list); a sealed key opens with wrap1.key to the
#                certificate's key; re-issue and delete seen on both
#   change feed  GET /v1/changes paged alternately through A and B: seqs
#                strictly increasing, every change exactly once, next and
#                more right (also at an exact page boundary)
#   concurrency  writers on both instances (issue, re-issue, delete) while
#                a reader pages the feed through both: every write's seq
#                seen exactly once, in order, with the right domain and op
#   leases       40 parallel POST .../leases split across A and B, for a
#                pool with CertServiceMaxUnavailable 1 and one with 2:
#                never more granted than allowed, by the answers (201s)
#                and by listing the lease table over time (there is no
#                HTTP endpoint that lists leases: SELECT on cs_leases);
#                renewal by the holder, release and re-acquire, a second
#                race, and expiry (ttl 4 s) freeing the slot
#   201 or 200   8 PUTs of one new name at once through A and B: exactly
#                one 201; then rounds of 16 PUTs and DELETEs of one name
#                at once: in the order of their seqs, each PUT answered
#                201 exactly when the name did not exist, each DELETE
#                that answered 200 followed a PUT
#   MariaDB      mariadbd SIGKILLed while writers on A and B issue new
#   killed       names, restarted 2 s later on its data directory and port
#                (t/db/mariadb.sh restart), httpd left running: every PUT
#                before the kill and after the restart 201, during the
#                outage 201 or a 5xx with a JSON error (never no answer,
#                never a 4xx); every 201 stored with the serial and seq it
#                answered; the whole feed pages in order with each 201's
#                change exactly once; a name whose PUT failed is absent
#                (404, no bundle, not in the feed) or complete (active, in
#                the feed, its key opens with wrap1); new PUTs via A and B
#                succeed (mod_dbd reconnected)
#   rotation     the wrapping key rotation of docs/mod_certservice.md on
#   under load   both (wrap2 added, graceful restart; every domain
#                re-issued; wrap1 removed, graceful restart) while 4
#                clients fetch bundles at random via A and B: every fetch
#                200, every envelope fetched opens with wrap1 or wrap2 to
#                its certificate's key, those fetched after the re-issues
#                with wrap2; at the end every bundle, by batch via A and
#                B, opens with wrap2
#   logs         no crashed child; no 5xx logged but during the outage
#
# Output: "ok N - ..." / "not ok N - ..." per check, then one line
# "N passed, M failed"; the exit status is non-zero if any check failed.
# Skips (exit 0) only when no MariaDB server (mariadbd/mysqld) is installed.
#
# Environment:
#   CS_MODULE   mod_certservice.so to load (default: the build tree's,
#               ./mod_certservice/.libs or next to this source tree)
#   HTTPD       the httpd binary (default: from apxs, else apache2/httpd)
#   APXS        apxs, to find HTTPD and the modules directory
#   CERTSUITE_KEEP=1  keep the temporary directory (logs) after the run
#
# Works as a normal user and as root (the httpd children then run as
# nobody; mariadb.sh runs the database server as root).  Talks only to
# 127.0.0.1.  Everything it starts is stopped on exit.
#
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/t/lib/certsuite.sh"
# csdb_need, csdb_setup, csdb_start, csdb_sql, req, port_of, other, check
. "$top/t/lib/csdb.sh"

# --- Prerequisites, test output, temporary directory, PKI ---------------------

csdb_need
tap_init
csdb_setup cs-mariadb-test
dbdir=$tmp/db

on_cleanup() {
    csdb_cleanup
    if [ -d "$dbdir" ]; then
        "$top/t/db/mariadb.sh" stop "$dbdir" >/dev/null 2>&1
    fi
}

# --- Database ----------------------------------------------------------------

t0=$(date +%s)
if ! params=$("$top/t/db/mariadb.sh" start "$dbdir" 2>"$tmp/mariadb.log"); then
    cat "$tmp/mariadb.log"
    bail "t/db/mariadb.sh start failed"
fi
ok "private MariaDB started in $(($(date +%s) - t0)) s"
diag "apr_dbd params: $(sed 's/pass=[^;]*/pass=.../' <<<"$params")"

sql() { # SQL: rows, tab-separated, no header
    csdb_sql "$params" "$1"
}

# --- httpd instances ---------------------------------------------------------

# Two CertServices on the one MariaDB, local CA.
csdb_start "$params" "$params" "CertServiceCertificateLifetime 240h
CertServiceMaxUnavailable 1
CertServiceMaxUnavailable 2 pool2
CertServiceLeaseMaxTTL 120
CertServiceMaxBatch 100"
ok "httpd instances A (port $port_A) and B (port $port_B) started," \
   "both on one MariaDB"

header() { # NAME: from the last req's response headers
    tr -d '\r' <"$last_rf.hdr" 2>/dev/null \
        | sed -n "s/^$1: *//Ip" | head -1
}

# --- 1. Schema, created by both at once --------------------------------------

cs_curl proxy "$port_A" "/v1/changes?limit=10" -o "$tmp/first.A" \
    -w '%{http_code}' >"$tmp/first.A.code" 2>&1 &
cs_curl proxy2 "$port_B" "/v1/changes?limit=10" -o "$tmp/first.B" \
    -w '%{http_code}' >"$tmp/first.B.code" 2>&1 &
wait
first_ok=1
for inst in A B; do
    if [ "$(cat "$tmp/first.$inst.code")" != 200 ] \
       || [ "$(jq -cS . "$tmp/first.$inst")" != \
            '{"changes":[],"more":false,"next":0}' ]; then
        first_ok=0
        diag "$inst: $(cat "$tmp/first.$inst.code") $(cat "$tmp/first.$inst")"
    fi
done
check "first requests on A and B at once (both create the schema): empty" \
      "feed, next 0, more false" [ $first_ok = 1 ]

# --- 2. Storage: issue alternately, read back through the other ---------------

# What the feed must hold, in seq order: "seq domain op serial".
: >"$tmp/expect"
declare -A serial_of seq_of via_of
D=10
domains=()
issue_ok=1
prev=0
seq_order_ok=1
for i in $(seq 0 $((D - 1))); do
    d=d$i.mdb-test.example
    domains+=("$d")
    if [ $((i % 2)) = 0 ]; then inst=A; else inst=B; fi
    req admin $inst PUT "/v1/domains/$d"
    if [ "$code" != 201 ] || [ "$(jqb .state)" != active ]; then
        issue_ok=0
        diag "PUT $d via $inst: $code $body"
        continue
    fi
    serial_of[$d]=$(jqb .serial)
    seq_of[$d]=$(jqb .seq)
    via_of[$d]=$inst
    [ "${seq_of[$d]}" -gt "$prev" ] || seq_order_ok=0
    prev=${seq_of[$d]}
    echo "${seq_of[$d]} $d upsert ${serial_of[$d]}" >>"$tmp/expect"
done
check "PUT /v1/domains: $D domains issued via A and B alternately (201," \
      "active)" [ $issue_ok = 1 ]
check "their seqs increase in issue order across both instances" \
      [ $seq_order_ok = 1 ]

readback_ok=1
chain_ok=1
for d in "${domains[@]}"; do
    o=$(other "${via_of[$d]:-A}")
    req proxy "$o" GET "/v1/bundles/$d"
    got=$(jqb '[.domain, .serial, (.seq|tostring), .key_type,
                (.key_cms|length > 100)] | join(" ")' 2>/dev/null)
    want="$d ${serial_of[$d]:-} ${seq_of[$d]:-} ec-p256 true"
    if [ "$code" != 200 ] || [ "$got" != "$want" ]; then
        readback_ok=0
        diag "GET /v1/bundles/$d via $o: $code: '$got', want '$want'"
        continue
    fi
    jqb .chain_pem >"$tmp/chain.pem"
    ncerts=$(grep -c 'BEGIN CERTIFICATE' "$tmp/chain.pem")
    san=$(openssl x509 -in "$tmp/chain.pem" -noout -ext subjectAltName \
          2>/dev/null | tail -1 | tr -d ' ')
    ser=$(openssl x509 -in "$tmp/chain.pem" -noout -serial 2>/dev/null \
          | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//')
    if [ "$ncerts" != 2 ] || [ "$san" != "DNS:$d" ] \
       || [ "$ser" != "$(sed 's/^0*//' <<<"${serial_of[$d]}")" ]; then
        chain_ok=0
        diag "$d: $ncerts certificates, SAN '$san', serial '$ser'"
    fi
done
check "GET /v1/bundles via the other instance: same domain, serial, seq," \
      "key type, a sealed key, for all $D" [ $readback_ok = 1 ]
check "each chain_pem: leaf (SAN = the domain, serial as issued) + CA" \
      [ $chain_ok = 1 ]

# The sealed key of one domain issued via B, fetched via A, opens with the
# wrapping certificate's private key to the key of the certificate.
d=${domains[1]}
req proxy A GET "/v1/bundles/$d"
jqb .key_cms | base64 -d >"$tmp/key.der" 2>/dev/null
jqb .chain_pem >"$tmp/chain.pem"
k1=$(openssl cms -decrypt -inform DER -in "$tmp/key.der" \
     -recip "$pki/wrap1.crt" -inkey "$pki/wrap1.key" 2>/dev/null \
     | openssl pkey -pubout 2>/dev/null)
k2=$(openssl x509 -in "$tmp/chain.pem" -noout -pubkey 2>/dev/null)
[ -n "$k1" ] && [ "$k1" = "$k2" ]
okif $? "key_cms of $d (issued via B, read via A) opens with wrap1.key to" \
     "the certificate's key"
if [ -z "$k1" ] || [ "$k1" != "$k2" ]; then
    diag "cms: '$k1'"
    diag "cert: '$k2'"
fi

admin_ok=1
for d in "${domains[@]}"; do
    o=$(other "${via_of[$d]:-A}")
    req admin "$o" GET "/v1/domains/$d"
    got=$(jqb '[.state, .serial, (.seq|tostring)] | join(" ")' 2>/dev/null)
    if [ "$code" != 200 ] \
       || [ "$got" != "active ${serial_of[$d]:-} ${seq_of[$d]:-}" ]; then
        admin_ok=0
        diag "GET /v1/domains/$d via $o: $code $got"
    fi
done
check "GET /v1/domains/DOMAIN (admin) via the other instance: active," \
      "same serial and seq" [ $admin_ok = 1 ]

batch=$(printf '%s\n' "${domains[@]}" nowhere.mdb-test.example \
        | jq -R . | jq -cs '{domains: .}')
want_serials=$(for d in "${domains[@]}"; do echo "$d ${serial_of[$d]:-}"; done)
for inst in A B; do
    req proxy2 $inst POST /v1/bundles "$batch"
    got=$(jqb '.bundles[] | "\(.domain) \(.serial)"' 2>/dev/null)
    missing=$(jqb -c .missing 2>/dev/null)
    if [ "$code" = 200 ] && [ "$got" = "$want_serials" ] \
       && [ "$missing" = '["nowhere.mdb-test.example"]' ]; then
        ok "POST /v1/bundles via $inst: all $D bundles in order, the" \
           "unknown domain in missing"
    else
        notok "POST /v1/bundles via $inst"
        diag "$code $(head -c 300 <<<"$body")"
    fi
done

req admin B GET "/v1/domains?limit=1000"
got=$(jqb '.domains[].domain' 2>/dev/null | sort)
is "$got" "$(printf '%s\n' "${domains[@]}" | sort)" \
   "GET /v1/domains via B lists all $D domains"

# Re-issue one through the other instance than issued it.
d=${domains[2]}
old=${serial_of[$d]:-}
req admin B PUT "/v1/domains/$d"
new=$(jqb .serial 2>/dev/null)
nseq=$(jqb .seq 2>/dev/null)
if [ "$code" = 200 ] && [ -n "$new" ] && [ "$new" != "$old" ] \
   && [ "$nseq" -gt "$prev" ] 2>/dev/null; then
    ok "PUT again via B re-issues $d (issued via A): 200, new serial, new seq"
    serial_of[$d]=$new
    seq_of[$d]=$nseq
    prev=$nseq
    echo "$nseq $d upsert $new" >>"$tmp/expect"
else
    notok "PUT again via B re-issues $d"
    diag "$code $body"
fi
req proxy A GET "/v1/bundles/$d"
is "$(jqb .serial 2>/dev/null) $(jqb .seq 2>/dev/null)" "$new $nseq" \
   "A serves the re-issued bundle at once"

# Delete one via A; B sees it gone.
d=${domains[3]}
req admin A DELETE "/v1/domains/$d"
dseq=$(jqb .seq 2>/dev/null)
if [ "$code" = 200 ] && [ "$(jqb .op)" = delete ] \
   && [ "$dseq" -gt "$prev" ] 2>/dev/null; then
    ok "DELETE /v1/domains/$d via A: 200, op delete, new seq"
    prev=$dseq
    echo "$dseq $d delete null" >>"$tmp/expect"
else
    notok "DELETE /v1/domains/$d via A"
    diag "$code $body"
fi
req proxy B GET "/v1/bundles/$d"
c1=$code
req admin B DELETE "/v1/domains/$d"
is "$c1 $code" "404 404" "via B: its bundle is 404, deleting it again is 404"

# --- 3. Change feed paging across both instances -----------------------------

# page_all LIMIT SINCE OUTFILE: pages from SINCE alternately via A and B;
# writes "seq domain op serial" lines; checks order, next and more.
page_all() {
    local limit=$1 since=$2 out=$3 inst=A pages=0 seqs s last more next
    local cnt
    : >"$out"
    page_err=
    while :; do
        req proxy "$inst" GET "/v1/changes?since=$since&limit=$limit"
        pages=$((pages + 1))
        if [ "$code" != 200 ]; then
            page_err="page $pages via $inst: $code $body"
            return 1
        fi
        seqs=$(jqb '.changes[].seq')
        cnt=$(jqb '.changes|length')
        next=$(jqb .next)
        more=$(jqb .more)
        last=$since
        for s in $seqs; do
            if [ "$s" -le "$last" ]; then
                page_err="page $pages via $inst: seq $s after $last"
                return 1
            fi
            last=$s
        done
        if [ "$next" != "$last" ]; then
            page_err="page $pages via $inst: next $next, last seq $last"
            return 1
        fi
        jqb '.changes[] | "\(.seq) \(.domain) \(.op) \(.serial)"' >>"$out"
        if [ "$more" = true ]; then
            if [ "$cnt" != "$limit" ]; then
                page_err="page $pages: more with $cnt < limit $limit changes"
                return 1
            fi
        elif [ "$more" = false ]; then
            break
        else
            page_err="page $pages: more is '$more'"
            return 1
        fi
        since=$next
        inst=$(other "$inst")
        if [ $pages -gt 10000 ]; then
            page_err="no end after $pages pages"
            return 1
        fi
    done
    npages=$pages

    # The end stays the end: an empty page, same next, more false.
    req proxy "$inst" GET "/v1/changes?since=$next&limit=$limit"
    if [ "$code" != 200 ] || [ "$(jq -cS . <<<"$body")" != \
            "{\"changes\":[],\"more\":false,\"next\":$next}" ]; then
        page_err="past the end via $inst: $code $body"
        return 1
    fi
    return 0
}

nexp=$(wc -l <"$tmp/expect")
for lim in 5 4; do
    if page_all $lim 0 "$tmp/feed.$lim"; then
        ok "GET /v1/changes?limit=$lim paged alternately via A and B" \
           "($npages pages): seqs strictly increasing, next = last seq," \
           "more until the last page, an empty page after it"
    else
        notok "GET /v1/changes?limit=$lim paged via A and B"
        diag "$page_err"
    fi
    if diff "$tmp/expect" "$tmp/feed.$lim" >"$tmp/diff" 2>&1; then
        ok "... every one of the $nexp changes exactly once, with its" \
           "domain, op and serial"
    else
        notok "... every change exactly once"
        diag "$(head -20 "$tmp/diff")"
    fi
done
mid=$(sed -n 6p "$tmp/expect" | cut -d' ' -f1)
page_all 3 "$mid" "$tmp/feed.mid" >/dev/null
is "$(cat "$tmp/feed.mid")" "$(sed -n '7,$p' "$tmp/expect")" \
   "since=<6th seq> returns exactly the changes after it"
head_seq=$(tail -1 "$tmp/expect" | cut -d' ' -f1)

# --- 4. Concurrent writes through both while a reader pages -----------------

# Writers (background): A1/B1 issue new domains, A2 re-issues existing ones,
# B2 issues and deletes.  Every write logs "code wanted-code seq domain
# op".
K=12
writer() { # name inst mode
    local name=$1 inst=$2 mode=$3 i d s
    local log=$tmp/writes.$name
    : >"$log"
    case $mode in
    new)
        for i in $(seq 1 $K); do
            d=c$i.${name,,}.mdb-test.example
            req admin "$inst" PUT "/v1/domains/$d"
            echo "$code 201 $(jqb .seq 2>/dev/null) $d upsert" >>"$log"
        done ;;
    reissue)
        for d in "${domains[@]}"; do
            [ "$d" = "${domains[3]}" ] && continue
            req admin "$inst" PUT "/v1/domains/$d"
            echo "$code 200 $(jqb .seq 2>/dev/null) $d upsert" >>"$log"
        done ;;
    churn)
        for i in $(seq 1 $((K / 2))); do
            d=c$i.${name,,}.mdb-test.example
            req admin "$inst" PUT "/v1/domains/$d"
            echo "$code 201 $(jqb .seq 2>/dev/null) $d upsert" >>"$log"
            req admin "$inst" DELETE "/v1/domains/$d"
            echo "$code 200 $(jqb .seq 2>/dev/null) $d delete" >>"$log"
        done ;;
    esac
}

rm -f "$tmp/writers.done"
(
    writer A1 A new &
    writer B1 B new &
    writer A2 A reissue &
    writer B2 B churn &
    wait
    touch "$tmp/writers.done"
) &
writers_pid=$!
bg_pids+=("$writers_pid")

# Reader: pages via A and B alternately (limit 7) until the writers are
# done and the feed is drained.
reader_ok=1
reader_err=
since=$head_seq
inst=A
pages=0
pages_during=0
: >"$tmp/seen"
deadline=$(($(date +%s) + 90))
while :; do
    done_before=0
    [ -e "$tmp/writers.done" ] && done_before=1
    req proxy "$inst" GET "/v1/changes?since=$since&limit=7"
    pages=$((pages + 1))
    if [ "$code" != 200 ]; then
        reader_ok=0
        reader_err="page $pages via $inst: $code $body"
        break
    fi
    last=$since
    for s in $(jqb '.changes[].seq'); do
        if [ "$s" -le "$last" ]; then
            reader_ok=0
            reader_err="page $pages via $inst: seq $s after $last"
        fi
        last=$s
    done
    if [ "$(jqb .next)" != "$last" ]; then
        reader_ok=0
        reader_err="page $pages via $inst: next $(jqb .next), last $last"
    fi
    [ $reader_ok = 1 ] || break
    jqb '.changes[] | "\(.seq) \(.domain) \(.op)"' >>"$tmp/seen"
    [ $done_before = 1 ] || pages_during=$((pages_during + 1))
    since=$last
    inst=$(other "$inst")
    if [ $done_before = 1 ] && [ "$(jqb .more)" = false ]; then
        break
    fi
    if [ "$(date +%s)" -gt "$deadline" ]; then
        reader_ok=0
        reader_err="the writers did not finish in 90 s"
        break
    fi
done
wait "$writers_pid" 2>/dev/null

cat "$tmp"/writes.* >"$tmp/writes"
nw=$(wc -l <"$tmp/writes")
nbad=$(awk '$1 != $2' "$tmp/writes" | wc -l)
want_w=$((K * 2 + (D - 1) + K))
if [ "$nw" = "$want_w" ] && [ "$nbad" = 0 ]; then
    ok "$nw concurrent writes (issue, re-issue, delete) through A and B" \
       "all succeeded"
else
    notok "concurrent writes through A and B"
    diag "$nw writes (want $want_w), $nbad failed:"
    diag "$(awk '$1 != $2' "$tmp/writes" | head -5)"
fi
check "the reader paged via A and B while writing went on ($pages pages," \
      "$pages_during of them during the writes): seqs strictly increasing," \
      "next = last seq" [ $reader_ok = 1 ]
[ -z "$reader_err" ] || diag "$reader_err"
awk '{ print $3, $4, $5 }' "$tmp/writes" | sort -n >"$tmp/writes.sorted"
if diff "$tmp/writes.sorted" "$tmp/seen" >"$tmp/diff" 2>&1; then
    ok "the reader saw every write's seq exactly once, in order, with its" \
       "domain and op ($(wc -l <"$tmp/seen") changes)"
else
    notok "the reader saw every write's seq exactly once, in order"
    diag "$(head -20 "$tmp/diff")"
fi
dups=$(awk '{ print $3 }' "$tmp/writes" | sort | uniq -d | head -3)
is "$dups" "" "no two writes got the same seq"

# --- 5. Restart leases ------------------------------------------------------

# Lease table listing, sampled in the background: "pool count" of live
# leases per sample, through the database (no HTTP endpoint lists leases).
sampler() { # outfile
    local out=$1
    : >"$out"
    while [ ! -e "$out.stop" ]; do
        sql "SELECT pool, COUNT(*) FROM cs_leases
             WHERE expires > UNIX_TIMESTAMP() GROUP BY pool" \
            >>"$out" 2>/dev/null
        echo "-" >>"$out"
    done
}
sample_max() { # file pool
    awk -v p="$2" '$1 == p && $2 > m { m = $2 } END { print m + 0 }' "$1"
}

# race ROUND HOSTS_PER_POOL TTL: POSTs, all at once from one curl, for
# pools p1 and pool2, hosts split over A and B; results in
# $tmp/race.ROUND/<pool>.<host> (body), and lines "code pool host inst".
race() {
    local round=$1 per=$2 ttl=$3 pool i inst port dir=$tmp/race.$1
    mkdir -p "$dir"
    : >"$dir/curl.cfg"
    for pool in p1 pool2; do
        for i in $(seq 1 "$per"); do
            if [ $((i % 2)) = 0 ]; then inst=A; port=$port_A
            else inst=B; port=$port_B; fi
            cat >>"$dir/curl.cfg" <<EOF
url = "https://127.0.0.1:$port/v1/pools/$pool/leases"
request = "POST"
header = "Content-Type: application/json"
data = "{\"host\":\"r$round-h$i\",\"ttl\":$ttl}"
cacert = "$pki/clients-ca.crt"
cert = "$pki/proxy.crt"
key = "$pki/proxy.key"
noproxy = "*"
max-time = 30
silent
show-error
output = "$dir/$pool.r$round-h$i"
write-out = "%{http_code} $pool r$round-h$i $inst\n"
next
EOF
        done
    done
    sed -i '$d' "$dir/curl.cfg"
    curl --no-progress-meter --parallel --parallel-immediate \
        --parallel-max 100 \
        -K "$dir/curl.cfg" >"$dir/codes" 2>"$dir/curl.err"
}

# check_race ROUND: ok lines for one race's answers and listing
check_race() {
    local round=$1 dir=$tmp/race.$1 pool max granted others got want
    for pool in p1 pool2; do
        if [ $pool = p1 ]; then max=1; else max=2; fi
        granted=$(awk -v p=$pool '$1 == 201 && $2 == p' "$dir/codes" | wc -l)
        others=$(awk -v p=$pool '$1 != 201 && $1 != 409 && $2 == p' \
                 "$dir/codes" | wc -l)
        if [ "$granted" = "$max" ] && [ "$others" = 0 ]; then
            ok "race $round, pool $pool (max_unavailable $max): $granted" \
               "of $(awk -v p=$pool '$2 == p' "$dir/codes" | wc -l)" \
               "requests via A and B got 201, the rest 409"
        else
            notok "race $round, pool $pool (max_unavailable $max):" \
                  "$granted granted, $others neither 201 nor 409"
            diag "answers: $(awk -v p=$pool '$2 == p { print $1 }' \
                    "$dir/codes" | sort | uniq -c | xargs)"
            diag "granted: $(awk -v p=$pool '$1 == 201 && $2 == p \
                    { print $3 " via " $4 }' "$dir/codes" | xargs)"
            diag "$(head -5 "$dir/curl.err")"
        fi
        # The lease table holds exactly the winners, with their lease ids.
        got=$(sql "SELECT host, id FROM cs_leases WHERE pool = '$pool'
                   AND expires > UNIX_TIMESTAMP() ORDER BY host" 2>&1)
        want=$(awk -v p=$pool '$1 == 201 && $2 == p { print $3 }' \
               "$dir/codes" | sort | while read -r h; do
                   printf '%s\t%s\n' "$h" "$(jq -r .lease "$dir/$pool.$h")"
               done)
        is "$got" "$want" "race $round, pool $pool: the lease table lists" \
           "exactly the winners and their lease ids"
    done
    # 409s carry Retry-After (in the body as retry_after too).
    local bad
    bad=$(cat "$dir"/p1.* "$dir"/pool2.* | jq -s \
          '[.[] | select(.status == 409 and (.retry_after // 0) < 1)]
           | length' 2>&1)
    is "$bad" 0 "race $round: every 409 says retry_after >= 1"
}

sampler "$tmp/leases.samples" &
sampler_pid=$!
bg_pids+=("$sampler_pid")
sleep 0.2
t_race=$(date +%s%N)
race 1 20 60
race_ms=$((($(date +%s%N) - t_race) / 1000000))
# Listing over time: keep sampling for a second after the race.
sleep 1
touch "$tmp/leases.samples.stop"
wait "$sampler_pid" 2>/dev/null
nsamples=$(grep -c '^-$' "$tmp/leases.samples")
diag "race 1: 40 requests answered in $race_ms ms; $nsamples samples of" \
     "the lease table"
check_race 1
m1=$(sample_max "$tmp/leases.samples" p1)
m2=$(sample_max "$tmp/leases.samples" pool2)
[ "$nsamples" -ge 5 ] && [ "$m1" -le 1 ] && [ "$m2" -le 2 ] \
    && [ "$m1" -ge 1 ] && [ "$m2" -ge 2 ]
okif $? "listing the lease table over time ($nsamples samples during and" \
     "after the race): never more than 1 live lease in p1 (max seen $m1)," \
     "2 in pool2 (max seen $m2)"

# Renewal: the holder asking again (via the other instance) gets its lease.
holder=$(awk '$1 == 201 && $2 == "p1" { print $3, $4 }' \
         "$tmp/race.1/codes" | head -1)
h_host=${holder% *}
h_inst=${holder#* }
h_lease=$(jq -r .lease "$tmp/race.1/p1.$h_host" 2>/dev/null)
req proxy "$(other "$h_inst")" POST /v1/pools/p1/leases \
    "{\"host\":\"$h_host\",\"ttl\":60}"
is "$code $(jqb .lease 2>/dev/null)" "201 $h_lease" \
   "the p1 holder asking again via the other instance gets its lease back"

# A loser is refused with Retry-After.
req proxy A POST /v1/pools/p1/leases '{"host":"late-1","ttl":60}'
ra=$(header Retry-After)
[ "$code" = 409 ] && [ "${ra:-0}" -ge 1 ] 2>/dev/null
okif $? "another host on p1: 409 with Retry-After ($ra)"

# Release via the other instance, then re-acquire.
req proxy "$(other "$h_inst")" DELETE "/v1/pools/p1/leases/$h_lease"
is "$code" 204 "release of the p1 lease via the other instance: 204"
req proxy A POST /v1/pools/p1/leases '{"host":"late-1","ttl":60}'

is "$code" 201 "p1 is free again: late-1 gets a lease via A"
req proxy B POST /v1/pools/p1/leases '{"host":"late-2","ttl":60}'
is "$code" 409 "... and late-2 via B is refused (409)"
req proxy B DELETE "/v1/pools/p1/leases/$h_lease"
is "$code" 404 "releasing the released lease again: 404"

p2_lease=$(awk '$1 == 201 && $2 == "pool2" { print $3 }' \
           "$tmp/race.1/codes" | head -1)
p2_lease=$(jq -r .lease "$tmp/race.1/pool2.$p2_lease" 2>/dev/null)
req proxy A DELETE "/v1/pools/pool2/leases/$p2_lease"
c1=$code
req proxy B POST /v1/pools/pool2/leases '{"host":"late-3","ttl":60}'
c2=$code
req proxy A POST /v1/pools/pool2/leases '{"host":"late-4","ttl":60}'
is "$c1 $c2 $code" "204 201 409" \
   "pool2: release one of two, late-3 gets it, late-4 is refused"
is "$(sql "SELECT COUNT(*) FROM cs_leases WHERE pool = 'pool2'
          AND expires > UNIX_TIMESTAMP()")" 2 \
   "pool2 lists 2 live leases"

# Release everything, then race again.
rel_bad=0
while read -r pool id; do
    [ -n "$id" ] || continue
    req proxy B DELETE "/v1/pools/$pool/leases/$id"
    [ "$code" = 204 ] || rel_bad=$((rel_bad + 1))
done < <(sql "SELECT pool, id FROM cs_leases WHERE expires > UNIX_TIMESTAMP()")
is "$rel_bad $(sql "SELECT COUNT(*) FROM cs_leases
                    WHERE expires > UNIX_TIMESTAMP()")" "0 0" \
   "every lease released (204), none listed"
sampler "$tmp/leases.samples2" &
sampler_pid=$!
bg_pids+=("$sampler_pid")
race 2 20 60
sleep 0.5
touch "$tmp/leases.samples2.stop"
wait "$sampler_pid" 2>/dev/null
check_race 2
m1=$(sample_max "$tmp/leases.samples2" p1)
m2=$(sample_max "$tmp/leases.samples2" pool2)
[ "$m1" -le 1 ] && [ "$m2" -le 2 ]
okif $? "race 2 listing over time: max $m1 live in p1, $m2 in pool2"

# Expiry: a 4 s lease frees the slot by itself (4 s: on a loaded machine
# the next request may take a second or two).
req proxy A POST /v1/pools/exp/leases '{"host":"e1","ttl":4}'
e_code=$code
e_lease=$(jqb .lease 2>/dev/null)
e_exp=$(jqb .expires 2>/dev/null)
now=$(date +%s)
[ "$e_code" = 201 ] && [ $((e_exp - now)) -ge 3 ] \
    && [ $((e_exp - now)) -le 4 ] 2>/dev/null
okif $? "a lease with ttl 4 in pool exp: 201, expires = now + 4"
req proxy B POST /v1/pools/exp/leases '{"host":"e2","ttl":30}'
ra=$(header Retry-After)
[ "$code" = 409 ] && [ "${ra:-0}" -ge 1 ] && [ "${ra:-9}" -le 4 ]
okif $? "e2 via B while it lives: 409, Retry-After $ra (1..4)"
while [ "$(date +%s)" -lt "${e_exp:-0}" ]; do
    sleep 0.2
done
sleep 0.1
req proxy B POST /v1/pools/exp/leases '{"host":"e2","ttl":30}'
is "$code" 201 "after expiry e2 gets the slot via B"
req proxy A DELETE "/v1/pools/exp/leases/$e_lease"
is "$code" 404 "the expired lease cannot be released any more: 404"
is "$(sql "SELECT host FROM cs_leases WHERE pool = 'exp'
          AND expires > UNIX_TIMESTAMP()")" e2 "pool exp lists only e2"

# --- 6. PUTs of one name at once: 201 or 200 -------------------------------

# put_race DIR NAME N MIX: N requests at once from one curl, split over A
# and B; MIX 1: each a PUT or a DELETE at random, else all PUTs.  Lines
# "code method file" in DIR/codes, bodies in DIR/<i>.
put_race() {
    local dir=$1 name=$2 n=$3 mix=$4 i m port
    mkdir -p "$dir"
    : >"$dir/curl.cfg"
    for i in $(seq 1 "$n"); do
        if [ $((i % 2)) = 0 ]; then port=$port_A; else port=$port_B; fi
        m=PUT
        [ "$mix" = 1 ] && [ $((RANDOM % 2)) = 0 ] && m=DELETE
        put_n=$((put_n + 1))
        cat >>"$dir/curl.cfg" <<EOF
url = "https://127.0.0.1:$port/v1/domains/$name"
request = "$m"
cacert = "$pki/clients-ca.crt"
cert = "$pki/admin.crt"
key = "$pki/admin.key"
noproxy = "*"
max-time = 60
silent
show-error
output = "$dir/$m.$put_n"
write-out = "%{http_code} $m %{filename_effective}\n"
next
EOF
    done
    sed -i '$d' "$dir/curl.cfg"
    curl --no-progress-meter --parallel --parallel-immediate \
        --parallel-max 100 -K "$dir/curl.cfg" >>"$dir/codes" \
        2>>"$dir/curl.err"
}

put_n=0
d_new=race-$$.example
put_race "$tmp/put1" "$d_new" 8 0
is "$(awk '{ print $1 }' "$tmp/put1/codes" | sort | uniq -c | xargs)" \
   "7 200 1 201" "8 PUTs of a new name at once via A and B: one 201," \
   "seven 200"

d_mix=race-mix-$$.example
for round in 1 2 3 4 5 6; do
    put_race "$tmp/put2" "$d_mix" 16 1
done
# "seq method code" of every answer, in seq order (a DELETE's 404 wrote
# nothing: seq 0); then the writes replayed in that order.
while read -r code m f; do
    echo "$(jq -r '.seq // 0' "$f" 2>/dev/null || echo 0) $m $code"
done <"$tmp/put2/codes" | sort -n >"$tmp/put2/order"
bad=$(awk '$3 != 200 && $3 != 201 && !($2 == "DELETE" && $3 == 404)' \
      "$tmp/put2/order" | wc -l)
wrong=$(awk '$1 > 0 {
        if ($2 == "PUT") { if (($3 == 201) == exists) w++; exists = 1 }
        else { if (!exists) w++; exists = 0 }
        if ($1 == last) w++; last = $1
    } END { print w + 0 }' "$tmp/put2/order")
nw=$(awk '$1 > 0' "$tmp/put2/order" | wc -l)
[ "$bad" = 0 ] && [ "$wrong" = 0 ] && [ "$nw" -gt 0 ]
okif $? "96 PUTs and DELETEs of one name, 16 at once via A and B: in seq" \
     "order each of the $nw writes answered as the name then was ($wrong" \
     "wrong, $bad neither 200/201 nor a DELETE's 404)"

# --- 7. MariaDB killed mid-issuance ----------------------------------------

# Writers on A and B issue new names (local CA) until told to stop, while
# the database server is SIGKILLed, down for 2 s and restarted on its data
# directory and port (httpd keeps running).  Every write logs "start_ns
# end_ns code inst domain seq serial status": the JSON body's status ("-"
# if the body is not JSON with a numeric status).
log_lines() { # INST: lines in its error_log now
    wc -l <"$tmp/$1/logs/error_log"
}
kill_log0_A=$(log_lines A)
kill_log0_B=$(log_lines B)
kwriter() { # name inst
    local name=$1 inst=$2 i=0 d t0 st
    local log=$tmp/kill.writes.$name
    : >"$log"
    while [ ! -e "$tmp/kill.stop" ]; do
        sleep 0.1
        i=$((i + 1))
        d=k$i.${name,,}.kill-test.example
        t0=$(date +%s%N)
        req admin "$inst" PUT "/v1/domains/$d"
        st=$(jq -r 'if (.status|type) == "number" and (.error|type) ==
                       "string" then .status else "-" end' \
             <<<"$body" 2>/dev/null)
        echo "$t0 $(date +%s%N) $code $inst $d $(jqb '.seq // "-"' \
              2>/dev/null || echo -) $(jqb '.serial // "-"' 2>/dev/null \
              || echo -) ${st:--}" >>"$log"
    done
}
rm -f "$tmp/kill.stop"
kw_pids=()
for w in A1:A B1:B; do
    kwriter "${w%:*}" "${w#*:}" &
    kw_pids+=($!)
done
bg_pids+=("${kw_pids[@]}")
# writes_since NS: writes started after NS and finished (all writers)
writes_since() {
    cat "$tmp"/kill.writes.* 2>/dev/null | awk -v t="$1" '$1 > t' | wc -l
}
# Until 4 writes are done (a loaded machine is slow), then the kill.
for _ in $(seq 1 300); do
    [ "$(writes_since 0)" -lt 4 ] || break
    sleep 0.1
done
db_pid=$(cat "$dbdir/pid" 2>/dev/null)
t_kill=$(date +%s%N)
kill -KILL "$db_pid" 2>/dev/null
killed=$?
for _ in $(seq 1 50); do
    kill -0 "$db_pid" 2>/dev/null || break
    sleep 0.1
done
t_dead=$(date +%s%N)
sleep 2
t_restart=$(date +%s%N)
"$top/t/db/mariadb.sh" restart "$dbdir" >"$tmp/kill.params" \
    2>"$tmp/kill.restart.log"
restarted=$?
t_up=$(date +%s%N)
# Until 4 writes started after the restart are done (at most 60 s).
for _ in $(seq 1 600); do
    [ "$(writes_since "$t_up")" -lt 4 ] || break
    sleep 0.1
done
touch "$tmp/kill.stop"
wait "${kw_pids[@]}" 2>/dev/null
[ $killed = 0 ] && ! kill -0 "$db_pid" 2>/dev/null
okif $? "mariadbd (pid $db_pid) SIGKILLed while 2 writers issued via A" \
     "and B"
[ $restarted = 0 ] && [ "$(cat "$tmp/kill.params")" = "$params" ]
okif $? "MariaDB restarted on the same data directory and port in" \
     "$(((t_up - t_restart) / 1000000)) ms"
[ $restarted = 0 ] || diag "$(cat "$tmp/kill.restart.log")"

cat "$tmp"/kill.writes.* | sort -n >"$tmp/kill.writes"
# Writes that overlapped the outage (from the kill to the server's answer
# after the restart) may fail; the others must not.
awk -v k="$t_kill" -v u="$t_up" \
    '{ print ($2 < k ? "before" : $1 > u ? "after" : "outage"), $0 }' \
    "$tmp/kill.writes" >"$tmp/kill.phased"
n_all=$(wc -l <"$tmp/kill.phased")
n_ok=$(awk '$4 ~ /^2/' "$tmp/kill.phased" | wc -l)
n_5xx=$(awk '$4 ~ /^5/' "$tmp/kill.phased" | wc -l)
diag "kill: $n_all PUTs, $n_ok 2xx, $n_5xx 5xx;" \
     "$(awk '{ print $1 }' "$tmp/kill.phased" | sort | uniq -c | xargs);" \
     "down $(((t_up - t_dead) / 1000000)) ms"
bad=$(awk '$1 != "outage" && $4 != 201' "$tmp/kill.phased" | head -3)
n_before=$(awk '$1 == "before"' "$tmp/kill.phased" | wc -l)
n_after=$(awk '$1 == "after"' "$tmp/kill.phased" | wc -l)
[ -z "$bad" ] && [ "$n_before" -ge 4 ] && [ "$n_after" -ge 4 ]
okif $? "every PUT before the kill ($n_before) and after MariaDB answered" \
     "again ($n_after, without restarting httpd): 201"
[ -z "$bad" ] || diag "$bad"
bad=$(awk '$1 == "outage" && $4 != 201 &&
           !($4 ~ /^5[0-9][0-9]$/ && $9 == $4)' "$tmp/kill.phased" | head -3)
n_out5=$(awk '$1 == "outage" && $4 ~ /^5/' "$tmp/kill.phased" | wc -l)
[ -z "$bad" ] && [ "$n_out5" -ge 1 ]
okif $? "PUTs during the outage: $n_out5 failed, each with a 5xx and a" \
     "JSON error naming that status (no 000, no 4xx)"
[ -z "$bad" ] || diag "$bad"

# After the restart: every 2xx PUT is stored with the serial it answered.
lost=
while read -r _ _ _ c inst d s serial _; do
    [ "$c" = 201 ] || continue
    req admin "$(other "$inst")" GET "/v1/domains/$d"
    got=$(jqb '"\(.state) \(.serial) \(.seq)"' 2>/dev/null)
    [ "$code $got" = "200 active $serial $s" ] \
        || lost="$lost $d:$code:$got/want:$serial:$s"
done <"$tmp/kill.phased"
is "${lost# }" "" "every one of the $n_ok PUTs answered 201 is stored" \
   "with the serial and seq it answered (GET via the other instance)"

# The feed from 0, paged via A and B: seqs strictly increasing, and the
# kill-test changes are exactly the 201s plus, at most once each, names
# whose PUT failed but landed (then complete: below).
if page_all 50 0 "$tmp/kill.feed"; then
    ok "after the restart the whole feed pages via A and B ($npages" \
       "pages): seqs strictly increasing, next and more right"
else
    notok "after the restart the whole feed pages via A and B"
    diag "$page_err"
fi
awk '$2 ~ /\.kill-test\.example$/ { print $1, $2, $4 }' "$tmp/kill.feed" \
    >"$tmp/kill.feed.k"
awk '$4 == 201 { print $7, $6, $8 }' "$tmp/kill.phased" | sort -n \
    >"$tmp/kill.want.k"
dups=$(awk '{ print $2 }' "$tmp/kill.feed.k" | sort | uniq -d | head -3)
missing=$(comm -23 <(sort "$tmp/kill.want.k") <(sort "$tmp/kill.feed.k") \
          | head -3)
extra=$(comm -13 <(sort "$tmp/kill.want.k") <(sort "$tmp/kill.feed.k"))
landed_bad=
n_landed=0
while read -r s d serial; do
    [ -n "$d" ] || continue
    n_landed=$((n_landed + 1))
    awk -v d="$d" '$6 == d && $4 != 201 { f = 1 } END { exit !f }' \
        "$tmp/kill.phased" || landed_bad="$landed_bad $d(no failed PUT)"
done <<<"$extra"
[ -z "$dups" ] && [ -z "$missing" ] && [ -z "$landed_bad" ]
okif $? "the feed has each 201 PUT's change exactly once with its seq and" \
     "serial ($(wc -l <"$tmp/kill.want.k") changes), and $n_landed more of" \
     "failed PUTs, once each"
[ -z "$dups$missing$landed_bad" ] \
    || diag "duplicates: $dups; missing: $missing; other: $landed_bad"

# A name whose PUT failed is absent or complete: active, its bundle's key
# opens with wrap1 to the certificate's key, its change in the feed.
# file_opens FILE WRAP: the bundle (JSON) in FILE has a key_cms that opens
# with $pki/WRAP.key to the key of its certificate
file_opens() {
    # One name, taken before the pipelines: each part of a pipeline and
    # each $(...) is a subshell with a $BASHPID of its own.
    local k1 k2 f=$tmp/bo.$BASHPID
    jq -r .key_cms "$1" 2>/dev/null | base64 -d >"$f.der" 2>/dev/null
    jq -r .chain_pem "$1" >"$f.pem" 2>/dev/null
    k1=$(openssl cms -decrypt -inform DER -in "$f.der" \
         -recip "$pki/$2.crt" -inkey "$pki/$2.key" 2>/dev/null \
         | openssl pkey -pubout 2>/dev/null)
    k2=$(openssl x509 -in "$f.pem" -noout -pubkey 2>/dev/null)
    rm -f "$f.der" "$f.pem"
    [ -n "$k1" ] && [ "$k1" = "$k2" ]
}
bundle_opens() { # INST DOMAIN WRAP: GET its bundle, 200, file_opens WRAP
    req proxy "$1" GET "/v1/bundles/$2"
    [ "$code" = 200 ] && file_opens "$last_rf.body" "$3"
}
half=
n_failed=0
n_absent=0
while read -r _ _ _ c inst d _; do
    [ "$c" = 201 ] && continue
    n_failed=$((n_failed + 1))
    req admin "$inst" GET "/v1/domains/$d"
    if [ "$code" = 404 ]; then
        req proxy "$inst" GET "/v1/bundles/$d"
        [ "$code" = 404 ] || half="$half $d:bundle:$code"
        grep -q " $d " "$tmp/kill.feed.k" && half="$half $d:in-feed"
        n_absent=$((n_absent + 1))
        continue
    fi
    serial=$(jqb .serial 2>/dev/null)
    [ "$code" = 200 ] && [ "$(jqb .state 2>/dev/null)" = active ] \
        && grep -q " $d $serial\$" "$tmp/kill.feed.k" \
        && bundle_opens "$inst" "$d" wrap1 \
        || half="$half $d:$code:$serial"
done <"$tmp/kill.phased"
is "${half# }" "" "each of the $n_failed names whose PUT failed is absent" \
   "($n_absent: 404, no bundle, not in the feed) or complete (active, in" \
   "the feed with its serial, the bundle's key opens with wrap1)"

# mod_dbd reconnected: one more PUT through each instance.
new_ok=1
for inst in A B; do
    req admin "$inst" PUT "/v1/domains/after.${inst,,}.kill-test.example"
    if [ "$code" != 201 ] \
       || ! bundle_opens "$(other "$inst")" \
            "after.${inst,,}.kill-test.example" wrap1; then
        new_ok=0
        diag "PUT via $inst after the restart: $code $body"
    fi
done
check "after the restart, new PUTs via A and B succeed (201, the bundle" \
      "opens) with the same httpd processes" [ $new_ok = 1 ]
kill_log1_A=$(log_lines A)
kill_log1_B=$(log_lines B)

# --- 8. Wrapping key rotation under load ------------------------------------

# The documented rotation (docs/mod_certservice.md,
# CertServiceWrapCertificate) on both instances while 4 clients fetch
# bundles of every domain at random: wrap2 added beside wrap1 (graceful
# restart), every domain re-issued (PUT, alternately via A and B), wrap1
# removed (graceful restart).  Each fetch logs "start_ns end_ns code
# file"; its bundle must open with wrap1 or wrap2, and after the
# re-issues with wrap2.
req admin A GET "/v1/domains?limit=1000"
jqb '.domains[].domain' >"$tmp/rot.domains" 2>/dev/null
mapfile -t rot_domains <"$tmp/rot.domains"
n_rot=${#rot_domains[@]}
mkdir -p "$tmp/rot"
rfetcher() { # name inst
    local name=$1 inst=$2 i=0 f t0 c
    local log=$tmp/rot.fetches.$name
    : >"$log"
    while [ ! -e "$tmp/rot.stop" ]; do
        i=$((i + 1))
        f=$tmp/rot/$name.$i.json
        t0=$(date +%s%N)
        c=$(cs_curl proxy "$(port_of "$inst")" \
            "/v1/bundles/${rot_domains[RANDOM % n_rot]}" -o "$f" \
            -w '%{http_code}' 2>/dev/null) || c=000
        echo "$t0 $(date +%s%N) $c $f" >>"$log"
    done
}
# reload INST WRAPS... (wrap1, wrap2): its CertServiceWrapCertificate
# lines set to WRAPS, then a graceful restart
reload() {
    local inst=$1 conf=$tmp/$1/httpd.conf w lines=
    shift
    for w in "$@"; do
        lines="$lines    CertServiceWrapCertificate \"$pki/$w.crt\"\n"
    done
    awk -v l="$lines" '/^ *CertServiceWrapCertificate / {
            if (!done) printf "%s", l; done = 1; next } { print }' \
        "$conf" | sed 's/\\n/\n/g' >"$conf.new" && mv "$conf.new" "$conf"
    "$HTTPD" -f "$conf" -k graceful >>"$tmp/$inst/start.log" 2>&1
}
# took INST WANT NOT: the new generation serves: 3 PUTs in a row of a
# probe name via INST make an envelope that opens with WANT and not with
# NOT (up to 10 s)
took() {
    local inst=$1 n=0 i
    for i in $(seq 1 100); do
        req admin "$inst" PUT "/v1/domains/probe.${inst,,}.rot-test.example"
        if bundle_opens "$inst" "probe.${inst,,}.rot-test.example" "$2" \
           && ! file_opens "$last_rf.body" "$3"; then
            n=$((n + 1))
            [ $n -lt 3 ] || return 0
        else
            n=0
            sleep 0.1
        fi
    done
    return 1
}
rm -f "$tmp/rot.stop"
rf_pids=()
for w in A1:A A2:A B1:B B2:B; do
    rfetcher "${w%:*}" "${w#*:}" &
    rf_pids+=($!)
done
bg_pids+=("${rf_pids[@]}")
t_rot0=$(date +%s%N)
sleep 1
added_ok=1
for inst in A B; do
    reload "$inst" wrap1 wrap2 || added_ok=0
done
for inst in A B; do
    took "$inst" wrap2 nowrap || added_ok=0
done
check "wrap2 added beside wrap1 on A and B (graceful restart), while 4" \
      "clients fetch bundles: new envelopes open with wrap2" [ $added_ok = 1 ]
# Every domain, the probes too, re-issued: 4 at once, alternately via A
# and B.
req admin A GET "/v1/domains?limit=1000"
jqb '.domains[].domain' >"$tmp/rot.all" 2>/dev/null
: >"$tmp/rot.put.cfg"
i=0
while read -r d; do
    i=$((i + 1))
    if [ $((i % 2)) = 0 ]; then port=$port_A; else port=$port_B; fi
    [ $i = 1 ] || echo next >>"$tmp/rot.put.cfg"
    cat >>"$tmp/rot.put.cfg" <<EOC
url = "https://127.0.0.1:$port/v1/domains/$d"
request = "PUT"
cacert = "$pki/clients-ca.crt"
cert = "$pki/admin.crt"
key = "$pki/admin.key"
noproxy = "*"
max-time = 60
silent
show-error
output = "/dev/null"
write-out = "%{http_code} $d\n"
EOC
done <"$tmp/rot.all"
curl --no-progress-meter --parallel --parallel-max 4 -K "$tmp/rot.put.cfg" \
    >"$tmp/rot.put.codes" 2>"$tmp/rot.put.err"
t_reissued=$(date +%s%N)
n_all=$(wc -l <"$tmp/rot.all")
bad=$(awk '$1 != 200' "$tmp/rot.put.codes" | head -3)
[ -z "$bad" ] && [ "$(wc -l <"$tmp/rot.put.codes")" = "$n_all" ]
okif $? "all $n_all domains re-issued during the fetches (PUT: 200 each)"
[ -z "$bad" ] || diag "$bad $(head -3 "$tmp/rot.put.err")"
retired_ok=1
for inst in A B; do
    reload "$inst" wrap2 || retired_ok=0
done
for inst in A B; do
    took "$inst" wrap2 wrap1 || retired_ok=0
done
check "wrap1 removed on A and B (graceful restart): new envelopes open" \
      "with wrap2 only" [ $retired_ok = 1 ]
sleep 1
touch "$tmp/rot.stop"
wait "${rf_pids[@]}" 2>/dev/null
t_rot1=$(date +%s%N)

cat "$tmp"/rot.fetches.* | sort -n >"$tmp/rot.fetches"
n_f=$(wc -l <"$tmp/rot.fetches")
n_during=$(awk -v a="$t_rot0" -v b="$t_reissued" '$1 > a && $2 < b' \
           "$tmp/rot.fetches" | wc -l)
bad=$(awk '$3 != 200' "$tmp/rot.fetches" | head -3)
[ -z "$bad" ] && [ "$n_during" -ge 20 ]
okif $? "$n_f fetches of $n_rot domains' bundles via A and B during the" \
     "rotation ($n_during before the re-issues ended): all 200"
[ -z "$bad" ] || diag "$bad"
# Each distinct envelope fetched opens with wrap1 and/or wrap2 (to its
# certificate's key); fetches started after the re-issues all with wrap2.
jq -r '[input_filename, .key_cms] | @tsv' "$tmp"/rot/*.json \
    >"$tmp/rot.envs" 2>/dev/null
: >"$tmp/rot.opens"
n_env=0
while read -r f _; do
    n_env=$((n_env + 1))
    o=
    file_opens "$f" wrap1 && o=${o}1
    file_opens "$f" wrap2 && o=${o}2
    echo "$f ${o:-0}" >>"$tmp/rot.opens"
done < <(awk -F'\t' '!seen[$2]++' "$tmp/rot.envs")
# opens per fetch: "start end code file how" (how: 1, 2, 12, 0 or none)
awk 'NR == FNR { how[$1] = $2; next }
     FILENAME ~ /rot[.]envs$/ { env[$1] = $2
                                if ($1 in how) rep[$2] = how[$1]; next }
     { print $0, ($4 in env) ? rep[env[$4]] : "none" }' \
    "$tmp/rot.opens" "$tmp/rot.envs" "$tmp/rot.fetches" >"$tmp/rot.how"
bad=$(awk '$3 == 200 && $5 !~ /^(1|2|12)$/' "$tmp/rot.how" | head -3)
is "$bad" "" "each of the $n_env distinct envelopes fetched opens with" \
   "wrap1 or wrap2 to its certificate's key"
n_late=$(awk -v t="$t_reissued" '$1 > t' "$tmp/rot.how" | wc -l)
bad=$(awk -v t="$t_reissued" '$1 > t && $5 !~ /2/' "$tmp/rot.how" | head -3)
[ -z "$bad" ] && [ "$n_late" -ge 4 ]
okif $? "the $n_late fetches started after the re-issues: each bundle" \
     "opens with wrap2"
[ -z "$bad" ] || diag "$bad"
# At the end: every domain's bundle, by batch (POST /v1/bundles, 100 at
# a time) via A and via B: the same envelopes, each opening with wrap2
# (what was fetched already is known to, else opened now).
final_bad=
for inst in A B; do
    : >"$tmp/rot.final.$inst"
    while read -r chunk; do
        req proxy2 "$inst" POST /v1/bundles "$chunk"
        [ "$code" = 200 ] || final_bad="$final_bad batch@$inst:$code"
        jqb -c '.bundles[]' >>"$tmp/rot.final.$inst" 2>/dev/null
    done < <(jq -R . "$tmp/rot.all" | jq -cs '_nwise(100) | {domains: .}')
done
[ "$(jq -r .key_cms "$tmp/rot.final.A" | sort)" = \
  "$(jq -r .key_cms "$tmp/rot.final.B" | sort)" ] \
    || final_bad="$final_bad A-and-B-differ"
declare -A how_of
while read -r key how; do
    how_of[$key]=$how
done < <(awk 'NR == FNR { how[$1] = $2; next }
              ($1 in how) && !seen[$2]++ { print $2, how[$1] }' \
         "$tmp/rot.opens" "$tmp/rot.envs")
n_final=0
n_new=0
while read -r line; do
    n_final=$((n_final + 1))
    key=$(jq -r .key_cms <<<"$line")
    if [ -z "${how_of[$key]:-}" ]; then
        n_new=$((n_new + 1))
        printf '%s\n' "$line" >"$tmp/rot.final.one"
        how_of[$key]=0
        file_opens "$tmp/rot.final.one" wrap2 && how_of[$key]=2
    fi
    case ${how_of[$key]} in
        *2*) ;;
        *) final_bad="$final_bad $(jq -r .domain <<<"$line")" ;;
    esac
done <"$tmp/rot.final.A"
[ "$n_final" = "$n_all" ] || final_bad="$final_bad $n_final-of-$n_all"
is "${final_bad# }" "" "at the end every bundle ($n_all domains, by batch" \
   "via A and via B, $n_new not fetched before) opens with wrap2"
diag "rotation under load: $(((t_rot1 - t_rot0) / 1000000)) ms"

# --- 9. Logs ----------------------------------------------------------------

crash=$(grep -hE 'exit signal|Segmentation|AH00052' \
        "$tmp"/A/logs/error_log "$tmp"/B/logs/error_log | head -3)
is "$crash" "" "no child process crashed (error logs, the MariaDB outage" \
   "and the graceful restarts included)"
# The outage (section 7) logs errors; nothing else may.
n_out_err=0
err5=
for inst in A B; do
    if [ $inst = A ]; then a=$kill_log0_A; b=$kill_log1_A
    else a=$kill_log0_B; b=$kill_log1_B; fi
    n=$(awk -v a="$a" -v b="$b" 'NR > a && NR <= b' \
        "$tmp/$inst/logs/error_log" | grep -c 'certservice:error')
    n_out_err=$((n_out_err + n))
    err5="$err5$(awk -v a="$a" -v b="$b" 'NR <= a || NR > b' \
        "$tmp/$inst/logs/error_log" | grep 'certservice:error' | head -3)"
done
is "$err5" "" "no 5xx error logged by mod_certservice outside the MariaDB" \
   "outage ($n_out_err logged during it)"

echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
