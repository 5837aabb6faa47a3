#!/bin/sh
# Test PKI for CertService, made fresh for every test run (never committed):
#   ca.{crt,key}         local CA that issues the domains' certificates
#   tls.{crt,key}        CertService's own server certificate (CN=localhost)
#   clients-ca.{crt,key} CA of the client certificates
#   admin, proxy, proxy2, norole .{crt,key}   client certificates
#   proxy3.{crt,key}     a third proxy's client certificate (the demo pool)
#   metrics.{crt,key}    a Prometheus server's (role metrics)
#   wrap1, wrap2 .{crt,key}   wrapping certificates (RSA-2048)
#   roles.conf           CertServiceRole lines (admin by fingerprint,
#                        proxies by subject DN)
# Usage: make-pki.sh DIR
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
[ -f roles.conf ] && exit 0

days=30
selfsigned() { # name subject keyopts
    # shellcheck disable=SC2086
    openssl req -x509 -newkey $3 -nodes -keyout "$1.key" -out "$1.crt" \
        -subj "$2" -days $days -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
leaf() { # name subject ca ext
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%s\n' "$4" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" \
        -CAcreateserial -days $days -out "$1.crt" -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

selfsigned ca "/O=certsuite test/CN=certsuite test issuing CA" \
    "ec -pkeyopt ec_paramgen_curve:P-256"
selfsigned clients-ca "/O=certsuite test/CN=certsuite test clients CA" \
    "ec -pkeyopt ec_paramgen_curve:P-256"
leaf tls "/CN=localhost" clients-ca \
    "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
for c in admin proxy proxy2 norole proxy3 metrics; do
    leaf "$c" "/O=certsuite test/CN=$c" clients-ca \
        "extendedKeyUsage=clientAuth"
done
for w in wrap1 wrap2; do
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$w.key" \
        -out "$w.crt" -subj "/O=certsuite test/CN=$w" -days $days 2>/dev/null
done
fp=$(openssl x509 -in admin.crt -noout -fingerprint -sha256 | cut -d= -f2)
cat > roles.conf <<CONF
CertServiceRole admin sha256:$fp
CertServiceRole proxy "dn:CN=proxy,O=certsuite test"
CertServiceRole proxy "dn:CN=proxy2,O=certsuite test"
CertServiceRole proxy "dn:CN=proxy3,O=certsuite test"
CertServiceRole metrics "dn:CN=metrics,O=certsuite test"
CONF
chmod 644 ./*.crt ./*.key roles.conf
