#
# Who may send a header: ProxyProtocolTrustedProxies (127.0.0.1 in the test
# hosts) and ProxyProtocolExceptions (127.0.0.3); anybody else (127.0.0.2)
# is closed whatever it sends.  Addresses without ProxyProtocol On (the
# main server) are untouched.
#
use strict;
use warnings FATAL => 'all';

use IO::Socket::INET;

use Apache::Test;
use Apache::TestUtil;
use PPTest;

my ($LB, $OTHER, $EXCEPTION) = ('127.0.0.1', '127.0.0.2', '127.0.0.3');
my $v1 = "PROXY TCP4 192.0.2.10 192.0.2.20 1111 80\r\n";
my $v2 = pp_v2(src => '192.0.2.11', dst => '192.0.2.20', src_port => 2222,
               dst_port => 80);

# name, virtual host, source address, bytes before the request, reason.
my @rejected = (
    ['untrusted peer, valid v1 header', 'pp_plain', $OTHER, $v1,
     qr/peer is not in ProxyProtocolTrustedProxies/],
    ['untrusted peer, valid v2 header', 'pp_plain', $OTHER, $v2,
     qr/peer is not in ProxyProtocolTrustedProxies/],
    ['untrusted peer, no header', 'pp_plain', $OTHER, '',
     qr/peer is not in ProxyProtocolTrustedProxies/],
    ['untrusted peer on the TLS host', 'pp_tls', $OTHER, $v1,
     qr/peer is not in ProxyProtocolTrustedProxies/],
    ['trusted peer without a header', 'pp_plain', $LB, '',
     qr/not a PROXY protocol header/],
    ['trusted peer without a header, TLS host', 'pp_tls', $LB,
     "\x16\x03\x01\x00\x05hello", qr/not a PROXY protocol header/],
);

plan tests => REJECTED_TESTS * @rejected + 6 + 3 + 4,
     need_module('headers');

for my $case (@rejected) {
    my ($name, $vhost, $from, $before, $why) = @$case;
    my $mark = error_log_mark();
    my $r = pp_exchange($vhost, $from, $before . http_get('/pp/ok.txt'));
    expect_rejected($name, $r, $mark, $from, $why);
}

# An exception (a health checker) is served as itself, without a header.
{
    my $name = 'exception without a header';
    my $tag = new_tag('exc');
    my $r = pp_exchange('pp_plain', $EXCEPTION, http_get('/pp/ok.txt', $tag));
    my $h = $r->{headers};
    ok t_cmp($r->{status}, 200, "$name: status");
    ok t_cmp($r->{body}, "pp ok\n", "$name: body");
    ok t_cmp($h->{'x-remote-addr'}, $EXCEPTION, "$name: REMOTE_ADDR");
    ok t_cmp($h->{'x-conn-remote-addr'}, $EXCEPTION,
             "$name: CONN_REMOTE_ADDR");
    ok t_cmp($h->{'x-pp-version'}, undef, "$name: no PROXY variables");
    my $log = access_entry($tag) || {};
    ok t_cmp($log->{a}, $EXCEPTION, "$name: access log %a");
}

# ... and cannot claim another address: its header is not read as one, so
# HTTP sees a malformed request line.
{
    my $name = 'exception sending a header';
    my $mark = error_log_mark();
    my $r = pp_exchange('pp_plain', $EXCEPTION, $v1 . http_get('/pp/ok.txt'));
    ok t_cmp($r->{status}, 400, "$name: 400 Bad Request");
    ok t_cmp($r->{headers}{'x-pp-version'}, undef,
             "$name: no PROXY variables");
    ok t_cmp(scalar(rejections($mark, $EXCEPTION, $r->{local_port}, 0.2)), 0,
             "$name: no PP00004 line");
}

# The main server (no ProxyProtocol) serves plain HTTP and does not read
# headers.
{
    my $port = Apache::Test::vars('port');
    my $get = sub {
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                         PeerPort => $port, Timeout => 5)
            or die "connect to the main server: $@";
        print $sock @_;
        my ($data) = read_all($sock);
        return parse_response($data);
    };
    my $r = $get->(http_get('/pp/ok.txt'));
    ok t_cmp($r->{status}, 200, 'main server: plain request served');
    ok t_cmp($r->{headers}{'x-pp-version'}, undef,
             'main server: no PROXY variables');
    $r = $get->($v1 . http_get('/pp/ok.txt'));
    ok t_cmp($r->{status}, 400, 'main server: a header is a bad request');
    ok t_cmp($r->{headers}{'x-pp-version'}, undef,
             'main server: header not read');
}
