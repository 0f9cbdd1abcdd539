#!/usr/bin/env bats
# The built-in rate-limit plugin with store = "redis", against a real redis-server
# (integration/redis.bash starts it on a loopback port in the test's temp dir): one limit shared
# by two gatekeepers and by two instances of the plugin; while Redis is stopped, what each
# on_store_error does; and shared limiting again once Redis is back, without a restart.

load helpers
load redis

setup() {
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  start_backend echo-backend
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  declare -gA URL LOG
}

teardown() {
  stop_redis
  stop_all
}

# start_limited NAME CONFIG [SETTINGS]: starts gatekeeper NAME with static-upstreams and a
# rate-limit plugin with the store $STORE (default redis) on $REDIS_URL, one token per 1,000 s (so
# nothing refills during a test), retrying Redis every 200 ms, waiting up to 2 s for an answer (a
# busy machine must not turn a slow answer into on_store_error; a stopped Redis is seen at once
# anyway: the connection is refused or dropped). CONFIG is added to its config map
# (burst = N, on_store_error = ...), SETTINGS to its [[plugin]] table (instances = 2).
# Sets URL[NAME] and LOG[NAME].
start_limited() {
  local name=$1 config=$2 settings=${3:-}
  cat >"$BATS_TEST_TMPDIR/$name.toml" <<TOML
$(static_upstreams_table)

[[plugin]]
name = "limit"
type = "modifier"
command = "rate-limit"
$settings
config = { store = "${STORE:-redis}", redis_url = "$REDIS_URL", rate = 0.001, redis_retry_interval = "200ms", redis_timeout = "2s", $config }
TOML
  GK_NAME=$name start_gatekeeper --config "$BATS_TEST_TMPDIR/$name.toml"
  URL[$name]=$GK_URL
  LOG[$name]=$GK_LOG
}

# codes NAME N [CURL ARGS...]: N requests, one after another, through gatekeeper NAME; prints
# their status codes on one line.
codes() {
  local name=$1 n=$2 i out=()
  shift 2
  for ((i = 0; i < n; i++)); do out+=("$(http_code "$@" "${URL[$name]}/echo/$i")"); done
  echo "${out[*]}"
}

# count CODE WORDS...: how many of WORDS are CODE.
count() {
  local code=$1 word n=0
  shift
  for word in "$@"; do [[ $word == "$code" ]] && n=$((n + 1)); done
  echo "$n"
}

# wait_for_line NAME PATTERN: waits (at most 10 s) until gatekeeper NAME's log matches PATTERN.
wait_for_line() {
  GK_LOG=${LOG[$1]} wait_for_log "$2" 100
}

