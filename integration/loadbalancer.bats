#!/usr/bin/env bats
# Loadbalancer plugins: test-loadbalancer picks the backend named by `x-backend`, else round
# robin; it is told every backend (again after a restart) and gets upstream_metric batches.
# And the built-in balancers an upstream chooses with `balancer:`.

load helpers

setup() {
  start_backends b0 b1
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  LB_FILE="$BATS_TEST_TMPDIR/lb.jsonl"
}

teardown() {
  stop_all
}

# write_lb_config [FAILURE]: static-upstreams on $UPSTREAMS and test-loadbalancer, with metrics
# flushed every 100 ms.
write_lb_config() {
  local failure=${1:-open}
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
metrics_flush_interval = "100ms"

$(static_upstreams_table 'backend_ids = "index"')

[[plugin]]
name = "lb"
type = "loadbalancer"
command = "${LB_COMMAND:-test-loadbalancer}"
failure = "$failure"
failure_status = 598
config = { file = "$LB_FILE" }
TOML
}

# picks N [CURL ARGS...]: the backend names of N sequential requests to /pool/, one a line.
picks() {
  local n=$1 i
  shift
  for ((i = 0; i < n; i++)); do
    echoed_backend "$@" "$GK_URL/pool/$i"
  done
}

@test "x-backend always reaches the backend it names" {
  write_pool "$UPSTREAMS" "" "${BACKEND_PORTS[@]}"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" --upstream-backend_ids index \
    --loadbalancer-plugin test-loadbalancer --loadbalancer-file "$LB_FILE"
  [ "$(picks 8 -H 'x-backend: 1' | sort -u)" = b1 ]
  [ "$(picks 8 -H 'x-backend: 0' | sort -u)" = b0 ]
  [ "$(count_records "$LB_FILE" 'select(.method == "get_backend" and .upstream_id == "pool" and .backend_id == "1")')" -eq 8 ]
  [ "$(count_records "$LB_FILE" 'select(.method == "get_backend" and .backend_id == "0")')" -eq 8 ]
}

@test "without x-backend the plugin's round robin alternates" {
  write_pool "$UPSTREAMS" "" "${BACKEND_PORTS[@]}"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" --upstream-backend_ids index \
    --loadbalancer-plugin test-loadbalancer --loadbalancer-file "$LB_FILE"
  seq=$(picks 10 | tr '\n' ' ')
  echo "picks: $seq"
  [ "$seq" = "b0 b1 b0 b1 b0 b1 b0 b1 b0 b1 " ] || [ "$seq" = "b1 b0 b1 b0 b1 b0 b1 b0 b1 b0 " ]
}

@test "the loadbalancer is told every backend before it picks one" {
  write_pool "$UPSTREAMS" "" "${BACKEND_PORTS[@]}"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" --upstream-backend_ids index \
    --loadbalancer-plugin test-loadbalancer --loadbalancer-file "$LB_FILE"
  picks 1 >/dev/null
  first_pick=$(jq -s 'map(.method) | index("get_backend")' "$LB_FILE")
  [ "$first_pick" != null ]
  for id in 0 1; do
    added_at=$(jq -s --arg id "$id" 'map(.method == "add_backend" and .upstream_id == "pool" and .id == $id) | index(true)' "$LB_FILE")
    [ "$added_at" != null ]
    [ "$added_at" -lt "$first_pick" ]
  done
}

