#!/usr/bin/env bats
# Operations, config and logs: `gatekeeper check` on good and bad configs (every error with its
# key), the example config, --log-format json and journald, and the access log in both formats.

load helpers

bats_require_minimum_version 1.5.0

setup() {
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
}

teardown() {
  stop_all
}

# check_config TEXT [ARGS...]: writes TEXT to a config file and runs `gatekeeper check` on it.
check_config() {
  CONFIG="$BATS_TEST_TMPDIR/gatekeeper.toml"
  printf '%s\n' "$1" >"$CONFIG"
  shift
  run --separate-stderr gatekeeper check --config "$CONFIG" "$@"
}

@test "check: the example config in scripts/ is valid" {
  cd "$REPO_ROOT"
  run gatekeeper check --config scripts/gatekeeper.example.toml
  [ "$status" -eq 0 ]
  [ "$output" = "scripts/gatekeeper.example.toml: ok" ]
}

@test "check: a good config is ok, and --json prints the effective settings" {
  start_backend echo-backend
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  check_config "listen = [\"127.0.0.1:$(free_port)\"]
access_log = \"json\"
$(static_upstreams_table)"
  [ "$status" -eq 0 ]
  [ "$output" = "$CONFIG: ok" ]
  run --separate-stderr gatekeeper check --config "$CONFIG" --json
  [ "$status" -eq 0 ]
  [ "$(jq -r .access_log <<<"$output")" = json ]
  [ "$(jq -r '.plugins[0].name' <<<"$output")" = static ]
}

@test "check: every error is reported with its key, and the exit status is 1" {
  check_config '
listen = ["127.0.0.1:8000", "not-an-address"]
bogus = 1
default_timeout = "soon"
log_format = "xml"

[[plugin]]
type = "modifier"
command = "request-id"

[[plugin]]
type = "modifier"
command = "no-such-plugin-anywhere"

[[tls]]
listener = "http-public"
cert = "/nonexistent/fullchain.pem"
key = "/nonexistent/key.pem"'
  [ "$status" -eq 1 ]
  echo "$stderr"
  grep -qx "$CONFIG: bogus: unknown key" <<<"$stderr"
  grep -q "^$CONFIG: listen: \`not-an-address\` is not an IP:PORT address" <<<"$stderr"
  grep -q "^$CONFIG: default_timeout: \`soon\` is not a duration" <<<"$stderr"
  grep -q "^$CONFIG: log_format: \`xml\` must be" <<<"$stderr"
  grep -q "^$CONFIG: plugin\[1\].command: plugin command \`no-such-plugin-anywhere\` not found" <<<"$stderr"
  grep -qx "$CONFIG: tls\[0\].cert: file \`/nonexistent/fullchain.pem\` not found" <<<"$stderr"
  grep -qx "$CONFIG: tls\[0\].key: file \`/nonexistent/key.pem\` not found" <<<"$stderr"
  # One line per error, nothing about the good plugin.
  [ "$(wc -l <<<"$stderr")" -eq 7 ]
  [ "$(grep -c 'plugin\[0\]' <<<"$stderr")" -eq 0 ]
  [ -z "$output" ]
}

@test "check: a TOML syntax error names its line" {
  check_config 'listen = ["127.0.0.1:8000"]
via = '
  [ "$status" -eq 1 ]
  grep -q "^$CONFIG: line 2: " <<<"$stderr"
}

@test "check: a [[tls]] table must name a listener of listen" {
  : >"$BATS_TEST_TMPDIR/unused" # the files exist; the listener is what is wrong
  check_config "listen = [\"plain=127.0.0.1:8000\"]
[[tls]]
listener = \"https\"
cert = \"$BATS_TEST_TMPDIR/unused\"
key = \"$BATS_TEST_TMPDIR/unused\""
  [ "$status" -eq 1 ]
  grep -q "^$CONFIG: tls\[0\].listener: \`https\` is not a listener" <<<"$stderr"
}

