#!/usr/bin/env bats
# Operator mistakes that must not take traffic down (issue 13): `gatekeeper check` finds what
# startup would fail on, each problem once; a fresh install starts with its own example config;
# the admin socket's default directory is private and `ctl` finds it under the unit's layout;
# config errors exit 2 (the unit's RestartPreventExitStatus); plugins inherit no descriptor.

load helpers

setup() {
  start_backend safety-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  CONFIG="$BATS_TEST_TMPDIR/gk.toml"
}

teardown() {
  stop_all
}

# check_config TOML: writes TOML to $CONFIG and runs `gatekeeper check --config $CONFIG`.
check_config() {
  printf '%s\n' "$1" >"$CONFIG"
  run gatekeeper check --config "$CONFIG"
  echo "$output"
}

@test "check: two listeners with one name are refused before anything starts" {
  check_config 'listen = ["a=127.0.0.1:18001", "a=127.0.0.1:18002"]'
  [ "$status" -eq 1 ]
  [ "$output" = "$CONFIG: listen: the name \`a\` is given to two listeners (names must be unique)" ]
  # Startup says the same, with the config exit status 2, and starts no plugin.
  cat >>"$CONFIG" <<TOML
[[plugin]]
type = "upstream"
command = "static-upstreams"
config = { file = "$UPSTREAMS" }
TOML
  run gatekeeper --config "$CONFIG" --socket-dir "$BATS_TEST_TMPDIR"
  [ "$status" -eq 2 ]
  [[ $output == *"the name \`a\` is given to two listeners"* ]]
  [[ $output != *"static-upstreams"* ]]
}

@test "check: listeners, metrics_listen and overlapping addresses clash" {
  check_config 'listen = ["a=127.0.0.1:18001"]
metrics_listen = "127.0.0.1:18001"'
  [ "$status" -eq 1 ]
  [[ $output == *"metrics_listen: \`127.0.0.1:18001\` clashes with the listener \`a=127.0.0.1:18001\`"* ]]
  check_config 'listen = ["a=127.0.0.1:18001", "b=0.0.0.0:18001"]'
  [ "$status" -eq 1 ]
  [[ $output == *"listen: \`a=127.0.0.1:18001\` and \`b=0.0.0.0:18001\` cannot both listen"* ]]
  check_config 'listen = ["a=127.0.0.1:18001", "b=127.0.0.2:18001", "c=[::1]:18001"]'
  [ "$status" -eq 0 ]
}

@test "check: a bad listen is reported once, with no follow-on errors about TLS listeners" {
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$BATS_TEST_TMPDIR/k.pem" \
    -out "$BATS_TEST_TMPDIR/c.pem" -days 1 -subj /CN=localhost 2>/dev/null
  check_config "listen = [\"a=127.0.0.1:99999\", \"https=127.0.0.1:18443\"]
[[tls]]
listener = \"https\"
cert = \"$BATS_TEST_TMPDIR/c.pem\"
key = \"$BATS_TEST_TMPDIR/k.pem\""
  [ "$status" -eq 1 ]
  [ "$(wc -l <<<"$output")" -eq 1 ]
  [[ $output == *"listen: \`127.0.0.1:99999\` is not an IP:PORT address"* ]]
}

