#!/usr/bin/env bash
# Instructions the daemon spends per cached-token request, counted by callgrind:
# repeatable on a busy machine, unlike req/s. Runs WARM logins, then N cached
# requests, and prints the instructions counted after warm-up divided by N.
#   bench/instructions_per_request.sh [N=20000] [USERS=1000]   (MXPUPPETD=path: another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}; users=${2:-1000}
uxdir=${UXLOAD_DIR:-../shared/tools/uxload}
work=$(mktemp -d /tmp/mxp-cg.XXXXXX)
hs=""
cleanup() { [ -n "$hs" ] && kill "$hs" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cc -O2 -o "$work/uxload" "$uxdir/uxload.c" -lpthread -lm
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secret"
port=$((20000 + RANDOM % 20000))
./build/tests/mxpuppet-fakehs --port "$port" --server-name example.com --secret-file "$work/secret" --auto-register >/dev/null 2>&1 &
hs=$!
cat > "$work/c.yaml" <<YAML
listen: {unix_socket: $work/s.sock}
homeservers:
  example.com:
    url: http://127.0.0.1:$port
    login: {method: shared_secret, secret_file: secret, login_type: com.devture.shared_secret_auth}
log: {level: warn}
YAML
valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$work/cg.%p" "${MXPUPPETD:-./build/mxpuppetd}" -c "$work/c.yaml" >/dev/null 2>&1 &
vg=$!
for _ in $(seq 1 150); do [ -S "$work/s.sock" ] && break; sleep 0.2; done
path='/v1/users/@user{i}:example.com/token'
"$work/uxload" -c 16 --seq -N "$users" -n "$users" -d 300 -p "$path" unix:"$work/s.sock" >/dev/null
callgrind_control -z "$vg" >/dev/null   # zero the counters: only cached requests count from here
"$work/uxload" -c 16 -N "$n" -n "$users" -d 300 -p "$path" --expect access_token unix:"$work/s.sock" | grep -E 'requests|errors'
kill -INT "$vg"; wait "$vg" 2>/dev/null || true
final=$(ls "$work"/cg.* | head -1)
total_of() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}'; }
python3 -c "print(f'instructions per cached request: {(${final:+$(total_of "$final")}-0)/$n:.0f}  (measured part only, {$n} requests)')" 2>/dev/null || true