@test "the loadbalancer receives upstream_metric batches" {
  write_pool "$UPSTREAMS" "" "${BACKEND_PORTS[@]}"
  write_lb_config
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  picks 4 -H 'x-backend: 1' >/dev/null
  picks 2 -H 'x-backend: 0' >/dev/null
  [ "$(http_code -H 'x-backend: 0' "$GK_URL/pool/status/500")" = 500 ]
  wait_for_records "$LB_FILE" "select(.method == \"upstream_metric\") | .metrics[]" 7 30
  records "$LB_FILE" "select(.method == \"upstream_metric\") | .metrics[]" >"$BATS_TEST_TMPDIR/metrics"
  cat "$BATS_TEST_TMPDIR/metrics"
  [ "$(wc -l <"$BATS_TEST_TMPDIR/metrics")" -eq 7 ]
  # Every record names the upstream and backend, with a latency and the backend's status.
  [ "$(jq -s 'all(.upstream == "pool" and (.latency_us | type == "number" and . > 0) and (.time_ms | type == "number"))' "$BATS_TEST_TMPDIR/metrics")" = true ]
  [ "$(jq -s 'map(select(.backend == "1" and .status == 200)) | length' "$BATS_TEST_TMPDIR/metrics")" -eq 4 ]
  [ "$(jq -s 'map(select(.backend == "0" and .status == 200)) | length' "$BATS_TEST_TMPDIR/metrics")" -eq 2 ]
  [ "$(jq -s 'map(select(.backend == "0" and .status == 500)) | length' "$BATS_TEST_TMPDIR/metrics")" -eq 1 ]
}

@test "an unreachable backend is an upstream_metric with an error" {
  dead=$(free_port)
  write_pool "$UPSTREAMS" "" "${BACKEND_PORTS[0]}" "$dead"
  write_lb_config
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  # A POST with a body (a GET would be retried on the live backend).
  [ "$(http_code -H 'x-backend: 1' -d body "$GK_URL/pool/x")" = 502 ]
  wait_for_records "$LB_FILE" 'select(.method == "upstream_metric") | .metrics[] | select(.backend == "1")' 1 30
  run records "$LB_FILE" 'select(.method == "upstream_metric") | .metrics[] | select(.backend == "1")'
  [ "$(jq -r .error <<<"$output")" != null ]
  [ "$(jq -r '.status // "none"' <<<"$output")" = none ]
}

@test "kill -9 of the loadbalancer: requests keep flowing, every backend is replayed to it" {
  write_pool "$UPSTREAMS" "" "${BACKEND_PORTS[@]}"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" --upstream-backend_ids index \
    --loadbalancer-plugin test-loadbalancer --loadbalancer-file "$LB_FILE"
  # (At startup a backend may be announced twice: by the replay and by the change feed.)
  [ "$(picks 2 | sort -u | wc -l)" -eq 2 ]
  before0=$(count_records "$LB_FILE" 'select(.method == "add_backend" and .upstream_id == "pool" and .id == "0")')
  before1=$(count_records "$LB_FILE" 'select(.method == "add_backend" and .upstream_id == "pool" and .id == "1")')
  [ "$before0" -ge 1 ] && [ "$before1" -ge 1 ]
  pid=$(plugin_pid test-loadbalancer)
  kill -9 "$pid"
  for ((i = 0; i < 20; i++)); do
    code=$(http_code -H 'x-backend: 1' "$GK_URL/pool/during")
    [ "$code" = 200 ] || { echo "request $i: $code" >&2; false; }
  done
  wait_for_restart test-loadbalancer "$pid" >/dev/null
  # The new process got each backend once more, before it was ready.
  [ "$(count_records "$LB_FILE" 'select(.method == "add_backend" and .upstream_id == "pool" and .id == "0")')" -eq $((before0 + 1)) ]
  [ "$(count_records "$LB_FILE" 'select(.method == "add_backend" and .upstream_id == "pool" and .id == "1")')" -eq $((before1 + 1)) ]
  [ "$(picks 6 -H 'x-backend: 1' | sort -u)" = b1 ]
}

@test "while the loadbalancer is down the upstream's built-in balancer picks (fail-open)" {
  write_pool "$UPSTREAMS" round_robin "${BACKEND_PORTS[@]}"
  LB_COMMAND=$(gated_plugin lb test-loadbalancer)
  write_lb_config open
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$(picks 4 -H 'x-backend: 1' | sort -u)" = b1 ]
  pid=$(plugin_pid lb)
  touch "$BATS_TEST_TMPDIR/gated/lb.down"
  kill -9 "$pid"
  eventually 50 '[ "$(echoed_backend -H "x-backend: 1" "$GK_URL/pool/x")" = b0 ]'
  # Down: the header means nothing; the built-in round robin alternates.
  seq=$(picks 6 -H 'x-backend: 1' | tr '\n' ' ')
  echo "picks: $seq"
  [ "$seq" = "b0 b1 b0 b1 b0 b1 " ] || [ "$seq" = "b1 b0 b1 b0 b1 b0 " ]
  rm "$BATS_TEST_TMPDIR/gated/lb.down"
  wait_for_restart lb "$pid" 150 >/dev/null
  eventually 50 '[ "$(echoed_backend -H "x-backend: 1" "$GK_URL/pool/x")" = b1 ]'
  [ "$(picks 6 -H 'x-backend: 1' | sort -u)" = b1 ]
}

