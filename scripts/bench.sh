#!/usr/bin/env bash
# Side-by-side throughput and latency on loopback, in one run, against the same backend:
#   direct to the backend · nginx and haproxy as reverse proxies · nginx with auth_request to a
#   loopback auth service (nginx's one-external-hook-per-request path) · gatekeeper without
#   plugins · gatekeeper with one Rust modifier hook per request · gatekeeper with request-id
#   (two hooks per request: modify_request and modify_response) · gatekeeper with a Python and a
#   Node modifier (one hook per request, scripts/bench-plugins) · the token-auth example with
#   1,000 tokens, without and with the decision cache (and the cache's hit ratio).
# And the yardstick (bench/yardstick): a minimal reverse proxy on hyper 1, the bar gatekeeper is
# judged against (column vs_yard).
# Then the same at concurrency 1, to show what one hook adds to the median latency, also with the
# low-latency mode (the same Rust hook with busy_poll_us = BUSY_POLL_US, default 200: gatekeeper
# and the plugin busy-poll the socket while a call is outstanding), with its spin counts.
# The floor: a small message ping-ponged between two processes over a Unix socket (bench/yardstick's
# uds-pingpong), blocking and busy-polling; what one hook adds is printed as a multiple of it.
# Then TLS (no plugins): HTTPS with HTTP/1.1 (wrk) and HTTP/2 (h2load, 10 streams per
# connection) for nginx, haproxy and gatekeeper, each terminating TLS with the same certificate.
# Then syscalls per request: strace -c -f on each server process (and each plugin process apart)
# while h2load sends SYSCALL_REQUESTS requests on one keep-alive connection; top 5 syscalls.
# ratelimit: gatekeeper with the built-in rate-limit plugin, its memory store against its Redis
# store (a redis-server the bench starts on a loopback port in its temp dir; burst and rate so
# high that nothing is refused, on_store_error = closed so that a Redis failure shows as non-2xx
# instead of being measured as the local fallback): req/s and latency of each, and their ratio.
# c4000 (only when asked): wrk with 4,000 connections against nginx, gatekeeper and the
# yardstick: req/s, p99, max latency, requests over wrk's 2 s timeout, and the peak RSS of each
# server process (sampled VmRSS every 100 ms, and VmHWM) as a ratio to nginx's.
# Every proxy gets one worker: nginx worker_processes 1, haproxy nbthread 1, gatekeeper --workers 1.
# Installs wrk, nginx-light, haproxy, h2load, strace and redis-server when missing. Every process it starts, it
# stops.
#
# ONLY picks what runs, a comma-separated list of: plain (the wrk rows without TLS, c1 rows and
# the floor), floor (the floor alone), tls, syscalls, ratelimit, c4000, all (plain, tls,
# ratelimit and syscalls with SYSCALL_REQUESTS=500 unless set; the default). c4000 is never part
# of all: ONLY=all,c4000.
# BENCH_BIN=DIR uses the binaries in DIR as they are (no release build), e.g. for a quick check
# of the script with BENCH_BIN=target/debug DURATION=1s ONLY=ratelimit.
#
#   scripts/bench.sh                      # 10 s per case, 50 connections, 2 wrk threads
#   DURATION=5s CONNECTIONS=100 scripts/bench.sh
#   ONLY=syscalls SYSCALL_REQUESTS=2000 scripts/bench.sh
#   ONLY=c4000 DURATION=10s scripts/bench.sh
#   FLOOR_COUNT=20000 ONLY=floor scripts/bench.sh  # round trips per floor measurement
#   BUSY_POLL_US=500 ONLY=plain scripts/bench.sh    # the low-latency row's busy_poll_us
#   ONLY=ratelimit scripts/bench.sh                 # rate-limit: memory store vs Redis store
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
ONLY=${ONLY:-all}
FLOOR_COUNT=${FLOOR_COUNT:-20000}
BUSY_POLL_US=${BUSY_POLL_US:-200}
C4000_CONNECTIONS=4000

