#!/usr/bin/env bats
# The walking skeleton end to end: gatekeeper + static-upstreams + request-id in front of a real
# backend, driven with curl and jq.

load helpers

setup() {
  start_backend echo-backend
  DEAD_PORT=$(free_port)
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT" "$DEAD_PORT"
}

teardown() {
  stop_all
}

start_default() {
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --modifier-plugin request-id "$@"
}

@test "prefix routing forwards to the backend with the prefix stripped" {
  start_default
  run curl -sS --max-time 5 "$GK_URL/echo/users/42?page=2"
  [ "$status" -eq 0 ]
  [ "$(jq -r .path <<<"$output")" = "/users/42" ]
  [ "$(jq -r .query <<<"$output")" = "page=2" ]
  [ "$(jq -r .backend <<<"$output")" = "echo-backend" ]
}

@test "a bare prefix forwards as /" {
  start_default
  run curl -sS --max-time 5 "$GK_URL/echo"
  [ "$(jq -r .path <<<"$output")" = "/" ]
}

@test "hostname routing keeps the path and the Host header" {
  start_default
  run curl -sS --max-time 5 -H 'Host: echo.test:8080' "$GK_URL/some/path"
  [ "$status" -eq 0 ]
  [ "$(jq -r .path <<<"$output")" = "/some/path" ]
  [ "$(jq -r '.headers.host' <<<"$output")" = "echo.test:8080" ]
}

@test "request-id: the backend sees X-Request-Id and the client gets the same one back" {
  start_default
  run curl -sS --max-time 5 -D "$BATS_TEST_TMPDIR/headers" "$GK_URL/echo/"
  [ "$status" -eq 0 ]
  seen=$(jq -r '.headers["x-request-id"]' <<<"$output")
  [ -n "$seen" ] && [ "$seen" != null ]
  returned=$(grep -i '^x-request-id:' "$BATS_TEST_TMPDIR/headers" | cut -d' ' -f2 | tr -d '\r')
  [ "$seen" = "$returned" ]
}

@test "request-id: a client's own X-Request-Id is kept" {
  start_default
  run curl -sS --max-time 5 -H 'X-Request-Id: mine-123' -D "$BATS_TEST_TMPDIR/headers" "$GK_URL/echo/"
  [ "$(jq -r '.headers["x-request-id"]' <<<"$output")" = "mine-123" ]
  grep -qi '^x-request-id: mine-123' "$BATS_TEST_TMPDIR/headers"
}

@test "no route is a 404 with a plain-text body" {
  start_default
  run curl -sS --max-time 5 -o "$BATS_TEST_TMPDIR/body" -w '%{http_code}' "$GK_URL/nowhere"
  [ "$output" = "404" ]
  grep -qi 'route' "$BATS_TEST_TMPDIR/body"
}

@test "a dead backend is a 502" {
  start_default
  run curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$GK_URL/dead/x"
  [ "$output" = "502" ]
}

@test "a backend slower than the upstream timeout is a 504" {
  start_default
  run curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$GK_URL/slow/slow?ms=2000"
  [ "$output" = "504" ]
}

@test "POST bodies reach the backend" {
  start_default
  run curl -sS --max-time 5 --data-binary 'hello body' "$GK_URL/echo/upload"
  [ "$(jq -r .method <<<"$output")" = "POST" ]
  [ "$(jq -r .body_length <<<"$output")" = "10" ]
}

@test "after kill -9 of the modifier plugin, requests succeed again and the log shows the restart" {
  start_default
  pid=$(plugin_pid request-id)
  [ -n "$pid" ]
  kill -9 "$pid"
  ok=0
  for ((i = 0; i < 100; i++)); do
    code=$(curl -s --max-time 2 -o "$BATS_TEST_TMPDIR/body" -w '%{http_code}' "$GK_URL/echo/after-kill" || true)
    if [ "$code" = "200" ] && [ "$(jq -r '.headers["x-request-id"]' "$BATS_TEST_TMPDIR/body")" != null ]; then
      ok=1; break
    fi
    sleep 0.1
  done
  [ "$ok" -eq 1 ]
  grep -i 'restart' "$GK_LOG" | grep -q 'request-id'
  new_pid=$(plugin_pid request-id)
  [ "$new_pid" != "$pid" ]
}

@test "a plugin written from docs/protocol.md alone (no SDK) modifies requests" {
  start_default --modifier-plugin "python3 $REPO_ROOT/integration/plugins/hello-modifier.py"
  run curl -sS --max-time 5 "$GK_URL/echo/"
  [ "$(jq -r '.headers["x-hello"]' <<<"$output")" = "from python" ]
  [ "$(jq -r '.headers["x-request-id"]' <<<"$output")" != null ]
}