@test "a fail-closed loadbalancer that is down answers its failure_status" {
  write_pool "$UPSTREAMS" "" "${BACKEND_PORTS[@]}"
  LB_COMMAND=$(gated_plugin lb test-loadbalancer)
  write_lb_config closed
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$(http_code "$GK_URL/pool/x")" = 200 ]
  pid=$(plugin_pid lb)
  touch "$BATS_TEST_TMPDIR/gated/lb.down"
  kill -9 "$pid"
  eventually 50 '[ "$(http_code "$GK_URL/pool/x")" = 598 ]'
  [ "$(http_code -H 'x-backend: 0' "$GK_URL/pool/x")" = 598 ]
}

@test "a backend id the upstream does not have is a loadbalancer failure" {
  write_pool "$UPSTREAMS" "" "${BACKEND_PORTS[@]}"
  write_lb_config closed
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$(http_code -H 'x-backend: 7' "$GK_URL/pool/x")" = 598 ]
  write_lb_config open
  stop_gatekeeper
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  # Fail-open: the built-in balancer picks one of the two.
  run echoed_backend -H 'x-backend: 7' "$GK_URL/pool/x"
  [[ "$output" = b0 || "$output" = b1 ]]
}

@test "built-in round_robin (no loadbalancer plugin) alternates strictly" {
  write_pool "$UPSTREAMS" round_robin "${BACKEND_PORTS[@]}"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" --upstream-backend_ids index
  seq=$(picks 10 | tr '\n' ' ')
  echo "picks: $seq"
  [ "$seq" = "b0 b1 b0 b1 b0 b1 b0 b1 b0 b1 " ] || [ "$seq" = "b1 b0 b1 b0 b1 b0 b1 b0 b1 b0 " ]
}

@test "built-in random reaches both backends" {
  write_pool "$UPSTREAMS" random "${BACKEND_PORTS[@]}"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" --upstream-backend_ids index
  # 40 picks all on one backend: probability 2^-39.
  [ "$(picks 40 | sort -u | tr '\n' ' ')" = "b0 b1 " ]
}

@test "built-in least_outstanding avoids the backend with a request in flight" {
  write_pool "$UPSTREAMS" least_outstanding "${BACKEND_PORTS[@]}"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" --upstream-backend_ids index
  # Idle: ties are broken at random, so both backends get requests.
  [ "$(picks 40 | sort -u | tr '\n' ' ')" = "b0 b1 " ]
  # One slow request in flight on one backend: the next ones all go to the other.
  curl -sS --max-time 10 "$GK_URL/pool/slow?ms=2000" >"$BATS_TEST_TMPDIR/slow" &
  slow=$!
  sleep 0.3
  quick=$(picks 6 | sort -u)
  wait "$slow"
  busy=$(jq -r .backend "$BATS_TEST_TMPDIR/slow")
  echo "slow on $busy, quick on $quick"
  [ "$(wc -w <<<"$quick")" -eq 1 ]
  [ "$quick" != "$busy" ]
}

@test "an unknown balancer name is refused" {
  write_pool "$UPSTREAMS" fastest "${BACKEND_PORTS[@]}"
  run timeout 20 gatekeeper --listen "127.0.0.1:$(free_port)" --socket-dir "$BATS_TEST_TMPDIR" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" --upstream-backend_ids index
  echo "$output"
  [ "$status" -ne 0 ]
  [[ "$output" == *fastest* ]]
}
