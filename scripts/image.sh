#!/usr/bin/env bash
# Builds gatekeeper's OCI image with buildah (Debian's package; no daemon, no registry pulls):
# FROM scratch with gatekeeper and the built-in plugins (/usr/lib/gatekeeper, /usr/bin/gatekeeper),
# the shared libraries they load, the example config (/etc/gatekeeper, listening on
# 0.0.0.0:8000), a non-root user (gatekeeper, 65532) and `gatekeeper` as the entrypoint.
# Exported as an OCI archive, then smoke-tested with `buildah run`: `gatekeeper --version` and
# `gatekeeper check` on the image's config.
#
#   scripts/image.sh                            release build, then target/image/gatekeeper-VERSION.oci.tar
#   scripts/image.sh --bin-dir target/debug     an image of binaries built before (CI)
#
# Options: --bin-dir DIR (default: build --release), --output DIR (default target/image),
# --storage DIR (buildah's storage root and run root under DIR, e.g. a temp dir; default
# buildah's own), --keep (keep the image in buildah's storage as gatekeeper:VERSION).
# Load the archive elsewhere: `podman load -i FILE` or `skopeo copy oci-archive:FILE ...`;
# run: `podman run -p 8000:8000 -v ./gatekeeper.toml:/etc/gatekeeper/gatekeeper.toml gatekeeper:VERSION`.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir= output=target/image storage= keep=0
while (($#)); do
  case $1 in
    --bin-dir) bin_dir=$2; shift ;;
    --output) output=$2; shift ;;
    --storage) storage=$2; shift ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
command -v buildah >/dev/null || { echo "image.sh: buildah is missing (apt-get install buildah)" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || { echo "image.sh: no version in Cargo.toml" >&2; exit 1; }
install_args=()
[[ -n $bin_dir ]] && install_args=(--no-build) || bin_dir=target/release

# vfs and chroot: no overlay filesystem, no user namespaces, no daemon needed.
buildah=(buildah --storage-driver vfs)
if [[ -n $storage ]]; then
  buildah+=(--root "$storage/root" --runroot "$storage/run")
fi

stage=$(mktemp -d)
container=
cleanup() {
  if [[ -n $container ]]; then "${buildah[@]}" rm "$container" >/dev/null 2>&1 || true; fi
  rm -rf "$stage"
}
trap cleanup EXIT
root=$stage/root
DESTDIR=$root PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/unused PLUGIN_DIR=/usr/lib/gatekeeper \
  BIN_DIR=$bin_dir scripts/install.sh "${install_args[@]}" >/dev/null
rm -rf "$root/unused" "$root/usr/share"
# In a container the listener must face the container's network, not its loopback.
sed -i -e 's|^listen = \["http-public=127.0.0.1:8000"\]|listen = ["http-public=0.0.0.0:8000"]|' \
  "$root/etc/gatekeeper/gatekeeper.toml"
grep -q '^listen = \["http-public=0.0.0.0:8000"\]' "$root/etc/gatekeeper/gatekeeper.toml" || {
  echo "image.sh: the example config's listen line changed; update image.sh" >&2; exit 1; }

# The shared libraries the binaries load, and the dynamic loader, at the paths they are named by.
while read -r library; do
  install -D -m 0755 "$(realpath "$library")" "$root$library"
done < <(ldd "$root"/usr/lib/gatekeeper/* | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(/ { print $1 }' | sort -u)
# Name resolution (glibc's files and dns are built in) and TLS roots for etcd over https.
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
# A non-root user; plugin sockets go to /tmp (the default socket_dir).
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\ngatekeeper:x:65532:65532:gatekeeper:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\ngatekeeper:x:65532:\n' >"$root/etc/group"
install -d -m 1777 "$root/tmp"

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
chmod 0755 "$root"
container=$("${buildah[@]}" from scratch)
"${buildah[@]}" copy --quiet "$container" "$root" / >/dev/null
"${buildah[@]}" config \
  --user 65532:65532 --workingdir / --port 8000/tcp \
  --env PATH=/usr/bin:/usr/lib/gatekeeper \
  --entrypoint '["/usr/bin/gatekeeper"]' --cmd '["--config", "/etc/gatekeeper/gatekeeper.toml"]' \
  --label org.opencontainers.image.title=gatekeeper \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$commit" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  "$container"

echo "==> smoke test (buildah run)"
run=("${buildah[@]}" run --isolation chroot --user 65532:65532 "$container" --)
"${run[@]}" /usr/bin/gatekeeper --version
"${run[@]}" /usr/bin/gatekeeper check --config /etc/gatekeeper/gatekeeper.toml

image=gatekeeper:$version
"${buildah[@]}" commit --quiet --format oci "$container" "$image" >/dev/null
mkdir -p "$output"
archive=$output/gatekeeper-$version.oci.tar
rm -f "$archive"
"${buildah[@]}" push --quiet "$image" "oci-archive:$archive:$image"
((keep)) || "${buildah[@]}" rmi "$image" >/dev/null
echo "==> image size: $(du -sh "$root" | cut -f1) unpacked, $(du -h "$archive" | cut -f1) as an archive"
echo "$archive"
