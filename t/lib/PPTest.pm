package PPTest;
#
# Helpers for the mod_proxy_protocol tests: PROXY headers (v1, v2 with TLVs
# and CRC32C), raw loopback connections from a chosen source address, the
# server's logs, and an HAProxy or nginx started for one test file.
#
use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use Errno qw(EINTR EAGAIN);
use File::Temp qw(tempdir);
use POSIX ();
use IO::Select;
use IO::Socket::INET;
use Socket qw(AF_INET6 IPPROTO_TCP TCP_NODELAY inet_aton inet_pton);
use Time::HiRes qw(time sleep);

use Apache::Test qw(ok);
use Apache::TestUtil qw(t_cmp t_debug);
use HttpdDefines ();   # no "Could not open configuration file" line

our @EXPORT = qw(
    pp_port pp_connect pp_exchange read_all parse_response http_get new_tag
    pp_v2 pp_tlv pp_ssl_tlv crc32c PP2_SIG
    error_log_mark error_log_since wait_error_log rejections
    expect_rejected REJECTED_TESTS
    access_entry access_entries log_fields seen_as logged_as
    haproxy_bin nginx_bin nginx_stream_module free_port
    start_haproxy start_nginx stop_balancer curl_headers
);

use constant PP2_SIG => "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A";

# ------------------------------------------------------------------------
# Connections

# The port of a <VirtualHost name> in t/conf/extra.conf.in.
sub pp_port {
    my $vhost = shift;
    my $port = Apache::Test::vars("${vhost}_port")
        or die "no port for virtual host '$vhost'";
    return $port;
}

# A TCP connection to a test virtual host from a loopback source address:
# 127.0.0.1 is the trusted load balancer, 127.0.0.3 an exception,
# 127.0.0.2 anybody else.  Small writes leave at once (no Nagle), so a
# header written in pieces really arrives in pieces.
sub pp_connect {
    my ($vhost, $from) = @_;
    my $sock = IO::Socket::INET->new(
        PeerAddr  => '127.0.0.1',
        PeerPort  => pp_port($vhost),
        LocalAddr => $from || '127.0.0.1',
        Proto     => 'tcp',
        Timeout   => 5,
    ) or die "connect to $vhost from " . ($from || '127.0.0.1') . ": $@";
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    $sock->autoflush(1);
    return $sock;
}

sub write_all {
    my ($sock, $data) = @_;
    while (length $data) {
        my $n = syswrite($sock, $data);
        if (!defined $n) {
            next if $! == EINTR;
            return 0;
        }
        substr($data, 0, $n) = '';
    }
    return 1;
}

# Reads until the peer closes, or $timeout seconds pass.  Returns the bytes,
# whether the connection was closed (EOF or reset) and the time it took.
sub read_all {
    my ($sock, $timeout) = @_;
    $timeout ||= 10;
    my $start = time;
    my $sel = IO::Select->new($sock);
    my ($data, $closed) = ('', 0);
    while (1) {
        my $left = $start + $timeout - time;
        last if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($sock, my $buf, 65536);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            $closed = 1;        # ECONNRESET and the like
            last;
        }
        if ($n == 0) {
            $closed = 1;
            last;
        }
        $data .= $buf;
    }
    return ($data, $closed, time - $start);
}

# An HTTP/1.1 request that closes the connection; the tag comes back in the
# access log (t/conf/extra.conf.in, LogFormat pp_test).
sub http_get {
    my ($path, $tag) = @_;
    my $req = "GET $path HTTP/1.1\r\nHost: localhost\r\n";
    $req .= "X-PP-Test: $tag\r\n" if defined $tag;
    return $req . "Connection: close\r\n\r\n";
}

my $tag_seq = 0;
sub new_tag {
    my $what = shift || 't';
    return sprintf '%s-%d-%d-%d', $what, $$, time, ++$tag_seq;
}

# Status, headers (lower-case names) and body of an HTTP/1.x response;
# status is undef when there is no response at all.
sub parse_response {
    my $raw = shift;
    my %r = (raw => $raw, status => undef, headers => {}, body => '');
    return \%r unless defined $raw && $raw =~ m{^HTTP/1\.\d (\d{3})};
    $r{status} = $1;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    for my $line (split /\r\n/, $head) {
        next unless $line =~ /^([^:\s]+):\s*(.*)$/;
        $r{headers}{lc $1} = $2;
    }
    $r{body} = defined $body ? $body : '';
    return \%r;
}

