#
# A real HAProxy in front (TCP mode), as in production: send-proxy (v1),
# send-proxy-v2, and send-proxy-v2 with CRC32C, UNIQUE_ID, authority and
# SSL TLVs from a TLS-terminating frontend; curl connects from 127.0.0.5,
# which must come out as the client address.  Also curl's own
# --haproxy-protocol straight to httpd.
#
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use PPTest;

my $CLIENT = '127.0.0.5';

plan tests => 8 + 7 + 19 + 5,
     need(need_module('ssl'), need_module('headers'),
          { 'haproxy not found (set HAPROXY)' => sub { haproxy_bin() } },
          { 'curl not found' => sub {
                system('curl --version >/dev/null 2>&1') == 0 } });

my ($plain, $tls) = (pp_port('pp_plain'), pp_port('pp_tls'));
my %port = map { $_ => free_port() } qw(v1 v2 v2opts);
my $ca = Apache::Test::vars('sslca') . '/' . Apache::Test::vars('sslcaorg');

sub slurp {
    my $file = shift;
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    return scalar <$fh>;
}

my $hp = start_haproxy(
    ports => [values %port],
    files => { 'server.pem' => slurp("$ca/certs/server.crt")
                               . slurp("$ca/keys/server.pem") },
    cfg   => <<EOF);
listen v1
    bind 127.0.0.1:$port{v1}
    server apache 127.0.0.1:$plain send-proxy
listen v2
    bind 127.0.0.1:$port{v2}
    server apache 127.0.0.1:$tls send-proxy-v2
listen v2opts
    bind 127.0.0.1:$port{v2opts} ssl crt %DIR%/server.pem alpn http/1.1 verify optional ca-file $ca/certs/ca.crt
    unique-id-format pptest-%ci-%cp
    server apache 127.0.0.1:$plain send-proxy-v2 proxy-v2-options crc32c,unique-id,ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority
EOF

# from_haproxy(NAME, HEADERS, VERSION, PORT): five ok lines: the client's
# address twice (seen_as), the PROXY version, HAProxy's frontend PORT as
# DST_PORT and HAProxy (127.0.0.1) as the peer
sub from_haproxy {
    my ($name, $h, $version, $port) = @_;
    seen_as($name, $h, $CLIENT);
    ok t_cmp($h->{'x-pp-version'}, $version, "$name: PROXY_PROTOCOL_VERSION");
    ok t_cmp($h->{'x-pp-dst-port'}, $port,
             "$name: DST_PORT is HAProxy's frontend");
    ok t_cmp($h->{'x-pp-peer-addr'}, '127.0.0.1',
             "$name: PEER_ADDR is HAProxy");
}

# send-proxy: v1 to the plain host.
{
    my $name = 'HAProxy send-proxy';
    my $tag = new_tag('hpv1');
    my ($status, $h) = curl_headers('--interface', $CLIENT, '-H',
        "X-PP-Test: $tag", "http://127.0.0.1:$port{v1}/pp/ok.txt");
    ok t_cmp($status, 200, "$name: status");
    from_haproxy($name, $h, 1, $port{v1});
    my $log = logged_as($name, $tag, $CLIENT, qw(a ca h));
    ok t_cmp($log->{peer}, '127.0.0.1', "$name: access log PEER_ADDR");
}

# send-proxy-v2 to the TLS host: TLS passes through HAProxy untouched.
{
    my $name = 'HAProxy send-proxy-v2, TLS to httpd';
    my $tag = new_tag('hpv2');
    my ($status, $h) = curl_headers('-k', '--http1.1', '--interface', $CLIENT,
        '-H', "X-PP-Test: $tag", "https://127.0.0.1:$port{v2}/pp/ok.txt");
    ok t_cmp($status, 200, "$name: status");
    from_haproxy($name, $h, 2, $port{v2});
    logged_as($name, $tag, $CLIENT);
}

