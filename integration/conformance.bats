#!/usr/bin/env bats
# The shared conformance suite through the real gatekeeper: every case of
# plugin-sdk/conformance/cases.json against each SDK's conformance plugin (Rust, Python, Node),
# as plugin-sdk/conformance/README.md (`cases.json`) describes it.
#
# One test per (SDK, role): it starts gatekeeper once, with the SDK's conformance plugin in that
# role, and runs every case of the role against it. A failing test lists each case as `ok` or
# `FAIL` with what was wrong and what was observed (status, response headers, body), then the end
# of gatekeeper's log. (bats 1.8 cannot generate one test per case; one gatekeeper per role also
# keeps the suite fast.)
#
# An SDK whose conformance plugin does not exist (yet) is skipped with a message; the Rust one
# must exist (`cargo build --workspace --bins`).

load helpers

CASES="$REPO_ROOT/plugin-sdk/conformance/cases.json"

setup() {
  start_backends backend-a backend-b
  A_URL="http://127.0.0.1:${BACKEND_PORTS[0]}"
  B_URL="http://127.0.0.1:${BACKEND_PORTS[1]}"
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  cat >"$UPSTREAMS" <<YAML
echo:
  name: echo
  timeout: 5s
  prefixes: [echo]
  backends:
    - $A_URL
    - $B_URL
other:
  name: other
  timeout: 5s
  prefixes: [other]
  backends:
    - $B_URL
YAML
  RECORDS="$BATS_TEST_TMPDIR/conformance.jsonl"
}

teardown() {
  stop_all
}

# plugin_script SDK: the script of SDK's conformance plugin (nothing for Rust, a binary).
plugin_script() {
  case $1 in
    python) echo "$REPO_ROOT/plugin-sdk/python/conformance_plugin.py" ;;
    node) echo "$REPO_ROOT/plugin-sdk/node/conformance-plugin.js" ;;
  esac
}

# require_plugin SDK: fails when the Rust conformance plugin is not built; skips the test when a
# Python or Node one does not exist (yet).
require_plugin() {
  local script
  if [[ $1 == rust ]]; then
    [[ -x $BIN_DIR/conformance-plugin ]] && return 0
    echo "no $BIN_DIR/conformance-plugin: run cargo build --workspace --bins" >&2
    return 1
  fi
  script=$(plugin_script "$1")
  [[ -f $script ]] || skip "the $1 SDK has no conformance plugin yet (${script#"$REPO_ROOT"/} is missing)"
}

# plugin_command SDK: the TOML `command` and `args` lines that run SDK's conformance plugin.
plugin_command() {
  case $1 in
    rust) echo "command = $(toml_string "$BIN_DIR/conformance-plugin")" ;;
    python) printf 'command = "python3"\nargs = [%s]\n' "$(toml_string "$(plugin_script python)")" ;;
    node) printf 'command = "node"\nargs = [%s]\n' "$(toml_string "$(plugin_script node)")" ;;
  esac
}

# start_conformance SDK ROLE: gatekeeper with static-upstreams (upstreams `echo` and `other`) and
# SDK's conformance plugin named `conformance` in ROLE. As an upstream plugin it registers
# upstream `conformance` (prefix `conformance`, backend-a); in the other roles it gets
# `file = $RECORDS` through the pass-through flag `--ROLE-file`. Metrics are flushed every 100 ms.
start_conformance() {
  local sdk=$1 role=$2 command config="" flags=()
  command=$(plugin_command "$sdk")
  if [[ $role == upstream ]]; then
    config="config = { upstream_id = \"conformance\", prefix = \"conformance\", backends = $(toml_string "$A_URL") }"
  else
    flags=("--$role-file" "$RECORDS")
  fi
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
metrics_flush_interval = "100ms"

$(static_upstreams_table 'backend_ids = "index"')

[[plugin]]
name = "conformance"
type = "$role"
$command
$config
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml" "${flags[@]}"
}

