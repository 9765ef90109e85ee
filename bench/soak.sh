#!/usr/bin/env bash
# Soak: mixed load against the real mxpuppetd while the fake homeserver cycles through faults
# (500, 429, hang, reset, garbage, wrong JSON shape, down, slow) and the daemon is SIGKILLed and
# restarted every ~30 s. Prints requests, errors by kind, kills survived, sessions lost,
# duplicate devices, live tokens nobody holds and RSS; bench/soak.cpp says what is checked.
#
#   bench/soak.sh [MINUTES] [driver options]   MINUTES may be fractional (default 1)
#   SECONDS=90 bench/soak.sh                   the same in seconds
#
# Driver options: --users N (300), --connections N (16), --kill-every S (30), --max-rss-mb N
# (256), --keep (keep the daemon logs and store), --faults-on-every-endpoint (garbage and wrong
# JSON shape on /logout too, where the fake answers 200 without logging out). Exit status 1 when
# a must-be-zero figure is not zero. Not run in CI.
env_seconds=$SECONDS  # bash starts $SECONDS at the value in the environment (else 0)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ] && [[ $1 != --* ]]; then
  minutes=$1
  shift
  secs=$(awk -v m="$minutes" 'BEGIN { if (m + 0 <= 0) exit 1; printf "%g", m * 60 }') ||
    { echo "soak.sh: MINUTES must be a positive number, not '$minutes'" >&2; exit 2; }
elif [ "$env_seconds" -gt 0 ]; then
  secs=$env_seconds
else
  secs=60
fi

[ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j2 --target mxpuppetd soak > /dev/null
exec ./build/bench/soak --seconds "$secs" --daemon build/mxpuppetd "$@"
