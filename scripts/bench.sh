#!/usr/bin/env bash
# Side-by-side throughput and latency on loopback, in one run, against the same backend:
#   direct to the backend · nginx and haproxy as reverse proxies · nginx with auth_request to a
#   loopback auth service (nginx's one-external-hook-per-request path) · gatekeeper without
#   plugins · gatekeeper with one Rust modifier hook per request · gatekeeper with request-id
#   (two hooks per request: modify_request and modify_response) · gatekeeper with a Python and a
#   Node modifier (one hook per request, scripts/bench-plugins).
# Then the same at concurrency 1, to show what one hook adds to the median latency.
# Then TLS (no plugins): HTTPS with HTTP/1.1 (wrk) and HTTP/2 (h2load, 10 streams per
# connection) for nginx, haproxy and gatekeeper, each terminating TLS with the same certificate.
# ONLY=tls runs only the TLS cases; ONLY=plain skips them.
# Every proxy gets one worker: nginx worker_processes 1, haproxy nbthread 1, gatekeeper --workers 1.
# Installs wrk, nginx-light and haproxy when missing. Every process it starts, it stops.
#
#   scripts/bench.sh                      # 10 s per case, 50 connections, 2 wrk threads
#   DURATION=5s CONNECTIONS=100 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
ONLY=${ONLY:-all}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v python3 >/dev/null || missing+=(python3)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
install_missing "${missing[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

echo "==> cargo build --release"
cargo build --release --workspace --bins --quiet
BIN=$PWD/target/release

WORK=$(mktemp -d /tmp/gatekeeper-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pidfile in "$WORK"/nginx-*.pid; do
    [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
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
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
$2
}
CONF
  "$NGINX" -p "$WORK" -c "$WORK/$1.conf" &
  PIDS+=($!)
}

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
  --tls-cert "https-public=$WORK/tls.crt" --tls-key "https-public=$WORK/tls.key" --log warn --workers 1 \
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" &
PIDS+=($!)
"$BIN/gatekeeper" --listen "127.0.0.1:$GK_RID_PORT" --log warn --workers 1 \
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" \
  --modifier-plugin "$BIN/request-id" &
PIDS+=($!)
# One hook per request in Python and in Node (scripts/bench-plugins, written with the SDKs).
"$BIN/gatekeeper" --listen "127.0.0.1:$GK_PY_PORT" --log warn --workers 1 \
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" \
  --modifier-plugin "python3 $PWD/scripts/bench-plugins/add_header.py" &
PIDS+=($!)
"$BIN/gatekeeper" --listen "127.0.0.1:$GK_NODE_PORT" --log warn --workers 1 \
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" \
  --modifier-plugin "node $PWD/scripts/bench-plugins/add-header.mjs" &
PIDS+=($!)
# One hook per request, like auth_request: a Rust modifier declaring only modify_request.
"$BIN/gatekeeper" --listen "127.0.0.1:$GK_HOOK_PORT" --log warn --workers 1 \
  --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/upstreams.yml" \
  --modifier-plugin "$BIN/test-modifier --hooks modify_request" &
PIDS+=($!)

for port in "$BACKEND_PORT" "$NGINX_PORT" "$HAPROXY_PORT" "$AUTH_PORT" "$NGINX_AUTH_PORT" \
  "$GK_PORT" "$GK_RID_PORT" "$GK_HOOK_PORT" "$GK_PY_PORT" "$GK_NODE_PORT" \
  "$NGINX_TLS_PORT" "$HAPROXY_TLS_PORT" "$GK_TLS_PORT"; do wait_port "$port"; done
for port in "$GK_PORT" "$GK_RID_PORT" "$GK_HOOK_PORT" "$GK_PY_PORT" "$GK_NODE_PORT"; do
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
  wrk -t"$threads" -c"$connections" -d2s --latency "$url" >/dev/null 2>&1 || true # warm-up
  out=$(wrk -t"$threads" -c"$connections" -d"$DURATION" --latency "$url")
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

