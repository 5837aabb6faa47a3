#
# PROXY protocol v1 (text): valid headers set the client address for the
# request, the connection and the access log, for every request of a
# keep-alive connection; invalid ones close the connection without a
# response and log one PP00004 line saying why.
#
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use PPTest;

my $LB = '127.0.0.1';       # the trusted load balancer

# name, header, client address expected (undef: the peer's), and for TCP
# headers the source port, destination address and destination port.
my @valid = (
    ['TCP4', "PROXY TCP4 192.0.2.10 192.0.2.20 1111 80\r\n",
     '192.0.2.10', 1111, '192.0.2.20', 80],
    ['TCP6', "PROXY TCP6 2001:DB8::7 2001:db8::2 65535 443\r\n",
     '2001:db8::7', 65535, '2001:db8::2', 443],
    ['TCP4, port 0', "PROXY TCP4 0.0.0.0 255.255.255.255 0 1\r\n",
     '0.0.0.0', 0, '255.255.255.255', 1],
    ['UNKNOWN, short', "PROXY UNKNOWN\r\n", undef],
    ['UNKNOWN, longest (107 bytes)',
     'PROXY UNKNOWN ' . join(' ', ('ffff:' x 7) . 'ffff',
                             ('ffff:' x 7) . 'ffff', 65535, 65535) . "\r\n",
     undef],
);

# name, header, the reason logged.
my @invalid = (
    ['bare LF', "PROXY TCP4 192.0.2.1 192.0.2.2 1111 80\n",
     qr/v1: LF without CR/],
    ['CR without LF', "PROXY UNKNOWN\rX\n", qr/v1: CR not followed by LF/],
    ['double space', "PROXY TCP4  192.0.2.1 192.0.2.2 1111 80\r\n",
     qr/v1: empty field/],
    ['longer than 107 bytes', 'PROXY UNKNOWN ' . ('x' x 100) . "\r\n",
     qr/v1: no CRLF within 107 bytes/],
    ['port out of range', "PROXY TCP4 192.0.2.1 192.0.2.2 65536 80\r\n",
     qr/v1: port out of range/],
    ['port with a leading zero', "PROXY TCP4 192.0.2.1 192.0.2.2 0080 80\r\n",
     qr/v1: port has a leading zero/],
    ['octal-looking address', "PROXY TCP4 192.0.2.010 192.0.2.2 1111 80\r\n",
     qr/v1: IPv4 address has a leading zero/],
    ['IPv6 address in TCP4', "PROXY TCP4 2001:db8::1 192.0.2.2 1111 80\r\n",
     qr/v1: invalid character in address/],
    ['unknown protocol', "PROXY TCP5 192.0.2.1 192.0.2.2 1111 80\r\n",
     qr/v1: unknown protocol/],
    ['lower-case keyword', "proxy TCP4 192.0.2.1 192.0.2.2 1111 80\r\n",
     qr/not a PROXY protocol header/],
    ['missing destination port', "PROXY TCP4 192.0.2.1 192.0.2.2 1111\r\n",
     qr/v1: missing fields/],
);

plan tests => 12 * @valid + REJECTED_TESTS * @invalid + 2 * 2, need_module('headers');

for my $case (@valid) {
    my ($name, $header, $src, $sport, $dst, $dport) = @$case;
    my $client = defined $src ? $src : $LB;
    my $tag = new_tag('v1');
    my $r = pp_exchange('pp_plain', $LB,
                        $header . http_get('/pp/ok.txt', $tag));
    my $h = $r->{headers};

    ok t_cmp($r->{status}, 200, "$name: status");
    ok t_cmp($r->{body}, "pp ok\n", "$name: body");
    ok t_cmp($h->{'x-remote-addr'}, $client, "$name: REMOTE_ADDR");
    ok t_cmp($h->{'x-conn-remote-addr'}, $client, "$name: CONN_REMOTE_ADDR");
    ok t_cmp($h->{'x-pp-version'}, 1, "$name: PROXY_PROTOCOL_VERSION");
    ok t_cmp($h->{'x-pp-peer-addr'}, $LB, "$name: PROXY_PROTOCOL_PEER_ADDR");
    if (defined $src) {
        ok t_cmp($h->{'x-pp-src-addr'}, $src, "$name: SRC_ADDR");
        ok t_cmp($h->{'x-pp-src-port'}, $sport, "$name: SRC_PORT");
        ok t_cmp($h->{'x-pp-dst-addr'}, $dst, "$name: DST_ADDR");
        ok t_cmp($h->{'x-pp-dst-port'}, $dport, "$name: DST_PORT");
    }
    else {
        ok t_cmp($h->{'x-pp-src-addr'}, undef, "$name: no SRC_ADDR");
        ok t_cmp($h->{'x-pp-src-port'}, undef, "$name: no SRC_PORT");
        ok t_cmp($h->{'x-pp-dst-addr'}, undef, "$name: no DST_ADDR");
        ok t_cmp($h->{'x-pp-dst-port'}, undef, "$name: no DST_PORT");
    }

    my $log = access_entry($tag) || {};
    ok t_cmp($log->{a}, $client, "$name: access log %a");
    ok t_cmp($log->{ca}, $client, "$name: access log %{c}a");
}

for my $case (@invalid) {
    my ($name, $header, $why) = @$case;
    my $mark = error_log_mark();
    my $r = pp_exchange('pp_plain', $LB,
                        $header . http_get('/pp/ok.txt', new_tag('v1bad')));

    expect_rejected($name, $r, $mark, $LB, $why);
}

# Keep-alive: the header is read once per connection; later requests keep
# its address, also after a wait longer than ProxyProtocolTimeout (the
# header's deadline must not outlive the header).
for my $pause (0.3, 2.5) {
    my $name = "keep-alive, requests ${pause}s apart";
    my $keep = "GET /pp/ok.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
    my $r = pp_exchange('pp_plain', $LB,
                        ["PROXY TCP4 192.0.2.60 192.0.2.20 6000 80\r\n" . $keep,
                         http_get('/pp/ok.txt')], pause => $pause);
    my @status = $r->{raw} =~ m{^HTTP/1\.1 (\d+)}mg;
    my @addr = $r->{raw} =~ /^X-Remote-Addr: (\S+)\r$/mg;
    ok t_cmp("@status", '200 200', "$name: both served");
    ok t_cmp("@addr", '192.0.2.60 192.0.2.60', "$name: REMOTE_ADDR of both");
}