# wants PART: whether ONLY asks for PART (plain, floor, tls, syscalls or c4000).
wants() {
  local part
  for part in ${ONLY//,/ }; do
    case $part in
      "$1") return 0 ;;
      all) [[ $1 == plain || $1 == floor || $1 == tls || $1 == syscalls || $1 == ratelimit ]] && return 0 ;;
      plain) [[ $1 == floor ]] && return 0 ;;
      floor | tls | syscalls | ratelimit | c4000) ;;
      *) echo "ONLY: unknown part $part (plain, floor, tls, syscalls, ratelimit, c4000, all)" >&2; exit 2 ;;
    esac
  done
  return 1
}
wants nothing || true # checks ONLY's spelling before anything starts
if [[ ,$ONLY, == *,all,* ]]; then SYSCALL_REQUESTS=${SYSCALL_REQUESTS:-500}; fi
SYSCALL_REQUESTS=${SYSCALL_REQUESTS:-2000}
# 4,000 client connections and as many to the backend need more descriptors than the default
# 1024; nginx's workers also get more connection slots then (worker_connections).
NGINX_WORKER_CONNECTIONS=4096
if wants c4000; then
  ulimit -n "$(ulimit -Hn)"
  if (($(ulimit -n) < 3 * C4000_CONNECTIONS)); then
    echo "c4000 needs ulimit -n >= $((3 * C4000_CONNECTIONS)), the hard limit is $(ulimit -Hn)" >&2
    exit 1
  fi
  NGINX_WORKER_CONNECTIONS=$((2 * C4000_CONNECTIONS + 1000))
fi

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v python3 >/dev/null || missing+=(python3)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v strace >/dev/null || missing+=(strace)
if wants ratelimit; then command -v redis-server >/dev/null || missing+=(redis-server); fi
install_missing "${missing[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

if [[ -n ${BENCH_BIN:-} ]]; then
  BIN=$(cd "$BENCH_BIN" && pwd)
else
  echo "==> cargo build --release"
  cargo build --release --workspace --bins --quiet
  BIN=$PWD/target/release
fi

WORK=$(mktemp -d /tmp/gatekeeper-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pidfile in "$WORK"/nginx-*.pid; do
    if [[ -f $pidfile ]]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# start_nginx NAME HTTP_BODY: an nginx with one worker, no access log and unlimited keep-alive
# requests, whose http block holds HTTP_BODY.
start_nginx() {
  cat >"$WORK/$1.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx-$1.pid;
error_log $WORK/nginx-$1.err warn;
events { worker_connections $NGINX_WORKER_CONNECTIONS; }
http {
  access_log off;
  keepalive_requests 1000000;
$2
}
CONF
  "$NGINX" -p "$WORK" -c "$WORK/$1.conf" &
  PIDS+=($!)
  NGINX_MASTER[$1]=$!
}
declare -A NGINX_MASTER

BACKEND_PORT=$(free_port)
GK_PORT=$(free_port)
GK_RID_PORT=$(free_port)
NGINX_PORT=$(free_port)
HAPROXY_PORT=$(free_port)
AUTH_PORT=$(free_port)
NGINX_AUTH_PORT=$(free_port)
GK_HOOK_PORT=$(free_port)
GK_PY_PORT=$(free_port)
GK_NODE_PORT=$(free_port)
NGINX_TLS_PORT=$(free_port)
HAPROXY_TLS_PORT=$(free_port)
GK_TLS_PORT=$(free_port)
YARD_PORT=$(free_port)
GK_AUTH_PORT=$(free_port)
GK_AUTH_CACHED_PORT=$(free_port)
GK_AUTH_METRICS_PORT=$(free_port)
GK_BUSY_PORT=$(free_port)
GK_RL_MEMORY_PORT=$(free_port)
GK_RL_REDIS_PORT=$(free_port)
REDIS_PORT=$(free_port)

# One self-signed certificate for every TLS terminator (RSA 2048, as most sites still serve).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench.test \
  -addext subjectAltName=DNS:bench.test -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
cat "$WORK/tls.crt" "$WORK/tls.key" >"$WORK/tls.pem"

# The backend: nginx answering a fixed 2-byte body (the same for every case).
start_nginx backend "$(cat <<CONF
  server {
    listen 127.0.0.1:$BACKEND_PORT;
    location / { return 200 "ok"; }
  }
CONF
)"

start_nginx proxy "$(cat <<CONF
  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    listen 127.0.0.1:$NGINX_TLS_PORT ssl http2;
    ssl_certificate $WORK/tls.crt;
    ssl_certificate_key $WORK/tls.key;
    location /b/ {
      proxy_pass http://backend/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
CONF
)"

# nginx with auth_request: every request first asks an auth service in another process (an
# nginx answering 204, the fastest external service there is), then goes to the backend; this
# is nginx's external-hook path, as a plugin is gatekeeper's.
start_nginx authsvc "$(cat <<CONF
  server {
    listen 127.0.0.1:$AUTH_PORT;
    location / { return 204; }
  }
