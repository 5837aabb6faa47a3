#
# GET /v1/changes?since=SEQ&limit=N: every add, re-issue, import and delete
# appends exactly one change, in order, with no gaps; paging with
# since/limit/next/more.
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

my $h0 = feed_head();

# --- Every kind of write, and some refused ones in between -------------------
my ($da, $db, $dc) = (uniq_name('feed-a'), uniq_name('feed-b'),
                      uniq_name('feed-c'));
my @want;       # [op, domain, serial, not_after, seq from the response]

sub upsert {
    my ($what, $res, $domain) = @_;
    ok($res->{status} == 200 || $res->{status} == 201, "$what $domain")
        or diag($res->{body});
    push @want, ['upsert', $domain, $res->{json}{serial},
                 $res->{json}{not_after}, $res->{json}{seq}];
}

upsert('add', cs_req('admin', 'PUT', "/v1/domains/$da"), $da);
cs_req('admin', 'PUT', "/v1/domains/-$da");                     # bad name
upsert('re-issue', cs_req('admin', 'PUT', "/v1/domains/$da"), $da);
my $key = make_key('ec');
my $cert = make_cert($key, names => [$db]);
cs_req('admin', 'PUT', "/v1/domains/$db/certificate",            # bad key
       body => { chain_pem => $cert, key_pem => make_key('ec') });
upsert('import', cs_req('admin', 'PUT', "/v1/domains/$db/certificate",
                        body => { chain_pem => $cert, key_pem => $key }), $db);
my $res = cs_req('admin', 'DELETE', "/v1/domains/$da");
is($res->{status}, 200, "delete $da");
push @want, ['delete', $da, undef, undef, $res->{json}{seq}];
cs_req('admin', 'DELETE', "/v1/domains/$da");                    # unknown
upsert('add', cs_req('admin', 'PUT', "/v1/domains/$dc",
                     body => { key_type => 'rsa-2048' }), $dc);
cs_req('proxy', 'PUT', "/v1/domains/$dc");                       # forbidden
$res = cs_req('admin', 'DELETE', "/v1/domains/$dc");
push @want, ['delete', $dc, undef, undef, $res->{json}{seq}];

# --- The feed has exactly these, in order ------------------------------------
$res = cs_req('proxy', 'GET', "/v1/changes?since=$h0");
is($res->{status}, 200, "GET /v1/changes?since=$h0: 200");
my $j = $res->{json} || {};
is_deeply([sort keys %$j], [qw(changes more next)],
          'the page has changes, next, more');
my @got = @{ $j->{changes} || [] };
is(scalar @got, scalar @want, scalar(@want) . ' changes: one per write, '
   . 'none for refused requests');
is_deeply([map { $_->{seq} } @got], [$h0 + 1 .. $h0 + @want],
          'sequence numbers follow on, without gaps');
for my $i (0 .. $#want) {
    my ($op, $domain, $serial, $not_after, $seq) = @{ $want[$i] };
    my $g = $got[$i] || {};
    is($g->{op}, $op, "change $i: op $op");
    is($g->{domain}, $domain, "change $i: domain");
    is($g->{seq}, $seq, "change $i: the seq the write answered with");
    if ($op eq 'upsert') {
        is($g->{serial}, $serial, "change $i: serial of the new certificate");
        is($g->{not_after}, $not_after, "change $i: its not_after");
    }
    else {
        ok(!defined $g->{serial}, "change $i: a delete has no serial");
    }
}
is($j->{next}, $h0 + @want, 'next is the last seq returned');
ok(JSON::PP::is_bool($j->{more}) && !$j->{more}, 'more is false');

# The bundle of the imported domain carries its latest seq.
$res = cs_req('proxy', 'GET', "/v1/bundles/$db");
is($res->{json}{seq}, $want[2][4], 'a bundle carries the seq of its change');

# --- Paging -------------------------------------------------------------------
my ($since, $pages, @paged) = ($h0, 0);
while (1) {
    $res = cs_req('proxy', 'GET', "/v1/changes?since=$since&limit=2");
    my $p = $res->{json} || last;
    $pages++;
    my $n = @{ $p->{changes} };
    ok($n <= 2, "page $pages: at most 2 changes");
    push @paged, @{ $p->{changes} };
    is($p->{next}, $n ? $p->{changes}[-1]{seq} : $since,
       "page $pages: next is the last seq");
    my $left = $h0 + @want - $p->{next};
    is($p->{more} ? 1 : 0, $left > 0 ? 1 : 0,
       "page $pages: more is " . ($left > 0 ? 'true' : 'false'));
    last if !$p->{more} || $pages > 10;
    $since = $p->{next};
}
is($pages, 3, 'six changes in pages of two: three pages');
is_deeply(\@paged, \@got, 'paging yields the same changes');

# One at a time, from the start of the feed.
$res = cs_req('proxy', 'GET', '/v1/changes?since=0&limit=1');
is(scalar @{ $res->{json}{changes} }, 1, 'since=0&limit=1: one change');
ok($res->{json}{changes}[0]{seq} >= 1, '... the first');
ok($res->{json}{more}, '... and more follow');
my $all = feed_all();
is_deeply([map { $_->{seq} } @$all], [sort { $a <=> $b }
                                      map { $_->{seq} } @$all],
          'the whole feed is ordered');
is($all->[-1]{seq}, $h0 + @want, 'and ends with the last change');

# Past the end.
my $end = $h0 + @want;
for my $s ($end, $end + 1000) {
    $res = cs_req('proxy', 'GET', "/v1/changes?since=$s");
    is_deeply($res->{json}{changes}, [], "since=$s: no changes");
    is($res->{json}{next}, $s, "since=$s: next stays $s");
    ok(!$res->{json}{more}, "since=$s: more is false");
}
# Defaults: since=0, limit 100.
$res = cs_req('proxy', 'GET', '/v1/changes');
is($res->{json}{changes}[0]{seq}, $all->[0]{seq},
   'no since: from the start');
is(scalar @{ $res->{json}{changes} }, @$all > 100 ? 100 : scalar @$all,
   'no limit: at most 100');
$res = cs_req('proxy', 'GET', '/v1/changes?since=0&limit=1000');
is($res->{status}, 200, 'limit=1000 is allowed');

# --- Bad parameters -----------------------------------------------------------
for my $q ('limit=0', 'limit=1001', 'limit=-1', 'limit=x', 'limit=',
           'limit=1x', 'since=-1', 'since=x', 'since=', 'since=1.5',
           'since=99999999999999999999999') {
    cs_json_error(cs_req('proxy', 'GET', "/v1/changes?$q"), 400,
                  "GET /v1/changes?$q is 400");
}

no_plaintext_keys(key_der($key));
done_testing();
