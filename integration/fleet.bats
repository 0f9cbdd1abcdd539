#!/usr/bin/env bats
# Fleet-size discovery through `apply_batch`: a static-upstreams file of 10,000 upstreams loads
# in one batch at start and routes to its first and last upstream; a rewrite with half of them
# removes the others; a version with one item the proxy refuses changes nothing (the old routes
# keep answering) and shows as the plugin's config error; a plugin written from the docs alone
# gets every refused change's index in the error's `data`; each SDK's manager sends one.

load helpers

DRIVER="$BATS_TEST_DIRNAME/plugins/manager-driver.py"

setup() {
  start_backend fleet-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
}

teardown() {
  stop_all
}

ctl() {
  gatekeeper ctl --socket-dir "$BATS_TEST_TMPDIR" "$@"
}

# fleet N [BAD]: prints an upstreams file of upstreams u1..uN (prefix pI), each with the test
# backend, every even one twice (ids URL and URL#2); with BAD, upstream uBAD also gets an
# https:// backend, which the file format accepts and the proxy refuses.
fleet() {
  awk -v n="$1" -v bad="${2:-0}" -v url="http://127.0.0.1:$BACKEND_PORT" 'BEGIN {
    for (i = 1; i <= n; i++) {
      printf "u%d:\n  prefixes: [p%d]\n  backends:\n    - %s\n", i, i, url
      if (i % 2 == 0) printf "    - %s\n", url
      if (i == bad) printf "    - https://127.0.0.1:%d\n", 443
    }
  }'
}

# save FILE: writes stdin to FILE the way editors save (a temporary file renamed over it).
save() {
  cat >"$1.tmp"
  mv "$1.tmp" "$1"
}

start_static() {
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
$(static_upstreams_table)
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
}

config_error() {
  ctl plugins | jq -r '.[] | select(.name == "static") | .config_error'
}

@test "10,000 upstreams load in one batch, route first and last, and a rewrite with half removes the rest" {
  fleet 10000 >"$UPSTREAMS"
  [ "$(grep -c '^u' "$UPSTREAMS")" = 10000 ]
  start_static
  [ "$(http_code "$GK_URL/p1/x")" = 200 ]
  [ "$(http_code "$GK_URL/p10000/x")" = 200 ]
  [ "$(http_code "$GK_URL/p10001/x")" = 404 ]
  [ "$(ctl upstreams --limit 10000 | jq ".upstreams | length")" = 10000 ]
  [ "$(ctl upstreams --upstream u10000 | jq '.[0].backends | length')" = 2 ]

  fleet 5000 | save "$UPSTREAMS"
  eventually 100 '[ "$(http_code "$GK_URL/p10000/x")" = 404 ]'
  [ "$(http_code "$GK_URL/p5001/x")" = 404 ]
  [ "$(http_code "$GK_URL/p1/x")" = 200 ]
  [ "$(http_code "$GK_URL/p5000/x")" = 200 ]
  [ "$(ctl upstreams --limit 10000 | jq ".upstreams | length")" = 5000 ]
}

@test "a version with one refused item among many changes nothing and shows as the config error" {
  fleet 2000 >"$UPSTREAMS"
  start_static
  [ "$(http_code "$GK_URL/p2000/x")" = 200 ]
  [ "$(config_error)" = null ]

  # Half of the upstreams gone, and one https backend (refused by the proxy) on u10.
  fleet 1000 10 | save "$UPSTREAMS"
  eventually 100 '[ "$(config_error)" != null ]'
  config_error | grep -q 'nothing applied'
  config_error | grep -q 'backend `https://127.0.0.1:443` of upstream `u10`'
  # Nothing of that version applied: the removed half still answers.
  [ "$(http_code "$GK_URL/p2000/x")" = 200 ]
  [ "$(http_code "$GK_URL/p10/x")" = 200 ]
  [ "$(ctl upstreams --limit 10000 | jq ".upstreams | length")" = 2000 ]

  # Fixed: applies, and clears the error.
  fleet 1000 | save "$UPSTREAMS"
  eventually 100 '[ "$(http_code "$GK_URL/p2000/x")" = 404 ]'
  eventually 50 '[ "$(config_error)" = null ]'
  [ "$(http_code "$GK_URL/p1000/x")" = 200 ]
}