@test "plugin stderr lands in gatekeeper's log tagged with the plugin name" {
  start_default
  grep 'static-upstreams' "$GK_LOG" | grep -q 'upstreams'
}

@test "the plugin socket directory is private (0700) and its sockets 0600" {
  start_default
  dir=$(find "$BATS_TEST_TMPDIR" -maxdepth 1 -type d -name 'gatekeeper-*' | head -n1)
  [ -n "$dir" ]
  [ "$(stat -c %a "$dir")" = "700" ]
  for sock in "$dir"/*.sock; do
    [ "$(stat -c %a "$sock")" = "600" ]
  done
}

@test "an upstreams file that does not parse stops startup with the line number" {
  printf 'echo:\n  name: echo\n  prefixes: [echo\n  backends: []\n' >"$BATS_TEST_TMPDIR/bad.yml"
  run timeout 20 gatekeeper --listen "127.0.0.1:$(free_port)" --socket-dir "$BATS_TEST_TMPDIR" \
    --upstream-plugin static-upstreams --upstream-file "$BATS_TEST_TMPDIR/bad.yml"
  [ "$status" -ne 0 ]
  [[ "$output" == *"line"* ]]
}

@test "bad flags and configs exit non-zero with a clear message" {
  run gatekeeper --listen nonsense
  [ "$status" -ne 0 ]
  [[ "$output" == *"--listen"* ]]
  run gatekeeper --modifier-plugin no-such-plugin-here
  [ "$status" -ne 0 ]
  [[ "$output" == *"no-such-plugin-here"* ]]
  printf 'listen = ["127.0.0.1:1"]\nbogus_key = 1\n' >"$BATS_TEST_TMPDIR/bad.toml"
  run gatekeeper --config "$BATS_TEST_TMPDIR/bad.toml"
  [ "$status" -ne 0 ]
  [[ "$output" == *"bogus_key"* ]]
}

@test "a config file gives plugins, their config and listeners" {
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
$(static_upstreams_table)

[[plugin]]
name = "rid"
type = "modifier"
command = "request-id"
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  run curl -sS --max-time 5 "$GK_URL/echo/from-config"
  [ "$(jq -r .path <<<"$output")" = "/from-config" ]
  [ "$(jq -r '.headers["x-request-id"]' <<<"$output")" != null ]
}

@test "--workers sets how many threads serve requests" {
  start_gatekeeper --workers 3 --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
  [ "$(cat /proc/"$GK_PID"/task/*/comm | grep -c '^tokio-rt-worker$')" = 3 ]
  [ "$(http_code "$GK_URL/echo/")" = 200 ]
}

@test "--check prints the effective settings as JSON without starting anything" {
  run gatekeeper --check --workers 3 --default-timeout 2s --listen internal=127.0.0.1:9 \
    --socket-dir "$BATS_TEST_TMPDIR" \
    --modifier-plugin request-id --modifier-header x-id --router-plugin test-router
  [ "$status" -eq 0 ]
  [ "$(jq -c '[.workers, .default_timeout, .listeners[0].name, .listeners[0].addr]' <<<"$output")" = '[3,"2s","internal","127.0.0.1:9"]' ]
  [ "$(jq -c '.plugins[] | select(.name == "request-id") | [.plugin_type, .config.header, .failure.policy]' <<<"$output")" = '["modifier","x-id","closed"]' ]
  # Routers fail open by default: the built-in router takes over while one is down.
  [ "$(jq -r '.plugins[] | select(.name == "test-router") | .failure.policy' <<<"$output")" = open ]
  # Nothing was started: no plugin socket directory was made.
  [ -z "$(find "$BATS_TEST_TMPDIR" -maxdepth 1 -name 'gatekeeper-*')" ]
}

@test "--default-timeout applies to upstreams that set none" {
  cat >"$BATS_TEST_TMPDIR/notimeout.yml" <<YAML
slow:
  name: slow
  prefixes: [slow]
  backends: [http://127.0.0.1:$BACKEND_PORT]
YAML
  start_gatekeeper --default-timeout 300ms --workers 1 \
    --upstream-plugin static-upstreams --upstream-file "$BATS_TEST_TMPDIR/notimeout.yml"
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$GK_URL/slow/slow?ms=50")" = 200 ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$GK_URL/slow/slow?ms=2000")" = 504 ]
}
