#!/usr/bin/env bats
# Per-client limits (max_connections_per_client, client_request_rate, client_request_burst):
# enforced before any plugin runs, so a modifier that records every call sees only what the
# limits let through; off unless set.

load helpers

setup() {
  start_backend client-limits-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  MODS="$BATS_TEST_TMPDIR/modifier.jsonl"
  ACCESS="$BATS_TEST_TMPDIR/access.log"
  METRICS_PORT=$(free_port)
}

teardown() {
  stop_all
}

# start_limited TOML [ARGS...]: gatekeeper (with ARGS) with the keys TOML, a JSON access log in $ACCESS, /metrics on
# $METRICS_PORT, static-upstreams, and a test-modifier recording every call to $MODS.
start_limited() {
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
$1
access_log = "json"
access_log_file = $(toml_string "$ACCESS")
metrics_listen = "127.0.0.1:$METRICS_PORT"
metrics_flush_interval = "100ms"

$(static_upstreams_table)

[[plugin]]
name = "recorder"
type = "modifier"
command = "test-modifier"
config = { file = $(toml_string "$MODS") }
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml" "${@:2}"
}

metrics() { curl -sS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics"; }

# limited LIMIT: gatekeeper_client_limited_total of the listener for LIMIT (connections, rate).
limited() {
  metrics | awk -v limit="$1" '$1 ~ /^gatekeeper_client_limited_total\{/ && $1 ~ "limit=\"" limit "\"" { print $2 }'
}

# burst N: N GETs of /echo/ on one keep-alive connection; prints each status, one a line.
burst() {
  local urls=() i
  for ((i = 0; i < $1; i++)); do urls+=(-o /dev/null "$GK_URL/echo/$i"); done
  curl -s --max-time 20 -w '%{http_code}\n' "${urls[@]}"
}

# modified: how many requests the modifier saw.
modified() {
  count_records "$MODS" 'select(.method == "modify_request")'
}

# connections SCRIPT: runs the Python SCRIPT with `connect(source)` (a socket to gatekeeper from
# the address `source`, e.g. 127.0.0.2; 10 s timeouts), `get(sock)` (GET /echo/ on it, returns
# the status line, "" when the connection closed first) and `closed(sock)` from rawhttp.py.
connections() {
  timeout 60 python3 -c "
import socket, sys
sys.path.insert(0, '$REPO_ROOT/integration')
from rawhttp import closed, read_response
def connect(source='127.0.0.1'):
    return socket.create_connection(('127.0.0.1', $GK_PORT), timeout=10, source_address=(source, 0))
def get(s):
    try:
        s.sendall(b'GET /echo/ HTTP/1.1\r\nHost: x\r\n\r\n')
        return read_response(s)[0]
    except (ConnectionResetError, BrokenPipeError):
        return ''
$1"
}

@test "a burst over client_request_rate gets 429 with Retry-After and never reaches the modifier" {
  start_limited 'client_request_rate = 1
client_request_burst = 5'
  gatekeeper check --no-plugins --config "$BATS_TEST_TMPDIR/gk.toml"
  run burst 20
  [ "$status" -eq 0 ]
  local ok refused
  ok=$(grep -c '^200$' <<<"$output" || true)
  refused=$(grep -c '^429$' <<<"$output" || true)
  echo "200: $ok, 429: $refused" >&3
  [ $((ok + refused)) -eq 20 ]
  # The burst, then one a second: the 20 requests would have to take 10 s for fewer 429s.
  ((ok >= 5 && refused >= 10))
  # The modifier saw exactly the requests that were let through.
  [ "$(modified)" -eq "$ok" ]
  # The client is told when to come back.
  local headers
  headers=$(curl -s --max-time 5 -D - -o /dev/null "$GK_URL/echo/again")
  grep -q '^HTTP/1.1 429' <<<"$headers"
  grep -qi '^retry-after: 1' <<<"$headers"
  [ "$(modified)" -eq "$ok" ]
  # Access log and metrics say why.
  eventually 50 '[ "$(jq -c "select(.error == \"client_rate_limited\" and .status == 429)" "$ACCESS" | wc -l)" -eq $((refused + 1)) ]'
  [ "$(limited rate)" -eq $((refused + 1)) ]
  [ "$(limited connections)" -eq 0 ]
  grep -q "requests over client_request_rate answered 429" <(gk_log)
  # Another client address has its own bucket.
  [ "$(http_code --interface 127.0.0.2 "$GK_URL/echo/other")" = 200 ]
}

@test "connections over max_connections_per_client are closed at accept; other clients are served" {
  # The flag, this time (the other tests set keys).
  start_limited '' --max-connections-per-client 2
  run connections "
a, b = connect(), connect()
print(get(a), '|', get(b))
third = connect()
print('third', repr(get(third)))
other = connect('127.0.0.2')
print('other', get(other))
a.close()
import time
for _ in range(100):
    again = connect()
    status = get(again)
    if status:
        break
    time.sleep(0.1)
print('again', status)
print('b still', get(b))
"
  echo "$output" >&3
  [ "${lines[0]}" = "HTTP/1.1 200 OK | HTTP/1.1 200 OK" ]
  # Closed unread: no answer at all.
  [ "${lines[1]}" = "third ''" ]
  [ "${lines[2]}" = "other HTTP/1.1 200 OK" ]
  [ "${lines[3]}" = "again HTTP/1.1 200 OK" ]
  [ "${lines[4]}" = "b still HTTP/1.1 200 OK" ]
  # Only served connections reached the modifier: a, b, other, again and b once more.
  [ "$(modified)" -eq 5 ]
  (($(limited connections) >= 1))
  [ "$(limited rate)" -eq 0 ]
  grep -q "connections over max_connections_per_client closed at accept.*client=127.0.0.1" <(gk_log)
}

@test "without the limit keys nothing is limited (defaults off)" {
  start_limited ''
  run burst 40
  [ "$status" -eq 0 ]
  [ "$(grep -c '^200$' <<<"$output")" -eq 40 ]
  run connections "
socks = [connect() for _ in range(12)]
print(sum(get(s) == 'HTTP/1.1 200 OK' for s in socks))
"
  [ "$output" = 12 ]
  [ "$(modified)" -eq 52 ]
  [ "$(limited rate)" -eq 0 ]
  [ "$(limited connections)" -eq 0 ]
  run gatekeeper check --json --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$status" -eq 0 ]
  [ "$(jq -c '[.max_connections_per_client, .client_request_rate, .client_request_burst]' <<<"$output")" = "[0,0,0]" ]
}

@test "a reload that changes the per-client limits says they need a restart" {
  start_limited 'client_request_rate = 1000'
  sed -i 's/^client_request_rate = 1000$/client_request_rate = 1\nmax_connections_per_client = 1/' "$BATS_TEST_TMPDIR/gk.toml"
  kill -HUP "$GK_PID"
  wait_for_log "need a restart.*client_request_rate; max_connections_per_client"
  # The running limit stays: a burst of 5 is within 1000/s.
  run burst 5
  [ "$(grep -c '^200$' <<<"$output")" -eq 5 ]
}
