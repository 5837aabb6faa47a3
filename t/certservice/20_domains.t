#
# Domains: add (PUT issues a certificate with the local CA), re-issue, read,
# list, delete; names normalised and validated at the API edge; the key is
# sealed to the wrapping certificate (wrap1 on this virtual host) as a CMS
# AuthEnvelopedData that `openssl cms -decrypt` opens to the certificate's
# key, and never appears in plaintext.
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

my $LIFETIME = 240 * 3600;      # CertServiceCertificateLifetime 240h

my $head = feed_head();

# --- Add ---------------------------------------------------------------------
my $d = uniq_name('add');
my $t0 = time;
my $res = cs_req('admin', 'PUT', "/v1/domains/$d");
is($res->{status}, 201, "PUT /v1/domains/$d adds it: 201") or diag($res->{body});
my $j = $res->{json} || {};
is($j->{domain}, $d, 'the answer names the domain');
is($j->{state}, 'active', 'state active');
is($j->{key_type}, 'ec-p256', 'key type ec-p256 by default');
like($j->{serial} // '', qr/^[0-9a-f]+$/, 'a hex serial');
ok(($j->{seq} // 0) > $head, 'seq beyond the feed head before');
is($j->{last_error}, undef, 'no last error');
ok(!exists $j->{key_cms} && !exists $j->{chain_pem},
   'the admin view carries neither key nor chain');
is($j->{not_after} - $j->{not_before}, $LIFETIME + 60,
   'lifetime as configured (240h, valid from a minute ago), not 90 days');
ok(abs($j->{not_before} + 60 - $t0) <= 5, 'valid from about now');
my ($serial1, $seq1) = @$j{qw(serial seq)};

# The admin view of it.
$res = cs_req('admin', 'GET', "/v1/domains/$d");
is($res->{status}, 200, 'GET /v1/domains/DOMAIN: 200');
is($res->{json}{serial}, $serial1, '... same serial');
is($res->{json}{seq}, $seq1, '... same seq');
is(ref $res->{json}{hosts}, 'ARRAY', '... with a hosts array');
ok(!exists $res->{json}{key_cms}, '... and no key');

# --- The bundle a proxy gets -------------------------------------------------
$res = cs_req('proxy', 'GET', "/v1/bundles/$d");
is($res->{status}, 200, 'GET /v1/bundles/DOMAIN as proxy: 200');
my $b = $res->{json} || {};
is_deeply([sort keys %$b],
          [sort qw(domain seq serial not_before not_after key_type
                   chain_pem key_cms)],
          'the bundle has exactly the contract\'s fields');
is($b->{serial}, $serial1, 'bundle serial');
is($b->{seq}, $seq1, 'bundle seq');
my @certs = pem_certs($b->{chain_pem});
is(scalar @certs, 2, 'chain: leaf and issuing CA');
my $leaf = cert_info($certs[0]) || {};
is($leaf->{serial}, $serial1, 'the leaf has the serial');
is_deeply($leaf->{san}, [$d], 'the leaf names the domain (DNS SAN)');
is($leaf->{not_after}, $b->{not_after}, 'not_after is the leaf\'s');
is($leaf->{not_before}, $b->{not_before}, 'not_before is the leaf\'s');
my $ca = cert_info($certs[1]) || {};
like($ca->{subject} // '', qr/CN=certsuite test issuing CA/,
     'the second certificate is the local CA');

# The envelope.
my $info = envelope_info($b->{key_cms});
is($info->{type}, 'id-smime-ct-authEnvelopedData',
   'key_cms is a CMS AuthEnvelopedData');
is($info->{cek}, 'aes-256-gcm', 'content encrypted with AES-256-GCM');
is_deeply($info->{recipients}, ['wrap1'], 'one recipient: wrap1');
is_deeply($info->{kek}, ['rsaesOaep'], 'key transport RSA-OAEP');
ok($info->{oaep_sha256}, 'OAEP with SHA-256 and MGF1-SHA-256');
my @why = envelope_check($b->{key_cms}, $b->{chain_pem}, ['wrap1'],
                         ['wrap2']);
ok(!@why, 'openssl cms -decrypt with wrap1 yields the certificate\'s key '
   . '(PKCS#8); wrap2 cannot open it') or diag(join "\n", @why);
my $key1 = envelope_open($b->{key_cms}, 'wrap1');
is(is_pkcs8($key1), 'id-ecPublicKey', 'an EC key in PKCS#8');

# --- Re-issue ----------------------------------------------------------------
$res = cs_req('admin', 'PUT', "/v1/domains/$d", body => {});
is($res->{status}, 200, 'PUT on an existing domain re-issues: 200');
my $serial2 = $res->{json}{serial} // '';
isnt($serial2, $serial1, 'a new serial');
ok(($res->{json}{seq} // 0) > $seq1, 'a new seq');
$res = cs_req('proxy', 'GET', "/v1/bundles/$d");
is($res->{json}{serial}, $serial2, 'the bundle is the new certificate');
is(cert_info($res->{json}{chain_pem})->{serial}, $serial2,
   '... and so is its leaf');
@why = envelope_check($res->{json}{key_cms}, $res->{json}{chain_pem},
                      ['wrap1'], ['wrap2']);
ok(!@why, 'the new envelope opens to the new certificate\'s key')
    or diag(join "\n", @why);
my $key2 = envelope_open($res->{json}{key_cms}, 'wrap1');
ok(defined $key2 && $key2 ne $key1, 're-issuing made a new key pair');

# --- Key types -----------------------------------------------------------------
my $drsa = uniq_name('rsa');
$res = cs_req('admin', 'PUT', "/v1/domains/$drsa",
              body => { key_type => 'rsa-2048' });
is($res->{status}, 201, 'PUT with {"key_type":"rsa-2048"}: 201');
is($res->{json}{key_type}, 'rsa-2048', '... key_type rsa-2048');
$res = cs_req('proxy', 'GET', "/v1/bundles/$drsa");
is($res->{json}{key_type}, 'rsa-2048', 'the bundle says rsa-2048');
my $krsa = envelope_open($res->{json}{key_cms}, 'wrap1');
is(is_pkcs8($krsa), 'rsaEncryption', 'its envelope holds an RSA PKCS#8 key');
@why = envelope_check($res->{json}{key_cms}, $res->{json}{chain_pem},
                      ['wrap1']);
ok(!@why, '... the certificate\'s') or diag(join "\n", @why);

my $before = feed_head();
for my $kt ('dsa', 'ec-p384', 'RSA-2048 ', 5, [], undef) {
    my $dk = uniq_name('badkt');
    my $r = cs_req('admin', 'PUT', "/v1/domains/$dk",
                   body => { key_type => $kt });
    cs_json_error($r, 400, 'key_type ' . (defined $kt ? "'$kt'" : 'null')
                  . ' is 400', qr/key_type/);
    is(cs_req('admin', 'GET', "/v1/domains/$dk")->{status}, 404,
       '... and nothing is stored');
}
is(feed_head(), $before, 'refused key types appended no change');

# --- Names are normalised ----------------------------------------------------
my %norm;
{
    my $base = uniq_name('norm');
    # Upper case and the root's trailing dot.
    $norm{uc($base) . '.'} = $base;
    # An internationalised name: U-labels become A-labels.
    my $idn = uniq_name('idn');
    $norm{"b%C3%BCcher.$idn"} = "xn--bcher-kva.$idn";
    # A wildcard.
    my $w = uniq_name('wild');
    $norm{"*.$w"} = "*.$w";
    $norm{"*.\U$w\E."} = "*.$w";
}
for my $raw (sort keys %norm) {
    my $want = $norm{$raw};
    my $r = cs_req('admin', 'PUT', "/v1/domains/$raw");
    ok($r->{status} == 201 || $r->{status} == 200,
       "PUT /v1/domains/$raw is stored") or diag($r->{body});
    is($r->{json}{domain}, $want, "... as $want");
    $r = cs_req('proxy', 'GET', "/v1/bundles/$raw");
    is($r->{json}{domain}, $want, "GET /v1/bundles/$raw finds $want");
    is_deeply(cert_info($r->{json}{chain_pem} // '')->{san}, [$want],
              "... whose certificate names $want");
    @why = envelope_check($r->{json}{key_cms}, $r->{json}{chain_pem},
                          ['wrap1']);
    ok(!@why, '... and whose envelope opens to its key')
        or diag(join "\n", @why);
}

# --- Bad names: 400, nothing stored, nothing in the feed ---------------------
my $long_label = 'a' x 64;
my $long_name = join('.', ('abcdefghi') x 25) . '.example';    # 257
my @bad = (
    '-lead.example', 'trail-.example', 'a..b.example', 'under_score.example',
    'sp%20ace.example', 'tab%09.example', 'bang!.example', 'semi;colon.example',
    'quote%22.example', 'lt%3C.example', 'pct%25.example',
    '*.*.example', 'a.*.example', '*a.example', 'a*.example', '*',
    '*.', 'example', 'localhost', '1.2.3.4', 'example.123', '127.0.0.1',
    "$long_label.example", $long_name, 'ab--cd.example', 'xn--zz.example',
    '%FF%FE.example', '%C3.example', '.example',
    'a.example..', 'xn--.example', '[::1]', 'a%2Cb.example',
);
$before = feed_head();
my $list_before = cs_req('admin', 'GET', '/v1/domains?limit=1000')->{body};
for my $name (@bad) {
    my $r = cs_req('admin', 'PUT', "/v1/domains/$name");
    cs_json_error($r, 400, "PUT /v1/domains/$name is 400",
                  qr/invalid domain name/);
    $r = cs_req('admin', 'GET', "/v1/domains/$name");
    cs_json_error($r, 400, "GET /v1/domains/$name is 400");
    $r = cs_req('proxy', 'GET', "/v1/bundles/$name");
    cs_json_error($r, 400, "GET /v1/bundles/$name is 400");
}
# Good names at the limits are fine.
my $lim = ('a' x 63) . '.' . uniq_name('lim');
$res = cs_req('admin', 'PUT', "/v1/domains/$lim");
is($res->{status}, 201, 'a 63-character label is fine');
cs_req('admin', 'DELETE', "/v1/domains/$lim");
$before += 2;
is(feed_head(), $before, 'bad names appended no change');
is(cs_req('admin', 'GET', '/v1/domains?limit=1000')->{body}, $list_before,
   'bad names stored nothing: the domain list is unchanged');

# --- The list ----------------------------------------------------------------
my %mine = map { $_ => 1 } $d, $drsa, values %norm;
my (@seen, $after);
for (my $pages = 0; $pages < 1000; $pages++) {
    my $q = '/v1/domains?limit=2' . (defined $after ? "&after=$after" : '');
    my $r = cs_req('admin', 'GET', $q);
    is($r->{status}, 200, "GET $q") if $pages < 2;
    my $list = $r->{json}{domains} || [];
    last unless @$list;
    ok(@$list <= 2, 'at most limit domains') if $pages < 2;
    push @seen, map { $_->{domain} } @$list;
    ok(!grep({ exists $_->{key_cms} || exists $_->{chain_pem} } @$list),
       'no key or chain in the list') if $pages < 2;
    is($r->{json}{next}, $list->[-1]{domain}, 'next is the last name')
        if $pages < 2;
    $after = $r->{json}{next};
}
is_deeply(\@seen, [sort @seen], 'the list is ordered by name');
my %count;
$count{$_}++ for @seen;
ok(!grep({ $_ > 1 } values %count), 'paging repeats no name');
ok(!grep({ !$count{$_} } keys %mine), 'every domain added here is listed');
for my $c (['limit=1001', 'limit above 1000'], ['limit=0', 'limit 0'],
           ['limit=x', 'limit not a number'],
           ['after=-x.example', 'after= a bad name']) {
    my ($query, $what) = @$c;
    cs_json_error(cs_req('admin', 'GET', "/v1/domains?$query"), 400,
                  "$what is 400");
}

# --- Delete ------------------------------------------------------------------
$before = feed_head();
$res = cs_req('admin', 'DELETE', "/v1/domains/$d");
is($res->{status}, 200, 'DELETE /v1/domains/DOMAIN: 200');
is($res->{json}{domain}, $d, '... names it');
is($res->{json}{op}, 'delete', '... op delete');
ok(($res->{json}{seq} // 0) > $before, '... with a new seq');
for my $c (['admin', 'GET', "/v1/domains/$d", 'then GET /v1/domains/DOMAIN'],
           ['proxy', 'GET', "/v1/bundles/$d", 'and GET /v1/bundles/DOMAIN'],
           ['admin', 'DELETE', "/v1/domains/$d", 'deleting it again'],
           ['admin', 'DELETE', '/v1/domains/' . uniq_name('never'),
            'deleting an unknown domain']) {
    my ($who, $method, $path, $what) = @$c;
    cs_json_error(cs_req($who, $method, $path), 404, "$what is 404");
}
is(feed_head(), $res->{json}{seq}, 'the failed deletes appended no change');
# It can come back.
$res = cs_req('admin', 'PUT', "/v1/domains/\U$d");
is($res->{status}, 201, 'a deleted domain can be added again: 201');

no_plaintext_keys();
done_testing();
