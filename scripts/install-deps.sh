#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing and running mxpuppetd needs, plus any
# package named as an argument (scripts/test-package.sh passes the packaging tools).
# Boost comes from libboost1.81-dev (Asio/Beast with C++20 coroutines); the 1.74
# default (libboost-all-dev / libboost-dev) is too old and must not be mixed in.
set -euo pipefail
packages=(
  build-essential cmake pkg-config ccache git
  libboost1.81-dev libboost-url1.81-dev libssl-dev ca-certificates
  libsimdjson-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libsqlite3-dev sqlite3 libsystemd-dev
  libgtest-dev libgmock-dev
  python3 python3-jwt python3-cryptography
  curl
  e2fsprogs  # chattr: tests/e2e/doctor_test.cpp makes a directory unwritable for root too
  golang-go nodejs  # tests/e2e/snippets_test.cpp runs the Go and Node snippets in examples/
  prometheus  # promtool: tests/e2e/metrics_test.cpp checks the /metrics exposition with it
  "$@"  # further packages a caller needs too (scripts/test-package.sh: the packaging tools)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
