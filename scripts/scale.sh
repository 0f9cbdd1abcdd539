#!/usr/bin/env bash
# Fleet-size figures (issue 15), each as a ratio or against a stated target:
#   1. registry: the registry alone (crates/proxy/examples/registry_churn), UPSTREAMS × BACKENDS:
#      single calls per second, one batch applied and removed, churn, lookups, memory;
#   2. fleet file: static-upstreams with UPSTREAMS × BACKENDS in one YAML file: time from
#      gatekeeper's start until the last upstream routes, and gatekeeper's RSS then against an
#      idle gatekeeper's; the same set pushed in single manager calls by a Python plugin;
#   3. routing under churn: req/s and p99 over random routes with UPSTREAMS × BACKENDS loaded and
#      RATE backend changes a second (scripts/bench-plugins/churn.py), against 10 upstreams and
#      no churn, and against UPSTREAMS × BACKENDS without churn (size alone), alternated twice,
#      as ratios (the churning plugin runs throughout, so it loads the machine in every case);
#   4. idle connections: IDLE keep-alive connections (one request each, then idle) held open
#      against gatekeeper and nginx: RSS added per connection.
# Installs wrk, nginx-light and python3 when missing. Every process it starts, it stops.
#
#   scripts/scale.sh
#   UPSTREAMS=2000 BACKENDS=5 RATE=200 IDLE=2000 DURATION=5s scripts/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

UPSTREAMS=${UPSTREAMS:-10000}
BACKENDS=${BACKENDS:-10}
RATE=${RATE:-1000}
IDLE=${IDLE:-10000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}

ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < IDLE + 1000)); then
  echo "IDLE=$IDLE needs ulimit -n >= $((IDLE + 1000)); the hard limit is $(ulimit -Hn)" >&2
  exit 1
fi

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v python3 >/dev/null || missing+=(python3)
install_missing "${missing[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "==> cargo build --release" >&2
cargo build --release --workspace --bins --quiet
cargo build --release -p gatekeeper-proxy --example registry_churn --quiet
BIN=$PWD/target/release

start_work scale

# stop PID: stops one process this script started, and waits for it.
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# The backend: nginx answering 200 "ok" to every path.
BACKEND_PORT=$(free_port)
NGINX_PORT=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections $((IDLE + 1000)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 "ok"; } }
  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /b/ { proxy_pass http://backend/; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_MASTER=$!
PIDS+=("$NGINX_MASTER")
wait_port "$BACKEND_PORT"
nginx_worker() { child_pids "$NGINX_MASTER" | head -1; }

# gatekeeper PORT ARGS...: starts gatekeeper (one worker, warnings only, no admin socket) on
# 127.0.0.1:PORT; sets GK.
gatekeeper() {
  local port=$1
  shift
  "$BIN/gatekeeper" --listen "127.0.0.1:$port" --log warn --workers 1 --admin-socket "" "$@" &
  GK=$!
  PIDS+=("$GK")
}

# routes PORT PATH SECONDS: waits until PATH on PORT answers 200; prints the seconds waited.
routes() {
  local started now
  started=$(date +%s.%N)
  while :; do
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1$2") == 200 ]]; then break; fi
    now=$(date +%s.%N)
    if awk -v a="$started" -v b="$now" -v limit="$3" 'BEGIN { exit !(b - a > limit) }'; then
      echo "timeout"
      return 0
    fi
    sleep 0.05
  done
  awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f\n", b - a }'
}

echo "== 1. registry alone: $UPSTREAMS upstreams x $BACKENDS backends (registry_churn)"
"$BIN/examples/registry_churn" "$UPSTREAMS" "$BACKENDS" | tee "$WORK/registry.txt"

echo
echo "== 2. fleet file: static-upstreams with $UPSTREAMS upstreams x $BACKENDS backends"
awk -v n="$UPSTREAMS" -v b="$BACKENDS" -v port="$BACKEND_PORT" 'BEGIN {
  for (i = 0; i < n; i++) {
    printf "u%d:\n  prefixes: [p%d]\n  backends:\n", i, i
    for (j = 0; j < b; j++) printf "    - http://127.0.0.1:%d/%d\n", port, j
  }
}' >"$WORK/fleet.yml"
echo "file: $(wc -c <"$WORK/fleet.yml") bytes"
PORT=$(free_port)
gatekeeper "$PORT"
wait_port "$PORT"
sleep 1
IDLE_RSS=$(rss_kb "$GK")
stop "$GK"
gatekeeper "$PORT" --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/fleet.yml"
ready=$(routes "$PORT" "/p$((UPSTREAMS - 1))/" 120)
first=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/p0/")
sleep 1
LOADED_RSS=$(rss_kb "$GK")
stop "$GK"
# The same set in single manager calls from a plugin (Python SDK, 256 calls in flight at once).
gatekeeper "$PORT" --upstream-plugin "$PWD/scripts/bench-plugins/churn.py" \
  --upstream-upstreams "$UPSTREAMS" --upstream-backends "$BACKENDS" \
  --upstream-address "http://127.0.0.1:$BACKEND_PORT" --upstream-single 1
