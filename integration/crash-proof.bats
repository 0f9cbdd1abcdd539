#!/usr/bin/env bats
# A crashing, hanging, leaking or misbehaving plugin costs no requests (issue 12): a kill loop
# on two instances, a standby spare taking over, recycling past max_memory, an upstream plugin
# that pushes less after a crash, a start failure at startup retried then reported, `null` and
# wrong-shape results. Requests are sequential and bounded; every process is stopped.

load helpers

setup() {
  start_backend echo-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  MODS="$BATS_TEST_TMPDIR/modifier.jsonl"
}

teardown() {
  touch "$BATS_TEST_TMPDIR/stop-killing"
  stop_all
}

# ctl ARGS...: gatekeeper ctl for the gatekeeper of this test (found by its --socket-dir).
ctl() {
  gatekeeper ctl --socket-dir "$BATS_TEST_TMPDIR" "$@"
}

# plugin_field NAME FIELD: FIELD (a jq path such as `.restarts`) of plugin NAME in `ctl plugins`.
plugin_field() {
  ctl plugins | jq -r --arg name "$1" ".[] | select(.name == \$name) | $2"
}

# plugin_pids NAME: the pids of every gatekeeper child running plugin NAME (instances and
# spares), lowest first.
plugin_pids() {
  local child
  for child in $(pgrep -P "$GK_PID" | sort -n); do
    if tr '\0' '\n' <"/proc/$child/environ" 2>/dev/null | grep -qx "GATEKEEPER_PLUGIN_NAME=$1"; then
      echo "$child"
    fi
  done
}

# count_failures N URL: sends N sequential requests to URL and prints how many were not 2xx.
count_failures() {
  local n=$1 url=$2 failures=0 code i
  for ((i = 0; i < n; i++)); do
    code=$(http_code "$url$i")
    [[ $code == 2* ]] || failures=$((failures + 1))
  done
  echo "$failures"
}

# modifier_table NAME COMMAND FAILURE [MORE TOML LINES]: a [[plugin]] table of a modifier.
modifier_table() {
  cat <<TOML
[[plugin]]
name = "$1"
type = "modifier"
command = "$2"
failure = "$3"
${4:-}
TOML
}

@test "instances = 2, fail-closed: a modifier process killed every 0.3 s costs no request (200 requests)" {
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --modifier-plugin request-id --modifier-instances 2
  eventually 50 '[ "$(plugin_pids request-id | wc -l)" -eq 2 ]'
  # Kill the oldest process (the lowest pid) every 0.3 s, at most 100 times, until told to stop.
  (
    for ((k = 0; k < 100; k++)); do
      [[ -e $BATS_TEST_TMPDIR/stop-killing ]] && break
      victim=$(plugin_pids request-id | head -n 1)
      [[ -n $victim ]] && kill -9 "$victim" 2>/dev/null && echo "$victim" >>"$BATS_TEST_TMPDIR/killed"
      sleep 0.3
    done
  ) &
  PIDS+=($!)
  failures=$(count_failures 200 "$GK_URL/echo/")
  touch "$BATS_TEST_TMPDIR/stop-killing"
  killed=$(wc -l <"$BATS_TEST_TMPDIR/killed")
  echo "killed $killed processes; $failures of 200 requests failed" >&2
  [ "$killed" -ge 3 ]
  [ "$failures" -eq 0 ]
  eventually 50 '[ "$(plugin_field request-id .restarts)" -ge "$killed" ]'
}

