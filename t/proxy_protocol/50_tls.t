#
# TLS behind a PROXY header: the header is read below mod_ssl, exactly to
# its last byte, so a ClientHello in the same TCP segment is left for the
# handshake; the request, the access log and mod_ssl's own log lines see the
# PROXY source.
#
use strict;
use warnings FATAL => 'all';

use IO::Select;
use IO::Socket::SSL;
use Net::SSLeay;
use Time::HiRes qw(time);

use Apache::Test;
use Apache::TestUtil;
use PPTest;

my $LB = '127.0.0.1';

plan tests => 5 + 6 + 5 + 4 + 3,
     need(need_module('ssl'), need_module('headers'));

Net::SSLeay::initialize();

# Reads an SSL socket to EOF (the requests say Connection: close).
sub ssl_read_all {
    my $ssl = shift;
    my $data = '';
    local $SIG{ALRM} = sub { die "timeout reading the TLS response\n" };
    alarm 10;
    while (1) {
        my $n = $ssl->sysread(my $buf, 65536);
        last unless $n;
        $data .= $buf;
    }
    alarm 0;
    return $data;
}

# 1. The header in one write, then a normal TLS handshake.
{
    my $name = 'v1 header, then TLS';
    my $tag = new_tag('tls');
    my $sock = pp_connect('pp_tls', $LB);
    syswrite $sock, "PROXY TCP4 198.51.100.40 192.0.2.1 4040 443\r\n";
    my $ssl = IO::Socket::SSL->start_SSL($sock,
        SSL_verify_mode => SSL_VERIFY_NONE, SSL_hostname => 'localhost',
        SSL_alpn_protocols => ['http/1.1'], Timeout => 10);
    ok t_cmp($ssl ? 1 : 0, 1, "$name: handshake"
             . ($ssl ? '' : " ($IO::Socket::SSL::SSL_ERROR)"));
    my $r = parse_response($ssl ? do {
        print $ssl http_get('/pp/ok.txt', $tag);
        ssl_read_all($ssl);
    } : '');
    ok t_cmp($r->{status}, 200, "$name: status");
    seen_as($name, $r->{headers}, '198.51.100.40');
    logged_as($name, $tag, '198.51.100.40');
}

# 2. The header and the ClientHello in the SAME write (one TCP segment),
# the handshake driven by hand through memory BIOs.
{
    my $name = 'v2 header and ClientHello in one segment';
    my $tag = new_tag('tls1seg');
    my $ctx = Net::SSLeay::CTX_new() or die 'CTX_new';
    my $ssl = Net::SSLeay::new($ctx) or die 'SSL_new';
    my $rbio = Net::SSLeay::BIO_new(Net::SSLeay::BIO_s_mem());
    my $wbio = Net::SSLeay::BIO_new(Net::SSLeay::BIO_s_mem());
    Net::SSLeay::set_bio($ssl, $rbio, $wbio);
    Net::SSLeay::set_connect_state($ssl);
    Net::SSLeay::set_tlsext_host_name($ssl, 'localhost');
    Net::SSLeay::do_handshake($ssl);          # wants to read: hello written
    my $pending = sub {
        my $out = '';
        while (Net::SSLeay::BIO_pending($wbio)) {
            $out .= Net::SSLeay::BIO_read($wbio);
        }
        return $out;
    };
    my $hello = $pending->();
    ok t_cmp(ord $hello, 0x16, "$name: a TLS handshake record to send");

    my $sock = pp_connect('pp_tls', $LB);
    my $sel = IO::Select->new($sock);
    my $header = pp_v2(src => '198.51.100.41', dst => '192.0.2.1',
                       src_port => 4141, dst_port => 443,
                       tlvs => [[0x02, 'localhost']]);
    syswrite $sock, $header . $hello;

    # Pump bytes between the socket and the BIOs until the handshake is
    # done, then send the request and read to EOF.
    my ($first, $plain, $done, $eof) = (undef, '', 0, 0);
    my $until = time + 10;
    my $request = http_get('/pp/ok.txt', $tag);
    while (!$eof && time < $until) {
        if (!$done && Net::SSLeay::do_handshake($ssl) == 1) {
            $done = 1;
            Net::SSLeay::write($ssl, $request);
        }
        if ($done) {
            while (defined(my $got = Net::SSLeay::read($ssl))) {
                last unless length $got;
                $plain .= $got;
            }
        }
        my $out = $pending->();
        syswrite $sock, $out if length $out;
        next unless $sel->can_read(0.2);
        my $n = sysread $sock, my $buf, 65536;
        if (!$n) {
            $eof = 1;
            next;
        }
        $first = $buf unless defined $first;
        Net::SSLeay::BIO_write($rbio, $buf);
    }
    while ($done && defined(my $got = Net::SSLeay::read($ssl))) {
        last unless length $got;
        $plain .= $got;
    }
    ok t_cmp(defined $first ? ord $first : undef, 0x16,
             "$name: the server answers with a handshake record");
    ok t_cmp($done, 1, "$name: handshake completed");
    my $r = parse_response($plain);
    ok t_cmp($r->{status}, 200, "$name: status");
    ok t_cmp($r->{headers}{'x-remote-addr'}, '198.51.100.41',
             "$name: REMOTE_ADDR");
    ok t_cmp($r->{headers}{'x-pp-tlv-authority'}, 'localhost',
             "$name: TLV exported over TLS");
    Net::SSLeay::free($ssl);
    Net::SSLeay::CTX_free($ctx);
}

