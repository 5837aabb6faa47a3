#
# PUT /v1/domains/DOMAIN/certificate: importing an existing certificate
# chain and key.  The key is sealed on arrival (the envelope opens to
# exactly the key sent); a key that does not match, a chain out of order,
# a certificate not valid for the name or not valid now, unreadable PEM:
# 400 and nothing stored (GET shows nothing changed, the change feed has no
# new entry).
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

my $ca_pem = read_file(cs_pki('ca.crt'));
my @imported_keys;

sub import_cert {
    my ($domain, $chain, $key, %o) = @_;
    push @imported_keys, key_der($key) if defined $key && $key =~ /BEGIN/;
    return cs_req($o{who} || 'admin', 'PUT', "/v1/domains/$domain/certificate",
                  body => { chain_pem => $chain, key_pem => $key });
}

# --- A good import of a new domain -------------------------------------------
my $d = uniq_name('imp');
my $key = make_key('ec');
my $cert = make_cert($key, names => [$d]);
my $serial = cert_info($cert)->{serial};
my $head = feed_head();
my $res = import_cert($d, $cert . $ca_pem, $key);
is($res->{status}, 201, 'import for a new domain: 201') or diag($res->{body});
is($res->{json}{domain}, $d, '... names the domain');
is($res->{json}{serial}, $serial, '... with the imported serial');
is($res->{json}{key_type}, 'ec-p256', '... key type ec-p256');
ok(!exists $res->{json}{key_cms}, '... and does not echo the key');
is(feed_head(), $head + 1, 'the import appended one change');

$res = cs_req('proxy', 'GET', "/v1/bundles/$d");
is($res->{status}, 200, 'the imported bundle is served');
is($res->{json}{serial}, $serial, '... with the imported certificate');
my @certs = pem_certs($res->{json}{chain_pem});
is(scalar @certs, 2, '... and the chain sent (leaf, CA)');
is($certs[0], (pem_certs($cert))[0], '... leaf unchanged');
is($certs[1], (pem_certs($ca_pem))[0], '... CA unchanged');
my $opened = envelope_open($res->{json}{key_cms}, 'wrap1');
ok(defined $opened && $opened eq key_der($key),
   'the envelope opens (wrap1) to exactly the imported key, PKCS#8 DER');
ok(is_pkcs8($opened), '... which is PKCS#8');
my @why = envelope_check($res->{json}{key_cms}, $res->{json}{chain_pem},
                         ['wrap1'], ['wrap2']);
ok(!@why, '... matching the certificate, not open to wrap2')
    or diag(join "\n", @why);

# --- Re-import over an existing (issued) domain: RSA, leaf only --------------
my $d2 = uniq_name('imp-over');
is(cs_req('admin', 'PUT', "/v1/domains/$d2")->{status}, 201,
   'a domain issued by the local CA');
my $rkey = make_key('rsa');
my $rcert = make_cert($rkey, names => [$d2, "www.$d2"]);
$head = feed_head();
$res = import_cert($d2, $rcert, $rkey);
is($res->{status}, 200, 'import over an existing domain: 200')
    or diag($res->{body});
is($res->{json}{key_type}, 'rsa-2048', '... key type rsa-2048');
is($res->{json}{serial}, cert_info($rcert)->{serial}, '... the new serial');
is(feed_head(), $head + 1, '... one change');
$res = cs_req('proxy', 'GET', "/v1/bundles/$d2");
is(scalar(pem_certs($res->{json}{chain_pem})), 1, 'a leaf alone is a chain');
$opened = envelope_open($res->{json}{key_cms}, 'wrap1');
ok(defined $opened && $opened eq key_der($rkey),
   'the envelope opens to exactly the imported RSA key');

# An existing certificate may have a P-384 key (CertService itself makes
# P-256 and RSA-2048 only).
my $d4 = uniq_name('imp-p384');
my $k4 = make_key('p384');
$res = import_cert($d4, make_cert($k4, names => [$d4]) . $ca_pem, $k4);
is($res->{status}, 201, 'importing a P-384 certificate: 201')
    or diag($res->{body});