@test "two gatekeepers on one Redis share one limit: exactly burst requests pass through both" {
  start_redis
  start_limited gk1 'burst = 5, key = "header:x-api-key"'
  start_limited gk2 'burst = 5, key = "header:x-api-key"'

  # One after another: what gk1 let pass counts at gk2.
  [ "$(codes gk1 3 -H 'x-api-key: one-by-one')" = "200 200 200" ]
  [ "$(codes gk2 4 -H 'x-api-key: one-by-one')" = "200 200 429 429" ]
  [ "$(codes gk1 1 -H 'x-api-key: one-by-one')" = "429" ]

  # All at once: 24 requests, 12 through each gatekeeper, with another key (a full bucket).
  local dir="$BATS_TEST_TMPDIR/codes" pids=() i
  mkdir -p "$dir"
  for ((i = 0; i < 12; i++)); do
    http_code -H 'x-api-key: at-once' "${URL[gk1]}/echo/$i" >"$dir/gk1-$i" &
    pids+=($!)
    http_code -H 'x-api-key: at-once' "${URL[gk2]}/echo/$i" >"$dir/gk2-$i" &
    pids+=($!)
  done
  wait "${pids[@]}"
  all=$(for file in "$dir"/*; do echo "$(cat "$file")"; done)
  # shellcheck disable=SC2086 # one word per status code
  [ "$(count 200 $all)" = 5 ]
  # shellcheck disable=SC2086
  [ "$(count 429 $all)" = 19 ]

  # One Redis hash per bucket under the key prefix, expiring once the bucket would be full
  # again (5 tokens at 0.001/s: 5,000 s, plus 1).
  [ "$(redis_cli --scan --pattern 'gatekeeper:ratelimit:*' | sort | tr '\n' ' ')" = \
    "gatekeeper:ratelimit:header:at-once gatekeeper:ratelimit:header:one-by-one " ]
  ttl=$(redis_cli ttl gatekeeper:ratelimit:header:at-once)
  ((ttl > 4900 && ttl <= 5001))
}

@test "two instances of the plugin in one gatekeeper share the limit (the memory store's do not)" {
  start_redis
  start_limited shared 'burst = 4' 'instances = 2'
  [ "$(codes shared 8)" = "200 200 200 200 429 429 429 429" ]

  # The control: with the memory store each process has its own buckets, and gatekeeper spreads
  # the calls over both, so more than the burst passes.
  STORE=memory start_limited memory 'burst = 4' 'instances = 2'
  # shellcheck disable=SC2046
  (($(count 200 $(codes memory 8)) > 4))
}

@test "Redis down: closed answers 503 (from the start on), open lets all pass; Redis back: limits again" {
  # Nothing listens on the port yet: the plugin starts anyway, and says so.
  REDIS_PORT=$(free_port)
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  start_limited closed 'burst = 2, on_store_error = "closed", key_prefix = "closed:"'
  wait_for_line closed 'redis rate-limit store failed: at start'
  [ "$(codes closed 2)" = "503 503" ]
  status=$(curl -s --max-time 5 -D "$BATS_TEST_TMPDIR/503.headers" -o "$BATS_TEST_TMPDIR/503.body" \
    -w '%{http_code}' "${URL[closed]}/echo/x")
  [ "$status" = 503 ]
  [ "$(response_header "$BATS_TEST_TMPDIR/503.headers" retry-after)" = 1 ]
  grep -q 'rate limit store unavailable' "$BATS_TEST_TMPDIR/503.body"

  # Redis comes up: picked up in the background, no restart.
  start_redis "$REDIS_PORT"
  wait_for_line closed 'redis rate-limit store answers again'
  [ "$(codes closed 3)" = "200 200 429" ]

  start_limited open 'burst = 2, on_store_error = "open", key_prefix = "open:"'
  [ "$(codes open 3)" = "200 200 429" ]

  stop_redis
  [ "$(codes open 6)" = "200 200 200 200 200 200" ]
  [ "$(codes closed 3)" = "503 503 503" ]
  # The outage is logged once, not once per request (two at most, should the test take longer
  # than the 10 s between warnings).
  warnings=$(grep -c 'redis rate-limit store failed' "${LOG[open]}")
  ((warnings >= 1 && warnings <= 2))
}

@test "Redis down with on_store_error = local (the default): each gatekeeper limits alone; back: shared" {
  start_redis
  start_limited gk1 'burst = 3'
  start_limited gk2 'burst = 3'
  local port=$REDIS_PORT
  stop_redis
  # Each process has its own burst: 6 pass through the two together, not 3.
  [ "$(codes gk1 4)" = "200 200 200 429" ]
  [ "$(codes gk2 4)" = "200 200 200 429" ]

  start_redis "$port"
  wait_for_line gk1 'redis rate-limit store answers again'
  wait_for_line gk2 'redis rate-limit store answers again'
  # A fresh Redis (no persistence): one full bucket of 3, shared again.
  [ "$(codes gk1 2)" = "200 200" ]
  [ "$(codes gk2 2)" = "200 429" ]
  [ "$(codes gk1 1)" = "429" ]
}

@test "a bad redis_url, on_store_error or redis_timeout fails the plugin's configure with a clear message" {
  REDIS_URL="redis://127.0.0.1:1"
  local bad expected
  for bad in 'burst = 1, redis_url = "http://127.0.0.1:6379"' \
    'burst = 1, on_store_error = "maybe"' 'burst = 1, redis_timeout = "soon"'; do
    config="$BATS_TEST_TMPDIR/bad.toml"
    cat >"$config" <<TOML
$(static_upstreams_table)

[[plugin]]
name = "limit"
type = "modifier"
command = "rate-limit"
config = { store = "redis", $bad }
TOML
    run gatekeeper check --config "$config"
    echo "$output"
    [ "$status" -eq 1 ]
    case $bad in
      *redis_url*) expected='config key `redis_url` must be a Redis URL' ;;
      *on_store_error*) expected='config key `on_store_error` must be "open", "closed" or "local"' ;;
      *) expected='config key `redis_timeout` must be a duration' ;;
    esac
    [[ $output == *"plugin limit"*"$expected"* ]]
  done
}