@test "check: unreadable key files, unwritable access log and admin socket directories are reported" {
  command -v setpriv >/dev/null || skip "setpriv (util-linux) is not installed"
  setpriv --reuid=65534 --regid=65534 --clear-groups "$(command -v gatekeeper)" --version \
    >/dev/null 2>&1 || skip "the user nobody cannot run $(command -v gatekeeper)"
  # A directory the user nobody can reach (bats' own temp dirs are private to root).
  dir=$(mktemp -d /tmp/gk-safety.XXXXXX)
  chmod 0755 "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/k.pem" \
    -out "$dir/c.pem" -days 1 -subj /CN=localhost 2>/dev/null
  chmod 0644 "$dir/c.pem"
  chmod 0600 "$dir/k.pem"
  mkdir -m 0755 "$dir/logs"
  printf '%s\n' "listen = [\"https=127.0.0.1:18443\"]
access_log = \"json\"
access_log_file = \"$dir/logs/access.log\"
admin_socket = \"$dir/logs/run/admin.sock\"
[[tls]]
listener = \"https\"
cert = \"$dir/c.pem\"
key = \"$dir/k.pem\"" >"$dir/gk.toml"
  chmod 0644 "$dir/gk.toml"
  # As root everything is readable; as nobody (what DynamicUser is like) neither is.
  run gatekeeper check --config "$dir/gk.toml"
  root_status=$status
  run setpriv --reuid=65534 --regid=65534 --clear-groups "$(command -v gatekeeper)" check --config "$dir/gk.toml"
  rm -rf "$dir"
  echo "$output"
  [ "$root_status" -eq 0 ]
  [ "$status" -eq 1 ]
  [[ $output == *"tls[0].key: cannot read \`$dir/k.pem\`: Permission denied"* ]]
  [[ $output == *"access_log_file: cannot write to the directory \`$dir/logs\`"* ]]
  [[ $output == *"admin_socket: cannot make \`$dir/logs/run/admin.sock\`: the directory \`$dir/logs\` is not writable"* ]]
  [ "$(wc -l <<<"$output")" -eq 3 ]
}

@test "check: a plugin command that is not executable is named, with what to do" {
  check_config "[[plugin]]
type = \"upstream\"
command = \"$UPSTREAMS\""
  [ "$status" -eq 1 ]
  [[ $output == *"plugin[0].command: plugin command \`$UPSTREAMS\` is not executable"* ]]
}

@test "a fresh install starts with its own example config, from any directory" {
  root="$BATS_TEST_TMPDIR/root"
  run env PREFIX="$root/usr" SYSCONFDIR="$root/etc" UNITDIR="$root/units" BIN_DIR="$BIN_DIR" \
    "$REPO_ROOT/scripts/install.sh" --no-build
  echo "$output"
  [ "$status" -eq 0 ]
  config="$root/etc/gatekeeper/gatekeeper.toml"
  [ -f "$root/etc/gatekeeper/upstreams.yml" ]
  grep -q "file = \"$root/etc/gatekeeper/upstreams.yml\"" "$config"
  cd /
  run "$root/usr/bin/gatekeeper" check --config "$config"
  echo "$output"
  [ "$status" -eq 0 ]
  # The example listens on 127.0.0.1:8000; a flag moves it to a free port for the test.
  GK_PORT=$(free_port)
  GK_LOG="$BATS_TEST_TMPDIR/gatekeeper.log"
  "$root/usr/bin/gatekeeper" --config "$config" --listen "http-public=127.0.0.1:$GK_PORT" \
    --socket-dir "$BATS_TEST_TMPDIR" >"$GK_LOG" 2>&1 &
  GK_PID=$!
  PIDS+=("$GK_PID")
  eventually 100 'grep -q "gatekeeper ready" "$GK_LOG" || ! kill -0 $GK_PID'
  cat "$GK_LOG"
  grep -q "gatekeeper ready" "$GK_LOG"
  # The example's `echo` upstream is routed (its backend, 127.0.0.1:9001, is not running: 502,
  # not 404), and request-id runs.
  run curl -s -D - -o /dev/null "http://127.0.0.1:$GK_PORT/echo/"
  [[ $output == *" 502"* ]]
  [[ ${output,,} == *"x-request-id:"* ]]
}

