#!/usr/bin/env bats
# The low-latency mode (docs/operations.md, "Low-latency mode"): a plugin's `busy_poll_us` makes
# gatekeeper's connection to it busy-poll the socket while a call waits for its answer, and is
# passed to the plugin in GATEKEEPER_BUSY_POLL_US (the Rust SDK spins after answering). Through
# the real binaries with the Rust test-modifier; the spins are counted in `ctl plugins`
# (`busy_poll`: `data`, spins that found the answer; `timeout`, spins that gave up). Asserted
# with counters and outcomes, never with timing.

load helpers

bats_require_minimum_version 1.5.0

setup() {
  start_backend echo-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
}

teardown() {
  stop_all
}

ctl() {
  gatekeeper ctl --socket-dir "$BATS_TEST_TMPDIR" "$@"
}

# mod_field FIELD: a jq path of the plugin `mod` in `ctl plugins` (e.g. .busy_poll.data).
mod_field() {
  ctl plugins | jq -r ".[] | select(.name == \"mod\") | $1"
}

# start_modifier [MORE]: gatekeeper with a test-modifier named `mod` on request hooks; MORE
# is added to its [[plugin]] table (e.g. `busy_poll_us = 200`).
start_modifier() {
  start_with_modifier "[[plugin]]
name = \"mod\"
type = \"modifier\"
command = \"test-modifier\"
args = [\"--hooks\", \"modify_request\"]
${1:-}"
}

@test "busy_poll_us: requests are answered, the plugin is told the budget, and calls spin" {
  start_modifier "busy_poll_us = 200"
  local pid
  pid=$(plugin_pid mod)
  # The plugin process got the budget in its environment.
  tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "GATEKEEPER_BUSY_POLL_US=200"
  local i
  for i in $(seq 1 20); do
    # One at a time (concurrency 1), each changed by the plugin.
    [ "$(curl -sS --max-time 5 "$GK_URL/echo/$i" | jq -r '.headers["x-test-modifier"]')" = "$pid" ]
  done
  [ "$(mod_field .busy_poll_us)" = 200 ]
  [ "$(mod_field .calls)" -ge 20 ]
  # Each call at concurrency 1 spins while it waits for its answer: found it or gave up.
  local data timeout
  data=$(mod_field .busy_poll.data)
  timeout=$(mod_field .busy_poll.timeout)
  echo "spins: $data found data, $timeout timed out"
  [ $((data + timeout)) -ge 1 ]
  # At most one spin per call (heartbeats are calls too, hence the slack).
  [ $((data + timeout)) -le $(($(mod_field .calls) + 5)) ]
  gatekeeper check --config "$BATS_TEST_TMPDIR/gk.toml" --json | jq -e '.plugins[] | select(.name == "mod") | .busy_poll_us == 200'
}

@test "busy_poll_us: off by default, nothing spins" {
  start_modifier
  local pid
  pid=$(plugin_pid mod)
  tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "GATEKEEPER_BUSY_POLL_US=0"
  local i
  for i in 1 2 3 4 5; do
    [ "$(curl -sS --max-time 5 "$GK_URL/echo/$i" | jq -r '.headers["x-test-modifier"]')" = "$pid" ]
  done
  [ "$(mod_field .busy_poll_us)" = 0 ]
  [ "$(mod_field .busy_poll.data)" = 0 ]
  [ "$(mod_field .busy_poll.timeout)" = 0 ]
}

@test "busy_poll_us: the --TYPE-busy-poll-us flag sets it for every plugin of the type" {
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --modifier-plugin test-modifier --modifier-busy-poll-us 150
  pid=$(plugin_pid test-modifier)
  tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "GATEKEEPER_BUSY_POLL_US=150"
  [ "$(curl -sS --max-time 5 "$GK_URL/echo/x" | jq -r '.headers["x-test-modifier"]')" = "$pid" ]
  [ "$(ctl plugins | jq -r '.[] | select(.name == "test-modifier") | .busy_poll_us')" = 150 ]
}

@test "busy_poll_us: gatekeeper check refuses a negative or too large budget, naming the key" {
  local config="$BATS_TEST_TMPDIR/bad.toml" value
  for value in -1 1001 2.5 '"fast"'; do
    printf '[[plugin]]\ntype = "modifier"\ncommand = "test-modifier"\nbusy_poll_us = %s\n' "$value" >"$config"
    run --separate-stderr gatekeeper check --config "$config"
    echo "$value: $stderr"
    [ "$status" -eq 1 ]
    grep -q "^$config: plugin\[0\].busy_poll_us: " <<<"$stderr"
  done
  grep -q "from 0 (off) to 1000" <<<"$stderr"
  printf '[[plugin]]\ntype = "modifier"\ncommand = "test-modifier"\nbusy_poll_us = 1000\n' >"$config"
  run --separate-stderr gatekeeper check --config "$config"
  [ "$status" -eq 0 ]
  run --separate-stderr gatekeeper check --modifier-plugin test-modifier --modifier-busy-poll-us 5000
  [ "$status" -eq 1 ]
  grep -q -- "--modifier-busy-poll-us: 5000 must be from 0 (off) to 1000" <<<"$stderr"
}
