#!/usr/bin/env bats
# gatekeeper's log: a plugin's log lines keep their level (a text line's leading level word, or a
# JSON line's level field; issue 13, item 4) with the message alone (issue 17), so `--log warn`
# keeps a plugin's errors and warnings, and an empty RUST_LOG= does not silence the log.
# Runs gatekeeper with a plugin that writes lines on stderr and exits; every process is stopped.

load helpers

setup() {
  start_backend echo-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
}

teardown() {
  stop_all
}

# write_noisy_plugin: $NOISY, a plugin that writes four log lines on stderr and exits 3.
write_noisy_plugin() {
  NOISY="$BATS_TEST_TMPDIR/noisy"
  cat >"$NOISY" <<'SH'
#!/usr/bin/env bash
echo 'ERROR noisy::watch: cannot parse upstreams.yml line 3' >&2
echo '{"level":"warn","msg":"a json warning"}' >&2
echo 'WARNING:root:a python warning' >&2
echo 'just a line' >&2
exit 3
SH
  chmod +x "$NOISY"
}

@test "an empty RUST_LOG= does not silence gatekeeper's log" {
  write_noisy_plugin
  GK_PORT=$(free_port)
  RUST_LOG= run timeout 30 gatekeeper --listen "127.0.0.1:$GK_PORT" --socket-dir "$BATS_TEST_TMPDIR" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" --modifier-plugin "$NOISY"
  [ "$status" -ne 0 ]
  # The plugin host's log line of the plugin's output (the fatal error alone, printed without
  # the log, would not carry the log target).
  grep -q 'gatekeeper_plugin_host.*just a line' <<<"$output"
}

@test "a plugin's ERROR and WARN lines are logged at error and warn, others at info" {
  write_noisy_plugin
  GK_PORT=$(free_port)
  run timeout 30 gatekeeper --listen "127.0.0.1:$GK_PORT" --socket-dir "$BATS_TEST_TMPDIR" \
    --log-format json --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --modifier-plugin "$NOISY"
  [ "$status" -ne 0 ]
  [ "$status" -ne 124 ]
  logs=$(grep '^{' <<<"$output")
  level_of() {
    jq -r --arg text "$1" 'select(.fields.message? // "" | contains($text)) | .level' <<<"$logs" | sort -u
  }
  echo "$logs" | grep noisy >&2 || true
  [ "$(level_of 'cannot parse upstreams.yml line 3')" = ERROR ]
  [ "$(level_of 'a json warning')" = WARN ]
  [ "$(level_of 'a python warning')" = WARN ]
  [ "$(level_of 'just a line')" = INFO ]
}

# write_levelled_plugin: $LEVELLED, a plugin that writes a text ERROR line, a JSON warn line
# with a field, and a plain line on stderr, then exits 3.
write_levelled_plugin() {
  LEVELLED="$BATS_TEST_TMPDIR/levelled"
  cat >"$LEVELLED" <<'SH'
#!/usr/bin/env bash
echo 'ERROR something broke in the plugin' >&2
echo '{"level":"warn","msg":"x marks the spot","upstream":"api"}' >&2
echo 'an unlevelled plugin line' >&2
exit 3
SH
  chmod +x "$LEVELLED"
}

@test "text log: a plugin's ERROR and JSON warn lines show at their level, message alone; --log warn drops its INFO lines" {
  write_levelled_plugin
  GK_PORT=$(free_port)
  run timeout 30 gatekeeper --listen "127.0.0.1:$GK_PORT" --socket-dir "$BATS_TEST_TMPDIR" \
    --log-format text --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --modifier-plugin "$LEVELLED"
  [ "$status" -ne 0 ]
  [ "$status" -ne 124 ]
  echo "$output" | grep gatekeeper_plugin_host >&2 || true
  # The level is gatekeeper's level column; the message is the rest of the plugin's line (the
  # JSON line's msg, then its other fields).
  grep -Eq ' ERROR gatekeeper_plugin_host[^ ]*: something broke in the plugin' <<<"$output"
  grep -Eq ' WARN gatekeeper_plugin_host[^ ]*: x marks the spot upstream=api' <<<"$output"
  grep -Eq ' INFO gatekeeper_plugin_host[^ ]*: an unlevelled plugin line' <<<"$output"

  run timeout 30 gatekeeper --listen "127.0.0.1:$GK_PORT" --socket-dir "$BATS_TEST_TMPDIR" \
    --log-format text --log warn --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --modifier-plugin "$LEVELLED"
  [ "$status" -ne 0 ]
  [ "$status" -ne 124 ]
  grep -Eq ' ERROR gatekeeper_plugin_host[^ ]*: something broke in the plugin' <<<"$output"
  grep -Eq ' WARN gatekeeper_plugin_host[^ ]*: x marks the spot upstream=api' <<<"$output"
  [ "$(grep -Ec 'gatekeeper_plugin_host[^ ]*: an unlevelled plugin line' <<<"$output")" -eq 0 ]
}
