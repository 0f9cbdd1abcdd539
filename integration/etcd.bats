#!/usr/bin/env bats
# etcd-upstreams against a real etcd (started per test on free loopback ports, stopped by PID):
# two gatekeepers follow one etcd (puts route on both within 1 s, deletes stop both); a backend
# put before its upstream waits for it; bad values are logged with their key and skipped; etcd
# stopped: both keep serving, and catch up after a restart with changes and a compaction made
# meanwhile; etcd down at start: gatekeeper starts and catches up; a backend registered with
# `etcd-upstreams register` routes on both and goes within its TTL when its helper is killed
# (at once when it is stopped with TERM); TLS with a client certificate, and authentication; a
# gatekeeper restarted while etcd is down serves the state of its cache_file; a bad config
# fails configure.

load helpers
load etcd

setup() {
  start_backend etcd-backend
  BACKEND="{\"address\":\"http://127.0.0.1:$BACKEND_PORT\"}"
}

teardown() {
  stop_all
}

# config_error NAME: the etcd-upstreams plugin's reported state in gatekeeper NAME (null when
# all is well).
config_error() {
  gatekeeper ctl --socket-dir "$BATS_TEST_TMPDIR/$1.sockets" plugins |
    jq -r '.[] | select(.name == "etcd-upstreams") | .config_error'
}

# start_two: two followers; sets GK1, GK2 (URLs) and LOG1, LOG2.
start_two() {
  start_follower gk1
  GK1=$GK_URL LOG1=$GK_LOG
  start_follower gk2
  GK2=$GK_URL LOG2=$GK_LOG
}

@test "two gatekeepers follow one etcd: puts route on both within 1 s, deletes stop both" {
  start_etcd
  start_two
  [ "$(http_code "$GK1/api/x")" = 404 ]

  ectl put /gatekeeper/upstreams/api '{"prefixes": ["api"]}'
  ectl put /gatekeeper/backends/api/b1 "$BACKEND"
  routes_within 10 200 "$GK1/api/x" "$GK2/api/x"

  # Deleting the upstream stops the route; its backend key stays and comes back with it.
  ectl del /gatekeeper/upstreams/api
  routes_within 10 404 "$GK1/api/x" "$GK2/api/x"
  ectl put /gatekeeper/upstreams/api '{"prefixes": ["api"]}'
  routes_within 10 200 "$GK1/api/x" "$GK2/api/x"

  # Deleting the only backend leaves the upstream without one.
  ectl del /gatekeeper/backends/api/b1
  routes_within 10 503 "$GK1/api/x" "$GK2/api/x"
  [ "$(config_error gk1)" = null ]
  [ "$(config_error gk2)" = null ]
}

