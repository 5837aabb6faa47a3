#!/bin/bash
#
# bench/certservice_1m.sh: CertService with a million domains, on SQLite
# and on MariaDB.
#
# For each backend: one httpd with mod_certservice (local CA) on a fresh
# database, then
#
#   setup    PUT /v1/domains for $ISSUE new domains (real issuance: key
#            pair, certificate from CertServiceLocalCA, key sealed to the
#            RSA-2048 wrapping certificate, one transaction each)
#   fill     the database brought to $N domains by SQL, each new row a
#            copy of an issued one's certificate and sealed key under a new
#            name, with its change in the feed and an ACME job whose renewal
#            time (next_at) lies 1 to 61 days ahead (as 1M renewals spread
#            over their certificates' lives would), deadline 7 days later.
#            Issuing 1M through the API takes about an hour per backend at
#            the measured rate on this machine; the copies give the tables
#            the same shape and row sizes.
#   feed     GET /v1/changes from 0 to the end, limit $FEED_LIMIT, one
#            kept-alive connection -> seconds, changes/s
#   bundles  POST /v1/bundles for $BUNDLES random names among the N, in
#            batches of $BATCH -> bundles/s
#   list     GET /v1/domains?limit=1000, $LIST_PAGES pages from the start
#            and as many from the middle (after=) -> ms a page
#   issue    $ISSUE_MEASURE more PUTs with N domains stored -> /s
#   scan     bench/cs_scan_bench: the renewal scheduler's query with 0,
#            100 and 10,000 jobs due (its store call, and the statement it
#            ran before), the query plans, the store's listing and feed
#            pages
#   size     bytes of the database per domain (SQLite: the file after a
#            checkpoint; MariaDB: data + indexes of the cs_ tables)
#
# Usage: LOCK=/tmp/bench.lock bench/certservice_1m.sh   (build first:
#        make; it builds bench/cs_scan_bench).  With LOCK, each measured
#        phase runs under flock LOCK (one benchmark at a time on a shared
#        machine); filling the database does not wait for it.
# Environment [defaults]: N [1000000], ISSUE [2000], ISSUE_MEASURE [1000],
#   BUNDLES [20000],
#   BATCH [100], FEED_LIMIT [1000], LIST_PAGES [50], BACKENDS
#   [sqlite mariadb], MARIADB_N (N for MariaDB) [N],
#   CERTSUITE_KEEP=1 keeps the directory.
#
set -eu
export LC_ALL=C

N=${N:-1000000}
MARIADB_N=${MARIADB_N:-$N}
ISSUE=${ISSUE:-2000}
ISSUE_MEASURE=${ISSUE_MEASURE:-1000}
BUNDLES=${BUNDLES:-20000}
BATCH=${BATCH:-100}
FEED_LIMIT=${FEED_LIMIT:-1000}
LIST_PAGES=${LIST_PAGES:-50}
BACKENDS=${BACKENDS:-sqlite mariadb}

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$top/t/lib/certsuite.sh"

cs_need perl sqlite3 -- dbd || die "$need_why"
CS_MODULE=${CS_MODULE:-$top/mod_certservice/.libs/mod_certservice.so}
[ -f "$CS_MODULE" ] || die "$CS_MODULE is not built (run make)"
make -C "$top" bench/cs_scan_bench >/dev/null || die "cannot build cs_scan_bench"
MYSQL=$(find_prog mariadb mysql || true)

cs_tmpdir cs1m || die "mktemp failed"
pki=$tmp/pki
cs_run_user
[ -z "$run_user" ] || chmod 755 "$tmp"
on_cleanup() {
    stop_httpd "$tmp/httpd"
    [ ! -d "$tmp/db" ] || "$top/t/db/mariadb.sh" stop "$tmp/db" >/dev/null 2>&1
}
"$top/t/certservice/make-pki.sh" "$pki" >/dev/null 2>&1 || die "make-pki.sh"
chmod 755 "$pki"