@test "check: without a config file it checks the flags like --check" {
  run --separate-stderr gatekeeper check --listen 127.0.0.1:8123 --log-format json
  [ "$status" -eq 0 ]
  [ "$(jq -r '.listeners[0].addr' <<<"$output")" = 127.0.0.1:8123 ]
  [ "$(jq -r .log_format <<<"$output")" = json ]
  run --separate-stderr gatekeeper check --listen nope
  [ "$status" -eq 1 ]
  grep -q -- '--listen: `nope` is not an IP:PORT address' <<<"$stderr"
  run gatekeeper check --help
  [ "$status" -eq 0 ]
  grep -q -- '--json' <<<"$output"
  # --check itself is unchanged.
  run gatekeeper --check --listen 127.0.0.1:8124
  [ "$status" -eq 0 ]
  [ "$(jq -r '.listeners[0].addr' <<<"$output")" = 127.0.0.1:8124 ]
}

@test "--log-format json: every log line is a JSON object" {
  start_backend echo-backend
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  start_gatekeeper --log-format json --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
  [ "$(http_code "$GK_URL/echo/x")" = 200 ]
  stop_gatekeeper
  jq -e . "$GK_LOG" >/dev/null
  [ "$(jq -r 'select(.fields.message == "gatekeeper ready") | .level' "$GK_LOG")" = INFO ]
  jq -e -s 'map(select(.fields.message == "gatekeeper stopped")) | length == 1' "$GK_LOG" >/dev/null
}

@test "--log-format journald: syslog priority prefixes and no timestamps" {
  start_gatekeeper --log-format journald
  stop_gatekeeper
  grep -qx '<6>gatekeeper::run: gatekeeper ready .*' "$GK_LOG"
  # Every line starts with a priority; none carries a timestamp of its own.
  [ "$(grep -cv '^<[3-7]>' "$GK_LOG")" -eq 0 ]
  [ "$(grep -cE '[0-9]{4}-[0-9]{2}-[0-9]{2}T' "$GK_LOG")" -eq 0 ]
}

@test "journald is the default when stderr is systemd's journal stream (JOURNAL_STREAM)" {
  # start_gatekeeper writes stderr to this file; JOURNAL_STREAM names it as systemd would.
  : >"$BATS_TEST_TMPDIR/gatekeeper.log"
  JOURNAL_STREAM=$(stat -c '%d:%i' "$BATS_TEST_TMPDIR/gatekeeper.log") start_gatekeeper
  grep -q '^<6>gatekeeper::run: gatekeeper ready' "$GK_LOG"
  stop_all
  # A JOURNAL_STREAM that is not stderr (inherited, stderr redirected) keeps the text format.
  JOURNAL_STREAM=1:1 start_gatekeeper
  [ "$(grep -c '^<[0-9]>' "$GK_LOG")" -eq 0 ]
  grep -q 'gatekeeper ready' "$GK_LOG"
}

@test "access log: Common Log Format to a file" {
  start_backend echo-backend
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  ACCESS="$BATS_TEST_TMPDIR/access.log"
  CONFIG="$BATS_TEST_TMPDIR/gatekeeper.toml"
  printf 'access_log = "common"\naccess_log_file = %s\n%s\n' "$(toml_string "$ACCESS")" \
    "$(static_upstreams_table)" >"$CONFIG"
  start_gatekeeper --config "$CONFIG"
  [ "$(http_code "$GK_URL/echo/users/42?page=2")" = 200 ]
  [ "$(http_code "$GK_URL/nowhere")" = 404 ]
  eventually 50 '[ "$(wc -l <"$ACCESS" 2>/dev/null)" -ge 2 ]'
  cat "$ACCESS"
  grep -Eqx '127\.0\.0\.1 - - \[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} \+0000\] "GET /echo/users/42\?page=2 HTTP/1\.1" 200 [0-9]+' "$ACCESS"
  grep -Eqx '127\.0\.0\.1 - - \[[^]]+\] "GET /nowhere HTTP/1\.1" 404 [0-9]+' "$ACCESS"
  # Nothing but access lines in the file.
  [ "$(wc -l <"$ACCESS")" -eq 2 ]
}

