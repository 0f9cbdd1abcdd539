#!/usr/bin/env bats
# `gatekeeper plugin check|call|replay`: one plugin driven from the shell, started as gatekeeper
# starts it, with no proxy. Every plugin under bins/ and plugin-sdk/examples passes `check`;
# `call` and `replay` against token-auth and rate-limit, read with jq; bad plugins (crash on
# start, crash on a call, garbage, a result of the wrong shape, too slow, an error answer) give
# the exit codes documented in docs/plugins.md ("Testing your plugin"). Needs python3 and node.

load helpers

bats_require_minimum_version 1.5.0

EXAMPLES="$REPO_ROOT/plugin-sdk/examples"

setup() {
  TOKENS="$BATS_TEST_TMPDIR/tokens"
  printf 'alpha\n' >"$TOKENS"
  TOKEN_AUTH="python3 $EXAMPLES/token-auth/token_auth.py"
}

# check_ok CMD TYPE [CONFIG]: `plugin check` exits 0 with "ok": true and every lifecycle step ok.
check_ok() {
  local out
  out=$(gatekeeper plugin check "$1" --type "$2" --config "${3:-{\}}") || {
    echo "check of $1 failed: $out" >&2
    return 1
  }
  jq -e '.ok and .problems == [] and ([.lifecycle[]] | unique) == ["ok"]' <<<"$out" >/dev/null || {
    echo "check of $1: $out" >&2
    return 1
  }
}

@test "plugin check: every built-in and example plugin runs its lifecycle cleanly" {
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  printf 'api:\n  prefixes: [api]\n  backends: [http://127.0.0.1:9]\n' >"$UPSTREAMS"
  check_ok static-upstreams upstream "{\"file\": \"$UPSTREAMS\"}"
  check_ok request-id modifier
  check_ok rate-limit modifier
  check_ok simple-loadbalancer loadbalancer
  check_ok dogstatsd-metrics metric
  # etcd-upstreams starts without etcd (it reports its config rejected and serves what it knew).
  check_ok etcd-upstreams upstream '{"endpoints": "http://127.0.0.1:9"}'
  check_ok least-latency loadbalancer
  check_ok traffic-shaping modifier
  check_ok "$TOKEN_AUTH" modifier "{\"tokens_file\": \"$TOKENS\"}"
  check_ok "node $EXAMPLES/canary/canary.js" router
  check_ok "python3 $EXAMPLES/access-log/access_log.py" metric "{\"path\": \"$BATS_TEST_TMPDIR/access.log\"}"
}

@test "plugin check: prints the declared hooks and the manager calls of an upstream plugin" {
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  printf 'api:\n  prefixes: [api]\n  backends: [http://127.0.0.1:9]\n' >"$UPSTREAMS"
  run --separate-stderr gatekeeper plugin check static-upstreams --type upstream --config "{\"file\": \"$UPSTREAMS\"}"
  [ "$status" -eq 0 ]
  [ "$(jq -r '.manager_calls[0].method' <<<"$output")" = apply_batch ]
  [ "$(jq -r '.manager_calls[0].params.changes[0].add_upstream.upstream.id' <<<"$output")" = api ]
  run --separate-stderr gatekeeper plugin check "$TOKEN_AUTH" --type modifier --config "{\"tokens_file\": \"$TOKENS\"}"
  [ "$status" -eq 0 ]
  [ "$(jq -c '.hooks' <<<"$output")" = '["modify_request"]' ]
  # A config the plugin refuses: exit 1, the plugin's message, configure failed.
  run --separate-stderr gatekeeper plugin check static-upstreams --type upstream
  [ "$status" -eq 1 ]
  [ "$(jq -r '.lifecycle.configure' <<<"$output")" = failed ]
  [[ $(jq -r '.problems[0].message' <<<"$output") == *"config key \`file\`"* ]]
}

@test "plugin call: token-auth denies a request without a token and passes one with it" {
  run --separate-stderr gatekeeper plugin call "$TOKEN_AUTH" --type modifier --hook modify_request \
    --config "{\"tokens_file\": \"$TOKENS\"}" --path /x
  [ "$status" -eq 0 ]
  [ "$(jq -r '.response.status' <<<"$output")" = 401 ]
  [[ $(jq -r '.response.headers[] | select(.[0] == "www-authenticate") | .[1]' <<<"$output") == Bearer* ]]
  run --separate-stderr gatekeeper plugin call "$TOKEN_AUTH" --type modifier --hook modify_request \
    --config "@$BATS_TEST_TMPDIR/config.json" --path /x -H 'Authorization: Bearer alpha' 2>/dev/null
  # @file: a missing file is a usage error.
  [ "$status" -eq 2 ]
  echo "{\"tokens_file\": \"$TOKENS\"}" >"$BATS_TEST_TMPDIR/config.json"
  run --separate-stderr gatekeeper plugin call "$TOKEN_AUTH" --type modifier --hook modify_request \
    --config "@$BATS_TEST_TMPDIR/config.json" --path /x -H 'Authorization: Bearer alpha'
  [ "$status" -eq 0 ]
  [ "$(jq -r '.response' <<<"$output")" = null ]
}

