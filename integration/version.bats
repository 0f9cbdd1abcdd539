#!/usr/bin/env bats
# `gatekeeper --version` (and `gatekeeper ctl --version`): `gatekeeper VERSION (commit HASH)`,
# HASH being `git rev-parse --short HEAD` of the checkout the binary was built from, or
# `unknown` outside git (issue 17). Starts no process that outlives its command.

load helpers

# The one line `gatekeeper VERSION (commit HASH)`; sets VERSION and COMMIT from it.
read_version() {
  [[ $1 =~ ^gatekeeper\ ([0-9]+\.[0-9]+\.[0-9]+)\ \(commit\ ([0-9a-f]{7,40}|unknown)\)$ ]]
  VERSION=${BASH_REMATCH[1]}
  COMMIT=${BASH_REMATCH[2]}
}

@test "gatekeeper --version names the version and the commit it was built from" {
  run gatekeeper --version
  [ "$status" -eq 0 ]
  echo "$output" >&2
  read_version "$output"
  # The workspace's version ([workspace.package] in the root Cargo.toml).
  [ "$VERSION" = "$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_ROOT/Cargo.toml" | head -1)" ]
  # Built from this checkout (scripts/test.sh builds before it runs the suites): its HEAD.
  if head=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null); then
    [ "$COMMIT" = "$head" ]
  fi
  run gatekeeper -V
  [ "$status" -eq 0 ]
  read_version "$output"
}

@test "gatekeeper ctl --version names the same version and commit" {
  run gatekeeper --version
  version_line=$output
  run gatekeeper ctl --version
  [ "$status" -eq 0 ]
  [ "$output" = "gatekeeper ctl ${version_line#gatekeeper }" ]
}
