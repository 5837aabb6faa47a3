#
# The API contract where it was broken (issue 17):
#  - a query parameter with a bad %XX escape or %00 is a 400 naming it, on
#    every endpoint (it used to be decoded with the error ignored and end
#    at the NUL: ?since=5%00 answered 200 from 5);
#  - TRACE never echoes the request: 405 JSON to a client with a role, 403
#    to one without, on a virtual host with TraceEnable off and on one
#    without it (the module refuses TRACE on its locations itself);
#  - of concurrent PUTs of one new name exactly one gets 201, and in a
#    PUT/DELETE mix every answer matches the order of the writes (seq).
#
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use IO::Handle ();
use lib "$FindBin::Bin/../lib";
use CSTest;

if (my $why = cs_ready()) {
    plan skip_all => $why;
}

# --- Query parameters ---------------------------------------------------------
my $known = uniq_name('known');
is(cs_req('admin', 'PUT', "/v1/domains/$known")->{status}, 201,
   "$known added");

for my $c (
    # who, path, the parameter the error must name
    ['proxy', '/v1/changes?since=5%00', 'since'],
    ['proxy', '/v1/changes?since=0&limit=1%00', 'limit'],
    ['proxy', '/v1/changes?since=%zz', 'since'],
    ['proxy', '/v1/changes?limit=%zz', 'limit'],
    ['proxy', '/v1/changes?since=1%4', 'since'],
    ['proxy', '/v1/changes?since=1&limit=5%', 'limit'],
    ['proxy', '/v1/changes?since=5&since=6%00', 'since'],
    ['admin', "/v1/domains?after=$known%00zzz", 'after'],
    ['admin', "/v1/domains?after=$known%zz", 'after'],
    ['admin', '/v1/domains?limit=2%00', 'limit'],
    ['admin', '/v1/domains?limit=%zz', 'limit'],
    ['admin', "/v1/domains?limit=1&after=%00", 'after'],
    # Endpoints without parameters refuse a malformed query too.
    ['proxy', "/v1/bundles/$known?x=%00", 'x'],
    ['admin', "/v1/domains/$known?v=1%zz", 'v'],
    ['proxy', '/v1/changes?li%00mit=1', 'li%00mit'],
) {
    my ($who, $path, $param) = @$c;
    cs_json_error(cs_req($who, 'GET', $path), 400, "GET $path: 400",
                  qr/^query parameter '\Q$param\E' /);
}
cs_json_error(cs_req('proxy', 'POST', '/v1/bundles?a=%00',
                     body => { domains => [$known] }), 400,
              'POST /v1/bundles?a=%00: 400', qr/'a'/);
cs_json_error(cs_req('admin', 'PUT', '/v1/domains/' . uniq_name('q') . '?x=%zz'),
              400, 'PUT /v1/domains/D?x=%zz: 400, nothing issued');
# The role still comes first.
cs_json_error(cs_req('proxy', 'GET', '/v1/domains?after=%00'), 403,
              'a proxy on an admin endpoint: 403 before the query');
# A good query still works, %XX escapes decoded.
my $res = cs_req('admin', 'GET', '/v1/domains?limit=%31&after=' .
                 join('', map { sprintf '%%%02X', ord } split //, $known));
is($res->{status}, 200, 'escaped parameters are decoded');
isnt(($res->{json}{domains}[0] // {})->{domain}, $known,
     '... after= starts after the name');
is(scalar @{ $res->{json}{domains} || [] } <= 1, 1, '... limit=%31 is 1');

# --- TRACE --------------------------------------------------------------------
# certservice has TraceEnable off, certservice_noca leaves it at httpd's
# default: the answers must be the same.
for my $vhost (qw(certservice certservice_noca)) {
    for my $c (['admin', 405], ['proxy', 405], ['norole', 403]) {
        my ($who, $status) = @$c;
        my $r = cs_req($who, 'TRACE', '/v1/changes', vhost => $vhost);
        cs_json_error($r, $status, "TRACE as $who on $vhost: $status JSON");
        unlike($r->{body}, qr/^TRACE /m, '... no echo of the request');
        like($r->{headers}{allow} // '', qr/^GET$/, '... Allow: GET')
            if $status == 405;
    }
}
# No client certificate where it is optional: no role either.
$res = cs_req(undef, 'TRACE', '/v1/domains', vhost => 'certservice_opt');
cs_json_error($res, 403, 'TRACE without a certificate (optional): 403');
unlike($res->{body}, qr/^TRACE /m, '... no echo');
$res = cs_req(undef, 'TRACE', '/acme-challenge/abc', vhost => 'certservice_opt');
cs_json_error($res, 405, 'TRACE on /acme-challenge/ (public): 405');

# --- Concurrent PUTs ----------------------------------------------------------
# N children wait at a pipe, then each makes its requests; every answer
# comes back as "op status seq".
sub race {
    my ($n, $body) = @_;
    pipe(my $go_r, my $go_w) or die "pipe: $!";
    pipe(my $res_r, my $res_w) or die "pipe: $!";
    my @pids;
    for my $i (1 .. $n) {
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            close $go_w;
            close $res_r;
            <$go_r>;            # returns when the parent closes it
            $res_w->autoflush(1);
            srand($$ ^ time);
            print $res_w "$_\n" for $body->($i);
            close $res_w;
            CORE::exit(0);
        }
        push @pids, $pid;
    }
    close $go_r;
    close $res_w;
    close $go_w;                # go
    my @lines = map { chomp; [split / /] } <$res_r>;
    waitpid $_, 0 for @pids;
    return @lines;
}

my $new = uniq_name('race');
my @answers = race(8, sub {
    my $r = cs_req('admin', 'PUT', "/v1/domains/$new");
    return join ' ', 'P', $r->{status}, $r->{json}{seq} // 0;
});
is(scalar @answers, 8, '8 concurrent PUTs of a new name answered');
is(scalar(grep { $_->[1] == 201 } @answers), 1, '... exactly one 201')
    or diag(join ', ', map { $_->[1] } @answers);
is(scalar(grep { $_->[1] == 200 } @answers), 7, '... and seven 200');

my $mix = uniq_name('race-mix');
@answers = race(8, sub {
    my @out;
    for (1 .. 12) {
        my $m = rand() < 0.5 ? 'DELETE' : 'PUT';
        my $r = cs_req('admin', $m, "/v1/domains/$mix");
        push @out, join ' ', substr($m, 0, 1), $r->{status},
                   $r->{json}{seq} // 0;
    }
    return @out;
});
is(scalar @answers, 96, 'a PUT/DELETE mix of 96 requests answered');
my @bad = grep { !($_->[0] eq 'P' && ($_->[1] == 200 || $_->[1] == 201))
                 && !($_->[0] eq 'D' && ($_->[1] == 200 || $_->[1] == 404)) }
          @answers;
is(scalar @bad, 0, '... each a 200/201 PUT or a 200/404 DELETE')
    or diag(join ', ', map { "@$_" } @bad);
# In the order of the writes, a PUT answers 201 exactly when the name did
# not exist, and a DELETE that answers 200 follows a PUT.
my ($exists, $wrong) = (0, 0);
for my $w (sort { $a->[2] <=> $b->[2] } grep { $_->[2] } @answers) {
    if ($w->[0] eq 'P') {
        $wrong++ if ($w->[1] == 201) == $exists;
        $exists = 1;
    }
    else {
        $wrong++ unless $exists;
        $exists = 0;
    }
}
is($wrong, 0, '... every answer matches whether the name existed then');

no_plaintext_keys();
done_testing();
