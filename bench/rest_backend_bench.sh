#!/usr/bin/env bash
# The rest_backend listener under a flood of password checks it never issued a nonce for:
# mxpuppetd (pinned to CPU 1) with a rest_backend homeserver, and bench/rest_backend_bench
# (16 client threads, a new connection per request, as the REST module makes them).
#
#   bench/rest_backend_bench.sh [SECONDS] [CONNECTIONS]      (defaults 5 s, 16)
#
# Needs ./build with the targets mxpuppetd and rest_backend_bench.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}; conns=${2:-16}
work=$(mktemp -d /tmp/mxp-restbench.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
cat > "$work/config.yaml" <<YAML
listen: {unix_socket: $work/mxpuppetd.sock, socket_mode: "0600"}
homeservers:
  example.com:
    url: http://127.0.0.1:9
    login: {method: rest_backend, backend_listen: "127.0.0.1:$port"}
log: {level: warn}
YAML
taskset -c 1 ./build/mxpuppetd -c "$work/config.yaml" > "$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 50); do [ -S "$work/mxpuppetd.sock" ] && break; sleep 0.1; done
echo "mxpuppetd $(./build/mxpuppetd --version 2>/dev/null | head -1), backend on 127.0.0.1:$port"
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }  # utime + stime, in clock ticks
before=$(cpu)
out=$(taskset -c 0 ./build/bench/rest_backend_bench "$port" "$secs" "$conns")
after=$(cpu)
echo "$out"
answers=$(sed -n 's/.*: \([0-9]*\) answers,.*/\1/p' <<<"$out")
hz=$(getconf CLK_TCK)
awk -v t=$((after - before)) -v hz="$hz" -v n="$answers" \
  'BEGIN { printf "daemon CPU: %.1f s for %d answers = %.1f us per answer (accept, parse, answer, close)\n", t / hz, n, 1e6 * t / hz / n }'
echo "daemon RSS: $(ps -o rss= -p "$pid") KiB"
