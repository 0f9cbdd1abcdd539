#!/usr/bin/env bash
# Installs gatekeeper, its built-in plugins, an example config and the systemd unit.
#
#   scripts/install.sh                    build a release and install under /usr/local
#   BIN_DIR=target/release scripts/install.sh --no-build   install binaries built before
#   DESTDIR=/tmp/stage scripts/install.sh  stage everything under /tmp/stage (packaging, tests)
#
# Variables: PREFIX (default /usr/local; binaries go to $PREFIX/bin), SYSCONFDIR (default /etc),
# UNITDIR (default /etc/systemd/system), DESTDIR (default empty), BIN_DIR (where the built
# binaries are; default target/release), PLUGIN_DIR (default $PREFIX/bin; when elsewhere, e.g.
# /usr/lib/gatekeeper, gatekeeper and its plugins go there and $PREFIX/bin/gatekeeper is a
# symlink: gatekeeper finds plugins next to its own binary), SERVICE_USER (default empty: the
# unit runs as a transient DynamicUser; a name: as that static system user). The example config (gatekeeper.toml) and the example
# upstreams file it names (upstreams.yml, by its absolute path) are installed only where none
# exists; `systemctl daemon-reload` runs only when systemd is running and DESTDIR is empty.
# Installed binaries are stripped of debug info when `strip` (binutils) is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-/etc/systemd/system}
DESTDIR=${DESTDIR:-}
BIN_DIR=${BIN_DIR:-target/release}
PLUGIN_DIR=${PLUGIN_DIR:-$PREFIX/bin}
SERVICE_USER=${SERVICE_USER:-}
BINARIES=(gatekeeper static-upstreams request-id simple-loadbalancer dogstatsd-metrics rate-limit etcd-upstreams)
EXAMPLE_CONFIG=scripts/gatekeeper.example.toml
EXAMPLE_UPSTREAMS=scripts/upstreams.example.yml

build=1
for arg in "$@"; do
  case $arg in
    --no-build) build=0 ;;
    -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

if ((build)); then
  # etcd-upstreams' etcd client compiles etcd's protobuf files with protoc at build time.
  command -v protoc >/dev/null || {
    echo "install.sh: protoc is missing (apt-get install protobuf-compiler)" >&2; exit 1; }
  echo "==> cargo build --release"
  cargo build --release --locked $(printf -- '--bin %s ' "${BINARIES[@]}")
  BIN_DIR=target/release
fi
for bin in "${BINARIES[@]}"; do
  [[ -x $BIN_DIR/$bin ]] || { echo "install.sh: $BIN_DIR/$bin is missing (build first or drop --no-build)" >&2; exit 1; }
done

echo "==> binaries to $DESTDIR$PLUGIN_DIR"
install -d -m 0755 "$DESTDIR$PLUGIN_DIR"
for bin in "${BINARIES[@]}"; do
  install -m 0755 "$BIN_DIR/$bin" "$DESTDIR$PLUGIN_DIR/$bin"
  # Release binaries carry no debug info (Cargo.toml); others (target/profiling) drop it here.
  if command -v strip >/dev/null; then strip --strip-debug "$DESTDIR$PLUGIN_DIR/$bin"; fi
done
if [[ $PLUGIN_DIR != "$PREFIX/bin" ]]; then
  echo "==> $DESTDIR$PREFIX/bin/gatekeeper -> $PLUGIN_DIR/gatekeeper"
  install -d -m 0755 "$DESTDIR$PREFIX/bin"
  ln -sfn "$(realpath -m --relative-to="$PREFIX/bin" "$PLUGIN_DIR/gatekeeper")" "$DESTDIR$PREFIX/bin/gatekeeper"
fi

install -d -m 0755 "$DESTDIR$SYSCONFDIR/gatekeeper"
config=$DESTDIR$SYSCONFDIR/gatekeeper/gatekeeper.toml
upstreams=$DESTDIR$SYSCONFDIR/gatekeeper/upstreams.yml
if [[ -e $config ]]; then
  echo "==> $config exists: kept"
elif [[ -f $EXAMPLE_CONFIG ]]; then
  echo "==> example config to $config"
  # The example names its upstreams file relative to the source tree; installed, it names the
  # installed copy by its absolute path (gatekeeper may start in any directory).
  sed -e "s|\"$EXAMPLE_UPSTREAMS\"|\"$SYSCONFDIR/gatekeeper/upstreams.yml\"|" \
    "$EXAMPLE_CONFIG" >"$config"
  chmod 0644 "$config"
else
  echo "==> no $EXAMPLE_CONFIG in this tree: write $config yourself (see README.md)"
fi
if [[ -e $upstreams ]]; then
  echo "==> $upstreams exists: kept"
elif [[ -f $EXAMPLE_UPSTREAMS ]]; then
  echo "==> example upstreams to $upstreams"
  install -m 0644 "$EXAMPLE_UPSTREAMS" "$upstreams"
fi

echo "==> systemd units to $DESTDIR$UNITDIR"
install -d -m 0755 "$DESTDIR$UNITDIR"
for unit in gatekeeper.service gatekeeper.socket; do
  user=()
  if [[ -n $SERVICE_USER ]]; then
    user=(-e "s|^DynamicUser=yes|DynamicUser=no\nUser=$SERVICE_USER\nGroup=$SERVICE_USER|")
  fi
  sed -e "s|/usr/local/|$PREFIX/|g" -e "s|/etc/gatekeeper/|$SYSCONFDIR/gatekeeper/|g" "${user[@]}" \
    "scripts/systemd/$unit" >"$DESTDIR$UNITDIR/$unit"
  chmod 0644 "$DESTDIR$UNITDIR/$unit"
done
install -d -m 0755 "$DESTDIR$PREFIX/share/doc/gatekeeper"
for doc in docs/operations.md scripts/systemd/static-user.conf; do
  [[ -f $doc ]] && install -m 0644 "$doc" "$DESTDIR$PREFIX/share/doc/gatekeeper/$(basename "$doc")"
done

if [[ -z $DESTDIR && -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
  echo "==> systemctl daemon-reload"
  systemctl daemon-reload
  echo "next: systemctl enable --now gatekeeper   (see docs/operations.md)"
else
  echo "systemd is not running here (or DESTDIR is set): no daemon-reload"
fi
