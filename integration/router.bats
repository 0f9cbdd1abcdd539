#!/usr/bin/env bats
# Router plugins: test-router routes by the `x-route` header (no header: no route), is told about
# every upstream before it routes, and when it is down the built-in prefix router takes over
# (fail-open, the default) or the request is refused (fail-closed).

load helpers

setup() {
  start_backend echo-backend
  ECHO_PORT=$BACKEND_PORT
  start_backend other-backend
  OTHER_PORT=$BACKEND_PORT
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  cat >"$UPSTREAMS" <<YAML
echo:
  name: echo
  timeout: 5s
  prefixes: [echo]
  backends:
    - http://127.0.0.1:$ECHO_PORT
other:
  name: other
  timeout: 5s
  prefixes: [other]
  backends:
    - http://127.0.0.1:$OTHER_PORT
YAML
  ROUTES="$BATS_TEST_TMPDIR/router.jsonl"
}

teardown() {
  stop_all
}

# start_with_router [ROUTER_CMD] [ARGS...]: static-upstreams + the router (default test-router).
start_with_router() {
  local router=${1:-test-router}
  shift || true
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --router-plugin "$router" --router-file "$ROUTES" "$@"
}

# A config file with static-upstreams and a gated test-router named `router` with FAILURE.
write_router_config() {
  local failure=$1 gate
  gate=$(gated_plugin router test-router)
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
$(static_upstreams_table)

[[plugin]]
name = "router"
type = "router"
command = "$gate"
failure = "$failure"
failure_status = 599
config = { file = "$ROUTES" }
TOML
}

@test "the router plugin decides: x-route picks the upstream, no header is a 404" {
  start_with_router
  [ "$(echoed_backend -H 'x-route: other' "$GK_URL/anything")" = other-backend ]
  [ "$(echoed_backend -H 'x-route: echo' "$GK_URL/anything")" = echo-backend ]
  # The header wins over the path the built-in router would have used.
  [ "$(echoed_backend -H 'x-route: other' "$GK_URL/echo/x")" = other-backend ]
  # The router strips nothing: the backend gets the whole path.
  run curl -sS --max-time 5 -H 'x-route: echo' "$GK_URL/echo/users/7?q=1"
  [ "$(jq -r .path <<<"$output")" = /echo/users/7 ]
  [ "$(jq -r .query <<<"$output")" = q=1 ]
  # No header: the router found no upstream, even though the built-in router would have.
  [ "$(http_code "$GK_URL/echo/x")" = 404 ]
  # An upstream the registry does not have is a 404 too.
  [ "$(http_code -H 'x-route: nope' "$GK_URL/echo/x")" = 404 ]
  # Every request reached the router.
  [ "$(count_records "$ROUTES" 'select(.method == "route_request")')" -eq 6 ]
  [ "$(count_records "$ROUTES" 'select(.method == "route_request" and .upstream == null)')" -eq 1 ]
}

@test "the router is told every upstream before it routes" {
  start_with_router
  [ "$(echoed_backend -H 'x-route: echo' "$GK_URL/x")" = echo-backend ]
  # The first route_request comes after an add_upstream for each upstream.
  first_route=$(jq -s 'map(.method) | index("route_request")' "$ROUTES")
  [ "$first_route" != null ]
  for id in echo other; do
    added_at=$(jq -s --arg id "$id" 'map(.method == "add_upstream" and .id == $id) | index(true)' "$ROUTES")
    [ "$added_at" != null ]
    [ "$added_at" -lt "$first_route" ]
  done
  [ "$(count_records "$ROUTES" 'select(.method == "remove_upstream")')" -eq 0 ]
}

