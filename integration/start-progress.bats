#!/usr/bin/env bats
# A start is not a stopwatch (docs/operations.md, "Plugin supervision"): an upstream plugin that
# pushes its upstreams with manager calls inside `start` for longer than its `start_timeout`
# starts, as long as it never stays silent for `start_timeout`; its upstreams route. A silent
# plugin fails with the silence limit, one still pushing at `start_max` with that limit.
# The plugin is integration/plugins/manager-driver.py (written from docs/protocol.md, no SDK).

load helpers

DRIVER="$BATS_TEST_DIRNAME/plugins/manager-driver.py"

setup() {
  start_backend b0
  START="$BATS_TEST_TMPDIR/start.jsonl"
  ANSWERS="$BATS_TEST_TMPDIR/answers.jsonl"
  : >"$START"
  # 6 upstreams, each with one backend: 12 calls.
  for i in 0 1 2 3 4 5; do
    jq -cn --arg id "svc$i" '{step: "u", method: "add_upstream", params: {upstream: {id: $id, prefixes: [$id]}}}' >>"$START"
    jq -cn --arg id "svc$i" --arg address "http://127.0.0.1:$BACKEND_PORT" \
      '{step: "b", method: "add_backend", params: {upstream_id: $id, backend: {id: "b0", address: $address}}}' >>"$START"
  done
}

teardown() {
  stop_all
}

# write_config PAUSE_MS EXTRA_TOML: gatekeeper.toml with the driver pausing PAUSE_MS before
# each call of its start, tried once, and EXTRA_TOML in its table.
write_config() {
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
[[plugin]]
name = "pusher"
type = "upstream"
command = "python3"
args = ["$DRIVER"]
config = { record = "$ANSWERS", start = "$START", start_pause_ms = "$1" }
start_attempts = 1
$2
TOML
}

@test "a plugin pushing for longer than its start_timeout starts, and its upstreams route" {
  # 12 calls 250 ms apart: about 3 s of pushing under a 1 s start_timeout.
  write_config 250 'start_timeout = "1s"'
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$(count_records "$ANSWERS" 'select(has("result"))')" = 12 ]
  [ "$(http_code "$GK_URL/svc0/")" = 200 ]
  [ "$(http_code "$GK_URL/svc5/")" = 200 ]
  [ "$(grep -c "failed to start" "$GK_LOG")" = 0 ]
  # The effective settings show the limits.
  gatekeeper check --config "$BATS_TEST_TMPDIR/gk.toml" --json |
    jq -e '.plugins[0] | .start_timeout == "1s" and .start_max == "5m"' >/dev/null
}

@test "a plugin silent for its start_timeout fails to start, naming the silence limit" {
  # 1.5 s before the first call, under a 1 s start_timeout.
  write_config 1500 'start_timeout = "1s"'
  local failed=0
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml" 2>/dev/null || failed=1
  [ "$failed" = 1 ]
  gk_log | grep -q "plugin \`pusher\` failed to start (1 attempt): no manager call (nor any other call) from the plugin for 1s during start (start_timeout)"
}

@test "a plugin still pushing at its start_max fails to start, naming that limit" {
  # Never silent for 1 s, but 3 s of pushing under a 2 s start_max.
  write_config 250 $'start_timeout = "1s"\nstart_max = "2s"'
  local failed=0
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml" 2>/dev/null || failed=1
  [ "$failed" = 1 ]
  gk_log | grep -q "plugin \`pusher\` failed to start (1 attempt): start still running after 2s (start_max)"
}

@test "gatekeeper check refuses a start_max below start_timeout, naming the key" {
  write_config 0 $'start_timeout = "10s"\nstart_max = "1s"'
  run gatekeeper check --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$status" -eq 1 ]
  grep -q "plugin\[0\].start_max: must not be less than start_timeout" <<<"$output"
}
