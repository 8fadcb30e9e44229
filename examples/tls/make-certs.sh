#!/usr/bin/env bash
# A throwaway CA and a certificate for `localhost` signed by it, for examples/ws-echo.toml.
# Writes ca.pem, localhost.pem and localhost.key beside this script. Not for production.
set -euo pipefail
cd "$(dirname "$0")"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=ringway example CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout localhost.key -out localhost.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' > localhost.ext
openssl x509 -req -in localhost.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile localhost.ext -out localhost.pem 2>/dev/null
rm -f localhost.csr localhost.ext ca.srl
echo "wrote $(pwd)/ca.pem, localhost.pem, localhost.key"