CONF
)"
start_nginx auth "$(cat <<CONF
  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 256; }
  upstream auth { server 127.0.0.1:$AUTH_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_AUTH_PORT;
    location = /_auth {
      internal;
      proxy_pass http://auth/check;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }
    location /b/ {
      auth_request /_auth;
      proxy_pass http://backend/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
CONF
)"

cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend bench
  bind 127.0.0.1:$HAPROXY_PORT
  bind 127.0.0.1:$HAPROXY_TLS_PORT ssl crt $WORK/tls.pem alpn h2,http/1.1
  http-request set-path %[path,regsub(^/b/,/)]
  default_backend backend
backend backend
  http-reuse always
  server b1 127.0.0.1:$BACKEND_PORT
CONF
"$HAPROXY" -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
PIDS+=($!)

cat >"$WORK/upstreams.yml" <<YAML
b:
  name: bench
  timeout: 10s
  prefixes: [b]
  backends: [http://127.0.0.1:$BACKEND_PORT]
YAML
"$BIN/gatekeeper" --listen "127.0.0.1:$GK_PORT" --listen "https-public=127.0.0.1:$GK_TLS_PORT" \
  --tls-cert "https-public=$WORK/tls.crt" --tls-key "https-public=$WORK/tls.key" --log warn --workers 1 --admin-socket "" \
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" &
PIDS+=($!)
GK_PID=$!
"$BIN/gatekeeper" --listen "127.0.0.1:$GK_RID_PORT" --log warn --workers 1 --admin-socket "" \
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" \
  --modifier-plugin "$BIN/request-id" &
PIDS+=($!)
# One hook per request in Python and in Node (scripts/bench-plugins, written with the SDKs).
"$BIN/gatekeeper" --listen "127.0.0.1:$GK_PY_PORT" --log warn --workers 1 --admin-socket "" \
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" \
  --modifier-plugin "python3 $PWD/scripts/bench-plugins/add_header.py" &
PIDS+=($!)
"$BIN/gatekeeper" --listen "127.0.0.1:$GK_NODE_PORT" --log warn --workers 1 --admin-socket "" \
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" \
  --modifier-plugin "node $PWD/scripts/bench-plugins/add-header.mjs" &
PIDS+=($!)
# One hook per request, like auth_request: a Rust modifier declaring only modify_request.
"$BIN/gatekeeper" --listen "127.0.0.1:$GK_HOOK_PORT" --log warn --workers 1 --admin-socket "" \
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" \
  --modifier-plugin "$BIN/test-modifier --hooks modify_request" &
PIDS+=($!)
GK_HOOK_PID=$!
# The same hook in the low-latency mode (busy_poll_us); its admin socket gives the spin counts.
"$BIN/gatekeeper" --listen "127.0.0.1:$GK_BUSY_PORT" --log warn --workers 1 --admin-socket "$WORK/busy-admin.sock" \
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" \
  --modifier-plugin "$BIN/test-modifier --hooks modify_request" --modifier-busy-poll-us "$BUSY_POLL_US" &
PIDS+=($!)
# The yardstick: a minimal hyper reverse proxy (bench/yardstick), one current-thread runtime.
"$BIN/yardstick" "127.0.0.1:$YARD_PORT" "127.0.0.1:$BACKEND_PORT" &
PIDS+=($!)
YARD_PID=$!

# Decision caching: the token-auth example (Python) checking one of 1,000 bearer tokens per
# request, without the cache (cache_ttl 0: every request calls the plugin) and with it
# (cache_ttl 30 s: gatekeeper reuses a decision per Authorization header). The cached one's
# /metrics gives the hit ratio.
for ((i = 1; i <= 1000; i++)); do printf 'bench-token-%04d\n' "$i"; done >"$WORK/tokens.txt"
cat >"$WORK/tokens.lua" <<'LUA'
-- Each request carries one of 1,000 valid tokens, spread evenly (a stride through them).
local n = 0
request = function()
  n = n + 1
  local token = string.format("bench-token-%04d", (n * 7919) % 1000 + 1)
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. token })
end
LUA
printf 'metrics_listen = "127.0.0.1:%s"\n' "$GK_AUTH_METRICS_PORT" >"$WORK/auth-cached.toml"
for variant in uncached cached; do
  port=$GK_AUTH_PORT ttl=0 config=()
  if [[ $variant == cached ]]; then
    port=$GK_AUTH_CACHED_PORT ttl=30 config=(--config "$WORK/auth-cached.toml")
  fi
  "$BIN/gatekeeper" "${config[@]}" --listen "127.0.0.1:$port" --log warn --workers 1 --admin-socket "" \
    --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" \
    --modifier-plugin "python3 $PWD/plugin-sdk/examples/token-auth/token_auth.py" \
    --modifier-tokens_file "$WORK/tokens.txt" --modifier-cache_ttl "$ttl" &
  PIDS+=($!)
done

# The rate-limit plugin with each store, allowing everything (a billion tokens, a billion a
# second), so each request costs one bucket update: in the plugin process, or one script run in
# Redis (one hot key: every request comes from 127.0.0.1).
RATELIMIT_PORTS=()
if wants ratelimit; then
  mkdir -p "$WORK/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" \
    --loglevel warning >"$WORK/redis/redis.log" 2>&1 &
  PIDS+=($!)
  wait_port "$REDIS_PORT"
  for store in memory redis; do
    port=$GK_RL_MEMORY_PORT
    [[ $store == redis ]] && port=$GK_RL_REDIS_PORT
    "$BIN/gatekeeper" --listen "127.0.0.1:$port" --log warn --workers 1 --admin-socket "" \
      --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" \
      --modifier-plugin "$BIN/rate-limit" --modifier-rate 1000000000 --modifier-burst 1000000000 \
      --modifier-store "$store" --modifier-redis-url "redis://127.0.0.1:$REDIS_PORT" \
      --modifier-redis-timeout 1s --modifier-on-store-error closed &
    PIDS+=($!)
    RATELIMIT_PORTS+=("$port")
  done
fi

for port in "$BACKEND_PORT" "$NGINX_PORT" "$HAPROXY_PORT" "$AUTH_PORT" "$NGINX_AUTH_PORT" \
  "$GK_PORT" "$GK_RID_PORT" "$GK_HOOK_PORT" "$GK_PY_PORT" "$GK_NODE_PORT" \
  "$NGINX_TLS_PORT" "$HAPROXY_TLS_PORT" "$GK_TLS_PORT" "$YARD_PORT" "$GK_AUTH_PORT" \
  "$GK_AUTH_CACHED_PORT" "$GK_BUSY_PORT" "${RATELIMIT_PORTS[@]}"; do wait_port "$port"; done
for port in "$GK_PORT" "$GK_RID_PORT" "$GK_HOOK_PORT" "$GK_PY_PORT" "$GK_NODE_PORT" "$YARD_PORT" "$GK_BUSY_PORT" \
  "${RATELIMIT_PORTS[@]}"; do
  url="http://127.0.0.1:$port/b/"
  for ((i = 0; i < 50; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]] && break
    sleep 0.1
  done
done

# to_us VALUE: wrk latency (e.g. 812.00us, 1.20ms, 1.01s) in microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n
  }'
}

