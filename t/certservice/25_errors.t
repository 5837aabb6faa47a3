#
# When issuing fails: 503 with the reason, the domain's state "error" and
# last_error (GET /v1/domains[/DOMAIN]), no change in the feed, and an
# existing certificate stays served.  certservice_noca has no issuer
# (CertServiceLocalCA), certservice_nowrap no wrapping certificate.
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

my $head = feed_head();

# --- A new domain that cannot be issued ---------------------------------------
my $e = uniq_name('err');
my $res = cs_req('admin', 'PUT', "/v1/domains/$e", vhost => 'certservice_noca');
cs_json_error($res, 503, 'PUT without an issuer: 503 JSON', qr/no issuer/);
$res = cs_req('admin', 'GET', "/v1/domains/$e");
is($res->{status}, 200, 'the domain is known, from any virtual host');
my $j = $res->{json} || {};
is($j->{state}, 'error', '... in state error');
like($j->{last_error} // '', qr/no issuer configured/, '... with last_error');
is($j->{serial}, undef, '... no serial');
is($j->{not_after}, 0, '... no expiry');
cs_json_error(cs_req('proxy', 'GET', "/v1/bundles/$e"), 404,
              'no bundle for it');
$res = cs_req('proxy', 'POST', '/v1/bundles', body => { domains => [$e] });
is_deeply($res->{json}{missing}, [$e], 'batched: missing');
my ($listed) = grep { $_->{domain} eq $e }
               @{ cs_req('admin', 'GET', '/v1/domains?limit=1000')->{json}{domains} };
is($listed->{state}, 'error', 'the list shows its state');
is(feed_head(), $head, 'a failed issue appends no change');

# Issuing it where an issuer is configured clears the error.
$res = cs_req('admin', 'PUT', "/v1/domains/$e");
is($res->{status}, 200, 'then PUT with an issuer: 200 (the domain existed)');
is($res->{json}{state}, 'active', '... active');
is($res->{json}{last_error}, undef, '... last_error cleared');
is(feed_head(), $head + 1, '... one change');
$head++;

# --- An active domain whose re-issue fails keeps its certificate --------------
my $before = cs_req('proxy', 'GET', "/v1/bundles/$e")->{json};
$res = cs_req('admin', 'PUT', "/v1/domains/$e", vhost => 'certservice_noca');
cs_json_error($res, 503, 're-issue without an issuer: 503');
$j = cs_req('admin', 'GET', "/v1/domains/$e")->{json} || {};
is($j->{state}, 'error', 'state error');
like($j->{last_error} // '', qr/no issuer/, 'last_error says why');
is($j->{serial}, $before->{serial}, 'the serial is the old one');
is($j->{not_after}, $before->{not_after}, '... and so is the expiry');
is_deeply(cs_req('proxy', 'GET', "/v1/bundles/$e")->{json}, $before,
          'proxies still get the old bundle');
is(feed_head(), $head, 'no change');
$res = cs_req('admin', 'PUT', "/v1/domains/$e");
ok($res->{status} == 200 && $res->{json}{state} eq 'active'
   && !defined $res->{json}{last_error}, 'a good re-issue makes it active');
$head++;

# --- No wrapping certificate: nothing can be sealed ---------------------------
my $w = uniq_name('err-nowrap');
$res = cs_req('admin', 'PUT', "/v1/domains/$w", vhost => 'certservice_nowrap');
cs_json_error($res, 503, 'PUT without a wrapping certificate: 503',
              qr/CertServiceWrapCertificate/);
my $key = make_key('ec');
$res = cs_req('admin', 'PUT', "/v1/domains/$w/certificate",
              vhost => 'certservice_nowrap',
              body => { chain_pem => make_cert($key, names => [$w]),
                        key_pem => $key });
cs_json_error($res, 503, 'import without a wrapping certificate: 503',
              qr/CertServiceWrapCertificate/);
cs_json_error(cs_req('admin', 'GET', "/v1/domains/$w"), 404,
              'nothing was stored');
is(feed_head(), $head, 'no change');
# Reading works there all the same.
is(cs_req('proxy', 'GET', "/v1/bundles/$e", vhost => 'certservice_nowrap')
   ->{status}, 200, 'bundles are served without a wrapping certificate');

no_plaintext_keys(key_der($key));
done_testing();
