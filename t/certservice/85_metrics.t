#
# Metrics and the dashboard: GET /metrics (Prometheus text, roles admin and
# metrics), every family present, the numbers consistent with GET
# /v1/domains (also with its filters state=, expiring=), the change feed,
# a host's report and a lease; `promtool check metrics` clean (Debian's
# prometheus package); GET /v1/overview; the dashboard's files (admin
# only, a strict Content-Security-Policy).
#
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/../lib";
use CSTest;

if (my $why = cs_ready()) {
    plan skip_all => $why;
}

my @FAMILIES = qw(
    certservice_domains certservice_certificates_expiring
    certservice_certificates_expired certservice_feed_changes_total
    certservice_acme_queue_jobs certservice_acme_queue_due_jobs
    certservice_acme_orders_total certservice_acme_budget_remaining
    certservice_acme_budget_limit certservice_acme_ca_up
    certservice_acme_ca_consecutive_failures
    certservice_acme_ca_last_success_timestamp_seconds
    certservice_leases_held certservice_host_feed_lag_changes
    certservice_host_feed_lag_seconds
    certservice_host_last_sync_timestamp_seconds certservice_host_state
    certservice_metrics_collect_seconds
);

# A scrape: (response, {family => type}, {"name{labels}" => value}).
sub scrape {
    my $who = shift || 'admin';
    my $res = cs_req($who, 'GET', '/metrics');
    my (%type, %val);
    for (split /\n/, $res->{body}) {
        if (/^# TYPE (\S+) (\S+)$/) {
            $type{$1} = $2;
        }
        elsif (/^([a-z_]+(?:\{[^}]*\})?) (\S+)$/) {
            $val{$1} = $2;
        }
    }
    return ($res, \%type, \%val);
}

# Every domain through GET /v1/domains, following next.
sub all_domains {
    my $query = shift // '';
    my ($after, @all) = ('');
    for (my $guard = 0; $guard < 1000; $guard++) {
        my $res = cs_req('admin', 'GET', "/v1/domains?limit=500$query"
                         . ($after ne '' ? "&after=$after" : ''));
        die "GET /v1/domains: $res->{status} $res->{body}"
            unless $res->{status} == 200;
        push @all, @{ $res->{json}{domains} };
        return \@all if @{ $res->{json}{domains} } < 500;
        $after = $res->{json}{next};
    }
    die "GET /v1/domains does not end";
}

# --- Some domains of our own: two issued, one in error ---------------------
my @ours = map { uniq_name("metrics$_") } 1 .. 2;
for my $d (@ours) {
    my $res = cs_req('admin', 'PUT', "/v1/domains/$d");
    is($res->{status}, 201, "PUT $d") or diag($res->{body});
}
my $bad = uniq_name('metricsbad');
my $res = cs_req('admin', 'PUT', "/v1/domains/$bad",
                 vhost => 'certservice_noca');
is($res->{status}, 503, "PUT $bad on the server without a CA: an error")
    or diag($res->{body});

# --- Roles -------------------------------------------------------------------
my ($m, $type, $val) = scrape('admin');
is($m->{status}, 200, 'GET /metrics as admin: 200') or diag($m->{body});
like($m->{headers}{'content-type'} // '',
     qr{^text/plain; version=0\.0\.4}, '... Prometheus text 0.0.4');
my ($mm) = scrape('metrics');
is($mm->{status}, 200, 'GET /metrics as metrics: 200') or diag($mm->{body});
for my $who (qw(proxy norole)) {
    cs_json_error(cs_req($who, 'GET', '/metrics'), 403,
                  "GET /metrics as $who: 403");
}
cs_json_error(cs_req('metrics', 'GET', '/v1/domains'), 403,
              'the metrics role may not list domains');
cs_json_error(cs_req('metrics', 'GET', '/v1/changes?since=0'), 403,
              'the metrics role may not read the feed');
cs_json_error(cs_req('metrics', 'GET', '/dashboard/'), 403,
              'the metrics role may not see the dashboard');
