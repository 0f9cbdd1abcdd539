#!/usr/bin/env bats
# TLS settings of a listener's [[tls]] tables: min_version, ciphers, client certificates (mTLS)
# with client_ca/client_auth, OCSP stapling, and static response_headers (HSTS) on proxied
# responses and on the proxy's own errors.

load helpers

# make_ca DIR NAME: a CA certificate DIR/NAME.crt with its key DIR/NAME.key.
make_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$1/$2.key" -out "$1/$2.crt" 2>/dev/null
}

# issue DIR CA NAME USAGE [SAN]: DIR/NAME.crt and DIR/NAME.key, signed by DIR/CA, with the
# extended key usage USAGE (serverAuth or clientAuth) and the subjectAltName SAN.
issue() {
  local dir=$1 ca=$2 name=$3 usage=$4 san=${5:-}
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/O=Example/CN=$name" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$usage"
    [[ -n $san ]] && echo "subjectAltName=$san"
  } >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
}

setup_file() {
  local dir=$BATS_FILE_TMPDIR
  make_ca "$dir" server-ca
  issue "$dir" server-ca a.test serverAuth "DNS:a.test"
  make_ca "$dir" client-ca
  issue "$dir" client-ca client.test clientAuth
  make_ca "$dir" other-ca
  issue "$dir" other-ca rogue.test clientAuth

  # An OCSP response for a.test's certificate, signed by its CA ("good").
  local serial expiry
  serial=$(openssl x509 -in "$dir/a.test.crt" -noout -serial | cut -d= -f2)
  expiry=$(date -u -d '+2 days' +%y%m%d%H%M%SZ)
  printf 'V\t%s\t\t%s\tunknown\t/O=Example/CN=a.test\n' "$expiry" "$serial" >"$dir/index.txt"
  openssl ocsp -issuer "$dir/server-ca.crt" -cert "$dir/a.test.crt" -no_nonce \
    -reqout "$dir/ocsp.req" 2>/dev/null
  openssl ocsp -index "$dir/index.txt" -CA "$dir/server-ca.crt" -rsigner "$dir/server-ca.crt" \
    -rkey "$dir/server-ca.key" -reqin "$dir/ocsp.req" -respout "$dir/a.test.ocsp" -ndays 1 \
    >/dev/null 2>&1
  [[ -s "$dir/a.test.ocsp" ]]
}

setup() {
  CERTS=$BATS_FILE_TMPDIR
  start_backend tls-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_pool "$UPSTREAMS" "" "$BACKEND_PORT"
  TLS_PORT=$(free_port)
  CONFIG="$BATS_TEST_TMPDIR/gk.toml"
}

teardown() {
  stop_all
}

# write_tls EXTRA: $CONFIG with the listener https-public on $TLS_PORT and one [[tls]] table for
# it serving a.test, plus the TOML lines EXTRA in that table.
write_tls() {
  cat >"$CONFIG" <<TOML
listen = ["https-public=127.0.0.1:$TLS_PORT"]

[[tls]]
listener = "https-public"
cert = $(toml_string "$CERTS/a.test.crt")
key = $(toml_string "$CERTS/a.test.key")
$1
TOML
}

# start_tls: gatekeeper with $CONFIG, the plain listener of start_gatekeeper and https-public on
# $TLS_PORT, routing /pool to the echo backend.
start_tls() {
  start_gatekeeper --config "$CONFIG" --listen "https-public=127.0.0.1:$TLS_PORT" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" "$@"
}

# https PATH ARGS...: curl https://a.test:$TLS_PORT/PATH, trusting the server CA.
https() {
  local path=$1
  shift
  curl -sS --max-time 5 --cacert "$CERTS/server-ca.crt" \
    --resolve "a.test:$TLS_PORT:127.0.0.1" "$@" "https://a.test:$TLS_PORT/$path"
}

