#!/usr/bin/env bash
# The bridge gateway against nginx `proxy_pass`, both in front of the same fast upstream (an
# nginx answering a fixed JSON, keep-alive), measured side by side in one run:
#   1. proxied requests per second and p99, 16 keep-alive connections (uxload over loopback
#      TCP), for each gateway row: a passthrough bearer, a bridge token in `assert` mode
#      (the real as_token put in, user_id kept) and in `session` mode (the user's pooled
#      token put in, user_id stripped); nginx forwards the same requests unchanged;
#   2. added latency of a proxied small request over a direct one (one connection, p50, p99);
#   3. a 200 MB download and upload through each: throughput, and mxpuppetd's RSS growth.
#
#   bench/gateway_bench.sh [RUNS=3] [SECONDS=5] [BIG_MB=200]
#
# Needs ./build (scripts/build.sh), nginx (Debian's nginx-light), curl and uxload's sources
# (UXLOAD_DIR, default ../shared/tools/uxload). Prints per-run figures, medians and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; secs=${2:-5}; big_mb=${3:-200}; conns=${CONNECTIONS:-16}
uxdir=${UXLOAD_DIR:-../shared/tools/uxload}
work=$(mktemp -d /tmp/mxp-gwbench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
command -v nginx >/dev/null || { echo "nginx not found (apt-get install nginx-light)"; exit 1; }
[ -f "$uxdir/uxload.c" ] || { echo "uxload sources not found in $uxdir (set UXLOAD_DIR)"; exit 1; }
cc -O2 -o "$work/uxload" "$uxdir/uxload.c" -lpthread -lm

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream_port=$(port); proxy_port=$(port); gateway_port=$(port)
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened"; exit 1; }

# The upstream: a fixed JSON for every request (it is also a valid login and whoami answer for
# @alice:example.com, so `session` mode can log alice in), a big file for media downloads,
# and uploads read and discarded.
body=$(cat "$uxdir/tests/body.json")
head -c $((big_mb * 1024 * 1024)) /dev/urandom > "$work/big.bin"
chmod 755 "$work"; chmod 644 "$work/big.bin"  # nginx workers run as nobody
mkdir -p "$work/www/_matrix/media/v3/download/example.com" && ln -s "$work/big.bin" "$work/www/_matrix/media/v3/download/example.com/big"
temps="client_body_temp_path $work/cb; proxy_temp_path $work/px; fastcgi_temp_path $work/fc; uwsgi_temp_path $work/uw; scgi_temp_path $work/sc;"
cat > "$work/upstream.conf" <<NGINX
worker_processes 1; daemon off; pid $work/upstream.pid; error_log $work/upstream.err;
events {}
http { access_log off; keepalive_requests 100000000; $temps client_max_body_size 0;
  server { listen 127.0.0.1:$upstream_port; root $work/www; sendfile on;
    location /_matrix/media/v3/download/ { default_type application/octet-stream; }
    location / { default_type application/json; return 200 '$body'; } } }
NGINX
cat > "$work/proxy.conf" <<NGINX
worker_processes 1; daemon off; pid $work/proxy.pid; error_log $work/proxy.err;
events {}
http { access_log off; keepalive_requests 100000000; $temps client_max_body_size 0;
  upstream homeserver { server 127.0.0.1:$upstream_port; keepalive 32; }
  server { listen 127.0.0.1:$proxy_port;
    location / { proxy_pass http://homeserver; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_request_buffering off; } } }
NGINX
nginx -c "$work/upstream.conf" > /dev/null 2>&1 & pids+=($!)
nginx -c "$work/proxy.conf" > /dev/null 2>&1 & pids+=($!)

# mxpuppetd: example.com in assert mode (appservice), session.example.com in session mode
# (shared-secret login at the same upstream); one bridge allowed both.
bridge_token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s' "$bridge_token" > "$work/bridge.token"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/as.token"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secret"
chmod 600 "$work"/*.token "$work/secret"
cat > "$work/config.yaml" <<YAML
listen: {unix_socket: $work/mxpuppetd.sock, socket_mode: "0600"}
gateway:
  listen: ["127.0.0.1:$gateway_port"]
  default_homeserver: example.com
  max_body_bytes: $(( (big_mb + 1) * 1024 * 1024 ))
  bridges:
    - {name: bench, token_file: bridge.token, allow: ["@*:example.com"]}
homeservers:
  example.com:
    url: http://127.0.0.1:$upstream_port
    login: {method: appservice, as_token_file: as.token}
    gateway_mode: assert
  session.example.com:
    url: http://127.0.0.1:$upstream_port
    login: {method: shared_secret, secret_file: secret, login_type: com.devture.shared_secret_auth}
    gateway_mode: session
log: {level: warn}
YAML
./build/mxpuppetd -c "$work/config.yaml" > "$work/daemon.log" 2>&1 &
daemon_pid=$!; pids+=($daemon_pid)
wait_port "$upstream_port"; wait_port "$proxy_port"; wait_port "$gateway_port"

whoami=/_matrix/client/v3/account/whoami
declare -A target_of=(
  [direct]=tcp:127.0.0.1:$upstream_port [nginx]=tcp:127.0.0.1:$proxy_port
  [passthrough]=tcp:127.0.0.1:$gateway_port [assert]=tcp:127.0.0.1:$gateway_port
  [session]=tcp:127.0.0.1:$gateway_port)
declare -A path_of=(
  [direct]="$whoami?user_id=@alice:example.com" [nginx]="$whoami?user_id=@alice:example.com"
  [passthrough]="$whoami" [assert]="$whoami?user_id=@alice:example.com"
  [session]="/_hs/session.example.com$whoami?user_id=@alice:example.com")
declare -A bearer_of=([direct]=$bridge_token [nginx]=$bridge_token [passthrough]=a-users-own-token-placeholder
  [assert]=$bridge_token [session]=$bridge_token)

measure() {  # case connections seconds out.json
  "$work/uxload" -c "$2" -d "$3" -w 1 -p "${path_of[$1]}" -H "Authorization: Bearer ${bearer_of[$1]}" \
    --expect user_id --out-json "$4" "${target_of[$1]}" > "$4.txt"
  python3 - "$1" "$4" <<'PY'
import json,sys; r=json.load(open(sys.argv[2]))
print(f"  {sys.argv[1]:12s} {r['rps']:>9.0f} req/s  p50 {r['latency_us']['p50']:7.1f} us  p99 {r['latency_us']['p99']:7.1f} us  errors {r['errors']['total']} non-2xx {r['non_2xx']} reconnects {r['reconnects']}")
PY
}
measure session 1 1 "$work/warm.json" >/dev/null

for run in $(seq 1 "$runs"); do
  echo "run $run/$runs: $conns keep-alive connections, $secs s each"
  for c in nginx passthrough assert session; do measure "$c" "$conns" "$secs" "$work/$c.$run.json"; done
  echo "run $run/$runs: one connection (added latency over direct)"
  for c in direct nginx assert; do measure "$c" 1 "$secs" "$work/lat-$c.$run.json"; done
done

echo "big bodies: ${big_mb} MB download and upload"
rss() { awk -v k="$2" '$1==k":" {print $2}' /proc/"$1"/status; }
rss_before=$(rss "$daemon_pid" VmRSS)
transfer() {  # name port -> download and upload MB/s
  local down up
  down=$(curl -sS -o /dev/null -w '%{speed_download}' -H "Authorization: Bearer $bridge_token" \
    "http://127.0.0.1:$2/_matrix/media/v3/download/example.com/big?user_id=@alice:example.com")
  up=$(curl -sS -o /dev/null -w '%{speed_upload}' -H "Authorization: Bearer $bridge_token" \
    -H 'Content-Type: application/octet-stream' --data-binary @"$work/big.bin" \
    "http://127.0.0.1:$2/_matrix/media/v3/upload?user_id=@alice:example.com")
  echo "$1 $down $up" >> "$work/transfer.txt"
  python3 -c "import sys; print(f'  {sys.argv[1]:8s} download {float(sys.argv[2])/1e6:7.1f} MB/s  upload {float(sys.argv[3])/1e6:7.1f} MB/s')" "$1" "$down" "$up"
}
for run in $(seq 1 "$runs"); do transfer nginx "$proxy_port"; transfer gateway "$gateway_port"; done
rss_after=$(rss "$daemon_pid" VmRSS); hwm=$(rss "$daemon_pid" VmHWM)

python3 - "$work" "$runs" "$rss_before" "$rss_after" "$hwm" "$big_mb" <<'PY'
import json,os,statistics,sys
work,runs=sys.argv[1],int(sys.argv[2]); rss0,rss1,hwm,big=map(int,sys.argv[3:7])
def med(prefix,key):
    vals=[]
    for i in range(1,runs+1):
        p=f"{work}/{prefix}.{i}.json"
        if os.path.exists(p):
            r=json.load(open(p)); vals.append(r['rps'] if key=='rps' else r['latency_us'][key])
    return statistics.median(vals)
print("\nmedians, 16 connections")
for c in ("nginx","passthrough","assert","session"):
    print(f"  {c:12s} {med(c,'rps'):>9.0f} req/s  p99 {med(c,'p99'):7.1f} us   vs nginx: req/s x{med(c,'rps')/med('nginx','rps'):.2f}, p99 x{med(c,'p99')/med('nginx','p99'):.2f}")
print("added latency over direct, one connection (median of runs)")
for c in ("nginx","assert"):
    print(f"  {c:12s} p50 +{med('lat-'+c,'p50')-med('lat-direct','p50'):6.1f} us  p99 +{med('lat-'+c,'p99')-med('lat-direct','p99'):6.1f} us")
rows=[l.split() for l in open(f"{work}/transfer.txt")]
def tmed(name,i): return statistics.median(float(r[i]) for r in rows if r[0]==name)
for i,what in ((1,"download"),(2,"upload")):
    print(f"{big} MB {what}: gateway {tmed('gateway',i)/1e6:.0f} MB/s, nginx {tmed('nginx',i)/1e6:.0f} MB/s, ratio x{tmed('gateway',i)/tmed('nginx',i):.2f}")
print(f"mxpuppetd RSS {rss0/1024:.1f} MiB before the big bodies, {rss1/1024:.1f} MiB after (growth {(rss1-rss0)/1024:.1f} MiB), peak {hwm/1024:.1f} MiB")
PY
