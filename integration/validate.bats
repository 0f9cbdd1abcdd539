#!/usr/bin/env bats
# Validate before applying: a watched static-upstreams file that does not check changes nothing
# (the last good state keeps serving), is logged once per save with its file, line and key, and
# shows as rejected in `ctl plugins` and /metrics until a good version applies; `gatekeeper
# check` starts every plugin to check its config (`configure` with `check: true`), unless
# `--no-plugins`.

load helpers

setup() {
  start_backends b0
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_pool "$UPSTREAMS" round_robin "${BACKEND_PORTS[0]}"
  METRICS_PORT=$(free_port)
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
metrics_listen = "127.0.0.1:$METRICS_PORT"

$(static_upstreams_table)
TOML
}

teardown() {
  stop_all
}

ctl() {
  gatekeeper ctl --socket-dir "$BATS_TEST_TMPDIR" "$@"
}

# save FILE: writes stdin to FILE the way editors save (a temporary file renamed over it).
save() {
  cat >"$1.tmp"
  mv "$1.tmp" "$1"
}

rejected_metric() {
  curl -s --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" |
    grep -E '^gatekeeper_plugin_config_rejected\{plugin="static"\}' | awk '{print $2}'
}

@test "a typo in the watched upstreams file keeps the last good state, logged once per save and shown as rejected" {
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$(http_code "$GK_URL/pool/x")" = 200 ]
  [ "$(rejected_metric)" = 0 ]

  # The operator's typo: round_robbin.
  sed 's/round_robin/round_robbin/' "$UPSTREAMS" | save "$UPSTREAMS"
  wait_for_log "keeping the last good state: $UPSTREAMS:5: pool.balancer: unknown balancer \`round_robbin\`"
  eventually 50 '[ "$(rejected_metric)" = 1 ]'
  # Still served, for a while (several debounce periods), and logged once.
  for i in $(seq 1 10); do
    [ "$(http_code "$GK_URL/pool/$i")" = 200 ]
    sleep 0.1
  done
  [ "$(gk_log | grep -c 'upstreams file not applied')" = 1 ]
  [ "$(gk_log | grep -c 'rejected its new config')" = 1 ]
  run ctl --table plugins
  [ "$status" -eq 0 ]
  grep -q "config rejected: $UPSTREAMS:5: pool.balancer: unknown balancer" <<<"$output"
  [ "$(ctl plugins | jq -r '.[] | select(.name == "static") | .config_error')" != null ]

  # A second bad save, another error: logged once more.
  sed 's/round_robbin/least_outstandin/' "$UPSTREAMS" | save "$UPSTREAMS"
  wait_for_log 'pool.balancer: unknown balancer `least_outstandin`'
  sleep 0.5
  [ "$(gk_log | grep -c 'upstreams file not applied')" = 2 ]
  [ "$(http_code "$GK_URL/pool/x")" = 200 ]

  # An unreadable (removed) file keeps serving too.
  rm "$UPSTREAMS"
  wait_for_log "$UPSTREAMS: could not read the upstreams file"
  [ "$(http_code "$GK_URL/pool/x")" = 200 ]

  # Fixed, and moved: applies and clears the rejection.
  write_pool "$UPSTREAMS.new" least_outstanding "${BACKEND_PORTS[0]}"
  sed -i 's/prefixes: \[pool\]/prefixes: [fixed]/' "$UPSTREAMS.new"
  mv "$UPSTREAMS.new" "$UPSTREAMS"
  eventually 50 '[ "$(http_code "$GK_URL/fixed/x")" = 200 ]'
  eventually 50 '[ "$(rejected_metric)" = 0 ]'
  wait_for_log "config is accepted again"
  [ "$(ctl plugins | jq -r '.[] | select(.name == "static") | .config_error')" = null ]
}

