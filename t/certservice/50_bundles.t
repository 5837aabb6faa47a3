#
# Bundles for proxies: GET /v1/bundles/DOMAIN and the batched
# POST /v1/bundles {"domains":[...]} (found + missing; more than
# CertServiceMaxBatch, 3 here, is 413).
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

my @have = map { uniq_name('bnd') } 1 .. 3;
for my $d (@have) {
    is(cs_req('admin', 'PUT', "/v1/domains/$d")->{status}, 201, "added $d");
}
my %single = map {
    $_ => cs_req('proxy', 'GET', "/v1/bundles/$_")->{json}
} @have;
ok(!grep({ !$_->{key_cms} } values %single), 'each has a bundle');

my $gone = uniq_name('bnd-gone');
is(cs_req('admin', 'PUT', "/v1/domains/$gone")->{status}, 201, "added $gone");
is(cs_req('admin', 'DELETE', "/v1/domains/$gone")->{status}, 200,
   "and deleted it");
my $never = uniq_name('bnd-never');

# --- One -----------------------------------------------------------------------
cs_json_error(cs_req('proxy', 'GET', "/v1/bundles/$never"), 404,
              'GET /v1/bundles/UNKNOWN: 404 JSON', qr/no certificate/);
cs_json_error(cs_req('proxy', 'GET', "/v1/bundles/$gone"), 404,
              'GET /v1/bundles/DELETED: 404 JSON');

# --- Many ----------------------------------------------------------------------
my $res = cs_req('proxy', 'POST', '/v1/bundles',
                 body => { domains => [$have[0], $never, uc $have[1]] });
is($res->{status}, 200, 'POST /v1/bundles with found and unknown: 200');
my $j = $res->{json} || {};
is_deeply([sort keys %$j], [qw(bundles missing)], 'bundles and missing');
is_deeply([map { $_->{domain} } @{ $j->{bundles} || [] }],
          [@have[0, 1]], 'the found ones, in the order asked, normalised');
is_deeply($j->{missing}, [$never], 'the unknown one is missing');
is_deeply($j->{bundles}[0], $single{$have[0]},
          'a batched bundle is the single bundle');
is_deeply($j->{bundles}[1], $single{$have[1]}, '... every one');
my @why = envelope_check($j->{bundles}[1]{key_cms},
                         $j->{bundles}[1]{chain_pem}, ['wrap1']);
ok(!@why, 'its envelope opens to its key') or diag(join "\n", @why);

$res = cs_req('proxy2', 'POST', '/v1/bundles',
              body => { domains => [@have] });
is($res->{status}, 200, 'exactly CertServiceMaxBatch (3) domains: 200');
is(scalar @{ $res->{json}{bundles} }, 3, '... three bundles');
is_deeply($res->{json}{missing}, [], '... none missing');

$res = cs_req('proxy', 'POST', '/v1/bundles',
              body => { domains => [$gone, $never] });
is_deeply($res->{json}{bundles}, [], 'only unknown ones: no bundles');
is_deeply($res->{json}{missing}, [$gone, $never],
          '... both missing, deleted and never known');

$res = cs_req('proxy', 'POST', '/v1/bundles', body => { domains => [] });
ok($res->{status} == 200 && !@{ $res->{json}{bundles} }
   && !@{ $res->{json}{missing} }, 'no domains: empty answer');

# --- Too many: 413 -------------------------------------------------------------
cs_json_error(cs_req('proxy', 'POST', '/v1/bundles',
                     body => { domains => [@have, $never] }),
              413, 'four domains, over CertServiceMaxBatch 3: 413 JSON',
              qr/CertServiceMaxBatch/);
cs_json_error(cs_req('proxy', 'POST', '/v1/bundles',
                     body => { domains => [('x.example') x 1000] }),
              413, 'a thousand: 413 JSON');

# --- Bad requests: 400 ---------------------------------------------------------
for my $case (
    [{}, 'no domains'],
    [{ domains => 'a.example' }, 'domains a string'],
    [{ domains => { 'a.example' => 1 } }, 'domains an object'],
    [{ domains => [$have[0], 5] }, 'a number among them'],
    [{ domains => [$have[0], undef] }, 'a null among them'],
    [{ domains => [$have[0], ['b.example']] }, 'an array among them'],
    [{ domains => [$have[0], '-bad.example'] }, 'a bad name among them'],
    [{ domains => ['a..example'] }, 'only a bad name'],
    [[$have[0]], 'an array body'],
) {
    my ($body, $what) = @$case;
    cs_json_error(cs_req('proxy', 'POST', '/v1/bundles', body => $body),
                  400, "POST /v1/bundles, $what: 400 JSON");
}

no_plaintext_keys();
done_testing();