# check_case SDK CASE: sends CASE's request (a JSON object of cases.json) and checks its
# `expect`, with `SDK` in expected strings replaced by the SDK's name. Prints nothing and
# succeeds when it passes; prints each problem and what was observed when it fails.
check_case() {
  local sdk=$1 case=$2
  local expect method path key value actual name want problems=() header_args=() before=0
  local body="$BATS_TEST_TMPDIR/body" headers="$BATS_TEST_TMPDIR/headers"
  expect=$(jq -c --arg sdk "$sdk" \
    '.expect | walk(if type == "string" then gsub("SDK"; $sdk) else . end)' <<<"$case")
  method=$(jq -r '.request.method // "GET"' <<<"$case")
  path=$(jq -r '.request.path' <<<"$case")
  mapfile -t header_args < <(jq -r '.request.headers // {} | to_entries[] | "-H", "\(.key): \(.value)"' <<<"$case")
  [[ -f $RECORDS ]] && before=$(wc -l <"$RECORDS")
  : >"$body"
  : >"$headers"
  local code
  code=$(curl -sS --max-time 5 -X "$method" -D "$headers" -o "$body" -w '%{http_code}' \
    "${header_args[@]}" "$GK_URL$path" 2>&1) || problems+=("curl failed: $code")

  # The backend's echo, when the body is one.
  local echoed=null
  jq -e 'type == "object"' "$body" >/dev/null 2>&1 && echoed=$(jq -c . "$body")

  while IFS= read -r key; do
    value=$(jq -c --arg k "$key" '.[$k]' <<<"$expect")
    case $key in
      status)
        [[ $code == "$value" ]] || problems+=("status: expected $value, got $code")
        ;;
      backend | backend_path)
        actual=$(jq -c --arg f "${key/backend_path/path}" 'if type == "object" then .[$f] else null end' <<<"$echoed")
        [[ $actual == "$value" ]] || problems+=("$key: expected $value, got $actual (from the backend's echo)")
        ;;
      backend_headers)
        while IFS=$'\t' read -r name want; do
          actual=$(jq -r --arg n "$name" 'if type == "object" then .headers[$n] // "(absent)" else "(no echo)" end' <<<"$echoed")
          [[ $actual == "$want" ]] || problems+=("backend header $name: expected '$want', got '$actual'")
        done < <(jq -r '.backend_headers | to_entries[] | "\(.key)\t\(.value)"' <<<"$expect")
        ;;
      response_headers)
        while IFS=$'\t' read -r name want; do
          actual=$(response_header "$headers" "$name")
          [[ $actual == "$want" ]] || problems+=("response header $name: expected '$want', got '${actual:-(absent)}'")
        done < <(jq -r '.response_headers | to_entries[] | "\(.key)\t\(.value)"' <<<"$expect")
        ;;
      body_json)
        if ! jq -e . "$body" >/dev/null 2>&1; then
          problems+=("body_json: the body is not JSON")
        elif ! json_matches "$value" "$(jq -c . "$body")"; then
          problems+=("body_json: expected $value")
        fi
        ;;
      body_contains)
        grep -qF -- "$(jq -r . <<<"$value")" "$body" || problems+=("body_contains: no $value in the body")
        ;;
      file_has)
        # A record with this method, appended after the request was sent, within 3 s.
        local filter="any(.[]; .method == $value)" # slurped: jq 1.6's -e sees only the last input
        local found=0 i
        for ((i = 0; i < 30; i++)); do
          if [[ -f $RECORDS ]] && tail -n +"$((before + 1))" "$RECORDS" | jq -se "$filter" >/dev/null 2>&1; then
            found=1
            break
          fi
          sleep 0.1
        done
        ((found)) || problems+=("file_has: no {\"method\":$value} appended to the plugin's file within 3 s (file: $(tail -n +"$((before + 1))" "$RECORDS" 2>/dev/null | tr '\n' ' '))")
        ;;
      *)
        problems+=("unknown expectation \`$key\` (update integration/conformance.bats)")
        ;;
    esac
  done < <(jq -r 'keys_unsorted[]' <<<"$expect")

  ((${#problems[@]} == 0)) && return 0
  local problem
  for problem in "${problems[@]}"; do echo "    - $problem"; done
  echo "    request: $method $path $(jq -c '.request.headers // {}' <<<"$case")"
  echo "    observed: status $code; headers: $(tr -d '\r' <"$headers" | tail -n +2 | paste -sd ';' -)"
  echo "    body: $(head -c 600 "$body")"
  return 1
}

# conformance SDK ROLE: every case of ROLE against SDK's conformance plugin, one gatekeeper.
conformance() {
  local sdk=$1 role=$2 cases n i name report failed=0
  cases=$(jq -c --arg role "$role" '[.[] | select(.role == $role)]' "$CASES")
  n=$(jq length <<<"$cases")
  require_plugin "$sdk"
  ((n > 0)) || skip "cases.json has no $role case"
  start_conformance "$sdk" "$role"
  for ((i = 0; i < n; i++)); do
    name=$(jq -r ".[$i].name" <<<"$cases")
    if report=$(check_case "$sdk" "$(jq -c ".[$i]" <<<"$cases")"); then
      echo "ok   [$sdk $role] $name"
    else
      echo "FAIL [$sdk $role] $name"
      echo "$report"
      failed=$((failed + 1))
    fi
  done
  if ((failed)); then
    echo "$failed of $n $role cases failed for the $sdk SDK; the end of gatekeeper's log:"
    gk_log | tail -n 30
    return 1
  fi
}

@test "cases.json is a list of cases with known roles" {
  jq -e 'type == "array" and length > 0 and
    all(.[]; (.name | type) == "string" and
      (.role | IN("modifier", "router", "loadbalancer", "upstream", "metric")) and
      (.request.path | type) == "string" and (.expect | type) == "object")' "$CASES"
}

@test "rust: modifier cases" { conformance rust modifier; }
@test "rust: router cases" { conformance rust router; }
@test "rust: loadbalancer cases" { conformance rust loadbalancer; }
@test "rust: upstream cases" { conformance rust upstream; }
@test "rust: metric cases" { conformance rust metric; }

@test "python: modifier cases" { conformance python modifier; }
@test "python: router cases" { conformance python router; }
@test "python: loadbalancer cases" { conformance python loadbalancer; }
@test "python: upstream cases" { conformance python upstream; }
@test "python: metric cases" { conformance python metric; }

@test "node: modifier cases" { conformance node modifier; }
@test "node: router cases" { conformance node router; }
@test "node: loadbalancer cases" { conformance node loadbalancer; }
@test "node: upstream cases" { conformance node upstream; }
@test "node: metric cases" { conformance node metric; }
