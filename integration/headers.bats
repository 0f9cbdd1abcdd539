#!/usr/bin/env bats
# Headers through the proxy: hop-by-hop headers removed both ways, X-Forwarded-* and Via added
# (forwarded_headers, via), the Host a backend receives (host_header per upstream), and
# duplicate headers kept in order across plugin calls. Each behaviour is checked on the fast
# path (no plugins besides static-upstreams) and, where plugins could change it, on the full
# path (test-modifier changing every request and response).

load helpers

setup() {
  start_backend echo-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  cat >"$UPSTREAMS" <<YAML
echo:
  prefixes: [echo]
  hostnames: [echo.test]
  backends: [http://127.0.0.1:$BACKEND_PORT]
to-backend:
  prefixes: [to-backend]
  host_header: backend
  backends: [http://127.0.0.1:$BACKEND_PORT]
literal:
  prefixes: [literal]
  host_header: api.internal:8443
  backends: [http://127.0.0.1:$BACKEND_PORT]
YAML
}

teardown() {
  stop_all
}

# start_with [TOML LINES] [MODIFIER CONFIG]: gatekeeper with static-upstreams and the top-level
# TOML lines; with MODIFIER CONFIG (a TOML inline-table body, e.g. 'context_key = "k"'), also a
# test-modifier that returns every request (and with context_key every response) changed.
start_with() {
  {
    echo "${1:-}"
    static_upstreams_table
    if [[ -n ${2:-} ]]; then
      printf '[[plugin]]\nname = "mod"\ntype = "modifier"\ncommand = "test-modifier"\nconfig = { %s }\n' "$2"
    fi
  } >"$BATS_TEST_TMPDIR/gk.toml"
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
}

# seen PATH [CURL ARGS...]: the request headers the backend received at /hdr/list, as a JSON
# array of [name, value] in order.
seen() {
  local path=$1
  shift
  curl -sS --max-time 5 "$@" "$GK_URL$path/hdr/list" | jq -c .headers
}

# values JSON NAME: the values of header NAME in the [name, value] array JSON, one per line.
values() {
  jq -r --arg n "$1" '.[] | select(.[0] == $n) | .[1]' <<<"$2"
}

# check_hop_by_hop: the client's hop-by-hop headers do not reach the backend, and the backend's
# do not reach the client.
check_hop_by_hop() {
  local headers
  headers=$(seen /echo -H 'Connection: close, X-Secret' -H 'X-Secret: 1' -H 'Keep-Alive: timeout=5' \
    -H 'TE: trailers' -H 'Proxy-Connection: keep-alive' -H 'X-Kept: yes')
  [ "$(values x-kept "$headers")" = yes ]
  for name in x-secret keep-alive te proxy-connection; do
    [ -z "$(values "$name" "$headers")" ] || { echo "backend saw $name: $headers" >&2; return 1; }
  done
  [[ $(values connection "$headers") != *[Ss]ecret* ]]

  local dump="$BATS_TEST_TMPDIR/response-headers"
  curl -sS --max-time 5 -D "$dump" -o /dev/null \
    "$GK_URL/echo/hdr/respond?h=Connection:X-Resp-Secret&h=X-Resp-Secret:1&h=Keep-Alive:timeout%3D5&h=X-Resp-Kept:yes"
  [ "$(response_header "$dump" x-resp-kept)" = yes ]
  [ -z "$(response_header "$dump" x-resp-secret)" ]
  [ -z "$(response_header "$dump" keep-alive)" ]
}

@test "hop-by-hop headers are removed both ways (no plugins)" {
  start_with
  check_hop_by_hop
}

@test "hop-by-hop headers are removed both ways (a modifier changes request and response)" {
  start_with "" 'context_key = "k"'
  check_hop_by_hop
}

@test "append (default): X-Forwarded-For gets the client address appended; Via both ways" {
  start_with
  local dump="$BATS_TEST_TMPDIR/response-headers"
  headers=$(curl -sS --max-time 5 -D "$dump" -H 'Host: echo.test:8080' \
    -H 'X-Forwarded-For: 203.0.113.9' -H 'X-Forwarded-For: 198.51.100.1' \
    -H 'X-Forwarded-Proto: https' "$GK_URL/hdr/list" | jq -c .headers)
  [ "$(values x-forwarded-for "$headers")" = "203.0.113.9, 198.51.100.1, 127.0.0.1" ]
  # A proxy in front said https: kept in append mode.
  [ "$(values x-forwarded-proto "$headers")" = https ]
  [ "$(values x-forwarded-host "$headers")" = echo.test:8080 ]
  [ "$(values via "$headers")" = "1.1 gatekeeper" ]
  [ "$(response_header "$dump" via)" = "1.1 gatekeeper" ]

  headers=$(seen /echo)
  [ "$(values x-forwarded-for "$headers")" = 127.0.0.1 ]
  [ "$(values x-forwarded-proto "$headers")" = http ]
  [ "$(values x-forwarded-host "$headers")" = "127.0.0.1:$GK_PORT" ]
}

@test "replace: X-Forwarded-* are gatekeeper's own; via names it" {
  start_with $'forwarded_headers = "replace"\nvia = "edge-1"'
  local dump="$BATS_TEST_TMPDIR/response-headers"
  headers=$(seen /echo -D "$dump" -H 'X-Forwarded-For: 203.0.113.9' -H 'X-Forwarded-Proto: https' \
    -H 'X-Forwarded-Host: spoofed.test' -H 'Via: 1.0 outer')
  [ "$(values x-forwarded-for "$headers")" = 127.0.0.1 ]
  [ "$(values x-forwarded-proto "$headers")" = http ]
  [ "$(values x-forwarded-host "$headers")" = "127.0.0.1:$GK_PORT" ]
  [ "$(values via "$headers")" = "1.0 outer, 1.1 edge-1" ]
  [ "$(response_header "$dump" via)" = "1.1 edge-1" ]
}

@test "off and an empty via: the client's headers pass untouched, no Via" {
  start_with $'forwarded_headers = "off"\nvia = ""'
  local dump="$BATS_TEST_TMPDIR/response-headers"
  headers=$(seen /echo -D "$dump" -H 'X-Forwarded-For: 203.0.113.9')
  [ "$(values x-forwarded-for "$headers")" = 203.0.113.9 ]
  [ -z "$(values x-forwarded-proto "$headers")" ]
  [ -z "$(values x-forwarded-host "$headers")" ]
  [ -z "$(values via "$headers")" ]
  [ -z "$(response_header "$dump" via)" ]
}

@test "modifiers see X-Forwarded-For: a plugin that replaces it has the last word" {
  # test-modifier sets its `header` to its pid, replacing the earlier value: the backend sees
  # only the pid, so the proxy's value was there before modify_request.
  start_with "" 'header = "x-forwarded-for"'
  headers=$(seen /echo -H 'X-Forwarded-For: 203.0.113.9')
  [[ $(values x-forwarded-for "$headers") =~ ^[0-9]+$ ]]
  [ "$(values via "$headers")" = "1.1 gatekeeper" ]
}

@test "bad forwarded_headers and via values are refused at startup" {
  echo 'forwarded_headers = "trust"' >"$BATS_TEST_TMPDIR/bad.toml"
  run gatekeeper --config "$BATS_TEST_TMPDIR/bad.toml" --check
  [ "$status" -eq 2 ]
  [[ $output == *forwarded_headers* ]]
  echo 'via = "two words"' >"$BATS_TEST_TMPDIR/bad.toml"
  run gatekeeper --config "$BATS_TEST_TMPDIR/bad.toml" --check
  [ "$status" -eq 2 ]
  [[ $output == *via* ]]
}

# check_host: the Host each upstream's backends receive, exactly one of it.
check_host() {
  headers=$(curl -sS --max-time 5 -H 'Host: echo.test' "$GK_URL/hdr/list" | jq -c .headers)
  [ "$(values host "$headers")" = echo.test ]
  headers=$(seen /to-backend -H 'Host: client.test')
  [ "$(values host "$headers")" = "127.0.0.1:$BACKEND_PORT" ]
  [ "$(values x-forwarded-host "$headers")" = client.test ]
  headers=$(seen /literal -H 'Host: client.test')
  [ "$(values host "$headers")" = api.internal:8443 ]
  [ "$(values x-forwarded-host "$headers")" = client.test ]
}

@test "host_header: preserve (default), backend, or a literal; the backend sees one Host" {
  start_with
  check_host
}

@test "host_header also applies on the full path, after modifiers" {
  start_with "" 'context_key = "k"'
  check_host
}

@test "an invalid host_header is refused: static-upstreams names the file, line and key; exit 2" {
  cat >>"$UPSTREAMS" <<YAML
broken:
  prefixes: [broken]
  host_header: "not a host"
  backends: [http://127.0.0.1:$BACKEND_PORT]
YAML
  static_upstreams_table >"$BATS_TEST_TMPDIR/gk.toml"
  # static-upstreams refuses its config (checked before anything is pushed), so gatekeeper
  # does not start; a config error exits 2.
  run timeout 20 gatekeeper --listen "127.0.0.1:$(free_port)" --socket-dir "$BATS_TEST_TMPDIR" \
    --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$status" -eq 2 ]
  [[ $output == *'broken.host_header: host_header `not a host` is not'* ]]
}

# check_duplicates: repeated request and response headers arrive all, in order.
check_duplicates() {
  headers=$(seen /echo -H 'X-Dup: 1' -H 'X-Other: a' -H 'X-Dup: 2' -H 'X-Dup: 3')
  [ "$(values x-dup "$headers" | paste -sd,)" = 1,2,3 ]
  local dump="$BATS_TEST_TMPDIR/response-headers"
  curl -sS --max-time 5 -D "$dump" -o /dev/null \
    "$GK_URL/echo/hdr/respond?h=Set-Cookie:a%3D1&h=X-Between:x&h=Set-Cookie:b%3D2&h=Set-Cookie:c%3D3"
  [ "$(grep -i '^set-cookie:' "$dump" | tr -d '\r' | cut -d' ' -f2 | paste -sd,)" = "a=1,b=2,c=3" ]
}

@test "duplicate headers keep their order (no plugins)" {
  start_with
  check_duplicates
}

@test "duplicate headers keep their order through modify_request and modify_response" {
  start_with "" 'context_key = "k"'
  check_duplicates
  # The modifier did change both: its request header and its response header are there.
  headers=$(seen /echo)
  [ -n "$(values x-test-modifier "$headers")" ]
  curl -sS --max-time 5 -D "$BATS_TEST_TMPDIR/h2" -o /dev/null "$GK_URL/echo/"
  [ "$(response_header "$BATS_TEST_TMPDIR/h2" x-context-k)" = set-by-mod ]
}
