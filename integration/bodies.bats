#!/usr/bin/env bats
# Bodies: large uploads and downloads stream through gatekeeper with flat memory, and a modifier
# that declares it wants bodies (integration/plugins/body-modifier.py, Python SDK) receives and
# replaces them, up to max_plugin_body.
#
# STREAM_BYTES (default 1 GiB) sets the size of the streamed upload and download.

load helpers

STREAM_BYTES=${STREAM_BYTES:-1073741824}
# gatekeeper's peak RSS (VmHWM) must stay below this after the streamed transfers: a debug build
# peaks at about 45-60 MiB whatever the size (flat across repeated 256 MiB and 1 GiB transfers);
# a buffered body would need at least STREAM_BYTES.
MAX_PEAK_RSS_KB=$((96 * 1024))
BODY_PLUGIN="python3 $REPO_ROOT/integration/plugins/body-modifier.py"

setup() {
  start_backend body-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
}

teardown() {
  stop_all
}

# start_with ARGS...: gatekeeper with static-upstreams and ARGS.
start_with() {
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" "$@"
}

# peak_rss_kb: gatekeeper's peak resident set size so far, in KiB.
peak_rss_kb() {
  awk '/^VmHWM:/ { print $2 }' "/proc/$GK_PID/status"
}

# stream_through LABEL: uploads and downloads STREAM_BYTES through gatekeeper and checks the
# byte counts and gatekeeper's peak RSS.
stream_through() {
  local label=$1 uploaded downloaded peak
  # -T - sends stdin with chunked encoding as it is read: curl never holds the body.
  uploaded=$(head -c "$STREAM_BYTES" /dev/zero |
    curl -sS --max-time 120 -T - "$GK_URL/echo/sink" | jq -r .bytes)
  [ "$uploaded" = "$STREAM_BYTES" ]
  downloaded=$(curl -sS --max-time 120 -o /dev/null -w '%{size_download}' \
    "$GK_URL/echo/bytes?n=$STREAM_BYTES")
  [ "$downloaded" = "$STREAM_BYTES" ]
  peak=$(peak_rss_kb)
  echo "# peak RSS $label after streaming $STREAM_BYTES bytes up and down: $((peak / 1024)) MiB ($peak kB)" >&3
  ((peak < MAX_PEAK_RSS_KB))
}

@test "a large upload and download stream through with flat memory (no plugins)" {
  start_with
  stream_through "without modifiers"
}

@test "bodies still stream with a modifier that does not want them" {
  start_with --modifier-plugin "python3 $REPO_ROOT/integration/plugins/hello-modifier.py"
  stream_through "with a modifier that wants no bodies"
  # The modifier ran (the full request path, not the fast path).
  [ "$(curl -sS --max-time 5 "$GK_URL/echo/x" | jq -r '.headers["x-hello"]')" != null ]
}

@test "a modifier that wants the request body replaces it; the backend gets a matching Content-Length" {
  start_with --modifier-plugin "$BODY_PLUGIN"
  # Chunked upload: the backend gets a Content-Length, no Transfer-Encoding.
  run curl -sS --max-time 5 -D "$BATS_TEST_TMPDIR/headers" -H 'x-body-action: upper' \
    -H 'transfer-encoding: chunked' --data-binary 'hello body' "$GK_URL/echo/body"
  [ "$status" -eq 0 ]
  [ "$output" = "HELLO BODY" ]
  [ "$(response_header "$BATS_TEST_TMPDIR/headers" x-request-content-length)" = 10 ]
  [ "$(response_header "$BATS_TEST_TMPDIR/headers" x-plugin-request-bytes)" = 10 ]
  # A replacement of another length.
  run curl -sS --max-time 5 -D "$BATS_TEST_TMPDIR/headers" -H 'x-body-action: double' \
    --data-binary 'abcde' "$GK_URL/echo/body"
  [ "$output" = "abcdeabcde" ]
  [ "$(response_header "$BATS_TEST_TMPDIR/headers" x-request-content-length)" = 10 ]
  # No replacement: the original body is forwarded.
  run curl -sS --max-time 5 --data-binary 'as sent' "$GK_URL/echo/body"
  [ "$output" = "as sent" ]
}

