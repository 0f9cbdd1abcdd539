#!/usr/bin/env bats
# Supervision of plugins: hook timeouts and failures under both failure policies, declared
# hooks, several instances, protocol violations (test-misbehave), hung plugins, and the request
# context passed from one modifier to the next.

load helpers

setup() {
  start_backend echo-backend
  DEAD_PORT=$(free_port)
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT" "$DEAD_PORT"
  MODS="$BATS_TEST_TMPDIR/modifier.jsonl"
}

teardown() {
  stop_all
}

# modifier_table NAME FAILURE CONFIG [MORE TOML LINES]: a test-modifier [[plugin]] table.
modifier_table() {
  cat <<TOML
[[plugin]]
name = "$1"
type = "modifier"
command = "test-modifier"
failure = "$2"
config = { file = "$MODS"${3:+, $3} }
${4:-}
TOML
}

# header_seen NAME ARGS...: the value of request header NAME as the backend saw it (null if
# absent), for curl ARGS.
header_seen() {
  local name=$1
  shift
  curl -sS --max-time 5 "$@" | jq -r --arg h "$name" '.headers[$h]'
}

@test "a hook slower than hook_timeout: fail-closed answers 503 at the timeout" {
  start_with_modifier "$(modifier_table slow closed 'delay_ms = 1000' 'hook_timeout = "200ms"')"
  run curl -sS --max-time 5 -o "$BATS_TEST_TMPDIR/body" -w '%{http_code} %{time_total}' "$GK_URL/echo/x"
  read -r code took <<<"$output"
  echo "status $code after ${took}s"
  [ "$code" = 503 ]
  # Answered at the 200 ms timeout, not after the 1 s the hook takes (generous bound).
  awk -v t="$took" 'BEGIN { exit !(t < 0.9) }'
  grep -q 'slow' "$BATS_TEST_TMPDIR/body"
  # The hook was called (and recorded on arrival).
  [ "$(count_records "$MODS" 'select(.method == "modify_request")')" -ge 1 ]
}

@test "a hook slower than hook_timeout: fail-open forwards without the plugin's change" {
  start_with_modifier "$(modifier_table slow open 'delay_ms = 1000' 'hook_timeout = "200ms"')"
  run curl -sS --max-time 5 -w '\n%{http_code}' "$GK_URL/echo/x"
  [ "$(tail -n1 <<<"$output")" = 200 ]
  [ "$(head -n1 <<<"$output" | jq -r '.headers["x-test-modifier"]')" = null ]
  [ "$(head -n1 <<<"$output" | jq -r .backend)" = echo-backend ]
  gk_log | grep -E 'hook failed' | grep -q 'slow'
}

@test "a hook within hook_timeout is waited for" {
  start_with_modifier "$(modifier_table slowish closed 'delay_ms = 100' 'hook_timeout = "2s"')"
  pid=$(plugin_pid slowish)
  [ "$(header_seen x-test-modifier "$GK_URL/echo/x")" = "$pid" ]
}

@test "a failing modifier: fail-closed answers its failure_status, fail-open skips it" {
  start_with_modifier "$(modifier_table broken closed 'fail = true' 'failure_status = 429')"
  run curl -sS --max-time 5 -o "$BATS_TEST_TMPDIR/body" -w '%{http_code}' "$GK_URL/echo/x"
  [ "$output" = 429 ]
  grep -q 'broken' "$BATS_TEST_TMPDIR/body"
  # Failing is not a crash: the plugin is not restarted.
  pid=$(plugin_pid broken)
  [ "$(http_code "$GK_URL/echo/x")" = 429 ]
  [ "$(plugin_pid broken)" = "$pid" ]
  stop_gatekeeper

  start_with_modifier "$(modifier_table broken open 'fail = true')"
  [ "$(http_code "$GK_URL/echo/x")" = 200 ]
  [ "$(header_seen x-test-modifier "$GK_URL/echo/x")" = null ]
  [ "$(count_records "$MODS" 'select(.method == "modify_request")')" -ge 4 ]
}

@test "a modifier that is down fails closed by default (503)" {
  gate=$(gated_plugin mod test-modifier)
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --modifier-plugin "$gate"
  pid=$(plugin_pid mod)
  [ "$(header_seen x-test-modifier "$GK_URL/echo/x")" = "$pid" ]
  touch "$BATS_TEST_TMPDIR/gated/mod.down"
  kill -9 "$pid"
  eventually 50 '! plugin_pid mod'
  # Down (and kept down by the gate): every request is refused, none gets through unmodified.
  for ((i = 0; i < 5; i++)); do
    code=$(http_code "$GK_URL/echo/x")
    [ "$code" = 503 ] || { echo "request $i while mod is down: $code" >&2; false; }
  done
  rm "$BATS_TEST_TMPDIR/gated/mod.down"
  new_pid=$(wait_for_restart mod "$pid" 150)
  [ "$(header_seen x-test-modifier "$GK_URL/echo/x")" = "$new_pid" ]
}

