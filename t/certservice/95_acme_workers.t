#
# ACME workers start for each server whose own configuration names an ACME
# directory, since each may keep its queue in a database of its own: the
# two virtual hosts certservice_acme1 and certservice_acme2
# (t/conf/certservice.conf.in) each name the same directory, and startup
# logs CS00027 ("ACME issuance through ...") once for each of them, and for
# no other server.  (A virtual host that only inherits the main server's
# directory starts none; this shared test server has no ACME directory in
# its main server, so that case is not exercised here.)
#
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/../lib";
use CSTest;

if (my $why = cs_ready()) {
    plan skip_all => $why;
}

my $url = 'https://127.0.0.1:9/certsuite-test-directory';
my $vars = Apache::Test::basic_config()->{vars};
my $log = read_file("$vars->{t_logs}/error_log") // '';
my $pid = (read_file($vars->{t_pid_file}) // '') =~ /(\d+)/ ? $1 : 0;
my @lines = split /\n/, $log;
# This server's startup: from the first line its parent process logged
# (the log is kept across runs of t/TEST without -clean) to the line that
# says it is serving.
my ($first) = grep { $lines[$_] =~ /\[pid \Q$pid\E[:\]]/ } 0 .. $#lines;
@lines = @lines[($first || 0) .. $#lines];
my ($ready) = grep { $lines[$_] =~ /AH00163|resuming normal operations/ }
    0 .. $#lines;
@lines = @lines[0 .. ($ready // $#lines)];
ok(scalar @lines, 'the server\'s startup lines') or diag("pid $pid");

my @started = grep { /CS00027: ACME issuance through \Q$url\E: 1 workers/ }
    @lines;
is(scalar @started, 2, 'a set of ACME workers for each of the two virtual '
   . 'hosts that name the directory') or diag(join "\n", @started);
is(scalar(grep { /CS00027:/ } @lines), 2, 'no other server starts ACME '
   . 'workers');

done_testing();
