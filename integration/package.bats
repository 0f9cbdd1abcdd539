#!/usr/bin/env bats
# The Debian package (scripts/package.sh, issue 17): its control fields and contents, its
# maintainer scripts, and the installed tree at work: gatekeeper from a throw-away root checks
# the installed example config. The package is built once, from the binaries under test
# (uncompressed: the compression is not what is tested).

load helpers

setup_file() {
  export PACKAGE_DIR="$BATS_FILE_TMPDIR/debian"
  DEB_COMPRESSION=none "$REPO_ROOT/scripts/package.sh" --bin-dir "$BIN_DIR" \
    --output "$PACKAGE_DIR" >"$BATS_FILE_TMPDIR/package.log" 2>&1 || {
    cat "$BATS_FILE_TMPDIR/package.log" >&3
    return 1
  }
  DEB=$(tail -n 1 "$BATS_FILE_TMPDIR/package.log")
  export DEB
}

version() { sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_ROOT/Cargo.toml" | head -n 1; }

# extract ROOT: unpacks the package's files and control files into ROOT and ROOT/DEBIAN.
extract() {
  dpkg-deb -x "$DEB" "$1"
  dpkg-deb -e "$DEB" "$1/DEBIAN"
}

@test "package: named and described by its control fields" {
  [ "$(basename "$DEB")" = "gatekeeper_$(version)-1_$(dpkg --print-architecture).deb" ]
  run dpkg-deb --field "$DEB" Package Version Architecture Depends Section Maintainer
  echo "$output"
  [ "$status" -eq 0 ]
  grep -qx "Package: gatekeeper" <<<"$output"
  grep -qx "Version: $(version)-1" <<<"$output"
  grep -qx "Section: httpd" <<<"$output"
  # The shared libraries the binaries load, as dependencies (dpkg-shlibdeps or dpkg -S).
  grep -q "^Depends: .*libc6" <<<"$output"
  run dpkg-deb --info "$DEB"
  [ "$status" -eq 0 ]
  grep -q "postinst" <<<"$output"
  grep -q "conffiles" <<<"$output"
}

@test "package: binaries, the example config as conffiles, units, the system user, docs" {
  run dpkg-deb --contents "$DEB"
  [ "$status" -eq 0 ]
  contents=$output
  for bin in gatekeeper static-upstreams etcd-upstreams rate-limit request-id simple-loadbalancer dogstatsd-metrics; do
    grep -qE "^-rwxr-xr-x root/root .* \./usr/lib/gatekeeper/$bin$" <<<"$contents"
  done
  # gatekeeper finds its plugins next to its own binary: /usr/bin has only the symlink.
  grep -qE " \./usr/bin/gatekeeper -> \.\./lib/gatekeeper/gatekeeper$" <<<"$contents"
  [ "$(grep -cE ' \./usr/bin/.+' <<<"$contents")" -eq 1 ]
  for file in etc/gatekeeper/gatekeeper.toml etc/gatekeeper/upstreams.yml \
    usr/lib/systemd/system/gatekeeper.service usr/lib/systemd/system/gatekeeper.socket \
    usr/lib/sysusers.d/gatekeeper.conf usr/share/doc/gatekeeper/copyright \
    usr/share/doc/gatekeeper/changelog.Debian.gz usr/share/doc/gatekeeper/operations.md \
    usr/share/doc/gatekeeper/protocol.md usr/share/man/man1/gatekeeper.1.gz \
    usr/share/lintian/overrides/gatekeeper; do
    grep -qE "^-rw-r--r-- root/root .* \./$file$" <<<"$contents"
  done
  root=$BATS_TEST_TMPDIR/root
  extract "$root"
  [ "$(cat "$root/DEBIAN/conffiles")" = "$(printf '/etc/gatekeeper/gatekeeper.toml\n/etc/gatekeeper/upstreams.yml')" ]
  # The installed config names the installed upstreams file.
  grep -q '"/etc/gatekeeper/upstreams.yml"' "$root/etc/gatekeeper/gatekeeper.toml"
  # The unit runs the installed binary with the installed config, as the package's user.
  unit=$root/usr/lib/systemd/system/gatekeeper.service
  grep -qx 'ExecStart=/usr/bin/gatekeeper --config /etc/gatekeeper/gatekeeper.toml --socket-dir ${RUNTIME_DIRECTORY}' "$unit"
  grep -qx 'User=gatekeeper' "$unit"
  grep -qx 'DynamicUser=no' "$unit"
  ! grep -q /usr/local "$unit" || false
  grep -qE '^u gatekeeper - ' "$root/usr/lib/sysusers.d/gatekeeper.conf"
  # md5sums covers every file.
  [ "$(wc -l <"$root/DEBIAN/md5sums")" -eq "$(grep -c '^-' <<<"$contents")" ]
  (cd "$root" && md5sum --quiet -c DEBIAN/md5sums)
  zcat "$root/usr/share/man/man1/gatekeeper.1.gz" | grep -q '^\.TH GATEKEEPER 1'
}

@test "package: postinst creates the system user with systemd-sysusers, else useradd, once" {
  root=$BATS_TEST_TMPDIR/root
  extract "$root"
  sh -n "$root/DEBIAN/postinst"
  sh -n "$root/DEBIAN/prerm"
  sh -n "$root/DEBIAN/postrm"
  # Stand-ins for the commands postinst calls, recording their arguments (nothing on this
  # machine is changed); PATH holds nothing else.
  shims=$BATS_TEST_TMPDIR/shims
  mkdir -p "$shims"
  for cmd in getent systemd-sysusers useradd; do
    printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\n[ "%s" != getent ] || exit "${GETENT_STATUS:-2}"\n' \
      "$cmd" "$BATS_TEST_TMPDIR" "$cmd" >"$shims/$cmd"
    chmod +x "$shims/$cmd"
  done
  PATH=$shims run /bin/sh "$root/DEBIAN/postinst" configure
  [ "$status" -eq 0 ]
  grep -qx "systemd-sysusers gatekeeper.conf" "$BATS_TEST_TMPDIR/calls"
  ! grep -q useradd "$BATS_TEST_TMPDIR/calls" || false
  # Without systemd-sysusers: useradd, a system user without a home or a login shell.
  rm "$shims/systemd-sysusers" "$BATS_TEST_TMPDIR/calls"
  PATH=$shims run /bin/sh "$root/DEBIAN/postinst" configure
  [ "$status" -eq 0 ]
  grep -q "^useradd --system --user-group --no-create-home .*--shell /usr/sbin/nologin .*gatekeeper$" "$BATS_TEST_TMPDIR/calls"
  # The user exists already: nothing is created.
  rm "$BATS_TEST_TMPDIR/calls"
  GETENT_STATUS=0 PATH=$shims run /bin/sh "$root/DEBIAN/postinst" configure
  [ "$status" -eq 0 ]
  [ "$(cat "$BATS_TEST_TMPDIR/calls")" = "getent passwd gatekeeper" ]
}

@test "package: installed in a throw-away root, gatekeeper checks the example config and names a broken upstreams file" {
  [[ $(id -u) -eq 0 ]] || skip "needs root (chroot)"
  command -v unshare >/dev/null || skip "needs unshare (util-linux)"
  root=$BATS_TEST_TMPDIR/root
  dpkg-deb -x "$DEB" "$root"
  # The libraries the binaries load (the package's Depends), at their paths; /proc for
  # gatekeeper to find its plugins next to itself, /dev for their /dev/null; /tmp for the
  # plugin sockets.
  ldd "$root"/usr/lib/gatekeeper/* |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(/ { print $1 }' | sort -u |
    while read -r library; do install -D -m 0755 "$(realpath "$library")" "$root$library"; done
  mkdir -p "$root/proc" "$root/dev" "$root/tmp"
  chmod 1777 "$root/tmp"
  in_root() {
    unshare --mount --fork -- sh -c 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" "$@"' "$root" "$@"
  }
  run in_root /usr/bin/gatekeeper --version
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == "gatekeeper $(version) "* ]]
  # check starts the configured plugins (static-upstreams reads /etc/gatekeeper/upstreams.yml).
  run in_root /usr/bin/gatekeeper check --config /etc/gatekeeper/gatekeeper.toml
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$output" = "/etc/gatekeeper/gatekeeper.toml: ok" ]
  echo 'upstreams: [not a map' >"$root/etc/gatekeeper/upstreams.yml"
  run in_root /usr/bin/gatekeeper check --config /etc/gatekeeper/gatekeeper.toml
  echo "$output"
  [ "$status" -eq 1 ]
  grep -q "^/etc/gatekeeper/gatekeeper.toml: plugin static: /etc/gatekeeper/upstreams.yml:1: " <<<"$output"
}
