#!/usr/bin/env bats
# The Node SDK as a plugin author installs it: the package is packed (`npm pack`, offline),
# installed into a fresh project, and its test host (`gatekeeper-plugin-sdk/testing`) runs the
# canary example (a Node router); a router returning `{upstream: 42}` is refused by the SDK, in
# the test host and under the real gatekeeper (answered as an error, not sent as a bad result,
# so gatekeeper does not restart the plugin). Needs node (>= 20) and npm.

load helpers

SDK="$REPO_ROOT/plugin-sdk/node"

setup() {
  PROJECT="$BATS_TEST_TMPDIR/project"
  mkdir -p "$PROJECT/node_modules/gatekeeper-plugin-sdk"
  (cd "$SDK" && npm pack --pack-destination "$BATS_TEST_TMPDIR" --ignore-scripts --offline --silent >/dev/null)
  tar -xzf "$BATS_TEST_TMPDIR"/gatekeeper-plugin-sdk-*.tgz -C "$PROJECT/node_modules/gatekeeper-plugin-sdk" --strip-components=1
  echo '{"type": "module"}' >"$PROJECT/package.json"
  # A router that answers with a result the protocol cannot carry.
  cat >"$PROJECT/bad-router.js" <<'JS'
import { RouterPlugin, serve } from 'gatekeeper-plugin-sdk';
export class BadRouter extends RouterPlugin {
  async routeRequest() {
    return { upstream: 42 };
  }
}
serve(new BadRouter());
JS
}

teardown() {
  stop_all
}

@test "sdk-node: the installed test host runs the canary example: header, percent and prefixes" {
  cat >"$PROJECT/canary.test.js" <<JS
import { makeRequest, startTestHost } from 'gatekeeper-plugin-sdk/testing';
import { Canary } from '$REPO_ROOT/plugin-sdk/examples/canary/canary.js';

const host = await startTestHost(new Canary(), { config: { percent: '0', header: 'x-canary: 1' }, type: 'router' });
try {
  await host.addUpstream({ id: 'stable', prefixes: ['app'] });
  await host.addUpstream({ id: 'canary', prefixes: ['beta'] });
  await host.addUpstream({ id: 'api', prefixes: ['api'] });
  const route = (options) => host.routeRequest(makeRequest(options));
  console.log(JSON.stringify({
    hooks: host.hooks,
    flagged: await route({ path: '/app/x', headers: { 'X-Canary': '1' } }),
    plain: await route({ path: '/app/x' }),
    other: await route({ path: '/api/users' }),
  }));
} finally {
  await host.stop();
}
JS
  run node "$PROJECT/canary.test.js"
  echo "$output"
  [ "$status" -eq 0 ]
  output=$(tail -n 1 <<<"$output") # the canary logs its config on stderr first
  [ "$(jq -c .hooks <<<"$output")" = '["add_upstream","remove_upstream","route_request"]' ]
  [ "$(jq -c .flagged <<<"$output")" = '{"upstream":"canary","prefixless_path":"/x"}' ]
  [ "$(jq -c .plain <<<"$output")" = '{"upstream":"stable","prefixless_path":"/x"}' ]
  [ "$(jq -c .other <<<"$output")" = '{"upstream":"api","prefixless_path":"/users"}' ]
}

@test "sdk-node: {upstream: 42} from route_request is refused by the SDK in the test host" {
  cat >"$PROJECT/bad.test.js" <<'JS'
import { makeRequest, startTestHost } from 'gatekeeper-plugin-sdk/testing';
import { silentLogger } from 'gatekeeper-plugin-sdk';
import { BadRouter } from './bad-router.js';

const host = await startTestHost(new BadRouter(), { logger: silentLogger });
try {
  await host.routeRequest(makeRequest());
  console.log(JSON.stringify({ accepted: true }));
} catch (error) {
  console.log(JSON.stringify({ code: error.code, message: error.message }));
} finally {
  await host.stop();
}
JS
  run node "$PROJECT/bad.test.js"
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(jq .code <<<"$output")" = -32603 ]
  jq -e '.message | test("returned a result the protocol cannot carry: route_request result: `upstream` must be a string or null")' <<<"$output"
}

@test "sdk-node: under gatekeeper, {upstream: 42} is answered as an error (fail-open), not a bad result: no restart" {
  start_backend
  write_upstreams "$BATS_TEST_TMPDIR/upstreams.yml" "$BACKEND_PORT"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$BATS_TEST_TMPDIR/upstreams.yml" \
    --router-plugin "node $PROJECT/bad-router.js"
  pid=$(plugin_pid bad-router)
  # The router's call fails; fail-open (the default) routes with the built-in prefix router.
  [ "$(http_code "$GK_URL/echo/x")" = 200 ]
  wait_for_log 'ERROR .*routeRequest\(\) returned a result the protocol cannot carry: route_request result: `upstream` must be a string or null; answering `route_request` with an internal error instead of sending it'
  wait_for_log 'hook failed .*plugin=bad-router hook="route_request" kind="error_answer"'
  # Not a bad result (which is a protocol violation: the plugin would be restarted).
  ! gk_log | grep -q 'kind="bad_result"'
  [ "$(http_code "$GK_URL/echo/x")" = 200 ]
  [ "$(plugin_pid bad-router)" = "$pid" ]
  ! gk_log | grep -Eiq 'restart.*bad-router|bad-router.*restart'
}