@test "standby = 1: the spare takes over at once when the active process is killed" {
  start_with_modifier "$(modifier_table mod test-modifier closed "config = { file = \"$MODS\" }
standby = 1")"
  eventually 100 '[ "$(plugin_field mod .standby_ready)" = 1 ]'
  active=$(plugin_field mod .pid)
  [ "$(plugin_pids mod | wc -l)" -eq 2 ]
  spare=$(plugin_pids mod | grep -vx "$active")
  [ -n "$spare" ]
  [ "$(curl -sS --max-time 5 "$GK_URL/echo/before" | jq -r '.headers["x-test-modifier"]')" = "$active" ]
  kill -9 "$active"
  # The next request is served, by the spare.
  [ "$(http_code "$GK_URL/echo/after")" = 200 ]
  eventually 50 '[ "$(plugin_field mod .pid)" = "$spare" ]'
  [ "$(curl -sS --max-time 5 "$GK_URL/echo/again" | jq -r '.headers["x-test-modifier"]')" = "$spare" ]
  # A new spare is started.
  eventually 100 '[ "$(plugin_field mod .standby_ready)" = 1 ]'
  [ "$(plugin_pids mod | wc -l)" -eq 2 ]
  ! plugin_pids mod | grep -qx "$active" || false
}

@test "max_memory: a plugin that allocates on every call is recycled, no request fails" {
  start_with_modifier "$(modifier_table leaky test-misbehave closed 'config = { mode = "leak", leak_bytes = 1048576 }
max_memory = "48MiB"')"
  first=$(plugin_field leaky .pid)
  # One curl for all 300 (keep-alive): the leak, not the client, sets the pace.
  codes=$(curl -sS --max-time 60 -o /dev/null -w '%{http_code}\n' "$GK_URL/echo/[1-300]")
  [ "$(wc -l <<<"$codes")" -eq 300 ]
  failures=$(grep -vc '^2' <<<"$codes" || true)
  echo "$failures of 300 requests failed" >&2
  [ "$failures" -eq 0 ]
  eventually 100 '[ "$(plugin_field leaky .recycles)" -ge 1 ]'
  [ "$(plugin_field leaky .restarts)" = 0 ]
  [ "$(plugin_field leaky .pid)" != "$first" ]
  [ "$(http_code "$GK_URL/echo/end")" = 200 ]
}

@test "an upstream plugin that pushes less after a crash: what it no longer pushes is removed" {
  # The plugin runs through a wrapper that, once `shrink` exists, replaces the upstreams file
  # with one without `slow` before starting static-upstreams: the file changes while no
  # process watches it, so only the restart can tell gatekeeper.
  SMALL="$BATS_TEST_TMPDIR/small.yml"
  write_upstreams "$SMALL" "$BACKEND_PORT"
  python3 - "$SMALL" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
start = text.index("slow:")
end = text.index("dead:")
open(path, "w").write(text[:start] + text[end:])
PY
  wrapper="$BATS_TEST_TMPDIR/files"
  cat >"$wrapper" <<SH
#!/usr/bin/env bash
if [[ -e '$BATS_TEST_TMPDIR/shrink' ]]; then cp '$SMALL' '$UPSTREAMS'; fi
exec static-upstreams "\$@"
SH
  chmod +x "$wrapper"
  start_gatekeeper --upstream-plugin "$wrapper" --upstream-file "$UPSTREAMS"
  [ "$(http_code "$GK_URL/slow/x")" = 200 ]
  [ "$(http_code "$GK_URL/echo/x")" = 200 ]
  pid=$(plugin_pid files)
  touch "$BATS_TEST_TMPDIR/shrink"
  kill -9 "$pid"
  wait_for_restart files "$pid" 100 >/dev/null
  eventually 50 '[ "$(http_code "$GK_URL/slow/x")" = 404 ]'
  [ "$(http_code "$GK_URL/echo/x")" = 200 ]
  ctl upstreams | jq -e 'map(.id) | index("slow") == null' >/dev/null
}

@test "a plugin that exits at once at startup: tried 3 times, then gatekeeper exits naming it" {
  broken="$BATS_TEST_TMPDIR/broken"
  cat >"$broken" <<SH
#!/usr/bin/env bash
echo start >>'$BATS_TEST_TMPDIR/starts'
echo 'broken: cannot open /etc/broken.conf' >&2
exit 3
SH
  chmod +x "$broken"
  GK_PORT=$(free_port)
  run timeout 30 gatekeeper --listen "127.0.0.1:$GK_PORT" --socket-dir "$BATS_TEST_TMPDIR" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" --modifier-plugin "$broken"
  echo "$output" >&2
  [ "$status" -ne 0 ]
  [ "$status" -ne 124 ] # not the timeout
  last=$(grep '^gatekeeper: ' <<<"$output" | tail -n 1)
  [ -n "$last" ]
  # One error, whole: the plugin, the attempts, the exit status and its stderr line.
  error=$(sed -n '/^gatekeeper: /,$p' <<<"$output")
  grep -q 'broken' <<<"$error"
  grep -q '3 attempts' <<<"$error"
  grep -q 'exit status: 3' <<<"$error"
  grep -q 'broken: cannot open /etc/broken.conf' <<<"$error"
  [ "$(wc -l <"$BATS_TEST_TMPDIR/starts")" -eq 3 ]
  # Nothing left running.
  ! pgrep -f "$broken" >/dev/null || false
}

@test "a null result is {}: 200 and the request unchanged, no restart" {
  start_with_modifier "$(modifier_table nully test-misbehave closed 'config = { mode = "null_result" }')"
  body=$(curl -sS --max-time 5 -H 'x-keep: 1' "$GK_URL/echo/null?q=1")
  # Exactly as without the plugin: the prefixless path, the query, the client's header.
  [ "$(jq -r '[.path, .query, .headers["x-keep"]] | join(" ")' <<<"$body")" = "/null q=1 1" ]
  for ((i = 0; i < 5; i++)); do [ "$(http_code "$GK_URL/echo/$i")" = 200 ]; done
  [ "$(plugin_field nully .restarts)" = 0 ]
  [ "$(plugin_field nully .errors)" = 0 ]
}

@test "a wrong-shape result fails its request (fail-closed 503); the 5th in a row restarts" {
  start_with_modifier "$(modifier_table wrong test-misbehave closed 'config = { mode = "wrong_result" }')"
  pid=$(plugin_pid wrong)
  for ((i = 0; i < 4; i++)); do [ "$(http_code "$GK_URL/echo/$i")" = 503 ]; done
  [ "$(plugin_field wrong .restarts)" = 0 ]
  [ "$(plugin_field wrong .bad_results)" = 4 ]
  [ "$(plugin_pid wrong)" = "$pid" ]
  [ "$(http_code "$GK_URL/echo/5")" = 503 ]
  eventually 50 '[ "$(plugin_field wrong .restarts)" = 1 ]'
  [ "$(plugin_field wrong .bad_results)" = 5 ]
  gk_log | grep -q 'plugin=wrong'
}