is($res->{json}{key_type}, 'ec-p384', '... key type ec-p384');
$res = cs_req('proxy', 'GET', "/v1/bundles/$d4");
is($res->{json}{key_type}, 'ec-p384', '... in the bundle too');
$opened = envelope_open($res->{json}{key_cms}, 'wrap1');
ok(defined $opened && $opened eq key_der($k4),
   '... whose envelope opens to exactly the imported key');

# A traditional (SEC1) EC key PEM is read too.
my $d3 = uniq_name('imp-sec1');
my $k3 = make_key('ec');
my $c3 = make_cert($k3, names => [$d3]);
my $sec1 = do {
    my $in = write_file(tmpdir() . '/sec1-in.pem', $k3);
    my ($rc, $out) = run_cmd('openssl', 'pkey', '-in', $in, '-traditional');
    $out;
};
like($sec1, qr/BEGIN EC PRIVATE KEY/, 'a SEC1 key PEM');
$res = import_cert($d3, $c3 . $ca_pem, $sec1);
is($res->{status}, 201, 'importing with a SEC1 key PEM: 201')
    or diag($res->{body});
$res = cs_req('proxy', 'GET', "/v1/bundles/$d3");
$opened = envelope_open($res->{json}{key_cms}, 'wrap1');
ok(defined $opened && $opened eq key_der($k3),
   '... sealed as PKCS#8 all the same');

# Wildcards: the leaf's wildcard covers a name below it, and the wildcard
# name itself.
my $wbase = uniq_name('impw');
my $wkey = make_key('ec');
my $wcert = make_cert($wkey, names => ["*.$wbase"]);
is(import_cert("a.$wbase", $wcert . $ca_pem, $wkey)->{status}, 201,
   'a *.X certificate imports for a.X');
is(import_cert("*.$wbase", $wcert . $ca_pem, $wkey)->{status}, 201,
   'a *.X certificate imports for *.X');

# --- Bad imports: 400, nothing stored ----------------------------------------
my $other = make_key('ec');
my $now = time;
my $k256 = make_key('k256');
my $r1024 = make_key('rsa1024');
my $enc_key = do {
    my $in = write_file(tmpdir() . '/enc-in.pem', $key);
    my ($rc, $out) = run_cmd('openssl', 'pkey', '-in', $in, '-aes256',
                             '-passout', 'pass:secret');
    $out;
};
like($enc_key, qr/ENCRYPTED PRIVATE KEY/, 'an encrypted key PEM');
my $wrap1 = read_file(cs_pki('wrap1.crt'));