# s_client ARGS...: an openssl TLS handshake with the listener (SNI a.test), then closes.
s_client() {
  timeout 10 openssl s_client -connect "127.0.0.1:$TLS_PORT" -servername a.test \
    -CAfile "$CERTS/server-ca.crt" "$@" </dev/null 2>&1
}

@test "min_version = \"1.3\" refuses a TLS 1.2 client and accepts TLS 1.3; the default takes 1.2" {
  write_tls 'min_version = "1.3"'
  start_tls
  run https pool/x --tlsv1.2 --tls-max 1.2 -o /dev/null -w '%{http_code}'
  [ "$status" -ne 0 ]
  [ "$output" != 200 ]
  run https pool/x --tlsv1.3 -o /dev/null -w '%{http_code}'
  [ "$status" -eq 0 ]
  [ "$output" = 200 ]
  stop_all

  # Without the key, TLS 1.2 is still accepted.
  write_tls ''
  start_backend tls-backend
  write_pool "$UPSTREAMS" "" "$BACKEND_PORT"
  start_tls
  run https pool/x --tlsv1.2 --tls-max 1.2 -o /dev/null -w '%{http_code}'
  [ "$output" = 200 ]
}

@test "ciphers: only the listed suites are negotiated" {
  write_tls 'ciphers = ["TLS13_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]'
  start_tls
  run s_client -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256
  [[ $output == *"Cipher is TLS_AES_128_GCM_SHA256"* ]]
  run s_client -tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256
  [[ $output != *"Cipher is TLS_CHACHA20_POLY1305_SHA256"* ]]
  [[ $output == *"alert"* || $output == *"handshake failure"* || $output == *"Cipher is (NONE)"* ]]
  run s_client -tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384
  [[ $output == *"Cipher is ECDHE-ECDSA-AES256-GCM-SHA384"* ]]
  run s_client -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256
  [[ $output != *"Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"* ]]
}

@test "an unknown cipher or version is a config error naming the key; check reports it" {
  write_tls 'ciphers = ["TLS13_AES_128_GCM_SHA256", "RC4-MD5"]'
  run gatekeeper check --config "$CONFIG"
  [ "$status" -eq 1 ]
  [[ $output == *'tls[0].ciphers: unknown cipher suite `RC4-MD5` (known: TLS13_AES_256_GCM_SHA384'* ]]
  write_tls "min_version = \"1.1\"
client_ca = $(toml_string "$BATS_TEST_TMPDIR/no-such-ca.pem")"
  run gatekeeper check --config "$CONFIG"
  [ "$status" -eq 1 ]
  [[ $output == *'tls[0].min_version: `1.1` must be "1.2" or "1.3"'* ]]
  [[ $output == *'tls[0].client_ca: file `'*'no-such-ca.pem` not found'* ]]
}

@test "mTLS required: no client certificate or one from another CA is refused, ours accepted" {
  write_tls "client_ca = $(toml_string "$CERTS/client-ca.crt")"
  start_tls
  run https pool/x -o /dev/null -w '%{http_code}'
  [ "$status" -ne 0 ]
  run https pool/x --cert "$CERTS/rogue.test.crt" --key "$CERTS/rogue.test.key" \
    -o /dev/null -w '%{http_code}'
  [ "$status" -ne 0 ]
  # Signed by the CA: accepted; the backend (and plugins) see the subject, not a forged one.
  run https pool/x --cert "$CERTS/client.test.crt" --key "$CERTS/client.test.key" \
    -H 'x-client-cert-subject: CN=forged'
  [ "$status" -eq 0 ]
  [ "$(jq -r '.headers["x-client-cert-subject"]' <<<"$output")" = "O=Example, CN=client.test" ]
  # The plain listener beside it needs no certificate, and passes no client-sent subject.
  run curl -sS --max-time 5 -H 'x-client-cert-subject: CN=forged' "$GK_URL/pool/plain"
  [ "$status" -eq 0 ]
  [ "$(jq -r '.headers["x-client-cert-subject"]' <<<"$output")" = null ]

  # The CA file is re-read on SIGHUP: now the other CA's clients get in, and ours do not.
  write_tls "client_ca = $(toml_string "$CERTS/other-ca.crt")"
  kill -HUP "$GK_PID"
  wait_for_log 'TLS certificates reloaded'
  run https pool/x --cert "$CERTS/rogue.test.crt" --key "$CERTS/rogue.test.key"
  [ "$status" -eq 0 ]
  [ "$(jq -r '.headers["x-client-cert-subject"]' <<<"$output")" = "O=Example, CN=rogue.test" ]
  run https pool/x --cert "$CERTS/client.test.crt" --key "$CERTS/client.test.key" \
    -o /dev/null -w '%{http_code}'
  [ "$status" -ne 0 ]
}

