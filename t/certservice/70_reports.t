#
# Host reports: POST /v1/hosts/HOST/report {"pool","seq","state","failed"}
# says which point of the change feed a proxy now serves; GET
# /v1/domains/DOMAIN then shows which hosts serve which serial of it.
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

my $tag = uniq_name('x') =~ s/^x-([^.]+)\..*/$1/r;
my ($h1, $h2, $h3) = map { "rep$_-$tag" } 1 .. 3;

sub report {
    my ($host, $body, %o) = @_;
    return cs_req($o{who} || 'proxy', 'POST', "/v1/hosts/$host/report",
                  body => $body);
}

# Hosts of ours in a domain's admin view, by name.
sub hosts_of {
    my $domain = shift;
    my $res = cs_req('admin', 'GET', "/v1/domains/$domain");
    return { map { $_->{host} => $_ }
             grep { $_->{host} =~ /-\Q$tag\E$/ }
             @{ $res->{json}{hosts} || [] } };
}

my $d = uniq_name('rep');
my $e = uniq_name('rep-e');
my $before = feed_head();
my $r1 = cs_req('admin', 'PUT', "/v1/domains/$d")->{json};
my $r2 = cs_req('admin', 'PUT', "/v1/domains/$d")->{json};
my $re = cs_req('admin', 'PUT', "/v1/domains/$e")->{json};
ok($r1->{serial} && $r2->{serial} && $r1->{serial} ne $r2->{serial},
   "$d issued and re-issued: two serials");
is(scalar keys %{ hosts_of($d) }, 0, 'no host of ours has reported yet');

my $t = time;
my $res = report($h1, { pool => "pool-$tag", seq => $r1->{seq},
                        state => 'done', failed => {} });
is($res->{status}, 204, 'a report: 204');
is($res->{body}, '', '... without a body');
is(report($h2, { pool => "pool-$tag", seq => $r2->{seq}, state => 'rolling',
                 failed => { $d => 'the chain did not verify' } },
          who => 'proxy2')->{status}, 204, 'a second host reports');
is(report($h3, { pool => "pool-$tag", seq => $before, state => 'done' })
   ->{status}, 204, 'a third, from before the domain existed, without '
   . 'failed');

my $hosts = hosts_of($d);
is_deeply([sort keys %$hosts], [sort $h1, $h2, $h3],
          'GET /v1/domains/DOMAIN lists the three hosts');
my $x = $hosts->{$h1} || {};
is($x->{serial}, $r1->{serial}, "$h1 serves the first serial");
is($x->{seq}, $r1->{seq}, '... at the seq it reported');
is($x->{pool}, "pool-$tag", '... in its pool');
is($x->{state}, 'done', '... state done');
is($x->{failed}, undef, '... nothing failed');
ok(abs(($x->{reported} // 0) - $t) <= 5, '... reported just now');
$x = $hosts->{$h2} || {};
is($x->{serial}, $r2->{serial}, "$h2 serves the second serial");
is($x->{state}, 'rolling', '... state rolling');
is($x->{failed}, 'the chain did not verify', '... with its failure');
$x = $hosts->{$h3} || {};
ok(exists $x->{serial} && !defined $x->{serial},
   "$h3 serves no certificate of it (null)");

# The failure concerns only that domain.
$hosts = hosts_of($e);
is($hosts->{$h2}{serial}, undef, "$h2 has not reached $e yet");
is($hosts->{$h2}{failed}, undef, '... and its failure is not about it');

# A newer report replaces the older.
is(report($h1, { pool => "pool-$tag", seq => $re->{seq}, state => 'done',
                 failed => { $e => 'disk full' } })->{status}, 204,
   "$h1 reports again");
$hosts = hosts_of($d);
is($hosts->{$h1}{serial}, $r2->{serial}, "$h1 now serves the second serial");
is($hosts->{$h1}{seq}, $re->{seq}, '... at its new seq');
is($hosts->{$h1}{failed}, undef, "... and failed nothing of $d");
is(hosts_of($e)->{$h1}{failed}, 'disk full', "... but failed $e");
is(hosts_of($e)->{$h1}{serial}, $re->{serial}, "... whose serial it "
   . 'would serve');

# --- Bad reports: 400, nothing recorded ---------------------------------------
my $snapshot = hosts_of($d);
for my $case (
    [{ seq => 1, state => 'done' }, 'no pool'],
    [{ pool => 'p', state => 'done' }, 'no seq'],
    [{ pool => 'p', seq => 1 }, 'no state'],
    [{ pool => 'p', seq => -1, state => 'done' }, 'a negative seq'],
    [{ pool => 'p', seq => '1', state => 'done' }, 'seq a string'],
    [{ pool => 'p', seq => 1.5, state => 'done' }, 'seq not an integer'],
    [{ pool => 'p q', seq => 1, state => 'done' }, 'a pool with a space'],
    [{ pool => 5, seq => 1, state => 'done' }, 'a numeric pool'],
    [{ pool => 'p', seq => 1, state => 'all good' }, 'a state with a space'],
    [{ pool => 'p', seq => 1, state => 'done', failed => [] },
     'failed an array'],
    [{ pool => 'p', seq => 1, state => 'done', failed => 'x' },
     'failed a string'],
) {
    my ($body, $what) = @$case;
    cs_json_error(report($h1, $body), 400, "report with $what: 400");
}
for my $host ('h%20x', 'h%21', 'h' x 65) {
    cs_json_error(report($host, { pool => 'p', seq => 1, state => 'done' }),
                  400, "report for host '$host': 400");
}
is_deeply(hosts_of($d), $snapshot, 'the bad reports changed nothing');

no_plaintext_keys();
done_testing();
