#!/usr/bin/env bats
# Operations: the admin socket and `gatekeeper ctl` (status, upstreams, backends, plugins,
# drain/enable, restart-plugin, wait-ready, exit codes), and the Prometheus metrics listener.

load helpers

setup() {
  start_backends b0 b1
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_pool "$UPSTREAMS" round_robin "${BACKEND_PORTS[@]}"
  METRICS_PORT=$(free_port)
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
metrics_listen = "127.0.0.1:$METRICS_PORT"
metrics_flush_interval = "100ms"

$(static_upstreams_table 'backend_ids = "index"')

[[plugin]]
name = "request-id"
type = "modifier"
command = "request-id"
TOML
  SOCKET="$BATS_TEST_TMPDIR/admin.sock"
}

teardown() {
  stop_all
}

start_default() {
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml" "$@"
}

# ctl ARGS...: gatekeeper ctl for the gatekeeper of this test (found by its --socket-dir).
ctl() {
  gatekeeper ctl --socket-dir "$BATS_TEST_TMPDIR" "$@"
}

# picks N: the backend names of N sequential requests to /pool/, one a line.
picks() {
  local n=$1 i
  for ((i = 0; i < n; i++)); do
    echoed_backend "$GK_URL/pool/$i"
  done
}

@test "the admin socket is private (mode 0600) and removed on shutdown" {
  start_default
  [ -S "$SOCKET" ]
  [ "$(stat -c %a "$SOCKET")" = 600 ]
  stop_gatekeeper
  [ ! -e "$SOCKET" ]
}

@test "ctl status shows readiness, the listeners and the counts" {
  start_default
  run ctl status
  [ "$status" -eq 0 ]
  [ "$(jq -r .ready <<<"$output")" = true ]
  [ "$(jq -r '.listeners[0].name' <<<"$output")" = http-public ]
  [ "$(jq -r '.listeners[0].address' <<<"$output")" = "127.0.0.1:$GK_PORT" ]
  [ "$(jq -r .upstreams <<<"$output")" = 1 ]
  [ "$(jq -r .backends <<<"$output")" = 2 ]
  [ "$(jq -r .plugins <<<"$output")" = 2 ]
  # --socket names the socket directly.
  [ "$(gatekeeper ctl --socket "$SOCKET" status | jq -r .pid)" = "$GK_PID" ]
}

@test "during the SIGTERM drain, ctl status says draining and not ready" {
  start_default
  [ "$(ctl status | jq -c '[.ready, .draining]')" = '[true,false]' ]
  curl -s -o "$BATS_TEST_TMPDIR/slow.out" -w '%{http_code}' "$GK_URL/pool/slow?ms=2000" \
    >"$BATS_TEST_TMPDIR/slow.code" &
  local curl_pid=$!
  sleep 0.5
  kill -TERM "$GK_PID"
  eventually 30 '[ "$(ctl status | jq -c "[.ready, .draining]")" = "[false,true]" ]'
  wait "$curl_pid"
  [ "$(cat "$BATS_TEST_TMPDIR/slow.code")" = 200 ]
}

@test "ctl upstreams and backends list what static-upstreams added" {
  start_default
  run ctl upstreams
  [ "$status" -eq 0 ]
  [ "$(jq -r '.[0].id' <<<"$output")" = pool ]
  [ "$(jq -r '.[0].balancer' <<<"$output")" = round_robin ]
  [ "$(jq -r '[.[0].backends[].id] | join(",")' <<<"$output")" = "0,1" ]
  run ctl backends
  [ "$status" -eq 0 ]
  [ "$(jq -r '[.[] | "\(.upstream)/\(.id)=\(.address)"] | join(" ")' <<<"$output")" = \
    "pool/0=http://127.0.0.1:${BACKEND_PORTS[0]} pool/1=http://127.0.0.1:${BACKEND_PORTS[1]}" ]
  [ "$(jq -r '[.[].health] | unique | join(",")' <<<"$output")" = healthy ]
  [ "$(jq -r '.[0].in_flight' <<<"$output")" = 0 ]
}

