#!/bin/bash
# The demo, all on loopback: HAProxy (TCP mode, send-proxy-v2) in front of
# an Apache httpd with mod_proxy_protocol, over plain HTTP and TLS.  Shows
# the client address arriving through the PROXY header, then keeps running
# until Ctrl-C (or exits at once with DEMO_ONESHOT=1).
#
# As root on a fresh Debian machine it installs the dependencies first.
# Ports: DEMO_PORT (default 8080) and the next three.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
port=${DEMO_PORT:-8080}
lb_http=$port lb_tls=$((port + 1)) be_http=$((port + 2)) be_tls=$((port + 3))

say() { printf '\033[1m== %s\033[0m\n' "$*"; }

if [ "$(id -u)" = 0 ]; then
    "$top/build/install-deps.sh"
fi
cd "$top"
if [ ! -f mod_proxy_protocol/.libs/mod_proxy_protocol.so ]; then
    say "building"
    [ -x configure ] || ./autogen.sh >/dev/null 2>&1
    [ -f Makefile ] || ./configure >/dev/null
    make -j2 >/dev/null
fi

HTTPD=$(apxs -q SBINDIR)/$(apxs -q TARGET)
MODDIR=$(apxs -q LIBEXECDIR)
HAPROXY=$(PATH=$PATH:/usr/sbin command -v haproxy)

dir=$(mktemp -d /tmp/certsuite-demo.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/htdocs" "$dir/logs"
cleanup() {
    [ -f "$dir/httpd.pid" ] && kill "$(cat "$dir/httpd.pid")" 2>/dev/null
    [ -f "$dir/haproxy.pid" ] && kill "$(cat "$dir/haproxy.pid")" 2>/dev/null
    sleep 0.5
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'echo; say "stopping"; exit 0' INT TERM

say "a self-signed certificate for demo.example"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj /CN=demo.example -addext subjectAltName=DNS:demo.example \
    -days 2 -keyout "$dir/demo.key" -out "$dir/demo.crt" 2>/dev/null

cat > "$dir/htdocs/index.shtml" <<'HTML'
client address (from the PROXY header): <!--#echo var="REMOTE_ADDR" -->
load balancer (the TCP peer):           <!--#echo var="PROXY_PROTOCOL_PEER_ADDR" -->
PROXY protocol version:                 <!--#echo var="PROXY_PROTOCOL_VERSION" -->
protocol:                               <!--#echo var="SERVER_PROTOCOL" --> <!--#echo var="HTTPS" -->
HTML

user_conf=""
if [ "$(id -u)" = 0 ]; then
    user_conf="User nobody
Group nogroup"
fi

cat > "$dir/httpd.conf" <<CONF
ServerRoot "$dir"
ServerName localhost
PidFile "$dir/httpd.pid"
ErrorLog "$dir/logs/error_log"
LogLevel info
$user_conf
LoadModule mpm_event_module $MODDIR/mod_mpm_event.so
LoadModule authz_core_module $MODDIR/mod_authz_core.so
LoadModule mime_module $MODDIR/mod_mime.so
LoadModule include_module $MODDIR/mod_include.so
LoadModule dir_module $MODDIR/mod_dir.so
LoadModule socache_shmcb_module $MODDIR/mod_socache_shmcb.so
LoadModule ssl_module $MODDIR/mod_ssl.so
LoadModule http2_module $MODDIR/mod_http2.so
LoadModule proxy_protocol_module $top/mod_proxy_protocol/.libs/mod_proxy_protocol.so

DocumentRoot "$dir/htdocs"
DirectoryIndex index.shtml
TypesConfig /etc/mime.types
AddType text/plain .shtml
AddOutputFilter INCLUDES .shtml
<Directory "$dir/htdocs">
    Options +Includes
    Require all granted
</Directory>
LogFormat "client %a (connection %{c}a), load balancer %{PROXY_PROTOCOL_PEER_ADDR}e \"%r\" %>s" demo
CustomLog "$dir/logs/access_log" demo

# Every connection must come from the load balancer with a PROXY header.
ProxyProtocol On
ProxyProtocolTrustedProxies 127.0.0.1

Listen 127.0.0.1:$be_http
Listen 127.0.0.1:$be_tls
Protocols h2 h2c http/1.1
<VirtualHost 127.0.0.1:$be_tls>
    ServerName demo.example
    SSLEngine on
    SSLCertificateFile "$dir/demo.crt"
    SSLCertificateKeyFile "$dir/demo.key"
</VirtualHost>
CONF

cat > "$dir/haproxy.cfg" <<CONF
global
    pidfile $dir/haproxy.pid
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
listen http
    bind 127.0.0.1:$lb_http
    server apache 127.0.0.1:$be_http send-proxy-v2
listen tls
    bind 127.0.0.1:$lb_tls
    server apache 127.0.0.1:$be_tls send-proxy-v2
CONF

say "starting Apache httpd ($HTTPD) on 127.0.0.1:$be_http and :$be_tls"
"$HTTPD" -f "$dir/httpd.conf" -k start || { cat "$dir/logs/error_log" >&2; exit 1; }
say "starting HAProxy on 127.0.0.1:$lb_http and :$lb_tls (send-proxy-v2)"
"$HAPROXY" -D -f "$dir/haproxy.cfg"
sleep 1

run() {
    echo "\$ $*"
    "$@"
    echo
}
say "requests through the load balancer, from client address 127.0.0.7"
run curl -sS --interface 127.0.0.7 "http://127.0.0.1:$lb_http/"
run curl -sS --interface 127.0.0.7 --http2 --cacert "$dir/demo.crt" \
    --resolve "demo.example:$lb_tls:127.0.0.1" "https://demo.example:$lb_tls/"
say "a client that skips the load balancer is refused (no PROXY header)"
run curl -sS --interface 127.0.0.7 "http://127.0.0.1:$be_http/" || true
say "access log"
cat "$dir/logs/access_log"
echo
say "error log lines of mod_proxy_protocol"
grep -h 'PP0' "$dir/logs/error_log" || true

if [ -n "${DEMO_ONESHOT:-}" ] || [ ! -t 0 ]; then
    exit 0
fi
say "running: try the curl commands above; Ctrl-C stops everything"
while sleep 3600; do :; done