cat >"$tmp/client.pl" <<'PERL'
use strict;
use warnings;
use HTTP::Tiny;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);
my ($mode, $port, $pki, @a) = @ARGV;
my $base = "https://127.0.0.1:$port";
sub ua {
    my $who = shift;
    my $ua = HTTP::Tiny->new(keep_alive => 1, timeout => 300, verify_SSL => 1,
        SSL_options => { SSL_ca_file => "$pki/clients-ca.crt",
                         SSL_cert_file => "$pki/$who.crt",
                         SSL_key_file => "$pki/$who.key" });
    my $w = $ua->get("$base/v1/changes?limit=1");
    die "warm-up: $w->{status}\n" unless $w->{status} == 200;
    setsockopt($ua->{handle}{fh}, IPPROTO_TCP, TCP_NODELAY, 1);
    return $ua;
}
if ($mode eq 'issue') {     # issue FIRST LAST WORKERS: "seconds failed"
    my ($first, $n, $workers) = @a;
    my $t0 = time;
    my @kids;
    for my $w (0 .. $workers - 1) {
        my $pid = fork // die;
        if ($pid) { push @kids, $pid; next }
        my $ua = ua('admin');
        my $bad = 0;
        for (my $i = $first + $w; $i <= $n; $i += $workers) {
            my $r;
            for (1 .. 5) {
                $r = $ua->request('PUT', "$base/v1/domains/i$i.bench.example");
                last unless $r->{status} == 503;
            }
            $bad++ unless $r->{status} == 201 || $r->{status} == 200;
        }
        exit($bad ? 1 : 0);
    }
    my $bad = 0;
    for (@kids) { waitpid($_, 0); $bad++ if $? }
    printf "%.3f %d\n", time - $t0, $bad;
}
elsif ($mode eq 'feed') {           # feed LIMIT: "seconds changes requests"
    my ($limit) = @a;
    my $ua = ua('proxy');
    my ($since, $n, $req) = (0, 0, 0);
    my $t0 = time;
    while (1) {
        my $r = $ua->get("$base/v1/changes?since=$since&limit=$limit");
        $req++;
        die "feed: $r->{status}\n" unless $r->{status} == 200;
        my $k = () = $r->{content} =~ /"seq":/g;
        $n += $k;
        my ($next) = $r->{content} =~ /"next":(\d+)/;
        last if $r->{content} =~ /"more":false/;
        die "feed: stuck\n" if $next <= $since;
        $since = $next;
    }
    printf "%.3f %d %d\n", time - $t0, $n, $req;
}
elsif ($mode eq 'bundles') {        # bundles NAMESFILE BATCH: "s got req"
    my ($file, $batch) = @a;
    open(my $fh, '<', $file) or die;
    chomp(my @names = <$fh>);
    my $ua = ua('proxy');
    my ($got, $req) = (0, 0);
    my $t0 = time;
    while (my @b = splice(@names, 0, $batch)) {
        my $r = $ua->request('POST', "$base/v1/bundles", {
            content => '{"domains":[' . join(',', map { "\"$_\"" } @b) . ']}',
            headers => { 'Content-Type' => 'application/json' } });
        $req++;
        die "bundles: $r->{status}\n" unless $r->{status} == 200;
        $got += () = $r->{content} =~ /"key_cms":"/g;
    }
    printf "%.3f %d %d\n", time - $t0, $got, $req;
}
elsif ($mode eq 'list') {           # list AFTER PAGES: "seconds rows pages"
    my ($after, $pages) = @a;
    my $ua = ua('admin');
    my ($rows, $p) = (0, 0);
    my $t0 = time;
    for (1 .. $pages) {
        my $q = $after eq '-' ? '' : "&after=$after";
        my $r = $ua->get("$base/v1/domains?limit=1000$q");
        die "list: $r->{status} $r->{content}\n" unless $r->{status} == 200;
        $p++;
        $rows += () = $r->{content} =~ /"domain":/g;
        ($after) = $r->{content} =~ /"next":"([^"]+)"/ or last;
    }
    printf "%.3f %d %d\n", time - $t0, $rows, $p;
}
PERL