# Connects to $vhost from $from and writes each chunk of @$chunks, waiting
# $opt{pause} seconds between chunks (while watching for the server closing
# the connection), then reads until the server closes or $opt{timeout}
# seconds pass.  Returns parse_response()'s hash plus closed (the server
# closed the connection), elapsed (seconds from connect to close, or to
# giving up) and local_port (to find the connection in the error log).
sub pp_exchange {
    my ($vhost, $from, $chunks, %opt) = @_;
    $chunks = [$chunks] unless ref $chunks;
    local $SIG{PIPE} = 'IGNORE';
    my $sock = pp_connect($vhost, $from);
    my $local_port = $sock->sockport;
    my $start = time;
    my $sel = IO::Select->new($sock);
    my ($data, $closed) = ('', 0);
    my $first = 1;
    for my $chunk (@$chunks) {
        if ($opt{pause} && !$first) {
            my $until = time + $opt{pause};
            while (!$closed && (my $left = $until - time) > 0) {
                next unless $sel->can_read($left);
                my $n = sysread($sock, my $buf, 65536);
                if ($n) {
                    $data .= $buf;
                }
                elsif (!defined $n && ($! == EINTR || $! == EAGAIN)) {
                    next;
                }
                else {
                    $closed = 1;
                }
            }
        }
        $first = 0;
        last if $closed || !write_all($sock, $chunk);
    }
    my $elapsed = time - $start;
    unless ($closed) {
        my ($more, $rest_closed) = read_all($sock, $opt{timeout});
        $data .= $more;
        $closed = $rest_closed;
        $elapsed = time - $start;
    }
    close $sock;
    my $r = parse_response($data);
    $r->{closed} = $closed;
    $r->{elapsed} = $elapsed;
    $r->{local_port} = $local_port;
    return $r;
}

# ------------------------------------------------------------------------
# PROXY protocol v2

# CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as the CRC32C TLV
# uses it.
my @CRC32C_TABLE = map {
    my $c = $_;
    $c = ($c & 1) ? (($c >> 1) ^ 0x82F63B78) : ($c >> 1) for 1 .. 8;
    $c;
} 0 .. 255;

sub crc32c {
    my $crc = 0xFFFFFFFF;
    for my $byte (unpack 'C*', shift) {
        $crc = $CRC32C_TABLE[($crc ^ $byte) & 0xFF] ^ ($crc >> 8);
    }
    return $crc ^ 0xFFFFFFFF;
}

sub pp_tlv {
    my ($type, $value) = @_;
    return pack('C n', $type, length $value) . $value;
}

# The SSL TLV (0x20): client flags, verify result, then sub-TLVs given as
# [type, value] pairs.
sub pp_ssl_tlv {
    my ($client, $verify, @subs) = @_;
    return pp_tlv(0x20, pack('C N', $client, $verify)
                        . join('', map { pp_tlv(@$_) } @subs));
}

my %FAMILY = (unspec => 0x00, inet => 0x11, inet6 => 0x21, unix => 0x31);

