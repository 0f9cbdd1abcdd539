#!/usr/bin/env bats
# Malformed and hostile HTTP/1.1 through the real binaries, over raw sockets: the Host rules
# (400), transfer codings (501), dot segments removed before routing, malformed heads (400),
# and gatekeeper still serving after a burst of all of them.

load helpers

setup() {
  start_backend hostile-backend
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
}

teardown() {
  stop_all
}

# raw REQUEST: sends REQUEST (a Python bytes literal's content, escapes allowed) on a new
# connection; prints the status line, then the path the backend saw (or -), then `closed` or
# `open` (whether gatekeeper closed the connection after answering, within RAW_CLOSE_WAIT seconds,
# default 2).
raw() {
  timeout 30 python3 - "$GK_PORT" "$1" "$REPO_ROOT/integration" "${RAW_CLOSE_WAIT:-2}" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[3])
import rawhttp
port, request = int(sys.argv[1]), sys.argv[2].encode().decode("unicode_escape").encode("latin1")
sock = rawhttp.connect(port)
sock.sendall(request)
status, body = rawhttp.read_response(sock)
print(status or "(no answer)")
try:
    print(json.loads(body)["path"])
except Exception:
    print("-")
print("closed" if rawhttp.closed(sock, wait=float(sys.argv[4])) else "open")
PY
}

@test "HTTP/1.1 needs exactly one valid Host: 400 and the connection closes" {
  run raw 'GET /echo/ HTTP/1.1\r\n\r\n'
  [ "${lines[0]}" = "HTTP/1.1 400 Bad Request" ] && [ "${lines[2]}" = closed ]
  run raw 'GET /echo/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n'
  [ "${lines[0]}" = "HTTP/1.1 400 Bad Request" ] && [ "${lines[2]}" = closed ]
  run raw 'GET /echo/ HTTP/1.1\r\nHost: a b\r\n\r\n'
  [ "${lines[0]}" = "HTTP/1.1 400 Bad Request" ]
  run raw 'GET /echo/ HTTP/1.1\r\nHost: user@a.test\r\n\r\n'
  [ "${lines[0]}" = "HTTP/1.1 400 Bad Request" ]
  # HTTP/1.0 may omit it; a valid one keeps the connection open.
  run raw 'GET /echo/ HTTP/1.0\r\n\r\n'
  [[ ${lines[0]} == "HTTP/1."[01]" 200 OK" ]]
  run raw 'GET /echo/x HTTP/1.1\r\nHost: a.test\r\n\r\n'
  [ "${lines[0]}" = "HTTP/1.1 200 OK" ] && [ "${lines[1]}" = /x ] && [ "${lines[2]}" = open ]
}

@test "the absolute form routes by its own host, which replaces Host" {
  run curl -s --max-time 5 --request-target "http://echo.test/a" -H "Host: nowhere.test" "$GK_URL/"
  [ "$(jq -r .headers.host <<<"$output")" = echo.test ]
  [ "$(jq -r .path <<<"$output")" = /a ]
}

@test "dot segments are removed before routing; the backend sees the same path" {
  local RAW_CLOSE_WAIT=0.1 # only the answers count here, not whether the connection stays open
  run raw 'GET /echo/a/../b HTTP/1.1\r\nHost: x\r\n\r\n'
  [ "${lines[0]}" = "HTTP/1.1 200 OK" ] && [ "${lines[1]}" = /b ]
  # Encoded dots are dot segments too.
  run raw 'GET /echo/a/%2e%2E/c/./d HTTP/1.1\r\nHost: x\r\n\r\n'
  [ "${lines[1]}" = /c/d ]
  # Climbing out of a prefix routes by the path it leads to.
  run raw 'GET /dead/../echo/z HTTP/1.1\r\nHost: x\r\n\r\n'
  [ "${lines[0]}" = "HTTP/1.1 200 OK" ] && [ "${lines[1]}" = /z ]
  run raw 'GET /echo/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n'
  [ "${lines[0]}" = "HTTP/1.1 404 Not Found" ]
  # Dots inside a segment are a name, not a dot segment.
  run raw 'GET /echo/..hidden/file.txt HTTP/1.1\r\nHost: x\r\n\r\n'
  [ "${lines[1]}" = /..hidden/file.txt ]
}

@test "a transfer coding other than chunked gets 501; Content-Length next to chunked never reaches the backend" {
  run raw 'POST /echo/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'
  [ "${lines[0]}" = "HTTP/1.1 501 Not Implemented" ] && [ "${lines[2]}" = closed ]
  run curl -s --max-time 5 -H "Transfer-Encoding: chunked" -H "Content-Length: 9" --data-binary hello "$GK_URL/echo/"
  [ "$(jq -r '.headers["content-length"] // "none"' <<<"$output")" != 9 ]
}

@test "malformed heads get 400, and gatekeeper keeps serving after a burst of them" {
  for request in 'GARBAGE\r\n\r\n' 'GET /echo/ HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n' \
    'GET /echo/ HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n' 'GET /echo/ HTTP/9.9\r\nHost: x\r\n\r\n' \
    'GET /echo/\x01 HTTP/1.1\r\nHost: x\r\n\r\n' 'POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n' \
    'POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'; do
    run raw "$request"
    [ "${lines[0]}" = "HTTP/1.1 400 Bad Request" ] || { echo "$request -> $output"; false; }
  done
  kill -0 "$GK_PID"
  [ "$(http_code "$GK_URL/echo/")" = 200 ]
}
