#
# A header that arrives in pieces is put together; one that does not arrive
# in full within ProxyProtocolTimeout (2s in the test hosts, whose core
# Timeout is 30s) closes the connection, however fast its bytes trickle.
#
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use PPTest;

my $LB = '127.0.0.1';
my $TIMEOUT = 2;            # ProxyProtocolTimeout of pp_plain and pp_tls

my $v1 = "PROXY TCP4 192.0.2.30 192.0.2.20 3333 80\r\n";
my $v2 = pp_v2(src => '192.0.2.31', dst => '192.0.2.20', src_port => 3334,
               dst_port => 80, tlvs => [[0x02, 'split.example'],
                                        [0x05, 'id-1']],
               crc32c => 1);

# name, chunks (the request follows the last one), pause, client address.
my @split = (
    ['v1 byte by byte', [split(//, $v1), http_get('/pp/ok.txt')], 0.005,
     '192.0.2.30'],
    ['v2 byte by byte', [split(//, $v2), http_get('/pp/ok.txt')], 0.005,
     '192.0.2.31'],
    # The request in the same write as the header's last bytes: the module
    # must read exactly up to the end of the header.
    ['v1 in three writes, request with the last',
     [substr($v1, 0, 7), substr($v1, 7, 20),
      substr($v1, 27) . http_get('/pp/ok.txt')], 0.05, '192.0.2.30'],
    ['v2 split inside the signature, the length and a TLV',
     [substr($v2, 0, 5), substr($v2, 5, 10), substr($v2, 15, 20),
      substr($v2, 35) . http_get('/pp/ok.txt')], 0.05, '192.0.2.31'],
    ['v1 trickling in over 1.2s (within the timeout)',
     [substr($v1, 0, 10), substr($v1, 10, 10), substr($v1, 20, 10),
      substr($v1, 30, 10), substr($v1, 40) . http_get('/pp/ok.txt')],
     0.3, '192.0.2.30'],
);

# name, virtual host, chunks, pause, bytes the server had when it gave up
# (undef: some).  A peer that sends nothing at all is not here: on Linux
# httpd's default AcceptFilter (TCP_DEFER_ACCEPT) leaves such a connection
# in the kernel until its first byte, so no module sees it before then.
my @stalled = (
    ['half a v1 header', 'pp_plain', [substr($v1, 0, 20)], 0, 20],
    ['half a v2 header', 'pp_plain', [substr($v2, 0, 30)], 0, 30],
    ['half a v1 header, TLS host', 'pp_tls', [substr($v1, 0, 20)], 0, 20],
    # A byte every 0.25s: each read succeeds, yet the whole header is late.
    ['v1 trickling byte by byte past the timeout', 'pp_plain',
     [split //, substr($v1, 0, 30)], 0.25, undef],
);

plan tests => 2 * @split + (1 + REJECTED_TESTS) * @stalled,
     need_module('headers');

for my $case (@split) {
    my ($name, $chunks, $pause, $client) = @$case;
    my $r = pp_exchange('pp_plain', $LB, $chunks, pause => $pause);
    ok t_cmp($r->{status}, 200, "$name: status");
    ok t_cmp($r->{headers}{'x-remote-addr'}, $client, "$name: REMOTE_ADDR");
}

for my $case (@stalled) {
    my ($name, $vhost, $chunks, $pause, $bytes) = @$case;
    my $mark = error_log_mark();
    my $r = pp_exchange($vhost, $LB, $chunks, pause => $pause,
                        timeout => $TIMEOUT + 4);
    # Not before the timeout, and long before the core Timeout (30s).
    ok t_cmp($r->{elapsed} > $TIMEOUT - 0.5 ? 1 : 0, 1,
             "$name: still open at " . ($TIMEOUT - 0.5) . 's (closed after '
             . sprintf('%.2f', $r->{elapsed}) . 's)');
    my $n = defined $bytes ? $bytes : '[1-9]\d*';
    my $why = qr/header incomplete after 2000ms \(ProxyProtocolTimeout\), $n bytes received/;
    expect_rejected($name, $r, $mark, $LB, $why, $TIMEOUT + 2);
}
