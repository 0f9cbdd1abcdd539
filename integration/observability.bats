#!/usr/bin/env bats
# Observability (issue 13, item 8): every answered or refused request is in the access log and
# the metrics with its error kind (hyper's 400 to a malformed head, the request checks' 501,
# the proxy's own 404/502), access_log_fields shapes the lines, the proxy's error answers carry
# the request's X-Request-Id, and /metrics has the per-backend, per-listener, build and process
# families.

load helpers

setup() {
  start_backend echo-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  ACCESS="$BATS_TEST_TMPDIR/access.log"
  METRICS_PORT=$(free_port)
  CONFIG="$BATS_TEST_TMPDIR/gatekeeper.toml"
}

teardown() {
  stop_all
}

# start_observed TOML [ARGS...]: gatekeeper (with ARGS) with a JSON access log in $ACCESS,
# /metrics on $METRICS_PORT, static-upstreams from $UPSTREAMS, and the extra keys TOML.
start_observed() {
  cat >"$CONFIG" <<TOML
access_log = "json"
access_log_file = $(toml_string "$ACCESS")
metrics_listen = "127.0.0.1:$METRICS_PORT"
metrics_flush_interval = "100ms"
$1

$(static_upstreams_table)
TOML
  start_gatekeeper --config "$CONFIG" "${@:2}"
}

