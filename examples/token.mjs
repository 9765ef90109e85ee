#!/usr/bin/env node
// Fetch a Matrix access token from mxpuppetd over its Unix socket (Node.js, no packages).
//
//   node token.mjs [--socket PATH] USER_ID                print USER_ID's access token
//   node token.mjs [--socket PATH] --invalidate USER_ID   read a token the homeserver rejected
//                                                         with M_UNKNOWN_TOKEN from stdin,
//                                                         report it; prints "true" if it was
//                                                         the current one
//
// The socket defaults to $MXPUPPETD_SOCKET, else /run/mxpuppetd/mxpuppetd.sock.
// Exit codes: 0 success, 1 the daemon answered with an error (errcode on stderr), 2 usage,
// 3 the daemon cannot be reached (or its answer is not JSON). The token goes to stdout only,
// never to stderr.
//
// In a bridge, import getToken() and invalidate(): when the homeserver answers a request with
// 401 M_UNKNOWN_TOKEN, call invalidate(socket, user, token), then getToken(socket, user) again.
import http from 'node:http';
import { realpathSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const DEFAULT_SOCKET = '/run/mxpuppetd/mxpuppetd.sock';
const MAX_TRIES = 5;             // give up after this many answers of 429/503
const DEFAULT_RETRY_MS = 1000;   // a 503 without retry_after_ms: wait this long
const MAX_WAIT_MS = 60_000;      // never wait longer than this between two tries
const TIMEOUT_MS = 35_000;       // the daemon answers within listen.request_timeout (30 s)

// The daemon answered with a Matrix-style error {"errcode","error"}.
export class MxpError extends Error {
  constructor(status, body) {
    super(`${status} ${body.errcode ?? 'M_UNKNOWN'}: ${body.error ?? ''}`);
    this.status = status;
    this.errcode = body.errcode ?? 'M_UNKNOWN';
    this.retryAfterMs = body.retry_after_ms;
  }
}

// One path segment: encodeURIComponent also encodes '@' and ':', which the daemon allows.
const userPath = (userId, action) => `/v1/users/${encodeURIComponent(userId)}/${action}`;

// One HTTP exchange over the socket: resolves to {status, body} with the body parsed.
function once(socketPath, method, path, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers = payload === undefined ? {}
      : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) };
    const req = http.request({ socketPath, method, path, headers, timeout: TIMEOUT_MS }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(chunks).toString()) });
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

// One request, retried on 429 and 503 after retry_after_ms; resolves to the JSON answer.
async function request(socketPath, method, path, body) {
  for (let attempt = 1; ; attempt++) {
    const { status, body: answer } = await once(socketPath, method, path, body);
    if (status === 200) return answer;
    const err = new MxpError(status, answer);
    // 429 M_LIMIT_EXCEEDED always says how long to wait; 503 MXP_UNAVAILABLE may.
    if ((status !== 429 && status !== 503) || attempt >= MAX_TRIES) throw err;
    const waitMs = Math.min(err.retryAfterMs ?? DEFAULT_RETRY_MS, MAX_WAIT_MS);
    console.error(`mxpuppetd: ${status} ${err.errcode}, retrying in ${waitMs} ms`);
    await sleep(waitMs);
  }
}

export async function getToken(socketPath, userId) {
  return (await request(socketPath, 'GET', userPath(userId, 'token'))).access_token;
}

// Reports a token the homeserver rejected (M_UNKNOWN_TOKEN); true if it was the current one.
export async function invalidate(socketPath, userId, token) {
  const answer = await request(socketPath, 'POST', userPath(userId, 'invalidate'),
    { access_token: token });
  return answer.invalidated;
}

async function readLine(stream) {
  let text = '';
  stream.setEncoding('utf8');
  for await (const chunk of stream) text += chunk;
  return text.split('\n')[0].trim();
}

async function main(argv) {
  let socketPath = process.env.MXPUPPETD_SOCKET || DEFAULT_SOCKET;
  let mode = 'token';
  const args = [...argv];
  while (args.length && args[0].startsWith('-')) {
    if ((args[0] === '-s' || args[0] === '--socket') && args.length > 1) {
      socketPath = args[1];
      args.splice(0, 2);
    } else if (args[0] === '--invalidate') {
      mode = 'invalidate';
      args.shift();
    } else {
      break;
    }
  }
  if (args.length !== 1) {
    console.error('usage: node token.mjs [--socket PATH] [--invalidate] USER_ID');
    return 2;
  }
  const userId = args[0];
  try {
    if (mode === 'token') {
      process.stdout.write(`${await getToken(socketPath, userId)}\n`);
    } else {
      const token = await readLine(process.stdin);  // stdin keeps the token out of `ps`
      process.stdout.write(`${await invalidate(socketPath, userId, token)}\n`);
    }
    return 0;
  } catch (e) {
    if (e instanceof MxpError) {
      console.error(`mxpuppetd: ${e.message}`);
      return 1;
    }
    console.error(`cannot reach mxpuppetd at ${socketPath}: ${e.message}`);
    return 3;
  }
}

// Run as a program (not when imported by a bridge).
if (process.argv[1] && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  process.exitCode = await main(process.argv.slice(2));
}
