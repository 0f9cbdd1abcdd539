#!/usr/bin/env bash
# Chaos benchmark (issue 12): what crashing, hanging and leaking plugins cost the traffic.
# wrk -c50 for DURATION against an nginx backend through gatekeeper (release build) with a
# modifier plugin, while its processes are killed or stopped:
#
#   closed-2         failure = "closed", instances = 2, kill -9 of one modifier process every second
#   closed-1-standby failure = "closed", instances = 1, standby = 1, the same kills
#   closed-1         failure = "closed", instances = 1, the same kills
#   open-1           failure = "open", instances = 1, the same kills
#   open-1-calm      the same without kills (req/s of open-1 should be >= 0.9x this)
#   sigstop          failure = "closed", instances = 2, one instance SIGSTOPped for 5 s (p99 of
#                    the whole run should stay within the hook timeout, 1 s)
#   leak             failure = "closed", test-misbehave leaking LEAK_BYTES per call with
#                    max_memory = MAX_MEMORY: recycled, with no failed request
#
# The modifier is request-id (modify_request and modify_response), test-misbehave for `leak`.
# Modifier pids come from `gatekeeper ctl plugins` (the running instances; with standby the
# spare is not among them until it takes over); the oldest running process is the one killed.
# Prints one table: case, requests, non-2xx (wrk's non-2xx plus socket errors), % non-2xx,
# req/s, p99, restarts, recycles. Not run by scripts/test.sh.
#
# Installs wrk and nginx-light when missing. Every process it starts, it stops (by PID).
#
#   scripts/chaos.sh                                  # every case, 30 s each
#   DURATION=10s CASES="closed-2 closed-1" scripts/chaos.sh
#   GATEKEEPER_BIN_DIR=target/debug DURATION=3s scripts/chaos.sh   # no release build
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

DURATION=${DURATION:-30s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
CASES=${CASES:-closed-2 closed-1-standby closed-1 open-1 open-1-calm sigstop leak}
LEAK_BYTES=${LEAK_BYTES:-8192}
MAX_MEMORY=${MAX_MEMORY:-32MiB}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v jq >/dev/null || missing+=(jq)
command -v python3 >/dev/null || missing+=(python3)
install_missing "${missing[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ -n ${GATEKEEPER_BIN_DIR:-} ]]; then
  BIN=$GATEKEEPER_BIN_DIR # binaries built already (e.g. target/debug, to try the script)
else
  echo "==> cargo build --release"
  cargo build --release --workspace --bins --quiet
  BIN=$PWD/target/release
fi

WORK=$(mktemp -d /tmp/gatekeeper-chaos.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  [[ -f $WORK/nginx.pid ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# to_ms VALUE: wrk latency (812.00us, 1.20ms, 1.01s, 1.00m) in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n / 1000; else if (v ~ /ms$/) print n; else if (v ~ /m$/) print n * 60000;
    else if (v ~ /s$/) print n * 1000; else print n
  }'
}

# The backend: nginx answering a fixed 2-byte body.
BACKEND_PORT=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$BACKEND_PORT;
    location / { return 200 "ok"; }
  }
}
CONF
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" &
PIDS+=($!)
wait_port "$BACKEND_PORT"

