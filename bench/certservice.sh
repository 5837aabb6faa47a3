#!/bin/bash
#
# bench/certservice.sh: CertService throughput on SQLite and on MariaDB.
#
# For each backend (DBDriver sqlite3, then DBDriver mysql on a private
# MariaDB from t/db/mariadb.sh), one Apache httpd with mod_ssl, mod_dbd and
# mod_certservice from the build tree, on 127.0.0.1, and a fresh database:
#
#   issue    PUT /v1/domains/DOMAIN for $DOMAINS domains, from
#            parallel client processes (see ISSUE_WORKERS) with a kept-alive connection
#            each.  Every PUT is a real issuance with the local CA: an
#            ECDSA P-256 key pair, a signed certificate, the key sealed as
#            CMS (RSA-OAEP to the wrapping certificate, AES-256-GCM), one
#            database transaction.  -> issued/s
#   feed     GET /v1/changes?since=..&limit=$FEED_LIMIT from seq 0 to the
#            end (more=false), one kept-alive connection.  -> changes/s
#   bundles  POST /v1/bundles {"domains":[$BATCH names]} for every domain,
#            one kept-alive connection.  -> bundles/s
#   single   GET /v1/bundles/DOMAIN for $SINGLE domains, one kept-alive
#            connection, for comparison with batching.  -> bundles/s
#
# feed, bundles and single run $ROUNDS times each; the median is printed.
# The client is Perl (HTTP::Tiny over IO::Socket::SSL, client certificates
# from t/certservice/make-pki.sh); it parses no JSON while timing (counts
# and next/more are taken with regular expressions), and every run is
# checked for completeness (every change, every bundle, nothing missing).
# Connection set-up (TLS handshake) is done before the clock starts.
#
# Usage: bench/certservice.sh           (build first: make)
#
# Environment (defaults in brackets):
#   DOMAINS        domains to issue per backend [10000]
#   ISSUE_WORKERS  parallel issuing clients [8]
#   SQLITE_ISSUE_WORKERS, MARIADB_ISSUE_WORKERS   per backend
#                  [1 for SQLite (see below), ISSUE_WORKERS for MariaDB]
#   FEED_LIMIT     page size of the change feed [1000]
#   BATCH          domains per POST /v1/bundles [100]
#   SINGLE         domains fetched one by one [2000]
#   ROUNDS         measured rounds of feed/bundles/single [5]
#   BACKENDS       any of sqlite mariadb [sqlite mariadb]
#   HTTPD, APXS    the httpd binary / apxs to find it and its modules
#   CS_MODULE      mod_certservice.so [the build tree's]
#   CERTSUITE_KEEP=1  keep the temporary directory
#
# Works as a normal user and as root (httpd's children then run as
# nobody).  Talks only to 127.0.0.1; everything is stopped on exit.
#
set -eu
export LC_ALL=C

DOMAINS=${DOMAINS:-10000}
ISSUE_WORKERS=${ISSUE_WORKERS:-8}
# SQLite: 1 by default.  Concurrent writers within one httpd process stall
# each other for PRAGMA busy_timeout (1 s) at a time: the apr_dbd sqlite3
# driver holds apr_dbd's process-wide mutex while SQLite's busy handler
# waits for a lock that another thread of the same process holds and
# cannot release without that mutex (see docs/benchmarks.md).
SQLITE_ISSUE_WORKERS=${SQLITE_ISSUE_WORKERS:-1}
MARIADB_ISSUE_WORKERS=${MARIADB_ISSUE_WORKERS:-$ISSUE_WORKERS}
FEED_LIMIT=${FEED_LIMIT:-1000}
BATCH=${BATCH:-100}
SINGLE=${SINGLE:-2000}
ROUNDS=${ROUNDS:-5}
BACKENDS=${BACKENDS:-sqlite mariadb}

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$top/t/lib/certsuite.sh"



