#
# ACME workers start once per directory and process, not once per server_rec
# whose merged configuration names a directory: the two virtual hosts
# certservice_acme1 and certservice_acme2 (t/conf/certservice.conf.in) name
# the same one, and startup must log CS00027 ("ACME issuance through ...")
# once for it.  Before the fix it was logged, and a set of workers started,
# for each of them.
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
is(scalar @started, 1, 'one set of ACME workers for the directory two '
   . 'virtual hosts name') or diag(join "\n", @started);

done_testing();