declare -A RPS P50 P99
CASES=()
# run_case NAME URL [CONNECTIONS THREADS]
run_case() {
  local name=$1 url=$2 connections=${3:-$CONNECTIONS} threads=${4:-$THREADS} out
  echo "==> $name: wrk -t$threads -c$connections -d$DURATION $url" >&2
  local script=()
  [[ -n ${WRK_SCRIPT:-} ]] && script=(-s "$WRK_SCRIPT")
  wrk -t"$threads" -c"$connections" -d2s --latency "${script[@]}" "$url" >/dev/null 2>&1 || true # warm-up
  out=$(wrk -t"$threads" -c"$connections" -d"$DURATION" --latency "${script[@]}" "$url")
  if grep -q 'Non-2xx' <<<"$out"; then echo "$out" >&2; echo "$name: non-2xx responses" >&2; exit 1; fi
  RPS[$name]=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
  P50[$name]=$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
  P99[$name]=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  CASES+=("$name")
}

# run_h2 NAME URL: h2load over TLS with ALPN h2, CONNECTIONS connections, 10 streams each.
run_h2() {
  local name=$1 url=$2 out
  local seconds=${DURATION%s}
  echo "==> $name: h2load -c$CONNECTIONS -m10 -t$THREADS -D$seconds $url" >&2
  h2load -c"$CONNECTIONS" -m10 -t"$THREADS" -D2 "$url" >/dev/null 2>&1 || true # warm-up
  out=$(h2load -c"$CONNECTIONS" -m10 -t"$THREADS" -D"$seconds" "$url")
  if ! grep -q '^status codes: .* 0 3xx, 0 4xx, 0 5xx' <<<"$out" || grep -q 'errored [1-9]' <<<"$out"; then
    echo "$out" >&2; echo "$name: errors or non-2xx responses" >&2; exit 1
  fi
  RPS[$name]=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($(i+1) == "req/s,") print $i }' <<<"$out")
  # h2load reports the mean and spread of request times, not percentiles.
  P50[$name]=$(to_us "$(awk '/^time for request:/ { print $6 }' <<<"$out")")
  P99[$name]=$(to_us "$(awk '/^time for request:/ { print $5 }' <<<"$out")")
  CASES+=("$name")
}