@test "a backend put before its upstream waits for it; bad values are logged with their key and skipped" {
  start_etcd
  # Read by the initial load: a value that is not JSON, and a good upstream.
  ectl put /gatekeeper/upstreams/early 'not json'
  ectl put /gatekeeper/upstreams/good '{"prefixes": ["good"]}'
  ectl put /gatekeeper/backends/good/g1 "$BACKEND"
  ectl put /gatekeeperish/upstreams/outside '{"prefixes": ["outside"]}'
  # Pages of 2 keys: the 3 keys under the prefix take two range requests.
  start_follower gk1 --upstream-page-size 2
  [ "$(http_code "$GK_URL/good/x")" = 200 ]
  [ "$(http_code "$GK_URL/outside/x")" = 404 ]
  wait_for_log 'read every key under the prefix keys=3 '
  wait_for_log 'bad value, skipped: not JSON.*key="/gatekeeper/upstreams/early"'
  eventually 30 'config_error gk1 | grep -q "^1 bad value(s) skipped: /gatekeeper/upstreams/early: not JSON"'

  ectl put /gatekeeper/backends/late/l1 "$BACKEND"
  wait_for_log 'backend waits for its upstream.s key key="/gatekeeper/backends/late/l1"'
  [ "$(http_code "$GK_URL/late/x")" = 404 ]
  ectl put /gatekeeper/upstreams/late '{"prefixes": ["late"]}'
  routes_within 10 200 "$GK_URL/late/x"

  # Through the watch: not JSON; a wrong field; valid JSON with an address gatekeeper refuses.
  ectl put /gatekeeper/upstreams/web 'nope{'
  ectl put /gatekeeper/upstreams/typo '{"prefixs": ["typo"]}'
  ectl put /gatekeeper/upstreams/ftp '{"prefixes": ["ftp"]}'
  ectl put /gatekeeper/backends/ftp/f1 '{"address": "ftp://127.0.0.1:21"}'
  ectl put /gatekeeper/upstreams/after '{"prefixes": ["after"]}'
  ectl put /gatekeeper/backends/after/a1 "$BACKEND"
  routes_within 10 200 "$GK_URL/after/x" "$GK_URL/good/x" "$GK_URL/late/x"
  wait_for_log 'bad value, skipped: not JSON.*key="/gatekeeper/upstreams/web"'
  wait_for_log 'bad value, skipped: unknown field `prefixs`.*key="/gatekeeper/upstreams/typo"'
  wait_for_log 'refused by gatekeeper, skipped: invalid backend `f1` address `ftp://127.0.0.1:21`.*key="/gatekeeper/backends/ftp/f1"'
  # The upstream of the refused backend is there, without it.
  routes_within 10 503 "$GK_URL/ftp/x"
  config_error gk1 | grep -q '^4 bad value(s) skipped: /gatekeeper/upstreams/early: not JSON'

  # Fixing the values clears them.
  ectl put /gatekeeper/backends/ftp/f1 "$BACKEND"
  for key in early web typo; do ectl del "/gatekeeper/upstreams/$key"; done
  routes_within 10 200 "$GK_URL/ftp/x"
  eventually 10 '[ "$(config_error gk1)" = null ]'
}

@test "etcd stopped: both keep serving; restarted after changes and a compaction: both catch up" {
  start_etcd
  ectl put /gatekeeper/upstreams/api '{"prefixes": ["api"]}'
  ectl put /gatekeeper/backends/api/b1 "$BACKEND"
  start_two
  routes_within 10 200 "$GK1/api/x" "$GK2/api/x"
  plugin=$(plugin_pid etcd-upstreams)

  stop_etcd
  GK_LOG=$LOG1 wait_for_log 'lost etcd'
  GK_LOG=$LOG2 wait_for_log 'lost etcd'
  for _ in 1 2 3; do
    [ "$(http_code "$GK1/api/x")" = 200 ]
    [ "$(http_code "$GK2/api/x")" = 200 ]
    sleep 0.3
  done
  config_error gk1 | grep -q '^etcd unreachable (http://127.0.0.1:[0-9]*) since .*: serving the last known state (1 upstreams)'
  config_error gk2 | grep -q '^etcd unreachable'

  # Changes the gatekeepers cannot see: etcd runs on another client port meanwhile, and the
  # revisions they would resume from are compacted away.
  start_etcd "$(free_port)"
  ectl del /gatekeeper/upstreams/api
  ectl put /gatekeeper/upstreams/web '{"prefixes": ["web"]}'
  ectl put /gatekeeper/backends/web/w1 "$BACKEND"
  ectl compact "$(etcd_revision)"
  stop_etcd
  [ "$(http_code "$GK1/api/x")" = 200 ]
  # Many reconnection attempts (every 300 ms at most), one warning (warn_interval is 30 s).
  [ "$(grep -c 'lost etcd' "$LOG2")" = 1 ]
  [ "$(grep -c 'etcd still unreachable' "$LOG2")" = 0 ]

  start_etcd
  routes_within 50 200 "$GK1/web/x" "$GK2/web/x"
  routes_within 10 404 "$GK1/api/x" "$GK2/api/x"
  GK_LOG=$LOG1 wait_for_log 'etcd compacted the revisions this plugin had not seen'
  GK_LOG=$LOG2 wait_for_log 'etcd compacted the revisions this plugin had not seen'
  GK_LOG=$LOG1 wait_for_log 'etcd reachable again'
  eventually 10 '[ "$(config_error gk1)" = null ]'
  eventually 10 '[ "$(config_error gk2)" = null ]'

  # The plugin was not restarted for it (no heartbeat failures).
  [ "$(plugin_pid etcd-upstreams)" = "$plugin" ]

  # And they follow again.
  ectl put /gatekeeper/upstreams/api '{"prefixes": ["api"]}'
  ectl put /gatekeeper/backends/api/b1 "$BACKEND"
  routes_within 10 200 "$GK1/api/x" "$GK2/api/x"
}

