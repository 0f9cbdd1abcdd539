#!/usr/bin/env bats
# The OCI image (scripts/image.sh, issue 17): built with buildah from scratch out of the
# binaries under test, in a storage of its own under the test's temp dir (vfs driver, chroot
# isolation: no daemon, no registry). Checks the archive's configuration and contents, and runs
# the image: gatekeeper serves a request on loopback from inside it.

load helpers

setup_file() {
  command -v buildah >/dev/null || return 0
  export STORAGE="$BATS_FILE_TMPDIR/storage" OUT="$BATS_FILE_TMPDIR/image"
  "$REPO_ROOT/scripts/image.sh" --bin-dir "$BIN_DIR" --storage "$STORAGE" --output "$OUT" --keep \
    >"$BATS_FILE_TMPDIR/image.log" 2>&1 || {
    cat "$BATS_FILE_TMPDIR/image.log" >&3
    return 1
  }
  ARCHIVE=$(tail -n 1 "$BATS_FILE_TMPDIR/image.log")
  export ARCHIVE
}

teardown_file() {
  # vfs layers hold read-only directories; the storage goes with the temp dir.
  if [[ -n ${STORAGE:-} && -d $STORAGE ]]; then
    buildah --storage-driver vfs --root "$STORAGE/root" --runroot "$STORAGE/run" rm --all >/dev/null 2>&1 || true
    chmod -R u+w "$STORAGE" 2>/dev/null || true
    rm -rf "$STORAGE"
  fi
}

teardown() { stop_all; }

setup() {
  command -v buildah >/dev/null || skip "buildah is missing (scripts/test.sh installs it)"
  [[ $(id -u) -eq 0 ]] || skip "buildah's chroot isolation needs root"
}

buildah_here() { buildah --storage-driver vfs --root "$STORAGE/root" --runroot "$STORAGE/run" "$@"; }

version() { sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_ROOT/Cargo.toml" | head -n 1; }

@test "image: the build's smoke test ran gatekeeper --version and check inside the image" {
  cat "$BATS_FILE_TMPDIR/image.log"
  grep -qx "gatekeeper $(version) (commit [0-9a-f]*)" "$BATS_FILE_TMPDIR/image.log"
  grep -qx "/etc/gatekeeper/gatekeeper.toml: ok" "$BATS_FILE_TMPDIR/image.log"
  grep -q "^==> image size: .* unpacked, .* as an archive$" "$BATS_FILE_TMPDIR/image.log"
  [ "$(basename "$ARCHIVE")" = "gatekeeper-$(version).oci.tar" ]
}

@test "image: an OCI archive, FROM scratch, non-root, gatekeeper as the entrypoint" {
  oci=$BATS_TEST_TMPDIR/oci
  mkdir -p "$oci"
  tar -xf "$ARCHIVE" -C "$oci"
  [ "$(jq -r .imageLayoutVersion "$oci/oci-layout")" = 1.0.0 ]
  blob() { echo "$oci/blobs/${1/://}"; }
  manifest=$(blob "$(jq -r '.manifests[0].digest' "$oci/index.json")")
  [ "$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$oci/index.json")" = "gatekeeper:$(version)" ]
  config=$(blob "$(jq -r .config.digest "$manifest")")
  jq . "$config" | head -40
  [ "$(jq -r .config.User "$config")" = 65532:65532 ]
  [ "$(jq -c .config.Entrypoint "$config")" = '["/usr/bin/gatekeeper"]' ]
  [ "$(jq -c .config.Cmd "$config")" = '["--config","/etc/gatekeeper/gatekeeper.toml"]' ]
  [ "$(jq -r '.config.Labels["org.opencontainers.image.version"]' "$config")" = "$(version)" ]
  # FROM scratch: one layer, holding only what gatekeeper needs (no shell, no package manager).
  [ "$(jq '.layers | length' "$manifest")" -eq 1 ]
  files=$(tar -tf "$(blob "$(jq -r '.layers[0].digest' "$manifest")")")
  for path in usr/bin/gatekeeper usr/lib/gatekeeper/gatekeeper usr/lib/gatekeeper/static-upstreams \
    usr/lib/gatekeeper/etcd-upstreams usr/lib/gatekeeper/rate-limit etc/gatekeeper/gatekeeper.toml \
    etc/gatekeeper/upstreams.yml etc/passwd lib64/ld-linux-x86-64.so.2; do
    grep -qE "^(\./)?$path$" <<<"$files"
  done
  ! grep -qE '^(\./)?(bin|usr/bin)/(sh|bash|dash)$' <<<"$files" || false
  ! grep -qE '^(\./)?(usr/)?share/' <<<"$files" || false
}

@test "image: gatekeeper started from the image serves on loopback, as the non-root user" {
  container=$(buildah_here from "gatekeeper:$(version)")
  port=$(free_port)
  # The image's own config, its listener moved to a free loopback port (chroot isolation shares
  # the host's network).
  # buildah itself in the background (not a function's subshell): stopping it stops the
  # container's processes.
  buildah --storage-driver vfs --root "$STORAGE/root" --runroot "$STORAGE/run" \
    run --isolation chroot "$container" -- /usr/bin/gatekeeper \
    --config /etc/gatekeeper/gatekeeper.toml --listen "http-public=127.0.0.1:$port" \
    >"$BATS_TEST_TMPDIR/gatekeeper.log" 2>&1 3>&- &
  PIDS+=($!)
  for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
  run curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/no-such-route"
  cat "$BATS_TEST_TMPDIR/gatekeeper.log"
  [ "$output" = 404 ]
  # The example plugins run inside the image too; gatekeeper runs as the image's user.
  grep -q "plugin ready plugin=static" "$BATS_TEST_TMPDIR/gatekeeper.log"
  grep -q "plugin ready plugin=request-id" "$BATS_TEST_TMPDIR/gatekeeper.log"
  pid=$(pgrep -f -n "^/usr/bin/gatekeeper --config /etc/gatekeeper/gatekeeper.toml --listen http-public=127.0.0.1:$port")
  [ "$(stat -c %u "/proc/$pid")" = 65532 ]
  kill -TERM "${PIDS[@]}"
  for ((i = 0; i < 100; i++)); do
    pgrep -f "http-public=127.0.0.1:$port" >/dev/null || break
    sleep 0.1
  done
  ! pgrep -f "http-public=127.0.0.1:$port" >/dev/null || false
  buildah_here rm "$container" >/dev/null
}
