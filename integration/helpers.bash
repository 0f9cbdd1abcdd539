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
  # The kernel may hand out the same free port twice before either is bound (a test once got
  # one port for a listener and for metrics_listen): ports given in this run are remembered
  # in a file (free_port runs in subshells) and never given again.
  python3 - "${BATS_RUN_TMPDIR:-${TMPDIR:-/tmp}}/free-ports-given" <<'PY'
import socket, sys
path = sys.argv[1]
try:
    given = set(open(path).read().split())
except FileNotFoundError:
    given = set()
for _ in range(100):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    if port not in given:
        break
with open(path, "a") as f:
    f.write(port + "\n")
print(port)
PY
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
# With GK_NAME set (e.g. GK_NAME=gk2 start_gatekeeper ...), a test runs several gatekeepers: each
# gets its own log ($BATS_TEST_TMPDIR/$GK_NAME.log) and socket directory; copy GK_URL, GK_PID and
# GK_LOG aside after each start.
start_gatekeeper() {
  GK_PORT=$(free_port)
  local socket_dir="$BATS_TEST_TMPDIR"
  if [[ -n ${GK_NAME:-} ]]; then
    GK_LOG="$BATS_TEST_TMPDIR/$GK_NAME.log"
    socket_dir="$BATS_TEST_TMPDIR/$GK_NAME.sockets"
  else
    GK_LOG="$BATS_TEST_TMPDIR/gatekeeper.log"
  fi
  GK_URL="http://127.0.0.1:$GK_PORT"
  gatekeeper --listen "127.0.0.1:$GK_PORT" --socket-dir "$socket_dir" "$@" >"$GK_LOG" 2>&1 &
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

# ---------------------------------------------------------------------------------------------
# Helpers for the plugin-type suites (router, loadbalancer, metric, manager, supervision).

# eventually TRIES CODE: evaluates the shell code CODE (in single quotes, so that it is expanded
# anew each time) every 0.1 s until it succeeds, at most TRIES times.
#   eventually 50 '[ "$(http_code "$GK_URL/x")" = 200 ]'
eventually() {
  local tries=$1 code=$2 i
  for ((i = 0; i < tries; i++)); do
    eval "$code" && return 0
    sleep 0.1
  done
  echo "gave up after $tries tries: $code" >&2
  return 1
}

# http_code ARGS...: curl ARGS and print only the status code (000 when curl failed).
http_code() {
  curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$@" || true
}

# gk_log: gatekeeper's log without the ANSI colour codes tracing puts in it.
gk_log() {
  sed 's/\x1b\[[0-9;]*m//g' "$GK_LOG"
}

# records FILE FILTER: the JSON lines of FILE (a test plugin's record file) that FILTER (a jq
# expression) keeps, compact; nothing when the file does not exist yet.
records() {
  [[ -f $1 ]] || return 0
  jq -c "$2" "$1"
}

# count_records FILE FILTER: how many lines `records FILE FILTER` prints.
count_records() {
  records "$1" "$2" | wc -l | tr -d ' '
}

# wait_for_records FILE FILTER N [TRIES]: waits (0.1 s steps) until FILE has at least N lines
# that FILTER keeps.
wait_for_records() {
  local file=$1 filter=$2 n=$3 tries=${4:-100}
  local i
  for ((i = 0; i < tries; i++)); do
    (($(count_records "$file" "$filter") >= n)) && return 0
    sleep 0.1
  done
  echo "timed out waiting for $n records $filter in $file (have $(count_records "$file" "$filter"))" >&2
  return 1
}

# wait_for_log PATTERN [TRIES]: waits until gatekeeper's log (colours removed) matches the
# extended regex PATTERN.
wait_for_log() {
  local pattern=$1 tries=${2:-100}
  local i
  for ((i = 0; i < tries; i++)); do
    gk_log | grep -Eq -- "$pattern" && return 0
    sleep 0.1
  done
  echo "timed out waiting for /$pattern/ in the log" >&2
  return 1
}

# wait_for_restart NAME OLD_PID [TRIES]: waits until plugin NAME runs with a pid other than
# OLD_PID and the log says that process is ready. Prints the new pid.
wait_for_restart() {
  local name=$1 old=$2 tries=${3:-100} pid
  local i
  for ((i = 0; i < tries; i++)); do
    pid=$(plugin_pid "$name" || true)
    if [[ -n $pid && $pid != "$old" ]] &&
      gk_log | grep 'plugin ready' | grep -qE "plugin=$name pid=$pid( |$)"; then
      echo "$pid"
      return 0
    fi
    sleep 0.1
  done
  echo "plugin $name was not restarted (old pid $old)" >&2
  return 1
}

# stop_gatekeeper [TRIES]: SIGTERM gatekeeper and wait until it exited (it flushes metrics and
# stops its plugins first).
stop_gatekeeper() {
  local tries=${1:-100}
  kill -TERM "$GK_PID" 2>/dev/null || return 1
  local i
  for ((i = 0; i < tries; i++)); do
    kill -0 "$GK_PID" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "gatekeeper did not exit after SIGTERM" >&2
  return 1
}

# start_backends NAME...: starts one echo backend per NAME; sets BACKEND_PORTS (in order).
start_backends() {
  BACKEND_PORTS=()
  local name
  for name in "$@"; do
    start_backend "$name"
    BACKEND_PORTS+=("$BACKEND_PORT")
  done
}

# write_pool FILE [BALANCER] PORT...: an upstreams file with one upstream `pool` (prefix `pool`)
# whose backends ("0", "1", … in order) are the echo backends on PORTs, with an optional
# built-in balancer (random, round_robin, least_outstanding; "" for the default).
write_pool() {
  local file=$1 balancer=$2 port
  shift 2
  {
    echo "pool:"
    echo "  name: pool"
    echo "  timeout: 5s"
    echo "  prefixes: [pool]"
    [[ -n $balancer ]] && echo "  balancer: $balancer"
    echo "  backends:"
    for port in "$@"; do echo "    - http://127.0.0.1:$port"; done
  } >"$file"
}

# echoed_backend ARGS...: curl ARGS and print the `backend` name the echo backend answered with.
echoed_backend() {
  curl -sS --max-time 5 "$@" | jq -r .backend
}

# gated_plugin NAME COMMAND...: writes $BATS_TEST_TMPDIR/gated/NAME, an executable that runs
# COMMAND (with its own arguments appended) unless the file $BATS_TEST_TMPDIR/gated/NAME.down
# exists, in which case it exits 1 at once. Prints its path. Use the path as the plugin command
# (the plugin is then named NAME) and `touch`/`rm` the .down file to keep the plugin from
# restarting for as long as a test needs it down.
gated_plugin() {
  local name=$1 dir="$BATS_TEST_TMPDIR/gated"
  shift
  mkdir -p "$dir"
  {
    echo '#!/usr/bin/env bash'
    echo "if [[ -e '$dir/$name.down' ]]; then echo 'gate closed: not starting' >&2; exit 1; fi"
    printf 'exec'
    printf ' %q' "$@"
    echo ' "$@"'
  } >"$dir/$name"
  chmod +x "$dir/$name"
  echo "$dir/$name"
}

# ---------------------------------------------------------------------------------------------
# Helpers for the conformance suite (conformance.bats).

# toml_string VALUE: VALUE as a quoted TOML basic string (JSON string escapes are valid TOML).
toml_string() {
  jq -rn --arg v "$1" '$v | tojson'
}

# response_header FILE NAME: the value of header NAME (case-insensitive; the last one if
# repeated) in FILE, the headers `curl -D FILE` dumped; nothing when absent.
response_header() {
  awk -v name="$2" 'BEGIN { name = tolower(name) }
    { sub(/\r$/, "") }
    index($0, ":") { n = tolower(substr($0, 1, index($0, ":") - 1)); if (n == name) { v = substr($0, index($0, ":") + 1); sub(/^[ \t]+/, "", v); found = v } }
    END { if (found != "") print found }' "$1"
}

# json_matches EXPECTED ACTUAL: whether the JSON ACTUAL matches the JSON EXPECTED by the rules of
# plugin-sdk/conformance/README.md: objects are subsets, recursively; "$any" matches any present
# value; null matches absent or null; {"$contains": [...]} matches an array holding those
# elements in any order (each matched by these rules; distinct elements are not required); other
# arrays match element by element, with the same length.
json_matches() {
  jq -en --argjson e "$1" --argjson a "$2" '
    def m($e; $a; $present):
      if $e == null then ($present | not) or $a == null
      elif ($present | not) then false
      elif $e == "$any" then true
      elif ($e | type) == "object" and ($e | keys) == ["$contains"] and ($e["$contains"] | type) == "array" then
        ($a | type) == "array" and all($e["$contains"][]; . as $x | any($a[]; m($x; .; true)))
      elif ($e | type) == "object" then
        ($a | type) == "object" and all($e | to_entries[]; . as $f | m($f.value; $a[$f.key]; $a | has($f.key)))
      elif ($e | type) == "array" then
        ($a | type) == "array" and ($a | length) == ($e | length) and
          all(range($e | length); . as $i | m($e[$i]; $a[$i]; true))
      else $e == $a end;
    m($e; $a; true)' >/dev/null
}

# static_upstreams_table [MORE CONFIG]: the `[[plugin]]` table of a static-upstreams plugin named
# `static` reading $UPSTREAMS, for the suites' config files; MORE CONFIG is added to its config
# map (e.g. 'backend_ids = "index"').
static_upstreams_table() {
  cat <<TOML
[[plugin]]
name = "static"
type = "upstream"
command = "static-upstreams"
config = { file = $(toml_string "$UPSTREAMS")${1:+, $1} }
TOML
}

# start_with_modifier TOML: gatekeeper with static-upstreams (from $UPSTREAMS) and the
# [[plugin]] table(s) TOML.
start_with_modifier() {
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
$(static_upstreams_table)

$1
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
}

# test_metric_table: the `[[plugin]]` table of a test-metric plugin named `metrics` recording
# every batch it receives to $METRICS, for the suites' config files.
test_metric_table() {
  cat <<TOML
[[plugin]]
name = "metrics"
type = "metric"
command = "test-metric"
config = { file = $(toml_string "$METRICS") }
TOML
}
