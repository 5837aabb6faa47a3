#
# mod_proxy's backend connections are never treated as incoming ones: with
# ProxyProtocol On in the main server (so it applies to every local address
# no virtual host names, the local end of a backend connection included),
# a proxied request still works.  Runs its own small httpd.
#
use strict;
use warnings FATAL => 'all';

use File::Temp qw(tempdir);
use IO::Socket::INET;

use Apache::Test;
use Apache::TestUtil;
use PPTest;

my $config = Apache::Test::config();
my $httpd = Apache::Test::vars('httpd');
my $module = Apache::Test::vars('top_dir')
             . '/mod_proxy_protocol/.libs/mod_proxy_protocol.so';
my %stock = map { $_ => $config->find_apache_module("mod_$_.so") }
            qw(mpm_event authz_core proxy proxy_http);

plan tests => 3, sub { !grep { !$_ } values %stock };

my ($front, $back) = (free_port(), free_port());
my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/htdocs";
open my $fh, '>', "$dir/htdocs/be.txt" or die;
print $fh "from the backend\n";
close $fh;
open $fh, '>', "$dir/httpd.conf" or die;
print $fh <<"CONF";
ServerRoot $dir
ServerName localhost
PidFile $dir/httpd.pid
ErrorLog $dir/error_log
LogLevel info
Listen 127.0.0.1:$front
Listen 127.0.0.1:$back
LoadModule mpm_event_module $stock{mpm_event}
LoadModule authz_core_module $stock{authz_core}
LoadModule proxy_module $stock{proxy}
LoadModule proxy_http_module $stock{proxy_http}
LoadModule proxy_protocol_module $module
DocumentRoot $dir/htdocs
ProxyProtocol On
ProxyProtocolTrustedProxies 127.0.0.1
ProxyPass /be/ http://127.0.0.1:$back/
<VirtualHost 127.0.0.1:$back>
    ProxyProtocol Off
</VirtualHost>
CONF
close $fh;

system($httpd, '-f', "$dir/httpd.conf", '-k', 'start') == 0
    or die "cannot start $httpd";
for (1 .. 50) {
    last if -s "$dir/httpd.pid";
    select undef, undef, undef, 0.1;
}

my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$front",
                                 Timeout => 5);
print $sock "PROXY TCP4 203.0.113.9 192.0.2.1 5555 80\r\n"
    . "GET /be/be.txt HTTP/1.0\r\nHost: localhost\r\n\r\n";
my $response = do { local $/; <$sock> } // '';
close $sock;

ok t_cmp($response, qr{^HTTP/1\.1 200 }, 'proxied request answered 200');
ok t_cmp($response, qr/from the backend/, 'with the backend\'s body');

system($httpd, '-f', "$dir/httpd.conf", '-k', 'stop');
for (1 .. 50) {
    last unless -e "$dir/httpd.pid";
    select undef, undef, undef, 0.1;
}
open $fh, '<', "$dir/error_log" or die;
my $log = do { local $/; <$fh> };
close $fh;
ok t_cmp(scalar(() = $log =~ /PP00004/g), 0,
         'no connection rejected (the backend connection was left alone)');