@test "a fail-open modifier that is down is skipped" {
  gate=$(gated_plugin mod test-modifier)
  start_with_modifier "[[plugin]]
name = \"mod\"
type = \"modifier\"
command = \"$gate\"
failure = \"open\""
  pid=$(plugin_pid mod)
  [ "$(header_seen x-test-modifier "$GK_URL/echo/x")" = "$pid" ]
  touch "$BATS_TEST_TMPDIR/gated/mod.down"
  kill -9 "$pid"
  eventually 50 '! plugin_pid mod'
  for ((i = 0; i < 5; i++)); do
    [ "$(header_seen x-test-modifier "$GK_URL/echo/x")" = null ]
  done
}

@test "hooks a plugin did not declare are never called" {
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --modifier-plugin "test-modifier --hooks modify_request --file $MODS" \
    --modifier-plugin "test-modifier --hooks modify_error_response --file $MODS"
  for ((i = 0; i < 5; i++)); do [ "$(http_code "$GK_URL/echo/x$i")" = 200 ]; done
  [ "$(http_code "$GK_URL/nowhere")" = 404 ]
  [ "$(http_code "$GK_URL/dead/x")" = 502 ]
  cat "$MODS"
  # test-modifier: modify_request only, for the 5 routed requests and /dead (routed, then 502).
  [ "$(count_records "$MODS" 'select(.name == "test-modifier" and .method == "modify_request")')" -eq 6 ]
  [ "$(count_records "$MODS" 'select(.name == "test-modifier" and .method != "modify_request")')" -eq 0 ]
  # test-modifier-2: modify_error_response only, for the 404 and the 502.
  [ "$(count_records "$MODS" 'select(.name == "test-modifier-2" and .method == "modify_error_response")')" -eq 2 ]
  [ "$(count_records "$MODS" 'select(.name == "test-modifier-2" and .method != "modify_error_response")')" -eq 0 ]
}

@test "instances = 2: two processes share the hook calls" {
  start_with_modifier "$(modifier_table pair closed 'header = "x-pid"' 'instances = 2
args = ["--hooks", "modify_request"]')"
  children=()
  for child in $(pgrep -P "$GK_PID"); do
    if tr '\0' '\n' <"/proc/$child/environ" | grep -qx GATEKEEPER_PLUGIN_NAME=pair; then
      children+=("$child")
    fi
  done
  [ "${#children[@]}" -eq 2 ]
  for ((i = 0; i < 20; i++)); do
    header_seen x-pid "$GK_URL/echo/$i"
  done | sort -u >"$BATS_TEST_TMPDIR/pids"
  cat "$BATS_TEST_TMPDIR/pids"
  [ "$(wc -l <"$BATS_TEST_TMPDIR/pids")" -eq 2 ]
  [ "$(cat "$BATS_TEST_TMPDIR/pids")" = "$(printf '%s\n' "${children[@]}" | sort -u)" ]
  # Each knows which instance it is.
  instances=$(for c in "${children[@]}"; do tr '\0' '\n' <"/proc/$c/environ" | grep '^GATEKEEPER_PLUGIN_INSTANCE='; done | sort | tr '\n' ' ')
  [ "$instances" = "GATEKEEPER_PLUGIN_INSTANCE=0 GATEKEEPER_PLUGIN_INSTANCE=1 " ]
}

@test "instances = 2: one instance killed, the other keeps serving and it comes back" {
  start_with_modifier "$(modifier_table pair closed 'header = "x-pid"' 'instances = 2
args = ["--hooks", "modify_request"]')"
  victim=$(plugin_pid pair)
  kill -9 "$victim"
  for ((i = 0; i < 20; i++)); do
    [ "$(http_code "$GK_URL/echo/$i")" = 200 ]
  done
  wait_for_log 'plugin ready plugin=pair#[01] pid=[0-9]' 50
  eventually 50 '[ "$(gk_log | grep -c "plugin ready plugin=pair#")" -ge 3 ]'
  for ((i = 0; i < 20; i++)); do
    header_seen x-pid "$GK_URL/echo/$i"
  done | sort -u >"$BATS_TEST_TMPDIR/pids"
  [ "$(wc -l <"$BATS_TEST_TMPDIR/pids")" -eq 2 ]
  ! grep -qx "$victim" "$BATS_TEST_TMPDIR/pids" || false
}