cs_need perl -- dbd || die "$need_why"
perl -MIO::Socket::SSL -MHTTP::Tiny -MTime::HiRes -e 1 2>/dev/null \
    || die "perl needs IO::Socket::SSL (apt-get install libio-socket-ssl-perl)"
CS_MODULE=${CS_MODULE:-$top/mod_certservice/.libs/mod_certservice.so}
[ -f "$CS_MODULE" ] || die "$CS_MODULE is not built (run make)"
case " $BACKENDS " in
*" mariadb "*)
    find_prog mariadbd mysqld >/dev/null \
        || die "no mariadbd (apt-get install mariadb-server), or set" \
               "BACKENDS=sqlite" ;;
esac

cs_tmpdir csbench || die "mktemp failed"
pki=$tmp/pki
cs_run_user
if [ -n "$run_user" ]; then
    chmod 755 "$tmp"
fi

on_cleanup() {
    stop_httpd "$tmp/httpd"
    if [ -d "$tmp/db" ]; then
        "$top/t/db/mariadb.sh" stop "$tmp/db" >/dev/null 2>&1
    fi
}

"$top/t/certservice/make-pki.sh" "$pki" >/dev/null 2>&1 \
    || die "make-pki.sh failed"
chmod 755 "$pki"

# --- The client --------------------------------------------------------------

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
    return HTTP::Tiny->new(
        keep_alive => 1, timeout => 120, verify_SSL => 1,
        SSL_options => { SSL_ca_file => "$pki/clients-ca.crt",
                         SSL_cert_file => "$pki/$who.crt",
                         SSL_key_file => "$pki/$who.key" });
}
sub name { "b$_[0].bench.example" }

if ($mode eq 'issue') {
    # issue FIRST LAST WORKERS OUT: prints "seconds failed retried-503s"
    my ($first, $last, $workers, $out) = @a;
    my $t0 = time;
    my @kids;
    for my $w (0 .. $workers - 1) {
        my $pid = fork // die "fork: $!";
        if ($pid) { push @kids, $pid; next }
        my $ua = ua('admin');
        connected($ua);
        my ($bad, $retries) = (0, 0);
        for (my $i = $first + $w; $i <= $last; $i += $workers) {
            my $r;
            # 503 (the database stayed locked): the transaction was
            # rolled back; try again, a few times.
            for my $try (1 .. 5) {
                $r = $ua->request('PUT', "$base/v1/domains/" . name($i));
                last unless $r->{status} == 503;
                $retries++;
            }
            # 200: a retried PUT whose first answer was lost.
            if ($r->{status} != 201 && $r->{status} != 200) {
                $bad++;
                print STDERR "PUT ", name($i), ": $r->{status} ",
                    substr($r->{content}, 0, 200), "\n" if $bad <= 3;
            }
        }
        open(my $fh, '>', "$out.$w") or die "$out.$w: $!";
        print $fh "$bad $retries\n";
        close $fh;
        exit 0;
    }
    for (@kids) { waitpid($_, 0) }
    my $dt = time - $t0;
    my ($failed, $retried) = (0, 0);
    for my $w (0 .. $workers - 1) {
        open(my $fh, '<', "$out.$w") or die "$out.$w: a client died\n";
        my ($b, $r) = split ' ', scalar <$fh>;
        $failed += $b;
        $retried += $r;
    }
    printf "%.3f %d %d\n", $dt, $failed, $retried;
    exit 0;
}

# A connection, set up before the clock starts (TLS handshake with the
# client certificate), with TCP_NODELAY: HTTP::Tiny writes a POST's header
# and body separately, and Nagle + delayed ACK would add ~40 ms to each.
sub connected {
    my $ua = shift;
    my $w = $ua->get("$base/v1/changes?limit=1");
    die "warm-up: $w->{status} $w->{content}\n" unless $w->{status} == 200;
    setsockopt($ua->{handle}{fh}, IPPROTO_TCP, TCP_NODELAY, 1)
        or die "TCP_NODELAY: $!\n";
    return $ua->{handle};
}
my $ua = ua('proxy');
my $conn = connected($ua);
# Every measurement must have run on that one connection.
END {
    die "the connection was not kept alive\n"
        if $conn && (!$ua->{handle} || $ua->{handle} != $conn);
}

