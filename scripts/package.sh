#!/usr/bin/env bash
# Builds gatekeeper's Debian package with dpkg-deb (no debhelper needed):
#
#   /usr/lib/gatekeeper/      gatekeeper and the built-in plugins (gatekeeper finds plugins next
#                             to its own binary); /usr/bin/gatekeeper is a symlink
#   /etc/gatekeeper/          the example config and upstreams file (conffiles: kept on upgrade)
#   /usr/lib/systemd/system/  gatekeeper.service (as the system user `gatekeeper`) and .socket
#   /usr/lib/sysusers.d/      the system user `gatekeeper`, created by postinst
#   /usr/share/doc/gatekeeper README and docs; /usr/share/man/man1/gatekeeper.1.gz
#
#   scripts/package.sh                            release build, then the package
#   scripts/package.sh --bin-dir target/debug     package binaries built before (CI)
#
# Options: --bin-dir DIR (binaries built before; default: build --release), --output DIR (default
# target/debian), --lintian (run lintian on the package; apt-get install lintian). Variable
# DEB_COMPRESSION: xz (default) or gzip or none. Prints the package's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir= output=target/debian lintian=0
while (($#)); do
  case $1 in
    --bin-dir) bin_dir=$2; shift ;;
    --output) output=$2; shift ;;
    --lintian) lintian=1 ;;
    -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