cs_json_error(cs_req('admin', 'POST', '/metrics', body => '{}'), 405,
              'POST /metrics: 405');

# --- Every family, each with a TYPE ------------------------------------------
my @missing = grep { !$type->{$_} } @FAMILIES;
is("@missing", '', 'every family is present (HELP and TYPE)');
is($type->{certservice_acme_orders_total}, 'counter', 'orders: a counter');
is($type->{certservice_feed_changes_total}, 'counter', 'feed: a counter');
is($type->{certservice_domains}, 'gauge', 'domains: a gauge');

# --- Consistent with GET /v1/domains -----------------------------------------
my $t0 = time;
($m, $type, $val) = scrape('admin');
my $list = all_domains();
my %by_state;
$by_state{ $_->{state} }++ for @$list;
for my $s (qw(active pending error)) {
    is($val->{qq{certservice_domains{state="$s"}}} // 'missing',
       $by_state{$s} // 0, "domains $s: as GET /v1/domains counts them");
}
ok(($by_state{error} // 0) >= 1 && ($by_state{active} // 0) >= 2,
   'the counts include ours (one error, two active)');
for my $days (7, 14, 30) {
    my $n = grep { $_->{not_after} && $_->{not_after} >= $t0
                   && $_->{not_after} < $t0 + $days * 86400 } @$list;
    is($val->{qq{certservice_certificates_expiring{within_days="$days"}}}
       // 'missing', $n, "expiring within $days days: $n");
}
my $expired = grep { $_->{not_after} && $_->{not_after} < $t0 } @$list;
is($val->{certservice_certificates_expired} // 'missing', $expired,
   "expired: $expired");
is($val->{certservice_feed_changes_total} // 'missing', feed_head(),
   'feed_changes_total is the feed\'s head');

# The filters the dashboard uses agree with the numbers.
my $errors = all_domains('&state=error');
is(scalar @$errors, $by_state{error} // 0,
   'GET /v1/domains?state=error: as many as the metric says');
ok((grep { $_->{domain} eq $bad } @$errors), '... ours among them');
ok(!(grep { $_->{state} ne 'error' } @$errors), '... and only errors');
my $exp14 = all_domains('&expiring=14');
is(scalar @$exp14,
   $val->{q{certservice_certificates_expiring{within_days="14"}}} + $expired,
   'GET /v1/domains?expiring=14: the expiring within 14 days and the '
   . 'expired');
my ($tag) = $ours[0] =~ /^([^.]+)\./;
my $found = all_domains("&q=$tag");
is_deeply([map { $_->{domain} } @$found], [$ours[0]],
          'GET /v1/domains?q=PART finds the name that contains it');
cs_json_error(cs_req('admin', 'GET', '/v1/domains?q=a%25'), 400,
              'q= with a LIKE pattern character: 400');
cs_json_error(cs_req('admin', 'GET', '/v1/domains?expiring=0'), 400,
              'expiring=0: 400');

# --- A host's report and a lease ---------------------------------------------
my $host = "mhost-" . ($tag =~ s/^metrics1-//r);
my $head = feed_head();
$res = cs_req('proxy', 'POST', "/v1/hosts/$host/report",
              body => { pool => 'mpool', seq => $head - 1, state => 'ready' });
is($res->{status}, 204, 'a host reports one change behind')
    or diag($res->{body});
$res = cs_req('proxy', 'POST', '/v1/pools/mpool/leases',
              body => { host => $host, ttl => 30 });
is($res->{status}, 201, 'it takes a lease') or diag($res->{body});
my $lease = $res->{json}{lease};
my $t1 = time;
($m, $type, $val) = scrape('metrics');
my $l = qq{host="$host",pool="mpool"};
is($val->{"certservice_host_feed_lag_changes{$l}"} // 'missing', 1,
   'its lag: one change');
my $age = $val->{"certservice_host_feed_lag_seconds{$l}"} // -1;
ok($age >= 0 && $age < 600, "its lag in time: $age s, the head's age");
my $sync = $val->{"certservice_host_last_sync_timestamp_seconds{$l}"} // 0;
ok(abs($sync - $t1) <= 5, 'its last sync: the report, just now');
is($val->{qq{certservice_host_state{$l,state="ready"}}} // 'missing', 1,
   'its state');
is($val->{q{certservice_leases_held{pool="mpool"}}} // 'missing', 1,
   'one lease held in its pool');
cs_req('proxy', 'DELETE', "/v1/pools/mpool/leases/$lease");
($m, $type, $val) = scrape('admin');
ok(!exists $val->{q{certservice_leases_held{pool="mpool"}}},
   'released: no lease held in the pool');
$res = cs_req('proxy', 'POST', "/v1/hosts/$host/report",
              body => { pool => 'mpool', seq => feed_head(),
                        state => 'ready' });
($m, $type, $val) = scrape('admin');
is($val->{"certservice_host_feed_lag_changes{$l}"} // 'missing', 0,
   'caught up: no lag');
is($val->{"certservice_host_feed_lag_seconds{$l}"} // 'missing', 0,
   '... 0 seconds');

# --- promtool ------------------------------------------------------------------
SKIP: {
    my $promtool = (grep { -x "$_/promtool" } split /:/, $ENV{PATH})[0];
    skip 'promtool not installed (Debian: prometheus)', 2 unless $promtool;
    my $file = tmpdir() . '/metrics.txt';
    write_file($file, $m->{body});
    # promtool reads the text on its stdin; run_cmd gives /dev/null.
    my ($rc, $out, $err) = run_cmd('/bin/sh', '-c',
                                   "'$promtool/promtool' check metrics"
                                   . " < '$file'");
    is($rc, 0, 'promtool check metrics: exit 0') or diag("$out$err");
    is("$out$err", '', 'promtool check metrics: no complaint');
}

# --- GET /v1/overview ------------------------------------------------------------
$res = cs_req('admin', 'GET', '/v1/overview');
is($res->{status}, 200, 'GET /v1/overview: 200') or diag($res->{body});
my $o = $res->{json} || {};
is($o->{domains}{error} // 0, $by_state{error} // 0,
   'overview: domains in error as the metric');
ok((grep { $_->{host} eq $host && $_->{lag_changes} == 0 }
    @{ $o->{hosts} || [] }), 'overview: our host, caught up');
is(ref $o->{cas}, 'ARRAY', 'overview: cas (none: no ACME here)');
cs_json_error(cs_req('proxy', 'GET', '/v1/overview'), 403,
              'GET /v1/overview as proxy: 403');

# --- The dashboard ---------------------------------------------------------------
$res = cs_req('admin', 'GET', '/dashboard/');
is($res->{status}, 200, 'GET /dashboard/ as admin: 200');
like($res->{headers}{'content-type'} // '', qr{^text/html}, '... HTML');
my $csp = $res->{headers}{'content-security-policy'} // '';
like($csp, qr/default-src 'none'/, '... CSP: nothing by default');
like($csp, qr/script-src 'self'(;|$)/, '... scripts from itself only');
unlike($csp, qr/unsafe/, '... nothing unsafe');
unlike($res->{body}, qr/<script>|<style|\son[a-z]+=|https?:\/\//i,
       '... no inline script or style, no external asset');
like($res->{body}, qr{src="dashboard\.js"}, '... its script');
$res = cs_req('admin', 'GET', '/dashboard/dashboard.js');
is($res->{status}, 200, 'GET /dashboard/dashboard.js: 200');
like($res->{headers}{'content-type'} // '', qr{^text/javascript},
     '... JavaScript');
$res = cs_req('admin', 'GET', '/dashboard');
is($res->{status}, 301, 'GET /dashboard: to /dashboard/');
like($res->{headers}{location} // '', qr{/dashboard/$}, '... Location');
cs_json_error(cs_req('admin', 'GET', '/dashboard/nothing.js'), 404,
              'an unknown file: 404');
cs_json_error(cs_req('proxy', 'GET', '/dashboard/'), 403,
              'the dashboard as proxy: 403');

done_testing();