if [[ $ONLY != tls ]]; then
  run_case direct "http://127.0.0.1:$BACKEND_PORT/"
  run_case nginx "http://127.0.0.1:$NGINX_PORT/b/"
  run_case haproxy "http://127.0.0.1:$HAPROXY_PORT/b/"
  run_case nginx+auth_request "http://127.0.0.1:$NGINX_AUTH_PORT/b/"
  run_case gatekeeper "http://127.0.0.1:$GK_PORT/b/"
  run_case gatekeeper+1hook "http://127.0.0.1:$GK_HOOK_PORT/b/"
  run_case gatekeeper+request-id "http://127.0.0.1:$GK_RID_PORT/b/"
  run_case gatekeeper+python-hook "http://127.0.0.1:$GK_PY_PORT/b/"
  run_case gatekeeper+node-hook "http://127.0.0.1:$GK_NODE_PORT/b/"
  run_case c1:nginx "http://127.0.0.1:$NGINX_PORT/b/" 1 1
  run_case c1:nginx+auth_request "http://127.0.0.1:$NGINX_AUTH_PORT/b/" 1 1
  run_case c1:gatekeeper "http://127.0.0.1:$GK_PORT/b/" 1 1
  run_case c1:gatekeeper+1hook "http://127.0.0.1:$GK_HOOK_PORT/b/" 1 1
fi
if [[ $ONLY != plain ]]; then
  # wrk and h2load do not check certificates; SNI is sent only for names, and every server here
  # has one certificate, so the address is enough.
  run_case tls:nginx "https://127.0.0.1:$NGINX_TLS_PORT/b/"
  run_case tls:haproxy "https://127.0.0.1:$HAPROXY_TLS_PORT/b/"
  run_case tls:gatekeeper "https://127.0.0.1:$GK_TLS_PORT/b/"
  run_h2 h2:nginx "https://127.0.0.1:$NGINX_TLS_PORT/b/"
  run_h2 h2:haproxy "https://127.0.0.1:$HAPROXY_TLS_PORT/b/"
  run_h2 h2:gatekeeper "https://127.0.0.1:$GK_TLS_PORT/b/"
fi

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $(nproc) cores (c1: one connection; tls: HTTPS with HTTP/1.1;"
echo "h2: h2load, HTTP/2 over TLS, 10 streams per connection, where p50/p99 show the mean/max request time)"
echo "backend: nginx returning 200 \"ok\"; ratios compare rows of the same kind (c1 with c1, h2 with h2)"
printf '%-24s %12s %10s %10s %9s %9s %9s\n' case req/s p50_us p99_us vs_nginx vs_gk vs_auth
for name in "${CASES[@]}"; do
  prefix=""; [[ $name == *:* ]] && prefix="${name%%:*}:"
  ng=${RPS[${prefix}nginx]:-}; gk=${RPS[${prefix}gatekeeper]:-}; au=${RPS[${prefix}nginx+auth_request]:-}
  awk -v n="$name" -v r="${RPS[$name]}" -v a="${P50[$name]}" -v b="${P99[$name]}" \
      -v ng="$ng" -v gk="$gk" -v au="$au" '
    function ratio(x) { return x > 0 ? sprintf("%8.2fx", r / x) : sprintf("%9s", "-") }
    BEGIN { printf "%-24s %12.0f %10.0f %10.0f %s %s %s\n", n, r, a, b, ratio(ng), ratio(gk), ratio(au) }'
done
if [[ -n ${P50[c1:gatekeeper+1hook]:-} ]]; then
  echo
  awk -v with="${P50[c1:gatekeeper+1hook]}" -v without="${P50[c1:gatekeeper]}" \
    'BEGIN { printf "one modify_request hook adds %.0f us at p50 (concurrency 1)\n", with - without }'
fi
