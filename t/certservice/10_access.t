#
# Who may call what: client certificates map to roles (admin by SHA-256
# fingerprint, proxies by subject DN, t/certservice/pki/roles.conf); a proxy
# may not call admin endpoints; no certificate, or one with no role, gets
# nothing; http-01 challenges need no role; wrong methods get 405 with
# Allow; every error is JSON.
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

# A domain to read, and a lease to release, made by the rightful roles.
my $dom = uniq_name('access');
my $res = cs_req('admin', 'PUT', "/v1/domains/$dom");
is($res->{status}, 201, "admin adds $dom") or diag($res->{body});
my $serial = $res->{json}{serial};
my $head = feed_head();

# Every endpoint, with a body where it takes one.  {admin} marks the
# admin-only ones; ok: what the admin gets.
my $lease_pool = 'access-' . $$;
my @endpoints = (
    # method, path, body, admin-only, admin's status
    ['GET',    '/v1/domains',                      undef, 1, 200],
    ['GET',    "/v1/domains/$dom",                 undef, 1, 200],
    ['PUT',    '/v1/domains/' . uniq_name('acc-new'), {}, 1, 201],
    ['PUT',    "/v1/domains/$dom/certificate",
               { chain_pem => 'x', key_pem => 'y' }, 1, 400],
    ['GET',    '/v1/changes?since=0&limit=1',      undef, 0, 200],
    ['GET',    "/v1/bundles/$dom",                 undef, 0, 200],
    ['POST',   '/v1/bundles', { domains => [$dom] },     0, 200],
    # tls-alpn-01 (role proxy): no challenge in progress.
    ['GET',    "/v1/acme-tls/$dom",                undef, 0, 404],
    ['POST',   "/v1/pools/$lease_pool/leases",
               { host => 'acc-h1', ttl => 30 },         0, 201],
    ['DELETE', "/v1/pools/$lease_pool/leases/nolease", undef, 0, 404],
    ['POST',   '/v1/hosts/acc-h1/report',
               { pool => $lease_pool, seq => 0, state => 'idle' }, 0, 204],
    # Last: the admin really deletes it.
    ['DELETE', "/v1/domains/$dom",                 undef, 1, 200],
);

sub call {
    my ($who, $e, %o) = @_;
    my ($m, $path, $body) = @$e;
    return cs_req($who, $m, $path, (defined $body ? (body => $body) : ()),
                  %o);
}

# --- No client certificate ---------------------------------------------------
# SSLVerifyClient require: the TLS handshake is refused, no HTTP at all.
for my $e (@endpoints[0, 4]) {
    my $r = call(undef, $e);
    ok($r->{status} == 0 && $r->{error},
       "no client certificate, $e->[0] $e->[1]: handshake refused")
        or diag("status $r->{status}: $r->{body}");
    note("no certificate: $r->{error}");
}
# SSLVerifyClient optional: the request arrives and gets 403 JSON.
for my $e (@endpoints) {
    my $r = call(undef, $e, vhost => 'certservice_opt');
    cs_json_error($r, 403, "no client certificate (optional): $e->[0] "
                  . "$e->[1] is 403", qr/client certificate/);
}
# With a certificate the optional virtual host works as usual.
$res = cs_req('proxy', 'GET', '/v1/changes?limit=1',
              vhost => 'certservice_opt');
is($res->{status}, 200, 'optional virtual host: a proxy certificate works');

# --- A verified certificate that maps to no role ----------------------------
for my $e (@endpoints) {
    my $r = call('norole', $e);
    cs_json_error($r, 403, "norole: $e->[0] $e->[1] is 403",
                  qr/no role/);
}

# --- Proxies (by DN) may not call admin endpoints ---------------------------
for my $who (qw(proxy proxy2)) {
    for my $e (grep { $_->[3] } @endpoints) {
        my $r = call($who, $e);
        cs_json_error($r, 403, "$who: admin endpoint $e->[0] $e->[1] is "
                      . "403", qr/admin/);
    }
}
# Not even with a wrong method: the role is checked first.
cs_json_error(cs_req('proxy', 'PATCH', "/v1/domains/$dom"), 403,
              'proxy: PATCH on an admin endpoint is 403, not 405');

