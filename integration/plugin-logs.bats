#!/usr/bin/env bats
# A plugin's log lines keep their level in gatekeeper's log: a text line's leading level word,
# or a JSON line's level field (issue 13, item 4). Runs gatekeeper with a plugin that writes
# such lines on stderr and exits; every process is stopped.

load helpers

setup() {
  start_backend echo-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
}

teardown() {
  stop_all
}

@test "a plugin's ERROR and WARN lines are logged at error and warn, others at info" {
  noisy="$BATS_TEST_TMPDIR/noisy"
  cat >"$noisy" <<'SH'
#!/usr/bin/env bash
echo 'ERROR noisy::watch: cannot parse upstreams.yml line 3' >&2
echo '{"level":"warn","msg":"a json warning"}' >&2
echo 'WARNING:root:a python warning' >&2
echo 'just a line' >&2
exit 3
SH
  chmod +x "$noisy"
  GK_PORT=$(free_port)
  run timeout 30 gatekeeper --listen "127.0.0.1:$GK_PORT" --socket-dir "$BATS_TEST_TMPDIR" \
    --log-format json --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --modifier-plugin "$noisy"
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
