#
# nginx's stream module in front, configured as docs/mod_proxy_protocol.md
# shows: "ssl_preread on" (nginx connects once the client's first bytes
# are there and writes the PROXY header with them) and "proxy_protocol
# on" (version 1).  Plain HTTP, TLS passed through to httpd, and h2 over
# it; curl connects from 127.0.0.5, which must come out as the client
# address of the connection, of every request and of the log lines.
#
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use PPTest;

my $CLIENT = '127.0.0.5';

plan tests => 7 * 2 + 5,
     need(need_module('ssl'), need_module('http2'), need_module('headers'),
          { 'nginx not found (set NGINX)' => sub { nginx_bin() } },
          { "nginx's stream module not found (set NGINX_STREAM_MODULE)"
                => sub { nginx_stream_module() } },
          { 'curl without HTTP/2' => sub {
                (`curl --version 2>/dev/null` || '') =~ /\bHTTP2\b/ } });

my ($plain, $tls) = (pp_port('pp_plain'), pp_port('pp_tls'));
my %port = map { $_ => free_port() } qw(plain tls);

my $nginx = start_nginx(ports => [values %port], stream => <<EOF);
    server {
        listen 127.0.0.1:$port{plain};
        ssl_preread on;
        proxy_pass 127.0.0.1:$plain;
        proxy_protocol on;
    }
    server {
        listen 127.0.0.1:$port{tls};
        ssl_preread on;
        proxy_pass 127.0.0.1:$tls;
        proxy_protocol on;
    }
EOF

# name, curl options, base URL, nginx's port
my @cases = (
    ['nginx, plain HTTP', ['--http1.1'], "http://127.0.0.1:$port{plain}",
     $port{plain}],
    ['nginx, TLS to httpd', ['-k', '--http1.1'],
     "https://127.0.0.1:$port{tls}", $port{tls}],
);
for my $case (@cases) {
    my ($name, $opts, $base, $front) = @$case;
    my $tag = new_tag('ngx');
    my ($status, $h) = curl_headers(@$opts, '--interface', $CLIENT,
        '-H', "X-PP-Test: $tag", "$base/pp/ok.txt");
    ok t_cmp($status, 200, "$name: status");
    seen_as($name, $h, $CLIENT);
    ok t_cmp($h->{'x-pp-version'}, 1, "$name: PROXY_PROTOCOL_VERSION");
    ok t_cmp($h->{'x-pp-dst-port'}, $front,
             "$name: DST_PORT is nginx's listening port");
    ok t_cmp($h->{'x-pp-peer-addr'}, '127.0.0.1',
             "$name: PEER_ADDR is nginx");
    logged_as($name, $tag, $CLIENT);
}

# h2 over TLS: ALPN passes through nginx; two requests on one connection.
{
    my $name = 'nginx, h2 (TLS, ALPN)';
    my $tag = new_tag('ngxh2');
    my ($status, $h) = curl_headers('-k', '--http2', '--interface', $CLIENT,
        '-H', "X-PP-Test: $tag",
        ("https://127.0.0.1:$port{tls}/pp/ok.txt") x 2);
    ok t_cmp($status, 200, "$name: status");
    ok t_cmp($h->{'x-server-protocol'}, 'HTTP/2.0', "$name: HTTP/2");
    seen_as($name, $h, $CLIENT);
    my @log = access_entries($tag, 2);
    ok t_cmp(join(' | ', map { log_fields($_, qw(proto a ca)) } @log),
             join(' | ', ("HTTP/2.0 $CLIENT $CLIENT") x 2),
             "$name: access log %H %a %{c}a of every stream");
}

stop_balancer($nginx);
