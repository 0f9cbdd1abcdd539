#!/usr/bin/env bats
# Differential HTTP tests (issue 18), in the manner of the HTTP Garden: a recording backend
# (integration/differential.py) behind gatekeeper records the exact bytes it receives; every
# case of integration/http-corpus.json is sent over a raw socket, and what the backend got is
# read with a strict HTTP/1.1 parser. A request case holds when gatekeeper rejects it (nothing
# forwarded) or forwards exactly the requests the case names, framed so that the strict parser
# reads them the same way, with nothing left over. Response cases come from the backend as a
# hostile one would send them. gatekeeper must answer a plain request after every case.

load helpers

setup() {
  RECORDS="$BATS_TEST_TMPDIR/records"
  mkdir -p "$RECORDS"
  python3 "$REPO_ROOT/integration/differential.py" backend --dir "$RECORDS" \
    --port-file "$BATS_TEST_TMPDIR/backend.port" 3>&- &
  PIDS+=($!)
  wait_for_file "$BATS_TEST_TMPDIR/backend.port"
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$(cat "$BATS_TEST_TMPDIR/backend.port")"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
}

teardown() {
  stop_all
}

differential() {
  run timeout 300 python3 "$REPO_ROOT/integration/differential.py" run --port "$GK_PORT" \
    --dir "$RECORDS" --corpus "$REPO_ROOT/integration/http-corpus.json" --direction "$1"
  echo "$output"
  [ "$status" -eq 0 ]
  # Every case ran (the count line names them all).
  cases=$(jq --arg d "$1" '[.cases[] | select((has("response")) == ($d == "response"))] | length' \
    "$REPO_ROOT/integration/http-corpus.json")
  [ "$cases" -gt 5 ]
  grep -qx "$cases of $cases cases hold" <<<"$output"
}

@test "differential: every request case is rejected or forwarded with the framing the backend reads alike" {
  differential request
}

@test "differential: hostile backend responses reach the client well framed, or as 502" {
  differential response
}
