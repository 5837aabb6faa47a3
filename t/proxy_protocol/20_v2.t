#
# PROXY protocol v2 (binary): address families, LOCAL, TLVs exported as
# PROXY_PROTOCOL_TLV_* variables, CRC32C, ProxyProtocolMaxHeaderSize and
# malformed headers.
#
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use PPTest;

my $LB = '127.0.0.1';

# name, header, client address expected (undef: the peer's), source port,
# destination address, destination port.
my @addresses = (
    ['PROXY INET',
     pp_v2(src => '198.51.100.7', dst => '203.0.113.1',
           src_port => 5555, dst_port => 443),
     '198.51.100.7', 5555, '203.0.113.1', 443],
    ['PROXY INET6',
     pp_v2(family => 'inet6', src => '2001:db8::7', dst => '2001:db8::1',
           src_port => 6666, dst_port => 8443),
     '2001:db8::7', 6666, '2001:db8::1', 8443],
    ['LOCAL (health check): the real peer is kept',
     pp_v2(command => 'LOCAL', src => '198.51.100.8', dst => '203.0.113.1',
           src_port => 1, dst_port => 2),
     undef],
    ['PROXY UNSPEC: the real peer is kept',
     pp_v2(family => 'unspec'), undef],
    ['PROXY UNIX: the real peer is kept',
     pp_v2(family => 'unix', src => '/run/lb.sock', dst => '/run/www.sock'),
     undef],
    ['PROXY INET over DGRAM: the real peer is kept',
     pp_v2(family_byte => 0x12, src => '198.51.100.9',
           dst => '203.0.113.1', src_port => 53, dst_port => 53),
     undef],
);

# The TLVs of ARCHITECTURE.md section 2, with the value each exports.
my @tlvs = (
    [0x01, 'h2'],
    [0x02, 'www.example.com'],
    [0x05, "\x00\x01\xab\xff"],
    [0x20, undef],              # SSL, built below
    [0xEA, "\x01vpce-08d2bf15fac5001c9"],
    [0xEE, "\x01" . pack('V', 123456789)],
    [0xE0, pack('Q>', 1234567890123456789)],
    [0xF0, "\xde\xad\xbe\xef"],
    [0x04, "\0\0\0"],           # NOOP: skipped
    [0x01, 'http/1.1'],         # a second ALPN: the first one wins
);
my $ssl = pp_ssl_tlv(0x07, 0,
                     [0x21, 'TLSv1.3'],
                     [0x22, 'client.example'],
                     [0x23, 'TLS_AES_256_GCM_SHA384'],
                     [0x24, 'SHA256'],
                     [0x25, 'RSA2048']);
my $tlv_area = join '', map {
    $_->[0] == 0x20 ? $ssl : pp_tlv(@$_)
} @tlvs;
my %tlv_expect = (
    'x-pp-tlv-alpn'         => 'h2',
    'x-pp-tlv-authority'    => 'www.example.com',
    'x-pp-tlv-unique-id'    => '0001abff',
    'x-pp-tlv-ssl-version'  => 'TLSv1.3',
    'x-pp-tlv-ssl-cn'       => 'client.example',
    'x-pp-tlv-ssl-cipher'   => 'TLS_AES_256_GCM_SHA384',
    'x-pp-tlv-ssl-sig-alg'  => 'SHA256',
    'x-pp-tlv-ssl-key-alg'  => 'RSA2048',
    'x-pp-tlv-aws-vpce-id'  => 'vpce-08d2bf15fac5001c9',
    'x-pp-tlv-azure-linkid' => '123456789',
    'x-pp-tlv-gcp-psc-id'   => '1234567890123456789',
    'x-pp-tlv-0xf0'         => 'deadbeef',
);

my $inet = sub {
    pp_v2(src => '198.51.100.20', dst => '203.0.113.1', src_port => 40000,
          dst_port => 80, @_);
};

# name, virtual host, header, the reason logged.
my @invalid = (
    ['wrong CRC32C', 'pp_plain',
     $inet->(tlvs => [[0x05, 'abc']], crc32c => 'bad'),
     qr/v2: CRC32C mismatch/],
    ['CRC32C TLV of 3 bytes', 'pp_plain',
     $inet->(tlvs => [[0x03, "\0\0\0"]]),
     qr/v2: CRC32C TLV length is not 4/],
    ['version 3', 'pp_plain', PP2_SIG . "\x31\x11\x00\x0c" . ("\0" x 12),
     qr/v2: version is not 2/],
    ['command 2', 'pp_plain', PP2_SIG . "\x22\x11\x00\x0c" . ("\0" x 12),
     qr/v2: command is neither LOCAL nor PROXY/],
    ['address family 4', 'pp_plain', PP2_SIG . "\x21\x41\x00\x0c"
     . ("\0" x 12), qr/v2: invalid address family or transport/],
    ['length shorter than the INET block', 'pp_plain',
     PP2_SIG . "\x21\x11\x00\x08" . ("\0" x 8),
     qr/v2: length shorter than the address block/],
    ['TLV overrunning the header', 'pp_plain',
     $inet->(tlvs => "\x01\x00\x09h2"),
     qr/v2: TLV overruns the header/],
    ['SSL sub-TLV overrunning the SSL TLV', 'pp_plain',
     $inet->(tlvs => pp_tlv(0x20, "\x01\0\0\0\0" . "\x21\x00\x09TLS")),
     qr/v2: SSL sub-TLV overruns the SSL TLV/],
    ['UNIQUE_ID of 129 bytes', 'pp_plain',
     $inet->(tlvs => [[0x05, 'u' x 129]]),
     qr/v2: UNIQUE_ID longer than 128 bytes/],
    ['16385 bytes, over the default ProxyProtocolMaxHeaderSize', 'pp_plain',
     $inet->(tlvs => [[0x04, "\0" x (16385 - 28 - 3)]]),
     qr/v2: header larger than ProxyProtocolMaxHeaderSize \(16385 > 16384\)/],
    ['65 bytes, over ProxyProtocolMaxHeaderSize 64', 'pp_small',
     $inet->(tlvs => [[0x04, "\0" x (65 - 28 - 3)]]),
     qr/v2: header larger than ProxyProtocolMaxHeaderSize \(65 > 64\)/],
);