@test "plugin call: --input gives the params as JSON, from a file or stdin" {
  params='{"request": {"method": "GET", "path": "/x", "headers": [["authorization", "Bearer alpha"]]}}'
  run --separate-stderr gatekeeper plugin call "$TOKEN_AUTH" --type modifier --hook modify_request \
    --config "{\"tokens_file\": \"$TOKENS\"}" --input "$params"
  [ "$status" -eq 0 ]
  [ "$(jq -r '.response' <<<"$output")" = null ]
  out=$(echo '{"request": {"method": "GET", "path": "/x"}}' |
    gatekeeper plugin call "$TOKEN_AUTH" --type modifier --hook modify_request \
      --config "{\"tokens_file\": \"$TOKENS\"}" --input -)
  [ "$(jq -r '.response.status' <<<"$out")" = 401 ]
  # Params of the wrong shape are refused before the plugin starts (the hook's params type).
  run --separate-stderr gatekeeper plugin call request-id --type modifier --hook modify_request --input '{"request": {"path": 5}}'
  [ "$status" -eq 2 ]
  [[ $stderr == *"invalid params for \`modify_request\`"* ]]
  # A hook the type may not declare.
  run --separate-stderr gatekeeper plugin call request-id --type modifier --hook get_backend --input '{}'
  [ "$status" -eq 2 ]
  [[ $stderr == *"not a hook of a modifier plugin"* ]]
}

@test "plugin replay: rate-limit answers 429 after its burst; access-log lines replay as requests" {
  line='{"hook": "modify_request", "params": {"request": {"method": "GET", "path": "/x", "remote_addr": "10.0.0.1:5000"}}}'
  for _ in 1 2 3 4; do echo "$line"; done >"$BATS_TEST_TMPDIR/calls.jsonl"
  run --separate-stderr gatekeeper plugin replay rate-limit --type modifier --config '{"rate": 0.01, "burst": 3}' "$BATS_TEST_TMPDIR/calls.jsonl"
  [ "$status" -eq 0 ]
  [ "${#lines[@]}" -eq 4 ]
  [ "$(jq -sc '[.[] | .response.status]' <<<"$output")" = '[null,null,null,429]' ]
  [[ $(jq -r '.[3].response.headers[] | select(.[0] == "retry-after") | .[1]' <<<"$(jq -s . <<<"$output")") =~ ^[1-9][0-9]*$ ]]
  # What access-log records is a line per request: replayed to a modifier as modify_request.
  printf '%s\n' \
    '{"time":"2026-01-01T00:00:00.000Z","method":"GET","host":"localhost","path":"/a","status":200}' \
    '# a comment' \
    '{"time":"2026-01-01T00:00:01.000Z","method":"GET","host":"localhost","path":"/b","status":200}' \
    >"$BATS_TEST_TMPDIR/access.log"
  run --separate-stderr gatekeeper plugin replay "$TOKEN_AUTH" --type modifier --config "{\"tokens_file\": \"$TOKENS\"}" "$BATS_TEST_TMPDIR/access.log"
  [ "$status" -eq 0 ]
  [ "$(jq -sc '[.[] | .response.status]' <<<"$output")" = '[401,401]' ]
  # An error answer is one line with the plugin's code; the replay goes on.
  run --separate-stderr gatekeeper plugin replay test-modifier --type modifier --config '{"fail": true}' "$BATS_TEST_TMPDIR/calls.jsonl"
  [ "$status" -eq 0 ]
  [ "$(jq -sc '[.[] | .error.kind] | unique' <<<"$output")" = '["error_answer"]' ]
  [ "${#lines[@]}" -eq 4 ]
}

