#!/usr/bin/env bats
# The example plugins of plugin-sdk/examples written in languages other than Rust, run under the
# real gatekeeper: token-auth (Python modifier), canary (Node router), access-log (Python
# metric). Needs python3 and node (>= 20).

load helpers

EXAMPLES="$REPO_ROOT/plugin-sdk/examples"

setup() {
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  CONFIG="$BATS_TEST_TMPDIR/gk.toml"
  start_backends stable-backend canary-backend
  STABLE_PORT=${BACKEND_PORTS[0]}
  CANARY_PORT=${BACKEND_PORTS[1]}
  write_two_upstreams
}

teardown() {
  stop_all
}

# write_two_upstreams [WITHOUT]: upstreams `stable` (prefix app) and `canary` (prefix beta) on
# the two echo backends, and `echo` (prefix echo) on the stable backend; WITHOUT names one of
# them to leave out.
write_two_upstreams() {
  local without=${1:-}
  : >"$UPSTREAMS"
  [[ $without == stable ]] || cat >>"$UPSTREAMS" <<YAML
stable:
  timeout: 5s
  prefixes: [app]
  backends: [http://127.0.0.1:$STABLE_PORT]
YAML
  [[ $without == canary ]] || cat >>"$UPSTREAMS" <<YAML
canary:
  timeout: 5s
  prefixes: [beta]
  backends: [http://127.0.0.1:$CANARY_PORT]
YAML
  cat >>"$UPSTREAMS" <<YAML
echo:
  timeout: 5s
  prefixes: [echo]
  backends: [http://127.0.0.1:$STABLE_PORT]
YAML
}

# write_config TOP-LEVEL-LINES PLUGIN-TABLES: a config file with static-upstreams on $UPSTREAMS
# and the given [[plugin]] tables.
write_config() {
  cat >"$CONFIG" <<TOML
$1

$(static_upstreams_table)

$2
TOML
}

# status_of NAME ARGS...: curl ARGS, saving headers to $BATS_TEST_TMPDIR/NAME.headers and the
# body to NAME.body; prints the status code.
status_of() {
  local name=$1
  shift
  curl -s --max-time 5 -D "$BATS_TEST_TMPDIR/$name.headers" -o "$BATS_TEST_TMPDIR/$name.body" \
    -w '%{http_code}' "$@" || true
}

# ---------------------------------------------------------------------------------------------
# token-auth

TOKENS="$BATS_TEST_TMPDIR/tokens"

# start_token_auth [EXTRA-CONFIG]: gatekeeper with token-auth on $TOKENS (tokens alpha, beta).
start_token_auth() {
  printf '# tokens for the tests\nalpha\n\nbeta   # with a comment\n' >"$TOKENS"
  write_config "" "[[plugin]]
name = \"token-auth\"
type = \"modifier\"
command = \"python3\"
args = [\"$EXAMPLES/token-auth/token_auth.py\"]
config = { tokens_file = \"$TOKENS\"$1 }"
  start_gatekeeper --config "$CONFIG"
}

@test "token-auth: no token or a wrong one is 401 with WWW-Authenticate: Bearer" {
  start_token_auth
  [ "$(status_of none "$GK_URL/echo/x")" = 401 ]
  [[ $(response_header "$BATS_TEST_TMPDIR/none.headers" www-authenticate) == Bearer* ]]
  [ "$(status_of wrong -H 'Authorization: Bearer gamma' "$GK_URL/echo/x")" = 401 ]
  [[ $(response_header "$BATS_TEST_TMPDIR/wrong.headers" www-authenticate) == Bearer* ]]
  [ "$(status_of basic -H 'Authorization: Basic YWxwaGE6' "$GK_URL/echo/x")" = 401 ]
  # The backend never saw them: the echo backend answers JSON, the plugin plain text.
  grep -q unauthorized "$BATS_TEST_TMPDIR/none.body"
}

@test "token-auth: a listed token passes, and the header is forwarded by default" {
  start_token_auth
  [ "$(status_of ok -H 'Authorization: Bearer alpha' "$GK_URL/echo/x")" = 200 ]
  [ "$(jq -r .backend "$BATS_TEST_TMPDIR/ok.body")" = stable-backend ]
  [ "$(jq -r .headers.authorization "$BATS_TEST_TMPDIR/ok.body")" = "Bearer alpha" ]
  [ "$(status_of ok2 -H 'Authorization: bearer beta' "$GK_URL/echo/x")" = 200 ]
}

@test "token-auth: strip = true removes Authorization before forwarding" {
  start_token_auth ', strip = true'
  [ "$(status_of ok -H 'Authorization: Bearer beta' "$GK_URL/echo/x")" = 200 ]
  [ "$(jq -r '.headers | has("authorization")' "$BATS_TEST_TMPDIR/ok.body")" = false ]
}

@test "token-auth: an edited tokens file takes effect within a bounded wait" {
  # Without gatekeeper's decision cache (cache.bats covers it), an edit takes effect at once.
  start_token_auth ', cache_ttl = 0'
  [ "$(status_of old -H 'Authorization: Bearer alpha' "$GK_URL/echo/x")" = 200 ]
  [ "$(status_of new -H 'Authorization: Bearer gamma' "$GK_URL/echo/x")" = 401 ]
  # Replace alpha with gamma (in place: same inode, new mtime and size).
  printf 'beta\ngamma\n' >"$TOKENS"
  eventually 50 '[ "$(http_code -H "Authorization: Bearer gamma" "$GK_URL/echo/x")" = 200 ]'
  [ "$(status_of removed -H 'Authorization: Bearer alpha' "$GK_URL/echo/x")" = 401 ]
  [ "$(status_of kept -H 'Authorization: Bearer beta' "$GK_URL/echo/x")" = 200 ]
  # Atomic replacement (a new inode) works too.
  printf 'delta\n' >"$TOKENS.new"
  mv "$TOKENS.new" "$TOKENS"
  eventually 50 '[ "$(http_code -H "Authorization: Bearer delta" "$GK_URL/echo/x")" = 200 ]'
  [ "$(status_of gone -H 'Authorization: Bearer beta' "$GK_URL/echo/x")" = 401 ]
}

# ---------------------------------------------------------------------------------------------
# canary

# start_canary CONFIG [GATEKEEPER-ARGS...]: gatekeeper with the canary router, given config map
# entries (TOML inline-table body).
start_canary() {
  local config=$1
  shift
  write_config "" "[[plugin]]
name = \"canary\"
type = \"router\"
command = \"node\"
args = [\"$EXAMPLES/canary/canary.js\"]
config = { $config }"
  start_gatekeeper --config "$CONFIG" "$@"
  # The router learns the upstreams right after it is ready: wait until the split works.
  eventually 50 '[ "$(http_code "$GK_URL/app/x")" = 200 ]'
}

# backends_of N ARGS...: the distinct backends that answered N requests curl ARGS (sorted).
backends_of() {
  local n=$1 i
  shift
  for ((i = 0; i < n; i++)); do echoed_backend "$@"; done | sort -u | tr '\n' ' '
}

@test "canary: the header sends a request to the canary; without it percent 0 is stable" {
  start_canary 'percent = 0, header = "x-canary: 1"'
  [ "$(backends_of 10 "$GK_URL/app/x")" = "stable-backend " ]
  [ "$(backends_of 5 -H 'x-canary: 1' "$GK_URL/app/x")" = "canary-backend " ]
  [ "$(backends_of 3 -H 'x-canary: 0' "$GK_URL/app/x")" = "stable-backend " ]
  # The stable/canary prefix is stripped; other paths go to the split unchanged.
  [ "$(curl -sS --max-time 5 -H 'x-canary: 1' "$GK_URL/app/users/1" | jq -r .path)" = /users/1 ]
  [ "$(curl -sS --max-time 5 "$GK_URL/other/path" | jq -r '.backend + " " + .path')" = "stable-backend /other/path" ]
}

@test "canary: percent 100 sends everything to the canary (config from a flag string)" {
  start_canary 'header = "x-canary: 1"' --router-percent 100
  [ "$(backends_of 10 "$GK_URL/app/x")" = "canary-backend " ]
}

@test "canary: the cookie sends a request to the canary" {
  start_canary 'percent = 0, cookie = "canary=1"'
  [ "$(backends_of 5 -H 'Cookie: a=b; canary=1' "$GK_URL/app/x")" = "canary-backend " ]
  [ "$(backends_of 5 -H 'Cookie: canary=2' "$GK_URL/app/x")" = "stable-backend " ]
  [ "$(backends_of 5 "$GK_URL/app/x")" = "stable-backend " ]
}

@test "canary: other upstreams keep prefix routing, prefix stripped" {
  start_canary 'percent = 100'
  run curl -sS --max-time 5 "$GK_URL/echo/a/b"
  [ "$(jq -r .path <<<"$output")" = /a/b ]
  # echo shares the stable backend, so percent 100 would have said canary had the split decided.
  [ "$(jq -r .backend <<<"$output")" = stable-backend ]
}

@test "canary: sticky = true gives one client one side of a 50% split" {
  start_canary 'percent = 50, sticky = true'
  [[ $(backends_of 20 "$GK_URL/app/x") =~ ^(stable|canary)-backend\ $ ]]
}

@test "canary: without a canary upstream, canary requests fall back to stable" {
  write_two_upstreams canary
  start_canary 'percent = 100, header = "x-canary: 1"'
  [ "$(backends_of 5 -H 'x-canary: 1' "$GK_URL/app/x")" = "stable-backend " ]
}

# ---------------------------------------------------------------------------------------------
# access-log

# start_access_log [CONFIG]: gatekeeper with access-log (config map entries), flushing metrics
# every 100 ms.
start_access_log() {
  write_config 'metrics_flush_interval = "100ms"' "[[plugin]]
name = \"access-log\"
type = \"metric\"
command = \"python3\"
args = [\"$EXAMPLES/access-log/access_log.py\"]
config = { $1 }"
  start_gatekeeper --config "$CONFIG"
}

@test "access-log: one JSON line per request with the documented fields" {
  ACCESS="$BATS_TEST_TMPDIR/access.log"
  start_access_log "path = \"$ACCESS\""
  [ "$(http_code "$GK_URL/echo/one?q=1")" = 200 ]
  [ "$(http_code -X POST -d 'hello' "$GK_URL/echo/two")" = 200 ]
  [ "$(http_code "$GK_URL/nowhere")" = 404 ]
  wait_for_records "$ACCESS" 'select(.path == "/nowhere")' 1
  wait_for_records "$ACCESS" 'select(.path | startswith("/echo/"))' 2
  line=$(records "$ACCESS" 'select(.path == "/echo/one")')
  echo "$line"
  jq -e '
    (.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"))
    and .method == "GET" and (.host | startswith("127.0.0.1:")) and .status == 200
    and .upstream == "echo" and (.backend | type) == "string" and (.backend | length) > 0
    and .bytes_in == 0 and .bytes_out > 0
    and (.total_ms | type) == "number" and (.upstream_ms | type) == "number"
    and .upstream_ms <= .total_ms' <<<"$line"
  records "$ACCESS" 'select(.path == "/echo/two")' | jq -e '.method == "POST" and .bytes_in == 5'
  records "$ACCESS" 'select(.path == "/nowhere")' | jq -e '.status == 404 and .upstream == null and .upstream_ms == null and (.total_ms | type) == "number"'
}

@test "access-log: a rotated file is reopened without a signal" {
  ACCESS="$BATS_TEST_TMPDIR/access.log"
  start_access_log "path = \"$ACCESS\""
  [ "$(http_code "$GK_URL/echo/before")" = 200 ]
  wait_for_records "$ACCESS" 'select(.path == "/echo/before")' 1
  mv "$ACCESS" "$ACCESS.1"
  [ "$(http_code "$GK_URL/echo/after")" = 200 ]
  wait_for_records "$ACCESS" 'select(.path == "/echo/after")' 1
  [ "$(count_records "$ACCESS" 'select(.path == "/echo/before")')" = 0 ]
  [ "$(count_records "$ACCESS.1" 'select(.path == "/echo/after")')" = 0 ]
}

@test "access-log: without path the lines go to stdout, into gatekeeper's log" {
  start_access_log ''
  [ "$(http_code "$GK_URL/echo/to-stdout")" = 200 ]
  wait_for_log '"path":"/echo/to-stdout"'
}