# Each: a name for the target, and how to make chain and key for it.
my @bad = (
    ['the key does not match the certificate',
     sub { my $n = shift; (make_cert($key, names => [$n]) . $ca_pem, $other) },
     qr/key does not match/],
    ['the chain is out of order (CA first)',
     sub { my $n = shift; ($ca_pem . make_cert($key, names => [$n]), $key) },
     qr/not in order|does not match/],
    ['the second certificate did not issue the first',
     sub { my $n = shift; (make_cert($key, names => [$n]) . $wrap1, $key) },
     qr/not in order/],
    ['the certificate is for another name',
     sub { (make_cert($key, names => [uniq_name('elsewhere')]) . $ca_pem,
            $key) },
     qr/not valid for the name/],
    ['the certificate is for a parent name',
     sub { my $n = shift; (make_cert($key, names => [$n =~ s/^[^.]+\.//r])
                           . $ca_pem, $key) },
     qr/not valid for the name/],
    ['a *.X certificate for a.b.X',
     sub { my $n = shift;
           (make_cert($key, names => ['*.' . ($n =~ s/^[^.]+\.[^.]+\.//r)])
            . $ca_pem, $key) },
     qr/not valid for the name/, 'a.b.'],
    ['the certificate has expired',
     sub { my $n = shift; (make_cert($key, names => [$n],
                                     start => gmstamp($now - 40 * 86400),
                                     end => gmstamp($now - 10 * 86400))
                           . $ca_pem, $key) },
     qr/expired/],
    ['the certificate is not yet valid',
     sub { my $n = shift; (make_cert($key, names => [$n],
                                     start => gmstamp($now + 10 * 86400),
                                     end => gmstamp($now + 40 * 86400))
                           . $ca_pem, $key) },
     qr/not yet valid/],
    ['a secp256k1 key (unsupported)',
     sub { my $n = shift; (make_cert($k256, names => [$n]) . $ca_pem, $k256) },
     qr/key type/],
    ['an RSA-1024 key (unsupported)',
     sub { my $n = shift; (make_cert($r1024, names => [$n]) . $ca_pem,
                           $r1024) },
     qr/key type/],
    ['an encrypted key',
     sub { my $n = shift; (make_cert($key, names => [$n]) . $ca_pem,
                           $enc_key) },
     qr/private key/],
    ['the chain is not PEM',
     sub { ("this is not a certificate\n", $key) }, qr/./],
    ['the chain is empty',
     sub { ('', $key) }, qr/./],
    ['the key is not PEM',
     sub { my $n = shift; (make_cert($key, names => [$n]) . $ca_pem,
                           "not a key\n") }, qr/private key/],
    ['the key is a certificate',
     sub { my $n = shift; (make_cert($key, names => [$n]) . $ca_pem,
                           $ca_pem) }, qr/private key/],
    ['the key is empty',
     sub { my $n = shift; (make_cert($key, names => [$n]) . $ca_pem, '') },
     qr/./],
    ['a truncated certificate',
     sub { my $n = shift; (substr(make_cert($key, names => [$n]), 0, 300),
                           $key) }, qr/./],
);

# Against a new name (must stay unknown) and an existing one (must keep its
# certificate).
my $existing = uniq_name('imp-keep');
is(cs_req('admin', 'PUT', "/v1/domains/$existing")->{status}, 201,
   'a domain to import over');
my $keep = cs_req('proxy', 'GET', "/v1/bundles/$existing")->{json};
$head = feed_head();
for my $case (@bad) {
    my ($what, $make, $match, $prefix) = @$case;
    for my $target ('new', 'existing') {
        my $n = $target eq 'new' ? uniq_name('imp-bad') : $existing;
        $n = ($prefix // '') . $n if $target eq 'new';
        my ($chain, $k) = $make->($n);
        my $r = import_cert($n, $chain, $k);
        cs_json_error($r, 400, "$what ($target domain): 400", $match);
        like($r->{json}{error} // '', qr/nothing stored/,
             '... saying nothing was stored');
        if ($target eq 'new') {
            cs_json_error(cs_req('admin', 'GET', "/v1/domains/$n"), 404,
                          '... and the domain is still unknown');
        }
        else {
            my $cur = cs_req('proxy', 'GET', "/v1/bundles/$existing")->{json};
            ok($cur->{serial} eq $keep->{serial}
               && $cur->{key_cms} eq $keep->{key_cms}
               && $cur->{seq} == $keep->{seq},
               '... and the domain keeps its certificate and key');
        }
    }
}
is(feed_head(), $head, 'no refused import appended a change');

# --- Bad bodies --------------------------------------------------------------
my $good_cert = make_cert($key, names => [$existing]) . $ca_pem;
for my $body ({}, { chain_pem => $good_cert }, { key_pem => $key },
              { chain_pem => 1, key_pem => $key },
              { chain_pem => $good_cert, key_pem => [] },
              { chain_pem => undef, key_pem => $key }) {
    my $r = cs_req('admin', 'PUT', "/v1/domains/$existing/certificate",
                   body => $body);
    cs_json_error($r, 400, 'body ' . join(',', sort keys %$body)
                  . ' without both strings: 400', qr/chain_pem/);
}
my $r = cs_req('admin', 'PUT', "/v1/domains/-bad.example/certificate",
               body => { chain_pem => $good_cert, key_pem => $key });
cs_json_error($r, 400, 'import for a bad name: 400', qr/invalid domain name/);
is(feed_head(), $head, 'no bad body appended a change');

no_plaintext_keys(@imported_keys);
done_testing();