@test "plugin call: bad plugins give the documented exit codes" {
  # 5: crashes on start, with its exit status and last stderr lines.
  printf '#!/bin/sh\necho "fatal: cannot start" >&2\nexit 3\n' >"$BATS_TEST_TMPDIR/crash.sh"
  chmod +x "$BATS_TEST_TMPDIR/crash.sh"
  run --separate-stderr gatekeeper plugin call "$BATS_TEST_TMPDIR/crash.sh" --type modifier --hook modify_request
  [ "$status" -eq 5 ]
  [[ $stderr == *"exit status: 3"* ]]
  [[ $stderr == *"fatal: cannot start"* ]]
  # 5: crashes on the call (a plugin written from docs/protocol.md that exits on modify_request).
  sed 's/^    if method == "modify_request":$/    if method == "modify_request":\n        print("cannot cope", file=__import__("sys").stderr, flush=True); os._exit(7)/' \
    "$REPO_ROOT/integration/plugins/hello-modifier.py" >"$BATS_TEST_TMPDIR/crash-on-call.py"
  grep -q '_exit(7)' "$BATS_TEST_TMPDIR/crash-on-call.py"
  run --separate-stderr gatekeeper plugin call "python3 $BATS_TEST_TMPDIR/crash-on-call.py" --type modifier --hook modify_request
  [ "$status" -eq 5 ]
  [[ $stderr == *"exit status: 7"* ]]
  [[ $stderr == *"cannot cope"* ]]
  # 3: a result of the wrong shape, said what was wrong.
  run --separate-stderr gatekeeper plugin call test-misbehave --type modifier --hook modify_request --config '{"mode": "wrong_result"}'
  [ "$status" -eq 3 ]
  [[ $stderr == *"wrong shape"*"oops"* ]]
  # 3: garbage on the connection (a protocol violation).
  run --separate-stderr gatekeeper plugin call test-misbehave --type modifier --hook modify_request --config '{"mode": "garbage"}'
  [ "$status" -eq 3 ]
  [[ $stderr == *"protocol violation"* ]]
  # 4: too slow for --timeout.
  run --separate-stderr gatekeeper plugin call test-modifier --type modifier --hook modify_request --config '{"delay_ms": 2000}' --timeout 200ms
  [ "$status" -eq 4 ]
  [[ $stderr == *"timed out"* ]]
  # 1: an error answer, whose code and message jq reads on stdout.
  run --separate-stderr gatekeeper plugin call test-modifier --type modifier --hook modify_request --config '{"fail": true}'
  [ "$status" -eq 1 ]
  [ "$(jq -r '.error.code' <<<"$output")" = -32050 ]
}

@test "plugin check: a protocol violation is a problem, named as the spec names it" {
  run --separate-stderr gatekeeper plugin check test-misbehave --type modifier --config '{"mode": "unknown_id"}'
  [ "$status" -eq 3 ]
  [ "$(jq -r '.ok' <<<"$output")" = false ]
  [ "$(jq -r '.problems[0].kind' <<<"$output")" = protocol ]
  [[ $(jq -r '.problems[0].message' <<<"$output") == *"never issued"*"protocol violation"* ]]
  # A hook its type does not have: gatekeeper ignores it; check names it.
  sed 's/"hooks": \["modify_request"\]/"hooks": ["modify_request", "get_backend"]/' \
    "$REPO_ROOT/integration/plugins/hello-modifier.py" >"$BATS_TEST_TMPDIR/extra-hook.py"
  grep -q get_backend "$BATS_TEST_TMPDIR/extra-hook.py"
  run --separate-stderr gatekeeper plugin check "python3 $BATS_TEST_TMPDIR/extra-hook.py" --type modifier
  [ "$status" -eq 3 ]
  [ "$(jq -c '.hooks' <<<"$output")" = '["modify_request"]' ]
  [[ $(jq -r '.problems[0].message' <<<"$output") == *"ignoring a hook this plugin type does not have"*"get_backend"* ]]
  # The unchanged plugin is fine.
  run --separate-stderr gatekeeper plugin check "python3 $REPO_ROOT/integration/plugins/hello-modifier.py" --type modifier
  [ "$status" -eq 0 ]
  printf '#!/bin/sh\nexit 3\n' >"$BATS_TEST_TMPDIR/crash.sh"
  chmod +x "$BATS_TEST_TMPDIR/crash.sh"
  run --separate-stderr gatekeeper plugin check "$BATS_TEST_TMPDIR/crash.sh" --type modifier
  [ "$status" -eq 5 ]
  [ "$(jq -r '.lifecycle.handshake' <<<"$output")" = failed ]
}

@test "gatekeeper --help names the plugin command; its --help lists the exit codes" {
  run gatekeeper --help
  [ "$status" -eq 0 ]
  [[ $output == *"gatekeeper plugin COMMAND"* ]]
  run gatekeeper plugin call --help
  [ "$status" -eq 0 ]
  [[ $output == *"Exit codes:"*"4  the plugin did not answer within --timeout"* ]]
  run gatekeeper plugin
  [ "$status" -eq 2 ]
}