# A v2 header.  Options: command (PROXY or LOCAL), family (inet, inet6,
# unix, unspec), family_byte (raw, overrides family), src, dst, src_port,
# dst_port, tlvs ([type, value] pairs, or raw bytes), crc32c (1: append a
# correct CRC32C TLV; 'bad': a wrong one).
sub pp_v2 {
    my %a = (command => 'PROXY', family => 'inet', src_port => 0,
             dst_port => 0, tlvs => [], @_);
    my $any = $a{family} eq 'inet6' ? '::' : '0.0.0.0';
    $a{src} = $any unless defined $a{src};
    $a{dst} = $any unless defined $a{dst};
    my $fam = defined $a{family_byte} ? $a{family_byte}
                                      : $FAMILY{$a{family}};
    die "pp_v2: unknown family $a{family}" unless defined $fam;

    my $block = '';
    my $ports = pack 'n n', $a{src_port}, $a{dst_port};
    if ($a{family} eq 'inet') {
        $block = inet_aton($a{src}) . inet_aton($a{dst}) . $ports;
    }
    elsif ($a{family} eq 'inet6') {
        $block = inet_pton(AF_INET6, $a{src}) . inet_pton(AF_INET6, $a{dst})
                 . $ports;
    }
    elsif ($a{family} eq 'unix') {
        $block = pack 'a108 a108', $a{src}, $a{dst};
    }

    my $tlvs = ref $a{tlvs} ? join('', map { pp_tlv(@$_) } @{ $a{tlvs} })
                            : $a{tlvs};
    $tlvs .= pp_tlv(0x03, "\0\0\0\0") if $a{crc32c};
    my $body = $block . $tlvs;
    my $hdr = PP2_SIG . chr($a{command} eq 'LOCAL' ? 0x20 : 0x21)
              . chr($fam) . pack('n', length $body) . $body;
    if ($a{crc32c}) {
        # Computed over the whole header with the checksum field zeroed.
        my $crc = crc32c($hdr);
        $crc ^= 0x1 if $a{crc32c} eq 'bad';
        substr($hdr, -4) = pack 'N', $crc;
    }
    return $hdr;
}

# ------------------------------------------------------------------------
# Logs

sub log_file { Apache::Test::vars('t_logs') . '/' . shift }

sub error_log_mark { return -s log_file('error_log') || 0 }

sub error_log_since {
    my $mark = shift;
    open my $fh, '<', log_file('error_log') or return '';
    seek $fh, $mark, 0;
    local $/;
    my $text = <$fh>;
    return defined $text ? $text : '';
}

# The lines written after $mark that match $re, waiting up to $timeout
# seconds for the first one (logs are written after the client may have
# seen the connection close).
sub wait_error_log {
    my ($mark, $re, $timeout) = @_;
    my $until = time + ($timeout || 3);
    while (1) {
        my @lines = grep { /$re/ } split /\n/, error_log_since($mark);
        return @lines if @lines || time > $until;
        sleep 0.05;
    }
}

# The PP00004 lines logged for the connection from $from:$port (waiting up
# to $timeout seconds, default 3, for the first).
sub rejections {
    my ($mark, $from, $port, $timeout) = @_;
    return wait_error_log($mark,
                          qr/\[client \Q$from:$port\E\] PP00004: /,
                          $timeout);
}

# How many tests expect_rejected() runs.
use constant REJECTED_TESTS => 5;

# Asserts that the connection of pp_exchange() result $r, made from $from
# after error_log_mark() $mark, was closed by mod_proxy_protocol: no
# response bytes, closed before $max_secs (default 1.5: well before the
# test hosts' 2s ProxyProtocolTimeout), and exactly one info-level PP00004
# line that names the peer and matches $why.
sub expect_rejected {
    my ($name, $r, $mark, $from, $why, $max_secs) = @_;
    $max_secs ||= 1.5;
    ok t_cmp($r->{raw}, '', "$name: no response bytes");
    ok t_cmp($r->{closed} && $r->{elapsed} < $max_secs ? 1 : 0, 1,
             "$name: connection closed within ${max_secs}s "
             . "(took " . sprintf('%.2f', $r->{elapsed}) . 's)');
    my @lines = rejections($mark, $from, $r->{local_port});
    ok t_cmp(scalar @lines, 1, "$name: one PP00004 line");
    ok t_cmp($lines[0],
             qr/\[proxy_protocol:info\].*closing connection from \Q$from\E: /,
             "$name: logged at info level, naming the peer");
    ok t_cmp($lines[0], $why, "$name: logged reason");
}

# The access log lines (LogFormat pp_test) of the requests tagged $tag, as
# hashes of their fields, once there are at least $want (default 1) or
# $timeout seconds (default 3) have passed.
sub access_entries {
    my ($tag, $want, $timeout) = @_;
    $want ||= 1;
    my $until = time + ($timeout || 3);
    while (1) {
        my @found;
        if (open my $fh, '<', log_file('pp_access.log')) {
            while (my $line = <$fh>) {
                next unless $line =~ /^tag=\Q$tag\E /;
                chomp $line;
                push @found, { map { split /=/, $_, 2 } split / /, $line };
            }
        }
        return @found if @found >= $want || time > $until;
        sleep 0.05;
    }
}

