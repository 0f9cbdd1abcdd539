# Helpers for the suites that run a real Redis (redis-limits.bats): a redis-server on a loopback
# port in $BATS_TEST_TMPDIR, without persistence, stopped by its PID (and started again on the
# same port to test recovery). Load after helpers (free_port).

# start_redis [PORT]: starts redis-server on PORT (default: a free port) and waits until it
# answers PING (at most 5 s). Sets REDIS_PORT, REDIS_PID and REDIS_URL.
start_redis() {
  if ! command -v redis-server >/dev/null; then
    echo "redis-server is not installed (scripts/test.sh installs it)" >&2
    return 1
  fi
  REDIS_PORT=${1:-$(free_port)}
  # shellcheck disable=SC2034 # read by the suites
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  local dir="$BATS_TEST_TMPDIR/redis"
  mkdir -p "$dir"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    >>"$dir/redis.log" 2>&1 &
  REDIS_PID=$!
  local i
  for ((i = 0; i < 50; i++)); do
    [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return 0
    redis_alive || break
    sleep 0.1
  done
  echo "redis-server did not answer on port $REDIS_PORT:" >&2
  cat "$dir/redis.log" >&2
  return 1
}

# redis_alive: whether the Redis start_redis started still runs (a zombie does not).
redis_alive() {
  [[ -n ${REDIS_PID:-} ]] && [[ -e /proc/$REDIS_PID ]] &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$REDIS_PID/status" 2>/dev/null || false
}

# stop_redis: SIGTERM the Redis start_redis started and wait until it is gone (SIGKILL after
# 5 s). Nothing when none runs.
stop_redis() {
  [[ -n ${REDIS_PID:-} ]] || return 0
  kill "$REDIS_PID" 2>/dev/null || true
  local i
  for ((i = 0; i < 50; i++)); do
    redis_alive || break
    sleep 0.1
  done
  if redis_alive; then kill -9 "$REDIS_PID" 2>/dev/null || true; fi
  REDIS_PID=
}

# redis_cli ARGS...: redis-cli against the Redis start_redis started.
redis_cli() {
  redis-cli -p "$REDIS_PORT" "$@"
}
