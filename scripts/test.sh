#!/usr/bin/env bash
# Runs every test: installs what is missing (bats, curl, jq, python3, wrk, node, ss, pgrep, etcd,
# etcdctl, redis-server, protoc, buildah), then fmt check,
# clippy with -D warnings, cargo test, the Python and Node SDK tests, and the bats suites in
# integration/ against the real binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in bats curl jq python3 wrk; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
command -v pgrep >/dev/null 2>&1 || missing+=(procps)
# etcd and Redis for the distributed suites (the tests start and stop their own servers on
# loopback); protoc for the etcd client crate's build.
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# The package and image suites: dpkg-deb (Debian's dpkg), buildah (no daemon; vfs + chroot).
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step() { echo; echo "==> $*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
# The cargo-fuzz crate is a workspace of its own (built by scripts/fuzz.sh with nightly).
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --workspace --quiet 2>&1 | tee target/cargo-test.log
# Sum the per-binary summaries so the log ends with one line that counts everything.
unit_passed=$(awk '/^test result:/ { p += $4 } END { print p + 0 }' target/cargo-test.log)

sdk_passed=0
if [[ -d plugin-sdk/python/tests ]]; then
  step "Python SDK tests"
  python3 -m unittest discover -s plugin-sdk/python/tests 2>&1 | tee target/python-test.log
  sdk_passed=$((sdk_passed + $(awk '/^Ran [0-9]+ test/ { print $2 }' target/python-test.log)))
fi
if [[ -d plugin-sdk/node/test ]]; then
  step "Node SDK tests"
  node --test plugin-sdk/node/test/ 2>&1 | tee target/node-test.log
  sdk_passed=$((sdk_passed + $(awk '/^# pass / { print $3 }' target/node-test.log)))
fi

step "build binaries for the integration suites"
cargo build --workspace --bins --quiet
export GATEKEEPER_BIN_DIR="$PWD/target/debug"

step "bats integration/"
bats_count=$(bats --count integration/)
bats --timing integration/

echo
echo "total: $((unit_passed + sdk_passed + bats_count)) passed, 0 failed"