@test "mTLS optional: a client without a certificate is served without a subject" {
  write_tls "client_ca = $(toml_string "$CERTS/client-ca.crt")
client_auth = \"optional\""
  start_tls
  run https pool/x -H 'x-client-cert-subject: CN=forged'
  [ "$status" -eq 0 ]
  [ "$(jq -r '.headers["x-client-cert-subject"]' <<<"$output")" = null ]
  run https pool/x --cert "$CERTS/client.test.crt" --key "$CERTS/client.test.key"
  [ "$(jq -r '.headers["x-client-cert-subject"]' <<<"$output")" = "O=Example, CN=client.test" ]
  # A certificate it presents must still be valid.
  run https pool/x --cert "$CERTS/rogue.test.crt" --key "$CERTS/rogue.test.key"
  [ "$status" -ne 0 ]
}

@test "ocsp: the response is stapled to the certificate and re-read on SIGHUP" {
  local served="$BATS_TEST_TMPDIR/served.ocsp"
  cp "$CERTS/a.test.ocsp" "$served"
  write_tls "ocsp = $(toml_string "$served")"
  start_tls
  run s_client -status
  [[ $output == *"OCSP Response Status: successful"* ]]
  [[ $output == *"Cert Status: good"* ]]
  # A broken file on reload: refused, the old response stays stapled.
  echo "not DER" >"$served"
  kill -HUP "$GK_PID"
  wait_for_log 'served.ocsp is not a DER OCSP response'
  run s_client -status
  [[ $output == *"Cert Status: good"* ]]
  # Without the key, nothing is stapled.
  write_tls ''
  kill -HUP "$GK_PID"
  wait_for_log 'TLS certificates reloaded'
  run s_client -status
  [[ $output == *"OCSP response: no response sent"* ]]
}

@test "response_headers: HSTS on proxied responses (replacing the backend's) and on the proxy's 404" {
  write_tls 'response_headers = { "strict-transport-security" = "max-age=63072000", "x-frame-options" = "DENY" }'
  start_tls
  local headers="$BATS_TEST_TMPDIR/headers"
  https pool/x -o /dev/null -D "$headers"
  [ "$(response_header "$headers" strict-transport-security)" = max-age=63072000 ]
  [ "$(response_header "$headers" x-frame-options)" = DENY ]
  # The proxy's own error answer.
  run https nowhere -o /dev/null -D "$headers" -w '%{http_code}'
  [ "$output" = 404 ]
  [ "$(response_header "$headers" strict-transport-security)" = max-age=63072000 ]
  # A backend's own header of that name is replaced, not repeated.
  https 'pool/hdr/respond?h=Strict-Transport-Security:max-age=0' -o /dev/null -D "$headers"
  [ "$(grep -ci '^strict-transport-security:' "$headers")" -eq 1 ]
  [ "$(response_header "$headers" strict-transport-security)" = max-age=63072000 ]
  # HTTP/2 too.
  https pool/x --http2 -o /dev/null -D "$headers"
  [ "$(response_header "$headers" strict-transport-security)" = max-age=63072000 ]
  # The plain listener has none.
  curl -sS --max-time 5 -o /dev/null -D "$headers" "$GK_URL/pool/x"
  [ -z "$(response_header "$headers" strict-transport-security)" ]

  # A reload changes them.
  write_tls 'response_headers = { "strict-transport-security" = "max-age=300" }'
  kill -HUP "$GK_PID"
  wait_for_log 'TLS certificates reloaded'
  https pool/x -o /dev/null -D "$headers"
  [ "$(response_header "$headers" strict-transport-security)" = max-age=300 ]
  [ -z "$(response_header "$headers" x-frame-options)" ]
}

