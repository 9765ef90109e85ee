#!/usr/bin/env bash
# Builds the Debian package from the tree with Debian's tools and checks it: dpkg-buildpackage
# -us -uc -b in a copy of the tree (build-package/, ignored by git, so the tree stays clean),
# then the .deb's contents and metadata (dpkg-deb -c / -I), its maintainer scripts (system user
# through sysusers, units enabled but not started) and lintian (any error fails; every warning
# left is overridden with its reason in debian/). Installs what it needs with apt-get.
# Usage: scripts/test-package.sh            (output in build-package/)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/build-package

# What the build needs (debian/control's Build-Depends) and Debian's packaging tools.
"$root/scripts/install-deps.sh" debhelper dpkg-dev fakeroot lintian

version=$(dpkg-parsechangelog -l debian/changelog -S Version)  # 0.1.0-1
src=$out/mxpuppetd-${version%-*}
deb=$out/mxpuppetd_${version}_$(dpkg --print-architecture).deb
changes=${deb%.deb}.changes

# A copy of the tree as git sees it (tracked and new files, not ignored ones), always at the
# same path so that ccache hits on the next run.
rm -rf "$out"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  tar --null -T - -cf - | tar -xf - -C "$src"

# dh resets HOME: keep using the machine's ccache, with paths relative to the copy.
if command -v ccache >/dev/null; then
  CCACHE_DIR=$(ccache -k cache_dir)
  export CCACHE_DIR CCACHE_BASEDIR=$src
fi
# Two jobs at most: the build machine is shared.
export DEB_BUILD_OPTIONS="parallel=${MXP_PACKAGE_JOBS:-2} ${DEB_BUILD_OPTIONS:-}"
(cd "$src" && dpkg-buildpackage -us -uc -b)

fail=0
check() {  # check DESCRIPTION COMMAND...: runs the command, counts a failure
  if "${@:2}"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}
has() { grep -qE -- "$1" <<<"$2"; }
lacks() { ! grep -qE -- "$1" <<<"$2"; }

check "the package is $deb" test -f "$deb"
contents=$(dpkg-deb -c "$deb")
info=$(dpkg-deb -I "$deb")
echo "$contents"
echo "$info"
for path in ./usr/bin/mxpuppetd ./usr/bin/mxpuppetctl ./lib/systemd/system/mxpuppetd.service \
  ./lib/systemd/system/mxpuppetd.socket ./usr/lib/sysusers.d/mxpuppetd.conf \
  ./usr/lib/tmpfiles.d/mxpuppetd.conf ./etc/mxpuppetd/config.yaml \
  ./usr/share/doc/mxpuppetd/examples/config.example.yaml ./usr/share/doc/mxpuppetd/README.md \
  ./usr/share/doc/mxpuppetd/copyright ./usr/share/bash-completion/completions/mxpuppetctl; do
  check "contains $path" has " $path\$" "$contents"
done
check "the binaries are executable" has '^-rwxr-xr-x root/root .* \./usr/bin/mxpuppetd$' "$contents"
check "no test, header or static library is installed" \
  lacks '_test$|mxpuppet-fakehs|\.(a|h|hpp)$|/include/' "$contents"
check "every file is owned by root/root" test -z "$(awk '$2 != "root/root"' <<<"$contents")"
# ${shlibs:Depends}: the libraries the two binaries link.
for lib in libc6 'libstdc\+\+6' libssl3 libsqlite3-0 libsystemd0 libyaml-cpp0\.7 libsimdjson; do
  check "Depends names $lib" has "^ Depends: .*$lib" "$info"
done
check "Version $version" has "^ Version: ${version//./\\.}\$" "$info"

# Conffiles, and the maintainer scripts dh generated.
ctrl=$(mktemp -d)
trap 'rm -rf "$ctrl"' EXIT
dpkg-deb -e "$deb" "$ctrl"
check "/etc/mxpuppetd/config.yaml is a conffile" grep -qx /etc/mxpuppetd/config.yaml "$ctrl/conffiles"
postinst=$(cat "$ctrl/postinst")
check "postinst creates the user through systemd-sysusers" \
  has 'systemd-sysusers( \$\{DPKG_ROOT:\+--root="\$DPKG_ROOT"\})? mxpuppetd\.conf' "$postinst"
check "postinst creates the directories through systemd-tmpfiles" \
  has 'systemd-tmpfiles .*--create mxpuppetd\.conf' "$postinst"
check "the user exists before tmpfiles chowns to it" \
  test "$(grep -n systemd-sysusers "$ctrl/postinst" | head -1 | cut -d: -f1)" \
  -lt "$(grep -n systemd-tmpfiles "$ctrl/postinst" | head -1 | cut -d: -f1)"
check "postinst enables mxpuppetd.service" has "deb-systemd-helper enable 'mxpuppetd.service'" "$postinst"
check "postinst enables mxpuppetd.socket" has "deb-systemd-helper enable 'mxpuppetd.socket'" "$postinst"
check "postinst does not start anything" \
  lacks 'deb-systemd-invoke (start|restart)|invoke-rc\.d .* start' "$postinst"
check "postinst try-restarts (only) a running daemon on upgrade" \
  has "deb-systemd-invoke try-restart 'mxpuppetd.service'" "$postinst"
check "postrm purges the units' state" grep -q "deb-systemd-helper purge" "$ctrl/postrm"
for s in preinst postinst prerm postrm; do
  [ -f "$ctrl/$s" ] && check "$s is valid sh" sh -n "$ctrl/$s"
done
check "Depends lets systemd-sysusers run" has '^ Depends: .*systemd \| systemd-standalone-sysusers' "$info"

# lintian on the binary upload: errors fail; warnings fail unless overridden with a reason
# (debian/mxpuppetd.lintian-overrides). Shown with the overridden tags and their reasons; the
# verdict comes from a run without --show-overrides, which would count those as failures.
echo "--- lintian (O: overridden, N: the reason)"
lintian --display-info --show-overrides "$changes" 2>&1 | grep -v '^running with root' || true
check "lintian: no error and no warning that is not overridden" \
  lintian --fail-on error,warning --display-info "$changes"

if [ "$fail" -ne 0 ]; then
  echo "package checks FAILED (the build tree stays in $src)" >&2
  exit 1
fi
rm -rf "$src"  # ~300 MB of objects; the .deb, .changes and .buildinfo stay in build-package/
echo "package checks passed: $deb"
