#!/usr/bin/env bats
# Operations under systemd: sd_notify (READY, RELOADING, STOPPING, WATCHDOG) on a fake
# NOTIFY_SOCKET, socket activation, SIGTERM drain (SIGHUP reload: operations-reload.bats),
# scripts/install.sh and the unit file.

load helpers

setup() {
  start_backend ops-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  GK_PORT=$(free_port)
  GK_URL="http://127.0.0.1:$GK_PORT"
  CONFIG="$BATS_TEST_TMPDIR/gatekeeper.toml"
  write_config "http-public=127.0.0.1:$GK_PORT"
}

teardown() {
  stop_all
}

# write_config LISTEN: the config file, one listener, static-upstreams.
write_config() {
  cat >"$CONFIG" <<TOML
listen = ["$1"]
shutdown_grace = "5s"

[[plugin]]
type = "upstream"
command = "static-upstreams"
config = { file = "$UPSTREAMS" }
TOML
}

# start_gk COMMAND...: runs COMMAND (gatekeeper, or a launcher that execs it) with the config
# file, logging to $GK_LOG; waits until gatekeeper is ready.
start_gk() {
  GK_LOG="$BATS_TEST_TMPDIR/gatekeeper.log"
  "$@" --config "$CONFIG" --socket-dir "$BATS_TEST_TMPDIR" >"$GK_LOG" 2>&1 &
  GK_PID=$!
  PIDS+=("$GK_PID")
  eventually 150 'grep -q "gatekeeper ready" "$GK_LOG" || ! kill -0 $GK_PID' || true
  grep -q "gatekeeper ready" "$GK_LOG" || { cat "$GK_LOG" >&2; return 1; }
}

# start_notify: a fake systemd notify socket; its datagrams go to $NOTIFIED, one per line.
start_notify() {
  NOTIFIED="$BATS_TEST_TMPDIR/notified"
  export NOTIFY_SOCKET="$BATS_TEST_TMPDIR/notify.sock"
  : >"$NOTIFIED"
  python3 "$REPO_ROOT/integration/notify-listener.py" "$NOTIFY_SOCKET" "$NOTIFIED" &
  PIDS+=($!)
  eventually 50 '[ -S "$NOTIFY_SOCKET" ]'
}

# line_of PATTERN: the number of the first line of $NOTIFIED matching PATTERN (empty if none).
line_of() {
  grep -n -m1 -- "$1" "$NOTIFIED" | cut -d: -f1
}

# wait_exit PID: waits (bounded) for PID, a child of this shell, to exit; sets EXIT_STATUS.
# (Not in a subshell: only the parent shell can collect a child's status.)
wait_exit() {
  EXIT_STATUS=0
  eventually 100 '! kill -0 '"$1"' 2>/dev/null'
  wait "$1" || EXIT_STATUS=$?
}

@test "notify: READY=1 with a STATUS once serving, STOPPING=1 on SIGTERM, exit 0" {
  start_notify
  start_gk gatekeeper
  eventually 50 'grep -q "READY=1" "$NOTIFIED"'
  grep "READY=1" "$NOTIFIED" | grep -q "STATUS=serving on http-public=127.0.0.1:$GK_PORT"
  [ "$(http_code "$GK_URL/echo/")" = 200 ]
  ! grep -q "STOPPING=1" "$NOTIFIED" || false
  kill -TERM "$GK_PID"
  wait_exit "$GK_PID"
  [ "$EXIT_STATUS" -eq 0 ]
  grep -q "STOPPING=1" "$NOTIFIED"
  (( $(line_of STOPPING=1) > $(line_of READY=1) ))
}

@test "notify: SIGHUP sends RELOADING=1 with MONOTONIC_USEC, then READY=1" {
  start_notify
  start_gk gatekeeper
  eventually 50 'grep -q "READY=1" "$NOTIFIED"'
  ! grep -q "RELOADING=1" "$NOTIFIED" || false
  kill -HUP "$GK_PID"
  eventually 50 '[ "$(grep -c "READY=1" "$NOTIFIED")" -ge 2 ]'
  reloading=$(line_of RELOADING=1)
  [ -n "$reloading" ]
  sed -n "${reloading}p" "$NOTIFIED" | grep -Eq "MONOTONIC_USEC=[0-9]+"
  ready_again=$(grep -n "READY=1" "$NOTIFIED" | sed -n 2p | cut -d: -f1)
  (( ready_again > reloading ))
  [ "$(http_code "$GK_URL/echo/")" = 200 ]
}

