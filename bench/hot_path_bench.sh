#!/usr/bin/env bash
# A cached token against the anchors, in one run (issue 14):
#  1. instructions per request counted by callgrind (16 keep-alive connections over a Unix
#     socket, N requests after a warm-up, the same procedure for each server): mxpuppetd
#     (bench/instructions_per_request.sh), nginx answering a fixed JSON
#     (../shared/tools/anchors/nginx_instructions.sh) and the floor, uxload's rawserver;
#  2. req/s and p99 of mxpuppetd against nginx, interleaved (server on CPU 1, uxload on CPU 0),
#     RUNS runs of SECONDS each, at 100 and at 100,000 cached sessions; the floor (rawserver) in
#     the same runs says how much of nginx's rate the kernel leaves to gain at all.
#
#   bench/hot_path_bench.sh [RUNS=5] [SECONDS=5] [N=20000]
#   SESSIONS="100 100000" (the session counts), SKIP_INSTRUCTIONS=1 / SKIP_THROUGHPUT=1,
#   MXPUPPETD=path (another mxpuppetd binary, e.g. an older build for a before/after)
#
# Needs ./build (mxpuppetd, tests/mxpuppet-fakehs), valgrind, nginx (nginx-light) and uxload's
# sources (UXLOAD_DIR, default ../shared/tools/uxload). Machines are noisy (±15 % req/s between
# runs): compare medians of interleaved runs; instructions do not move.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}; secs=${2:-5}; n=${3:-20000}
sessions=${SESSIONS:-"100 100000"}
uxdir=${UXLOAD_DIR:-../shared/tools/uxload}
mxpuppetd=${MXPUPPETD:-./build/mxpuppetd}
anchors=${ANCHORS_DIR:-../shared/tools/anchors}
work=$(mktemp -d /tmp/mxp-hot.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cc -O2 -o "$work/uxload" "$uxdir/uxload.c" -lpthread -lm
cc -O2 -o "$work/rawserver" "$uxdir/rawserver.c" -lpthread
path='/v1/users/@user{i}:example.com/token'

# --- 1. instructions per request -----------------------------------------------------------------
if [ -z "${SKIP_INSTRUCTIONS:-}" ]; then
  echo "== instructions per request (callgrind, 16 connections, $n requests after a warm-up)"
  mxp=$(MXPUPPETD="$mxpuppetd" UXLOAD_DIR="$uxdir" bash bench/instructions_per_request.sh "$n" 1000 |
        awk '/instructions per cached request/ {print $5}')
  ngx=$(UXLOAD_DIR="$uxdir" bash "$anchors/nginx_instructions.sh" "$n" |
        awk '/nginx instructions per request/ {print $5}')
  # The floor, counted the same way.
  valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$work/raw-cg.%p" \
    "$work/rawserver" unix:"$work/raw-cg.sock" >/dev/null 2>&1 &
  vg=$!
  for _ in $(seq 1 150); do [ -S "$work/raw-cg.sock" ] && break; sleep 0.2; done
  "$work/uxload" -c 16 -N 2000 -n 1000 -d 300 -p "$path" unix:"$work/raw-cg.sock" >/dev/null
  callgrind_control -z "$vg" >/dev/null
  "$work/uxload" -c 16 -N "$n" -n 1000 -d 300 -p "$path" unix:"$work/raw-cg.sock" >/dev/null
  kill -INT "$vg"; wait "$vg" 2>/dev/null || true
  raw_total=$(callgrind_annotate "$(ls "$work"/raw-cg.* | head -1)" 2>/dev/null |
              awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  python3 - "$mxp" "$ngx" "$raw_total" "$n" <<'PY'
import sys
mxp, ngx, raw = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]) / int(sys.argv[4])
print(f"  {'server':34s} {'instr/req':>9s}  {'/ floor':>7s}  {'/ nginx':>7s}")
for name, v in (("mxpuppetd, cached token", mxp), ("nginx 1.22, fixed JSON", ngx),
                ("rawserver (the floor)", raw)):
    print(f"  {name:34s} {v:9.0f}  {v/raw:7.2f}  {v/ngx:7.2f}")
print(f"  target: mxpuppetd <= 2000 instructions per request (<= 3x the floor, <= 0.26x nginx)")
PY
fi

# --- 2. req/s and p99 against nginx --------------------------------------------------------------
[ -n "${SKIP_THROUGHPUT:-}" ] && exit 0
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secret"
port=$((20000 + RANDOM % 20000))
./build/tests/mxpuppet-fakehs --port "$port" --server-name example.com --secret-file "$work/secret" \
  --auto-register > "$work/hs.log" 2>&1 &
pids+=($!)
body=$(tr -d '\n' < "$uxdir/tests/body.json" | sed "s/'/\\\\'/g")
cat > "$work/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $work/nginx.pid;
error_log $work/nginx.err warn; events { worker_connections 1024; }
http { access_log off; keepalive_timeout 75s; keepalive_requests 100000000;
client_body_temp_path $work/cb; proxy_temp_path $work/px; fastcgi_temp_path $work/fc; uwsgi_temp_path $work/uw; scgi_temp_path $work/sc;
server { listen unix:$work/nginx.sock; location / { default_type application/json; return 200 '$body\n'; } } }
NGINX

