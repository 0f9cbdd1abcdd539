#!/usr/bin/env bats
# Client-side limits: request head size (431), request head timeout (408), idle keep-alive
# timeout, the connection limit, and upstreams restricted to named listeners.

load helpers

setup() {
  start_backend limits-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
}

teardown() {
  stop_all
}

# start_limited TOML...: gatekeeper with a config file holding the TOML lines given.
start_limited() {
  printf '%s\n' "$@" >"$BATS_TEST_TMPDIR/gk.toml"
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
}

# raw_client SCRIPT: runs the Python SCRIPT with `connect()` (a socket to gatekeeper, 10 s
# timeouts), `request(sock)` (sends GET /echo/ and returns the status line), `closed(sock)`
# (whether the server closed the connection, waiting at most 10 s), from rawhttp.py, and
# `parked()` (gatekeeper_connections_parked from /metrics on $METRICS_PORT); prints what SCRIPT
# prints.
raw_client() {
  timeout 60 python3 -c "
import socket, sys, time
sys.path.insert(0, '$REPO_ROOT/integration')
import rawhttp
from rawhttp import closed
def connect():
    return rawhttp.connect($GK_PORT)
def request(s):
    s.sendall(b'GET /echo/ HTTP/1.1\r\nHost: x\r\n\r\n')
    return rawhttp.read_response(s)[0]
def parked():
    import urllib.request
    text = urllib.request.urlopen('http://127.0.0.1:${METRICS_PORT:-0}/metrics', timeout=5).read().decode()
    return sum(int(float(l.split()[-1])) for l in text.splitlines() if l.startswith('gatekeeper_connections_parked'))
$1"
}

@test "a request head larger than max_header_bytes gets 431" {
  start_limited 'max_header_bytes = 4096'
  local big
  big=$(head -c 6000 /dev/zero | tr '\0' a)
  [ "$(http_code -H "X-Big: $big" "$GK_URL/echo/")" = 431 ]
  big=$(head -c 3000 /dev/zero | tr '\0' a)
  [ "$(http_code -H "X-Big: $big" "$GK_URL/echo/")" = 200 ]
}

@test "the default max_header_bytes (64 KiB) takes a 32 KiB header and refuses a 100 KiB one" {
  start_limited
  local big
  big=$(head -c 32768 /dev/zero | tr '\0' a)
  [ "$(http_code -H "X-Big: $big" "$GK_URL/echo/")" = 200 ]
  big=$(head -c 102400 /dev/zero | tr '\0' a)
  [ "$(http_code -H "X-Big: $big" "$GK_URL/echo/")" = 431 ]
}

@test "a request head not finished within header_read_timeout gets 408 and the connection closes" {
  start_limited 'header_read_timeout = "1s"'
  run raw_client "
s = connect()
s.sendall(b'GET /echo/ HTTP/1.1\r\nHost: x\r\nX-Slow: ')
print(s.recv(200).split(b'\r\n')[0].decode())
print('closed' if closed(s) else 'open')
"
  [ "${lines[0]}" = "HTTP/1.1 408 Request Timeout" ]
  [ "${lines[1]}" = closed ]
  # A connection that never sends anything is closed too, without an answer.
  run raw_client "
s = connect()
print('closed' if closed(s) else 'open')
"
  [ "$output" = closed ]
}

@test "an idle keep-alive connection is closed after keepalive_idle" {
  start_limited 'keepalive_idle = "1s"' 'header_read_timeout = "30s"'
  run raw_client "
s = connect()
print(request(s))
print('closed' if closed(s) else 'open')
"
  [ "${lines[0]}" = "HTTP/1.1 200 OK" ]
  [ "${lines[1]}" = closed ]
}

@test "header_read_timeout does not close idle keep-alive connections" {
  start_limited 'keepalive_idle = "60s"' 'header_read_timeout = "1s"'
  run raw_client "
s = connect()
print(request(s))
time.sleep(2.5)
print(request(s))
"
  [ "${lines[0]}" = "HTTP/1.1 200 OK" ]
  [ "${lines[1]}" = "HTTP/1.1 200 OK" ]
}

@test "max_connections: a connection beyond the limit is served once another one closes" {
  start_limited 'max_connections = 2'
  run raw_client "
a, b = connect(), connect()
print(request(a), request(b))
c = connect()
c.sendall(b'GET /echo/ HTTP/1.1\r\nHost: x\r\n\r\n')
c.settimeout(1)
try:
    print('served while full:', c.recv(100)[:12])
except socket.timeout:
    print('waiting')
a.close()
c.settimeout(10)
print(c.recv(100).split(b'\r\n')[0].decode())
"
  [ "${lines[0]}" = "HTTP/1.1 200 OK HTTP/1.1 200 OK" ]
  [ "${lines[1]}" = waiting ]
  [ "${lines[2]}" = "HTTP/1.1 200 OK" ]
}

