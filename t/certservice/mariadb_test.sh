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
#                race, and expiry (ttl 2 s) freeing the slot
#   201 or 200   8 PUTs of one new name at once through A and B: exactly
#                one 201; then rounds of 16 PUTs and DELETEs of one name
#                at once: in the order of their seqs, each PUT answered
#                201 exactly when the name did not exist, each DELETE
#                that answered 200 followed a PUT
#   logs         no crashed child, no 5xx logged
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

# --- Prerequisites -----------------------------------------------------------

if ! find_prog mariadbd mysqld >/dev/null; then
    echo "SKIP: no MariaDB server installed (mariadbd/mysqld not found;" \
         "apt-get install mariadb-server)"
    exit 0
fi

cs_need curl jq openssl -- dbd || bail "$need_why"
MYSQL=$(find_prog mariadb mysql) || bail "no mariadb/mysql client"

CS_MODULE=${CS_MODULE:-$(cs_build_module certservice)}
[ -n "${CS_MODULE:-}" ] && [ -f "$CS_MODULE" ] \
    || bail "mod_certservice.so is not built (run make, or set CS_MODULE)"
CS_MODULE=$(cd "$(dirname "$CS_MODULE")" && pwd)/$(basename "$CS_MODULE")

# --- Test output -------------------------------------------------------------

tap_init
# check DESC... [ TEST ]: ok if the test succeeds; the description is
# every argument before the "[".
check() {
    local desc=()
    while [ $# -gt 0 ] && [ "$1" != "[" ]; do
        desc+=("$1")
        shift
    done
    if "$@"; then ok "${desc[*]}"; else notok "${desc[*]}"; fi
}

# --- Temporary directory and cleanup ---------------------------------------

cs_tmpdir cs-mariadb-test || bail "mktemp failed"
pki=$tmp/pki
dbdir=$tmp/db
bg_pids=()

on_cleanup() {
    stop_pids "${bg_pids[@]}"
    stop_httpd "$tmp/A"
    stop_httpd "$tmp/B"
    if [ -d "$dbdir" ]; then
        "$top/t/db/mariadb.sh" stop "$dbdir" >/dev/null 2>&1
    fi
}

# As root the httpd children run as nobody: they must reach the tree.
cs_run_user
if [ -n "$run_user" ]; then
    chmod 755 "$tmp"
fi

# --- PKI and database --------------------------------------------------------

if ! "$top/t/certservice/make-pki.sh" "$pki" >"$tmp/pki.log" 2>&1; then
    cat "$tmp/pki.log"
    bail "make-pki.sh failed"
fi
chmod 755 "$pki"

t0=$(date +%s)
if ! params=$("$top/t/db/mariadb.sh" start "$dbdir" 2>"$tmp/mariadb.log"); then
    cat "$tmp/mariadb.log"
    bail "t/db/mariadb.sh start failed"
fi
ok "private MariaDB started in $(($(date +%s) - t0)) s"
diag "apr_dbd params: $(sed 's/pass=[^;]*/pass=.../' <<<"$params")"

param() { # name: a value from the apr_dbd parameter string
    tr ';' '\n' <<<"$params" | sed -n "s/^$1=//p"
}
db_port=$(param port)
db_user=$(param user)
db_pass=$(param pass)
db_name=$(param dbname)
sql() { # SQL: rows, tab-separated, no header
    MYSQL_PWD=$db_pass "$MYSQL" --no-defaults -h 127.0.0.1 -P "$db_port" \
        -u "$db_user" -N -B "$db_name" -e "$1"
}

# --- httpd instances ---------------------------------------------------------

# write_conf NAME: $tmp/NAME/httpd.conf for instance NAME on a port picked
# now (port_NAME, listen_ports: start_httpd_retry): one of two CertServices
# on the MariaDB, local CA
write_conf() {
    local dir=$tmp/$1 port
    mkdir -p "$dir/logs"
    port=$(pick_port)
    printf -v "port_$1" %s "$port"
    listen_ports=$port
    write_cs_conf "$dir" "$port" log="warn ssl:warn certservice:info dbd:info" \
        dbd=mysql db="$params" server="<IfModule mpm_event_module>
    StartServers 2
    ServerLimit 4
    ThreadsPerChild 25
    MaxRequestWorkers 100
    MaxSpareThreads 100
</IfModule>
<IfModule mpm_worker_module>
    StartServers 2
    ServerLimit 4
    ThreadsPerChild 25
    MaxRequestWorkers 100
</IfModule>" vhost="CertServiceCertificateLifetime 240h
CertServiceMaxUnavailable 1
CertServiceMaxUnavailable 2 pool2
CertServiceLeaseMaxTTL 120
CertServiceMaxBatch 100"
}

port_A=
port_B=
port_of() { # INST (A or B): its port
    if [ "$1" = A ]; then echo "$port_A"; else echo "$port_B"; fi
}

for inst in A B; do
    start_httpd_retry "$tmp/$inst" write_conf "$inst" \
        || bail "httpd instance $inst did not start"
done
ok "httpd instances A (port $port_A) and B (port $port_B) started," \
   "both on one MariaDB"

# req WHO INST METHOD PATH [BODY]: cs_req on instance INST (A or B)
req() { cs_req "$1" "$(port_of "$2")" "${@:3}"; }
header() { # NAME: from the last req's response headers
    tr -d '\r' <"$last_rf.hdr" 2>/dev/null \
        | sed -n "s/^$1: *//Ip" | head -1
}
other() { if [ "$1" = A ]; then echo B; else echo A; fi; }

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

# Expiry: a 2 s lease frees the slot by itself.
req proxy A POST /v1/pools/exp/leases '{"host":"e1","ttl":2}'
e_code=$code
e_lease=$(jqb .lease 2>/dev/null)
e_exp=$(jqb .expires 2>/dev/null)
now=$(date +%s)
[ "$e_code" = 201 ] && [ $((e_exp - now)) -ge 1 ] \
    && [ $((e_exp - now)) -le 2 ] 2>/dev/null
okif $? "a lease with ttl 2 in pool exp: 201, expires = now + 2"
req proxy B POST /v1/pools/exp/leases '{"host":"e2","ttl":30}'
ra=$(header Retry-After)
[ "$code" = 409 ] && [ "${ra:-0}" -ge 1 ] && [ "${ra:-9}" -le 2 ]
okif $? "e2 via B while it lives: 409, Retry-After $ra (1..2)"
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

# --- 7. Logs ----------------------------------------------------------------

crash=$(grep -hE 'exit signal|Segmentation|AH00052' \
        "$tmp"/A/logs/error_log "$tmp"/B/logs/error_log | head -3)
is "$crash" "" "no child process crashed (error logs)"
err5=$(grep -h 'certservice:error' "$tmp"/A/logs/error_log \
       "$tmp"/B/logs/error_log | head -3)
is "$err5" "" "no 5xx error logged by mod_certservice"

echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