@test "ctl --table backends prints a header line and one aligned row per backend" {
  start_default
  run ctl --table backends
  [ "$status" -eq 0 ]
  [ "${#lines[@]}" -eq 3 ]
  [[ ${lines[0]} == UPSTREAM*ID*ADDRESS*HEALTH* ]]
  [[ ${lines[1]} == pool*0*"http://127.0.0.1:${BACKEND_PORTS[0]}"*healthy* ]]
  # Columns are aligned: ADDRESS starts at the same offset in every line.
  header_offset=$(awk '{ print index($0, "ADDRESS") }' <<<"${lines[0]}")
  row_offset=$(awk '{ print index($0, "http://") }' <<<"${lines[2]}")
  [ "$header_offset" -eq "$row_offset" ]
}

@test "ctl plugins shows each plugin running with a live pid" {
  start_default
  run ctl plugins
  [ "$status" -eq 0 ]
  [ "$(jq -r '[.[].name] | join(",")' <<<"$output")" = "static,request-id" ]
  [ "$(jq -r '[.[].state] | unique | join(",")' <<<"$output")" = running ]
  pid=$(jq -r '.[] | select(.name == "request-id") | .pid' <<<"$output")
  [ "$pid" = "$(plugin_pid request-id)" ]
  kill -0 "$pid"
  [ "$(jq -r '.[] | select(.name == "request-id") | .type' <<<"$output")" = modifier ]
  # The supervision counters, and each instance's process.
  [ "$(jq -c '.[] | select(.name == "request-id") | [.recycles, .standby_ready, .bad_results, .retries]' <<<"$output")" = '[0,0,0,0]' ]
  [ "$(jq -c '.[] | select(.name == "request-id") | .processes | map([.state, .pid, .restarts, .recycles])' <<<"$output")" = "[[\"running\",$pid,0,0]]" ]
  # Calls are counted.
  curl -sS --max-time 5 -o /dev/null "$GK_URL/pool/"
  [ "$(ctl plugins | jq -r '.[] | select(.name == "request-id") | .calls')" -ge 1 ]
}

@test "a drained backend gets no new requests; enabled, it gets them again" {
  start_default
  [ "$(picks 4 | sort -u | tr '\n' ' ')" = "b0 b1 " ]
  run ctl drain pool 0
  [ "$status" -eq 0 ]
  [ "$(jq -r .drained <<<"$output")" = true ]
  [ "$(picks 6 | sort -u)" = b1 ]
  [ "$(ctl backends | jq -r '.[] | select(.id == "0") | .health')" = drained ]
  run ctl enable pool 0
  [ "$status" -eq 0 ]
  [ "$(jq -r .drained <<<"$output")" = false ]
  [ "$(picks 4 | sort -u | tr '\n' ' ')" = "b0 b1 " ]
}

@test "a drain survives the upstream plugin's restart (its backends are re-added as they were)" {
  start_default
  ctl drain pool 1
  old=$(plugin_pid static)
  ctl restart-plugin static
  wait_for_restart static "$old" >/dev/null
  [ "$(picks 4 | sort -u)" = b0 ]
}

@test "a drain holds when the upstream plugin changes the backend (removed and added again)" {
  start_default
  ctl drain pool 1
  sed -i "s|http://127.0.0.1:${BACKEND_PORTS[1]}|http://localhost:${BACKEND_PORTS[1]}|" "$UPSTREAMS"
  eventually 100 'ctl backends | jq -e ".[] | select(.id == \"1\") | .address | contains(\"localhost\")" >/dev/null'
  ctl backends | jq -e '.[] | select(.id == "1") | .drained == true'
  [ "$(picks 4 | sort -u)" = b0 ]
}

