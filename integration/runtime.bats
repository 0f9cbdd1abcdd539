#!/usr/bin/env bats
# The runtime `workers` picks (docs/dataplane.md, "Runtime and the cost of a request"): with one
# worker everything runs on one current-thread runtime on the main thread (no tokio worker
# threads), with N workers a multi-thread runtime with N worker threads. Either way requests go
# through a plugin hook, concurrent requests are all answered, and the access log file (written
# off the runtime, by a blocking task) gets every request.

load helpers

setup() {
  start_backend echo-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  ACCESS="$BATS_TEST_TMPDIR/access.log"
}

teardown() {
  stop_all
}

# worker_threads: how many of gatekeeper's threads are tokio's worker threads.
worker_threads() {
  cat /proc/"$GK_PID"/task/*/comm | grep -c '^tokio-rt-worker$' || true
}

# serves_concurrently N: N requests at once through the modifier, each answered and changed.
serves_concurrently() {
  local i pids=()
  for i in $(seq 1 "$1"); do
    curl -sS --max-time 10 "$GK_URL/echo/$i" -o "$BATS_TEST_TMPDIR/out.$i" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i"; done
  for i in $(seq 1 "$1"); do
    [ "$(jq -r '.headers["x-test-modifier"] != null' "$BATS_TEST_TMPDIR/out.$i")" = true ]
  done
}

# access_lines_reach N: waits up to 5 s until the access log has N lines.
access_lines_reach() {
  local i
  for ((i = 0; i < 50; i++)); do
    [ "$(wc -l <"$ACCESS" 2>/dev/null || echo 0)" -ge "$1" ] && return 0
    sleep 0.1
  done
  echo "access log has $(wc -l <"$ACCESS" 2>/dev/null || echo 0) lines, wanted $1" >&2
  return 1
}

# start_with_workers N: gatekeeper with N workers, a JSON access log in $ACCESS, static-upstreams
# and one test-modifier on modify_request.
start_with_workers() {
  local config="$BATS_TEST_TMPDIR/gatekeeper.toml"
  cat >"$config" <<TOML
workers = $1
access_log = "json"
access_log_file = $(toml_string "$ACCESS")
TOML
  start_gatekeeper --config "$config" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --modifier-plugin "test-modifier --hooks modify_request"
}

@test "workers = 1: no tokio worker thread; concurrent requests through a hook all answered and logged" {
  start_with_workers 1
  [ "$(worker_threads)" -eq 0 ]
  serves_concurrently 20
  access_lines_reach 20
}

@test "workers = 2: two tokio worker threads; concurrent requests through a hook all answered and logged" {
  start_with_workers 2
  [ "$(worker_threads)" -eq 2 ]
  serves_concurrently 20
  access_lines_reach 20
}