start_cs() { # DRIVER PARAMS
    local dir=$tmp/httpd
    rm -rf "$dir"
    mkdir -p "$dir/logs"
    port=$(pick_port)
    write_cs_conf "$dir" "$port" log=warn dbd="$1" db="$2" \
        server="KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60
Timeout 300" vhost="CertServiceMaxBatch $BATCH"
    "$HTTPD" -f "$dir/httpd.conf" -k start || die "httpd did not start"
    for _ in $(seq 1 100); do
        curl -s --noproxy '*' -o /dev/null --cacert "$pki/clients-ca.crt" \
            --cert "$pki/proxy.crt" --key "$pki/proxy.key" \
            "https://127.0.0.1:$port/v1/changes?limit=1" && return 0
        sleep 0.1
    done
    die "httpd does not answer"
}
# locked CMD...: CMD under flock $LOCK when set: the measurements wait for
# other benchmarks, the setup (filling the database) does not
locked() {
    if [ -n "${LOCK:-}" ]; then flock "$LOCK" "$@"; else "$@"; fi
}
client() {
    local m=$1
    shift
    locked perl "$tmp/client.pl" "$m" "$port" "$pki" "$@"
}

# fill_sql DIALECT N: SQL that adds N - ISSUE copies (see the header)
fill_sql() {
    local d=$1 n=$2 m now chunk from to
    m=$((n - ISSUE))
    now=$(date +%s)
    if [ "$d" = sqlite ]; then
        cat <<EOF
PRAGMA journal_mode = WAL;
CREATE TEMP TABLE src AS SELECT (ROW_NUMBER() OVER (ORDER BY name)) - 1 AS k,
  state, key_type, serial, not_before, not_after, chain_pem, key_cms
  FROM cs_domains;
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $m)
INSERT INTO cs_domains (name, state, key_type, seq, serial, not_before,
  not_after, chain_pem, key_cms, last_error, updated, actor)
SELECT 'f' || i || '.fill.bench.example', s.state, s.key_type, $ISSUE + i,
  s.serial, s.not_before, s.not_after, s.chain_pem, s.key_cms, NULL, $now,
  'fill' FROM c JOIN src s ON s.k = i % $ISSUE;
INSERT INTO cs_changes (seq, domain, op, serial, not_after, actor, at)
  SELECT seq, name, 'upsert', serial, not_after, 'fill', updated
  FROM cs_domains WHERE seq > $ISSUE;
UPDATE cs_counter SET value = (SELECT MAX(seq) FROM cs_changes)
  WHERE name = 'seq';
INSERT INTO cs_acme_jobs (domain, key_type, state, attempts, next_at, owner,
  lease_until, last_error, renew_at, updated, profile, prio)
  SELECT name, 'ec-p256', 'valid', 0, $now + 86400 + abs(random() % 5184000),
  NULL, 0, NULL, 0, $now, NULL, 0 FROM cs_domains;
UPDATE cs_acme_jobs SET prio = next_at + 604800, renew_at = next_at;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
ANALYZE;
EOF
        return
    fi
    cat <<EOF
CREATE TEMPORARY TABLE src (k BIGINT PRIMARY KEY) AS
  SELECT (ROW_NUMBER() OVER (ORDER BY name)) - 1 AS k, state, key_type,
  serial, not_before, not_after, chain_pem, key_cms FROM cs_domains;
EOF
    chunk=50000
    from=1
    while [ "$from" -le "$m" ]; do
        to=$((from + chunk - 1))
        [ "$to" -le "$m" ] || to=$m
        cat <<EOF
BEGIN;
INSERT INTO cs_domains (name, state, key_type, seq, serial, not_before,
  not_after, chain_pem, key_cms, last_error, updated, actor)
