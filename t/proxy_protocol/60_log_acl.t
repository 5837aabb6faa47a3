#
# The PROXY source is the client address for access control (Require ip on
# /acl/: 203.0.113.0/24 and 2001:db8:a::/48), for the access log (%a,
# %{c}a, %h) and for request-level error log lines ([client ...]).
#
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use PPTest;

my $LB = '127.0.0.1';

# name, source address, header, client address and port expected (undef:
# the connection's own port), status expected.
my @acl = (
    ['allowed PROXY source (v1)', $LB,
     "PROXY TCP4 203.0.113.9 192.0.2.1 5555 80\r\n", '203.0.113.9', 5555,
     200],
    ['denied PROXY source (v1)', $LB,
     "PROXY TCP4 198.51.100.1 192.0.2.1 5556 80\r\n", '198.51.100.1', 5556,
     403],
    ['allowed PROXY source (v2, IPv6)', $LB,
     pp_v2(family => 'inet6', src => '2001:db8:a::5', dst => '2001:db8::1',
           src_port => 5557, dst_port => 80), '2001:db8:a::5', 5557, 200],
    ['denied PROXY source (v2, IPv6)', $LB,
     pp_v2(family => 'inet6', src => '2001:db8:b::5', dst => '2001:db8::1',
           src_port => 5558, dst_port => 80), '2001:db8:b::5', 5558, 403],
    ['LOCAL: the load balancer itself is checked', $LB,
     pp_v2(command => 'LOCAL', family => 'unspec'), $LB, undef, 403],
    ['exception: checked as itself', '127.0.0.3', '', '127.0.0.3', undef,
     403],
);

plan tests => 6 * @acl + 3, need_module('authz_host'), need_module('headers');

for my $case (@acl) {
    my ($name, $from, $header, $client, $port, $status) = @$case;
    my $tag = new_tag('acl');
    my $mark = error_log_mark();
    my $r = pp_exchange('pp_plain', $from,
                        $header . http_get('/acl/ok.txt', $tag));
    ok t_cmp($r->{status}, $status, "$name: status");
    ok t_cmp($status == 200 ? $r->{body} : '', $status == 200 ? "acl ok\n" : '',
             "$name: body");
    ok t_cmp($r->{headers}{'x-remote-addr'}, $client, "$name: REMOTE_ADDR");
    my $log = access_entry($tag) || {};
    ok t_cmp(log_fields($log, qw(a ca h status)),
             "$client $client $client $status",
             "$name: access log %a %{c}a %h %>s");
    ok t_cmp($log->{path}, '/acl/ok.txt', "$name: access log %U");
    if ($status == 403) {
        $port = $r->{local_port} unless defined $port;
        my @lines = wait_error_log($mark,
            qr/\[client \Q$client:$port\E\] AH01630: client denied/);
        ok t_cmp(scalar @lines, 1, "$name: AH01630 names [client $client:$port]");
    }
    else {
        ok t_cmp(scalar(wait_error_log($mark, qr/AH01630/, 0.2)), 0,
                 "$name: no AH01630");
    }
}

# A request-level error line (core's "File does not exist") names the
# PROXY source as well.
{
    my $name = 'missing file';
    my $mark = error_log_mark();
    my $r = pp_exchange('pp_plain', $LB,
                        "PROXY TCP4 192.0.2.99 192.0.2.1 6060 80\r\n"
                        . http_get('/pp/missing.txt'));
    ok t_cmp($r->{status}, 404, "$name: status");
    my @lines = wait_error_log($mark, qr/AH00128: File does not exist/);
    ok t_cmp(scalar @lines, 1, "$name: AH00128 logged");
    ok t_cmp($lines[0], qr/\[client 192\.0\.2\.99:6060\]/,
             "$name: with [client 192.0.2.99:6060]");
}
