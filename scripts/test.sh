#!/usr/bin/env bash
# The newcomer's test command and CI's: installs every dependency (Debian 12),
# builds everything, and runs the whole test suite (unit, integration, end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
werror=()
[ "${CI:-}" = "true" ] && werror=(-DMXP_WERROR=ON)
bash scripts/build.sh "${werror[@]}"
cd build
ctest --output-on-failure -j2 --timeout 600