SELECT CONCAT('f', q.seq, '.fill.bench.example'), s.state, s.key_type,
  $ISSUE + q.seq, s.serial, s.not_before, s.not_after, s.chain_pem,
  s.key_cms, NULL, $now, 'fill'
  FROM seq_${from}_to_${to} q JOIN src s ON s.k = q.seq % $ISSUE;
INSERT INTO cs_changes (seq, domain, op, serial, not_after, actor, at)
  SELECT $ISSUE + q.seq, CONCAT('f', q.seq, '.fill.bench.example'), 'upsert',
  NULL, 0, 'fill', $now FROM seq_${from}_to_${to} q;
COMMIT;
EOF
        from=$((to + 1))
    done
    cat <<EOF
UPDATE cs_changes c JOIN cs_domains d ON d.name = c.domain
  SET c.serial = d.serial, c.not_after = d.not_after WHERE c.seq > $ISSUE;
UPDATE cs_counter SET value = (SELECT MAX(seq) FROM cs_changes)
  WHERE name = 'seq';
INSERT INTO cs_acme_jobs (domain, key_type, state, attempts, next_at, owner,
  lease_until, last_error, renew_at, updated, profile, prio)
  SELECT name, 'ec-p256', 'valid', 0, $now + 86400 + FLOOR(RAND() * 5184000),
  NULL, 0, NULL, 0, $now, NULL, 0 FROM cs_domains;
UPDATE cs_acme_jobs SET prio = next_at + 604800, renew_at = next_at;
ANALYZE TABLE cs_domains, cs_changes, cs_acme_jobs;
EOF
}

: >"$tmp/table"
bench() { # NAME DRIVER PARAMS N WORKERS SQLCMD...
    local name=$1 drv=$2 params=$3 n=$4 workers=$5 out s f b l1 l2 sz
    shift 5
    echo "== $name: $n domains" >&2
    start_cs "$drv" "$params"
    # Setup: the issued domains the copies are made of (not timed).
    out=$(perl "$tmp/client.pl" issue "$port" "$pki" 1 "$ISSUE" "$workers")
    read -r s f <<<"$out"
    [ "$f" = 0 ] || die "$name: issuing failed"
    echo "   setup: $ISSUE issued in $s s" >&2
    t0=$(date +%s.%N)
    fill_sql "$name" "$n" | "$@" >/dev/null || die "$name: fill failed"
    tf=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}')
    echo "   fill to $n: $tf s" >&2
    # The feed, then bundles for random names.
    out=$(client feed "$FEED_LIMIT")
    echo "   feed: $out (seconds changes requests)" >&2
    read -r f fn fr <<<"$out"
    [ "$fn" = "$n" ] || die "$name: feed has $fn changes, not $n"
    awk -v n="$n" -v k="$ISSUE" -v b="$BUNDLES" 'BEGIN { srand(7);
        for (j = 0; j < b; j++) { i = int(rand() * n) + 1;
          if (i <= k) print "i" i ".bench.example";
          else print "f" (i - k) ".fill.bench.example" } }' >"$tmp/names"
    out=$(client bundles "$tmp/names" "$BATCH")
    echo "   bundles: $out (seconds bundles requests)" >&2
    read -r b bn br <<<"$out"
    [ "$bn" = "$BUNDLES" ] || die "$name: $bn bundles, not $BUNDLES"
    out=$(client list - "$LIST_PAGES")
    echo "   list from the start: $out (seconds rows pages)" >&2
    l1=$(awk -v o="$out" 'BEGIN{split(o,a," "); printf "%.1f", a[1]*1000/a[3]}')
    out=$(client list "f$((n / 2)).fill.bench.example" "$LIST_PAGES")
    echo "   list from the middle: $out" >&2
    l2=$(awk -v o="$out" 'BEGIN{split(o,a," "); printf "%.1f", a[1]*1000/a[3]}')
    # Issuance with N domains in the database.
    out=$(client issue "$((ISSUE + 1))" "$((ISSUE + ISSUE_MEASURE))" \
          "$workers")
    read -r s fails <<<"$out"
    [ "$fails" = 0 ] || die "$name: issuing at $n failed"
    echo "   issue at $n: $ISSUE_MEASURE in $s s ($workers clients)" >&2
    stop_httpd "$tmp/httpd"
    locked "$top/bench/cs_scan_bench" "$drv" "$params" 9 | tee "$tmp/scan.$name" >&2
    if [ "$name" = sqlite ]; then
        sz=$(stat -c %s "$tmp/sqlite/cs.db")
    else
        sz=$(MYSQL_PWD=$(sed 's/.*pass=\([^;]*\).*/\1/' <<<"$params") \
             "$MYSQL" --no-defaults -h 127.0.0.1 \
             -P "$(sed 's/.*port=\([^;]*\).*/\1/' <<<"$params")" -u cs -N -B \
             -e "SELECT SUM(data_length + index_length) FROM
                 information_schema.tables WHERE table_schema =
                 'certservice' AND table_name LIKE 'cs\\_%'")
    fi
    echo "   size: $sz bytes, $((sz / n)) per domain" >&2
    sc() { awk -v k="$1" -v d="$2" '$1 == k && $2 == d { print $3 }' "$tmp/scan.$name"; }
    printf '| %s | %d | %.0f /s | %.1f s (%.0f /s) | %.0f /s | %s / %s ms | %s / %s / %s ms | %s / %s / %s ms | %d B |\n' \
        "$name" "$n" "$(awk -v n="$ISSUE_MEASURE" -v s="$s" 'BEGIN{print n/s}')" \
        "$f" "$(awk -v n="$n" -v f="$f" 'BEGIN{print n/f}')" \
        "$(awk -v n="$BUNDLES" -v b="$b" 'BEGIN{print n/b}')" "$l1" "$l2" \
        "$(sc due_prio 0)" "$(sc due_prio 100)" "$(sc due_prio 10000)" \
        "$(sc old_due_prio 0)" "$(sc old_due_prio 100)" \
        "$(sc old_due_prio 10000)" "$((sz / n))" >>"$tmp/table"
}