@test "an upstream restricted to a listener is only reachable on that listener" {
  cat >>"$UPSTREAMS" <<YAML

internal:
  name: internal
  protocols: [http-internal]
  prefixes: [internal]
  backends: [http://127.0.0.1:$BACKEND_PORT]
YAML
  local internal_port
  internal_port=$(free_port)
  start_gatekeeper --listen "http-internal=127.0.0.1:$internal_port" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
  [ "$(http_code "http://127.0.0.1:$internal_port/internal/x")" = 200 ]
  [ "$(http_code "$GK_URL/internal/x")" = 404 ]
  # `echo` is for http-public only; `slow` names no listener, so both reach it.
  [ "$(http_code "$GK_URL/echo/x")" = 200 ]
  [ "$(http_code "http://127.0.0.1:$internal_port/echo/x")" = 404 ]
  [ "$(http_code "http://127.0.0.1:$internal_port/slow/slow?ms=1")" = 200 ]
}

@test "idle keep-alive connections give back their buffers after keepalive_release_after and keep working" {
  METRICS_PORT=$(free_port)
  start_limited 'keepalive_release_after = "300ms"' 'keepalive_idle = "60s"' \
    "metrics_listen = \"127.0.0.1:$METRICS_PORT\""
  # 20 connections, one request each, then idle: after the release time all are parked;
  # a parked connection serves its next request (and a pipelined pair) on the same socket.
  raw_client "
conns = [connect() for _ in range(20)]
for s in conns:
    assert request(s) == 'HTTP/1.1 200 OK'
time.sleep(1.5)
print(parked())
for s in conns:
    assert request(s) == 'HTTP/1.1 200 OK'
s = conns[0]
time.sleep(1)
s.sendall(b'GET /echo/a HTTP/1.1\r\nHost: x\r\n\r\nGET /echo/b HTTP/1.1\r\nHost: x\r\n\r\n')
print(rawhttp.read_response(s)[0], rawhttp.read_response(s)[0])
# A head sent in two parts, with a pause longer than the release time between them.
time.sleep(1)
s.sendall(b'GET /echo/c HTTP/1.1\r\nHo')
time.sleep(1)
s.sendall(b'st: x\r\n\r\n')
status, body = rawhttp.read_response(s)
print(status, b'/c' in body)
" >"$BATS_TEST_TMPDIR/out"
  run cat "$BATS_TEST_TMPDIR/out"
  [ "${lines[0]}" = 20 ]
  [ "${lines[1]}" = "HTTP/1.1 200 OK HTTP/1.1 200 OK" ]
  [ "${lines[2]}" = "HTTP/1.1 200 OK True" ]
  # Without a release (the time is not below keepalive_idle), idle connections are not parked.
  stop_gatekeeper
  start_limited 'keepalive_release_after = "60s"' 'keepalive_idle = "60s"' \
    "metrics_listen = \"127.0.0.1:$METRICS_PORT\""
  run raw_client "
conns = [connect() for _ in range(5)]
for s in conns:
    assert request(s) == 'HTTP/1.1 200 OK'
time.sleep(1)
print(parked())
"
  [ "$output" = 0 ]
}

@test "a parked idle connection is still closed after keepalive_idle" {
  start_limited 'keepalive_release_after = "200ms"' 'keepalive_idle = "1s"' 'header_read_timeout = "30s"'
  run raw_client "
s = connect()
print(request(s))
start = time.time()
print('closed' if closed(s, wait=10) else 'open')
print('late' if time.time() - start > 5 else 'in time')
"
  [ "${lines[0]}" = "HTTP/1.1 200 OK" ]
  [ "${lines[1]}" = closed ]
  [ "${lines[2]}" = "in time" ]
}

@test "keepalive_release_after = 0s: every pause parks the connection, and nothing sent is lost" {
  start_limited 'keepalive_release_after = "0s"'
  run raw_client "
s = connect()
ok = 0
for i in range(30):
    ok += request(s) == 'HTTP/1.1 200 OK'
    if i % 10 == 0:
        time.sleep(0.1)
s.sendall(b''.join(b'GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n' % i for i in range(5)))
for i in range(5):
    status, body = rawhttp.read_response(s)
    ok += status == 'HTTP/1.1 200 OK' and (b'/%d' % i) in body
print(ok)
"
  [ "$output" = 35 ]
}
