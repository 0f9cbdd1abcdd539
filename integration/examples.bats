#!/usr/bin/env bats
# The example plugins of plugin-sdk/examples, run as real binaries under gatekeeper:
# least-latency (loadbalancer) and traffic-shaping (modifier); and the built-in rate-limit
# (bins/rate-limit, once an example) with its memory store (redis-limits.bats: the Redis store).

load helpers

setup() {
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  CONFIG="$BATS_TEST_TMPDIR/gk.toml"
}

teardown() {
  stop_all
}

# write_config [TOP-LEVEL LINES] PLUGIN-TABLE: a config file with static-upstreams on
# $UPSTREAMS and the given [[plugin]] table.
write_config() {
  local top=$1 table=$2
  cat >"$CONFIG" <<TOML
$top

$(static_upstreams_table)

$table
TOML
}

# status_of NAME ARGS...: curl ARGS, saving headers to $BATS_TEST_TMPDIR/NAME.headers; prints
# the status code.
status_of() {
  local name=$1
  shift
  curl -s --max-time 5 -D "$BATS_TEST_TMPDIR/$name.headers" -o "$BATS_TEST_TMPDIR/$name.body" \
    -w '%{http_code}' "$@" || true
}

start_rate_limit() {
  start_backend echo-backend
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  write_config "" "[[plugin]]
name = \"rate-limit\"
type = \"modifier\"
command = \"rate-limit\"
config = { rate = 1, burst = 3$1 }"
  start_gatekeeper --config "$CONFIG"
}

@test "rate-limit: a burst of 3 passes, the 4th is 429 with Retry-After" {
  start_rate_limit
  for i in 1 2 3; do
    [ "$(status_of "ok$i" "$GK_URL/echo/$i")" = 200 ]
  done
  [ "$(status_of over "$GK_URL/echo/4")" = 429 ]
  retry=$(response_header "$BATS_TEST_TMPDIR/over.headers" retry-after)
  [[ $retry =~ ^[1-9][0-9]*$ ]]
  grep -q 'too many requests' "$BATS_TEST_TMPDIR/over.body"
  # One token a second: it passes again once Retry-After has passed.
  sleep "$retry"
  [ "$(status_of again "$GK_URL/echo/5")" = 200 ]
}

@test "rate-limit: with key = header:x-api-key each key has its own bucket" {
  start_rate_limit ', key = "header:x-api-key"'
  for i in 1 2 3; do
    [ "$(status_of "a$i" -H 'x-api-key: alice' "$GK_URL/echo/$i")" = 200 ]
  done
  [ "$(status_of a4 -H 'x-api-key: alice' "$GK_URL/echo/4")" = 429 ]
  [ -n "$(response_header "$BATS_TEST_TMPDIR/a4.headers" retry-after)" ]
  for i in 1 2 3; do
    [ "$(status_of "b$i" -H 'x-api-key: bob' "$GK_URL/echo/$i")" = 200 ]
  done
  [ "$(status_of b4 -H 'x-api-key: bob' "$GK_URL/echo/4")" = 429 ]
}

@test "least-latency: after measuring both backends, traffic goes to the fast one" {
  start_backends fast slow
  # One upstream, two backends: "0" answers at once; "1" has the base path /slow, so the echo
  # backend behind it sleeps `ms` milliseconds (from the query) before answering.
  cat >"$UPSTREAMS" <<YAML
pool:
  name: pool
  timeout: 5s
  prefixes: [pool]
  backends:
    - http://127.0.0.1:${BACKEND_PORTS[0]}
    - http://127.0.0.1:${BACKEND_PORTS[1]}/slow
YAML
  write_config 'metrics_flush_interval = "50ms"' '[[plugin]]
name = "least-latency"
type = "loadbalancer"
command = "least-latency"
config = { alpha = 0.3 }'
  start_gatekeeper --config "$CONFIG"
  # The proxy feeds the balancer its backends right after it is ready: wait until it has both.
  eventually 50 '(($(gk_log | grep -c "backend added.*plugin=least-latency") >= 2))'

  picks=()
  for ((i = 0; i < 20; i++)); do
    picks+=("$(echoed_backend "$GK_URL/pool/r$i?ms=100")")
  done
  echo "picks: ${picks[*]}"
  # Backends without samples are tried first, one request each (in id order, and the ids
  # depend on the upstream plugin).
  [ "$(printf '%s\n' "${picks[@]:0:2}" | sort | tr '\n' ' ')" = "fast slow " ]
  fast=0
  for ((i = 10; i < 20; i++)); do
    [ "${picks[$i]}" = fast ] && fast=$((fast + 1))
  done
  [ "$fast" -ge 8 ]
}

@test "traffic-shaping: over the limit is 503 with Retry-After, and the slot comes back" {
  start_backend echo-backend
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  write_config "" '[[plugin]]
name = "traffic-shaping"
type = "modifier"
command = "traffic-shaping"
config = { limit = 1, queue_ms = 100 }'
  start_gatekeeper --config "$CONFIG"

  status_of first "$GK_URL/echo/slow?ms=1000" >"$BATS_TEST_TMPDIR/first.code" &
  local first_pid=$!
  # The second starts while the first holds the only slot (it does for about a second).
  sleep 0.3
  second=$(status_of second "$GK_URL/echo/slow?ms=1000")
  wait "$first_pid"
  [ "$(cat "$BATS_TEST_TMPDIR/first.code")" = 200 ]
  [ "$second" = 503 ]
  [ "$(response_header "$BATS_TEST_TMPDIR/second.headers" retry-after)" = 1 ]
  # The first response released its slot.
  [ "$(status_of third "$GK_URL/echo/slow?ms=10")" = 200 ]
  [ "$(status_of fourth "$GK_URL/echo/again")" = 200 ]
}
