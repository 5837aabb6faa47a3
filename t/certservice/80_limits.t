#
# Request bodies: larger than CertServiceMaxBodySize (16384 here) is 413,
# announced (Content-Length) or not (chunked); malformed JSON, or JSON that
# is not an object, is 400; errors are JSON; nothing is stored.
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

my $MAX = 16384;
my $tag = uniq_name('x') =~ s/^x-([^.]+)\..*/$1/r;
my $head = feed_head();

# A JSON object of exactly N bytes: MEMBERS (raw JSON, may be empty) and a
# padding member.
sub json_of {
    my ($n, $members) = @_;
    $members = defined $members ? "$members," : '';
    my $pad = $n - length('{"pad":""}') - length $members;
    die "too small" if $pad < 0;
    return '{' . $members . '"pad":"' . ('x' x $pad) . '"}';
}

# Every endpoint that reads a body.
my $dnew = uniq_name('lim');
my @endpoints = (
    ['admin', 'PUT',  "/v1/domains/$dnew"],
    ['admin', 'PUT',  "/v1/domains/$dnew/certificate"],
    ['proxy', 'POST', '/v1/bundles'],
    ['proxy', 'POST', "/v1/pools/lim-$tag/leases"],
    ['proxy', 'POST', "/v1/hosts/lim-$tag/report"],
);

# --- Too large ------------------------------------------------------------------
for my $e (@endpoints) {
    my ($who, $m, $path) = @$e;
    for my $size ($MAX + 1, 200_000) {
        cs_json_error(cs_req($who, $m, $path, body => json_of($size)), 413,
                      "$m $path with $size bytes: 413 JSON",
                      qr/CertServiceMaxBodySize/);
        cs_json_error(cs_req($who, $m, $path, body => json_of($size),
                             chunked => 1), 413,
                      "... chunked: 413 JSON", qr/CertServiceMaxBodySize/);
    }
}
cs_json_error(cs_req('admin', 'GET', "/v1/domains/$dnew"), 404,
              'nothing was stored');

# Exactly at the limit is fine.
is(length json_of($MAX), $MAX, "a body of $MAX bytes");
my $res = cs_req('admin', 'PUT', "/v1/domains/$dnew", body => json_of($MAX));
is($res->{status}, 201, "PUT with a body of exactly $MAX bytes: 201")
    or diag($res->{body});
$res = cs_req('admin', 'PUT', "/v1/domains/$dnew",
              body => json_of($MAX, '"key_type":"rsa-2048"'), chunked => 1);
is($res->{status}, 200, '... chunked too, and the body is read')
    or diag($res->{body});
is($res->{json}{key_type}, 'rsa-2048', '... whole');
$res = cs_req('proxy', 'POST', '/v1/bundles',
              body => json_of($MAX, qq{"domains":["$dnew"]}));
is($res->{status}, 200, "POST /v1/bundles with $MAX bytes: 200");
is($res->{json}{bundles}[0]{domain}, $dnew, '... and it is answered');

# --- Malformed JSON -------------------------------------------------------------
my @bad = (
    ['{',                     'an unfinished object',   qr/malformed JSON/],
    ['{"domains":',           'a missing value',        qr/malformed JSON/],
    ['{"a":1,}',              'a trailing comma',       qr/malformed JSON/],
    ["{'a':1}",               'single quotes',          qr/malformed JSON/],
    ['{"a":1,"a":2}',         'a duplicate key',        qr/malformed JSON/],
    ['{} {}',                 'two objects',            qr/malformed JSON/],
    ['{}x',                   'trailing garbage',       qr/malformed JSON/],
    ["{\"a\":\"\xff\xfe\"}",  'invalid UTF-8',          qr/malformed JSON/],
    ['{"a":"\u0000"}',        'a NUL character',        qr/malformed JSON/],
    ['nul',                   'not JSON',               qr/malformed JSON/],
    ['[]',                    'an array',               qr/JSON|object/],
    ['[{"domains":[]}]',      'an object in an array',  qr/JSON|object/],
    ['"text"',                'a string',               qr/JSON|object/],
    ['42',                    'a number',               qr/JSON|object/],
    ['null',                  'null',                   qr/JSON|object/],
);
my $dbad = uniq_name('lim-bad');
my @bad_endpoints = (@endpoints[1 .. 4],
                     ['admin', 'PUT', "/v1/domains/$dbad"]);
for my $e (@bad_endpoints) {
    my ($who, $m, $path) = @$e;
    for my $b (@bad) {
        my ($body, $what, $match) = @$b;
        cs_json_error(cs_req($who, $m, $path, body => $body), 400,
                      "$m $path, $what: 400 JSON", $match);
    }
}
cs_json_error(cs_req('admin', 'GET', "/v1/domains/$dbad"), 404,
              'a PUT with malformed JSON stored nothing');

# An empty body is an empty object for PUT /v1/domains/DOMAIN (no options).
my $dempty = uniq_name('lim-empty');
$res = cs_req('admin', 'PUT', "/v1/domains/$dempty", body => '');
is($res->{status}, 201, 'PUT /v1/domains/DOMAIN with an empty body: 201');
cs_req('admin', 'DELETE', "/v1/domains/$dempty");
# ... and where fields are required, their absence is 400.
cs_json_error(cs_req('proxy', 'POST', '/v1/bundles', body => ''), 400,
              'POST /v1/bundles with an empty body: 400');

# Only the writes that succeeded are in the feed: PUT, re-PUT, PUT, DELETE.
is(feed_head(), $head + 4, 'the refused requests appended no change');

no_plaintext_keys();
done_testing();
