#!/usr/bin/env bash
# Builds everything, starts a demo backend and gatekeeper with a demo route and example plugins
# (static-upstreams, request-id, and a no-SDK Python modifier), and curls through it.
#
#   scripts/demo.sh          # show a few requests, then stop everything
#   scripts/demo.sh --keep   # keep running until Ctrl-C (gatekeeper on 127.0.0.1:8000)
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
[[ ${1:-} == --keep ]] && KEEP=1

for tool in curl python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "==> installing $tool"; apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null
  fi
done
# The etcd client crate (bins/etcd-upstreams) compiles etcd's protobuf files with protoc.
if ! command -v protoc >/dev/null; then
  echo "==> installing protobuf-compiler"
  apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null
fi

echo "==> cargo build --release (the first build takes about 10 minutes)"
cargo build --release --workspace --bins --quiet
BIN=$PWD/target/release

DEMO=$(mktemp -d /tmp/gatekeeper-demo.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DEMO"
}
trap cleanup EXIT INT TERM

python3 integration/backend.py --port-file "$DEMO/backend.port" --name demo-backend &
PIDS+=($!)
for ((i = 0; i < 50; i++)); do [[ -s $DEMO/backend.port ]] && break; sleep 0.1; done
BACKEND_PORT=$(cat "$DEMO/backend.port")

cat >"$DEMO/upstreams.yml" <<YAML
demo:
  name: demo
  timeout: 5s
  protocols: [http-public]
  hostnames: [demo.local]
  prefixes: [demo]
  backends:
    - http://127.0.0.1:$BACKEND_PORT
YAML

PORT=${PORT:-8000}
"$BIN/gatekeeper" --listen "127.0.0.1:$PORT" \
  --upstream-plugin static-upstreams --upstream-file "$DEMO/upstreams.yml" \
  --modifier-plugin request-id \
  --modifier-plugin "python3 integration/plugins/hello-modifier.py" \
  >"$DEMO/gatekeeper.log" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 150; i++)); do
  grep -q "gatekeeper ready" "$DEMO/gatekeeper.log" && break
  if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then cat "$DEMO/gatekeeper.log"; exit 1; fi
  sleep 0.1
done

show() { echo; echo "\$ $*"; "$@"; echo; }
echo; echo "==> gatekeeper is listening on 127.0.0.1:$PORT; the backend echoes what it receives"
show curl -sS -i "http://127.0.0.1:$PORT/demo/hello?name=world"
show curl -sS -i -H "Host: demo.local" "http://127.0.0.1:$PORT/by-hostname"
show curl -sS -i "http://127.0.0.1:$PORT/no-such-route"
echo "==> gatekeeper's log (plugin output is tagged with the plugin's name):"
sed 's/^/    /' "$DEMO/gatekeeper.log"

if ((KEEP)); then
  echo; echo "==> running; try: curl -i http://127.0.0.1:$PORT/demo/  (Ctrl-C to stop)"
  wait "${PIDS[-1]}"
fi