metrics() { curl -sS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics"; }

# raw REQUEST: sends REQUEST (escapes allowed) on a new connection; prints the status line.
raw() {
  timeout 30 python3 - "$GK_PORT" "$1" "$REPO_ROOT/integration" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
import rawhttp
port, request = int(sys.argv[1]), sys.argv[2].encode().decode("unicode_escape").encode("latin1")
sock = rawhttp.connect(port)
sock.sendall(request)
status, _ = rawhttp.read_response(sock)
print(status or "(no answer)")
PY
}

# access_line JQ_FILTER: waits for an access log line matching the jq filter; prints it.
access_line() {
  eventually 50 '[ -n "$(jq -c "select($1)" "$ACCESS" 2>/dev/null)" ]'
  jq -c "select($1)" "$ACCESS" | head -n 1
}

@test "a malformed request hyper answers itself is in the access log (400) and the metrics" {
  start_observed ""
  run raw 'GET /echo/ HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n'
  [ "$output" = "HTTP/1.1 400 Bad Request" ]
  line=$(access_line '.status == 400')
  echo "$line"
  [ "$(jq -r .error <<<"$line")" = malformed_request ]
  [ "$(jq -r .client <<<"$line")" = 127.0.0.1 ]
  [ "$(jq -r .listener <<<"$line")" = http-public ]
  [ "$(jq -r .method <<<"$line")" = - ]
  eventually 50 'metrics | grep -qx "gatekeeper_requests_total{upstream=\"\",status=\"400\",listener=\"http-public\",method=\"OTHER\",error_kind=\"malformed_request\"} 1"'
  metrics | grep -qx 'gatekeeper_malformed_requests_total{listener="http-public"} 1'
}

@test "a request the request checks refuse (501 transfer coding) is recorded with its kind" {
  start_observed ""
  run raw 'POST /echo/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nX-Request-Id: te-1\r\n\r\n0\r\n\r\n'
  [ "$output" = "HTTP/1.1 501 Not Implemented" ]
  line=$(access_line '.status == 501')
  echo "$line"
  [ "$(jq -r .error <<<"$line")" = unsupported_transfer_coding ]
  [ "$(jq -r .method <<<"$line")" = POST ]
  [ "$(jq -r .request_id <<<"$line")" = te-1 ]
  eventually 50 'metrics | grep -q "^gatekeeper_requests_total{upstream=\"\",status=\"501\",listener=\"http-public\",method=\"POST\",error_kind=\"unsupported_transfer_coding\"} 1$"'
}

@test "the proxy's own 404 and 502 carry the client's X-Request-Id, and the access log has it" {
  start_observed ""
  headers=$(curl -sS --max-time 5 -D - -o /dev/null -H 'X-Request-Id: abc-123' "$GK_URL/nowhere")
  echo "$headers"
  grep -q '^HTTP/1.1 404' <<<"$headers"
  grep -qi '^x-request-id: abc-123' <<<"$headers"
  headers=$(curl -sS --max-time 5 -D - -o /dev/null -H 'X-Request-Id: dead-1' "$GK_URL/dead/")
  grep -q '^HTTP/1.1 502' <<<"$headers"
  grep -qi '^x-request-id: dead-1' <<<"$headers"
  # Without one, none is made up.
  ! curl -sS --max-time 5 -D - -o /dev/null "$GK_URL/nowhere" | grep -qi '^x-request-id' || false
  line=$(access_line '.request_id == "abc-123"')
  [ "$(jq -r .status <<<"$line")" = 404 ]
  [ "$(jq -r .error <<<"$line")" = no_route ]
  line=$(access_line '.request_id == "dead-1"')
  [ "$(jq -r .error <<<"$line")" = backend_unreachable ]
}

@test "access_log_fields chooses the fields of a JSON line, in order" {
  start_observed 'access_log_fields = ["status", "method", "request_id", "user_agent", "referer", "upstream", "backend", "upstream_response_us"]'
  curl -sS --max-time 5 -o /dev/null -A 'probe/1' -e 'http://from.test/' \
    -H 'X-Request-Id: f-1' "$GK_URL/echo/x"
  line=$(access_line '.request_id == "f-1"')
  echo "$line"
  [ "$(jq -c keys_unsorted <<<"$line")" = '["status","method","request_id","user_agent","referer","upstream","backend","upstream_response_us"]' ]
  [ "$(jq -r .user_agent <<<"$line")" = probe/1 ]
  [ "$(jq -r .referer <<<"$line")" = http://from.test/ ]
  [ "$(jq -r .upstream <<<"$line")" = echo ]
  jq -e '.upstream_response_us > 0' <<<"$line" >/dev/null
}

@test "access_log = \"text\": key=value lines with the chosen fields" {
  start_observed 'access_log_fields = ["status", "method", "request_id", "user_agent", "referer", "upstream", "backend", "upstream_response_us"]'
  sed -i 's/^access_log = "json"/access_log = "text"/' "$CONFIG"
  kill -HUP "$GK_PID"
  wait_for_log "SIGHUP: configuration reloaded"
  curl -sS --max-time 5 -o /dev/null -A 'probe 2' -H 'X-Request-Id: t-1' "$GK_URL/echo/y"
  eventually 50 'grep -q "request_id=t-1" "$ACCESS"'
  cat "$ACCESS"
  grep -Eqx 'status=200 method=GET request_id=t-1 user_agent="probe 2" referer=- upstream=echo backend=[^ ]+ upstream_response_us=[0-9]+' "$ACCESS"
}

@test "/metrics: per-backend requests, errors and latency; listener, build and process families" {
  start_observed ""
  for i in 1 2 3; do [ "$(http_code "$GK_URL/echo/$i")" = 200 ]; done
  [ "$(http_code "$GK_URL/dead/")" = 502 ]
  eventually 50 'metrics | grep -q "^gatekeeper_backend_requests_total{upstream=\"echo\",backend=\"[^\"]*\"} 3$"'
  # The 502's records may come in a later batch.
  eventually 50 'metrics | grep -Eq "^gatekeeper_backend_errors_total\{upstream=\"dead\",backend=\"[^\"]*\",error_kind=\"unreachable\"\} 1$"'
  eventually 50 'metrics | grep -q "^gatekeeper_requests_total{upstream=\"dead\",status=\"502\""'
  text=$(metrics)
  grep -Eq '^gatekeeper_backend_response_seconds_count\{upstream="echo",backend="[^"]*"\} 3$' <<<"$text"
  grep -Eq '^gatekeeper_backend_response_seconds_bucket\{le="0.25",upstream="echo",backend="[^"]*"\} 3$' <<<"$text"
  grep -q '^gatekeeper_request_duration_seconds_bucket{le="0.1",upstream="echo"} ' <<<"$text"
  grep -q '^gatekeeper_requests_total{upstream="dead",status="502",listener="http-public",method="GET",error_kind="backend_unreachable"} 1$' <<<"$text"
  grep -Eq '^gatekeeper_connections_total\{listener="http-public"\} [4-9]$' <<<"$text"
  grep -Eq '^gatekeeper_connections_open\{listener="http-public"\} [0-9]+$' <<<"$text"
  grep -Eq '^gatekeeper_received_bytes_total\{listener="http-public"\} [1-9][0-9]*$' <<<"$text"
  grep -Eq '^gatekeeper_sent_bytes_total\{listener="http-public"\} [1-9][0-9]*$' <<<"$text"
  grep -Eq '^gatekeeper_build_info\{version="[0-9]+\.[0-9]+\.[0-9]+[^"]*"\} 1$' <<<"$text"
  grep -Eq '^process_resident_memory_bytes [1-9][0-9]*$' <<<"$text"
  grep -Eq '^process_open_fds [1-9][0-9]*$' <<<"$text"
  grep -Eq '^process_start_time_seconds [1-9]' <<<"$text"
  grep -q '^gatekeeper_reloads_total{result="ok"} 0$' <<<"$text"
  # A reload is counted.
  kill -HUP "$GK_PID"
  eventually 50 'metrics | grep -q "^gatekeeper_reloads_total{result=\"ok\"} 1$"'
}

@test "a request cut by the shutdown grace period is recorded (499, grace_cut)" {
  start_observed 'shutdown_grace = "300ms"'
  curl -sS --max-time 10 -o /dev/null -H 'X-Request-Id: cut-1' "$GK_URL/echo/slow?ms=4000" &
  local client=$!
  PIDS+=("$client")
  # The backend has the request: its access line comes only when it answers (never).
  eventually 50 '[ "$(curl -sS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" | grep -c "^gatekeeper_backend_in_flight.* 1$")" -ge 1 ]'
  kill -TERM "$GK_PID"
  eventually 100 '! kill -0 "$GK_PID" 2>/dev/null'
  line=$(access_line '.request_id == "cut-1"')
  echo "$line"
  [ "$(jq -r .status <<<"$line")" = 499 ]
  [ "$(jq -r .error <<<"$line")" = grace_cut ]
  [ "$(jq -r .upstream <<<"$line")" = echo ]
}

@test "a request head that does not arrive in time is recorded (408, request_timeout)" {
  start_observed 'header_read_timeout = "500ms"'
  run raw 'GET /echo/ HTTP/1.1\r\nHost: a\r\n'
  [ "$output" = "HTTP/1.1 408 Request Timeout" ]
  line=$(access_line '.status == 408')
  [ "$(jq -r .error <<<"$line")" = request_timeout ]
  eventually 50 'metrics | grep -qx "gatekeeper_malformed_requests_total{listener=\"http-public\"} 1"'
}

@test "TLS: the access log has the SNI, TLS version and cipher; failed handshakes are counted" {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=a.test" \
    -addext "subjectAltName=DNS:a.test" \
    -keyout "$BATS_TEST_TMPDIR/a.key" -out "$BATS_TEST_TMPDIR/a.crt" 2>/dev/null
  TLS_PORT=$(free_port)
  cat >"$CONFIG" <<TOML
access_log = "json"
access_log_file = $(toml_string "$ACCESS")
access_log_fields = ["listener", "status", "sni", "tls_version", "tls_cipher"]
metrics_listen = "127.0.0.1:$METRICS_PORT"
metrics_flush_interval = "100ms"

[[tls]]
listener = "https-public"
cert = $(toml_string "$BATS_TEST_TMPDIR/a.crt")
key = $(toml_string "$BATS_TEST_TMPDIR/a.key")

$(static_upstreams_table)
TOML
  start_gatekeeper --config "$CONFIG" --listen "https-public=127.0.0.1:$TLS_PORT"
  curl -sS --max-time 5 -o /dev/null --cacert "$BATS_TEST_TMPDIR/a.crt" \
    --resolve "a.test:$TLS_PORT:127.0.0.1" "https://a.test:$TLS_PORT/nowhere"
  line=$(access_line '.listener == "https-public"')
  echo "$line"
  [ "$(jq -r .sni <<<"$line")" = a.test ]
  jq -e '.tls_version | test("^TLSv1_[23]$")' <<<"$line" >/dev/null
  jq -e '.tls_cipher | test("^TLS")' <<<"$line" >/dev/null
  # Plain HTTP to the TLS port is a failed handshake.
  curl -sS --max-time 5 -o /dev/null "http://127.0.0.1:$TLS_PORT/" || true
  eventually 50 'metrics | grep -qx "gatekeeper_tls_handshake_failures_total{listener=\"https-public\"} 1"'
  # Every listener's counters exist from its start, the idle one's at 0.
  metrics | grep -qx 'gatekeeper_tls_handshake_failures_total{listener="http-public"} 0'
  metrics | grep -qx 'gatekeeper_connections_open{listener="http-public"} 0'
}

@test "a 502 carries the X-Request-Id the request-id plugin gave the request" {
  start_observed '
[[plugin]]
name = "request-id"
type = "modifier"
command = "request-id"'
  headers=$(curl -sS --max-time 5 -D - -o /dev/null "$GK_URL/dead/")
  echo "$headers"
  grep -q '^HTTP/1.1 502' <<<"$headers"
  id=$(grep -i '^x-request-id:' <<<"$headers" | tr -d '\r' | awk '{print $2}')
  [[ $id =~ ^[0-9a-f]{32}$ ]]
  line=$(access_line '.status == 502')
  [ "$(jq -r .request_id <<<"$line")" = "$id" ]
}

@test "an HTTP/2 request cut by the shutdown grace period is recorded (499, grace_cut)" {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=a.test" \
    -addext "subjectAltName=DNS:a.test" \
    -keyout "$BATS_TEST_TMPDIR/a.key" -out "$BATS_TEST_TMPDIR/a.crt" 2>/dev/null
  TLS_PORT=$(free_port)
  # An upstream on every listener (echo is only on http-public).
  printf "\nlong:\n  name: long\n  timeout: 10s\n  prefixes:\n    - long\n  backends:\n    - http://127.0.0.1:%s\n" "$BACKEND_PORT" >>"$UPSTREAMS"
  start_observed "shutdown_grace = \"300ms\"

[[tls]]
listener = \"https-public\"
cert = $(toml_string "$BATS_TEST_TMPDIR/a.crt")
key = $(toml_string "$BATS_TEST_TMPDIR/a.key")" --listen "https-public=127.0.0.1:$TLS_PORT"
  curl -sS --http2 --max-time 10 -o /dev/null --cacert "$BATS_TEST_TMPDIR/a.crt" \
    --resolve "a.test:$TLS_PORT:127.0.0.1" -H 'X-Request-Id: h2-cut' \
    "https://a.test:$TLS_PORT/long/slow?ms=4000" &
  PIDS+=($!)
  eventually 50 '[ "$(metrics | grep -c "^gatekeeper_backend_in_flight.* 1$")" -ge 1 ]'
  kill -TERM "$GK_PID"
  eventually 100 '! kill -0 "$GK_PID" 2>/dev/null'
  line=$(access_line '.request_id == "h2-cut"')
  echo "$line"
  [ "$(jq -r .version <<<"$line")" = HTTP/2.0 ]
  [ "$(jq -r .status <<<"$line")" = 499 ]
  [ "$(jq -r .error <<<"$line")" = grace_cut ]
}
