#!/bin/sh
# What an ACME run adds to a make-pki.sh directory:
#   acme-tls-ca.{crt,key}  a CA for pebble's own TLS (CertServiceACMECA
#                          trusts it)
#   acme-tls.{crt,key}     pebble's TLS certificate (127.0.0.1, localhost)
#   seal.{crt,key}         the key that seals CertService's ACME account key
#   CLIENT.pem             each client's certificate and key in one file
#                          (for SSLProxyMachineCertificateFile)
# Keys are made readable (644): httpd's children and pebble read them.
# Usage: make-acme-pki.sh DIR LABEL [CLIENT...]   (CLIENT: default proxy)
set -eu
dir=$1
label=$2
shift 2
[ $# -gt 0 ] || set -- proxy
cd "$dir"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout acme-tls-ca.key -out acme-tls-ca.crt -days 30 \
    -subj "/CN=$label pebble TLS CA" \
    -addext basicConstraints=critical,CA:TRUE
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout acme-tls.key -out acme-tls.csr -subj "/CN=127.0.0.1"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >acme-tls.ext
openssl x509 -req -in acme-tls.csr -CA acme-tls-ca.crt \
    -CAkey acme-tls-ca.key -CAcreateserial -days 30 \
    -extfile acme-tls.ext -out acme-tls.crt
openssl req -x509 -newkey rsa:2048 -nodes -keyout seal.key \
    -out seal.crt -subj "/CN=$label account seal" -days 30
for c in "$@"; do
    cat "$c.crt" "$c.key" >"$c.pem"
done
chmod 644 ./*.crt ./*.key ./*.pem