measure() {  # name target users json
  taskset -c 0 "$work/uxload" -c 16 -d "$secs" -w 1 -p "$path" -n "$3" --out-json "$4" "$2" > "$4.txt"
  python3 - "$1" "$4" <<'PY'
import json,sys; r=json.load(open(sys.argv[2]))
print(f"    {sys.argv[1]:10s} {r['rps']:>9.0f} req/s  p50 {r['latency_us']['p50']:7.1f} us  p99 {r['latency_us']['p99']:7.1f} us  errors {r['errors']['total']} non-2xx {r['non_2xx']}")
PY
}

for users in $sessions; do
  sock="$work/mxp-$users.sock"
  cat > "$work/config-$users.yaml" <<YAML
listen: {unix_socket: $sock, socket_mode: "0600"}
homeservers:
  example.com:
    url: http://127.0.0.1:$port
    login: {method: shared_secret, secret_file: secret, login_type: com.devture.shared_secret_auth}
    max_concurrent_logins: 16
sessions: {max: 1000000, idle_timeout: 7d}
log: {level: warn}
YAML
  taskset -c 1 "$mxpuppetd" -c "$work/config-$users.yaml" > "$work/daemon-$users.log" 2>&1 &
  daemon=$!; pids+=($daemon)
  for _ in $(seq 1 200); do [ -S "$sock" ] && break; sleep 0.05; done
  echo "== $users cached sessions: warming (one login each)..."
  "$work/uxload" -c 16 -d 900 --seq -N "$users" -n "$users" -p "$path" --expect access_token \
    unix:"$sock" | grep -E 'errors' | sed 's/^/  /'
  rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$daemon/status)
  echo "  mxpuppetd RSS with $users sessions: $((rss_kb / 1024)) MiB"
  for run in $(seq 1 "$runs"); do
    echo "  run $run/$runs (16 connections, $secs s, uniform over $users users)"
    measure mxpuppetd unix:"$sock" "$users" "$work/mxp.$users.$run.json"
    taskset -c 1 nginx -c "$work/nginx.conf" > /dev/null 2>&1 & ngx=$!
    for _ in $(seq 1 100); do [ -S "$work/nginx.sock" ] && break; sleep 0.02; done
    measure nginx unix:"$work/nginx.sock" "$users" "$work/nginx.$users.$run.json"
    kill $ngx; wait $ngx 2>/dev/null || true; rm -f "$work/nginx.sock"
    taskset -c 1 "$work/rawserver" unix:"$work/raw.sock" > /dev/null 2>&1 & raw=$!
    for _ in $(seq 1 100); do [ -S "$work/raw.sock" ] && break; sleep 0.02; done
    measure rawserver unix:"$work/raw.sock" "$users" "$work/raw.$users.$run.json"
    kill $raw; wait $raw 2>/dev/null || true; rm -f "$work/raw.sock"
  done
  kill "$daemon"; wait "$daemon" 2>/dev/null || true
done

python3 - "$work" "$runs" $sessions <<'PY'
import json,os,statistics,sys
work,runs,sessions=sys.argv[1],int(sys.argv[2]),sys.argv[3:]
def vals(name,users,key):
    out=[]
    for i in range(1,runs+1):
        p=f"{work}/{name}.{users}.{i}.json"
        if os.path.exists(p):
            r=json.load(open(p)); out.append(r['rps'] if key=='rps' else r['latency_us'][key])
    return out
print("\n== medians (target: req/s >= 1.2x nginx, p99 <= nginx; the floor: rawserver, a raw epoll loop")
print("   answering a fixed string, the most this machine's kernel lets any server do)")
print(f"  {'sessions':>8s}  {'mxpuppetd req/s':>15s}  {'nginx req/s':>11s}  {'ratio':>5s}  {'runs (ratio)':s}    {'p99 mxp':>8s}  {'p99 nginx':>9s}  {'ratio':>5s}")
for u in sessions:
    m,g=vals("mxp",u,'rps'),vals("nginx",u,'rps')
    mp,gp=vals("mxp",u,'p99'),vals("nginx",u,'p99')
    per_run=" ".join(f"{a/b:.2f}" for a,b in zip(m,g))
    print(f"  {u:>8s}  {statistics.median(m):15.0f}  {statistics.median(g):11.0f}  {statistics.median(m)/statistics.median(g):5.2f}  {per_run}    {statistics.median(mp):8.1f}  {statistics.median(gp):9.1f}  {statistics.median(mp)/statistics.median(gp):5.2f}")
    f=vals("raw",u,'rps')
    if f:
        print(f"  {'':8s}  floor {statistics.median(f):9.0f} req/s: mxpuppetd {statistics.median(m)/statistics.median(f):.2f}x the floor, the floor {statistics.median(f)/statistics.median(g):.2f}x nginx")
PY