@test "a binary body (bytes 0..255) round-trips unchanged through a plugin that re-sets it" {
  start_with --modifier-plugin "$BODY_PLUGIN"
  python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 3)' >"$BATS_TEST_TMPDIR/binary"
  curl -sS --max-time 5 -D "$BATS_TEST_TMPDIR/headers" -H 'x-body-action: reencode' \
    --data-binary "@$BATS_TEST_TMPDIR/binary" -o "$BATS_TEST_TMPDIR/echoed" "$GK_URL/echo/body"
  cmp "$BATS_TEST_TMPDIR/binary" "$BATS_TEST_TMPDIR/echoed"
  [ "$(response_header "$BATS_TEST_TMPDIR/headers" x-plugin-request-bytes)" = 768 ]
  [ "$(response_header "$BATS_TEST_TMPDIR/headers" x-plugin-response-bytes)" = 768 ]
}

@test "a request body over max_plugin_body gets 413 and never reaches the backend" {
  start_with --max-plugin-body 65536 --modifier-plugin "$BODY_PLUGIN"
  head -c 100000 /dev/zero >"$BATS_TEST_TMPDIR/big"
  # Known length: refused before it is read.
  run curl -sS --max-time 5 -w '%{http_code}' --data-binary "@$BATS_TEST_TMPDIR/big" "$GK_URL/echo/sink"
  [ "$output" = "$(printf 'payload too large\n413')" ]
  # Chunked: refused once the limit is passed.
  [ "$(http_code -T "$BATS_TEST_TMPDIR/big" -H 'transfer-encoding: chunked' "$GK_URL/echo/sink")" = 413 ]
  [ "$(curl -sS --max-time 5 "http://127.0.0.1:$BACKEND_PORT/sink-count" | jq .sink_requests)" = 0 ]
  # A body at the limit passes.
  head -c 65536 /dev/zero >"$BATS_TEST_TMPDIR/fits"
  [ "$(curl -sS --max-time 5 --data-binary "@$BATS_TEST_TMPDIR/fits" "$GK_URL/echo/sink" | jq .bytes)" = 65536 ]
  [ "$(curl -sS --max-time 5 "http://127.0.0.1:$BACKEND_PORT/sink-count" | jq .sink_requests)" = 1 ]
}

@test "modify_response gets the response body and can replace it" {
  start_with --modifier-plugin "$BODY_PLUGIN"
  run curl -sS --max-time 5 -D "$BATS_TEST_TMPDIR/headers" -H 'x-body-action: rewrite-response' \
    --data-binary 'abc' "$GK_URL/echo/body"
  [ "$output" = "rewritten:abc" ]
  [ "$(response_header "$BATS_TEST_TMPDIR/headers" x-plugin-response-bytes)" = 3 ]
  [ "$(response_header "$BATS_TEST_TMPDIR/headers" x-plugin-body-omitted)" = false ]
  [ "$(response_header "$BATS_TEST_TMPDIR/headers" content-length)" = 13 ]
}

@test "a response body over max_plugin_body streams through unchanged; the plugin sees body_omitted" {
  start_with --max-plugin-body 65536 --modifier-plugin "$BODY_PLUGIN"
  # Known length (not read at all) and chunked (read up to the limit, then streamed on).
  for query in "n=200000" "n=200000&chunked=1"; do
    curl -sS --max-time 5 -D "$BATS_TEST_TMPDIR/headers" -o "$BATS_TEST_TMPDIR/got" \
      "$GK_URL/echo/bytes?$query"
    [ "$(wc -c <"$BATS_TEST_TMPDIR/got")" -eq 200000 ]
    [ "$(tr -d '\0' <"$BATS_TEST_TMPDIR/got" | wc -c)" -eq 0 ]
    [ "$(response_header "$BATS_TEST_TMPDIR/headers" x-plugin-body-omitted)" = true ]
    [ "$(response_header "$BATS_TEST_TMPDIR/headers" x-plugin-response-bytes)" = none ]
  done
  # A small one is sent to the plugin.
  curl -sS --max-time 5 -D "$BATS_TEST_TMPDIR/headers" -o /dev/null "$GK_URL/echo/bytes?n=1000&chunked=1"
  [ "$(response_header "$BATS_TEST_TMPDIR/headers" x-plugin-response-bytes)" = 1000 ]
  # The plugin may still replace an omitted body.
  run curl -sS --max-time 5 -H 'x-body-action: rewrite-response' "$GK_URL/echo/bytes?n=200000"
  [ "$output" = "rewritten without body" ]
}
