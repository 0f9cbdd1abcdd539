#!/usr/bin/env bats
# Backend health and weights: passive health ejects a failing backend for a cool-down and
# re-admits it once a request succeeds after the cool-down; active health checks take a backend
# whose health endpoint fails out and bring it back when it passes; weights shape round robin.

load helpers

setup() {
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
}

teardown() {
  stop_all
}

# start_backend_on NAME PORT [ARGS...]: an echo backend named NAME on PORT (0: a free one) with
# more backend.py ARGS; sets BACKEND_PORT.
start_backend_on() {
  local name=$1 port=$2
  shift 2
  local port_file="$BATS_TEST_TMPDIR/$name.port"
  rm -f "$port_file"
  python3 "$REPO_ROOT/integration/backend.py" --port-file "$port_file" --name "$name" \
    --port "$port" "$@" &
  PIDS+=($!)
  wait_for_file "$port_file"
  BACKEND_PORT=$(cat "$port_file")
}

# backends_of N: the backend names that answer N requests to /pool/, one per line.
backends_of() {
  local i
  for ((i = 0; i < $1; i++)); do echoed_backend "$GK_URL/pool/x"; done
}

@test "passive health: a dead backend is ejected, then re-admitted once it answers after the cool-down" {
  start_backend live
  LIVE_PORT=$BACKEND_PORT
  DEAD_PORT=$(free_port)
  cat >"$UPSTREAMS" <<YAML
pool:
  prefixes: [pool]
  timeout: 2s
  balancer: round_robin
  passive_health: { failures: 2, cooldown: 3s }
  backends:
    - http://127.0.0.1:$LIVE_PORT
    - http://127.0.0.1:$DEAD_PORT
YAML
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
  # Round robin alternates: two failures in a row on the dead backend take at most 4 requests.
  for _ in 1 2 3 4; do http_code "$GK_URL/pool/x" >/dev/null; done
  wait_for_log "backend ejected.*backend=http://127.0.0.1:$DEAD_PORT" 30
  gk_log | grep 'backend ejected' | grep -q 'failures=2'
  # Ejected: every request goes to the live backend (well within the 3 s cool-down).
  [ "$(backends_of 8 | sort -u)" = live ]

  # Something listens on the dead port now; after the cool-down a request reaches it, succeeds,
  # and re-admits it.
  start_backend_on revived "$DEAD_PORT"
  eventually 100 '[ "$(echoed_backend "$GK_URL/pool/x")" = revived ]'
  wait_for_log "backend re-admitted.*backend=http://127.0.0.1:$DEAD_PORT" 30
  [ "$(backends_of 4 | sort | uniq -c | awk '{print $1}' | tr '\n' ' ')" = "2 2 " ]
}

@test "passive health: passive_health_failures = 0 in the config file disables it" {
  start_backend live
  DEAD_PORT=$(free_port)
  cat >"$UPSTREAMS" <<YAML
pool:
  prefixes: [pool]
  balancer: round_robin
  backends:
    - http://127.0.0.1:$BACKEND_PORT
    - http://127.0.0.1:$DEAD_PORT
YAML
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
passive_health_failures = 0
$(static_upstreams_table)
TOML
  run gatekeeper --check --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$(jq -c .passive_health <<<"$output")" = '{"failures":0,"cooldown":"10s"}' ]
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  # POSTs with a body: not retried, so each one to the dead backend is a forwarding failure.
  for _ in 1 2 3 4 5 6 7 8; do http_code -d x "$GK_URL/pool/x" >/dev/null; done
  # Eight requests, four of them to the dead backend, and still no ejection.
  wait_for_log 'forwarding failed' 10
  run gk_log
  [[ $output != *"backend ejected"* ]]
}

@test "active health: a backend whose check fails is taken out and comes back when it passes" {
  start_backend_on good 0
  GOOD_PORT=$BACKEND_PORT
  HEALTH="$BATS_TEST_TMPDIR/flaky.health"
  echo 503 >"$HEALTH"
  start_backend_on flaky 0 --health-file "$HEALTH"
  FLAKY_PORT=$BACKEND_PORT
  METRICS="$BATS_TEST_TMPDIR/metrics.jsonl"
  cat >"$UPSTREAMS" <<YAML
pool:
  prefixes: [pool]
  balancer: round_robin
  health_check:
    path: /health
    interval: 100ms
    timeout: 1s
    healthy_threshold: 2
    unhealthy_threshold: 2
    expected_status: 2xx
  backends:
    - http://127.0.0.1:$GOOD_PORT
    - http://127.0.0.1:$FLAKY_PORT
YAML
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
metrics_flush_interval = "100ms"
$(static_upstreams_table)

$(test_metric_table)
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  wait_for_log "backend unhealthy \(active health check\).*backend=http://127.0.0.1:$FLAKY_PORT" 50
  [ "$(backends_of 8 | sort -u)" = good ]
  # The healthy backend was never reported.
  [ "$(gk_log | grep 'backend unhealthy' | grep -c "backend=http://127.0.0.1:$GOOD_PORT ")" -eq 0 ]

  echo 200 >"$HEALTH"
  wait_for_log "backend healthy again \(active health check\).*backend=http://127.0.0.1:$FLAKY_PORT" 50
  [ "$(backends_of 4 | sort | uniq -c | awk '{print $1}' | tr '\n' ' ')" = "2 2 " ]

  EVENTS='select(.method == "event_metric") | .params.events[]'
  wait_for_records "$METRICS" "$EVENTS | select(.name == \"backend_healthy\")" 1 30
  [ "$(records "$METRICS" "$EVENTS | select(.name == \"backend_unhealthy\") | [.attributes.upstream, .attributes.backend, .attributes.check, .attributes.reason]")" = "[\"pool\",\"http://127.0.0.1:$FLAKY_PORT\",\"active\",\"unexpected status 503\"]" ]
  [ "$(records "$METRICS" "$EVENTS | select(.name == \"backend_healthy\") | [.attributes.backend, .attributes.check]")" = "[\"http://127.0.0.1:$FLAKY_PORT\",\"active\"]" ]
}

@test "weights: 3 and 1 under round_robin split 40 requests exactly 30 and 10" {
  start_backend_on heavy 0
  HEAVY_PORT=$BACKEND_PORT
  start_backend_on light 0
  cat >"$UPSTREAMS" <<YAML
pool:
  prefixes: [pool]
  balancer: round_robin
  backends:
    - address: http://127.0.0.1:$HEAVY_PORT
      weight: 3
    - http://127.0.0.1:$BACKEND_PORT
YAML
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
  [ "$(backends_of 40 | sort | uniq -c | awk '{print $2 "=" $1}' | tr '\n' ' ')" = "heavy=30 light=10 " ]
}

@test "weights: random follows them" {
  start_backend_on heavy 0
  HEAVY_PORT=$BACKEND_PORT
  start_backend_on light 0
  cat >"$UPSTREAMS" <<YAML
pool:
  prefixes: [pool]
  backends:
    - { address: "http://127.0.0.1:$HEAVY_PORT", weight: 9 }
    - http://127.0.0.1:$BACKEND_PORT
YAML
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
  # 100 picks at 9:1: `light` is expected 10 times; 35 or more has a probability below 1e-10
  # (unweighted, it would be about 50).
  light=$(backends_of 100 | grep -c light || true)
  ((light < 35))
}