# send-proxy-v2 with TLVs: HAProxy terminates TLS (with a client
# certificate) and describes it in the SSL TLV; CRC32C protects the header.
{
    my $name = 'HAProxy send-proxy-v2 with TLVs';
    my $tag = new_tag('hptlv');
    my ($status, $h) = curl_headers('-k', '--http1.1', '--interface', $CLIENT,
        '--cert', "$ca/certs/client_ok.crt", '--key', "$ca/keys/client_ok.pem",
        '--resolve', "pp.example:$port{v2opts}:127.0.0.1",
        '-H', "X-PP-Test: $tag", "https://pp.example:$port{v2opts}/pp/ok.txt");
    ok t_cmp($status, 200, "$name: status (CRC32C accepted)");
    seen_as($name, $h, $CLIENT);
    ok t_cmp($h->{'x-pp-version'}, 2, "$name: PROXY_PROTOCOL_VERSION");
    ok t_cmp($h->{'x-server-protocol'}, 'HTTP/1.1',
             "$name: plain HTTP/1.1 from HAProxy to httpd");
    my $src_port = $h->{'x-pp-src-port'};
    ok t_cmp($src_port, qr/^[1-9]\d*$/, "$name: SRC_PORT");
    # unique-id-format pptest-%ci-%cp, sent in hex.
    ok t_cmp($h->{'x-pp-tlv-unique-id'},
             unpack('H*', "pptest-$CLIENT-" . (defined $src_port ? $src_port
                                                                 : '?')),
             "$name: UNIQUE_ID");
    ok t_cmp($h->{'x-pp-tlv-authority'}, 'pp.example', "$name: AUTHORITY");
    ok t_cmp($h->{'x-pp-tlv-alpn'}, 'http/1.1', "$name: ALPN");
    ok t_cmp($h->{'x-pp-tlv-ssl-version'}, qr/^TLSv1\.[23]$/,
             "$name: SSL_VERSION");
    ok t_cmp($h->{'x-pp-tlv-ssl-cn'}, 'client_ok', "$name: SSL_CN");
    ok t_cmp($h->{'x-pp-tlv-ssl-cipher'}, qr/^(TLS_|ECDHE)[A-Z0-9_-]+$/,
             "$name: SSL_CIPHER");
    ok t_cmp($h->{'x-pp-tlv-ssl-sig-alg'}, qr/SHA256/, "$name: SSL_SIG_ALG");
    ok t_cmp($h->{'x-pp-tlv-ssl-key-alg'}, qr/^RSA\d+$/,
             "$name: SSL_KEY_ALG");
    logged_as($name, $tag, $CLIENT);

    # Without a client certificate there is no CN.
    ($status, $h) = curl_headers('-k', '--http1.1', '--interface', $CLIENT,
        '--resolve', "pp.example:$port{v2opts}:127.0.0.1",
        "https://pp.example:$port{v2opts}/pp/ok.txt");
    ok t_cmp($status, 200, "$name, no client certificate: status");
    ok t_cmp($h->{'x-pp-tlv-ssl-cn'}, undef,
             "$name, no client certificate: no SSL_CN");
    ok t_cmp($h->{'x-pp-tlv-ssl-version'}, qr/^TLSv1\.[23]$/,
             "$name, no client certificate: SSL_VERSION");
    ok t_cmp($h->{'x-remote-addr'}, $CLIENT,
             "$name, no client certificate: REMOTE_ADDR");
}

stop_balancer($hp);

# curl's own --haproxy-protocol (v1, its real addresses) straight to httpd.
{
    my $name = 'curl --haproxy-protocol';
    my $tag = new_tag('curlpp');
    my ($status, $h) = curl_headers('--haproxy-protocol', '-H',
        "X-PP-Test: $tag", "http://127.0.0.1:$plain/pp/ok.txt");
    ok t_cmp($status, 200, "$name: status");
    ok t_cmp($h->{'x-pp-version'}, 1, "$name: PROXY_PROTOCOL_VERSION");
    ok t_cmp($h->{'x-pp-dst-port'}, $plain, "$name: DST_PORT");
    ok t_cmp($h->{'x-remote-addr'}, '127.0.0.1', "$name: REMOTE_ADDR");
    my $log = access_entry($tag) || {};
    ok t_cmp($log->{ppv}, 1, "$name: access log PROXY_PROTOCOL_VERSION");
}
