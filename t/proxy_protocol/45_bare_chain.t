#
# An httpd without mod_logio, mod_reqtimeout and mod_http2's h2c check
# (t/c-modules/pp_bare removes the first two filters on the pp_bare host,
# which speaks only http/1.1): mod_proxy_protocol adds no filter of its
# own, so the core's input filter heads the connection's chain, and what
# followed the header in the module's read is served from it: pipelined
# requests after the header in the same write are answered one by one,
# and a request body is consumed up to its Content-Length, not beyond.
# (An earlier design's skip filter, removing itself after its first read,
# left the request's chain starting at it, past HTTP_IN: every case here
# then hung until the Timeout.)
#
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use PPTest;

plan tests => 7, need_module('pp_bare');

my $v1 = "PROXY TCP4 192.0.2.40 192.0.2.20 4444 80\r\n";
my $v2 = pp_v2(src => '192.0.2.41', dst => '192.0.2.20', src_port => 4445,
               dst_port => 80);

sub get {
    my ($path, $close) = @_;
    return "GET $path HTTP/1.1\r\nHost: localhost\r\n"
         . ($close ? "Connection: close\r\n" : '') . "\r\n";
}

sub statuses {
    my $raw = shift;
    return join ',', $raw =~ m{^HTTP/1\.1 (\d{3})}mg;
}

# The case meant: nothing but the core's filter below HTTP_IN.
{
    my $sock = pp_connect('pp_bare');
    syswrite $sock, $v1 . get('/pp/ok.txt', 1);
    my ($raw) = read_all($sock, 4);
    close $sock;
    my ($head) = $raw =~ m{^X-PP-Bare-Head: (\S+)}mi;
    ok t_cmp(lc($head // '(none)'), 'core_in',
             "the core's filter heads the connection's input chain");
}

# Header, two requests, one write.
for my $case (['v1', $v1], ['v2', $v2]) {
    my ($name, $hdr) = @$case;
    my $sock = pp_connect('pp_bare');
    syswrite $sock, $hdr . get('/pp/ok.txt') . get('/pp/ok.txt', 1);
    my ($raw, $closed, $took) = read_all($sock, 4);
    close $sock;
    ok t_cmp(statuses($raw), '200,200',
             "$name: two pipelined requests after the header answered");
    ok t_cmp($took < 3 ? 1 : 0, 1,
             sprintf("%s: without waiting for a timeout (%.2fs)", $name,
                     $took));
}

# A request with a body, then a second request, one write: the body ends at
# its Content-Length and the second request is read as a request.
my $sock = pp_connect('pp_bare');
syswrite $sock, $v1 . "POST /pp/ok.txt HTTP/1.1\r\nHost: localhost\r\n"
    . "Content-Length: 5\r\n\r\nhello" . get('/pp/ok.txt', 1);
my ($raw, $closed, $took) = read_all($sock, 4);
close $sock;
my @st = split /,/, statuses($raw);
ok t_cmp(scalar(@st), 2, 'body, then a request: two responses ('
         . join(',', @st) . ')');
ok t_cmp($st[1] || '', '200', '... the second request served');
