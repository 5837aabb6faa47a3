#
# Restart leases: POST /v1/pools/POOL/leases {"host","ttl"} grants at most
# max_unavailable at once (1 by default; "wide" has CertServiceMaxUnavailable
# 2), else 409 with Retry-After; a lease frees its slot when it expires or
# is released (DELETE: 204; unknown: 404).
#
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/../lib";
use Time::HiRes qw(sleep time);
use POSIX ();
use CSTest;

if (my $why = cs_ready()) {
    plan skip_all => $why;
}

my $tag = uniq_name('x') =~ s/^x-([^.]+)\..*/$1/r;

sub lease {
    my ($pool, $host, $ttl, %o) = @_;
    return cs_req($o{who} || 'proxy', 'POST', "/v1/pools/$pool/leases",
                  body => { host => $host, ttl => $ttl }, %o);
}

sub release {
    my ($pool, $id, %o) = @_;
    return cs_req($o{who} || 'proxy', 'DELETE',
                  "/v1/pools/$pool/leases/$id", %o);
}

sub is_conflict {
    my ($res, $what, $max) = @_;
    cs_json_error($res, 409, "$what: 409 JSON");
    my $ra = $res->{headers}{'retry-after'} // '';
    ok($ra =~ /^\d+$/ && $ra >= 1 && $ra <= $max,
       "... with Retry-After: $ra (1..$max seconds)");
    is($res->{json}{retry_after}, $ra, '... also in the body')
        if $ra =~ /^\d+$/;
}

# --- Default pool: one at a time -------------------------------------------
my $pool = "one-$tag";
my $t = time;
my $res = lease($pool, 'h1', 30);
is($res->{status}, 201, 'first host gets a lease: 201');
my $l1 = $res->{json}{lease} // '';
like($l1, qr/^[A-Za-z0-9._-]{8,64}$/, "... id $l1");
ok(abs(($res->{json}{expires} // 0) - ($t + 30)) <= 2,
   '... expiring ttl seconds from now');
is($res->{headers}{location}, "/v1/pools/$pool/leases/$l1",
   '... Location: the lease');
my $exp1 = $res->{json}{expires};

is_conflict(lease($pool, 'h2', 30), 'a second host while one restarts', 30);
is_conflict(lease($pool, 'h3', 5, who => 'proxy2'), '... and a third', 30);

# The holder asking again gets its own lease back, renewed.
$res = lease($pool, 'h1', 40);
is($res->{status}, 201, 'the holder asking again: 201');
is($res->{json}{lease}, $l1, '... the same lease');
ok($res->{json}{expires} > $exp1, '... renewed');

# Release.
$res = release($pool, $l1);
is($res->{status}, 204, 'DELETE the lease: 204');
is($res->{body}, '', '... no body');
cs_json_error(release($pool, $l1), 404, 'releasing it again: 404 JSON');
cs_json_error(release($pool, 'nosuchlease'), 404, 'an unknown lease: 404');
$res = lease($pool, 'h2', 30);
is($res->{status}, 201, 'after the release the next host gets one');
my $l2 = $res->{json}{lease};
isnt($l2, $l1, '... a new lease');
cs_json_error(release("other-$tag", $l2), 404,
              'releasing it through another pool: 404');
is_conflict(lease($pool, 'h1', 30), '... it still holds the slot', 30);
is(release($pool, $l2)->{status}, 204, 'released');

# --- Expiry frees the slot ----------------------------------------------------
my $xpool = "exp-$tag";
$res = lease($xpool, 'h1', 2);
is($res->{status}, 201, 'a lease with ttl 2');
my ($lx, $expires) = @{ $res->{json} }{qw(lease expires)};
is_conflict(lease($xpool, 'h2', 2), 'while it lasts', 2);
sleep($expires - time + 0.05) if $expires > time;
$res = lease($xpool, 'h2', 5);
is($res->{status}, 201, 'once it has expired the next host gets one')
    or diag($res->{body});
my $lx2 = $res->{json}{lease};
cs_json_error(release($xpool, $lx), 404, 'the expired lease cannot be '
              . 'released: 404');
is(release($xpool, $lx2)->{status}, 204, 'the new one can: 204');

# --- CertServiceMaxUnavailable 2 wide -----------------------------------------
my @wide;
for my $h (1 .. 2) {
    $res = lease('wide', "w$h-$tag", 10);
    is($res->{status}, 201, "pool wide: host $h of 2 gets a lease");
    push @wide, $res->{json}{lease};
}
is_conflict(lease('wide', "w3-$tag", 10), 'pool wide: a third host', 10);
is(release('wide', $wide[0])->{status}, 204, 'one releases');
$res = lease('wide', "w3-$tag", 10);
is($res->{status}, 201, 'then the third gets one');
push @wide, $res->{json}{lease};
is_conflict(lease('wide', "w4-$tag", 10), '... and a fourth waits', 10);
is(release('wide', $_)->{status}, 204, 'released') for @wide[1, 2];

# --- Many at once, through two virtual hosts: exactly max granted -------------
my $cpool = "race-$tag";
my @kids;
my $dir = tmpdir();
for my $i (1 .. 8) {
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        my $r = lease($cpool, "r$i", 20,
                      vhost => $i % 2 ? 'certservice' : 'certservice_rot');
        write_file("$dir/race$i", "$r->{status} "
                   . ($r->{json}{lease} // '-'));
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
waitpid $_, 0 for @kids;
my @st = map { [split ' ', read_file("$dir/race$_") // '0 -'] } 1 .. 8;
is(scalar(grep { $_->[0] == 201 } @st), 1,
   '8 hosts at once through two virtual hosts: exactly one lease')
    or diag(join ', ', map { $_->[0] } @st);
is(scalar(grep { $_->[0] == 409 } @st), 7, '... the others 409');
release($cpool, $_->[1]) for grep { $_->[0] == 201 } @st;

# --- Bad requests ---------------------------------------------------------------
for my $case (
    [{ host => 'h1', ttl => 0 }, 'ttl 0'],
    [{ host => 'h1', ttl => 61 }, 'ttl over CertServiceLeaseMaxTTL (60)'],
    [{ host => 'h1', ttl => -5 }, 'a negative ttl'],
    [{ host => 'h1', ttl => '5' }, 'ttl a string'],
    [{ host => 'h1', ttl => 1.5 }, 'ttl not an integer'],
    [{ host => 'h1' }, 'no ttl'],
    [{ ttl => 5 }, 'no host'],
    [{ host => '', ttl => 5 }, 'an empty host'],
    [{ host => 'h 1', ttl => 5 }, 'a host with a space'],
    [{ host => 'h/1', ttl => 5 }, 'a host with a slash'],
    [{ host => 'h' x 65, ttl => 5 }, 'a host of 65 characters'],
    [{ host => 5, ttl => 5 }, 'a numeric host'],
) {
    my ($body, $what) = @$case;
    cs_json_error(cs_req('proxy', 'POST', "/v1/pools/bad-$tag/leases",
                         body => $body), 400, "lease with $what: 400");
}
for my $p ('p%21', 'p%20q', 'p' x 65, 'p%C3%A4') {
    cs_json_error(lease($p, 'h1', 5), 400, "pool name '$p': 400");
    cs_json_error(release($p, 'abc'), 400, "release in pool '$p': 400");
}
cs_json_error(release("bad-$tag", 'a%21b'), 400, 'a bad lease id: 400');
# None of that took the slot.
$res = lease("bad-$tag", 'h1', 5);
is($res->{status}, 201, 'the refused requests took no slot');
release("bad-$tag", $res->{json}{lease});

no_plaintext_keys();
done_testing();
