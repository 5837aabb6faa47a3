# t/lib/HttpdDefines.pm: Apache-Test reads httpd's compile-time settings
# with "httpd -V -f HTTPD_CONF -d ...", HTTPD_CONF derived from apxs as
# SYSCONFDIR/httpd.conf.  Debian's is apache2.conf, so httpd printed
# "apache2: Could not open configuration file /etc/apache2/httpd.conf" on
# stderr for t/TEST and again for each test file: an error-looking line
# in a passing run.  The settings Apache-Test reads are printed all the
# same (it then inherits from SERVER_CONFIG_FILE, as before), and pointing
# -f at apache2.conf instead makes httpd parse the whole system
# configuration (and fail on Debian's APACHE_RUN_DIR).  So only when that
# file does not exist, that one command's stderr is dropped; nothing else
# changes.  Loaded by t/TEST, t/lib/PPTest.pm and t/lib/CSTest.pm.
package HttpdDefines;

use strict;
use warnings FATAL => 'all';

use Apache::TestConfig ();

{
    no warnings 'redefine';
    my $defines = \&Apache::TestConfig::get_httpd_defines;
    my $open_cmd = \&Apache::TestConfig::open_cmd;
    *Apache::TestConfig::get_httpd_defines = sub {
        my $self = shift;
        my $conf = $self->{vars}->{httpd_conf};

        return $defines->($self, @_) if !$conf || -e $conf;
        local *Apache::TestConfig::open_cmd = sub {
            my ($cfg, $cmd) = @_;
            return $open_cmd->($cfg, "$cmd 2>/dev/null");
        };
        return $defines->($self, @_);
    };
}

1;