@test "etcd down at start: gatekeeper starts, says so, and routes once etcd answers" {
  ETCD_PORT=$(free_port)
  ETCD_URL="http://127.0.0.1:$ETCD_PORT"
  start_follower gk1 --upstream-warn-interval 1s
  wait_for_log 'etcd unreachable at start .*: retrying in the background'
  wait_for_log 'starting with no upstreams from etcd'
  wait_for_log 'etcd still unreachable after [0-9]+s: serving the last known state.*attempts=[0-9]+'
  [ "$(http_code "$GK_URL/api/x")" = 404 ]
  eventually 30 'config_error gk1 | grep -q "^etcd unreachable"'

  start_etcd
  ectl put /gatekeeper/upstreams/api '{"prefixes": ["api"]}'
  ectl put /gatekeeper/backends/api/b1 "$BACKEND"
  routes_within 50 200 "$GK_URL/api/x"
  wait_for_log 'etcd reachable again'
  eventually 10 '[ "$(config_error gk1)" = null ]'
}

@test "cache_file: a gatekeeper restarted while etcd is down serves the last known state" {
  cache="$BATS_TEST_TMPDIR/etcd-upstreams.json"
  start_etcd
  ectl put /gatekeeper/upstreams/api '{"prefixes": ["api"]}'
  ectl put /gatekeeper/backends/api/b1 "$BACKEND"
  start_follower gk1 --upstream-cache-file "$cache"
  [ "$(http_code "$GK_URL/api/x")" = 200 ]
  [ "$(jq -r '.upstreams[0].backends[0].id' "$cache")" = b1 ]

  stop_gatekeeper
  stop_etcd
  start_follower gk1 --upstream-cache-file "$cache"
  wait_for_log 'serving the last known state from the cache file until etcd answers.*upstreams=1'
  [ "$(http_code "$GK_URL/api/x")" = 200 ]

  # etcd back, changed meanwhile: its state replaces the cached one.
  start_etcd "$(free_port)"
  ectl del /gatekeeper/upstreams/api
  ectl put /gatekeeper/upstreams/web '{"prefixes": ["web"]}'
  ectl put /gatekeeper/backends/web/w1 "$BACKEND"
  stop_etcd
  start_etcd
  routes_within 50 200 "$GK_URL/web/x"
  routes_within 10 404 "$GK_URL/api/x"
  eventually 10 '[ "$(jq -r ".upstreams[0].upstream.id" "$cache")" = web ]'
}

@test "a self-registered backend routes on both gatekeepers and goes within its TTL when its helper dies" {
  start_etcd
  ectl put /gatekeeper/upstreams/reg '{"prefixes": ["reg"]}'
  start_two
  routes_within 10 503 "$GK1/reg/x" "$GK2/reg/x"
  register() {
    etcd-upstreams register --upstream reg --address "http://127.0.0.1:$BACKEND_PORT" --ttl 2s \
      --endpoints "$ETCD_URL" >>"$BATS_TEST_TMPDIR/register.log" 2>&1 &
    REGISTER_PID=$!
    PIDS+=("$REGISTER_PID")
  }

  register
  routes_within 30 200 "$GK1/reg/x" "$GK2/reg/x"
  [ "$(ectl get --prefix /gatekeeper/backends/reg/ --keys-only)" = "/gatekeeper/backends/reg/127.0.0.1:$BACKEND_PORT" ]
  # Killed: no more keep-alives, the key goes when the 2 s lease expires.
  kill -9 "$REGISTER_PID"
  routes_within 40 503 "$GK1/reg/x" "$GK2/reg/x"
  [ -z "$(ectl get --prefix /gatekeeper/backends/reg/ --keys-only)" ]

  # Stopped with TERM: the lease is revoked, the key goes at once.
  register
  routes_within 30 200 "$GK1/reg/x" "$GK2/reg/x"
  kill -TERM "$REGISTER_PID"
  status=0
  wait "$REGISTER_PID" || status=$?
  [ "$status" = 0 ]
  [ -z "$(ectl get --prefix /gatekeeper/backends/reg/ --keys-only)" ]
  routes_within 10 503 "$GK1/reg/x" "$GK2/reg/x"
  grep -q 'lease revoked, key deleted' "$BATS_TEST_TMPDIR/register.log"
}