@test "top-level response_headers go on every listener's responses, plain too; a TLS table's on top" {
  cat >"$CONFIG" <<TOML
listen = ["https-public=127.0.0.1:$TLS_PORT"]
response_headers = { "x-frame-options" = "DENY", "x-content-type-options" = "nosniff" }

[[tls]]
listener = "https-public"
cert = $(toml_string "$CERTS/a.test.crt")
key = $(toml_string "$CERTS/a.test.key")
response_headers = { "x-frame-options" = "SAMEORIGIN" }
TOML
  start_tls
  local headers="$BATS_TEST_TMPDIR/headers"
  # The plain listener (no [[tls]] table): the top-level headers, on a proxied response and on
  # the proxy's own 404; a backend's header of that name is replaced.
  curl -sS --max-time 5 -o /dev/null -D "$headers" "$GK_URL/pool/hdr/respond?h=X-Frame-Options:ALLOW"
  [ "$(response_header "$headers" x-frame-options)" = DENY ]
  [ "$(grep -ci '^x-frame-options:' "$headers")" -eq 1 ]
  [ "$(response_header "$headers" x-content-type-options)" = nosniff ]
  run curl -sS --max-time 5 -o /dev/null -D "$headers" -w '%{http_code}' "$GK_URL/nowhere"
  [ "$output" = 404 ]
  [ "$(response_header "$headers" x-content-type-options)" = nosniff ]
  # The TLS listener: both, its own table winning.
  https pool/x -o /dev/null -D "$headers"
  [ "$(response_header "$headers" x-frame-options)" = SAMEORIGIN ]
  [ "$(response_header "$headers" x-content-type-options)" = nosniff ]
  # A header the proxy manages is refused by check, with its key.
  printf 'response_headers = { "content-length" = "1" }\n' >"$BATS_TEST_TMPDIR/bad.toml"
  run gatekeeper check --no-plugins --config "$BATS_TEST_TMPDIR/bad.toml"
  [ "$status" -eq 1 ]
  [[ $output == *"response_headers.content-length: "* ]]
}

@test "flags: --tls-min-version, --tls-client-ca, --tls-ocsp, --tls-response-header" {
  start_gatekeeper --listen "https-public=127.0.0.1:$TLS_PORT" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --tls-cert "https-public=$CERTS/a.test.crt" --tls-key "https-public=$CERTS/a.test.key" \
    --tls-min-version https-public=1.3 --tls-client-ca "https-public=$CERTS/client-ca.crt" \
    --tls-ocsp "https-public=$CERTS/a.test.ocsp" \
    --tls-response-header "https-public=strict-transport-security:max-age=63072000"
  local client=(--cert "$CERTS/client.test.crt" --key "$CERTS/client.test.key")
  run https pool/x "${client[@]}" --tlsv1.2 --tls-max 1.2 -o /dev/null -w '%{http_code}'
  [ "$status" -ne 0 ]
  run https pool/x -o /dev/null -w '%{http_code}'
  [ "$status" -ne 0 ]
  local headers="$BATS_TEST_TMPDIR/headers"
  run https pool/x "${client[@]}" -D "$headers"
  [ "$status" -eq 0 ]
  [ "$(jq -r '.headers["x-client-cert-subject"]' <<<"$output")" = "O=Example, CN=client.test" ]
  [ "$(response_header "$headers" strict-transport-security)" = max-age=63072000 ]
  run s_client -status -cert "$CERTS/client.test.crt" -key "$CERTS/client.test.key"
  [[ $output == *"OCSP Response Status: successful"* ]]
}