if ($mode eq 'feed') {
    # feed LIMIT EXPECTED: prints "seconds changes requests"
    my ($limit, $expected) = @a;
    my ($since, $n, $req, $prev) = (0, 0, 0, 0);
    my $t0 = time;
    while (1) {
        my $r = $ua->get("$base/v1/changes?since=$since&limit=$limit");
        $req++;
        die "feed: $r->{status} $r->{content}\n" unless $r->{status} == 200;
        my $c = $r->{content};
        my $k = () = $c =~ /"seq":/g;
        $n += $k;
        my ($next) = $c =~ /"next":(\d+)/ or die "feed: no next\n";
        my ($more) = $c =~ /"more":(true|false)/ or die "feed: no more\n";
        last if $more eq 'false';
        die "feed: next did not advance\n" if $next <= $since;
        $since = $next;
    }
    my $dt = time - $t0;
    die "feed: $n changes, expected $expected\n" if $n != $expected;
    printf "%.4f %d %d\n", $dt, $n, $req;
}
elsif ($mode eq 'bundles') {
    # bundles N BATCH: prints "seconds bundles requests"
    my ($n, $batch) = @a;
    my @bodies;
    for (my $i = 1; $i <= $n; $i += $batch) {
        my $j = $i + $batch - 1 > $n ? $n : $i + $batch - 1;
        push @bodies, '{"domains":[' . join(',', map { '"' . name($_) . '"' }
                                            $i .. $j) . ']}';
    }
    my ($got, $req) = (0, 0);
    my $t0 = time;
    for my $body (@bodies) {
        my $r = $ua->request('POST', "$base/v1/bundles", {
            content => $body,
            headers => { 'Content-Type' => 'application/json' } });
        $req++;
        die "bundles: $r->{status} " . substr($r->{content}, 0, 300) . "\n"
            unless $r->{status} == 200;
        my $k = () = $r->{content} =~ /"key_cms":"/g;
        $got += $k;
        die "bundles: missing some\n" unless $r->{content} =~ /"missing":\[\]/;
    }
    my $dt = time - $t0;
    die "bundles: $got bundles, expected $n\n" if $got != $n;
    printf "%.4f %d %d\n", $dt, $got, $req;
}
elsif ($mode eq 'single') {
    # single N: prints "seconds bundles requests"
    my ($n) = @a;
    my $got = 0;
    my $t0 = time;
    for my $i (1 .. $n) {
        my $r = $ua->get("$base/v1/bundles/" . name($i));
        die "single: $r->{status} $r->{content}\n" unless $r->{status} == 200;
        $got++ if $r->{content} =~ /"key_cms":"/;
    }
    my $dt = time - $t0;
    die "single: $got bundles, expected $n\n" if $got != $n;
    printf "%.4f %d %d\n", $dt, $got, $n;
}
else {
    die "unknown mode $mode\n";
}
PERL

# --- httpd -------------------------------------------------------------------

# start_cs DRIVER PARAMS: CertService on that database, on a free port
# (port), kept-alive connections without limit; until it answers
start_cs() {
    local dir=$tmp/httpd
    rm -rf "$dir"
    mkdir -p "$dir/logs"
    port=$(pick_port)
    write_cs_conf "$dir" "$port" log=warn dbd="$1" db="$2" \
        server="KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30" vhost="CertServiceMaxBatch $BATCH"
    "$HTTPD" -f "$dir/httpd.conf" -k start \
        || die "httpd did not start: $(tail -5 "$dir/logs/error_log")"
    for _ in $(seq 1 100); do
        if curl -s --noproxy '*' -o /dev/null --cacert "$pki/clients-ca.crt" \
                --cert "$pki/proxy.crt" --key "$pki/proxy.key" \
                "https://127.0.0.1:$port/v1/changes?limit=1"; then
            return 0
        fi
        sleep 0.1
    done
    die "httpd does not answer on $port"
}

