#!/usr/bin/env bats
# HTTPS listeners: certificates chosen by SNI, ALPN (h2 and http/1.1), certificates re-read on
# SIGHUP, and bad certificate files refused at startup.

load helpers

setup_file() {
  # Two self-signed certificates, each its own CA for curl --cacert.
  local name
  for name in a.test b.test; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$name" \
      -addext "subjectAltName=DNS:$name" \
      -keyout "$BATS_FILE_TMPDIR/$name.key" -out "$BATS_FILE_TMPDIR/$name.crt" 2>/dev/null
  done
}

setup() {
  CERTS=$BATS_FILE_TMPDIR
  start_backend tls-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_pool "$UPSTREAMS" "" "$BACKEND_PORT"
  TLS_PORT=$(free_port)
}

teardown() {
  stop_all
}

# start_tls ARGS...: gatekeeper with the plain listener of start_gatekeeper and an https-public
# listener on $TLS_PORT, routing /pool to the echo backend.
start_tls() {
  start_gatekeeper --listen "https-public=127.0.0.1:$TLS_PORT" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" "$@"
}

# https NAME ARGS...: curl https://NAME:$TLS_PORT/pool/tls (NAME resolved to 127.0.0.1), trusting
# only NAME's certificate, so that it succeeds only when gatekeeper served that certificate.
https() {
  local name=$1
  shift
  curl -sS --max-time 5 --cacert "$CERTS/$name.crt" --resolve "$name:$TLS_PORT:127.0.0.1" "$@" \
    "https://$name:$TLS_PORT/pool/tls"
}

# served_subject [NAME]: the subject of the certificate gatekeeper serves for SNI NAME (none: no
# SNI).
served_subject() {
  local sni=(-noservername)
  [[ -n ${1:-} ]] && sni=(-servername "$1")
  openssl s_client -connect "127.0.0.1:$TLS_PORT" "${sni[@]}" </dev/null 2>/dev/null |
    openssl x509 -noout -subject
}

@test "[[tls]] tables: SNI picks each name's certificate; the first is the default" {
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
[[tls]]
listener = "https-public"
cert = $(toml_string "$CERTS/a.test.crt")
key = $(toml_string "$CERTS/a.test.key")

[[tls]]
listener = "https-public"
cert = $(toml_string "$CERTS/b.test.crt")
key = $(toml_string "$CERTS/b.test.key")
TOML
  start_tls --config "$BATS_TEST_TMPDIR/gk.toml"
  run https a.test
  [ "$status" -eq 0 ]
  [ "$(jq -r .path <<<"$output")" = /tls ]
  run https b.test
  [ "$status" -eq 0 ]
  [ "$(jq -r .backend <<<"$output")" = tls-backend ]
  [[ $(served_subject a.test) == *"CN = a.test"* ]]
  [[ $(served_subject b.test) == *"CN = b.test"* ]]
  [[ $(served_subject other.test) == *"CN = a.test"* ]]
  [[ $(served_subject) == *"CN = a.test"* ]]
  # The plain listener beside it still speaks plain HTTP.
  [ "$(http_code "$GK_URL/pool/plain")" = 200 ]
}

@test "--tls-cert/--tls-key: curl --http2 negotiates h2, --http1.1 gets HTTP/1.1" {
  start_tls --tls-cert "https-public=$CERTS/a.test.crt" --tls-key "https-public=$CERTS/a.test.key"
  run https a.test --http2 -o /dev/null -w '%{http_version}'
  [ "$output" = 2 ]
  run https a.test --http1.1 -o /dev/null -w '%{http_version}'
  [ "$output" = 1.1 ]
  # Over h2 the host travels in :authority; the HTTP/1.1 backend gets it as Host.
  run https a.test --http2
  [ "$(jq -r .headers.host <<<"$output")" = "a.test:$TLS_PORT" ]
  # The backend learns that the client used TLS, and which host it asked for.
  [ "$(jq -r '.headers["x-forwarded-proto"]' <<<"$output")" = https ]
  [ "$(jq -r '.headers["x-forwarded-host"]' <<<"$output")" = "a.test:$TLS_PORT" ]
  # A plain-HTTP client on the TLS port gets no answer, and the listener keeps serving.
  run curl -s --max-time 5 "http://127.0.0.1:$TLS_PORT/pool/x"
  [ "$status" -ne 0 ]
  run https a.test -o /dev/null -w '%{http_code}'
  [ "$output" = 200 ]
}

@test "SIGHUP re-reads the certificate files; a bad file keeps the old certificate" {
  local cert="$BATS_TEST_TMPDIR/served.crt" key="$BATS_TEST_TMPDIR/served.key"
  cp "$CERTS/a.test.crt" "$cert"
  cp "$CERTS/a.test.key" "$key"
  start_tls --tls-cert "https-public=$cert" --tls-key "https-public=$key"
  [[ $(served_subject) == *"CN = a.test"* ]]

  # A certificate whose key is not there yet: the reload fails, a.test is still served.
  cp "$CERTS/b.test.crt" "$cert"
  kill -HUP "$GK_PID"
  wait_for_log 'configuration error.*served.key'
  wait_for_log 'the configuration has errors'
  [[ $(served_subject) == *"CN = a.test"* ]]

  cp "$CERTS/b.test.key" "$key"
  kill -HUP "$GK_PID"
  wait_for_log 'TLS certificates reloaded'
  [[ $(served_subject) == *"CN = b.test"* ]]
  run https b.test -o /dev/null -w '%{http_code}'
  [ "$output" = 200 ]
  kill -0 "$GK_PID"
}

@test "a bad certificate or key at startup is an error naming the listener and the file" {
  local port
  port=$(free_port)
  run timeout 10 gatekeeper --listen "https-public=127.0.0.1:$port" \
    --tls-cert "https-public=$BATS_TEST_TMPDIR/missing.crt" --tls-key "https-public=$CERTS/a.test.key"
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ]
  [[ $output == *"https-public"* && $output == *"missing.crt"* ]]

  # The key of another certificate.
  run timeout 10 gatekeeper --listen "https-public=127.0.0.1:$port" \
    --tls-cert "https-public=$CERTS/a.test.crt" --tls-key "https-public=$CERTS/b.test.key"
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ]
  [[ $output == *"https-public"* && $output == *"b.test.key"* ]]

  # A certificate file cut short: the error says so in words, not as a list of bytes.
  head -n 3 "$CERTS/a.test.crt" >"$BATS_TEST_TMPDIR/cut.crt"
  run timeout 10 gatekeeper --listen "https-public=127.0.0.1:$port" \
    --tls-cert "https-public=$BATS_TEST_TMPDIR/cut.crt" --tls-key "https-public=$CERTS/a.test.key"
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ]
  [[ $output == *"cut.crt"*"CERTIFICATE section has no END line"* ]]
  [[ $output != *"[45, 45"* ]]

  # Certificates for a listener that does not exist.
  run timeout 10 gatekeeper --listen "https-public=127.0.0.1:$port" \
    --tls-cert "https-private=$CERTS/a.test.crt" --tls-key "https-private=$CERTS/a.test.key"
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ]
  [[ $output == *"https-private"*"is not a listener"* ]]
}
