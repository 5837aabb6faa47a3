package CSTest;
#
# Helpers for the mod_certservice tests (t/certservice/*.t): HTTPS requests
# with the test PKI's client certificates (LWP over IO::Socket::SSL, one
# connection per request), JSON, the change feed, and the openssl checks of
# sealed keys.
#
# The server side is t/conf/certservice.conf.in; the PKI is made by
# t/certservice/make-pki.sh into t/certservice/pki (make check-httpd).
#
use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use File::Temp qw(tempdir);
use HTTP::Request ();
use IO::Socket::INET ();
use LWP::UserAgent ();
use JSON::PP ();
use MIME::Base64 qw(decode_base64 encode_base64);

use POSIX ();
use Test::More ();

use Apache::Test ();
use HttpdDefines ();   # no "Could not open configuration file" line

our @EXPORT = qw(
    cs_ready cs_pki cs_port cs_req cs_json_error uniq_name
    feed_head feed_since feed_all
    tmpdir write_file read_file run_cmd
    envelope_open envelope_check envelope_info pubkey_der_of_cert
    pubkey_der_of_key pem_certs cert_info
    is_pkcs8 make_key make_cert key_der gmstamp
    seen_bodies no_plaintext_keys remember_key
    WHO_ALL
);

use constant WHO_ALL => qw(admin proxy proxy2 norole);

my $json = JSON::PP->new->canonical->allow_nonref;

# ------------------------------------------------------------------------
# Environment

# Apache-Test's saved configuration (t/conf/apache_test_config.pm).  Not
# Apache::Test::vars(): that re-reads the httpd configuration through apxs,
# seconds per test file.
my $config;
sub config { return $config ||= Apache::Test::basic_config() }
sub var {
    my $name = shift;
    my $v = config()->{vars}{$name};
    die "Apache-Test knows no '$name'" unless defined $v;
    return $v;
}

sub cs_pki {
    return var('t_dir') . '/certservice/pki/' . shift;
}

sub cs_port {
    my $vhost = shift || 'certservice';
    return var("${vhost}_port");
}

# Why the suite cannot run, or undef (for skip_all in plan()).
sub cs_ready {
    my $why;
    $why = 'mod_ssl is not available'
        unless config()->{modules}{'mod_ssl.c'};
    $why ||= 'no LWP::Protocol::https'
        unless eval { require LWP::Protocol::https; 1 };
    $why ||= 'no openssl' unless grep { -x "$_/openssl" } split /:/, $ENV{PATH};
    $why ||= 'no test PKI (make check-httpd runs t/certservice/make-pki.sh)'
        unless -f cs_pki('roles.conf');
    $why ||= 'mod_certservice is not built (run make)'
        unless -f var('top_dir') . '/mod_certservice/.libs/mod_certservice.so';
    $why ||= 'the CertService virtual hosts are not configured '
             . '(t/conf/certservice.conf.in)'
        if grep { !config()->{vars}{"${_}_port"} }
               qw(certservice certservice_opt certservice_rot certservice_new
                  certservice_noca certservice_nowrap);
    # The virtual hosts are inside <IfModule mod_ssl.c> and
    # <IfModule mod_dbd.c>: without them, nothing listens.
    $why ||= 'nothing listens on the CertService port: is mod_dbd '
             . 'available (t/conf/certservice.conf.in loads it)?'
        unless IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => cs_port(), Timeout => 5);
    return $why;
}