# misbehave MODE: test-misbehave named `bad` (fail-open) in MODE; requests keep being served,
# the log names the plugin, gatekeeper stays up.
misbehave() {
  local mode=$1
  start_with_modifier "[[plugin]]
name = \"bad\"
type = \"modifier\"
command = \"test-misbehave\"
failure = \"open\"
config = { mode = \"$mode\" }"
  for ((i = 0; i < 10; i++)); do
    code=$(http_code "$GK_URL/echo/$i")
    [ "$code" = 200 ] || { echo "request $i: $code" >&2; return 1; }
    sleep 0.05
  done
  # The plugin said it misbehaved, at least twice: it was restarted and did it again.
  wait_for_log "misbehaving: $mode" 50
  eventually 100 '[ "$(gk_log | grep "misbehaving: $mode" | grep -c "plugin=bad")" -ge 2 ]'
  kill -0 "$GK_PID"
  [ "$(http_code "$GK_URL/echo/end")" = 200 ]
}

@test "misbehaving plugin: garbage on the socket" {
  misbehave garbage
  gk_log | grep 'broke the protocol' | grep -q 'plugin=bad'
  gk_log | grep 'restarting plugin' | grep -q 'plugin=bad'
}

@test "misbehaving plugin: a line over the limit" {
  misbehave oversized
  gk_log | grep 'line longer than the limit' | grep -Eq 'peer="?bad'
  gk_log | grep 'plugin is down' | grep 'plugin=bad' | grep -q 'over the length limit'
  gk_log | grep 'restarting plugin' | grep -q 'plugin=bad'
}

@test "misbehaving plugin: a response to an id never used" {
  misbehave unknown_id
  gk_log | grep 'broke the protocol' | grep -q 'plugin=bad'
  gk_log | grep 'restarting plugin' | grep -q 'plugin=bad'
}

@test "misbehaving plugin: a result of the wrong type" {
  misbehave wrong_result
  gk_log | grep 'wrong type' | grep -q 'plugin=bad'
  gk_log | grep 'restarting plugin' | grep -q 'plugin=bad'
}

@test "a hung plugin (SIGSTOP) misses heartbeats and is restarted" {
  start_with_modifier "$(modifier_table hung open '' 'heartbeat_interval = "300ms"
hook_timeout = "200ms"')"
  pid=$(plugin_pid hung)
  kill -STOP "$pid"
  # Meanwhile (fail-open) requests are served without it.
  [ "$(header_seen x-test-modifier "$GK_URL/echo/x")" = null ]
  new_pid=$(wait_for_restart hung "$pid" 120)
  gk_log | grep 'missed heartbeat' | grep -q 'plugin=hung'
  ! kill -0 "$pid" 2>/dev/null || false
  [ "$(header_seen x-test-modifier "$GK_URL/echo/x")" = "$new_pid" ]
}

@test "a plugin whose hooks keep timing out (heartbeats still fine) is restarted as hung" {
  start_with_modifier "$(modifier_table stuck open 'delay_ms = 3000' 'hook_timeout = "100ms"
restart_after_timeouts = 3')"
  pid=$(plugin_pid stuck)
  for i in 1 2 3; do
    [ "$(http_code "$GK_URL/echo/x")" = 200 ]
  done
  new_pid=$(wait_for_restart stuck "$pid" 100)
  [ "$new_pid" != "$pid" ]
  gk_log | grep 'taking the plugin as hung' | grep -q 'plugin=stuck'
  ! gk_log | grep 'missed heartbeat' | grep -q 'plugin=stuck' || false
}

@test "context set by one modifier reaches the next and the response hooks" {
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --modifier-plugin "test-modifier --context_key a --file $MODS" \
    --modifier-plugin "test-modifier --context_key b --file $MODS"
  run curl -sS --max-time 5 -D "$BATS_TEST_TMPDIR/headers" "$GK_URL/echo/x"
  [ "$status" -eq 0 ]
  cat "$BATS_TEST_TMPDIR/headers" "$MODS"
  # modify_request: the first sees an empty context, the second sees the first's entry.
  [ "$(records "$MODS" 'select(.name == "test-modifier" and .method == "modify_request") | .context')" = '{}' ]
  [ "$(records "$MODS" 'select(.name == "test-modifier-2" and .method == "modify_request") | .context')" = '{"a":"set-by-test-modifier"}' ]
  # modify_response: both see both entries.
  [ "$(count_records "$MODS" 'select(.method == "modify_response" and .context == {"a":"set-by-test-modifier","b":"set-by-test-modifier-2"})')" -eq 2 ]
  grep -qi '^x-context-a: set-by-test-modifier' "$BATS_TEST_TMPDIR/headers"
  grep -qi '^x-context-b: set-by-test-modifier-2' "$BATS_TEST_TMPDIR/headers"
  # Both request headers reached the backend... the second overwrote the first's pid header.
  [ "$(jq -r '.headers["x-test-modifier"]' <<<"$output")" = "$(plugin_pid test-modifier-2)" ]
}
