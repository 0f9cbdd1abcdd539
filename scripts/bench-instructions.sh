#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind in each proxy's own process
# (user space only; the kernel's share is what `ONLY=syscalls scripts/bench.sh` counts): the
# yardstick (bench/yardstick), gatekeeper without plugins, and gatekeeper with one Rust
# modify_request hook (its plugin process apart, not counted). Unlike req/s on a shared VM, these
# counts barely move from run to run (about ±1%), so a change to the request path can be judged
# by them when the machine is busy. Counters are zeroed after WARMUP requests, then REQUESTS
# requests are sent with h2load (4 keep-alive connections) and the counts dumped.
#
#   scripts/bench-instructions.sh                 # REQUESTS=2000 WARMUP=300
#   REQUESTS=5000 scripts/bench-instructions.sh
#
# Installs valgrind, nginx-light and h2load when missing; every process it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-300}

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v h2load >/dev/null || missing+=(nghttp2-client)
install_missing "${missing[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "==> cargo build --release" >&2
cargo build --release --workspace --bins --quiet
BIN=$PWD/target/release

start_work instructions

# The backend: nginx answering a fixed 2-byte body, as in scripts/bench.sh.
BACKEND_PORT=$(free_port)
cat >"$WORK/backend.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/backend.pid;
error_log $WORK/backend.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 "ok"; } }
}
CONF
"$NGINX" -p "$WORK" -c "$WORK/backend.conf" &
PIDS+=($!)
wait_port "$BACKEND_PORT"
cat >"$WORK/upstreams.yml" <<YAML
b:
  name: bench
  timeout: 10s
  prefixes: [b]
  backends: [http://127.0.0.1:$BACKEND_PORT]
YAML

declare -A IR
# count NAME PORT COMMAND...: runs COMMAND (listening on PORT) under callgrind and sets IR[NAME]
# to its instructions per request.
count() {
  local name=$1 port=$2 pid out i
  shift 2
  echo "==> $name: callgrind, $WARMUP + $REQUESTS requests" >&2
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.out" "$@" >"$WORK/$name.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for ((i = 0; i < 300; i++)); do
    curl -sf "http://127.0.0.1:$port/b/" >/dev/null 2>&1 && break
    sleep 0.2
  done
  h2load --h1 -n"$WARMUP" -c4 "http://127.0.0.1:$port/b/" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  out=$(h2load --h1 -n"$REQUESTS" -c4 "http://127.0.0.1:$port/b/")
  if ! grep -q "^status codes: $REQUESTS 2xx" <<<"$out"; then
    echo "$out" >&2
    echo "$name: not every request got a 2xx" >&2
    exit 1
  fi
  callgrind_control -d "$pid" >/dev/null
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # The dump after zeroing is the first numbered part (NAME.out.1).
  IR[$name]=$(awk -v n="$REQUESTS" '$1 == "summary:" { printf "%.0f", $2 / n; exit }' "$WORK/$name.out.1")
}

port=$(free_port)
count yardstick "$port" "$BIN/yardstick" "127.0.0.1:$port" "127.0.0.1:$BACKEND_PORT"
# gatekeeper as scripts/bench.sh runs it: one worker, no admin socket, static-upstreams.
gatekeeper=("$BIN/gatekeeper" --log warn --workers 1 --admin-socket ""
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml")
port=$(free_port)
count gatekeeper "$port" "${gatekeeper[@]}" --listen "127.0.0.1:$port"
port=$(free_port)
count gatekeeper+1hook "$port" "${gatekeeper[@]}" --listen "127.0.0.1:$port" \
  --modifier-plugin "$BIN/test-modifier --hooks modify_request"

echo
echo "instructions per request (callgrind, user space of the proxy process; $REQUESTS requests, 4 connections)"
printf '%-18s %12s %10s\n' case instructions vs_yard
for name in yardstick gatekeeper gatekeeper+1hook; do
  awk -v name="$name" -v ir="${IR[$name]}" -v yard="${IR[yardstick]}" \
    'BEGIN { printf "%-18s %12d %9.2fx\n", name, ir, ir / yard }'
done
awk -v with="${IR[gatekeeper+1hook]}" -v without="${IR[gatekeeper]}" \
  'BEGIN { printf "one hook adds %d instructions per request in gatekeeper\n", with - without }'
