#
# Runs last: whatever the tests sent, no child crashed and mod_certservice
# logged no error other than the 503s t/certservice/25_errors.t provokes
# (no issuer, no wrapping certificate): in particular no database error
# (SQLite busy, a failed transaction) under the concurrent lease requests.
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

my $vars = Apache::Test::basic_config()->{vars};
my $log = read_file("$vars->{t_logs}/error_log") // '';
my $pid = (read_file($vars->{t_pid_file}) // '') =~ /(\d+)/ ? $1 : 0;
my @lines = split /\n/, $log;
# This server's lines: from the first one its parent process logged (the
# log is kept across runs of t/TEST without -clean).
my ($first) = grep { $lines[$_] =~ /\[pid \Q$pid\E[:\]]/ } 0 .. $#lines;
@lines = @lines[($first || 0) .. $#lines];
ok(scalar @lines, 'the server\'s error log') or diag("pid $pid");

my @crash = grep { /AH00052: child pid \d+ exit signal/ } @lines;
ok(!@crash, 'no child process crashed') or diag(join "\n", @crash);

my @errors = grep {
    /\[certservice:(error|crit|alert|emerg)\]/
    && !/: 503 (no issuer configured|no wrapping certificate configured|issuing \S+ failed: no issuer configured)/
} @lines;
ok(!@errors, 'mod_certservice logged no unexpected error')
    or diag(join "\n", @errors[0 .. ($#errors > 9 ? 9 : $#errors)]);

my @audit = grep { /\[certservice:notice\].* CS00004: admin 'CN=admin,O=certsuite test': (issued|reissued|imported) / } @lines;
ok(scalar @audit, 'admin changes are logged with who made them (CS00004)');
my @del = grep { /CS00005: admin 'CN=admin,O=certsuite test': deleted / }
          @lines;
ok(scalar @del, 'deletes too (CS00005)');

done_testing();
