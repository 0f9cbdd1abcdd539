#!/usr/bin/env bats
# SIGHUP reload through the real binaries: a bad config changes nothing (every error logged);
# listeners added, removed and moved; plugins added, removed, restarted with new settings,
# reordered and given another number of instances; an upstream plugin's upstreams follow it;
# the access log file is reopened; and under wrk load no request fails while all that happens.

load helpers

setup() {
  start_backend reload-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  GK_PORT=$(free_port)
  GK_URL="http://127.0.0.1:$GK_PORT"
  CONFIG="$BATS_TEST_TMPDIR/gatekeeper.toml"
  LISTEN="\"http-public=127.0.0.1:$GK_PORT\""
  MORE=""
  PLUGINS=""
}

teardown() {
  stop_all
}

# write_config: the config file from $LISTEN (TOML list items), $MORE (top-level keys),
# static-upstreams, then $PLUGINS (more [[plugin]] tables).
write_config() {
  cat >"$CONFIG" <<TOML
listen = [$LISTEN]
shutdown_grace = "5s"
admin_socket = "$BATS_TEST_TMPDIR/admin.sock"
$MORE

$(static_upstreams_table)
$PLUGINS
TOML
}

# modifier NAME HEADER [INSTANCES]: a test-modifier [[plugin]] table that sets HEADER to its pid.
modifier() {
  cat <<TOML

[[plugin]]
name = "$1"
type = "modifier"
command = "test-modifier"
instances = ${3:-1}
config = { header = "$2" }
TOML
}

start_gk() {
  write_config
  GK_LOG="$BATS_TEST_TMPDIR/gatekeeper.log"
  gatekeeper --config "$CONFIG" --socket-dir "$BATS_TEST_TMPDIR" >"$GK_LOG" 2>&1 &
  GK_PID=$!
  PIDS+=("$GK_PID")
  eventually 150 'grep -q "gatekeeper ready" "$GK_LOG" || ! kill -0 $GK_PID' || true
  grep -q "gatekeeper ready" "$GK_LOG" || { cat "$GK_LOG" >&2; return 1; }
}

# reload: rewrites the config, sends SIGHUP and waits for the reload's summary line (one per
# reload: reloaded, reloaded with errors, changes that need a restart, or a config with errors).
reload() {
  write_config
  local before
  before=$(gk_log | grep -c "SIGHUP: reloading" || true)
  kill -HUP "$GK_PID"
  eventually 150 '[ "$(gk_log | grep -cE "SIGHUP: (configuration reloaded|these changes need a restart|the configuration has errors)" || true)" -gt "$before" ]'
}

# seen_header NAME [URL]: header NAME as the backend saw it ("null" if absent).
seen_header() {
  curl -s --max-time 5 "${2:-$GK_URL}/echo/" | jq -r ".headers[\"$1\"]"
}

ctl() {
  gatekeeper ctl --socket "$BATS_TEST_TMPDIR/admin.sock" "$@"
}

# pids_of NAME: the pids of plugin NAME's processes, sorted, one line.
pids_of() {
  local child
  for child in $(pgrep -P "$GK_PID"); do
    if tr '\0' '\n' <"/proc/$child/environ" 2>/dev/null | grep -qx "GATEKEEPER_PLUGIN_NAME=$1"; then
      echo "$child"
    fi
  done | sort | tr '\n' ' '
}

@test "reload: a bad config changes nothing and every error is logged" {
  start_gk
  cat >"$CONFIG" <<TOML
listen = ["not an address"]
no_such_key = 1
TOML
  kill -HUP "$GK_PID"
  eventually 50 'gk_log | grep -q "the configuration has errors"'
  gk_log | grep "configuration error" | grep -q "listen"
  gk_log | grep "configuration error" | grep -q "no_such_key"
  gk_log | grep -q "errors=2"
  [ "$(http_code "$GK_URL/echo/")" = 200 ]
  ctl status | jq -e '.ready == true'
}

@test "reload: an unchanged config reloads cleanly; other settings are named as needing a restart" {
  start_gk
  reload
  gk_log | grep -q "SIGHUP: configuration reloaded"
  MORE='default_timeout = "7s"'
  reload
  line=$(gk_log | grep "need a restart")
  [[ $line == *default_timeout* ]]
  [[ $line != *listeners* && $line != *plugins* ]]
}

