# Shared helpers for the bats suites: start the echo backend and gatekeeper on free loopback
# ports, wait for them with bounded loops, and stop everything a test started.
#
# Binaries come from $GATEKEEPER_BIN_DIR (scripts/test.sh sets it), default target/debug.

REPO_ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
BIN_DIR="${GATEKEEPER_BIN_DIR:-$REPO_ROOT/target/debug}"
export PATH="$BIN_DIR:$PATH"

# Processes to stop in teardown, in start order.
PIDS=()

# free_port: prints a TCP port that was free a moment ago on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_file FILE [TRIES]: waits (0.1 s steps) until FILE exists and is not empty.
wait_for_file() {
  local file=$1 tries=${2:-100}
  for ((i = 0; i < tries; i++)); do
    [[ -s $file ]] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $file" >&2
  return 1
}

# start_backend NAME: starts an echo backend; sets BACKEND_PORT.
start_backend() {
  local name=${1:-backend}
  local port_file="$BATS_TEST_TMPDIR/$name.port"
  rm -f "$port_file"
  python3 "$REPO_ROOT/integration/backend.py" --port-file "$port_file" --name "$name" &
  PIDS+=($!)
  wait_for_file "$port_file"
  BACKEND_PORT=$(cat "$port_file")
}

# write_upstreams FILE BACKEND_PORT: the YAML the suites route with.
write_upstreams() {
  cat >"$1" <<YAML
---
echo:
  name: echo
  timeout: 5s
  protocols:
    - http-public
  hostnames:
    - echo.test
  prefixes:
    - echo
  backends:
    - http://127.0.0.1:$2

slow:
  name: slow
  timeout: 300ms
  prefixes:
    - slow
  backends:
    - http://127.0.0.1:$2

dead:
  name: dead
  timeout: 2s
  prefixes:
    - dead
  backends:
    - http://127.0.0.1:${3:-1}
YAML
}

# start_gatekeeper ARGS...: starts gatekeeper on a free port with ARGS, logs to $GK_LOG; waits
# until it logs that it is ready. Sets GK_PORT, GK_PID, GK_URL.
start_gatekeeper() {
  GK_PORT=$(free_port)
  GK_LOG="$BATS_TEST_TMPDIR/gatekeeper.log"
  GK_URL="http://127.0.0.1:$GK_PORT"
  gatekeeper --listen "127.0.0.1:$GK_PORT" --socket-dir "$BATS_TEST_TMPDIR" "$@" >"$GK_LOG" 2>&1 &
  GK_PID=$!
  PIDS+=("$GK_PID")
  for ((i = 0; i < 150; i++)); do
    if grep -q "gatekeeper ready" "$GK_LOG"; then return 0; fi
    if ! kill -0 "$GK_PID" 2>/dev/null; then
      echo "gatekeeper exited early:" >&2; cat "$GK_LOG" >&2; return 1
    fi
    sleep 0.1
  done
  echo "gatekeeper did not become ready:" >&2; cat "$GK_LOG" >&2
  return 1
}

# stop_all: SIGTERM everything started, then SIGKILL what is left after 5 s.
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  PIDS=()
}

# plugin_pid NAME: pid of gatekeeper's child whose environment names plugin NAME.
plugin_pid() {
  local child
  for child in $(pgrep -P "$GK_PID"); do
    if tr '\0' '\n' <"/proc/$child/environ" 2>/dev/null | grep -qx "GATEKEEPER_PLUGIN_NAME=$1"; then
      echo "$child"
      return 0
    fi
  done
  return 1
}
