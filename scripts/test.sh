#!/usr/bin/env bash
# The newcomer's test command and CI's: installs every dependency (Debian 12), builds
# everything, and runs the whole test suite (unit, end-to-end, fuzz corpora) twice: once as
# built for release, once built with AddressSanitizer and UndefinedBehaviorSanitizer (the
# daemon the end-to-end tests start included), where any finding fails the run.
# Then it builds the Debian package and checks it (scripts/test-package.sh: contents,
# maintainer scripts, lintian). MXP_SKIP_SANITIZERS=1 skips the sanitizer pass and
# MXP_SKIP_PACKAGE=1 the package (a quick local run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# tests/interop: the unmodified matrix-js-sdk from npm, versions pinned by package-lock.json.
# Debian's nodejs has no npm (NodeSource's does); `npm ci` only when the lock changed.
command -v npm >/dev/null || { apt-get update && apt-get install -y --no-install-recommends npm; }
if ! cmp -s tests/interop/package-lock.json tests/interop/node_modules/.mxp-lock 2>/dev/null; then
  npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error
  cp tests/interop/package-lock.json tests/interop/node_modules/.mxp-lock
fi
werror=()
[ "${CI:-}" = "true" ] && werror=(-DMXP_WERROR=ON)
bash scripts/build.sh "${werror[@]}"
(cd build && ctest --output-on-failure -j2 --timeout 600)

if [ "${MXP_SKIP_PACKAGE:-}" = "1" ]; then
  echo "package check skipped (MXP_SKIP_PACKAGE=1)"
else
  bash scripts/test-package.sh
fi

if [ "${MXP_SKIP_SANITIZERS:-}" = "1" ]; then
  echo "sanitizer pass skipped (MXP_SKIP_SANITIZERS=1)"
  exit 0
fi
BUILD_DIR=build-sanitize bash scripts/build.sh "${werror[@]}" -DMXP_SANITIZE=ON
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
(cd build-sanitize && ctest --output-on-failure -j2 --timeout 900)