# nginx_worker NAME: the pid of the one worker of the nginx started as NAME.
nginx_worker() {
  child_pids "${NGINX_MASTER[$1]}" | head -n1
}

declare -A FLOOR_P50 FLOOR_P99
# busy_poll_spins [BEFORE]: the low-latency gatekeeper's proxy-side spins as "DATA TIMEOUT" (from
# `ctl plugins`), minus BEFORE (an earlier "DATA TIMEOUT").
busy_poll_spins() {
  local now
  now=$("$BIN/gatekeeper" ctl --socket "$WORK/busy-admin.sock" plugins |
    jq -r '[.[] | select(.type == "modifier") | .busy_poll] | "\(map(.data) | add // 0) \(map(.timeout) | add // 0)"')
  awk -v now="$now" -v before="${1:-0 0}" 'BEGIN { split(now, n, " "); split(before, b, " "); print n[1] - b[1], n[2] - b[2] }'
}

# run_floor MODE [ARGS...]: the Unix-socket round trip between two processes, FLOOR_COUNT times.
run_floor() {
  local mode=$1 out
  shift
  echo "==> floor $mode: uds-pingpong --count $FLOOR_COUNT $*" >&2
  out=$("$BIN/uds-pingpong" --count "$FLOOR_COUNT" "$@")
  FLOOR_P50[$mode]=$(tr ' ' '\n' <<<"$out" | awk -F= '$1 == "p50_us" { print $2 }')
  FLOOR_P99[$mode]=$(tr ' ' '\n' <<<"$out" | awk -F= '$1 == "p99_us" { print $2 }')
}

SYSCALL_LINES=()
# run_syscalls NAME URL [LABEL=]PID...: strace -c -f on each PID (each counted apart, shown as
# LABEL or its command name) while h2load sends SYSCALL_REQUESTS requests over one keep-alive
# connection to URL.
run_syscalls() {
  local name=$1 url=$2 out arg pid tracer tracers=() files=() names=() i
  shift 2
  echo "==> syscalls $name: strace -c -f -p $* during h2load --h1 -n$SYSCALL_REQUESTS -c1 $url" >&2
  timeout 60 h2load --h1 -n200 -c1 "$url" >/dev/null 2>&1 || true # warm-up
  for arg in "$@"; do
    pid=${arg##*=}
    if [[ $arg == *=* ]]; then names+=("${arg%%=*}"); else names+=("$(process_name "$pid")"); fi
    files+=("$WORK/strace-$pid.$RANDOM")
    strace -c -f -S calls -o "${files[-1]}" -p "$pid" 2>/dev/null &
    tracer=$!
    tracers+=("$tracer")
    PIDS+=("$tracer")
  done
  sleep 1 # strace attaches to every thread of each process
  out=$(timeout 300 h2load --h1 -n"$SYSCALL_REQUESTS" -c1 "$url" 2>&1 || true)
  if ! grep -q "^status codes: $SYSCALL_REQUESTS 2xx" <<<"$out"; then
    echo "$out" >&2; echo "syscalls $name: not every request got a 2xx" >&2
    exit 1
  fi
  for tracer in "${tracers[@]}"; do kill -INT "$tracer" 2>/dev/null || true; done
  for tracer in "${tracers[@]}"; do wait "$tracer" 2>/dev/null || true; done
  for i in "${!files[@]}"; do
    SYSCALL_LINES+=("$(printf '%-24s %-18s %s' "$name" "${names[$i]}" "$(syscall_summary "${files[$i]}" "$SYSCALL_REQUESTS")")")
  done
}

C4000_LINES=()
declare -A C4000_RSS
# run_c4000 NAME URL PID...: wrk with C4000_CONNECTIONS connections for DURATION while the summed
# VmRSS of the PIDs is sampled; one result line with the peak RSS and the PIDs' VmHWM.
run_c4000() {
  local name=$1 url=$2 out flag="$WORK/sampling-$1" hwm=0 pid kb
  shift 2
  echo "==> c4000 $name: wrk -t$THREADS -c$C4000_CONNECTIONS -d$DURATION $url (RSS of $*)" >&2
  touch "$flag"
  peak_rss_while "$flag" "$@" &
  PIDS+=($!)
  local sampler=$!
  out=$(wrk -t"$THREADS" -c"$C4000_CONNECTIONS" -d"$DURATION" --latency "$url")
  rm -f "$flag"
  wait "$sampler" || true
  for pid in "$@"; do
    kb=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    hwm=$((hwm + ${kb:-0}))
  done
  C4000_RSS[$name]=$(cat "$flag.peak")
  local rps p99 max timeouts errors non2xx
  rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
  p99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  max=$(to_us "$(awk '$1 == "Latency" { print $4; exit }' <<<"$out")")
  timeouts=$(awk '/Socket errors/ { gsub(",", ""); print $NF; exit }' <<<"$out")
  errors=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8; exit }' <<<"$out")
  non2xx=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
  C4000_LINES+=("$name ${rps:-0} $p99 $max ${timeouts:-0} ${errors:-0} ${non2xx:-0} ${C4000_RSS[$name]} $hwm")
}