# Nothing of that changed anything.
$res = cs_req('admin', 'GET', "/v1/domains/$dom");
ok($res->{status} == 200 && ($res->{json}{serial} // '') eq $serial,
   'the refused requests left the domain as it was');
is(feed_head(), $head, 'the refused requests appended no change');
(my $newdom = $endpoints[2][1]) =~ s{.*/}{};
$res = cs_req('admin', 'GET', "/v1/domains/$newdom");
is($res->{status}, 404, 'the refused PUT created no domain');

# --- Proxies may call the proxy endpoints ------------------------------------
for my $who (qw(proxy proxy2)) {
    my $r = cs_req($who, 'GET', '/v1/changes?limit=1');
    is($r->{status}, 200, "$who: GET /v1/changes is 200");
    $r = cs_req($who, 'GET', "/v1/bundles/$dom");
    is($r->{status}, 200, "$who: GET /v1/bundles/DOMAIN is 200");
    # tls-alpn-01: a proxy may ask; none in progress is 404 JSON.
    cs_json_error(cs_req($who, 'GET', "/v1/acme-tls/$dom"), 404,
                  "$who: GET /v1/acme-tls/DOMAIN without a challenge is "
                  . "404 JSON", qr/no tls-alpn-01 challenge/);
}
cs_json_error(cs_req('proxy', 'GET', '/v1/acme-tls/not..a.domain'), 400,
              'GET /v1/acme-tls/ with a bad name is 400 JSON');

# --- The admin may call every endpoint --------------------------------------
for my $e (@endpoints) {
    my $r = call('admin', $e);
    is($r->{status}, $e->[4], "admin: $e->[0] $e->[1] is $e->[4]")
        or diag($r->{body});
}

# --- Role rules (certservice_opt maps by subject DN only) -------------------
# admin matches a proxy rule and an admin rule: the strongest role wins.
my $dopt = uniq_name('access-opt');
is(cs_req('admin', 'PUT', "/v1/domains/$dopt", vhost => 'certservice_opt')
   ->{status}, 201, 'a certificate matching a proxy and an admin rule is '
   . 'admin');
is(cs_req('admin', 'DELETE', "/v1/domains/$dopt", vhost => 'certservice_opt')
   ->{status}, 200, '... and may delete');
is(cs_req('proxy', 'GET', '/v1/changes?limit=1', vhost => 'certservice_opt')
   ->{status}, 200, 'proxy by DN is a proxy');
cs_json_error(cs_req('proxy', 'PUT', "/v1/domains/$dopt",
                     vhost => 'certservice_opt'), 403,
              '... and not an admin');
cs_json_error(cs_req('proxy2', 'GET', '/v1/changes?limit=1',
                     vhost => 'certservice_opt'), 403,
              'a DN rule must match the whole DN (CN=proxy2,O=certsuite '
              . 'does not match CN=proxy2,O=certsuite test)', qr/no role/);
cs_json_error(cs_req('norole', 'GET', '/v1/changes?limit=1',
                     vhost => 'certservice_opt'), 403,
              'a DN rule is exact (cn=norole,... does not match '
              . 'CN=norole,...)', qr/no role/);

# --- http-01 challenges: no role needed, nothing in progress -> 404 JSON ----
for my $who ('admin', 'proxy', 'norole') {
    cs_json_error(cs_req($who, 'GET', '/acme-challenge/abcDEF_123-x'), 404,
                  "$who: GET /acme-challenge/TOKEN is 404 JSON");
}
cs_json_error(cs_req(undef, 'GET', '/acme-challenge/abcDEF_123-x',
                     vhost => 'certservice_opt'), 404,
              'no certificate: GET /acme-challenge/TOKEN is 404 JSON, '
              . 'not 403');

# --- Wrong methods: 405 with Allow -----------------------------------------
my $d2 = uniq_name('access-m');
my @methods = (
    # who, method, path, Allow
    ['admin', 'POST',   "/v1/domains/$d2",              'GET, PUT, DELETE'],
    ['admin', 'PATCH',  "/v1/domains/$d2",              'GET, PUT, DELETE'],
    ['admin', 'PUT',    '/v1/domains',                  'GET'],
    ['admin', 'DELETE', '/v1/domains',                  'GET'],
    ['admin', 'GET',    "/v1/domains/$d2/certificate",  'PUT'],
    ['admin', 'POST',   "/v1/domains/$d2/certificate",  'PUT'],
    ['proxy', 'POST',   '/v1/changes',                  'GET'],
    ['proxy', 'DELETE', '/v1/changes',                  'GET'],
    ['proxy', 'GET',    '/v1/bundles',                  'POST'],
    ['proxy', 'PUT',    "/v1/bundles/$d2",              'GET'],
    ['proxy', 'GET',    '/v1/pools/p1/leases',          'POST'],
    ['proxy', 'DELETE', '/v1/pools/p1/leases',          'POST'],
    ['proxy', 'GET',    '/v1/pools/p1/leases/x1',       'DELETE'],
    ['proxy', 'POST',   '/v1/pools/p1/leases/x1',       'DELETE'],
    ['proxy', 'GET',    '/v1/hosts/h1/report',          'POST'],
    ['proxy', 'PUT',    '/v1/hosts/h1/report',          'POST'],
    ['proxy', 'POST',   "/v1/acme-tls/$d2",             'GET'],
);
for my $m (@methods) {
    my ($who, $method, $path, $allow) = @$m;
    my $r = cs_req($who, $method, $path,
                   ($method =~ /^(POST|PUT)$/ ? (body => {}) : ()));
    cs_json_error($r, 405, "$method $path is 405 JSON");
    is($r->{headers}{allow} // '', $allow, "$method $path: Allow: $allow");
}
is(cs_req('admin', 'GET', "/v1/domains/$d2")->{status}, 404,
   'a refused POST created nothing');

# --- Unknown endpoints: 404 JSON -------------------------------------------
for my $path ('/', '/v1', '/v1/nothing', '/v2/changes', '/v1/changes/1',
              '/v1/domains/a.example/certificate/x', '/v1/pools/p1',
              '/v1/hosts/h1', '/v1/hosts/h1/report/x', '/acme-challenge',
              '/acme-challenge/a/b', '/v1/bundles/a.example/x') {
    cs_json_error(cs_req('admin', 'GET', $path), 404,
                  "GET $path is 404 JSON");
}

# --- Responses are not cached, and JSON ------------------------------------
$res = cs_req('proxy', 'GET', '/v1/changes?limit=1');
is($res->{headers}{'cache-control'} // '', 'no-store',
   'responses carry Cache-Control: no-store');
like($res->{headers}{'content-type'} // '', qr{^application/json},
     'responses are application/json');

no_plaintext_keys();
done_testing();
