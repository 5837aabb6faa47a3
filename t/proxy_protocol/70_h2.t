#
# HTTP/2 behind the PROXY protocol: the address is set on the connection,
# so every stream (a secondary connection in mod_http2) and its log line
# see the PROXY source.  h2 over TLS (ALPN) and h2c with prior knowledge,
# through HAProxy from 127.0.0.5, and with curl's --haproxy-protocol.
#
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use PPTest;

my $CLIENT = '127.0.0.5';

plan tests => 6 * 2 + 4 * 2,
     need(need_module('ssl'), need_module('http2'), need_module('headers'),
          { 'haproxy not found (set HAPROXY)' => sub { haproxy_bin() } },
          { 'curl without HTTP/2' => sub {
                (`curl --version 2>/dev/null` || '') =~ /\bHTTP2\b/ } });

my ($plain, $tls) = (pp_port('pp_plain'), pp_port('pp_tls'));
my %port = map { $_ => free_port() } qw(h2 h2c);

my $hp = start_haproxy(ports => [values %port], cfg => <<EOF);
listen h2
    bind 127.0.0.1:$port{h2}
    server apache 127.0.0.1:$tls send-proxy-v2
listen h2c
    bind 127.0.0.1:$port{h2c}
    server apache 127.0.0.1:$plain send-proxy-v2
EOF

# name, curl options, requests on one connection, base URL.  h2c gets one:
# curl 7.88 breaks a reused prior-knowledge connection ("Error in the HTTP2
# framing layer", curl issue 10634, fixed in 8.0), whatever the server.
my @via_haproxy = (
    ['h2 (TLS, ALPN) through HAProxy', ['-k', '--http2'], 2,
     "https://127.0.0.1:$port{h2}"],
    ['h2c (prior knowledge) through HAProxy', ['--http2-prior-knowledge'], 1,
     "http://127.0.0.1:$port{h2c}"],
);

for my $case (@via_haproxy) {
    my ($name, $opts, $n, $base) = @$case;
    my $tag = new_tag('h2');
    my ($status, $h) = curl_headers(@$opts, '--interface', $CLIENT,
        '-H', "X-PP-Test: $tag", ("$base/pp/ok.txt") x $n);
    ok t_cmp($status, 200, "$name: status");
    ok t_cmp($h->{'x-server-protocol'}, 'HTTP/2.0', "$name: HTTP/2");
    ok t_cmp($h->{'x-remote-addr'}, $CLIENT, "$name: REMOTE_ADDR");
    ok t_cmp($h->{'x-conn-remote-addr'}, $CLIENT,
             "$name: CONN_REMOTE_ADDR of the stream's connection");
    ok t_cmp($h->{'x-pp-version'}, 2,
             "$name: PROXY variables reach the stream");
    my @log = access_entries($tag, $n);
    ok t_cmp(join(' | ', map { log_fields($_, qw(proto a ca)) } @log),
             join(' | ', ("HTTP/2.0 $CLIENT $CLIENT") x $n),
             "$name: access log %H %a %{c}a of every stream");
}

stop_balancer($hp);

# Straight to httpd with curl's v1 header (its real addresses).
my @direct = (
    ['h2 with curl --haproxy-protocol', ['-k', '--http2'],
     "https://127.0.0.1:$tls/pp/ok.txt", $tls],
    ['h2c with curl --haproxy-protocol', ['--http2-prior-knowledge'],
     "http://127.0.0.1:$plain/pp/ok.txt", $plain],
);
for my $case (@direct) {
    my ($name, $opts, $url, $port) = @$case;
    my $tag = new_tag('h2d');
    my ($status, $h) = curl_headers(@$opts, '--haproxy-protocol',
                                    '-H', "X-PP-Test: $tag", $url);
    ok t_cmp($status, 200, "$name: status");
    ok t_cmp($h->{'x-pp-version'}, 1, "$name: PROXY_PROTOCOL_VERSION");
    ok t_cmp($h->{'x-pp-dst-port'}, $port, "$name: DST_PORT");
    my $log = access_entry($tag) || {};
    ok t_cmp($log->{proto}, 'HTTP/2.0', "$name: access log %H");
}
