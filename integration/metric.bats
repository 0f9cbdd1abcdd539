#!/usr/bin/env bats
# Metric plugins: test-metric records every batch it gets. Batches of at most
# metrics_batch_size records, flushed every metrics_flush_interval and once more at shutdown;
# request, upstream, plugin, event and profiling records with the fields of docs/protocol.md.

load helpers

setup() {
  start_backend echo-backend
  DEAD_PORT=$(free_port)
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT" "$DEAD_PORT"
  METRICS="$BATS_TEST_TMPDIR/metrics.jsonl"
  MODS="$BATS_TEST_TMPDIR/modifier.jsonl"
}

teardown() {
  stop_all
}

# write_config [BATCH_SIZE] [FLUSH_INTERVAL] [EXTRA TOML]: static-upstreams, test-metric named
# `metrics`, test-modifier named `mod` (all three hooks).
write_config() {
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
metrics_batch_size = ${1:-5}
metrics_flush_interval = "${2:-200ms}"

$(static_upstreams_table 'backend_ids = "index"')

$(test_metric_table)

[[plugin]]
name = "mod"
type = "modifier"
command = "test-modifier"
config = { file = "$MODS" }
${3:-}
TOML
}

start_default() {
  write_config "$@"
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
}

# Filters over the records file.
REQUESTS='select(.method == "request_metric") | .params.metrics[]'
EVENTS='select(.method == "event_metric") | .params.events[]'
UPSTREAM_METRICS='select(.method == "upstream_metric") | .params.metrics[]'
PLUGIN_METRICS='select(.method == "plugin_metric") | .params.metrics[]'

# event NAME: the filter for events named NAME.
event() {
  echo "$EVENTS | select(.name == \"$1\")"
}