@test "a staged install (DESTDIR) names its upstreams file by the installed absolute path" {
  dest="$BATS_TEST_TMPDIR/stage"
  run env DESTDIR="$dest" BIN_DIR="$BIN_DIR" "$REPO_ROOT/scripts/install.sh" --no-build
  [ "$status" -eq 0 ]
  grep -q 'file = "/etc/gatekeeper/upstreams.yml"' "$dest/etc/gatekeeper/gatekeeper.toml"
  cmp "$REPO_ROOT/scripts/upstreams.example.yml" "$dest/etc/gatekeeper/upstreams.yml"
  [ -f "$dest/usr/local/share/doc/gatekeeper/static-user.conf" ]
  unit="$dest/etc/systemd/system/gatekeeper.service"
  # The unit checks the config before start and before reload, and stops on a config error.
  grep -q '^ExecStartPre=/usr/local/bin/gatekeeper check --config /etc/gatekeeper/gatekeeper.toml' "$unit"
  [ "$(grep -c '^ExecReload=' "$unit")" -eq 2 ]
  grep '^ExecReload=' "$unit" | head -1 | grep -q 'gatekeeper check --config'
  grep -q '^RestartPreventExitStatus=2$' "$unit"
  grep -q '^LogsDirectory=gatekeeper$' "$unit"
}

@test "a plugin that refuses its config stops startup with exit status 2" {
  cat >"$CONFIG" <<TOML
[[plugin]]
type = "upstream"
command = "static-upstreams"
config = { file = "$BATS_TEST_TMPDIR/missing.yml" }
TOML
  run gatekeeper --config "$CONFIG" --listen "127.0.0.1:$(free_port)" --socket-dir "$BATS_TEST_TMPDIR"
  [ "$status" -eq 2 ]
  [[ $output == *"missing.yml"* ]]
}

@test "the default admin socket is in a private 0700 directory, refused when not private" {
  xdg="$BATS_TEST_TMPDIR/xdg"
  mkdir -m 0700 "$xdg"
  printf '%s\n' "$(static_upstreams_table)" >"$CONFIG"
  GK_PORT=$(free_port)
  GK_LOG="$BATS_TEST_TMPDIR/gatekeeper.log"
  # No --socket-dir: the default path.
  env -u RUNTIME_DIRECTORY XDG_RUNTIME_DIR="$xdg" gatekeeper --config "$CONFIG" \
    --listen "127.0.0.1:$GK_PORT" >"$GK_LOG" 2>&1 &
  GK_PID=$!
  PIDS+=("$GK_PID")
  eventually 100 'grep -q "gatekeeper ready" "$GK_LOG"'
  [ "$(stat -c %a "$xdg/gatekeeper")" = 700 ]
  [ "$(stat -c %a "$xdg/gatekeeper/admin.sock")" = 600 ]
  run env -u RUNTIME_DIRECTORY XDG_RUNTIME_DIR="$xdg" gatekeeper ctl --config "$CONFIG" status
  [ "$status" -eq 0 ]
  [ "$(jq -r .ready <<<"$output")" = true ]
  stop_all
  # A directory others can use is not taken: a warning, and no socket there.
  chmod 0777 "$xdg/gatekeeper"
  env -u RUNTIME_DIRECTORY XDG_RUNTIME_DIR="$xdg" gatekeeper --config "$CONFIG" \
    --listen "127.0.0.1:$GK_PORT" >"$GK_LOG" 2>&1 &
  GK_PID=$!
  PIDS+=("$GK_PID")
  eventually 100 'grep -q "gatekeeper ready" "$GK_LOG"'
  grep -q "is not a private directory of this user" "$GK_LOG"
  [ ! -e "$xdg/gatekeeper/admin.sock" ]
}