@test "a plugin without the SDK gets every refused change's index, and a refused batch applies nothing" {
  ANSWERS="$BATS_TEST_TMPDIR/answers.jsonl"
  START="$BATS_TEST_TMPDIR/start.jsonl"
  backend="{\"id\": \"b\", \"address\": \"http://127.0.0.1:$BACKEND_PORT\"}"
  jq -cn --argjson backend "$backend" '{step: "bad", method: "apply_batch", params: {changes: [
      {add_upstream: {upstream: {id: "one", prefixes: ["one"]}}},
      {add_backend: {upstream_id: "one", backend: $backend}},
      {add_backend: {upstream_id: "nowhere", backend: $backend}},
      {add_backend: {upstream_id: "one", backend: {id: "c", address: "ftp://x"}}}]}}' >"$START"
  jq -cn --argjson backend "$backend" '{step: "good", method: "apply_batch", params: {changes: [
      {add_upstream: {upstream: {id: "two", prefixes: ["two"]}}},
      {add_backend: {upstream_id: "two", backend: $backend}}], replace: true}}' >>"$START"
  jq -cn '{step: "malformed", method: "apply_batch", params: {changes: [
      {remove_upstream: {id: "two"}}, {remove_upstream: {id: "two"}, add_upstream: {upstream: {id: "x"}}}]}}' >>"$START"
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
[[plugin]]
name = "driver"
type = "upstream"
command = "python3"
args = ["$DRIVER"]
config = { record = "$ANSWERS", start = "$START" }
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  wait_for_records "$ANSWERS" 'select(.step == "malformed")' 1

  bad=$(jq -c 'select(.step == "bad") | .error' "$ANSWERS")
  [ "$(jq .code <<<"$bad")" = -32010 ]
  jq -r .message <<<"$bad" | grep -q '^2 of 4 changes refused, nothing applied; change 2: unknown upstream `nowhere`'
  [ "$(jq -c '.data.total' <<<"$bad")" = 4 ]
  [ "$(jq -c '[.data.refused[] | [.index, .code]]' <<<"$bad")" = '[[2,-32010],[3,-32012]]' ]
  [ "$(http_code "$GK_URL/one/x")" = 404 ]

  [ "$(jq -c 'select(.step == "good") | .result' "$ANSWERS")" = \
    '{"upstreams_added":1,"upstreams_removed":0,"backends_added":1,"backends_removed":0,"unchanged":0}' ]
  [ "$(http_code "$GK_URL/two/x")" = 200 ]

  malformed=$(jq -c 'select(.step == "malformed") | .error' "$ANSWERS")
  [ "$(jq .code <<<"$malformed")" = -32602 ]
  jq -r .message <<<"$malformed" | grep -q 'change 1: '
  [ "$(http_code "$GK_URL/two/x")" = 200 ]
}

@test "every SDK's manager pushes a whole state with apply_batch through gatekeeper" {
  local sdk command
  for sdk in rust python node; do
    case $sdk in
      rust) command="command = $(toml_string "$BIN_DIR/conformance-plugin")" ;;
      python) command=$(printf 'command = "python3"\nargs = [%s]' "$(toml_string "$REPO_ROOT/plugin-sdk/python/conformance_plugin.py")") ;;
      node) command=$(printf 'command = "node"\nargs = [%s]' "$(toml_string "$REPO_ROOT/plugin-sdk/node/conformance-plugin.js")") ;;
    esac
    cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
[[plugin]]
name = "discovery"
type = "upstream"
$command
config = { upstream_id = "found", prefix = "found", backends = "http://127.0.0.1:$BACKEND_PORT", batch = "replace" }
TOML
    start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
    # The SDKs push from `start` or just after it: the batch may land after "ready".
    eventually 100 "gk_log | grep -q 'apply_batch applied plugin=\"discovery\" total=2 replace=true'"
    [ "$(http_code "$GK_URL/found/x")" = 200 ]
    stop_gatekeeper
  done
}