# The first of them, or undef.
sub access_entry {
    my ($tag, $timeout) = @_;
    my ($entry) = access_entries($tag, 1, $timeout);
    return $entry;
}

# Some fields of an access log entry (undef: none found) as one string,
# '-' for a missing one: "a ca h" gives e.g. "192.0.2.1 192.0.2.1 -".
sub log_fields {
    my ($entry, @keys) = @_;
    return join ' ', map {
        $entry && defined $entry->{$_} ? $entry->{$_} : '-'
    } @keys;
}

# seen_as(NAME, HEADERS, ADDR): two ok lines: the request's REMOTE_ADDR and
# CONN_REMOTE_ADDR (the x-remote-addr and x-conn-remote-addr headers that
# t/htdocs/pp answers with) are ADDR.
sub seen_as {
    my ($name, $h, $addr) = @_;
    ok t_cmp($h->{'x-remote-addr'}, $addr, "$name: REMOTE_ADDR");
    ok t_cmp($h->{'x-conn-remote-addr'}, $addr, "$name: CONN_REMOTE_ADDR");
}

# logged_as(NAME, TAG, ADDR, [FIELD...]): one ok line: the access log line
# of TAG has ADDR in each FIELD (a ca); returns that entry.
sub logged_as {
    my ($name, $tag, $addr, @fields) = @_;
    @fields = qw(a ca) unless @fields;
    my $log = access_entry($tag);
    ok t_cmp(log_fields($log, @fields), join(' ', ($addr) x @fields),
             "$name: access log " . join(' ', map { $_ eq 'ca' ? '%{c}a'
                                                              : "%$_" } @fields));
    return $log;
}

# ------------------------------------------------------------------------
# HAProxy, nginx and curl

# The first executable NAME: $ENV{VAR}, then on PATH, then in /usr/sbin.
sub find_bin {
    my ($var, $name) = @_;
    my @try = grep { defined && length } $ENV{$var},
        (map { "$_/$name" } split(/:/, $ENV{PATH} || ''), '/usr/sbin');
    for (@try) {
        return $_ if -f $_ && -x _;
    }
    return undef;
}

sub haproxy_bin { find_bin('HAPROXY', 'haproxy') }
sub nginx_bin { find_bin('NGINX', 'nginx') }

# nginx's stream module (Debian: libnginx-mod-stream), or undef.
sub nginx_stream_module {
    my $so = $ENV{NGINX_STREAM_MODULE}
        || '/usr/lib/nginx/modules/ngx_stream_module.so';
    return -f $so ? $so : undef;
}

# A loopback port nobody listens on right now.
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1, ReuseAddr => 1)
        or die "free_port: $@";
    my $port = $s->sockport;
    close $s;
    return $port;
}

our @BALANCERS;

# The start of a configuration without a "global" section of its own: TCP
# mode, short timeouts.
my $HAPROXY_TCP_DEFAULTS = <<'EOF';
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
EOF

# The files of a balancer in a new temporary directory under t/logs
# ({name => content}, where %DIR% stands for that directory); returns the
# directory.
sub balancer_dir {
    my ($prefix, %files) = @_;
    my $dir = tempdir("$prefix-XXXXXX", DIR => Apache::Test::vars('t_logs'),
                      CLEANUP => 1);
    for my $name (keys %files) {
        (my $text = $files{$name}) =~ s/%DIR%/$dir/g;
        open my $fh, '>', "$dir/$name" or die "$dir/$name: $!";
        print $fh $text;
        close $fh;
    }
    return $dir;
}

# Runs COMMAND (a daemon that writes PIDFILE), then waits for PIDFILE and
# for each of PORTS to accept.  Returns a handle for stop_balancer, or dies.
sub start_daemon {
    my ($what, $command, $pidfile, $ports) = @_;
    my $out = `$command 2>&1`;
    die "$what failed to start ($?): $out" if $?;
    my $h = {};
    my $until = time + 5;
    until (-s $pidfile) {
        die "$what wrote no pid file" if time > $until;
        sleep 0.05;
    }
    open my $fh, '<', $pidfile or die "$pidfile: $!";
    ($h->{pid}) = <$fh> =~ /(\d+)/;
    close $fh;
    push @BALANCERS, $h;
    for my $port (@{ $ports || [] }) {
        until (IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port)) {
            if (time > $until) {
                stop_balancer($h);
                die "$what is not listening on $port";
            }
            sleep 0.05;
        }
    }
    return $h;
}