plan tests => 1 + 10 * @addresses + (4 + keys %tlv_expect) + 3 + 2 * 2
              + 2 * 2 + REJECTED_TESTS * @invalid,
     need_module('headers');

# The test's own CRC32C, against the standard check value.
ok t_cmp(sprintf('%08x', crc32c('123456789')), 'e3069283',
         'CRC32C check value');

sub served {
    my ($name, $vhost, $header) = @_;
    my $tag = new_tag('v2');
    my $r = pp_exchange($vhost, $LB, $header . http_get('/pp/ok.txt', $tag));
    ok t_cmp($r->{status}, 200, "$name: status");
    return ($r->{headers}, $tag);
}

for my $case (@addresses) {
    my ($name, $header, $src, $sport, $dst, $dport) = @$case;
    my $client = defined $src ? $src : $LB;
    my ($h, $tag) = served($name, 'pp_plain', $header);

    ok t_cmp($h->{'x-remote-addr'}, $client, "$name: REMOTE_ADDR");
    ok t_cmp($h->{'x-conn-remote-addr'}, $client, "$name: CONN_REMOTE_ADDR");
    ok t_cmp($h->{'x-pp-version'}, 2, "$name: PROXY_PROTOCOL_VERSION");
    ok t_cmp($h->{'x-pp-peer-addr'}, $LB, "$name: PROXY_PROTOCOL_PEER_ADDR");
    ok t_cmp($h->{'x-pp-src-addr'}, $src, "$name: SRC_ADDR");
    ok t_cmp($h->{'x-pp-src-port'}, $sport, "$name: SRC_PORT");
    ok t_cmp($h->{'x-pp-dst-addr'}, $dst, "$name: DST_ADDR");
    ok t_cmp($h->{'x-pp-dst-port'}, $dport, "$name: DST_PORT");
    my $log = access_entry($tag) || {};
    ok t_cmp($log->{a}, $client, "$name: access log %a");
}

# Every TLV, with a correct CRC32C.
{
    my $name = 'TLVs with CRC32C';
    my ($h) = served($name, 'pp_plain', $inet->(tlvs => $tlv_area,
                                                crc32c => 1));
    ok t_cmp($h->{'x-remote-addr'}, '198.51.100.20', "$name: REMOTE_ADDR");
    ok t_cmp($h->{'x-pp-version'}, 2, "$name: PROXY_PROTOCOL_VERSION");
    ok t_cmp($h->{'x-pp-peer-addr'}, $LB, "$name: PEER_ADDR");
    for my $k (sort keys %tlv_expect) {
        ok t_cmp($h->{$k}, $tlv_expect{$k}, "$name: $k");
    }
}

# TLV text is escaped: no header injection, no raw control bytes.
{
    my $name = 'AUTHORITY with control bytes';
    my ($h) = served($name, 'pp_plain', $inet->(
        tlvs => [[0x02, "evil\r\nX-Injected: 1\\"]]));
    ok t_cmp($h->{'x-pp-tlv-authority'}, 'evil\x0d\x0aX-Injected: 1\x5c',
             "$name: escaped");
    ok t_cmp($h->{'x-injected'}, undef, "$name: no injected header");
}

# Exactly at the limits.
{
    my $name = '64 bytes, at ProxyProtocolMaxHeaderSize 64';
    my ($h) = served($name, 'pp_small',
                     $inet->(tlvs => [[0x04, "\0" x (64 - 28 - 3)]]));
    ok t_cmp($h->{'x-remote-addr'}, '198.51.100.20', "$name: REMOTE_ADDR");
    $name = '16384 bytes, at the default ProxyProtocolMaxHeaderSize';
    ($h) = served($name, 'pp_plain',
                  $inet->(tlvs => [[0x04, "\0" x (16384 - 28 - 3)]]));
    ok t_cmp($h->{'x-remote-addr'}, '198.51.100.20', "$name: REMOTE_ADDR");
}

# A checksum that matches is accepted, on a small limit too.
for my $crc (1, 0) {
    my $name = $crc ? 'INET with CRC32C on pp_small'
                    : 'INET without CRC32C on pp_small';
    my ($h) = served($name, 'pp_small', $inet->(crc32c => $crc));
    ok t_cmp($h->{'x-remote-addr'}, '198.51.100.20', "$name: REMOTE_ADDR");
}

for my $case (@invalid) {
    my ($name, $vhost, $header, $why) = @$case;
    my $mark = error_log_mark();
    my $r = pp_exchange($vhost, $LB, $header . http_get('/pp/ok.txt'));
    expect_rejected($name, $r, $mark, $LB, $why);
}