# 3. mod_ssl's log lines for the connection carry the PROXY source: plain
# HTTP after the header makes the handshake fail, logged with [client ...].
{
    my $name = 'plain HTTP on the TLS host';
    my $mark = error_log_mark();
    my $r = pp_exchange('pp_tls', $LB,
                        "PROXY TCP4 192.0.2.77 192.0.2.1 4242 443\r\n"
                        . http_get('/pp/ok.txt'));
    ok t_cmp($r->{status}, 400, "$name: 400 from mod_ssl");
    my @ssl = wait_error_log($mark, qr/\[ssl:\w+\].*\[client 192\.0\.2\.77:4242\]/);
    ok t_cmp(scalar @ssl > 0 ? 1 : 0, 1,
             "$name: mod_ssl logs [client 192.0.2.77:4242]");
    ok t_cmp(join("\n", @ssl), qr/AH01996: SSL handshake failed: HTTP spoken on HTTPS port/,
             "$name: the handshake failure");
    # The header is read before mod_ssl's pre_connection hook, so not even
    # its first line ("AH01964: Connection to child ... established") may
    # name the load balancer.
    my @peer = grep { /\[ssl:/
                      && /\[client 127\.0\.0\.1:$r->{local_port}\]/ }
               split /\n/, error_log_since($mark);
    ok t_cmp(join("\n", @peer), '',
             "$name: no mod_ssl line names the load balancer");
    ok t_cmp(scalar(grep { /AH01964: / } @ssl) > 0 ? 1 : 0, 1,
             "$name: mod_ssl's first line (AH01964) names the client");
}
{
    my $name = 'garbage on the TLS host';
    my $mark = error_log_mark();
    my $r = pp_exchange('pp_tls', $LB,
                        "PROXY TCP4 192.0.2.78 192.0.2.1 4343 443\r\n"
                        . "\x16\x03\x01\x00\x10" . ("\xff" x 16));
    ok t_cmp($r->{status}, undef, "$name: no HTTP response");
    my @ssl = wait_error_log($mark, qr/\[ssl:\w+\].*\[client 192\.0\.2\.78:4343\]/);
    ok t_cmp(scalar @ssl > 0 ? 1 : 0, 1,
             "$name: mod_ssl logs [client 192.0.2.78:4343]");
    ok t_cmp(join("\n", @ssl), qr/handshake/i, "$name: a handshake error");
    ok t_cmp(scalar(rejections($mark, $LB, $r->{local_port}, 0.2)), 0,
             "$name: the header itself was fine (no PP00004)");
}

# 4. An exception (127.0.0.3) connects over TLS without a header.
{
    my $name = 'exception over TLS';
    my $sock = pp_connect('pp_tls', '127.0.0.3');
    my $ssl = IO::Socket::SSL->start_SSL($sock,
        SSL_verify_mode => SSL_VERIFY_NONE, SSL_hostname => 'localhost',
        Timeout => 10);
    ok t_cmp($ssl ? 1 : 0, 1, "$name: handshake");
    my $r = parse_response($ssl ? do {
        print $ssl http_get('/pp/ok.txt');
        ssl_read_all($ssl);
    } : '');
    ok t_cmp($r->{status}, 200, "$name: status");
    ok t_cmp($r->{headers}{'x-remote-addr'}, '127.0.0.3',
             "$name: REMOTE_ADDR");
}
