#!/bin/sh
# Certificates for the TLS tests of the Redis store (Rust and any other suite), made with openssl:
#
#   test-certs.sh DIR
#
# writes into DIR (created if missing), all PEM, valid for 2 days, EC P-256 keys:
#   ca.crt ca.key            a certificate authority, "brokk test CA"
#   server.crt server.key    signed by it, for 127.0.0.1 and localhost (serverAuth)
#   client.crt client.key    signed by it, for client authentication (clientAuth)
#   other-ca.crt             another authority, which signed none of these (a wrong ca=)
set -eu
dir=${1:?usage: test-certs.sh DIR}
command -v openssl >/dev/null || { echo "test-certs.sh: openssl is not installed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
authority() {  # authority NAME CN
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -days 2 -subj "/CN=$2" -out "$1.crt" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() {  # leaf NAME CN EXTENSIONS
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" \
        -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
authority ca "brokk test CA"
authority other-ca "another test CA"
rm -f other-ca.key
leaf server localhost "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth
basicConstraints=CA:FALSE"
leaf client "brokk test client" "extendedKeyUsage=clientAuth
basicConstraints=CA:FALSE"
rm -f ca.srl
