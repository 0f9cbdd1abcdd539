#!/usr/bin/env bats
# WebSocket and other Upgrade requests through the proxy: a WebSocket echo (backend.py /ws)
# reached through gatekeeper by ws-client.py, on the fast path and through a modifier; a backend
# that does not switch protocols is answered as usual; a fail-closed modifier still guards the
# upgrade request.

load helpers

setup() {
  start_backend echo-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
}

teardown() {
  stop_all
}

# start_with [MODIFIER CONFIG]: gatekeeper with static-upstreams, and with MODIFIER CONFIG (a
# TOML inline-table body) a test-modifier named `mod` failing closed with 403.
start_with() {
  {
    static_upstreams_table
    if [[ -n ${1:-} ]]; then
      printf '[[plugin]]\nname = "mod"\ntype = "modifier"\ncommand = "test-modifier"\n'
      printf 'failure = "closed"\nfailure_status = 403\nconfig = { %s }\n' "$1"
    fi
  } >"$BATS_TEST_TMPDIR/gk.toml"
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
}

# ws ARGS...: ws-client.py against gatekeeper.
ws() {
  timeout 30 python3 "$REPO_ROOT/integration/ws-client.py" "127.0.0.1:$GK_PORT" "$@"
}

@test "a WebSocket echo works through gatekeeper, a message over 64 KiB included" {
  start_with
  run ws /echo/ws hello "second message" @70000 @200000 last
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(jq -r .status <<<"$output")" = 101 ]
  [ "$(jq -r .accept_ok <<<"$output")" = true ]
  [ "$(jq -c .echoed <<<"$output")" = '[true,true,true,true,true]' ]
  [ "$(jq -r .headers.upgrade <<<"$output")" = websocket ]
  [ "$(jq -r .headers.connection <<<"$output")" = upgrade ]
  # The backend got the upgrade with the forwarding headers.
  saw=$(jq -r '.headers["x-backend-saw"]' <<<"$output")
  [[ ,$saw, == *,upgrade,* && ,$saw, == *,sec-websocket-key,* && ,$saw, == *,x-forwarded-for,* ]]
}

@test "several WebSockets at once, and plain requests still work afterwards" {
  start_with
  local pids=() i
  for i in 1 2 3; do
    ws /echo/ws "client $i" @70000 >"$BATS_TEST_TMPDIR/ws$i.out" &
    pids+=($!)
  done
  for i in 0 1 2; do wait "${pids[$i]}"; done
  for i in 1 2 3; do
    [ "$(jq -c .echoed "$BATS_TEST_TMPDIR/ws$i.out")" = '[true,true]' ]
  done
  [ "$(http_code "$GK_URL/echo/x")" = 200 ]
}

@test "modify_request runs on the upgrade request; the upgraded stream passes" {
  start_with 'context_key = "k"'
  run ws /echo/ws hello @70000
  echo "$output"
  [ "$status" -eq 0 ]
  saw=$(jq -r '.headers["x-backend-saw"]' <<<"$output")
  [[ ,$saw, == *,x-test-modifier,* && ,$saw, == *,upgrade,* ]]
}

@test "a fail-closed modifier that fails refuses the upgrade" {
  start_with 'fail = true'
  run ws /echo/ws hello
  echo "$output"
  [ "$status" -eq 1 ]
  [ "$(jq -r .status <<<"$output")" = 403 ]
}

@test "a backend that does not switch protocols answers as usual" {
  start_with
  # /status/400 refuses; the plain echo answers 200 and shows the upgrade headers it was sent.
  run ws /echo/status/400 hello
  [ "$status" -eq 1 ]
  [ "$(jq -r .status <<<"$output")" = 400 ]
  run curl -sS --max-time 5 -H 'Connection: Upgrade' -H 'Upgrade: websocket' "$GK_URL/echo/plain"
  [ "$status" -eq 0 ]
  [ "$(jq -r .headers.upgrade <<<"$output")" = websocket ]
  [ "$(jq -r .headers.connection <<<"$output")" = upgrade ]
  # An Upgrade without `Connection: upgrade` is not an upgrade: Upgrade is hop-by-hop, removed.
  run curl -sS --max-time 5 -H 'Upgrade: websocket' "$GK_URL/echo/plain"
  [ "$(jq -r .headers.upgrade <<<"$output")" = null ]
}

@test "SIGTERM waits for an open WebSocket, which keeps working, and exits once it closes" {
  start_with
  pause="$BATS_TEST_TMPDIR/go"
  ws /echo/ws --pause "$pause" before after >"$BATS_TEST_TMPDIR/ws.out" &
  ws_pid=$!
  wait_for_file "$pause.ready" 100
  kill -TERM "$GK_PID"
  eventually 50 'gk_log | grep -q "waiting for upgraded connections to close"'
  kill -0 "$GK_PID"
  # New connections are refused meanwhile.
  [ "$(http_code "$GK_URL/echo/")" = 000 ]
  touch "$pause"
  wait "$ws_pid"
  [ "$(jq -c .echoed "$BATS_TEST_TMPDIR/ws.out")" = "[true,true]" ]
  eventually 100 '! kill -0 '"$GK_PID"' 2>/dev/null'
  ! gk_log | grep -q "closing upgraded connections" || false
}
