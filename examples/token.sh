#!/usr/bin/env bash
# Fetch a Matrix access token from mxpuppetd over its Unix socket with curl (no jq needed).
#
#   token.sh [--socket PATH] USER_ID                print USER_ID's access token (one line)
#   token.sh [--socket PATH] --invalidate USER_ID   read a token the homeserver rejected with
#                                                   M_UNKNOWN_TOKEN from stdin, report it;
#                                                   prints "true" if it was the current one
#
# The socket defaults to $MXPUPPETD_SOCKET, else /run/mxpuppetd/mxpuppetd.sock.
# Exit codes: 0 success, 1 the daemon answered with an error (errcode on stderr), 2 usage,
# 3 the daemon cannot be reached (or its answer is not what it should be). The token goes to
# stdout only, never to stderr or argv.
#
#   TOKEN=$(examples/token.sh @bot:example.org)
#   # ... the homeserver answered 401 M_UNKNOWN_TOKEN:
#   printf '%s\n' "$TOKEN" | examples/token.sh --invalidate @bot:example.org
#   TOKEN=$(examples/token.sh @bot:example.org)
set -euo pipefail

socket=${MXPUPPETD_SOCKET:-/run/mxpuppetd/mxpuppetd.sock}
max_tries=5            # give up after this many answers of 429/503
default_retry_ms=1000  # a 503 without retry_after_ms: wait this long
max_wait_ms=60000      # never wait longer than this between two tries

# One path segment: encode every byte but A-Za-z0-9-._~@: (as mxpuppetctl does), so '/',
# '?', '#' and '%' in a (historical) user ID cannot change the request.
urlencode() {
  local LC_ALL=C s=$1 out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9._~@:-]) out+=$c ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}

# The value of a top-level string or number member of a one-line JSON object. mxpuppetd's
# answers are compact and Matrix tokens, errcodes and numbers need no escapes; use jq or
# python3 for anything richer.
json_member() {
  sed -n -e 's/.*"'"$1"'":"\([^"]*\)".*/\1/p' -e t -e 's/.*"'"$1"'":\([^",}]*\).*/\1/p' <<<"$2"
}

# call METHOD PATH [BODY]: prints the 200 answer's body; retries 429 and 503 after
# retry_after_ms. The body (it may hold a token) goes through stdin, never argv.
call() {
  local method=$1 path=$2 body=${3-} attempt answer status errcode wait_ms
  local -a data=()
  [ $# -ge 3 ] && data=(-H 'Content-Type: application/json' --data-binary @-)
  for ((attempt = 1; ; attempt++)); do
    # -w appends the status on a line of its own; curl fails (exit 7 etc.) only without an answer.
    if ! answer=$(printf '%s' "$body" | curl -sS --max-time 35 --unix-socket "$socket" \
      -X "$method" "${data[@]}" -w '\n%{http_code}' "http://localhost$path"); then
      echo "cannot reach mxpuppetd at $socket" >&2
      return 3
    fi
    status=${answer##*$'\n'}
    answer=${answer%$'\n'*}
    if [ "$status" = 200 ]; then
      printf '%s\n' "$answer"
      return 0
    fi
    errcode=$(json_member errcode "$answer")
    # 429 M_LIMIT_EXCEEDED always says how long to wait; 503 MXP_UNAVAILABLE may.
    if [[ $status != 429 && $status != 503 ]] || ((attempt >= max_tries)); then
      echo "mxpuppetd: $status ${errcode:-?}: $(json_member error "$answer")" >&2
      return 1
    fi
    wait_ms=$(json_member retry_after_ms "$answer")
    wait_ms=${wait_ms:-$default_retry_ms}
    ((wait_ms > max_wait_ms)) && wait_ms=$max_wait_ms
    echo "mxpuppetd: $status $errcode, retrying in $wait_ms ms" >&2
    sleep "$((wait_ms / 1000)).$(printf '%03d' $((wait_ms % 1000)))"
  done
}

mode=token
while [ $# -gt 0 ]; do
  case $1 in
    -s | --socket) socket=${2:?--socket needs a path}; shift 2 ;;
    --invalidate) mode=invalidate; shift ;;
    -*) set -- ;;
    *) break ;;
  esac
done
if [ $# -ne 1 ]; then
  echo "usage: token.sh [--socket PATH] [--invalidate] USER_ID" >&2
  exit 2
fi
path_user=$(urlencode "$1")

status=0
if [ "$mode" = token ]; then
  answer=$(call GET "/v1/users/$path_user/token") || status=$?
  [ $status -eq 0 ] || exit $status
  token=$(json_member access_token "$answer")
  [ -n "$token" ] || { echo "mxpuppetd's answer has no access_token" >&2; exit 3; }
  printf '%s\n' "$token"
else
  IFS= read -r token || true  # stdin keeps the token out of `ps`
  token=${token//\\/\\\\}     # JSON-escape it (no Matrix token needs this; be safe anyway)
  token=${token//\"/\\\"}
  answer=$(call POST "/v1/users/$path_user/invalidate" "{\"access_token\":\"$token\"}") || status=$?
  [ $status -eq 0 ] || exit $status
  json_member invalidated "$answer"
fi
