#
# Runs last: whatever the tests sent, no child crashed and
# mod_proxy_protocol logged nothing above info (its warnings, PP00002 and
# PP00003, are for configurations without ProxyProtocolTrustedProxies,
# which the test server does not have).
#
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use PPTest;

plan tests => 2;

# This server's lines: from the first one its parent process logged (the
# log is kept across runs of t/TEST without -clean).
my $pidfile = Apache::Test::vars('t_pid_file');
open my $fh, '<', $pidfile or die "$pidfile: $!";
my ($pid) = <$fh> =~ /(\d+)/;
close $fh;
my @lines = split /\n/, error_log_since(0);
my ($first) = grep { $lines[$_] =~ /\[pid \Q$pid\E[:\]]/ } 0 .. $#lines;
@lines = @lines[($first || 0) .. $#lines];

ok t_cmp(join("\n", grep { /AH00052: child pid \d+ exit signal/ } @lines),
         '', 'no child process crashed');
ok t_cmp(join("\n",
              grep { /\[proxy_protocol:(warn|error|crit|alert|emerg)\]/ }
              @lines),
         '', 'no mod_proxy_protocol message above info');
