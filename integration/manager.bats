#!/usr/bin/env bats
# The manager methods (add_upstream, remove_upstream, add_backend, remove_backend) as an upstream
# plugin written without the SDK sees them: integration/plugins/manager-driver.py makes the calls
# it is given and records every answer.

load helpers

DRIVER="$BATS_TEST_DIRNAME/plugins/manager-driver.py"

setup() {
  start_backend echo-backend
  ANSWERS="$BATS_TEST_TMPDIR/answers.jsonl"
  START="$BATS_TEST_TMPDIR/start.jsonl"
  COMMANDS="$BATS_TEST_TMPDIR/commands.jsonl"
  : >"$START"
  : >"$COMMANDS"
}

teardown() {
  stop_all
}

# start_driver [TYPE] [EXTRA TOML]: gatekeeper with the driver (a plugin of TYPE, default
# upstream) named `driver`.
start_driver() {
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
[[plugin]]
name = "driver"
type = "${1:-upstream}"
command = "python3"
args = ["$DRIVER"]
config = { record = "$ANSWERS", start = "$START", commands = "$COMMANDS" }
${2:-}
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
}

# step FILE NAME METHOD PARAMS: appends a call for the driver to FILE.
step() {
  jq -cn --arg step "$2" --arg method "$3" --argjson params "$4" \
    '{step: $step, method: $method, params: $params}' >>"$1"
}

# answer NAME: the recorded answer of step NAME (compact JSON: {"result": …} or {"error": …}).
answer() {
  jq -c --arg step "$1" 'select(.step == $step) | if has("error") then {error: .error.code} else {result: .result} end' "$ANSWERS"
}

# command NAME METHOD PARAMS: has the running driver make a call; waits for its answer.
command() {
  step "$COMMANDS" "$@"
  wait_for_records "$ANSWERS" "select(.step == \"$1\")" 1 50
}

API='{"upstream": {"id": "api", "name": "api", "timeout_ms": 5000, "protocols": ["http-public"], "prefixes": ["api"], "hostnames": ["api.test"]}}'

@test "manager calls are validated with the error codes of docs/protocol.md" {
  backend="{\"upstream_id\": \"api\", \"backend\": {\"id\": \"b1\", \"address\": \"http://127.0.0.1:$BACKEND_PORT\"}}"
  step "$START" valid add_upstream "$API"
  step "$START" again add_upstream "$API"
  # Same id, different content: refused (the registry wants a remove first).
  step "$START" changed add_upstream '{"upstream": {"id": "api", "name": "api", "timeout_ms": 5000, "protocols": ["http-public"], "prefixes": ["api", "v2"], "hostnames": ["api.test"]}}'
  step "$START" prefix-taken add_upstream '{"upstream": {"id": "api2", "prefixes": ["api"]}}'
  step "$START" host-taken add_upstream '{"upstream": {"id": "api3", "hostnames": ["API.test"]}}'
  step "$START" all-listeners add_upstream '{"upstream": {"id": "api5", "prefixes": ["api"]}}'
  step "$START" other-listener add_upstream '{"upstream": {"id": "api4", "prefixes": ["api"], "protocols": ["http-internal"]}}'
  step "$START" empty-id add_upstream '{"upstream": {"id": "", "prefixes": ["x"]}}'
  step "$START" slash-prefix add_upstream '{"upstream": {"id": "bad", "prefixes": ["a/b"]}}'
  step "$START" bad-balancer add_upstream '{"upstream": {"id": "bad", "balancer": "fastest"}}'
  step "$START" no-id add_upstream '{"upstream": {"prefixes": ["x"]}}'
  step "$START" no-upstream add_upstream '{}'
  step "$START" backend-unknown-upstream add_backend "{\"upstream_id\": \"nope\", \"backend\": {\"id\": \"b1\", \"address\": \"http://127.0.0.1:1\"}}"
  step "$START" backend-garbage add_backend '{"upstream_id": "api", "backend": {"id": "b1", "address": "not a url"}}'
  step "$START" backend-https add_backend '{"upstream_id": "api", "backend": {"id": "b1", "address": "https://127.0.0.1:443"}}'
  step "$START" backend-query add_backend '{"upstream_id": "api", "backend": {"id": "b1", "address": "http://127.0.0.1:80/?x=1"}}'
  step "$START" backend-valid add_backend "$backend"
  step "$START" backend-again add_backend "$backend"
  step "$START" backend-changed add_backend '{"upstream_id": "api", "backend": {"id": "b1", "address": "http://127.0.0.1:2"}}'
  step "$START" remove-unknown-backend remove_backend '{"upstream_id": "api", "backend_id": "zz"}'
  step "$START" remove-backend-unknown-upstream remove_backend '{"upstream_id": "nope", "backend_id": "b1"}'
  step "$START" remove-unknown-upstream remove_upstream '{"id": "nope"}'
  start_driver
  cat "$ANSWERS"
  [ "$(answer valid)" = '{"result":{}}' ]
  [ "$(answer again)" = '{"result":{}}' ]
  [ "$(answer changed)" = '{"error":-32011}' ]
  [ "$(answer prefix-taken)" = '{"error":-32011}' ]
  [ "$(answer host-taken)" = '{"error":-32011}' ]
  [ "$(answer all-listeners)" = '{"error":-32011}' ]
  [ "$(answer other-listener)" = '{"result":{}}' ]
  [ "$(answer empty-id)" = '{"error":-32012}' ]
  [ "$(answer slash-prefix)" = '{"error":-32012}' ]
  [ "$(answer bad-balancer)" = '{"error":-32012}' ]
  [ "$(answer no-id)" = '{"error":-32602}' ]
  [ "$(answer no-upstream)" = '{"error":-32602}' ]
  [ "$(answer backend-unknown-upstream)" = '{"error":-32010}' ]
  [ "$(answer backend-garbage)" = '{"error":-32012}' ]
  [ "$(answer backend-https)" = '{"error":-32012}' ]
  [ "$(answer backend-query)" = '{"error":-32012}' ]
  [ "$(answer backend-valid)" = '{"result":{}}' ]
  [ "$(answer backend-again)" = '{"result":{}}' ]
  [ "$(answer backend-changed)" = '{"error":-32011}' ]
  [ "$(answer remove-unknown-backend)" = '{"error":-32013}' ]
  [ "$(answer remove-backend-unknown-upstream)" = '{"error":-32010}' ]
  [ "$(answer remove-unknown-upstream)" = '{"error":-32010}' ]
  # Error answers carry a message.
  [ "$(jq -r 'select(.step == "changed") | .error.message | length > 0' "$ANSWERS")" = true ]
  # The refusals changed nothing: the valid upstream routes (prefix stripped, and by hostname),
  # to the valid backend; the refused ones do not exist.
  run curl -sS --max-time 5 "$GK_URL/api/users"
  [ "$(jq -r .backend <<<"$output")" = echo-backend ]
  [ "$(jq -r .path <<<"$output")" = /users ]
  [ "$(echoed_backend -H 'Host: api.test' "$GK_URL/v2/x")" = echo-backend ]
  [ "$(http_code "$GK_URL/v2/x")" = 404 ]
  # The refusals are logged with the plugin's name.
  gk_log | grep 'manager call refused' | grep -Eq 'plugin="?driver"? .*already used by upstream'
}

