#!/usr/bin/env bats
# Failure warnings are rate-limited: a plugin that is failing or down produces at most one
# "hook failed" warning per plugin per 10 s (the first one at once), carrying the number of
# requests affected (`requests=N`), not one warning per request.

load helpers

setup() {
  start_backend echo-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT" "$(free_port)"
  MODS="$BATS_TEST_TMPDIR/modifier.jsonl"
}

teardown() {
  stop_all
}

# burst N: N requests through the modifier, every one answered 200 (fail-open).
burst() {
  local i code
  for ((i = 0; i < $1; i++)); do
    code=$(http_code "$GK_URL/echo/$i")
    [ "$code" = 200 ] || { echo "request $i: $code" >&2; return 1; }
  done
}

# warnings NAME: the "hook failed" warning lines about plugin NAME.
warnings() {
  gk_log | grep 'hook failed' | grep "plugin=$1"
}

@test "a failing fail-open modifier under a burst: one or two warnings with a count, not one per request" {
  start_with_modifier "[[plugin]]
name = \"broken\"
type = \"modifier\"
command = \"test-modifier\"
failure = \"open\"
config = { file = \"$MODS\", fail = true }"
  burst 40
  warnings broken
  lines=$(warnings broken | wc -l)
  echo "warning lines: $lines"
  [ "$lines" -ge 1 ] && [ "$lines" -le 2 ]
  warnings broken | head -n1 | grep -q 'requests=1'
  warnings broken | grep -q 'kind="\?error_answer'
  # Every request called the hook (the calls were made; only the warnings were limited).
  [ "$(count_records "$MODS" 'select(.method == "modify_request")')" -ge 40 ]
}

@test "a fail-open modifier that is down under a burst: one or two warnings with a count" {
  # The plugin's command starts test-modifier until $FLAG exists, then fails at once: once
  # killed, the plugin stays down (restarts fail, with backoff).
  FLAG="$BATS_TEST_TMPDIR/down"
  cat >"$BATS_TEST_TMPDIR/flaky-modifier" <<SH
#!/bin/sh
[ -e "$FLAG" ] && exit 1
exec test-modifier "\$@"
SH
  chmod +x "$BATS_TEST_TMPDIR/flaky-modifier"
  start_with_modifier "[[plugin]]
name = \"flaky\"
type = \"modifier\"
command = \"$BATS_TEST_TMPDIR/flaky-modifier\"
failure = \"open\"
config = { file = \"$MODS\" }"
  pid=$(plugin_pid flaky)
  touch "$FLAG"
  kill -9 "$pid"
  wait_for_log 'restarting plugin.*plugin=flaky|plugin=flaky.*restarting plugin' 50
  burst 40
  warnings flaky
  lines=$(warnings flaky | wc -l)
  echo "warning lines: $lines"
  [ "$lines" -ge 1 ] && [ "$lines" -le 2 ]
  warnings flaky | grep -q 'kind="\?unavailable'
  warnings flaky | head -n1 | grep -q 'requests=1'
}