@test "notify: WATCHDOG=1 pings at half WATCHDOG_USEC when WATCHDOG_PID is gatekeeper" {
  start_notify
  export WATCHDOG_USEC=200000
  # exec keeps the pid, so WATCHDOG_PID=$$ names gatekeeper.
  start_gk bash -c 'export WATCHDOG_PID=$$; exec "$@"' watchdog gatekeeper
  eventually 50 '[ "$(grep -c "^WATCHDOG=1" "$NOTIFIED")" -ge 3 ]'
  gk_log | grep -q "systemd watchdog enabled"
}

@test "notify: no WATCHDOG=1 when WATCHDOG_PID names another process" {
  start_notify
  export WATCHDOG_USEC=100000 WATCHDOG_PID=1
  start_gk gatekeeper
  eventually 50 'grep -q "READY=1" "$NOTIFIED"'
  # 0.5 s is ten watchdog half-periods: pings would have come.
  sleep 0.5
  ! grep -q "WATCHDOG=1" "$NOTIFIED" || false
}

@test "plugins do not inherit NOTIFY_SOCKET, WATCHDOG_* or LISTEN_*" {
  start_notify
  export WATCHDOG_USEC=100000 WATCHDOG_PID=1 LISTEN_FDNAMES=unused
  start_gk gatekeeper
  pid=$(plugin_pid static-upstreams)
  environ=$(tr '\0' '\n' <"/proc/$pid/environ")
  grep -q "^GATEKEEPER_PLUGIN_NAME=static-upstreams$" <<<"$environ"
  ! grep -qE "^(NOTIFY_SOCKET|WATCHDOG_USEC|WATCHDOG_PID|LISTEN_FDNAMES)=" <<<"$environ" || false
}

