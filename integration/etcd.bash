# Helpers for etcd.bats: a single-member etcd on free loopback ports in $BATS_TEST_TMPDIR,
# started and stopped by PID (its pid is also in PIDS, so stop_all ends it in teardown).

# start_etcd [CLIENT_PORT]: starts etcd on $ETCD_DIR (created once per test) with client port
# CLIENT_PORT (default $ETCD_PORT, chosen on the first call) and peer port $ETCD_PEER_PORT; waits
# until `etcdctl endpoint health` passes. Sets ETCD_PID and ETCD_URL (the client URL).
# ETCD_SCHEME=https and ETCD_ARGS=(--cert-file … ) serve clients over TLS (etcdctl then needs
# ETCDCTL_CACERT, and ETCDCTL_CERT/ETCDCTL_KEY with --client-cert-auth, in its environment).
start_etcd() {
  ETCD_DIR=${ETCD_DIR:-$BATS_TEST_TMPDIR/etcd}
  ETCD_PORT=${ETCD_PORT:-$(free_port)}
  ETCD_PEER_PORT=${ETCD_PEER_PORT:-$(free_port)}
  local port=${1:-$ETCD_PORT}
  local peer="http://127.0.0.1:$ETCD_PEER_PORT"
  ETCD_URL="${ETCD_SCHEME:-http}://127.0.0.1:$port"
  etcd --name default --data-dir "$ETCD_DIR" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "default=$peer" "${ETCD_ARGS[@]}" >>"$BATS_TEST_TMPDIR/etcd.log" 2>&1 &
  ETCD_PID=$!
  PIDS+=("$ETCD_PID")
  for ((i = 0; i < 100; i++)); do
    if etcdctl --endpoints "$ETCD_URL" --dial-timeout 1s endpoint health >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$ETCD_PID" 2>/dev/null; then
      echo "etcd exited early:" >&2; tail -20 "$BATS_TEST_TMPDIR/etcd.log" >&2; return 1
    fi
    sleep 0.1
  done
  echo "etcd did not become healthy:" >&2; tail -20 "$BATS_TEST_TMPDIR/etcd.log" >&2
  return 1
}

# stop_etcd: SIGTERM etcd and wait (at most 5 s, then SIGKILL) until it exited.
stop_etcd() {
  kill "$ETCD_PID" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$ETCD_PID" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$ETCD_PID" 2>/dev/null || true
}

# ectl ARGS...: etcdctl against the running etcd.
ectl() {
  etcdctl --endpoints "$ETCD_URL" --dial-timeout 2s "$@"
}

# etcd_revision: the store's current revision.
etcd_revision() {
  ectl endpoint status -w json | jq '.[0].Status.header.revision'
}

# start_follower NAME [ARGS...]: a gatekeeper (GK_NAME=NAME) whose upstream plugin is
# etcd-upstreams following $ETCD_URL (reconnecting every 300 ms at most, so catching up is quick
# in tests). Sets GK_URL, GK_PID, GK_LOG as start_gatekeeper does.
start_follower() {
  local name=$1
  shift
  GK_NAME=$name start_gatekeeper --upstream-plugin etcd-upstreams \
    --upstream-endpoints "${FOLLOW_URL:-$ETCD_URL}" --upstream-reconnect-max 300ms \
    --upstream-dial-timeout 1s "$@"
}

# routes_within TRIES CODE URL...: waits (0.1 s steps, at most TRIES) until every URL answers
# with status CODE.
routes_within() {
  local tries=$1 code=$2
  shift 2
  for ((i = 0; i < tries; i++)); do
    local all=1 url
    for url in "$@"; do
      [ "$(http_code "$url")" = "$code" ] || { all=0; break; }
    done
    ((all)) && return 0
    sleep 0.1
  done
  local url
  for url in "$@"; do echo "$url: $(http_code "$url") (wanted $code)" >&2; done
  return 1
}

# make_pki: a CA, and a server and a client certificate it signed (for 127.0.0.1), in
# $BATS_TEST_TMPDIR/pki: ca.pem, server.pem, server-key.pem, client.pem, client-key.pem.
make_pki() {
  local d="$BATS_TEST_TMPDIR/pki" name
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=etcd test CA" -keyout "$d/ca-key.pem" -out "$d/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' \
    >"$d/ext.cnf"
  for name in server client; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
      -keyout "$d/$name-key.pem" -out "$d/$name.csr" 2>/dev/null
    openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" \
      -CAcreateserial -days 2 -extfile "$d/ext.cnf" -out "$d/$name.pem" 2>/dev/null
  done
}