for be in $BACKENDS; do
    case $be in
    sqlite)
        mkdir -p "$tmp/sqlite"
        [ -z "$run_user" ] || chown "$run_user:$run_group" "$tmp/sqlite"
        bench sqlite sqlite3 "$tmp/sqlite/cs.db" "$N" 1 \
            sqlite3 -bail "$tmp/sqlite/cs.db"
        ;;
    mariadb)
        params=$(CS_MARIADB_PORT=${CS_MARIADB_PORT:-34406} \
                 "$top/t/db/mariadb.sh" start "$tmp/db") || die "mariadb.sh"
        pass=$(sed 's/.*pass=\([^;]*\).*/\1/' <<<"$params")
        dport=$(sed 's/.*port=\([^;]*\).*/\1/' <<<"$params")
        bench mariadb mysql "$params" "$MARIADB_N" 8 \
            env MYSQL_PWD="$pass" "$MYSQL" --no-defaults -h 127.0.0.1 \
            -P "$dport" -u cs certservice
        "$top/t/db/mariadb.sh" stop "$tmp/db" >/dev/null 2>&1 || true
        ;;
    esac
done

echo
echo "CertService at N domains ($ISSUE issued, the rest copies; issue:" \
     "$ISSUE_MEASURE more PUTs at N);" \
     "$(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| backend | N | issue | feed 0..end (limit $FEED_LIMIT) | bundles (POST x$BATCH, $BUNDLES random) | list page (start / middle) | scheduler due_prio (0 / 100 / 10k due) | before: old statement (0 / 100 / 10k due) | bytes per domain |"
echo "|---|---|---|---|---|---|---|---|---|"
cat "$tmp/table"