@test "reload: a listener is added, moved and removed while the others serve" {
  start_gk
  second=$(free_port)
  LISTEN="$LISTEN, \"http-admin=127.0.0.1:$second\""
  reload
  [ "$(http_code "http://127.0.0.1:$second/slow/")" = 200 ]
  ctl status | jq -e --arg a "127.0.0.1:$second" '.listeners | map(.address) | index($a) != null'
  # Moved: the old port closes, the new one serves.
  third=$(free_port)
  LISTEN="\"http-public=127.0.0.1:$GK_PORT\", \"http-admin=127.0.0.1:$third\""
  reload
  [ "$(http_code "http://127.0.0.1:$third/slow/")" = 200 ]
  [ "$(http_code "http://127.0.0.1:$second/slow/")" = 000 ]
  # Removed.
  LISTEN="\"http-public=127.0.0.1:$GK_PORT\""
  reload
  [ "$(http_code "http://127.0.0.1:$third/slow/")" = 000 ]
  [ "$(http_code "$GK_URL/echo/")" = 200 ]
  [ "$(ctl status | jq '.listeners | length')" = 1 ]
}

@test "reload: a listener on a port in use changes nothing and is reported" {
  start_gk
  busy=$(free_port)
  python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); time.sleep(30)' "$busy" &
  PIDS+=($!)
  eventually 50 'ss -ltn | grep -q ":$busy "'
  LISTEN="$LISTEN, \"http-admin=127.0.0.1:$busy\""
  reload
  gk_log | grep -q "listeners and certificates not changed"
  [ "$(http_code "$GK_URL/echo/")" = 200 ]
  [ "$(ctl status | jq '.listeners | length')" = 1 ]
}

@test "reload: a modifier is added, then removed (its process stops)" {
  start_gk
  [ "$(seen_header x-added)" = null ]
  PLUGINS=$(modifier added x-added)
  reload
  pid=$(seen_header x-added)
  [ "$pid" != null ] && kill -0 "$pid"
  gk_log | grep "SIGHUP: plugin started" | grep -q "added"
  ctl plugins | jq -e 'map(.name) | index("added") != null'
  PLUGINS=""
  reload
  [ "$(seen_header x-added)" = null ]
  eventually 50 '! kill -0 '"$pid"' 2>/dev/null'
  ctl plugins | jq -e 'map(.name) | index("added") == null'
}

@test "reload: a request in flight finishes with the plugin it started with, then the plugin stops" {
  PLUGINS="$(modifier slow x-slow | sed 's/header = "x-slow"/header = "x-slow", delay_ms = "1000"/')"
  PLUGINS+=$'\nfailure = "closed"\nhook_timeout = "5s"'
  start_gk
  pid=$(pids_of slow)
  # modify_request and modify_response each take 1 s.
  curl -s --max-time 10 -o "$BATS_TEST_TMPDIR/slow.out" -w '%{http_code}' "$GK_URL/echo/" >"$BATS_TEST_TMPDIR/slow.code" &
  curl_pid=$!
  sleep 0.5
  PLUGINS=""
  reload
  wait "$curl_pid"
  [ "$(cat "$BATS_TEST_TMPDIR/slow.code")" = 200 ]
  [ "$(jq -r '.headers["x-slow"]' "$BATS_TEST_TMPDIR/slow.out")" = "${pid% }" ]
  eventually 50 '! kill -0 '"${pid% }"' 2>/dev/null'
  [ "$(seen_header x-slow)" = null ]
}

@test "reload: a plugin with new settings is replaced by a new process; one that rejects them keeps the old" {
  PLUGINS=$(modifier rid x-first)
  start_gk
  old=$(seen_header x-first)
  [ "$old" != null ]
  PLUGINS=$(modifier rid x-second)
  reload
  new=$(seen_header x-second)
  [ "$new" != null ] && [ "$new" != "$old" ]
  [ "$(seen_header x-first)" = null ]
  eventually 50 '! kill -0 '"$old"' 2>/dev/null'
  # Settings the plugin rejects in configure: the running one stays.
  PLUGINS="$(modifier rid x-second | sed 's/header = "x-second"/header = "x-second", delay_ms = "soon"/')"
  reload
  gk_log | grep -q "plugin not started with its new settings"
  [ "$(seen_header x-second)" = "$new" ]
}

@test "reload: modifiers are called in the new order" {
  PLUGINS="$(modifier one x-order)$(modifier two x-order)"
  start_gk
  one=$(pids_of one)
  two=$(pids_of two)
  # The last modifier to set the header wins.
  [ "$(seen_header x-order)" = "${two% }" ]
  PLUGINS="$(modifier two x-order)$(modifier one x-order)"
  reload
  gk_log | grep -q "modifiers are called in the new order"
  [ "$(seen_header x-order)" = "${one% }" ]
  # Nothing was restarted for a new order.
  [ "$(pids_of one)" = "$one" ] && [ "$(pids_of two)" = "$two" ]
}

@test "reload: a new number of instances starts the new processes before the old ones stop" {
  PLUGINS=$(modifier many x-many 1)
  start_gk
  old=$(pids_of many)
  PLUGINS=$(modifier many x-many 2)
  reload
  [ "$(ctl plugins | jq '.[] | select(.name == "many") | .instances')" = 2 ]
  eventually 50 '[ "$(pids_of many | wc -w)" = 2 ]'
  [[ " $(pids_of many) " != *" ${old% } "* ]]
}

@test "reload: an upstream plugin's new file replaces its upstreams; removing the plugin removes them" {
  start_gk
  [ "$(http_code "$GK_URL/slow/")" = 200 ]
  other="$BATS_TEST_TMPDIR/other.yml"
  cat >"$other" <<YAML
echo:
  prefixes: [fresh]
  protocols: [http-public]
  backends: ["http://127.0.0.1:$BACKEND_PORT"]
YAML
  UPSTREAMS=$other
  reload
  # `echo` changed (another prefix), `slow` and `dead` are gone.
  [ "$(http_code "$GK_URL/fresh/")" = 200 ]
  [ "$(http_code "$GK_URL/echo/")" = 404 ]
  [ "$(http_code "$GK_URL/slow/")" = 404 ]
  [ "$(ctl upstreams | jq length)" = 1 ]
  # Without the plugin, no upstreams remain.
  cat >"$CONFIG" <<TOML
listen = [$LISTEN]
admin_socket = "$BATS_TEST_TMPDIR/admin.sock"
TOML
  kill -HUP "$GK_PID"
  eventually 100 '[ "$(ctl upstreams | jq length)" = 0 ]'
  [ "$(http_code "$GK_URL/fresh/")" = 404 ]
}

@test "reload: the access log file is reopened (logrotate without copytruncate)" {
  LOG="$BATS_TEST_TMPDIR/access.log"
  MORE="access_log = \"common\"
access_log_file = \"$LOG\"
metrics_flush_interval = \"100ms\""
  start_gk
  curl -s -o /dev/null "$GK_URL/echo/first"
  eventually 50 'grep -q "/echo/first" "$LOG"'
  mv "$LOG" "$LOG.1"
  reload
  curl -s -o /dev/null "$GK_URL/echo/second"
  eventually 50 'grep -q "/echo/second" "$LOG"'
  ! grep -q "/echo/second" "$LOG.1" || false
}

@test "reload under load: plugins and listeners change during wrk, no request fails" {
  command -v wrk >/dev/null || skip "wrk is not installed"
  PLUGINS=$(modifier rid x-first)
  start_gk
  wrk -t1 -c10 -d5s "$GK_URL/echo/" >"$BATS_TEST_TMPDIR/wrk.out" 2>&1 &
  wrk_pid=$!
  sleep 0.5
  PLUGINS="$(modifier rid x-second)$(modifier added x-added)"
  reload
  LISTEN="$LISTEN, \"http-admin=127.0.0.1:$(free_port)\""
  PLUGINS="$(modifier added x-added 2)"
  reload
  PLUGINS="$(modifier added x-added 2)$(modifier rid x-first)"
  reload
  wait "$wrk_pid"
  cat "$BATS_TEST_TMPDIR/wrk.out"
  grep -q "requests in" "$BATS_TEST_TMPDIR/wrk.out"
  ! grep -q "Non-2xx" "$BATS_TEST_TMPDIR/wrk.out" || false
  ! grep -q "Socket errors" "$BATS_TEST_TMPDIR/wrk.out" || false
  [ "$(gk_log | grep -c "SIGHUP: configuration reloaded")" -eq 3 ]
  [ "$(seen_header x-first)" != null ] && [ "$(seen_header x-added)" != null ]
}
