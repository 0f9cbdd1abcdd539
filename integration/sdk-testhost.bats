#!/usr/bin/env bats
# The SDKs' test hosts, as a plugin author uses them: the Python one from an installed copy of
# the SDK (`pip install --target`, offline) drives the token-auth example (denies without a
# token, lets a listed one through), and the Rust one drives the traffic-shaping example through
# its unit tests (`cargo test`, built already by scripts/test.sh's `cargo test --workspace`).

load helpers

bats_require_minimum_version 1.5.0

EXAMPLES="$REPO_ROOT/plugin-sdk/examples"

# installer: prints a Python whose pip can build the SDK offline (setuptools and wheel), if any.
installer() {
  local python
  for python in python3 /usr/bin/python3; do
    if "$python" -c 'import setuptools, wheel, pip' 2>/dev/null; then
      echo "$python"
      return 0
    fi
  done
  return 1
}

# Installs the SDK once for the file, into $BATS_FILE_TMPDIR/site, from a clean copy (pip
# builds in the source tree, whose stale build/ could hide a package left out of
# pyproject.toml). No installer: the Python tests skip.
setup_file() {
  local python
  python=$(installer) || return 0
  cp -r "$REPO_ROOT/plugin-sdk/python" "$BATS_FILE_TMPDIR/src"
  rm -rf "$BATS_FILE_TMPDIR/src/build" "$BATS_FILE_TMPDIR/src/tests" "$BATS_FILE_TMPDIR"/src/*.egg-info
  (cd "$BATS_FILE_TMPDIR" && PIP_DISABLE_PIP_VERSION_CHECK=1 "$python" -m pip install --quiet \
    --no-deps --no-build-isolation --no-index --target "$BATS_FILE_TMPDIR/site" ./src 2>&1)
}

setup() {
  SITE="$BATS_FILE_TMPDIR/site"
}

@test "python: the test host of an installed SDK runs token-auth: no token 401, a listed one passes" {
  [[ -d $SITE ]] || skip "no Python with pip, setuptools and wheel to install the SDK with"
  # The example copied away from the repository, so its fallback to plugin-sdk/python cannot be
  # what it imports.
  mkdir -p "$BATS_TEST_TMPDIR/a/b"
  cp "$EXAMPLES/token-auth/token_auth.py" "$BATS_TEST_TMPDIR/a/b/"
  printf 'alpha\n' >"$BATS_TEST_TMPDIR/tokens"
  cat >"$BATS_TEST_TMPDIR/a/b/test_token_auth.py" <<'PY'
import json, sys
site, tokens = sys.argv[1], sys.argv[2]
import os
sys.path[:0] = [site, os.path.dirname(os.path.abspath(__file__))]
import gatekeeper_plugin
from gatekeeper_plugin.testing import PluginHost, make_request
from token_auth import TokenAuth

assert gatekeeper_plugin.__file__.startswith(site), gatekeeper_plugin.__file__
with PluginHost(TokenAuth(), type="modifier", config={"tokens_file": tokens, "cache_ttl": "5"}) as host:
    denied = host.modify_request(make_request(path="/api"))
    allowed = host.modify_request(make_request(path="/api", headers={"Authorization": "Bearer alpha"}))
print(json.dumps({"denied": denied, "allowed": allowed}))
PY
  run --separate-stderr python3 -I "$BATS_TEST_TMPDIR/a/b/test_token_auth.py" "$SITE" "$BATS_TEST_TMPDIR/tokens"
  [ "$status" -eq 0 ] || { echo "$stderr"; false; }
  jq -e '.denied.response.status == 401' <<<"$output"
  jq -e '.denied.response.headers | any(.[0] == "www-authenticate" and .[1] == "Bearer")' <<<"$output"
  jq -e '.allowed.response == null and .allowed.cache.ttl_ms == 5000' <<<"$output"
}

@test "python: the installed test host reports a result gatekeeper would refuse" {
  [[ -d $SITE ]] || skip "no Python with pip, setuptools and wheel to install the SDK with"
  run --separate-stderr python3 -I - "$SITE" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from gatekeeper_plugin import RouterPlugin, RpcError
from gatekeeper_plugin.testing import PluginHost, make_request

class Wrong(RouterPlugin):
    async def route_request(self, request):
        return {"upstream": 42}

with PluginHost(Wrong()) as host:
    try:
        host.route_request(make_request())
    except RpcError as error:
        print(error.code, error.message)
PY
  [ "$status" -eq 0 ] || { echo "$stderr"; false; }
  [[ $output == "-32603 "*upstream* ]]
}

@test "rust: the test host runs traffic-shaping: a second request waits for the first one's slot" {
  command -v cargo >/dev/null || skip "no cargo"
  # The example's test binary as scripts/test.sh's `cargo test --workspace` built it (asking
  # for the workspace keeps its feature set, so nothing is rebuilt; `-p` alone would rebuild
  # the dependencies with other features, over a minute).
  binary=$(cargo test --workspace --offline --no-run --message-format=json \
    --manifest-path "$REPO_ROOT/Cargo.toml" 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test
      and .target.name == "traffic-shaping") | .executable')
  [ -x "$binary" ]
  run --separate-stderr "$binary" testhost
  [ "$status" -eq 0 ] || { echo "$output"; echo "$stderr"; false; }
  [[ $output == *"test result: ok. 2 passed"* ]]
}
