#!/usr/bin/env bats
# Decision caching (docs/protocol.md, "Decision caching"): a modify_request result with
# `cache: {ttl_ms, key}` is reused by gatekeeper for requests with equal key parts without
# calling the plugin. Through the real binaries, with the token-auth example (Python SDK), which
# caches its decision by the Authorization header for `cache_ttl` seconds. Plugin calls are
# counted by gatekeeper's `calls` in `ctl plugins` (hook calls only, heartbeats are not counted).

load helpers

setup() {
  start_backend echo-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  cat >"$UPSTREAMS" <<YAML
echo:
  timeout: 5s
  prefixes: [echo]
  backends: [http://127.0.0.1:$BACKEND_PORT]
YAML
  TOKENS="$BATS_TEST_TMPDIR/tokens"
  printf 'alpha\nbeta\n' >"$TOKENS"
  METRICS_PORT=$(free_port)
}

teardown() {
  stop_all
}

# start_auth CACHE_TTL: gatekeeper with token-auth (strip = true) caching for CACHE_TTL seconds.
start_auth() {
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
metrics_listen = "127.0.0.1:$METRICS_PORT"

$(static_upstreams_table)

[[plugin]]
name = "auth"
type = "modifier"
command = "python3"
args = [$(toml_string "$REPO_ROOT/plugin-sdk/examples/token-auth/token_auth.py")]
config = { tokens_file = $(toml_string "$TOKENS"), strip = true, cache_ttl = $1 }
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
}

ctl() {
  gatekeeper ctl --socket-dir "$BATS_TEST_TMPDIR" "$@"
}

# auth_field FIELD: a jq path of token-auth's entry in `ctl plugins` (e.g. .calls, .cache.hits).
auth_field() {
  ctl plugins | jq -r ".[] | select(.name == \"auth\") | $1"
}

metrics() { curl -sS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics"; }

# get NAME PATH [TOKEN]: GET /echo/PATH (with Authorization: Bearer TOKEN); saves the body to
# NAME.body and the headers to NAME.headers; prints the status.
get() {
  local auth=()
  [[ -n ${3:-} ]] && auth=(-H "Authorization: Bearer $3")
  curl -s --max-time 5 -D "$BATS_TEST_TMPDIR/$1.headers" -o "$BATS_TEST_TMPDIR/$1.body" \
    -w '%{http_code}' "${auth[@]}" "$GK_URL/echo/$2" || true
}

@test "requests with the same Authorization make one plugin call; its change is replayed on each" {
  start_auth 60
  local i
  for i in 1 2 3 4 5; do
    [ "$(get ok$i "path-$i" alpha)" = 200 ]
    # The cached change (Authorization removed) is applied to each request, and only it: each
    # keeps its own path.
    [ "$(jq -r '.headers | has("authorization")' "$BATS_TEST_TMPDIR/ok$i.body")" = false ]
    jq -r .path "$BATS_TEST_TMPDIR/ok$i.body" | grep -q "path-$i"
  done
  [ "$(auth_field .calls)" = 1 ]
  [ "$(get other x beta)" = 200 ]
  [ "$(auth_field .calls)" = 2 ]
  [ "$(get again x beta)" = 200 ]
  [ "$(auth_field .calls)" = 2 ]
}

@test "a 401 answer is replayed without a call, for a missing and for a wrong token" {
  start_auth 60
  local i
  for i in 1 2 3; do
    [ "$(get none$i x)" = 401 ]
    [ "$(response_header "$BATS_TEST_TMPDIR/none$i.headers" www-authenticate)" = Bearer ]
  done
  [ "$(auth_field .calls)" = 1 ]
  for i in 1 2 3; do
    [ "$(get bad$i x wrong)" = 401 ]
    response_header "$BATS_TEST_TMPDIR/bad$i.headers" www-authenticate | grep -q invalid_token
  done
  [ "$(auth_field .calls)" = 2 ]
}

@test "an expired decision calls the plugin again" {
  start_auth 0.3
  [ "$(get first x alpha)" = 200 ]
  [ "$(auth_field .calls)" = 1 ]
  sleep 0.6
  [ "$(get later x alpha)" = 200 ]
  [ "$(auth_field .calls)" = 2 ]
}

@test "cache_ttl = 0 caches nothing: every request calls" {
  start_auth 0
  local i
  for i in 1 2 3; do [ "$(get ok$i x alpha)" = 200 ]; done
  [ "$(auth_field .calls)" = 3 ]
  [ "$(auth_field .cache.hits)" = 0 ]
}

@test "ctl plugins and /metrics show the hits, misses and entries" {
  start_auth 60
  local i
  for i in 1 2 3; do [ "$(get ok$i x alpha)" = 200 ]; done
  [ "$(get other x beta)" = 200 ]
  [ "$(auth_field '.cache | [.hits, .misses, .entries] | join(" ")')" = "2 2 2" ]
  metrics | grep -qx 'gatekeeper_plugin_cache_hits_total{plugin="auth"} 2'
  metrics | grep -qx 'gatekeeper_plugin_cache_misses_total{plugin="auth"} 2'
  metrics | grep -qx 'gatekeeper_plugin_cache_entries{plugin="auth"} 2'
}

@test "ctl restart-plugin clears the plugin's cache" {
  start_auth 60
  [ "$(get first x alpha)" = 200 ]
  [ "$(get cached x alpha)" = 200 ]
  [ "$(auth_field .calls)" = 1 ]
  local old
  old=$(plugin_pid auth)
  ctl restart-plugin auth >/dev/null
  [ "$(auth_field .cache.entries)" = 0 ]
  wait_for_restart auth "$old" >/dev/null
  [ "$(get after x alpha)" = 200 ]
  [ "$(auth_field .calls)" = 2 ]
}

@test "a plugin that crashes is restarted with an empty cache" {
  start_auth 60
  [ "$(get first x alpha)" = 200 ]
  [ "$(get cached x alpha)" = 200 ]
  [ "$(auth_field .calls)" = 1 ]
  local old
  old=$(plugin_pid auth)
  kill -9 "$old"
  wait_for_restart auth "$old" >/dev/null
  [ "$(get after x alpha)" = 200 ]
  [ "$(auth_field .calls)" = 2 ]
  [ "$(auth_field .cache.entries)" = 1 ]
}

@test "a reload that changes the plugin's settings empties its cache; one that keeps them does not" {
  start_auth 60
  [ "$(get first x alpha)" = 200 ]
  [ "$(auth_field .calls)" = 1 ]
  # The same config: the plugin keeps its processes and its cache.
  local before
  before=$(gk_log | grep -c "SIGHUP: configuration reloaded" || true)
  kill -HUP "$GK_PID"
  eventually 150 '[ "$(gk_log | grep -c "SIGHUP: configuration reloaded" || true)" -gt "$before" ]'
  [ "$(get kept x alpha)" = 200 ]
  [ "$(auth_field .calls)" = 1 ]
  # A new cache_ttl replaces the plugin (make before break): its successor starts empty.
  sed -i 's/cache_ttl = 60/cache_ttl = 61/' "$BATS_TEST_TMPDIR/gk.toml"
  before=$(gk_log | grep -c "SIGHUP: configuration reloaded" || true)
  kill -HUP "$GK_PID"
  eventually 150 '[ "$(gk_log | grep -c "SIGHUP: configuration reloaded" || true)" -gt "$before" ]'
  [ "$(get replaced x alpha)" = 200 ]
  [ "$(auth_field .cache | jq -c '[.hits, .misses, .entries]')" = "[0,1,1]" ]
}

@test "the plugin's own record: one modify_request call for many requests with one key" {
  MODS="$BATS_TEST_TMPDIR/mods.jsonl"
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
$(static_upstreams_table)

[[plugin]]
name = "mod"
type = "modifier"
command = "test-modifier"
args = ["--hooks", "modify_request"]
config = { file = $(toml_string "$MODS"), cache_ms = "60000", cache_key = "header:authorization,method" }
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  local pid i
  pid=$(plugin_pid mod)
  for i in 1 2 3 4 5; do
    # The header the plugin set (its pid) is replayed onto every request.
    [ "$(curl -sS --max-time 5 -H 'Authorization: Bearer a' "$GK_URL/echo/$i" | jq -r '.headers["x-test-modifier"]')" = "$pid" ]
  done
  [ "$(count_records "$MODS" 'select(.method == "modify_request")')" = 1 ]
  # Another value of a key part (the method) is another decision.
  curl -sS --max-time 5 -o /dev/null -X POST -H 'Authorization: Bearer a' "$GK_URL/echo/x"
  curl -sS --max-time 5 -o /dev/null -H 'Authorization: Bearer b' "$GK_URL/echo/x"
  [ "$(count_records "$MODS" 'select(.method == "modify_request")')" = 3 ]
}