@test "socket activation: the listener named in LISTEN_FDNAMES serves the passed socket" {
  configured=$(free_port)
  write_config "http-public=127.0.0.1:$configured"
  start_gk python3 "$REPO_ROOT/integration/socket-activate.py" "$GK_PORT" http-public gatekeeper
  [ "$(http_code "$GK_URL/echo/")" = 200 ]
  # The configured address was not bound.
  [ "$(http_code "http://127.0.0.1:$configured/echo/")" = 000 ]
  gk_log | grep -q "serving a socket passed by systemd.*listener=http-public\|listener=http-public.*serving a socket passed by systemd"
}

@test "socket activation: no plugin inherits the passed listening socket" {
  start_gk python3 "$REPO_ROOT/integration/socket-activate.py" "$GK_PORT" http-public gatekeeper
  [ "$(http_code "$GK_URL/echo/")" = 200 ]
  # ss names each process holding the socket: gatekeeper only, not static-upstreams (its
  # process name is cut to 15 characters: static-upstream).
  holders=$(ss -ltnpH "sport = :$GK_PORT")
  echo "$holders"
  grep -q "pid=$GK_PID," <<<"$holders"
  [ "$(grep -o "pid=" <<<"$holders" | wc -l)" -eq 1 ]
  ! grep -q "static-upstream" <<<"$holders" || false
}

@test "socket activation: an unnamed socket goes to the first listener" {
  other=$(free_port)
  configured=$(free_port)
  write_config "http-public=127.0.0.1:$configured"
  sed -i "s|^listen = .*|listen = [\"http-public=127.0.0.1:$configured\", \"second=127.0.0.1:$other\"]|" "$CONFIG"
  start_gk python3 "$REPO_ROOT/integration/socket-activate.py" "$GK_PORT" unknown gatekeeper
  [ "$(http_code "$GK_URL/echo/")" = 200 ]
  [ "$(http_code "http://127.0.0.1:$configured/echo/")" = 000 ]
  # The second listener binds its own address (the `slow` upstream serves every listener).
  [ "$(http_code "http://127.0.0.1:$other/slow/")" = 200 ]
}

@test "socket activation with systemd-socket-activate" {
  command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate is not installed"
  configured=$(free_port)
  write_config "http-public=127.0.0.1:$configured"
  GK_LOG="$BATS_TEST_TMPDIR/gatekeeper.log"
  systemd-socket-activate -l "127.0.0.1:$GK_PORT" --fdname=http-public \
    gatekeeper --config "$CONFIG" --socket-dir "$BATS_TEST_TMPDIR" >"$GK_LOG" 2>&1 &
  GK_PID=$!
  PIDS+=("$GK_PID")
  eventually 50 'ss -ltn | grep -q "127.0.0.1:$GK_PORT "'
  # The first connection starts gatekeeper; it waits in the backlog until gatekeeper serves.
  [ "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$GK_URL/echo/")" = 200 ]
  [ "$(http_code "http://127.0.0.1:$configured/echo/")" = 000 ]
  gk_log | grep -q "serving a socket passed by systemd"
}

@test "drain: SIGTERM lets an in-flight request finish, refuses new connections, exits 0" {
  start_notify
  start_gk gatekeeper
  curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$GK_URL/echo/slow?ms=1500" \
    >"$BATS_TEST_TMPDIR/slow.code" &
  slow_pid=$!
  # The request is in flight once the backend holds it (well within its 1.5 s).
  sleep 0.4
  kill -TERM "$GK_PID"
  eventually 50 'gk_log | grep -q "no longer accepting connections"'
  # New connections are refused while the slow request is still being served.
  [ "$(http_code "$GK_URL/echo/")" = 000 ]
  kill -0 "$GK_PID"
  wait "$slow_pid"
  [ "$(cat "$BATS_TEST_TMPDIR/slow.code")" = 200 ]
  wait_exit "$GK_PID"
  [ "$EXIT_STATUS" -eq 0 ]
  grep -q "STOPPING=1" "$NOTIFIED"
  gk_log | grep -q "gatekeeper stopped"
}

@test "install.sh --help prints its usage, not its code" {
  run "$REPO_ROOT/scripts/install.sh" --help
  [ "$status" -eq 0 ]
  [[ $output == *"Installs gatekeeper"* ]]
  [[ $output == *"DESTDIR"* ]]
  ! grep -qE '^(set |cd |#)' <<<"$output" || false
}

@test "install.sh with DESTDIR stages binaries, units and config" {
  dest="$BATS_TEST_TMPDIR/stage"
  run env DESTDIR="$dest" BIN_DIR="$BIN_DIR" "$REPO_ROOT/scripts/install.sh" --no-build
  echo "$output"
  [ "$status" -eq 0 ]
  for bin in gatekeeper static-upstreams request-id simple-loadbalancer dogstatsd-metrics rate-limit etcd-upstreams; do
    [ -x "$dest/usr/local/bin/$bin" ]
  done
  # Installed binaries carry no debug info (when binutils' strip is there): smaller than built.
  if command -v strip >/dev/null; then
    [ "$(stat -c %s "$dest/usr/local/bin/gatekeeper")" -lt "$(stat -c %s "$BIN_DIR/gatekeeper")" ]
  fi
  [ -f "$dest/etc/systemd/system/gatekeeper.service" ]
  [ -f "$dest/etc/systemd/system/gatekeeper.socket" ]
  grep -q '^ExecStart=/usr/local/bin/gatekeeper --config /etc/gatekeeper/gatekeeper.toml' \
    "$dest/etc/systemd/system/gatekeeper.service"
  if [ -f "$REPO_ROOT/scripts/gatekeeper.example.toml" ]; then
    # The example, with its upstreams file named by the installed absolute path.
    diff <(sed 's|"scripts/upstreams.example.yml"|"/etc/gatekeeper/upstreams.yml"|' \
      "$REPO_ROOT/scripts/gatekeeper.example.toml") "$dest/etc/gatekeeper/gatekeeper.toml"
  else
    [[ $output == *"no scripts/gatekeeper.example.toml"* ]]
  fi
  [[ $output == *"no daemon-reload"* ]]
  # An existing config is kept; PREFIX moves the binaries and the unit's paths.
  echo 'mine = 1' >"$dest/etc/gatekeeper/gatekeeper.toml"
  run env DESTDIR="$dest" PREFIX=/opt/gk BIN_DIR="$BIN_DIR" "$REPO_ROOT/scripts/install.sh" --no-build
  [ "$status" -eq 0 ]
  [ "$(cat "$dest/etc/gatekeeper/gatekeeper.toml")" = "mine = 1" ]
  [ -x "$dest/opt/gk/bin/gatekeeper" ]
  grep -q '^ExecStart=/opt/gk/bin/gatekeeper ' "$dest/etc/systemd/system/gatekeeper.service"
}

@test "the unit files pass systemd-analyze verify" {
  command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed"
  dest="$BATS_TEST_TMPDIR/stage"
  run env DESTDIR="$dest" BIN_DIR="$BIN_DIR" "$REPO_ROOT/scripts/install.sh" --no-build
  [ "$status" -eq 0 ]
  units="$dest/etc/systemd/system"
  # verify checks that ExecStart's binary exists: point it at the staged one.
  sed -i "s|/usr/local/bin/|$dest/usr/local/bin/|" "$units/gatekeeper.service"
  run systemd-analyze verify "$units/gatekeeper.service" "$units/gatekeeper.socket"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output != *gatekeeper.service* ]]
  [[ $output != *gatekeeper.socket* ]]
}