# Starts haproxy (a daemon) in a temporary directory under t/logs.
# Options: cfg, the configuration text, where %DIR% stands for that
# directory (without a "global" section it follows the TCP defaults
# above); files, more files to write there ({name => content}); ports, the
# ports to wait for.  Returns a handle for stop_balancer, or dies.
sub start_haproxy {
    my %opt = @_;
    my $bin = haproxy_bin() or die "haproxy not found";
    my $cfg = $opt{cfg};
    $cfg = $HAPROXY_TCP_DEFAULTS . $cfg unless $cfg =~ /^global\b/m;
    my $dir = balancer_dir('haproxy', %{ $opt{files} || {} },
                           'haproxy.cfg' => $cfg);
    return start_daemon('haproxy',
        "'$bin' -D -p '$dir/haproxy.pid' -f '$dir/haproxy.cfg'",
        "$dir/haproxy.pid", $opt{ports});
}

# Starts nginx (a daemon, one worker, its stream module loaded) in a
# temporary directory under t/logs, its error log there.  Options: stream,
# the text of the "stream" block (%DIR% as above); ports, as above.
# Returns a handle for stop_balancer, or dies.
sub start_nginx {
    my %opt = @_;
    my $bin = nginx_bin() or die "nginx not found";
    my $so = nginx_stream_module() or die "nginx's stream module not found";
    my $dir = balancer_dir('nginx', 'nginx.conf' => <<EOF);
load_module $so;
worker_processes 1;
pid %DIR%/nginx.pid;
error_log %DIR%/error.log warn;
events {
    worker_connections 64;
}
stream {
$opt{stream}}
EOF
    return start_daemon('nginx',
        "'$bin' -e '$dir/error.log' -c '$dir/nginx.conf'",
        "$dir/nginx.pid", $opt{ports});
}

# Balancers still running when the test ends (it died) are stopped too.
END { stop_balancer($_) for @BALANCERS }

# Stops a balancer started by start_haproxy or start_nginx: TERM, then
# KILL after 5 s.
sub stop_balancer {
    my $h = shift;
    return unless $h && $h->{pid};
    kill 'TERM', $h->{pid};
    my $until = time + 5;
    while (kill(0, $h->{pid}) && time < $until) {
        sleep 0.05;
    }
    kill 'KILL', $h->{pid} if kill 0, $h->{pid};
    delete $h->{pid};
}

# Runs curl with @args and returns (status, headers with lower-case names,
# curl's exit code, stderr) of the last response; the first body goes to
# /dev/null (later ones, if several URLs, into the headers file, where
# nothing looks like a header line).
sub curl_headers {
    my @args = @_;
    my $dir = tempdir('curl-XXXXXX', DIR => Apache::Test::vars('t_logs'),
                      CLEANUP => 1);
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        # _exit, never die: no END blocks (stop_balancer) in the child.
        open(STDOUT, '>', "$dir/headers") or POSIX::_exit(126);
        open(STDERR, '>', "$dir/stderr") or POSIX::_exit(126);
        exec('curl', '-sS', '--max-time', '10', '-D', '-', '-o', '/dev/null',
             @args) or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my $rc = $? >> 8;
    my ($status, %h);
    open my $fh, '<', "$dir/headers" or die;
    while (my $line = <$fh>) {
        $line =~ s/\r?\n$//;
        if ($line =~ m{^HTTP/\S+ (\d{3})}) {
            ($status, %h) = ($1);     # the last response counts
        }
        elsif ($line =~ /^([^:\s]+):\s*(.*)$/) {
            $h{lc $1} = $2;
        }
    }
    close $fh;
    open $fh, '<', "$dir/stderr" or die;
    my $err = join '', <$fh>;
    close $fh;
    t_debug("curl @args: exit $rc: $err") if $rc;
    return ($status, \%h, $rc, $err);
}

1;