@test "admin_socket_group and admin_socket_mode give a group the socket" {
  group=$(getent group nogroup | cut -d: -f3)
  [ -n "$group" ] || skip "no nogroup group"
  cat >"$CONFIG" <<TOML
admin_socket = "$BATS_TEST_TMPDIR/run/admin.sock"
admin_socket_mode = "0660"
admin_socket_group = "nogroup"
$(static_upstreams_table)
TOML
  start_gatekeeper --config "$CONFIG"
  [ "$(stat -c '%a %g' "$BATS_TEST_TMPDIR/run/admin.sock")" = "660 $group" ]
  # The directory gatekeeper made for it: the group may pass through, nothing more.
  [ "$(stat -c '%a %g' "$BATS_TEST_TMPDIR/run")" = "710 $group" ]
  [ "$(gatekeeper ctl --config "$CONFIG" status | jq -r .ready)" = true ]
  printf 'admin_socket_mode = "0660"\n' >"$BATS_TEST_TMPDIR/bad.toml"
  run gatekeeper check --config "$BATS_TEST_TMPDIR/bad.toml"
  [ "$status" -eq 1 ]
  [[ $output == *"admin_socket_mode: \"0660\" needs admin_socket_group"* ]]
}

@test "ctl with only --config finds the admin socket where the unit puts it (/run/gatekeeper)" {
  unshare --mount true 2>/dev/null || skip "cannot make a mount namespace here"
  printf '%s\n' "$(static_upstreams_table)" >"$CONFIG"
  GK_PORT=$(free_port)
  # In a private mount namespace, a fresh /run: the unit's RuntimeDirectory=gatekeeper and
  # ExecStart=... --socket-dir ${RUNTIME_DIRECTORY}, without touching the host's /run.
  run unshare --mount --propagation private bash -c '
    mount -t tmpfs tmpfs /run && mkdir -m 0700 /run/gatekeeper || exit 90
    RUNTIME_DIRECTORY=/run/gatekeeper gatekeeper --config "$1" --listen "127.0.0.1:$2" \
      --socket-dir /run/gatekeeper >"$3" 2>&1 &
    pid=$!
    for ((i = 0; i < 100; i++)); do grep -qs "gatekeeper ready" "$3" && break; sleep 0.1; done
    env -u RUNTIME_DIRECTORY -u XDG_RUNTIME_DIR gatekeeper ctl --config "$1" status
    code=$?
    kill "$pid"; wait "$pid"
    exit "$code"' _ "$CONFIG" "$GK_PORT" "$BATS_TEST_TMPDIR/gatekeeper.log"
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(jq -r .ready <<<"$output")" = true ]
}

@test "plugins inherit no descriptor of gatekeeper's: no listener, log file or admin socket" {
  cat >"$CONFIG" <<TOML
metrics_listen = "127.0.0.1:$(free_port)"
access_log = "json"
access_log_file = "$BATS_TEST_TMPDIR/access.log"
admin_socket = "$BATS_TEST_TMPDIR/admin.sock"
$(static_upstreams_table)

[[plugin]]
type = "modifier"
command = "request-id"
TOML
  # Under socket activation, as systemd would start it: the passed listener too.
  GK_PORT=$(free_port)
  GK_URL="http://127.0.0.1:$GK_PORT"
  GK_LOG="$BATS_TEST_TMPDIR/gatekeeper.log"
  python3 "$REPO_ROOT/integration/socket-activate.py" "$GK_PORT" http-public gatekeeper \
    --config "$CONFIG" --listen "http-public=127.0.0.1:$(free_port)" \
    --socket-dir "$BATS_TEST_TMPDIR" >"$GK_LOG" 2>&1 &
  GK_PID=$!
  PIDS+=("$GK_PID")
  eventually 100 'grep -q "gatekeeper ready" "$GK_LOG"'
  [ "$(http_code "$GK_URL/echo/")" = 200 ]
  # Every TCP socket on the machine (listening or not), by inode.
  tcp_inodes=$(awk 'NR > 1 { print $10 }' /proc/net/tcp /proc/net/tcp6 | sort -u)
  for plugin in static request-id; do
    pid=$(plugin_pid "$plugin")
    targets=$(for fd in /proc/"$pid"/fd/*; do readlink "$fd"; done)
    echo "$plugin: $targets"
    ! grep -q "access.log\|admin.sock\|gk.toml" <<<"$targets" || false
    for inode in $(sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' <<<"$targets"); do
      ! grep -qx "$inode" <<<"$tcp_inodes" || false
    done
  done
}
