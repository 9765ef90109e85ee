#!/usr/bin/env bash
# Cached-token throughput and latency over the Unix socket, measured with uxload
# (a closed-loop HTTP/1.1 load generator for Unix sockets), interleaved with the
# anchors: rawserver (an epoll server's physical limit) and nginx when installed.
#
#   bench/socket_bench.sh [RUNS] [SECONDS] [USERS]      (defaults 3 runs x 5 s, 10000 users)
#
# Needs ./build (scripts/build.sh) and uxload's sources (UXLOAD_DIR, default ../shared/tools/uxload).
# Prints per-run figures, then medians and the ratios the design targets refer to.
# MXPUPPETD_BEFORE=/path/to/an/older/mxpuppetd measures that binary too, interleaved in the same
# runs ("before"), for a before/after comparison on the same machine at the same time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; secs=${2:-5}; users=${3:-10000}; conns=${CONNECTIONS:-16}
uxdir=${UXLOAD_DIR:-../shared/tools/uxload}
work=$(mktemp -d /tmp/mxp-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

[ -f "$uxdir/uxload.c" ] || { echo "uxload sources not found in $uxdir (set UXLOAD_DIR)"; exit 1; }
cc -O2 -o "$work/uxload" "$uxdir/uxload.c" -lpthread -lm
cc -O2 -o "$work/rawserver" "$uxdir/rawserver.c" -lpthread

# mxpuppetd against the fake homeserver, every user logged in before measuring.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secret"
port=$((20000 + RANDOM % 20000))
./build/tests/mxpuppet-fakehs --port "$port" --server-name example.com --secret-file "$work/secret" --auto-register > "$work/hs.log" 2>&1 &
pids+=($!)
cat > "$work/config.yaml" <<YAML
listen: {unix_socket: $work/mxpuppetd.sock, socket_mode: "0600"}
homeservers:
  example.com:
    url: http://127.0.0.1:$port
    login: {method: shared_secret, secret_file: secret, login_type: com.devture.shared_secret_auth}
    max_concurrent_logins: 16
sessions: {max: 1000000, idle_timeout: 7d}
log: {level: warn}
YAML
taskset -c 1 ./build/mxpuppetd -c "$work/config.yaml" > "$work/daemon.log" 2>&1 &
daemon_pid=$!; pids+=($daemon_pid)
for _ in $(seq 1 200); do [ -S "$work/mxpuppetd.sock" ] && break; sleep 0.05; done
path='/v1/users/@user{i}:example.com/token'
echo "warming $users sessions..."
"$work/uxload" -c 16 -d 600 --seq -N "$users" -n "$users" -p "$path" --expect access_token unix:"$work/mxpuppetd.sock" | grep -E 'requests|errors'
before=${MXPUPPETD_BEFORE:-}
if [ -n "$before" ]; then
  sed "s|$work/mxpuppetd.sock|$work/before.sock|" "$work/config.yaml" > "$work/before.yaml"
  taskset -c 1 "$before" -c "$work/before.yaml" > "$work/before.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do [ -S "$work/before.sock" ] && break; sleep 0.05; done
  echo "warming $users sessions in $before..."
  "$work/uxload" -c 16 -d 600 --seq -N "$users" -n "$users" -p "$path" --expect access_token unix:"$work/before.sock" | grep -E 'requests|errors'
fi
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$daemon_pid/status)

nginx_conf=""
if command -v nginx >/dev/null; then
  body=$(cat "$uxdir/tests/body.json")
  cat > "$work/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events {}
http { access_log off; keepalive_requests 100000000;
  server { listen unix:$work/nginx.sock; location / { default_type application/json; return 200 '$body'; } } }
NGINX
  nginx_conf="$work/nginx.conf"
fi

measure() {  # name target json
  taskset -c 0 "$work/uxload" -c "$conns" -d "$secs" -w 1 -p "$path" -n "$users" --out-json "$3" "$2" > "$3.txt"
  python3 - "$1" "$3" <<'PY'
import json,sys; r=json.load(open(sys.argv[2]))
print(f"  {sys.argv[1]:10s} {r['rps']:>10.0f} req/s  p50 {r['latency_us']['p50']:7.1f} us  p99 {r['latency_us']['p99']:7.1f} us  errors {r['errors']['total']} non-2xx {r['non_2xx']}")
PY
}

for run in $(seq 1 "$runs"); do
  echo "run $run/$runs ($conns connections, $secs s, $users users)"
  measure mxpuppetd unix:"$work/mxpuppetd.sock" "$work/mxp.$run.json"
  [ -n "$before" ] && measure before unix:"$work/before.sock" "$work/before.$run.json"
  taskset -c 1 "$work/rawserver" unix:"$work/raw.sock" > /dev/null 2>&1 & raw_pid=$!
  for _ in $(seq 1 100); do [ -S "$work/raw.sock" ] && break; sleep 0.02; done
  measure rawserver unix:"$work/raw.sock" "$work/raw.$run.json"
  kill $raw_pid; wait $raw_pid 2>/dev/null || true; rm -f "$work/raw.sock"
  if [ -n "$nginx_conf" ]; then
    taskset -c 1 nginx -c "$nginx_conf" > /dev/null 2>&1 & ngx_pid=$!
    for _ in $(seq 1 100); do [ -S "$work/nginx.sock" ] && break; sleep 0.02; done
    measure nginx unix:"$work/nginx.sock" "$work/nginx.$run.json"
    kill $ngx_pid; wait $ngx_pid 2>/dev/null || true; rm -f "$work/nginx.sock"
  fi
done

rss_after_kb=$(awk '/VmRSS/ {print $2}' /proc/$daemon_pid/status)
python3 - "$work" "$runs" "$users" "$rss_kb" "$rss_after_kb" <<'PY'
import json,os,statistics,sys
work,runs,users,rss,rss_after=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4]),int(sys.argv[5])
def med(name,key):
    vals=[]
    for i in range(1,runs+1):
        p=f"{work}/{name}.{i}.json"
        if os.path.exists(p):
            r=json.load(open(p)); vals.append(r['rps'] if key=='rps' else r['latency_us'][key])
    return statistics.median(vals) if vals else None
print("\nmedians")
res={}
for n in ("mxp","before","raw","nginx"):
    rps=med(n,'rps')
    if rps is None: continue
    res[n]=rps
    print(f"  {n:6s} {rps:>10.0f} req/s  p50 {med(n,'p50'):7.1f} us  p99 {med(n,'p99'):7.1f} us")
print(f"  mxpuppetd / rawserver = {res['mxp']/res['raw']:.2f}  (target >= 0.6)")
if 'nginx' in res: print(f"  mxpuppetd / nginx     = {res['mxp']/res['nginx']:.2f}  (target >= 1.0)")
if 'before' in res:
    print(f"  before / rawserver    = {res['before']/res['raw']:.2f}")
    if 'nginx' in res: print(f"  before / nginx        = {res['before']/res['nginx']:.2f}")
    print(f"  mxpuppetd / before    = {res['mxp']/res['before']:.2f}")
print(f"  mxpuppetd RSS {rss/1024:.1f} MiB with {users} sessions after warm-up, {rss_after/1024:.1f} MiB after all runs")
PY