if wants plain; then
  run_case direct "http://127.0.0.1:$BACKEND_PORT/"
  run_case nginx "http://127.0.0.1:$NGINX_PORT/b/"
  run_case haproxy "http://127.0.0.1:$HAPROXY_PORT/b/"
  run_case yardstick "http://127.0.0.1:$YARD_PORT/b/"
  run_case nginx+auth_request "http://127.0.0.1:$NGINX_AUTH_PORT/b/"
  run_case gatekeeper "http://127.0.0.1:$GK_PORT/b/"
  run_case gatekeeper+1hook "http://127.0.0.1:$GK_HOOK_PORT/b/"
  run_case gatekeeper+request-id "http://127.0.0.1:$GK_RID_PORT/b/"
  run_case gatekeeper+python-hook "http://127.0.0.1:$GK_PY_PORT/b/"
  run_case gatekeeper+node-hook "http://127.0.0.1:$GK_NODE_PORT/b/"
  WRK_SCRIPT=$WORK/tokens.lua run_case gatekeeper+token-auth "http://127.0.0.1:$GK_AUTH_PORT/b/"
  WRK_SCRIPT=$WORK/tokens.lua run_case gatekeeper+token-auth+cache "http://127.0.0.1:$GK_AUTH_CACHED_PORT/b/"
  CACHE_METRICS=$(curl -s "http://127.0.0.1:$GK_AUTH_METRICS_PORT/metrics")
  run_case c1:nginx "http://127.0.0.1:$NGINX_PORT/b/" 1 1
  run_case c1:yardstick "http://127.0.0.1:$YARD_PORT/b/" 1 1
  run_case c1:nginx+auth_request "http://127.0.0.1:$NGINX_AUTH_PORT/b/" 1 1
  run_case c1:gatekeeper "http://127.0.0.1:$GK_PORT/b/" 1 1
  run_case c1:gatekeeper+1hook "http://127.0.0.1:$GK_HOOK_PORT/b/" 1 1
  busy_spins_before=$(busy_poll_spins)
  run_case c1:gatekeeper+1hook+busy-poll "http://127.0.0.1:$GK_BUSY_PORT/b/" 1 1
  BUSY_SPINS=$(busy_poll_spins "$busy_spins_before")
fi
if wants ratelimit; then
  run_case gatekeeper+rate-limit "http://127.0.0.1:$GK_RL_MEMORY_PORT/b/"
  run_case gatekeeper+rate-limit+redis "http://127.0.0.1:$GK_RL_REDIS_PORT/b/"
fi
if wants floor; then
  run_floor blocking
  run_floor busy-poll --busy-poll
fi
if wants tls; then
  # wrk and h2load do not check certificates; SNI is sent only for names, and every server here
  # has one certificate, so the address is enough.
  run_case tls:nginx "https://127.0.0.1:$NGINX_TLS_PORT/b/"
  run_case tls:haproxy "https://127.0.0.1:$HAPROXY_TLS_PORT/b/"
  run_case tls:gatekeeper "https://127.0.0.1:$GK_TLS_PORT/b/"
  run_h2 h2:nginx "https://127.0.0.1:$NGINX_TLS_PORT/b/"
  run_h2 h2:haproxy "https://127.0.0.1:$HAPROXY_TLS_PORT/b/"
  run_h2 h2:gatekeeper "https://127.0.0.1:$GK_TLS_PORT/b/"