single=$(routes "$PORT" "/p$((UPSTREAMS - 1))/" 300)
stop "$GK"
echo "ready_s $ready (the last upstream routes; the first answers $first)"
echo "single_calls_ready_s $single ($((UPSTREAMS * (BACKENDS + 1))) calls from a Python plugin: $(awk -v s="$single" -v n="$((UPSTREAMS * (BACKENDS + 1)))" 'BEGIN { if (s + 0 > 0) printf "%d", n / s; else print "?" }') calls/s)"
echo "idle_gatekeeper_rss_mb $(awk -v k="$IDLE_RSS" 'BEGIN { printf "%.1f", k / 1024 }') (target <= 15)"
echo "loaded_rss_added_mb $(awk -v a="$LOADED_RSS" -v b="$IDLE_RSS" 'BEGIN { printf "%.1f", (a - b) / 1024 }') (target <= 100 for 100,000 backends)"

echo
echo "== 3. routing under churn: random routes, $UPSTREAMS upstreams x $BACKENDS backends and $RATE changes/s vs 10 upstreams, no churn"
cat >"$WORK/random.lua" <<'LUA'
local routes = tonumber(os.getenv("ROUTES"))
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/p" .. math.random(0, routes - 1) .. "/")
end
LUA
# run_routes NAME ROUTES PORT: one wrk run over random routes; appends "NAME req/s p99_us".
run_routes() {
  local out rps p99
  out=$(ROUTES=$2 wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/random.lua" "http://127.0.0.1:$3/")
  rps=$(awk '/^Requests\/sec/ { printf "%d", $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); print v } else if (v ~ /ms$/) { sub(/ms/, "", v); print v * 1000 } else if (v ~ /s$/) { sub(/s/, "", v); print v * 1000000 } }' <<<"$out")
  echo "$1 $rps ${p99:-0}" >>"$WORK/routes.txt"
  echo "$1: $rps req/s, p99 ${p99:-?} us" >&2
}
SMALL_PORT=$(free_port)
STATIC_PORT=$(free_port)
BIG_PORT=$(free_port)
# fleet PORT UPSTREAMS RATE: a gatekeeper fed by churn.py; sets GK.
fleet() {
  gatekeeper "$1" --upstream-plugin "$PWD/scripts/bench-plugins/churn.py" \
    --upstream-upstreams "$2" --upstream-backends "$BACKENDS" \
    --upstream-address "http://127.0.0.1:$BACKEND_PORT" --upstream-rate "$3"
}
fleet "$SMALL_PORT" 10 0
SMALL=$GK
fleet "$STATIC_PORT" "$UPSTREAMS" 0
STATIC=$GK
fleet "$BIG_PORT" "$UPSTREAMS" "$RATE"
BIG=$GK
echo "small ready in $(routes "$SMALL_PORT" /p9/ 60) s, static in $(routes "$STATIC_PORT" "/p$((UPSTREAMS - 1))/" 120) s, big in $(routes "$BIG_PORT" "/p$((UPSTREAMS - 1))/" 120) s" >&2
: >"$WORK/routes.txt"
for round in 1 2; do
  run_routes small 10 "$SMALL_PORT"
  run_routes static "$UPSTREAMS" "$STATIC_PORT"
  run_routes big "$UPSTREAMS" "$BIG_PORT"
done
stop "$SMALL"
stop "$STATIC"
stop "$BIG"
awk '{ rps[$1] += $2; p99[$1] += $3; n[$1]++ }
  END {
    printf "small (10 upstreams, no churn): %d req/s, p99 %d us\n", rps["small"] / n["small"], p99["small"] / n["small"]
    printf "static (all upstreams, no churn): %d req/s, p99 %d us\n", rps["static"] / n["static"], p99["static"] / n["static"]
    printf "big (all upstreams, churning): %d req/s, p99 %d us\n", rps["big"] / n["big"], p99["big"] / n["big"]
    printf "static_vs_small_rps %.3f, p99 %.3f\n", rps["static"] / rps["small"], p99["static"] / p99["small"]
    printf "big_vs_small_rps %.3f (target >= 0.95)\n", rps["big"] / rps["small"]
    printf "big_vs_small_p99 %.3f (target <= 1.05)\n", p99["big"] / p99["small"]
  }' "$WORK/routes.txt"

echo
echo "== 4. idle keep-alive connections: $IDLE, one request each, then idle for 10 s"
cat >"$WORK/one.yml" <<YAML
b:
  prefixes: [b]
  backends: [http://127.0.0.1:$BACKEND_PORT]
YAML
PORT=$(free_port)
gatekeeper "$PORT" --upstream-plugin "$BIN/static-upstreams" --upstream-file "$WORK/one.yml"
routes "$PORT" /b/ 30 >/dev/null
# idle_cost NAME PORT PID...: RSS added per idle connection (KiB) while IDLE connections idle.
idle_cost() {
  local name=$1 port=$2 before after answered
  shift 2
  before=$(rss_kb "$@")
  python3 scripts/idle-clients.py 127.0.0.1 "$port" /b/ "$IDLE" 10 >"$WORK/idle.out" &
  local clients=$!
  sleep 9
  after=$(rss_kb "$@")
  wait "$clients" || true
  answered=$(cat "$WORK/idle.out")
  awk -v name="$name" -v a="$after" -v b="$before" -v n="$IDLE" -v ans="$answered" \
    'BEGIN { printf "%s: +%.1f MB for %d idle connections, %.1f KiB each (%s)\n", name, (a - b) / 1024, n, (a - b) / n, ans }'
}
idle_cost gatekeeper "$PORT" "$GK"
stop "$GK"
idle_cost nginx "$NGINX_PORT" "$(nginx_worker)"
echo "(target: gatekeeper <= 60 MB for 10,000)"
