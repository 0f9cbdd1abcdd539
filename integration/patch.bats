#!/usr/bin/env bats
# Patch results (docs/protocol.md, "Patch results"): a modifier answering modify_request or
# modify_response with a `patch` instead of the whole request or response. The plugin is a plain
# script speaking the protocol (integration/plugins/patch-modifier.py, no SDK); the echo backend
# lists the request headers it received (/hdr/list).

load helpers

PATCH_PLUGIN="$REPO_ROOT/integration/plugins/patch-modifier.py"

setup() {
  start_backend echo-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
}

teardown() {
  stop_all
}

# start_patcher MODE: gatekeeper with the patch plugin in MODE, failing closed with 599.
start_patcher() {
  start_with_modifier "$(cat <<TOML
[[plugin]]
name = "patcher"
type = "modifier"
command = "python3"
args = [$(toml_string "$PATCH_PLUGIN"), "$1"]
failure = "closed"
failure_status = 599
TOML
)"
}

@test "a request patch sets, appends and removes headers on what the backend receives" {
  start_patcher good
  run curl -sS --max-time 5 -D "$BATS_TEST_TMPDIR/h" -H 'X-Patched: client' -H 'X-Drop: 1' \
    -H 'X-Multi: a' -H 'X-Kept: k' "$GK_URL/echo/hdr/list"
  [ "$status" -eq 0 ]
  headers=$(jq -c .headers <<<"$output")
  [ "$(jq -c '[.[] | select(.[0] == "x-patched") | .[1]]' <<<"$headers")" = '["yes"]' ]
  [ "$(jq -c '[.[] | select(.[0] == "x-multi") | .[1]]' <<<"$headers")" = '["a","b"]' ]
  [ "$(jq -c '[.[] | select(.[0] == "x-kept") | .[1]]' <<<"$headers")" = '["k"]' ]
  [ "$(jq -c '[.[] | select(.[0] == "x-drop")] | length' <<<"$headers")" = 0 ]
  # The response patch: the status, and the context the request patch set.
  grep -q '^HTTP/1.1 203' "$BATS_TEST_TMPDIR/h"
  [ "$(response_header "$BATS_TEST_TMPDIR/h" x-seen-user)" = alice ]
}

@test "a bad patch is a bad result: the plugin's failure policy answers" {
  start_patcher bad
  [ "$(http_code "$GK_URL/echo/hdr/list")" = 599 ]
  wait_for_log 'bad result'
}

@test "a hook that declared its parts is sent only those and its patch applies" {
  start_patcher parts
  run curl -sS --max-time 5 -H 'Authorization: alice' -H 'X-Kept: k' "$GK_URL/echo/hdr/list"
  [ "$status" -eq 0 ]
  headers=$(jq -c .headers <<<"$output")
  [ "$(jq -r '.[] | select(.[0] == "x-user") | .[1]' <<<"$headers")" = alice ]
  [ "$(jq -r '.[] | select(.[0] == "x-seen") | .[1]' <<<"$headers")" = headers,method,path ]
  [ "$(jq -r '.[] | select(.[0] == "x-kept") | .[1]' <<<"$headers")" = k ]
}

@test "a hook that declared its parts and answers a whole request gets the failure policy" {
  start_patcher parts-whole
  [ "$(http_code "$GK_URL/echo/hdr/list")" = 599 ]
  wait_for_log 'declared its parts'
}
