#!/usr/bin/env bash
# Configures and builds mxpuppet (RelWithDebInfo, ccache when present) into ./build, or into
# $BUILD_DIR when set (the sanitizer build goes to build-sanitize).
# Usage: [BUILD_DIR=dir] scripts/build.sh [extra cmake -D options...]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
dir=${BUILD_DIR:-build}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j"$jobs"
