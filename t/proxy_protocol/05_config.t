#
# Configuration checks, with `httpd -t` on small generated configurations:
# bad directive values name the directive and the value; mod_remoteip's
# RemoteIPProxyProtocol and ProxyProtocol may not both read the header on
# one address; virtual hosts sharing an address must agree.
#
use strict;
use warnings FATAL => 'all';

use File::Temp qw(tempdir);

use Apache::Test;
use Apache::TestUtil;
use PPTest;

my $config = Apache::Test::config();
my $httpd = Apache::Test::vars('httpd');
my $module = Apache::Test::vars('top_dir')
             . '/mod_proxy_protocol/.libs/mod_proxy_protocol.so';
my %stock = map { $_ => $config->find_apache_module("mod_$_.so") }
            qw(mpm_event remoteip);
my ($port1, $port2) = (free_port(), free_port());

# name, configuration, expected: 'ok' or a pattern of the error.
my @cases = (
    ['ProxyProtocol On with trusted proxies',
     "ProxyProtocol On\nProxyProtocolTrustedProxies 127.0.0.1 10.0.0.0/8 ::1/128",
     'ok'],
    ['limits at their bounds',
     "ProxyProtocol On\nProxyProtocolMaxHeaderSize 52\n"
     . "<VirtualHost 127.0.0.1:$port2>\nProxyProtocolMaxHeaderSize 65551\n"
     . "ProxyProtocolTimeout 500ms\n</VirtualHost>",
     'ok'],
    ['ProxyProtocolTrustedProxies not-an-ip',
     'ProxyProtocolTrustedProxies not-an-ip',
     qr/ProxyProtocolTrustedProxies: 'not-an-ip' is invalid/],
    ['ProxyProtocolExceptions 10.0.0.0/33',
     'ProxyProtocolExceptions 10.0.0.0/33',
     qr/ProxyProtocolExceptions: '10\.0\.0\.0\/33' is invalid/],
    ['ProxyProtocolTimeout -1', 'ProxyProtocolTimeout -1',
     qr/ProxyProtocolTimeout: '-1' is not a time/],
    ['ProxyProtocolTimeout 0', 'ProxyProtocolTimeout 0',
     qr/ProxyProtocolTimeout: '0' is not a time/],
    ['ProxyProtocolTimeout 3601', 'ProxyProtocolTimeout 3601',
     qr/ProxyProtocolTimeout: '3601' is not a time/],
    ['ProxyProtocolMaxHeaderSize 70000', 'ProxyProtocolMaxHeaderSize 70000',
     qr/ProxyProtocolMaxHeaderSize: '70000' is not a number of bytes between 52 and 65551/],
    ['ProxyProtocolMaxHeaderSize 51', 'ProxyProtocolMaxHeaderSize 51',
     qr/ProxyProtocolMaxHeaderSize: '51' is not a number of bytes/],
    ['ProxyProtocolMaxHeaderSize 1k', 'ProxyProtocolMaxHeaderSize 1k',
     qr/ProxyProtocolMaxHeaderSize: '1k' is not a number of bytes/],
    ['RemoteIPProxyProtocol and ProxyProtocol in the main server',
     "RemoteIPProxyProtocol On\nProxyProtocol On",
     qr/PP00001: RemoteIPProxyProtocol On \(.*\) and ProxyProtocol On apply to the same address/],
    ['RemoteIPProxyProtocol and ProxyProtocol in one virtual host',
     "<VirtualHost 127.0.0.1:$port1>\nRemoteIPProxyProtocol On\n"
     . "ProxyProtocol On\n</VirtualHost>",
     qr/PP00001: RemoteIPProxyProtocol On/],
    ['ProxyProtocol inherited by a virtual host with RemoteIPProxyProtocol',
     "ProxyProtocol On\n<VirtualHost 127.0.0.1:$port1>\n"
     . "RemoteIPProxyProtocol On\n</VirtualHost>",
     qr/PP00001: RemoteIPProxyProtocol On/],
    ['RemoteIPProxyProtocol and ProxyProtocol on different addresses',
     "<VirtualHost 127.0.0.1:$port1>\nRemoteIPProxyProtocol On\n"
     . "</VirtualHost>\n<VirtualHost 127.0.0.1:$port2>\nProxyProtocol On\n"
     . "</VirtualHost>",
     'ok'],
    ['virtual hosts on one address disagreeing',
     "<VirtualHost *:$port1>\nServerName a.example\nProxyProtocol On\n"
     . "ProxyProtocolTimeout 2\n</VirtualHost>\n<VirtualHost *:$port1>\n"
     . "ServerName b.example\nProxyProtocol On\nProxyProtocolTimeout 3\n"
     . "</VirtualHost>",
     qr/PP00001: ProxyProtocol settings differ between .* which share the address/],
    ['virtual hosts on one address agreeing',
     "<VirtualHost *:$port1>\nServerName a.example\nProxyProtocol On\n"
     . "</VirtualHost>\n<VirtualHost *:$port1>\nServerName b.example\n"
     . "ProxyProtocol On\n</VirtualHost>",
     'ok'],
);

plan tests => 2 * @cases,
     need({ 'mod_mpm_event.so not found' => $stock{mpm_event},
            'mod_remoteip.so not found' => $stock{remoteip},
            "$module not built" => -f $module });

my $dir = tempdir('config-XXXXXX', DIR => Apache::Test::vars('t_logs'),
                  CLEANUP => 1);

# Runs httpd -t on a configuration made of the module, mod_remoteip and
# $body; returns the exit code and the output.
sub httpd_t {
    my $body = shift;
    my $conf = "$dir/httpd.conf";
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh <<EOF;
ServerRoot "$dir"
ServerName localhost
DefaultRuntimeDir "$dir"
PidFile "$dir/httpd.pid"
ErrorLog "$dir/error_log"
LoadModule mpm_event_module "$stock{mpm_event}"
LoadModule remoteip_module "$stock{remoteip}"
LoadModule proxy_protocol_module "$module"
Listen 127.0.0.1:$port1
Listen 127.0.0.1:$port2
$body
EOF
    close $fh;
    my $out = `'$httpd' -t -d '$dir' -f '$conf' 2>&1`;
    return ($? >> 8, $out);
}

for my $case (@cases) {
    my ($name, $body, $expect) = @$case;
    my ($rc, $out) = httpd_t($body);
    if ($expect eq 'ok') {
        ok t_cmp($rc, 0, "$name: httpd -t succeeds");
        ok t_cmp($out, qr/Syntax OK/, "$name: Syntax OK");
    }
    else {
        ok t_cmp($rc != 0 ? 1 : 0, 1, "$name: httpd -t fails");
        ok t_cmp($out, $expect, "$name: message");
    }
}