@test "restart-plugin gives the plugin a new pid and counts the restart" {
  start_default
  before=$(ctl plugins)
  old=$(jq -r '.[] | select(.name == "request-id") | .pid' <<<"$before")
  [ "$(jq -r '.[] | select(.name == "request-id") | .restarts' <<<"$before")" = 0 ]
  run ctl restart-plugin request-id
  [ "$status" -eq 0 ]
  new=$(wait_for_restart request-id "$old")
  eventually 50 '[ "$(ctl plugins | jq -r ".[] | select(.name == \"request-id\") | .state + \" \" + (.pid | tostring) + \" \" + (.restarts | tostring)")" = "running $new 1" ]'
  # The restarted plugin serves requests.
  [ "$(http_code "$GK_URL/pool/")" = 200 ]
}

@test "exit codes: unknown backend or plugin 1, usage 2, no socket 3" {
  start_default
  run ctl drain pool 9
  [ "$status" -eq 1 ]
  [[ $output == *"no backend"* ]]
  run ctl enable nowhere 0
  [ "$status" -eq 1 ]
  run ctl restart-plugin no-such-plugin
  [ "$status" -eq 1 ]
  run ctl drain pool
  [ "$status" -eq 2 ]
  run ctl bogus
  [ "$status" -eq 2 ]
  run gatekeeper ctl --socket "$BATS_TEST_TMPDIR/nothing-here.sock" status
  [ "$status" -eq 3 ]
}

@test "ctl wait-ready returns 0 once gatekeeper started, 1 when nothing answers in time" {
  run gatekeeper ctl --socket "$BATS_TEST_TMPDIR/nothing-here.sock" wait-ready --timeout 300ms
  [ "$status" -eq 1 ]
  # Started in the background: wait-ready waits for the socket and for readiness.
  GK_PORT=$(free_port)
  GK_URL="http://127.0.0.1:$GK_PORT"
  gatekeeper --listen "127.0.0.1:$GK_PORT" --socket-dir "$BATS_TEST_TMPDIR" \
    --config "$BATS_TEST_TMPDIR/gk.toml" >"$BATS_TEST_TMPDIR/gatekeeper.log" 2>&1 &
  GK_PID=$!
  PIDS+=("$GK_PID")
  run ctl wait-ready --timeout 10s
  [ "$status" -eq 0 ]
  [ "$(http_code "$GK_URL/pool/")" = 200 ]
}

@test "admin_socket sets the path; \"\" disables the socket" {
  echo "admin_socket = \"$BATS_TEST_TMPDIR/elsewhere.sock\"" >>"$BATS_TEST_TMPDIR/gk.toml.new"
  cat "$BATS_TEST_TMPDIR/gk.toml" >>"$BATS_TEST_TMPDIR/gk.toml.new"
  mv "$BATS_TEST_TMPDIR/gk.toml.new" "$BATS_TEST_TMPDIR/gk.toml"
  start_default
  [ -S "$BATS_TEST_TMPDIR/elsewhere.sock" ]
  [ ! -e "$SOCKET" ]
  # ctl reads the path from the same config file.
  [ "$(gatekeeper ctl --config "$BATS_TEST_TMPDIR/gk.toml" status | jq -r .ready)" = true ]
  stop_all
  sed -i "s|^admin_socket = .*|admin_socket = \"\"|" "$BATS_TEST_TMPDIR/gk.toml"
  start_default
  [ ! -e "$BATS_TEST_TMPDIR/elsewhere.sock" ]
  [ ! -e "$SOCKET" ]
  run gatekeeper ctl --config "$BATS_TEST_TMPDIR/gk.toml" status
  [ "$status" -eq 2 ]
}