@test "kill -9 of the router: requests keep flowing, it gets every upstream again and routes again" {
  start_with_router
  pid=$(plugin_pid test-router)
  [ -n "$pid" ]
  # (At startup an upstream may be announced twice: by the replay and by the change feed.)
  [ "$(echoed_backend -H 'x-route: other' "$GK_URL/x")" = other-backend ]
  before_echo=$(count_records "$ROUTES" 'select(.method == "add_upstream" and .id == "echo")')
  before_other=$(count_records "$ROUTES" 'select(.method == "add_upstream" and .id == "other")')
  [ "$before_echo" -ge 1 ] && [ "$before_other" -ge 1 ]
  kill -9 "$pid"
  # Hammer while it restarts: no request may fail (fail-open: the built-in router decides while
  # the plugin is down, and the prefix path routes there).
  for ((i = 0; i < 30; i++)); do
    code=$(http_code -H 'x-route: echo' "$GK_URL/echo/during")
    [ "$code" = 200 ] || { echo "request $i: $code" >&2; false; }
  done
  new_pid=$(wait_for_restart test-router "$pid")
  [ "$new_pid" != "$pid" ]
  # The restarted router got add_upstream for every upstream again, before it was ready.
  [ "$(count_records "$ROUTES" 'select(.method == "add_upstream" and .id == "echo")')" -eq $((before_echo + 1)) ]
  [ "$(count_records "$ROUTES" 'select(.method == "add_upstream" and .id == "other")')" -eq $((before_other + 1)) ]
  # It routes by header again: no header is its 404 again, x-route its choice.
  eventually 50 '[ "$(http_code "$GK_URL/echo/after")" = 404 ]'
  [ "$(echoed_backend -H 'x-route: other' "$GK_URL/echo/after")" = other-backend ]
  grep -q 'restart' <(gk_log | grep 'test-router')
}

@test "while the router is down (fail-open, the default) the built-in prefix router serves" {
  write_router_config open
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  # Up: the plugin routes (no header: 404, although /echo is a known prefix).
  [ "$(http_code "$GK_URL/echo/x")" = 404 ]
  pid=$(plugin_pid router)
  touch "$BATS_TEST_TMPDIR/gated/router.down"
  kill -9 "$pid"
  eventually 50 '[ "$(http_code "$GK_URL/echo/x")" = 200 ]'
  # For as long as it stays down: prefix routing, prefix stripped, the x-route header ignored.
  for ((i = 0; i < 10; i++)); do
    run curl -sS --max-time 5 -H 'x-route: other' "$GK_URL/echo/down/$i"
    [ "$status" -eq 0 ]
    [ "$(jq -r .backend <<<"$output")" = echo-backend ]
    [ "$(jq -r .path <<<"$output")" = "/down/$i" ]
  done
  [ "$(http_code "$GK_URL/nowhere")" = 404 ]
  [ "$(echoed_backend "$GK_URL/other/x")" = other-backend ]
  ! plugin_pid router || false
  gk_log | grep 'plugin=router' | grep -q 'restart failed'
  # Back up: the plugin decides again.
  rm "$BATS_TEST_TMPDIR/gated/router.down"
  wait_for_restart router "$pid" 150 >/dev/null
  eventually 50 '[ "$(http_code "$GK_URL/echo/x")" = 404 ]'
  [ "$(echoed_backend -H 'x-route: other' "$GK_URL/echo/x")" = other-backend ]
}

@test "while a fail-closed router is down, requests get its failure_status" {
  write_router_config closed
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$(echoed_backend -H 'x-route: echo' "$GK_URL/x")" = echo-backend ]
  pid=$(plugin_pid router)
  touch "$BATS_TEST_TMPDIR/gated/router.down"
  kill -9 "$pid"
  eventually 50 '[ "$(http_code -H "x-route: echo" "$GK_URL/echo/x")" = 599 ]'
  for ((i = 0; i < 5; i++)); do
    [ "$(http_code -H 'x-route: echo' "$GK_URL/echo/x")" = 599 ]
  done
  run curl -sS --max-time 5 "$GK_URL/echo/x"
  [[ "$output" == *router* ]]
  rm "$BATS_TEST_TMPDIR/gated/router.down"
  wait_for_restart router "$pid" 150 >/dev/null
  eventually 50 '[ "$(http_code -H "x-route: echo" "$GK_URL/echo/x")" = 200 ]'
}

