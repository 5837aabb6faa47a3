#
# Rotating the wrapping key without downtime.  Three virtual hosts share
# one database and differ only in CertServiceWrapCertificate, modelling a
# CertService reconfigured step by step:
#   certservice      wrap1            (before)
#   certservice_rot  wrap1 + wrap2    (wrap2 added)
#   certservice_new  wrap2            (wrap1 retired)
# Envelopes made after wrap2 is added open with either key (new domains,
# re-issues with PUT /v1/domains/D on an existing domain, imports); made
# after wrap1 is retired, only with wrap2.  Each time with the operator's
# command, `openssl cms -decrypt -inform DER -recip wrap.crt -inkey wrap.key`,
# to a PKCS#8 key matching the certificate.
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

my %stage = (
    before  => ['certservice',     ['wrap1'],          ['wrap2']],
    added   => ['certservice_rot', ['wrap1', 'wrap2'], []],
    retired => ['certservice_new', ['wrap2'],          ['wrap1']],
);
my @imported;

sub bundle {
    my ($d, $vhost) = @_;
    my $res = cs_req('proxy', 'GET', "/v1/bundles/$d",
                     vhost => $vhost || 'certservice');
    return $res->{json} || {};
}

sub check {
    my ($d, $stage, $what) = @_;
    my ($vhost, $open, $closed) = @{ $stage{$stage} };
    my $b = bundle($d);
    is_deeply(envelope_info($b->{key_cms})->{recipients}, $open,
              "$what: recipients @$open");
    my @why = envelope_check($b->{key_cms}, $b->{chain_pem}, $open, $closed);
    ok(!@why, "$what: opens with " . join(' and with ', @$open)
       . (@$closed ? ", not with @$closed" : '')
       . ', to the certificate\'s key') or diag(join "\n", @why);
    return $b;
}

sub put {
    my ($d, $stage, $want) = @_;
    my $vhost = $stage{$stage}[0];
    my $res = cs_req('admin', 'PUT', "/v1/domains/$d", vhost => $vhost);
    is($res->{status}, $want, "PUT /v1/domains/$d on $vhost: $want")
        or diag($res->{body});
    return $res->{json} || {};
}

sub import_on {
    my ($d, $stage) = @_;
    my $vhost = $stage{$stage}[0];
    my $key = make_key('ec');
    my $cert = make_cert($key, names => [$d]);
    push @imported, key_der($key);
    my $res = cs_req('admin', 'PUT', "/v1/domains/$d/certificate",
                     vhost => $vhost,
                     body => { chain_pem => $cert, key_pem => $key });
    is($res->{status}, 201, "import $d on $vhost: 201") or diag($res->{body});
    my $opened = envelope_open(bundle($d)->{key_cms}, $stage{$stage}[1][-1]);
    ok(defined $opened && $opened eq $imported[-1],
       '... the envelope holds exactly the imported key');
}

# --- Before: wrap1 only -------------------------------------------------------------
my ($d1, $d2, $d3, $d4, $d5) = map { uniq_name("rot$_") } 1 .. 5;
my $old1 = put($d1, 'before', 201);
my $b1 = check($d1, 'before', "$d1 added before the rotation");

# --- wrap2 added beside wrap1 ---------------------------------------------------
# What is stored does not change by itself: a reconfigured CertService
# serves the same envelope until the domain is re-issued.
is_deeply(bundle($d1, 'certservice_rot'), $b1,
          'the reconfigured server serves the stored bundle unchanged');
check($d1, 'before', "$d1 before its re-issue");

put($d2, 'added', 201);
check($d2, 'added', "$d2 added with wrap1 and wrap2");

my $head = feed_head();
my $new1 = put($d1, 'added', 200);
isnt($new1->{serial}, $old1->{serial}, "$d1 re-issued: a new serial");
my $b1r = check($d1, 'added', "$d1 re-wrapped by its re-issue");
my $feed = feed_since($head);
ok(@$feed == 1 && $feed->[0]{domain} eq $d1 && $feed->[0]{op} eq 'upsert'
   && $feed->[0]{serial} eq $new1->{serial},
   'the re-issue is one upsert in the change feed');

import_on($d3, 'added');
check($d3, 'added', "$d3 imported with wrap1 and wrap2");

# --- wrap1 retired --------------------------------------------------------------
put($d4, 'retired', 201);
check($d4, 'retired', "$d4 added after wrap1 was retired");
put($d2, 'retired', 200);
check($d2, 'retired', "$d2 re-issued after wrap1 was retired");
import_on($d5, 'retired');
check($d5, 'retired', "$d5 imported after wrap1 was retired");

# The envelopes made while both were configured still open with wrap2,
# whichever server is asked: a proxy that has only wrap2 keeps working.
is_deeply(bundle($d1, 'certservice_new'), $b1r,
          "$d1 as stored, from the retired-wrap1 server too");
check($d1, 'added', "$d1 (re-wrapped during the rotation)");
check($d3, 'added', "$d3 (imported during the rotation)");

no_plaintext_keys(@imported);
done_testing();
