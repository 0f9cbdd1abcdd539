#!/usr/bin/env bats
# The backend client: plaintext HTTP/2 (h2c) to backends, the connect timeout, the per-backend
# connection limit, and the retry of idempotent requests after a connect failure.
#
# test-backend (integration/test-plugins) is an echo backend speaking HTTP/1.1 and h2c on one
# port; it reports the protocol it saw and logs `start`/`end` lines per request.

load helpers

setup() {
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
}

teardown() {
  stop_all
}

# start_test_backend NAME: starts test-backend named NAME; sets TB_PORT and TB_LOG (its
# `start`/`end` lines).
start_test_backend() {
  local name=$1 port_file="$BATS_TEST_TMPDIR/$1.port"
  TB_LOG="$BATS_TEST_TMPDIR/$name.log"
  test-backend --port-file "$port_file" --name "$name" >"$TB_LOG" &
  PIDS+=($!)
  wait_for_file "$port_file"
  TB_PORT=$(cat "$port_file")
}

# start_blackhole: a loopback listener whose accept queue is full (backlog 0, filled by held
# connections, never accepted), so that connecting to it hangs. Sets BLACKHOLE_PORT.
start_blackhole() {
  local port_file="$BATS_TEST_TMPDIR/blackhole.port"
  python3 - "$port_file" <<'PY' &
import os, signal, socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(0)
held = []
for _ in range(8):
    client = socket.socket()
    client.settimeout(0.5)
    try:
        client.connect(listener.getsockname())
    except OSError:
        break  # the queue is full: connects hang from now on
    held.append(client)
else:
    sys.exit("the accept queue never filled")
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(listener.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
signal.pause()
PY
  PIDS+=($!)
  wait_for_file "$port_file"
  BLACKHOLE_PORT=$(cat "$port_file")
}

start_with_upstreams() {
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" "$@"
}

@test "h2c: the backend sees HTTP/2; an http1 upstream still gets HTTP/1.1" {
  start_test_backend both
  cat >"$UPSTREAMS" <<YAML
h2:
  prefixes: [h2]
  backend_protocol: h2c
  backends: [http://127.0.0.1:$TB_PORT]
h1:
  prefixes: [h1]
  backends: [http://127.0.0.1:$TB_PORT]
default:
  prefixes: [default]
  backend_protocol: http1
  backends: [http://127.0.0.1:$TB_PORT]
YAML
  start_with_upstreams
  for i in 1 2 3; do
    run curl -sS --max-time 5 "$GK_URL/h2/x/$i?q=1"
    [ "$status" -eq 0 ]
    [ "$(jq -r .version <<<"$output")" = HTTP/2.0 ]
    [ "$(jq -r .path <<<"$output")" = "/x/$i" ]
    [ "$(jq -r .query <<<"$output")" = q=1 ]
  done
  # A body travels over h2c too.
  run curl -sS --max-time 5 -d 'hello' "$GK_URL/h2/post"
  [ "$(jq -r '.method + " " + .version' <<<"$output")" = "POST HTTP/2.0" ]
  for prefix in h1 default; do
    run curl -sS --max-time 5 "$GK_URL/$prefix/y"
    [ "$(jq -r .version <<<"$output")" = HTTP/1.1 ]
  done
}

@test "an unknown backend_protocol is refused: static-upstreams names the file, line and key; exit 2" {
  cat >"$UPSTREAMS" <<YAML
bad:
  prefixes: [bad]
  backend_protocol: h3
YAML
  run timeout 20 gatekeeper --listen "127.0.0.1:$(free_port)" --socket-dir "$BATS_TEST_TMPDIR" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
  # A config error (the plugin refused its config): exit 2, which the unit does not restart.
  [ "$status" -eq 2 ]
  grep -q "$UPSTREAMS:3: bad.backend_protocol: unknown backend protocol \`h3\`" <<<"$output"
}

@test "retry: every GET succeeds with one dead and one live backend; a POST with a body is not retried" {
  start_test_backend live
  dead=$(free_port)
  cat >"$UPSTREAMS" <<YAML
pool:
  prefixes: [pool]
  balancer: round_robin
  passive_health: {failures: 0}   # keep the dead backend in rotation: this tests the retry alone
  backends: [http://127.0.0.1:$dead, http://127.0.0.1:$TB_PORT]
YAML
  start_with_upstreams
  for i in $(seq 20); do
    [ "$(http_code "$GK_URL/pool/get/$i")" = 200 ]
  done
  [ "$(http_code -X DELETE "$GK_URL/pool/delete")" = 200 ]
  [ "$(http_code -X DELETE "$GK_URL/pool/delete")" = 200 ]
  [ "$(grep -c '^start GET /get/' "$TB_LOG")" -eq 20 ]
  # Round robin alternates: of two POSTs, one goes to the dead backend and is not retried.
  codes="$(http_code -d body "$GK_URL/pool/post") $(http_code -d body "$GK_URL/pool/post")"
  [ "$(tr ' ' '\n' <<<"$codes" | sort | tr '\n' ' ')" = "200 502 " ]
  [ "$(grep -c '^start POST /post' "$TB_LOG")" -eq 1 ]
}

@test "retry on the full path: upstream metrics record the failed attempt, then the retry" {
  start_test_backend live
  dead=$(free_port)
  cat >"$UPSTREAMS" <<YAML
pool:
  prefixes: [pool]
  balancer: round_robin
  backends: [http://127.0.0.1:$dead, http://127.0.0.1:$TB_PORT]
YAML
  METRICS="$BATS_TEST_TMPDIR/metrics.jsonl"
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
metrics_flush_interval = "100ms"
$(static_upstreams_table 'backend_ids = "index"')

$(test_metric_table)
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  # Round robin starts with backend "0", the dead one.
  [ "$(http_code "$GK_URL/pool/x")" = 200 ]
  upstream='select(.method == "upstream_metric") | .params.metrics[] | [.backend, .status, .error]'
  wait_for_records "$METRICS" "$upstream" 2
  [ "$(records "$METRICS" "$upstream" | tr '\n' ' ')" = '["0",null,"unreachable"] ["1",200,null] ' ]
  request='select(.method == "request_metric") | .params.metrics[] | [.status, .backend]'
  wait_for_records "$METRICS" "$request" 1
  [ "$(records "$METRICS" "$request")" = '[200,"1"]' ]
}

@test "connect timeout: a backend that never accepts is a 502 after the connect timeout, and GETs are retried" {
  start_blackhole
  start_test_backend live
  cat >"$UPSTREAMS" <<YAML
hole:
  prefixes: [hole]
  timeout: 20s
  connect_timeout: 300ms
  backends: [http://127.0.0.1:$BLACKHOLE_PORT]
default:
  prefixes: [default]
  timeout: 20s
  backends: [http://127.0.0.1:$BLACKHOLE_PORT]
pool:
  prefixes: [pool]
  timeout: 20s
  connect_timeout: 300ms
  balancer: round_robin
  backends: [http://127.0.0.1:$BLACKHOLE_PORT, http://127.0.0.1:$TB_PORT]
YAML
  # The upstream timeout (20s) is longer than curl waits: only the connect timeout can answer.
  start_with_upstreams --connect-timeout 400ms
  [ "$(http_code "$GK_URL/hole/x")" = 502 ]
  # No connect_timeout on the upstream: the proxy's --connect-timeout applies.
  [ "$(http_code "$GK_URL/default/x")" = 502 ]
  for i in 1 2 3 4; do
    [ "$(http_code "$GK_URL/pool/x")" = 200 ]
  done
}

@test "pool limit: a second request waits for the first one's connection" {
  start_test_backend limited
  cat >"$UPSTREAMS" <<YAML
one:
  prefixes: [one]
  max_connections_per_backend: 1
  backends: [http://127.0.0.1:$TB_PORT]
YAML
  start_with_upstreams
  curl -sS --max-time 10 -o "$BATS_TEST_TMPDIR/slow.json" "$GK_URL/one/slow?ms=1500" &
  local slow=$!
  PIDS+=("$slow")
  eventually 50 'grep -q "^start GET /slow" "$TB_LOG"'
  [ "$(http_code "$GK_URL/one/fast")" = 200 ]
  wait "$slow"
  [ "$(jq -r .path "$BATS_TEST_TMPDIR/slow.json")" = /slow ]
  # The fast request reached the backend only after the slow one was answered.
  [ "$(grep -E '^(start|end) GET' "$TB_LOG" | cut -d' ' -f1-3 | tr '\n' ',')" = \
    "start GET /slow,end GET /slow,start GET /fast,end GET /fast," ]
}

@test "pool limit: a request that cannot get a connection within the connect timeout is a 503" {
  start_test_backend limited
  cat >"$UPSTREAMS" <<YAML
busy:
  prefixes: [busy]
  max_connections_per_backend: 1
  connect_timeout: 300ms
  backends: [http://127.0.0.1:$TB_PORT]
YAML
  start_with_upstreams
  curl -sS --max-time 10 -o /dev/null "$GK_URL/busy/slow?ms=3000" &
  PIDS+=($!)
  eventually 50 'grep -q "^start GET /slow" "$TB_LOG"'
  run curl -sS --max-time 5 -w '\n%{http_code}' "$GK_URL/busy/fast"
  [ "${lines[1]}" = 503 ]
  [ "${lines[0]}" = "no backend available" ]
  ! grep -q '^start GET /fast' "$TB_LOG" || false
  # Once the slow request is done, its slot is free again.
  eventually 50 '[ "$(http_code "$GK_URL/busy/again")" = 200 ]'
}

@test "--check shows connect_timeout (default 5s)" {
  run gatekeeper --check
  [ "$(jq -r .connect_timeout <<<"$output")" = 5s ]
  run gatekeeper --check --connect-timeout 250ms
  [ "$(jq -r .connect_timeout <<<"$output")" = 250ms ]
}