cat >"$WORK/upstreams.yml" <<YAML
b:
  name: chaos
  timeout: 10s
  prefixes: [b]
  backends: [http://127.0.0.1:$BACKEND_PORT]
YAML

# ctl DIR ARGS...: gatekeeper ctl for the gatekeeper whose socket dir is DIR.
ctl() {
  local dir=$1
  shift
  "$BIN/gatekeeper" ctl --socket-dir "$dir" "$@"
}

# running_pids DIR: the pids of the modifier `mod`'s running instances, lowest (oldest) first.
running_pids() {
  ctl "$1" plugins 2>/dev/null |
    jq -r '.[] | select(.name == "mod") | .processes[] | select(.state == "running") | .pid // empty' |
    sort -n
}

# kill_loop DIR WRK_PID: kill -9 of the oldest running modifier process every second while wrk runs.
kill_loop() {
  local dir=$1 wrk=$2 victim
  while kill -0 "$wrk" 2>/dev/null; do
    sleep 1
    victim=$(running_pids "$dir" | head -n 1)
    [[ -n $victim ]] && kill -9 "$victim" 2>/dev/null || true
  done
}

# stop_loop DIR: SIGSTOP one of the two instances 2 s in, SIGCONT it 5 s later.
stop_loop() {
  local dir=$1 victim
  sleep 2
  victim=$(running_pids "$dir" | head -n 1)
  [[ -n $victim ]] || return 0
  kill -STOP "$victim" 2>/dev/null || true
  sleep 5
  kill -CONT "$victim" 2>/dev/null || true
}

declare -A REQUESTS NON2XX RPS P99 RESTARTS RECYCLES
RAN=()

# run_case NAME FAILURE INSTANCES STANDBY CHAOS(kill|stop|none) [PLUGIN TOML LINES]
run_case() {
  local name=$1 failure=$2 instances=$3 standby=$4 chaos=$5 extra=${6:-}
  local dir="$WORK/$name" port out gk wrk chaos_pid=""
  mkdir -p "$dir"
  port=$(free_port)
  local command="$BIN/request-id"
  [[ $name == leak ]] && command="$BIN/test-misbehave"
  cat >"$dir/gk.toml" <<TOML
listen = ["127.0.0.1:$port"]
socket_dir = "$dir"
log = "warn"

[[plugin]]
name = "static"
type = "upstream"
command = "$BIN/static-upstreams"
config = { file = "$WORK/upstreams.yml" }

[[plugin]]
name = "mod"
type = "modifier"
command = "$command"
failure = "$failure"
instances = $instances
standby = $standby
$extra
TOML
  "$BIN/gatekeeper" --config "$dir/gk.toml" >"$dir/gatekeeper.log" 2>&1 &
  gk=$!
  PIDS+=("$gk")
  if ! ctl "$dir" wait-ready --timeout 30s >/dev/null; then
    cat "$dir/gatekeeper.log" >&2
    echo "$name: gatekeeper did not become ready" >&2
    exit 1
  fi
  local url="http://127.0.0.1:$port/b/"
  for ((i = 0; i < 50; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]] && break
    sleep 0.1
  done
  # Spares ready before the load starts.
  for ((i = 0; i < 100 && standby > 0; i++)); do
    [[ $(ctl "$dir" plugins | jq '.[] | select(.name == "mod") | .standby_ready') -ge $standby ]] && break
    sleep 0.1
  done
  echo "==> $name: wrk -t$THREADS -c$CONNECTIONS -d$DURATION ($chaos)" >&2
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url" >"$dir/wrk.out" 2>&1 &
  wrk=$!
  PIDS+=("$wrk")
  case $chaos in
    kill) kill_loop "$dir" "$wrk" & chaos_pid=$! ;;
    stop) stop_loop "$dir" & chaos_pid=$! ;;
  esac
  [[ -n $chaos_pid ]] && PIDS+=("$chaos_pid")
  wait "$wrk" || true
  [[ -n $chaos_pid ]] && { wait "$chaos_pid" 2>/dev/null || true; }
  out=$(cat "$dir/wrk.out")
  local state
  state=$(ctl "$dir" plugins | jq -c '.[] | select(.name == "mod")')
  REQUESTS[$name]=$(awk '/requests in/ { print $1 }' <<<"$out")
  local non2xx errors
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
  # Socket errors: connect, read, write, timeout.
  errors=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' <<<"$out")
  NON2XX[$name]=$((${non2xx:-0} + ${errors:-0}))
  RPS[$name]=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
  P99[$name]=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  RESTARTS[$name]=$(jq -r .restarts <<<"$state")
  RECYCLES[$name]=$(jq -r .recycles <<<"$state")
  RAN+=("$name")
  kill "$gk" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$gk" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$gk" 2>/dev/null || true
}

for case_name in $CASES; do
  case $case_name in
    closed-2) run_case closed-2 closed 2 0 kill ;;
    closed-1-standby) run_case closed-1-standby closed 1 1 kill ;;
    closed-1) run_case closed-1 closed 1 0 kill ;;
    open-1) run_case open-1 open 1 0 kill ;;
    open-1-calm) run_case open-1-calm open 1 0 none ;;
    sigstop) run_case sigstop closed 2 0 stop ;;
    leak) run_case leak closed 1 0 none "config = { mode = \"leak\", leak_bytes = $LEAK_BYTES }
max_memory = \"$MAX_MEMORY\"" ;;
    *) echo "unknown case $case_name (cases: closed-2 closed-1-standby closed-1 open-1 open-1-calm sigstop leak)" >&2; exit 2 ;;
  esac
done

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $(nproc) cores; backend nginx returning 200 \"ok\"; modifier request-id"
echo "(leak: test-misbehave leaking $LEAK_BYTES bytes per call, max_memory $MAX_MEMORY); kill: kill -9 of one modifier process per second"
printf '%-18s %10s %9s %9s %10s %9s %9s %9s\n' case requests non-2xx %non-2xx req/s p99_ms restarts recycles
for name in "${RAN[@]}"; do
  awk -v n="$name" -v req="${REQUESTS[$name]:-0}" -v bad="${NON2XX[$name]}" -v rps="${RPS[$name]:-0}" \
      -v p99="${P99[$name]:-0}" -v rs="${RESTARTS[$name]}" -v rc="${RECYCLES[$name]}" '
    BEGIN { printf "%-18s %10d %9d %8.3f%% %10.0f %9.1f %9s %9s\n", n, req, bad, (req > 0 ? 100 * bad / req : 0), rps, p99, rs, rc }'
done
if [[ -n ${RPS[open-1]:-} && -n ${RPS[open-1-calm]:-} ]]; then
  awk -v a="${RPS[open-1]}" -v b="${RPS[open-1-calm]}" \
    'BEGIN { printf "\nopen-1 req/s with kills / without: %.2fx (target >= 0.90x)\n", (b > 0 ? a / b : 0) }'
fi