fi
if wants syscalls; then
  # Each process is counted apart: nginx's worker (and the auth service's), gatekeeper, and the
  # plugin processes gatekeeper started (static-upstreams, test-modifier).
  run_syscalls nginx "http://127.0.0.1:$NGINX_PORT/b/" "$(nginx_worker proxy)"
  run_syscalls nginx+auth_request "http://127.0.0.1:$NGINX_AUTH_PORT/b/" \
    "nginx=$(nginx_worker auth)" "nginx-authsvc=$(nginx_worker authsvc)"
  run_syscalls yardstick "http://127.0.0.1:$YARD_PORT/b/" "$YARD_PID"
  # shellcheck disable=SC2046 # one argument per plugin process
  run_syscalls gatekeeper "http://127.0.0.1:$GK_PORT/b/" "$GK_PID" $(child_pids "$GK_PID")
  # shellcheck disable=SC2046
  run_syscalls gatekeeper+1hook "http://127.0.0.1:$GK_HOOK_PORT/b/" "$GK_HOOK_PID" $(child_pids "$GK_HOOK_PID")
fi
if wants c4000; then
  run_c4000 nginx "http://127.0.0.1:$NGINX_PORT/b/" "$(nginx_worker proxy)"
  run_c4000 gatekeeper "http://127.0.0.1:$GK_PORT/b/" "$GK_PID"
  run_c4000 yardstick "http://127.0.0.1:$YARD_PORT/b/" "$YARD_PID"
fi

