#!/usr/bin/env bash
# The newcomer's main job: installs dependencies, builds, starts a stand-in
# homeserver (the test suite's fake, on loopback) and mxpuppetd with a demo config,
# and fetches a token through mxpuppetctl, as a bridge would.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh

demo=$(mktemp -d /tmp/mxpuppet-demo.XXXXXX)
cleanup() {
  [ -n "${daemon_pid:-}" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  [ -n "${hs_pid:-}" ] && kill "$hs_pid" 2>/dev/null && wait "$hs_pid" 2>/dev/null || true
  rm -rf "$demo"
}
trap cleanup EXIT

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$demo/shared.secret"
chmod 600 "$demo/shared.secret"
port=$((20000 + RANDOM % 20000))
./build/tests/mxpuppet-fakehs --port "$port" --server-name localhost --secret-file "$demo/shared.secret" \
  --register @alice:localhost \
  > "$demo/homeserver.log" 2>&1 &
hs_pid=$!

cat > "$demo/config.yaml" <<YAML
# Demo: one homeserver (a local stand-in for Synapse with shared-secret-auth).
listen:
  unix_socket: $demo/mxpuppetd.sock
  socket_mode: "0600"
homeservers:
  localhost:
    url: http://127.0.0.1:$port
    login:
      method: shared_secret
      secret_file: shared.secret      # relative to this file
      login_type: auto                # reads GET /login, prefers com.devture.shared_secret_auth
    device_id: MXPUPPETD
    device_display_name: "mxpuppetd demo"
sessions:
  max: 1000
  idle_timeout: 1h
log:
  level: info
YAML

./build/mxpuppetd --check-config -c "$demo/config.yaml"
./build/mxpuppetd -c "$demo/config.yaml" > "$demo/mxpuppetd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 200); do
  [ -S "$demo/mxpuppetd.sock" ] && ./build/mxpuppetctl --socket "$demo/mxpuppetd.sock" status >/dev/null 2>&1 && break
  sleep 0.05
done

ctl() { ./build/mxpuppetctl --socket "$demo/mxpuppetd.sock" "$@"; }
echo "== mxpuppetctl token @alice:localhost (logs alice in lazily)"
token=$(ctl token @alice:localhost)
echo "got a token of ${#token} characters: ${token:0:8}... (the demo prints only its first 8 characters)"
echo "== the same again, from the cache, as JSON"
ctl --json token @alice:localhost | sed -E 's/("access_token":")([^"]{8})[^"]*/\1\2.../'
echo
echo "== mxpuppetctl sessions"
ctl sessions
echo "== mxpuppetctl status"
ctl status
echo "== mxpuppetctl revoke @alice:localhost"
ctl revoke @alice:localhost
echo "== mxpuppetd log"
cat "$demo/mxpuppetd.log"
echo "demo finished: a token came back through mxpuppetd"