@test "TLS with a client certificate; without one etcd refuses and gatekeeper starts anyway" {
  make_pki
  pki="$BATS_TEST_TMPDIR/pki"
  ETCD_SCHEME=https
  ETCD_ARGS=(--cert-file "$pki/server.pem" --key-file "$pki/server-key.pem"
    --trusted-ca-file "$pki/ca.pem" --client-cert-auth)
  export ETCDCTL_CACERT="$pki/ca.pem" ETCDCTL_CERT="$pki/client.pem" ETCDCTL_KEY="$pki/client-key.pem"
  start_etcd
  [[ $ETCD_URL == https://* ]]
  ectl put /gatekeeper/upstreams/api '{"prefixes": ["api"]}'
  ectl put /gatekeeper/backends/api/b1 "$BACKEND"

  start_follower gk1 --upstream-ca-file "$pki/ca.pem" --upstream-cert-file "$pki/client.pem" \
    --upstream-key-file "$pki/client-key.pem"
  [ "$(http_code "$GK_URL/api/x")" = 200 ]
  ectl put /gatekeeper/upstreams/web '{"prefixes": ["web"]}'
  ectl put /gatekeeper/backends/web/w1 "$BACKEND"
  routes_within 10 200 "$GK_URL/web/x"

  # Without the client certificate the TLS handshake fails: reported, not fatal.
  start_follower gk2 --upstream-ca-file "$pki/ca.pem"
  wait_for_log 'etcd unreachable at start'
  [ "$(http_code "$GK_URL/api/x")" = 404 ]

  # TLS files with an http:// endpoint: gatekeeper refuses to start, naming the keys.
  run gatekeeper check --upstream-plugin etcd-upstreams --upstream-endpoints http://127.0.0.1:1 \
    --upstream-ca-file "$pki/ca.pem"
  [ "$status" -ne 0 ]
  [[ $output == *'`ca_file`, `cert_file` and `key_file` need https:// endpoints'* ]]
}

@test "authentication: the right password reads, a wrong one is reported, not fatal" {
  start_etcd
  ectl user add root:rootpw >/dev/null
  ectl auth enable >/dev/null
  export ETCDCTL_USER=root:rootpw
  ectl put /gatekeeper/upstreams/api '{"prefixes": ["api"]}'
  ectl put /gatekeeper/backends/api/b1 "$BACKEND"

  start_follower gk1 --upstream-username root --upstream-password rootpw
  [ "$(http_code "$GK_URL/api/x")" = 200 ]

  start_follower gk2 --upstream-username root --upstream-password wrong
  wait_for_log 'etcd unreachable at start .*authentication failed'
  [ "$(http_code "$GK_URL/api/x")" = 404 ]
}

@test "a bad config fails configure naming the key: gatekeeper refuses to start" {
  run timeout 20 gatekeeper --listen "127.0.0.1:$(free_port)" --socket-dir "$BATS_TEST_TMPDIR" \
    --upstream-plugin etcd-upstreams --upstream-endpoints 127.0.0.1:2379
  [ "$status" -ne 0 ]
  [ "$status" -ne 124 ]
  [[ $output == *'config key `endpoints`: `127.0.0.1:2379` must be an http:// or https:// URL'* ]]
  run gatekeeper check --upstream-plugin etcd-upstreams --upstream-dial-timeout soon
  [ "$status" -ne 0 ]
  [[ $output == *'config key `dial_timeout` must be a duration'* ]]
}