@test "upstreams of every upstream plugin reach the router" {
  cat >"$BATS_TEST_TMPDIR/more.yml" <<YAML
more:
  name: more
  prefixes: [more]
  backends:
    - http://127.0.0.1:$OTHER_PORT
YAML
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
$(static_upstreams_table)

[[plugin]]
name = "static-more"
type = "upstream"
command = "static-upstreams"
config = { file = "$BATS_TEST_TMPDIR/more.yml" }

[[plugin]]
type = "router"
command = "test-router"
config = { file = "$ROUTES" }
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$(echoed_backend -H 'x-route: more' "$GK_URL/x")" = other-backend ]
  [ "$(echoed_backend -H 'x-route: echo' "$GK_URL/x")" = echo-backend ]
  for id in echo other more; do
    [ "$(count_records "$ROUTES" "select(.method == \"add_upstream\" and .id == \"$id\")")" -ge 1 ]
  done
}

@test "a router restarted while upstreams are being added still learns every upstream" {
  # Each router process records to its own file (named by its pid), so the last one's view can
  # be told from its predecessors'.
  cat >"$BATS_TEST_TMPDIR/router-per-pid" <<SH
#!/usr/bin/env bash
exec test-router --file "$BATS_TEST_TMPDIR/router-\$\$.jsonl"
SH
  chmod +x "$BATS_TEST_TMPDIR/router-per-pid"
  COMMANDS="$BATS_TEST_TMPDIR/commands.jsonl"
  ANSWERS="$BATS_TEST_TMPDIR/answers.jsonl"
  START="$BATS_TEST_TMPDIR/start.jsonl"
  : >"$COMMANDS"
  # 500 upstreams at start make every replay take a while: the window in which a restarted
  # router has been sent the registry but is not ready yet.
  for ((i = 0; i < 500; i++)); do
    echo "{\"step\":\"s$i\",\"method\":\"add_upstream\",\"params\":{\"upstream\":{\"id\":\"s$i\",\"prefixes\":[\"s$i\"]}}}"
  done >"$START"
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
[[plugin]]
name = "driver"
type = "upstream"
command = "python3"
args = ["$BATS_TEST_DIRNAME/plugins/manager-driver.py"]
config = { record = "$ANSWERS", start = "$START", commands = "$COMMANDS", poll_ms = "5" }

[[plugin]]
name = "router"
type = "router"
command = "$BATS_TEST_TMPDIR/router-per-pid"
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  n=400
  # The upstream plugin adds n more upstreams, one every ~5 ms, for ~2.5 s ...
  (
    for ((i = 0; i < n; i++)); do
      echo "{\"step\":\"u$i\",\"method\":\"add_upstream\",\"params\":{\"upstream\":{\"id\":\"u$i\",\"prefixes\":[\"p$i\"]}}}" >>"$COMMANDS"
      sleep 0.005
    done
  ) &
  feeder=$!
  PIDS+=("$feeder")
  # ... while the router is killed 3 times (its restart backoff grows: 0.1, 0.2, 0.4 s), so its
  # last restart happens while upstreams are still being added.
  kills=0
  while ((kills < 3)) && kill -0 "$feeder" 2>/dev/null; do
    if pid=$(plugin_pid router) && gk_log | grep -qE "plugin ready plugin=router pid=$pid( |$)"; then
      kill -9 "$pid" && kills=$((kills + 1))
    fi
    sleep 0.05
  done
  kill -0 "$feeder" # still adding
  wait "$feeder"
  echo "router killed $kills times"
  ((kills == 3))
  wait_for_records "$ANSWERS" 'select(.result == {})' $((n + 500)) 100
  # The router is back for good: the last process must know every upstream.
  eventually 100 'pid=$(plugin_pid router) && gk_log | grep -qE "plugin ready plugin=router pid=$pid( |$)"'
  last=$(plugin_pid router)
  sleep 0.5
  missing=$(comm -23 <({ for ((i = 0; i < n; i++)); do echo "u$i"; done; for ((i = 0; i < 500; i++)); do echo "s$i"; done; } | sort) \
    <(jq -r 'select(.method == "add_upstream") | .id' "$BATS_TEST_TMPDIR/router-$last.jsonl" | sort -u))
  echo "the router process $last was never told: $(tr '\n' ' ' <<<"$missing")"
  [ -z "$missing" ]
}