@test "--admin-socket sets the path (over the file's), and ctl --socket reaches it" {
  start_default --admin-socket "$BATS_TEST_TMPDIR/flag.sock"
  [ -S "$BATS_TEST_TMPDIR/flag.sock" ]
  [ ! -e "$SOCKET" ]
  [ "$(gatekeeper ctl --socket "$BATS_TEST_TMPDIR/flag.sock" status | jq -r .ready)" = true ]
  effective=$(gatekeeper --check --config "$BATS_TEST_TMPDIR/gk.toml" --admin-socket /run/x.sock 2>/dev/null)
  [ "$(jq -r .admin_socket <<<"$effective")" = /run/x.sock ]
  # An empty --admin-socket disables it, as admin_socket = "" does.
  effective=$(gatekeeper --check --config "$BATS_TEST_TMPDIR/gk.toml" --admin-socket "")
  [ "$(jq -r .admin_socket <<<"$effective")" = null ]
}

@test "/metrics counts requests by upstream and status, with histograms, plugin and backend metrics" {
  start_default
  for i in 1 2 3 4 5; do [ "$(http_code "$GK_URL/pool/$i")" = 200 ]; done
  [ "$(http_code "$GK_URL/nowhere")" = 404 ]
  metrics() { curl -sS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics"; }
  # Issue 13: the listener, method and error kind labels follow upstream and status.
  eventually 50 'metrics | grep -qx "gatekeeper_requests_total{upstream=\"pool\",status=\"200\",listener=\"http-public\",method=\"GET\",error_kind=\"\"} 5"'
  # The 404 may come in a later batch of request records.
  eventually 50 'metrics | grep -qx "gatekeeper_requests_total{upstream=\"\",status=\"404\",listener=\"http-public\",method=\"GET\",error_kind=\"no_route\"} 1"'
  text=$(metrics)
  grep -qx 'gatekeeper_requests_total{upstream="",status="404",listener="http-public",method="GET",error_kind="no_route"} 1' <<<"$text"
  grep -q '^gatekeeper_request_duration_seconds_bucket{le="+Inf",upstream="pool"} 5$' <<<"$text"
  grep -q '^gatekeeper_request_duration_seconds_count{upstream="pool"} 5$' <<<"$text"
  grep -Eq '^gatekeeper_plugin_calls_total\{plugin="request-id"\} [1-9]' <<<"$text"
  grep -q '^gatekeeper_plugin_errors_total{plugin="request-id"} 0$' <<<"$text"
  grep -q '^gatekeeper_plugin_timeouts_total{plugin="request-id"} 0$' <<<"$text"
  grep -q '^gatekeeper_plugin_restarts_total{plugin="static"} 0$' <<<"$text"
  grep -q '^gatekeeper_plugin_recycles_total{plugin="request-id"} 0$' <<<"$text"
  grep -q '^gatekeeper_plugin_bad_results_total{plugin="request-id"} 0$' <<<"$text"
  grep -q '^gatekeeper_plugin_retries_total{plugin="request-id"} 0$' <<<"$text"
  grep -q '^gatekeeper_plugin_standby_ready{plugin="request-id"} 0$' <<<"$text"
  grep -q '^gatekeeper_plugin_instances{plugin="request-id",state="running"} 1$' <<<"$text"
  grep -q '^gatekeeper_plugin_instances{plugin="request-id",state="backoff"} 0$' <<<"$text"
  grep -q '^gatekeeper_backend_healthy{upstream="pool",backend="0"} 1$' <<<"$text"
  grep -q '^gatekeeper_backend_in_flight{upstream="pool",backend="1"} 0$' <<<"$text"
  grep -q '^gatekeeper_metrics_dropped_total 0$' <<<"$text"
  [ "$(tail -n 1 <<<"$text")" = "# EOF" ]
  # A drained backend reads as not healthy; the admin socket serves the same metrics.
  ctl drain pool 0
  metrics | grep -q '^gatekeeper_backend_healthy{upstream="pool",backend="0"} 0$'
  ctl metrics | grep -q '^gatekeeper_requests_total{upstream="pool",status="200",listener="http-public",method="GET",error_kind=""} 5$'
  [ "$(http_code "http://127.0.0.1:$METRICS_PORT/other")" = 404 ]
}