@test "request records: status, upstream, backend, bytes, phases with one entry per modifier hook" {
  start_default
  declare -A size
  for ((i = 0; i < 7; i++)); do
    # Different query lengths give different body lengths.
    path="/echo/r$i"
    size[$path]=$(curl -sS --max-time 5 -o /dev/null -w '%{size_download}' "$GK_URL$path?pad=$(printf '%*s' $((i * 13)) '' | tr ' ' x)")
  done
  [ "$(curl -sS --max-time 5 --data-binary 'hello body' "$GK_URL/echo/post" | jq -r .body_length)" = 10 ]
  wait_for_records "$METRICS" "$REQUESTS" 8 30
  records "$METRICS" "$REQUESTS" >"$BATS_TEST_TMPDIR/requests"
  [ "$(wc -l <"$BATS_TEST_TMPDIR/requests")" -eq 8 ]
  for ((i = 0; i < 7; i++)); do
    path="/echo/r$i"
    run jq -c --arg path "$path" 'select(.path == $path)' "$BATS_TEST_TMPDIR/requests"
    echo "$output"
    [ "$(jq -r .status <<<"$output")" = 200 ]
    [ "$(jq -r .upstream <<<"$output")" = echo ]
    [ "$(jq -r .backend <<<"$output")" = 0 ]
    [ "$(jq -r .method <<<"$output")" = GET ]
    [ "$(jq -r .listener <<<"$output")" = http-public ]
    [ "$(jq -r .host <<<"$output")" = "127.0.0.1:$GK_PORT" ]
    [ "$(jq -r .bytes_in <<<"$output")" = 0 ]
    [ "$(jq -r .bytes_out <<<"$output")" = "${size[$path]}" ]
    [ "$(jq -r 'has("error")' <<<"$output")" = false ]
    [ "$(jq -r '.time_ms | type' <<<"$output")" = number ]
    [ "$(jq '.phases.upstream_response_us > 0 and .phases.total_us >= .phases.upstream_response_us' <<<"$output")" = true ]
    [ "$(jq '.phases | [.router_us, .loadbalancer_us, .upstream_connect_us] | all(type == "number")' <<<"$output")" = true ]
    [ "$(jq -c '[.phases.modifiers[] | [.plugin, .hook]]' <<<"$output")" = '[["mod","modify_request"],["mod","modify_response"]]' ]
    [ "$(jq '.phases.modifiers | all(.latency_us | type == "number")' <<<"$output")" = true ]
  done
  # All bodies differ in length, so bytes_out cannot match by accident.
  [ "$(printf '%s\n' "${size[@]}" | sort -u | wc -l)" -eq 7 ]
  run jq -c 'select(.path == "/echo/post")' "$BATS_TEST_TMPDIR/requests"
  [ "$(jq -r .method <<<"$output")" = POST ]
  [ "$(jq -r .bytes_in <<<"$output")" = 10 ]
  # One upstream record per forwarded request.
  wait_for_records "$METRICS" "$UPSTREAM_METRICS" 8 30
  [ "$(count_records "$METRICS" "$UPSTREAM_METRICS | select(.upstream == \"echo\" and .backend == \"0\" and .status == 200 and .latency_us > 0)")" -eq 8 ]
}

@test "events: startup, registry, plugins, requests; proxy errors are request_failed, backend answers request_succeeded" {
  start_default
  [ "$(http_code "$GK_URL/echo/ok")" = 200 ]
  [ "$(http_code "$GK_URL/dead/x")" = 502 ]
  [ "$(http_code "$GK_URL/nowhere")" = 404 ]
  [ "$(http_code "$GK_URL/echo/status/404")" = 404 ]
  wait_for_records "$METRICS" "$(event request_failed)" 2 30
  wait_for_records "$METRICS" "$(event request_succeeded)" 2 30
  records "$METRICS" "$EVENTS | .name" | sort -u >"$BATS_TEST_TMPDIR/names"
  cat "$BATS_TEST_TMPDIR/names"
  for name in app_started listener_started upstream_added backend_added plugin_started \
    request_accepted request_succeeded request_failed; do
    grep -qx "\"$name\"" "$BATS_TEST_TMPDIR/names"
  done
  ! grep -qx '"app_stopped"' "$BATS_TEST_TMPDIR/names" || false
  # Attributes.
  [ "$(records "$METRICS" "$(event app_started) | .attributes.listeners[]")" = "\"http-public=127.0.0.1:$GK_PORT\"" ]
  [ "$(records "$METRICS" "$(event listener_started) | .attributes.address")" = "\"127.0.0.1:$GK_PORT\"" ]
  [ "$(records "$METRICS" "$(event upstream_added) | .attributes.upstream" | sort | tr '\n' ' ')" = '"dead" "echo" "slow" ' ]
  [ "$(count_records "$METRICS" "$(event backend_added) | select(.attributes.upstream == \"echo\" and .attributes.backend == \"0\" and .attributes.address == \"http://127.0.0.1:$BACKEND_PORT\")")" -eq 1 ]
  [ "$(records "$METRICS" "$(event plugin_started) | .attributes.plugin" | sort | tr '\n' ' ')" = '"metrics" "mod" "static" ' ]
  [ "$(count_records "$METRICS" "$(event plugin_started) | select(.attributes.plugin == \"mod\" and .attributes.pid == $(plugin_pid mod))")" -eq 1 ]
  [ "$(count_records "$METRICS" "$(event request_accepted)")" -eq 4 ]
  [ "$(count_records "$METRICS" "$(event request_accepted) | select(.attributes.method == \"GET\" and .attributes.path == \"/dead/x\")")" -eq 1 ]
  [ "$(records "$METRICS" "$(event request_failed) | [.attributes.status, .attributes.error]" | sort | tr '\n' ' ')" = '[404,"no_route"] [502,"backend_unreachable"] ' ]
  [ "$(records "$METRICS" "$(event request_succeeded) | [.attributes.status, .attributes.upstream]" | sort | tr '\n' ' ')" = '[200,"echo"] [404,"echo"] ' ]
  # The request records of the errors carry the proxy's error kind.
  wait_for_records "$METRICS" "$REQUESTS" 4 30
  [ "$(records "$METRICS" "$REQUESTS | select(.path == \"/dead/x\") | [.status, .error, .upstream, .backend]")" = '[502,"backend_unreachable","dead","0"]' ]
  [ "$(records "$METRICS" "$REQUESTS | select(.path == \"/nowhere\") | [.status, .error, .upstream, .backend]")" = '[404,"no_route",null,null]' ]
  # The unreachable backend is an upstream record with an error and no status.
  [ "$(records "$METRICS" "$UPSTREAM_METRICS | select(.upstream == \"dead\") | [has(\"status\"), (.error | type)]")" = '[false,"string"]' ]
  # Profiles: each plugin's start and the whole startup.
  wait_for_records "$METRICS" 'select(.method == "profiling_metric") | .params.profiles[] | select(.name == "startup")' 1 30
  [ "$(records "$METRICS" 'select(.method == "profiling_metric") | .params.profiles[] | select(.name == "plugin_start") | .attributes.plugin' | sort | tr '\n' ' ')" = '"metrics" "mod" "static" ' ]
  [ "$(records "$METRICS" 'select(.method == "profiling_metric") | .params.profiles[] | .duration_us | type' | sort -u)" = '"number"' ]
}

@test "batches never hold more than metrics_batch_size records" {
  start_default
  for ((i = 0; i < 12; i++)); do
    [ "$(http_code "$GK_URL/echo/b$i")" = 200 ]
  done
  wait_for_records "$METRICS" "$REQUESTS" 12 30
  sleep 0.5 # let the last flush land
  [ "$(count_records "$METRICS" "$REQUESTS")" -eq 12 ]
  [ "$(count_records "$METRICS" "$(event request_accepted)")" -eq 12 ]
  # Every batch of every kind: 1 to 5 records; startup's events filled one to exactly 5.
  sizes=$(records "$METRICS" '.params | to_entries[0].value | length')
  echo "batch sizes: $(tr '\n' ' ' <<<"$sizes")"
  [ "$(sort -n <<<"$sizes" | tail -n1)" -eq 5 ]
  [ "$(sort -n <<<"$sizes" | head -n1)" -ge 1 ]
}

@test "records wait for a full batch or the interval, and SIGTERM flushes them with app_stopped" {
  # A batch size and an interval never reached: nothing is sent before shutdown.
  start_default 1000 1h
  for ((i = 0; i < 3; i++)); do
    [ "$(http_code "$GK_URL/echo/f$i")" = 200 ]
  done
  sleep 0.5
  [ "$(count_records "$METRICS" "$REQUESTS")" -eq 0 ]
  [ "$(count_records "$METRICS" "$EVENTS")" -eq 0 ]
  stop_gatekeeper
  [ "$(count_records "$METRICS" "$REQUESTS")" -eq 3 ]
  [ "$(count_records "$METRICS" "$(event app_stopped)")" -eq 1 ]
  [ "$(count_records "$METRICS" "$(event listener_stopped)")" -eq 1 ]
  [ "$(count_records "$METRICS" "$(event app_started)")" -eq 1 ]
  # app_stopped is the last event.
  [ "$(records "$METRICS" "$EVENTS | .name" | tail -n1)" = '"app_stopped"' ]
}

@test "the final flush also happens with the default batching" {
  start_default 5 200ms
  [ "$(http_code "$GK_URL/echo/last")" = 200 ]
  stop_gatekeeper
  [ "$(count_records "$METRICS" "$(event app_stopped)")" -eq 1 ]
  [ "$(count_records "$METRICS" "$REQUESTS | select(.path == \"/echo/last\")")" -eq 1 ]
  gk_log | grep -q 'gatekeeper stopped'
}

@test "plugin_metric names the plugin and method of every hook call, with errors" {
  write_config 5 200ms "
[[plugin]]
name = \"broken\"
type = \"modifier\"
command = \"test-modifier\"
args = [\"--hooks\", \"modify_request\", \"--fail\", \"true\"]
failure = \"open\"

[[plugin]]
name = \"router\"
type = \"router\"
command = \"test-router\"

[[plugin]]
name = \"lb\"
type = \"loadbalancer\"
command = \"test-loadbalancer\"
"
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  for ((i = 0; i < 3; i++)); do
    [ "$(http_code -H 'x-route: echo' "$GK_URL/p$i")" = 200 ]
  done
  wait_for_records "$METRICS" "$PLUGIN_METRICS | select(.plugin == \"broken\")" 3 30
  wait_for_records "$METRICS" "$PLUGIN_METRICS | select(.plugin == \"mod\" and .method == \"modify_response\")" 3 30
  records "$METRICS" "$PLUGIN_METRICS" >"$BATS_TEST_TMPDIR/plugin"
  count() { jq -s "map(select($1)) | length" "$BATS_TEST_TMPDIR/plugin"; }
  [ "$(count '.plugin == "mod" and .method == "modify_request" and (has("error") | not)')" -eq 3 ]
  [ "$(count '.plugin == "mod" and .method == "modify_response" and (has("error") | not)')" -eq 3 ]
  [ "$(count '.plugin == "broken" and .method == "modify_request" and (.error | type == "string")')" -eq 3 ]
  [ "$(count '.plugin == "broken" and .method != "modify_request"')" -eq 0 ]
  [ "$(count '.plugin == "router" and .method == "route_request"')" -eq 3 ]
  [ "$(count '.plugin == "lb" and .method == "get_backend"')" -eq 3 ]
  [ "$(jq -s 'all(.latency_us | type == "number") and all(.time_ms | type == "number")' "$BATS_TEST_TMPDIR/plugin")" = true ]
  # Metric batches themselves are not metered.
  [ "$(count '.plugin == "metrics"')" -eq 0 ]
  # The request records show the fail-open modifier's failed hook in their phases too.
  [ "$(records "$METRICS" "$REQUESTS | select(.path == \"/p0\") | [.phases.modifiers[] | .plugin + \":\" + .hook] | join(\",\")")" = '"mod:modify_request,broken:modify_request,mod:modify_response"' ]
}

@test "a plugin restart produces plugin_failed and plugin_restarted events" {
  start_default
  pid=$(plugin_pid mod)
  kill -9 "$pid"
  new_pid=$(wait_for_restart mod "$pid")
  wait_for_records "$METRICS" "$(event plugin_restarted)" 1 30
  wait_for_records "$METRICS" "$(event plugin_failed)" 1 30
  [ "$(records "$METRICS" "$(event plugin_failed) | .attributes.plugin")" = '"mod"' ]
  [ "$(records "$METRICS" "$(event plugin_failed) | .attributes.reason | type")" = '"string"' ]
  [ "$(records "$METRICS" "$(event plugin_restarted) | [.attributes.plugin, .attributes.restarts, .attributes.pid]")" = "[\"mod\",1,$new_pid]" ]
  # In order: failed before restarted.
  [ "$(records "$METRICS" "$EVENTS | select(.name == \"plugin_failed\" or .name == \"plugin_restarted\") | .name" | tr '\n' ' ')" = '"plugin_failed" "plugin_restarted" ' ]
  [ "$(http_code "$GK_URL/echo/after")" = 200 ]
}