@test "removing an upstream removes its backends" {
  step "$START" up add_upstream "$API"
  step "$START" b1 add_backend "{\"upstream_id\": \"api\", \"backend\": {\"id\": \"b1\", \"address\": \"http://127.0.0.1:$BACKEND_PORT\"}}"
  LB="$BATS_TEST_TMPDIR/lb.jsonl"
  METRICS="$BATS_TEST_TMPDIR/metrics.jsonl"
  start_driver upstream "
[[plugin]]
name = \"lb\"
type = \"loadbalancer\"
command = \"test-loadbalancer\"
config = { file = \"$LB\" }

[[plugin]]
name = \"metrics\"
type = \"metric\"
command = \"test-metric\"
config = { file = \"$METRICS\" }
"
  [ "$(http_code "$GK_URL/api/x")" = 200 ]
  command remove remove_upstream '{"id": "api"}'
  [ "$(answer remove)" = '{"result":{}}' ]
  [ "$(http_code "$GK_URL/api/x")" = 404 ]
  [ "$(http_code -H 'Host: api.test' "$GK_URL/x")" = 404 ]
  # The loadbalancer is told the backend went; the events say backend, then upstream.
  wait_for_records "$LB" 'select(.method == "remove_backend" and .upstream_id == "api" and .id == "b1")' 1 30
  removed='select(.method == "event_metric") | .params.events[] | select(.name | endswith("_removed"))'
  wait_for_records "$METRICS" "$removed" 2 50
  [ "$(records "$METRICS" "$removed | [.name, .attributes.upstream, .attributes.backend]" | tr '\n' ' ')" = '["backend_removed","api","b1"] ["upstream_removed","api",null] ' ]
  # Added again with the same content: it has no backends any more (503), and the old
  # backend is unknown to it.
  command readd add_upstream "$API"
  [ "$(answer readd)" = '{"result":{}}' ]
  [ "$(http_code "$GK_URL/api/x")" = 503 ]
  command old-backend remove_backend '{"upstream_id": "api", "backend_id": "b1"}'
  [ "$(answer old-backend)" = '{"error":-32013}' ]
  command again remove_upstream '{"id": "api"}'
  command twice remove_upstream '{"id": "api"}'
  [ "$(answer twice)" = '{"error":-32010}' ]
}

@test "backends come and go while gatekeeper runs" {
  start_backend second-backend
  step "$START" up add_upstream "$API"
  start_driver
  [ "$(http_code "$GK_URL/api/x")" = 503 ]
  command b2 add_backend "{\"upstream_id\": \"api\", \"backend\": {\"id\": \"b2\", \"address\": \"http://127.0.0.1:$BACKEND_PORT\"}}"
  [ "$(answer b2)" = '{"result":{}}' ]
  [ "$(echoed_backend "$GK_URL/api/x")" = second-backend ]
  command rm-b2 remove_backend '{"upstream_id": "api", "backend_id": "b2"}'
  [ "$(answer rm-b2)" = '{"result":{}}' ]
  [ "$(http_code "$GK_URL/api/x")" = 503 ]
  # A base path in the address is prepended.
  command b3 add_backend "{\"upstream_id\": \"api\", \"backend\": {\"id\": \"b3\", \"address\": \"http://127.0.0.1:$BACKEND_PORT/base\"}}"
  run curl -sS --max-time 5 "$GK_URL/api/x"
  [ "$(jq -r .path <<<"$output")" = /base/x ]
}

@test "a plugin that is not an upstream plugin may not call the manager" {
  step "$START" from-modifier add_upstream "$API"
  start_driver modifier
  [ "$(answer from-modifier)" = '{"error":-32601}' ]
  [ "$(http_code "$GK_URL/api/x")" = 404 ]
}