@test "gatekeeper check names the file, line and key of a bad upstreams file" {
  printf 'api:\n  prefixes: [api]\n  balancer: round_robbin\n  backends: [http://127.0.0.1:1]\n' >"$UPSTREAMS"
  run gatekeeper check --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$status" -eq 1 ]
  [ "${lines[0]}" = "$BATS_TEST_TMPDIR/gk.toml: plugin static: $UPSTREAMS:3: api.balancer: unknown balancer \`round_robbin\`, expected one of \`random\`, \`round_robin\`, \`least_outstanding\`" ]
  [ "${#lines[@]}" = 1 ]

  # --no-plugins skips the plugins: the config itself is fine.
  run gatekeeper check --no-plugins --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$status" -eq 0 ]
  [ "$output" = "$BATS_TEST_TMPDIR/gk.toml: ok" ]

  # A good file passes.
  write_pool "$UPSTREAMS" round_robin "${BACKEND_PORTS[0]}"
  run gatekeeper check --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$status" -eq 0 ]
  [ "$output" = "$BATS_TEST_TMPDIR/gk.toml: ok" ]
}

@test "gatekeeper check names a plugin that cannot start" {
  cat >>"$BATS_TEST_TMPDIR/gk.toml" <<TOML

[[plugin]]
name = "broken"
type = "modifier"
command = "sh"
args = ["-c", "echo 'no config for you' >&2; exit 3"]
TOML
  run gatekeeper check --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$status" -eq 1 ]
  [ "${#lines[@]}" = 1 ]
  grep -q "^$BATS_TEST_TMPDIR/gk.toml: plugin broken: the process exited before it was ready (exit status: 3); its last stderr lines: .*no config for you" <<<"$output"

  run gatekeeper check --no-plugins --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$status" -eq 0 ]
  # After other flags too.
  run gatekeeper check --config "$BATS_TEST_TMPDIR/gk.toml" --listen 127.0.0.1:1 --no-plugins
  [ "$status" -eq 0 ]
}

@test "gatekeeper check names a plugin command that does not exist" {
  run gatekeeper check --config "$BATS_TEST_TMPDIR/gk.toml" --modifier-plugin "$BATS_TEST_TMPDIR/no-such-plugin"
  [ "$status" -eq 1 ]
  grep -qF "plugin command \`$BATS_TEST_TMPDIR/no-such-plugin\` not found" <<<"$output"
}

# sdk_plugin SDK NAME CONFIG: a `[[plugin]]` modifier table running SDK's conformance plugin
# (plugin-sdk/conformance/README.md) named NAME with the inline config map CONFIG.
sdk_plugin() {
  echo '[[plugin]]'
  echo "name = \"$2\""
  echo 'type = "modifier"'
  case $1 in
    rust) echo "command = $(toml_string "$BIN_DIR/conformance-plugin")" ;;
    python) printf 'command = "python3"\nargs = [%s]\n' "$(toml_string "$REPO_ROOT/plugin-sdk/python/conformance_plugin.py")" ;;
    node) printf 'command = "node"\nargs = [%s]\n' "$(toml_string "$REPO_ROOT/plugin-sdk/node/conformance-plugin.js")" ;;
  esac
  echo "config = $3"
}

@test "every SDK: gatekeeper check reaches the plugin's check entry point, and config_status reaches ctl" {
  local sdk
  for sdk in rust python node; do
    sdk_plugin "$sdk" "$sdk-check" '{ invalid = "conf.yml:7: key: nope" }' >>"$BATS_TEST_TMPDIR/gk.toml"
    echo >>"$BATS_TEST_TMPDIR/gk.toml"
  done
  run gatekeeper check --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$status" -eq 1 ]
  [ "${#lines[@]}" = 3 ]
  for sdk in rust python node; do
    grep -qxF "$BATS_TEST_TMPDIR/gk.toml: plugin $sdk-check: checked: conf.yml:7: key: nope" <<<"$output"
  done

  # config_status: each plugin reports a rejection on start, then the config accepted.
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
$(static_upstreams_table)
TOML
  for sdk in rust python node; do
    echo >>"$BATS_TEST_TMPDIR/gk.toml"
    sdk_plugin "$sdk" "$sdk-report" '{ report_config_error = "conf.yml:1: k: bad" }' >>"$BATS_TEST_TMPDIR/gk.toml"
  done
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  for sdk in rust python node; do
    wait_for_log "plugin=$sdk-report error=conf.yml:1: k: bad"
    wait_for_log "config is accepted again plugin=$sdk-report"
  done
  [ "$(ctl plugins | jq '[.[] | select(.config_error != null)] | length')" = 0 ]
}