command -v dpkg-deb >/dev/null || { echo "package.sh: dpkg-deb is missing (Debian's dpkg)" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || { echo "package.sh: no version in Cargo.toml" >&2; exit 1; }
deb_version=$version-1
arch=$(dpkg --print-architecture)
# Without --bin-dir, install.sh builds the release binaries first.
install_args=()
[[ -n $bin_dir ]] && install_args=(--no-build) || bin_dir=target/release

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
# The files: the same layout scripts/install.sh makes, under /usr.
DESTDIR=$root PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/usr/lib/systemd/system \
  PLUGIN_DIR=/usr/lib/gatekeeper SERVICE_USER=gatekeeper BIN_DIR=$bin_dir \
  scripts/install.sh "${install_args[@]}" >/dev/null
# The unit runs as the package's static user: the DynamicUser drop-in is not needed.
rm -f "$root/usr/share/doc/gatekeeper/static-user.conf"

install -D -m 0644 /dev/stdin "$root/usr/lib/sysusers.d/gatekeeper.conf" <<'EOF'
# The user gatekeeper.service runs as (systemd-sysusers; created by the package's postinst).
u gatekeeper - "gatekeeper reverse proxy" /nonexistent /usr/sbin/nologin
EOF

doc=$root/usr/share/doc/gatekeeper
install -m 0644 README.md "$doc/README.md"
for file in docs/*.md; do
  [[ $file == docs/operations.md ]] || install -m 0644 "$file" "$doc/$(basename "$file")"
done
install -m 0644 /dev/stdin "$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: gatekeeper
Source: https://github.com/gatekeeper-proxy/gatekeeper

Files: *
Copyright: 2026 gatekeeper developers
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be found in
 /usr/share/common-licenses/Apache-2.0.
EOF
commit=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
# Debian's changelog (required in every package), compressed reproducibly.
{
  printf 'gatekeeper (%s) unstable; urgency=medium\n\n' "$deb_version"
  printf '  * Built from commit %s.\n\n' "$commit"
  printf ' -- gatekeeper developers <gatekeeper@example.com>  %s\n' \
    "$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")"
} | gzip -9n >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

# A man page from --help (gatekeeper's subcommands each have --help too).
man=$root/usr/share/man/man1
install -d -m 0755 "$man"
{
  printf '.TH GATEKEEPER 1 "" "gatekeeper %s" "User Commands"\n' "$version"
  printf '.SH NAME\ngatekeeper \\- HTTP(S) reverse proxy whose decisions are made by plugins\n'
  printf '.SH SYNOPSIS\n.B gatekeeper\n[\\fIOPTIONS\\fR] [\\fICOMMAND\\fR]\n.SH DESCRIPTION\n.nf\n'
  "$root/usr/lib/gatekeeper/gatekeeper" --help | sed -e 's/\\/\\e/g' -e 's/^\./\\\&./'
  printf '.fi\n.SH SEE ALSO\n/usr/share/doc/gatekeeper/operations.md, /usr/share/doc/gatekeeper/plugins.md,\n'
  printf '.B gatekeeper check \\-\\-help\\fR, \\fBgatekeeper ctl \\-\\-help\n'
} | gzip -9n >"$man/gatekeeper.1.gz"
chmod 0644 "$man/gatekeeper.1.gz"

# lintian's remaining tags, each explained (docs/operations.md, "Installing the package").
install -D -m 0644 /dev/stdin "$root/usr/share/lintian/overrides/gatekeeper" <<'EOF'
# serde_yaml's parser is unsafe-libyaml, a Rust translation of libyaml compiled into the
# binary; there is no C libyaml in it to link dynamically.
gatekeeper: embedded-library libyaml [usr/lib/gatekeeper/static-upstreams]
# Built outside Debian's archive: there is no ITP bug to close.
gatekeeper: initial-upload-closes-no-bugs [usr/share/doc/gatekeeper/changelog.Debian.gz:1]
EOF

# Shared libraries the binaries need, as package dependencies.
depends=
if command -v dpkg-shlibdeps >/dev/null; then
  mkdir -p "$stage/src/debian"
  printf 'Source: gatekeeper\n\nPackage: gatekeeper\nArchitecture: any\n' >"$stage/src/debian/control"
  depends=$(cd "$stage/src" && dpkg-shlibdeps -O "$root"/usr/lib/gatekeeper/* 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
fi
if [[ -z $depends ]]; then
  depends=$(ldd "$root"/usr/lib/gatekeeper/* | awk '/=> \// { print $3 }' | sort -u |
    xargs -r -n1 realpath | xargs -r dpkg -S 2>/dev/null | cut -d: -f1 | sort -u | paste -sd, |
    sed 's/,/, /g')
fi

control=$root/DEBIAN
install -d -m 0755 "$control"
cat >"$control/control" <<EOF
Package: gatekeeper
Version: $deb_version
Architecture: $arch
Maintainer: gatekeeper developers <gatekeeper@example.com>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: ${depends:-libc6}
Recommends: systemd
Section: httpd
Priority: optional
Homepage: https://github.com/gatekeeper-proxy/gatekeeper
Description: HTTP(S) reverse proxy whose decisions are made by plugins
 gatekeeper proxies HTTP/1.1 and HTTP/2 (with TLS) to backends and leaves
 routing, load balancing, request and response changes, discovery and metrics
 to plugins: separate processes in any language speaking newline-delimited
 JSON-RPC 2.0 over a Unix socket. The built-in plugins (static-upstreams,
 etcd-upstreams, rate-limit, request-id, simple-loadbalancer,
 dogstatsd-metrics) are in /usr/lib/gatekeeper.
EOF
printf '/etc/gatekeeper/gatekeeper.toml\n/etc/gatekeeper/upstreams.yml\n' >"$control/conffiles"
install -m 0755 /dev/stdin "$control/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  # The service's system user (also described in /usr/lib/sysusers.d/gatekeeper.conf).
  if ! getent passwd gatekeeper >/dev/null; then
    if command -v systemd-sysusers >/dev/null; then
      systemd-sysusers gatekeeper.conf
    else
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "gatekeeper reverse proxy" gatekeeper
    fi
  fi
  if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
  fi
fi
exit 0
EOF
install -m 0755 /dev/stdin "$control/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  deb-systemd-invoke stop gatekeeper.socket gatekeeper.service >/dev/null || true
fi
exit 0
EOF
install -m 0755 /dev/stdin "$control/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
  # The access log directory of the unit (LogsDirectory=); the user stays (Debian's practice).
  rm -rf /var/log/gatekeeper
fi
exit 0
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
  xargs -0 md5sum) >"$control/md5sums"
chmod 0644 "$control/md5sums"

mkdir -p "$output"
deb=$output/gatekeeper_${deb_version}_$arch.deb
compression=${DEB_COMPRESSION:-xz}
dpkg-deb --root-owner-group -Z"$compression" --build "$root" "$deb" >/dev/null
if ((lintian)); then
  echo "==> lintian"
  lintian --info "$deb" || true
fi
echo "$deb"