@test "access log: JSON lines on stdout" {
  start_backend echo-backend
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  CONFIG="$BATS_TEST_TMPDIR/gatekeeper.toml"
  printf 'access_log = "json"\nlog_format = "json"\n%s\n' "$(static_upstreams_table)" >"$CONFIG"
  start_gatekeeper --config "$CONFIG"
  [ "$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -X POST -d 'hello' "$GK_URL/echo/x?y=1")" = 200 ]
  # stdout (the access log) and stderr (the log) both go to $GK_LOG; every line is JSON.
  eventually 50 '[ -n "$(jq -c "select(.status?)" "$GK_LOG")" ]'
  line=$(jq -c 'select(.status?)' "$GK_LOG")
  echo "$line"
  [ "$(jq -r .method <<<"$line")" = POST ]
  [ "$(jq -r .path <<<"$line")" = /echo/x ]
  [ "$(jq -r .query <<<"$line")" = y=1 ]
  [ "$(jq -r .status <<<"$line")" = 200 ]
  [ "$(jq -r .bytes_in <<<"$line")" = 5 ]
  [ "$(jq -r .client <<<"$line")" = 127.0.0.1 ]
  [ "$(jq -r .upstream <<<"$line")" = echo ]
  [ "$(jq -r .version <<<"$line")" = HTTP/1.1 ]
  jq -e '.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")' <<<"$line" >/dev/null
  jq -e '.duration_us > 0' <<<"$line" >/dev/null
}

@test "check: the supervision keys of a [[plugin]] table, bad values named by key" {
  check_config '
[[plugin]]
type = "modifier"
command = "request-id"
standby = 65
healthy_after = "soon"
max_memory = "lots"

[[plugin]]
type = "modifier"
command = "request-id"
recycle_after = "sometime"

[[plugin]]
type = "modifier"
command = "request-id"
start_attempts = 0'
  [ "$status" -eq 1 ]
  echo "$stderr"
  grep -q "^$CONFIG: plugin\[0\]\.\(standby\|healthy_after\|max_memory\): " <<<"$stderr"
  grep -q "^$CONFIG: plugin\[1\].recycle_after: \`sometime\` is neither a number of calls nor a duration" <<<"$stderr"
  grep -qx "$CONFIG: plugin\[2\].start_attempts: must be at least 1" <<<"$stderr"
  check_config '
[[plugin]]
type = "modifier"
command = "request-id"
standby = 1
max_memory = "64MiB"
recycle_after = "1h"
restart_after_errors = 2' --json
  [ "$status" -eq 0 ]
  [ "$(jq -c '.plugins[0] | [.standby, .max_memory, .recycle_after, .restart_after_errors, .start_attempts, .healthy_after]' <<<"$output")" = '[1,67108864,"1h",2,3,"500ms"]' ]
}

@test "--TYPE-instances and --TYPE-standby set those settings of flag plugins, documented in --help" {
  run --separate-stderr gatekeeper --check --modifier-plugin request-id --modifier-instances 2 --modifier-standby 1
  [ "$status" -eq 0 ]
  [ "$(jq -c '.plugins[0] | [.instances, .standby, .config]' <<<"$output")" = '[2,1,{}]' ]
  run --separate-stderr gatekeeper --check --modifier-plugin request-id --modifier-instances 0
  [ "$status" -eq 2 ]
  grep -q -- '--modifier-instances: 0 must be from 1 to 64' <<<"$stderr"
  run gatekeeper --help
  grep -q -- '--<type>-instances N' <<<"$output"
  grep -q -- '--<type>-standby N' <<<"$output"
}

@test "--help names the check and ctl commands" {
  run gatekeeper --help
  [ "$status" -eq 0 ]
  grep -q 'gatekeeper check' <<<"$output"
  grep -q 'gatekeeper ctl' <<<"$output"
}

@test "a plugin that cannot start under journald: the fatal error has the error priority" {
  broken="$BATS_TEST_TMPDIR/broken"
  printf '#!/usr/bin/env bash\necho "broken: no config" >&2\nexit 3\n' >"$broken"
  chmod +x "$broken"
  run --separate-stderr timeout 30 gatekeeper --listen "127.0.0.1:$(free_port)" \
    --socket-dir "$BATS_TEST_TMPDIR" --log-format journald --modifier-plugin "$broken"
  echo "$stderr"
  [ "$status" -ne 0 ]
  [ "$status" -ne 124 ]
  grep -q '^<3>gatekeeper: .*broken' <<<"$stderr"
  # Every line carries a priority, the fatal error's lines included.
  [ "$(grep -cv '^<[0-7]>' <<<"$stderr")" -eq 0 ]
}
