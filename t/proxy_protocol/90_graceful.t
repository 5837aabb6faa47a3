#
# A graceful restart (SIGUSR1) rebuilds the per-address settings from the
# new configuration: headers are still read, trust still applies.
#
use strict;
use warnings FATAL => 'all';

use Time::HiRes qw(sleep time);

use Apache::Test;
use Apache::TestUtil;
use PPTest;

plan tests => 1 + 3 + 2 + REJECTED_TESTS, need_module('headers');

my $pidfile = Apache::Test::vars('t_pid_file');
open my $fh, '<', $pidfile or die "$pidfile: $!";
my ($pid) = <$fh> =~ /(\d+)/;
close $fh;

my $mark = error_log_mark();
kill 'USR1', $pid or die "kill USR1 $pid: $!";
my @resumed = wait_error_log($mark, qr/AH00489: .* resuming normal operations/,
                             15);
ok t_cmp(scalar @resumed, 1, 'graceful restart done');

# The new generation's children may take a moment to accept.
my $r;
for (1 .. 20) {
    $r = pp_exchange('pp_plain', '127.0.0.1',
                     "PROXY TCP4 192.0.2.50 192.0.2.1 5050 80\r\n"
                     . http_get('/pp/ok.txt'));
    last if defined $r->{status};
    sleep 0.25;
}
ok t_cmp($r->{status}, 200, 'v1 after the restart: status');
ok t_cmp($r->{headers}{'x-remote-addr'}, '192.0.2.50',
         'v1 after the restart: REMOTE_ADDR');
ok t_cmp($r->{headers}{'x-pp-version'}, 1,
         'v1 after the restart: PROXY_PROTOCOL_VERSION');

$r = pp_exchange('pp_small', '127.0.0.1',
                 pp_v2(src => '192.0.2.51', dst => '192.0.2.1',
                       src_port => 5151, dst_port => 80, crc32c => 1)
                 . http_get('/pp/ok.txt'));
ok t_cmp($r->{status}, 200, 'v2 after the restart: status');
ok t_cmp($r->{headers}{'x-remote-addr'}, '192.0.2.51',
         'v2 after the restart: REMOTE_ADDR');

$mark = error_log_mark();
$r = pp_exchange('pp_plain', '127.0.0.2',
                 "PROXY TCP4 192.0.2.52 192.0.2.1 5252 80\r\n"
                 . http_get('/pp/ok.txt'));
expect_rejected('untrusted peer after the restart', $r, $mark, '127.0.0.2',
                qr/peer is not in ProxyProtocolTrustedProxies/);