if ((${#CASES[@]})); then
  echo
  echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $(nproc) cores (c1: one connection; tls: HTTPS with HTTP/1.1;"
  echo "h2: h2load, HTTP/2 over TLS, 10 streams per connection, where p50/p99 show the mean/max request time)"
  echo "backend: nginx returning 200 \"ok\"; ratios compare rows of the same kind (c1 with c1, h2 with h2);"
  echo "yardstick: a minimal hyper 1 reverse proxy (bench/yardstick)"
  printf '%-30s %12s %10s %10s %9s %9s %9s %9s\n' case req/s p50_us p99_us vs_nginx vs_gk vs_auth vs_yard
  for name in "${CASES[@]}"; do
    prefix=""; [[ $name == *:* ]] && prefix="${name%%:*}:"
    ng=${RPS[${prefix}nginx]:-}; gk=${RPS[${prefix}gatekeeper]:-}; au=${RPS[${prefix}nginx+auth_request]:-}
    yd=${RPS[${prefix}yardstick]:-}
    awk -v n="$name" -v r="${RPS[$name]}" -v a="${P50[$name]}" -v b="${P99[$name]}" \
        -v ng="$ng" -v gk="$gk" -v au="$au" -v yd="$yd" '
      function ratio(x) { return x > 0 ? sprintf("%8.2fx", r / x) : sprintf("%9s", "-") }
      BEGIN { printf "%-30s %12.0f %10.0f %10.0f %s %s %s %s\n", n, r, a, b, ratio(ng), ratio(gk), ratio(au), ratio(yd) }'
  done
fi
if [[ -n ${P50[c1:gatekeeper+1hook]:-} ]]; then
  echo
  awk -v with="${P50[c1:gatekeeper+1hook]}" -v without="${P50[c1:gatekeeper]}" \
    'BEGIN { printf "one modify_request hook adds %.0f us at p50 (concurrency 1)\n", with - without }'
  if [[ -n ${P50[c1:gatekeeper+1hook+busy-poll]:-} ]]; then
    awk -v with="${P50[c1:gatekeeper+1hook+busy-poll]}" -v without="${P50[c1:gatekeeper]}" -v us="$BUSY_POLL_US" \
      'BEGIN { printf "the same hook with busy_poll_us = %d adds %.0f us at p50 (concurrency 1)\n", us, with - without }'
  fi
  if [[ -n ${P50[c1:nginx+auth_request]:-} ]]; then
    awk -v with="${P50[c1:nginx+auth_request]}" -v without="${P50[c1:nginx]}" \
      'BEGIN { printf "nginx auth_request adds %.0f us at p50 (concurrency 1)\n", with - without }'
  fi
fi
if [[ -n ${RPS[gatekeeper+rate-limit+redis]:-} ]]; then
  echo
  awk -v mem="${RPS[gatekeeper+rate-limit]}" -v red="${RPS[gatekeeper+rate-limit+redis]}" \
    -v mem50="${P50[gatekeeper+rate-limit]}" -v red50="${P50[gatekeeper+rate-limit+redis]}" 'BEGIN {
      printf "rate-limit, Redis store vs memory store: %.0f vs %.0f req/s = %.2fx; p50 %+.0f us\n",
        red, mem, (mem > 0 ? red / mem : 0), red50 - mem50
    }'
fi
if [[ -n ${CACHE_METRICS:-} ]]; then
  echo
  awk '$1 ~ /^gatekeeper_plugin_cache_hits_total/ { hits += $2 }
       $1 ~ /^gatekeeper_plugin_cache_misses_total/ { misses += $2 }
       END { if (hits + misses > 0) printf "token-auth+cache (1,000 tokens, warm-up included): %d hits, %d misses, hit ratio %.4f\n", hits, misses, hits / (hits + misses) }' <<<"$CACHE_METRICS"
fi
if [[ -n ${FLOOR_P50[blocking]:-} ]]; then
  echo
  echo "floor: a ${FLOOR_COUNT}-times ping-pong of 64 bytes between two processes over a Unix socket"
  for mode in blocking busy-poll; do
    printf '  %-10s round trip p50 %8s us   p99 %8s us\n' "$mode" "${FLOOR_P50[$mode]}" "${FLOOR_P99[$mode]}"
  done
  if [[ -n ${P50[c1:gatekeeper+1hook]:-} ]]; then
    awk -v with="${P50[c1:gatekeeper+1hook]}" -v without="${P50[c1:gatekeeper]}" \
      -v floor="${FLOOR_P50[blocking]}" -v busy="${FLOOR_P50[busy-poll]}" 'BEGIN {
        added = with - without
        printf "one hook adds %.0f us = %.2fx the blocking round trip (target <= 1.0x); %.1fx the busy-poll one\n",
          added, added / floor, added / busy
      }'
  fi
  if [[ -n ${P50[c1:gatekeeper+1hook+busy-poll]:-} ]]; then
    awk -v with="${P50[c1:gatekeeper+1hook+busy-poll]}" -v without="${P50[c1:gatekeeper]}" \
      -v floor="${FLOOR_P50[blocking]}" -v busy="${FLOOR_P50[busy-poll]}" -v us="$BUSY_POLL_US" 'BEGIN {
        added = with - without
        printf "one hook with busy_poll_us = %d adds %.0f us (target <= 15 us) = %.2fx the blocking round trip; %.1fx the busy-poll one\n",
          us, added, added / floor, added / busy
      }'
  fi
  if [[ -n ${BUSY_SPINS:-} ]]; then
    read -r found gave_up <<<"$BUSY_SPINS"
    echo "  its spins in gatekeeper during that c1 case (its 2 s warm-up included): $found found the answer, $gave_up timed out"
  fi
fi
if ((${#SYSCALL_LINES[@]})); then
  echo
  echo "syscalls per request: strace -c -f on each process during h2load --h1 -n$SYSCALL_REQUESTS -c1"
  echo "(one keep-alive connection; each process counted apart; top 5 by count, per request)"
  printf '%-24s %-18s %s\n' case process syscalls
  printf '%s\n' "${SYSCALL_LINES[@]}"
fi
if ((${#C4000_LINES[@]})); then
  echo
  echo "c4000: wrk -t$THREADS -c$C4000_CONNECTIONS -d$DURATION, one worker each; timeouts: requests over wrk's 2 s;"
  echo "peak_rss: highest summed VmRSS sampled every 100 ms during the run; hwm: VmHWM (peak since start)"
  printf '%-12s %10s %10s %10s %9s %7s %7s %12s %10s %10s\n' \
    case req/s p99_us max_us timeouts errors non2xx peak_rss_MB hwm_MB rss_vs_ng
  for line in "${C4000_LINES[@]}"; do
    awk -v ng="${C4000_RSS[nginx]:-0}" -v fields="$line" 'BEGIN {
      split(fields, f, " ")
      ratio = ng > 0 ? sprintf("%9.2fx", f[8] / ng) : sprintf("%10s", "-")
      printf "%-12s %10.0f %10.0f %10.0f %9d %7d %7d %12.1f %10.1f %s\n",
        f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8] / 1024, f[9] / 1024, ratio
    }'
  done
fi
