#!/usr/bin/env python3
"""Fetch a Matrix access token from mxpuppetd over its Unix socket (standard library only).

    token.py [--socket PATH] USER_ID                print USER_ID's access token (one line)
    token.py [--socket PATH] --invalidate USER_ID   read a token the homeserver rejected with
                                                    M_UNKNOWN_TOKEN from stdin, report it;
                                                    prints "true" if it was the current one

The socket defaults to $MXPUPPETD_SOCKET, else /run/mxpuppetd/mxpuppetd.sock.
Exit codes: 0 success, 1 the daemon answered with an error (errcode on stderr), 2 usage,
3 the daemon cannot be reached (or its answer is not JSON). The token goes to stdout only,
never to stderr.

In a bridge, import get_token() and invalidate(): when the homeserver answers a request
with 401 M_UNKNOWN_TOKEN, call invalidate(user, token), then get_token(user) again.
"""

import http.client
import json
import os
import socket
import sys
import time
import urllib.parse

DEFAULT_SOCKET = "/run/mxpuppetd/mxpuppetd.sock"
MAX_TRIES = 5              # give up after this many answers of 429/503
DEFAULT_RETRY_MS = 1000    # a 503 without retry_after_ms: wait this long
MAX_WAIT_MS = 60_000       # never wait longer than this between two tries
TIMEOUT_S = 35             # the daemon answers within listen.request_timeout (30 s default)


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over AF_UNIX: only connect() differs from plain HTTP."""

    def __init__(self, path, timeout=TIMEOUT_S):
        super().__init__("localhost", timeout=timeout)  # "localhost" is only the Host header
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class MxpError(Exception):
    """The daemon answered with a Matrix-style error {"errcode","error"}."""

    def __init__(self, status, body):
        self.status = status
        self.errcode = body.get("errcode", "M_UNKNOWN")
        self.retry_after_ms = body.get("retry_after_ms")
        super().__init__(f"{status} {self.errcode}: {body.get('error', '')}")


def user_path(user_id, action):
    # One path segment: encode everything but A-Za-z0-9-._~@: (as mxpuppetctl does), so
    # '/', '?', '#' and '%' in a (historical) user ID cannot change the request.
    return f"/v1/users/{urllib.parse.quote(user_id, safe='@:')}/{action}"


def request(sock_path, method, path, body=None):
    """One request, retried on 429 and 503 after retry_after_ms; returns the JSON answer."""
    payload = None if body is None else json.dumps(body)
    headers = {} if body is None else {"Content-Type": "application/json"}
    for attempt in range(1, MAX_TRIES + 1):
        conn = UnixHTTPConnection(sock_path)
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            status, raw = resp.status, resp.read()
        finally:
            conn.close()
        answer = json.loads(raw)
        if status == 200:
            return answer
        err = MxpError(status, answer)
        # 429 M_LIMIT_EXCEEDED always says how long to wait; 503 MXP_UNAVAILABLE may.
        if status not in (429, 503) or attempt == MAX_TRIES:
            raise err
        wait_ms = min(err.retry_after_ms or DEFAULT_RETRY_MS, MAX_WAIT_MS)
        print(f"mxpuppetd: {status} {err.errcode}, retrying in {wait_ms} ms", file=sys.stderr)
        time.sleep(wait_ms / 1000)


def get_token(sock_path, user_id):
    return request(sock_path, "GET", user_path(user_id, "token"))["access_token"]


def invalidate(sock_path, user_id, token):
    """Reports a token the homeserver rejected (M_UNKNOWN_TOKEN); True if it was current."""
    answer = request(sock_path, "POST", user_path(user_id, "invalidate"), {"access_token": token})
    return answer["invalidated"]


def main(argv):
    sock_path = os.environ.get("MXPUPPETD_SOCKET", DEFAULT_SOCKET)
    args, mode = argv[1:], "token"
    while args and args[0].startswith("-"):
        if args[0] in ("-s", "--socket") and len(args) > 1:
            sock_path, args = args[1], args[2:]
        elif args[0] == "--invalidate":
            mode, args = "invalidate", args[1:]
        else:
            break
    if len(args) != 1:
        print("usage: token.py [--socket PATH] [--invalidate] USER_ID", file=sys.stderr)
        return 2
    user_id = args[0]
    try:
        if mode == "token":
            print(get_token(sock_path, user_id))
        else:
            token = sys.stdin.readline().strip()  # stdin keeps the token out of `ps`
            print("true" if invalidate(sock_path, user_id, token) else "false")
    except MxpError as e:
        print(f"mxpuppetd: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError, http.client.HTTPException) as e:
        print(f"cannot reach mxpuppetd at {sock_path}: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