# run MODE ARGS...: the client against the running httpd
run() {
    local mode=$1
    shift
    perl "$tmp/client.pl" "$mode" "$port" "$pki" "$@"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# --- Benchmark ------------------------------------------------------------

bench_backend() { # name
    local name=$1 workers=$2 out issue_s failed retried f b s r
    echo "== $name: issuing $DOMAINS domains with $workers clients" >&2
    out=$(run issue 1 "$DOMAINS" "$workers" "$tmp/issue")
    read -r issue_s failed retried <<<"$out"
    [ "$failed" = 0 ] || die "$name: $failed PUTs failed"
    echo "   $DOMAINS issued in $issue_s s ($retried PUTs retried after 503)" >&2
    : >"$tmp/feed"
    : >"$tmp/bundles"
    : >"$tmp/single"
    for r in $(seq 1 "$ROUNDS"); do
        run feed "$FEED_LIMIT" "$DOMAINS" >>"$tmp/feed"
        run bundles "$DOMAINS" "$BATCH" >>"$tmp/bundles"
        run single "$SINGLE" >>"$tmp/single"
        echo "   round $r: feed $(tail -1 "$tmp/feed" | cut -d' ' -f1) s," \
             "bundles $(tail -1 "$tmp/bundles" | cut -d' ' -f1) s," \
             "single $(tail -1 "$tmp/single" | cut -d' ' -f1) s" >&2
    done
    f=$(cut -d' ' -f1 "$tmp/feed" | median)
    b=$(cut -d' ' -f1 "$tmp/bundles" | median)
    s=$(cut -d' ' -f1 "$tmp/single" | median)
    grep -E ':(error|crit|alert|emerg)\]' "$tmp/httpd/logs/error_log" \
        | head -3 >&2 || true
    awk -v n="$name" -v d="$DOMAINS" -v is="$issue_s" -v f="$f" -v b="$b" \
        -v s="$s" -v sn="$SINGLE" -v w="$workers" -v r="$retried" 'BEGIN {
        printf "| %-7s | %6.0f /s (%d clients, %.1f s, %d retried) | %6.3f s | %8.0f /s | %6.3f s | %7.0f /s | %7.0f /s |\n",
            n, d / is, w, is, r, f, d / f, b, d / b, sn / s
    }' >>"$tmp/table"
}

: >"$tmp/table"
for be in $BACKENDS; do
    case $be in
    sqlite)
        mkdir -p "$tmp/sqlite"
        [ -z "$run_user" ] || chown "$run_user:$run_group" "$tmp/sqlite"
        start_cs sqlite3 "$tmp/sqlite/cs.db"
        bench_backend sqlite "$SQLITE_ISSUE_WORKERS"
        stop_httpd "$tmp/httpd" ;;
    mariadb)
        params=$("$top/t/db/mariadb.sh" start "$tmp/db") \
            || die "t/db/mariadb.sh start failed"
        start_cs mysql "$params"
        bench_backend mariadb "$MARIADB_ISSUE_WORKERS"
        stop_httpd "$tmp/httpd"
        "$top/t/db/mariadb.sh" stop "$tmp/db" >/dev/null 2>&1 || true ;;
    *) die "unknown backend $be" ;;
    esac
done

cpu=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo 2>/dev/null | head -1)
echo
echo "CertService, $DOMAINS domains (ECDSA P-256, sealed to one RSA-2048" \
     "wrapping certificate); $(nproc) CPUs${cpu:+ ($cpu)}; median of" \
     "$ROUNDS rounds"
echo
echo "| backend | issue (PUT) | feed (limit $FEED_LIMIT) | changes/s | bundles (POST x$BATCH) | bundles/s | single GET /s |"
echo "|---|---|---|---|---|---|---|"
cat "$tmp/table"