my $tmp;
sub tmpdir {
    $tmp ||= tempdir('cstest-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    return $tmp;
}

my $name_seq = 0;
my $run_tag;
# A domain name no earlier run used: WHAT-TAG-N.test.example.
sub uniq_name {
    my $what = shift || 'd';
    $run_tag ||= lc sprintf '%x%x', time, $$;
    return sprintf '%s-%s-%d.test.example', $what, $run_tag, ++$name_seq;
}

sub write_file {
    my ($path, $data) = @_;
    open my $fh, '>:raw', $path or die "$path: $!";
    print $fh $data;
    close $fh or die "$path: $!";
    return $path;
}

sub read_file {
    my $path = shift;
    open my $fh, '<:raw', $path or return undef;
    local $/;
    my $data = <$fh>;
    close $fh;
    return $data;
}

# Runs a command (a list, no shell) with stdout and stderr to files;
# returns (exit status, stdout, stderr).
my $cmd_seq = 0;
sub run_cmd {
    my @cmd = @_;
    my $base = tmpdir() . '/cmd' . ++$cmd_seq;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$base.out" or POSIX::_exit(127);
        open STDERR, '>', "$base.err" or POSIX::_exit(127);
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my $rc = $? >> 8;
    my ($out, $err) = (read_file("$base.out"), read_file("$base.err"));
    unlink "$base.out", "$base.err";
    return ($rc, $out, $err);
}

# ------------------------------------------------------------------------
# HTTPS requests

my @bodies;         # every response body this test file saw
sub seen_bodies { return @bodies }

# cs_req(WHO, METHOD, PATH, OPTIONS): one request on a new connection.
#   WHO: admin, proxy, proxy2, norole (client certificates of the test PKI)
#        or undef (no client certificate)
#   OPTIONS: body => string, or a reference encoded as JSON
#            vhost => 'certservice' (default), certservice_opt, ...
#            chunked => 1 (send the body chunked, without Content-Length)
# Returns a hash: status (0 when there was no HTTP response, e.g. a refused
# TLS handshake), headers (lower-case names), body, json (decoded, or
# undef), error (LWP's text when status is 0).
my %ua;
sub ua {
    my $who = shift;
    my $key = $who // '-';
    return $ua{$key} ||= LWP::UserAgent->new(
        keep_alive => 0,
        timeout    => 20,
        env_proxy  => 0,
        max_redirect => 0,
        ssl_opts   => {
            SSL_ca_file     => cs_pki('clients-ca.crt'),
            verify_hostname => 1,
            (defined $who
             ? (SSL_cert_file => cs_pki("$who.crt"),
                SSL_key_file  => cs_pki("$who.key"))
             : ()),
        },
    );
}

sub cs_req {
    my ($who, $method, $path, %o) = @_;
    my $url = sprintf 'https://127.0.0.1:%d%s', cs_port($o{vhost}), $path;
    my $req = HTTP::Request->new($method => $url);
    if (exists $o{body}) {
        my $body = ref $o{body} ? $json->encode($o{body}) : $o{body};
        $req->header('Content-Type' => 'application/json');
        if ($o{chunked}) {
            # A code reference: LWP sends it chunked, in 4 KiB pieces.
            my @parts = unpack '(a4096)*', $body;
            $req->content(sub { shift @parts // '' });
        }
        else {
            $req->content($body);
            $req->header('Content-Length' => length $body);
        }
    }
    my $r = ua($who)->request($req);
    my %res = (headers => {}, body => $r->content // '');
    if (($r->header('Client-Warning') // '') eq 'Internal response') {
        # LWP made this response up: there was none.
        $res{status} = 0;
        $res{error} = $r->status_line . ' ' . $res{body};
        $res{body} = '';
    }
    else {
        $res{status} = $r->code;
        $r->headers->scan(sub {
            my ($name, $value) = (lc $_[0], $_[1]);
            return if $name =~ /^client-/;
            $res{headers}{$name} = exists $res{headers}{$name}
                ? "$res{headers}{$name}, $value" : $value;
        });
    }
    $res{json} = eval { $json->decode($res{body}) }
        if length $res{body};
    push @bodies, $res{body};
    Test::More::note("$method $path as " . ($who // 'nobody') . " on "
        . ($o{vhost} || 'certservice') . ": $res{status} "
        . substr($res{body}, 0, 300) . ($res{error} ? " ($res{error})" : ''))
        if $ENV{CSTEST_VERBOSE};
    return \%res;
}

# ok() that RES is an error response: STATUS, JSON {"error": non-empty
# text, "status": STATUS}, Content-Type application/json.  One test.
sub cs_json_error {
    my ($res, $status, $what, $match) = @_;
    my @why;
    push @why, "status $res->{status}, expected $status"
        unless $res->{status} == $status;
    push @why, 'Content-Type is ' . ($res->{headers}{'content-type'} // '-')
        unless ($res->{headers}{'content-type'} // '')
               =~ m{^application/json\b};
    my $j = $res->{json};
    if (ref $j ne 'HASH') {
        push @why, 'body is not a JSON object: ' . substr($res->{body}, 0, 200);
    }
    else {
        push @why, 'no error message'
            unless defined $j->{error} && !ref $j->{error}
                   && length $j->{error};
        push @why, 'JSON status is ' . ($j->{status} // 'missing')
            unless defined $j->{status} && $j->{status} == $status;
        push @why, "message '$j->{error}' does not match $match"
            if $match && defined $j->{error} && $j->{error} !~ $match;
    }
    Test::More::diag("$what: $_") for @why;
    return Test::More::ok(!@why, $what);
}

# ------------------------------------------------------------------------
# The change feed (as the proxy role)

# All changes after SINCE (array of hashes), following next/more.
sub feed_since {
    my ($since, $limit) = @_;
    $limit ||= 1000;
    my @all;
    for (my $guard = 0; $guard < 1000; $guard++) {
        my $res = cs_req('proxy', 'GET', "/v1/changes?since=$since&limit=$limit");
        die "change feed: $res->{status} $res->{body}"
            unless $res->{status} == 200 && ref $res->{json} eq 'HASH';
        push @all, @{ $res->{json}{changes} };
        $since = $res->{json}{next};
        return \@all unless $res->{json}{more};
    }
    die "change feed does not end";
}

sub feed_all { return feed_since(0) }

# The sequence number of the newest change (0 if none).
sub feed_head {
    my $all = feed_all();
    return @$all ? $all->[-1]{seq} : 0;
}

# ------------------------------------------------------------------------
# Keys, certificates and envelopes

my $file_seq = 0;
sub tmpfile {
    my $ext = shift || 'bin';
    return tmpdir() . '/f' . ++$file_seq . ".$ext";
}

# openssl_io(IN_EXT, DATA, ARGS...): runs openssl ARGS... -in FILE -out
# FILE2 with DATA in FILE (a temporary .IN_EXT); returns FILE2's contents
# (undef if openssl failed) and openssl's stderr.
sub openssl_io {
    my ($ext, $data, @args) = @_;
    my $in = write_file(tmpfile($ext), $data);
    my $out = tmpfile('out');
    my ($rc, undef, $err) = run_cmd('openssl', @args, '-in', $in,
                                    '-out', $out);
    my $res = $rc == 0 ? read_file($out) : undef;
    unlink $in, $out;
    return ($res, $err);
}

# Decrypts a key_cms (base64 DER CMS) with wrapping key WRAP (wrap1, wrap2)
# exactly as the documentation tells operators to; returns the plaintext
# (DER) or undef, and openssl's complaint.
sub envelope_open {
    my ($key_cms, $wrap) = @_;
    my ($der, $err) = openssl_io('cms', decode_base64($key_cms // ''),
        'cms', '-decrypt', '-inform', 'DER',
        '-recip', cs_pki("$wrap.crt"), '-inkey', cs_pki("$wrap.key"));
    remember_key($der) if defined $der;
    return wantarray ? ($der, $err) : $der;
}

# The DER SubjectPublicKeyInfo of the first certificate in PEM text.
sub pubkey_der_of_cert {
    my $pem = shift;
    my ($pub) = openssl_io('pem', $pem, 'x509', '-noout', '-pubkey');
    return undef unless defined $pub;
    my ($der) = openssl_io('pem', $pub, 'pkey', '-pubin', '-outform', 'DER');
    return $der;
}

# The DER SubjectPublicKeyInfo of a private key (DER, any format openssl
# pkey reads with -inform DER).
sub pubkey_der_of_key {
    my $der = shift;
    return undef unless defined $der;
    my ($pub) = openssl_io('der', $der, 'pkey', '-inform', 'DER', '-pubout',
                           '-outform', 'DER');
    return $pub;
}

# Whether DER is a PKCS#8 PrivateKeyInfo (version 0, AlgorithmIdentifier,
# OCTET STRING) of an EC or RSA key; returns the algorithm's name or undef.
sub is_pkcs8 {
    my $der = shift;
    return undef unless defined $der;
    my $in = write_file(tmpfile('der'), $der);
    my ($rc, $out) = run_cmd('openssl', 'asn1parse', '-inform', 'DER',
                             '-in', $in);
    unlink $in;
    return undef if $rc;
    my @l = split /\n/, $out;
    return undef unless @l >= 5
        && $l[0] =~ /d=0 .* cons: SEQUENCE/
        && $l[1] =~ /d=1 .* prim: INTEGER\s+:00$/
        && $l[2] =~ /d=1 .* cons: SEQUENCE/
        && $l[3] =~ /d=2 .* prim: OBJECT\s+:(id-ecPublicKey|rsaEncryption)$/;
    my $alg = $1;
    return (grep { /d=1 .* prim: OCTET STRING/ } @l[4 .. $#l]) ? $alg : undef;
}

# Everything the documentation promises about one key_cms, for a
# certificate chain: it opens with every wrapping key in OPEN, not with
# any in CLOSED, yields a PKCS#8 key of the certificate's public key.
# Returns a list of problems (empty: fine).
sub envelope_check {
    my ($key_cms, $chain_pem, $open, $closed) = @_;
    my @why;
    my $want = pubkey_der_of_cert($chain_pem);
    push @why, 'cannot read the certificate\'s public key' unless $want;
    for my $w (@$open) {
        my ($der, $err) = envelope_open($key_cms, $w);
        if (!defined $der) {
            push @why, "does not open with $w: $err";
            next;
        }
        push @why, "what $w opens is not PKCS#8" unless is_pkcs8($der);
        my $pub = pubkey_der_of_key($der);
        push @why, "the key $w opens does not match the certificate"
            unless defined $pub && defined $want && $pub eq $want;
    }
    for my $w (@{ $closed || [] }) {
        my $der = envelope_open($key_cms, $w);
        push @why, "opens with $w" if defined $der;
    }
    return @why;
}

# What `openssl cms -cmsout -print` says about a key_cms: a hash with
# type (content type), recipients (the CNs of the recipients' issuers, in
# order), kek (key transport algorithms), oaep_sha256 (whether every OAEP
# uses SHA-256 and MGF1-SHA-256), cek (content encryption algorithm).
sub envelope_info {
    my $key_cms = shift;
    my $in = write_file(tmpfile('cms'), decode_base64($key_cms // ''));
    my ($rc, $out, $err) = run_cmd('openssl', 'cms', '-cmsout', '-print',
                                   '-inform', 'DER', '-in', $in);
    unlink $in;
    return { error => $err } if $rc;
    my %i = (recipients => [], kek => [], oaep_sha256 => 1);
    ($i{type}) = $out =~ /^\s*contentType: (\S+)/m;
    for my $ktri (split /d\.ktri:/, $out) {
        next unless $ktri =~ /issuer: .*CN=(\S+)/;
        push @{ $i{recipients} }, $1;
        my ($alg) = $ktri =~ /keyEncryptionAlgorithm:\s*\n\s*algorithm: (\S+)/;
        push @{ $i{kek} }, $alg // '?';
        my ($params) = $ktri =~ /keyEncryptionAlgorithm:(.*?)encryptedKey:/s;
        $i{oaep_sha256} = 0 unless ($params // '') =~ /OBJECT\s+:sha256.*
                                                   OBJECT\s+:mgf1.*
                                                   OBJECT\s+:sha256/sx;
    }
    ($i{cek}) = $out =~ /contentEncryptionAlgorithm:\s*\n\s*algorithm: (\S+)/;
    return \%i;
}

# The certificates in PEM text, each as its own PEM.
sub pem_certs {
    my $pem = shift // '';
    return $pem =~ /(-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?)/sg;
}

# Facts about the first certificate in PEM text: serial (lower-case hex,
# no leading zeros), subject, issuer, san (DNS names), not_before,
# not_after (unix seconds).
sub cert_info {
    my $pem = shift;
    my $in = write_file(tmpfile('pem'), $pem);
    my ($rc, $out) = run_cmd('openssl', 'x509', '-in', $in, '-noout',
        '-serial', '-subject', '-issuer', '-startdate', '-enddate',
        '-ext', 'subjectAltName', '-nameopt', 'RFC2253');
    unlink $in;
    return undef if $rc;
    my %i;
    ($i{serial}) = $out =~ /serial=([0-9A-Fa-f]+)/;
    $i{serial} = lc $i{serial};
    $i{serial} =~ s/^0+(?=.)//;
    ($i{subject}) = $out =~ /subject=(.*)/;
    ($i{issuer}) = $out =~ /issuer=(.*)/;
    $i{san} = [ $out =~ /DNS:([^,\s]+)/g ];
    my ($nb) = $out =~ /notBefore=(.*)/;
    my ($na) = $out =~ /notAfter=(.*)/;
    $i{not_before} = asn1_time($nb);
    $i{not_after} = asn1_time($na);
    return \%i;
}

my %mon = (Jan => 0, Feb => 1, Mar => 2, Apr => 3, May => 4, Jun => 5,
           Jul => 6, Aug => 7, Sep => 8, Oct => 9, Nov => 10, Dec => 11);
# "Nov 22 11:24:27 2026 GMT" -> unix seconds
sub asn1_time {
    my $s = shift // return undef;
    my ($m, $d, $H, $M, $S, $y) =
        $s =~ /^(\w{3})\s+(\d+) (\d+):(\d+):(\d+) (\d{4}) GMT/ or return undef;
    require Time::Local;
    return Time::Local::timegm($S, $M, $H, $d, $mon{$m}, $y);
}

# A private key (PEM, PKCS#8): ec (P-256), p384, k256 (secp256k1),
# rsa (2048), rsa1024.
my %keyalg = (
    ec      => ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
    p384    => ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
    k256    => ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:secp256k1'],
    rsa     => ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
    rsa1024 => ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'],
);
sub make_key {
    my $type = shift || 'ec';
    my $out = tmpfile('key');
    my @alg = @{ $keyalg{$type} or die "no key type $type" };
    my ($rc, undef, $err) = run_cmd('openssl', 'genpkey', @alg, '-out', $out);
    die "genpkey: $err" if $rc;
    return read_file($out);
}

# Unix seconds as openssl ca's YYYYMMDDHHMMSSZ.
sub gmstamp {
    my @t = gmtime(shift);
    return sprintf '%04d%02d%02d%02d%02d%02dZ', $t[5] + 1900, $t[4] + 1,
                   @t[3, 2, 1, 0];
}

# A certificate (PEM) for KEY (PEM), issued by the test PKI's issuing CA
# (or ISSUER => [cert PEM file, key PEM file]), with options:
#   names => [DNS SANs], start => 'YYYYMMDDHHMMSSZ', end => ...,
#   days => N (default 30, from now - 1 minute).
# Uses `openssl ca`, the only openssl 3.0 tool that takes explicit dates.
my $ca_seq = 0;
sub make_cert {
    my ($key_pem, %o) = @_;
    my $d = tmpdir() . '/ca' . ++$ca_seq;
    mkdir $d or die "$d: $!";
    write_file("$d/index.txt", '');
    write_file("$d/serial", sprintf("%032X\n", int(rand(2**31)) * 1000 + $ca_seq));
    my ($icrt, $ikey) = $o{issuer} ? @{ $o{issuer} }
                                   : (cs_pki('ca.crt'), cs_pki('ca.key'));
    my @names = @{ $o{names} || [] };
    my $san = @names ? 'subjectAltName = ' . join(',', map { "DNS:$_" } @names)
                     : '';
    write_file("$d/ca.cnf", <<CNF);
[ ca ]
default_ca = test
[ test ]
dir = $d
database = $d/index.txt
new_certs_dir = $d
serial = $d/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
[ anything ]
commonName = optional
organizationName = optional
[ ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
$san
[ req ]
distinguished_name = dn
[ dn ]
CNF
    write_file("$d/key.pem", $key_pem);
    my $cn = $names[0] // 'no name';
    my ($rc, undef, $err) = run_cmd('openssl', 'req', '-new', '-key',
        "$d/key.pem", '-subj', "/CN=$cn", '-config', "$d/ca.cnf",
        '-out', "$d/req.csr");
    die "req: $err" if $rc;
    my @dates;
    if ($o{start} || $o{end}) {
        push @dates, '-startdate', $o{start} if $o{start};
        push @dates, '-enddate', $o{end} if $o{end};
    }
    else {
        push @dates, '-startdate', gmstamp(time - 60),
                     '-days', $o{days} || 30;
    }
    ($rc, undef, $err) = run_cmd('openssl', 'ca', '-batch', '-notext',
        '-config', "$d/ca.cnf", '-extensions', 'ext', '-cert', $icrt,
        '-keyfile', $ikey, @dates, '-in', "$d/req.csr",
        '-out', "$d/cert.pem");
    die "ca: $err" if $rc;
    return read_file("$d/cert.pem");
}

# The DER (PKCS#8) of a private key in PEM.
sub key_der {
    # (openssl pkey -outform DER writes the traditional format.)
    my ($der) = openssl_io('pem', shift, 'pkcs8', '-topk8', '-nocrypt',
                           '-outform', 'DER');
    return $der;
}

# ------------------------------------------------------------------------
# No plaintext private key, ever

my @keys;           # DER private keys this test file learned (opened)
sub remember_key { push @keys, shift }

# ok() that no response this test file saw holds a private key: no PEM
# private key block, and none of the keys the envelopes opened to (DER,
# base64 or hex).  One test.
sub no_plaintext_keys {
    my @extra = @_;     # more DER keys, e.g. imported ones
    my @why;
    my @needles;
    for my $der (@keys, @extra) {
        next unless defined $der && length $der;
        # 40 base64 characters from the middle of the key, at each of the
        # three byte alignments it could have inside a longer base64 text,
        # and 24 hex digits of it.
        for my $k (0 .. 2) {
            my $b64 = encode_base64(substr($der, $k), '');
            push @needles, substr($b64, int(length($b64) / 2) - 20, 40);
        }
        push @needles, unpack('H*', substr($der, length($der) / 2 - 6, 12));
    }
    my $i = 0;
    for my $body (@bodies) {
        $i++;
        push @why, "response $i holds a PEM private key"
            if $body =~ /PRIVATE KEY/;
        # Escapes (JSON, log-style, or both) undone where they could split
        # base64: \/ and \n, and white space.
        (my $flat = $body) =~ s{\\+/}{/}g;
        $flat =~ s/\\+n|\s//g;
        for my $n (@needles) {
            if (index($flat, $n) >= 0 || index(lc $flat, $n) >= 0) {
                push @why, "response $i holds a known private key";
                last;
            }
        }
    }
    Test::More::diag("no_plaintext_keys: $_") for @why;
    return Test::More::ok(!@why && @bodies > 0,
              'no response held a plaintext private key ('
              . scalar(@bodies) . ' responses, ' . scalar(@needles) / 4
              . ' keys)');
}

1;
