// Interop of the bridge gateway with the unmodified matrix-js-sdk from npm: the two ways
// existing bridges double-puppet, each followed by whoami, sendEvent and uploadContent through
// the gateway. Run by tests/e2e/gateway_interop_test.cpp, which starts the fake homeserver and
// mxpuppetd and checks at the homeserver what arrived and with which credentials.
//
// Usage: node gateway_interop.mjs login|bridge_token
// Input (environment): MXP_GATEWAY_URL, MXP_USER_ID, MXP_ROOM_ID and, per mode,
// MXP_LOGIN_SECRET (login) or MXP_BRIDGE_TOKEN (bridge_token).
// Output: one JSON line on stdout with what the SDK got back; exit 1 with the error otherwise.
import { createHmac } from "node:crypto";

// matrix-js-sdk targets Node 22; Node 20 lacks only Promise.withResolvers (ES2024).
if (!Promise.withResolvers) {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

// The SDK logs every request through console: keep stdout for the one result line.
for (const level of ["log", "info", "debug", "trace"]) console[level] = console.error;
const sdk = await import("matrix-js-sdk");

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

async function whoamiSendUpload(client, userId, roomId, label) {
  const whoami = await client.whoami();
  const sent = await client.sendEvent(roomId, "m.room.message",
                                      { msgtype: "m.text", body: `hello from ${label}` },
                                      `txn-${label}-${Date.now()}`);
  const payload = Buffer.from(`media from ${label} `.repeat(1000));
  const uploaded = await client.uploadContent(payload, {
    name: `${label}.txt`,
    type: "text/plain",
    includeFilename: false,
  });
  return {
    whoami_user_id: whoami.user_id,
    event_id: sent.event_id,
    content_uri: uploaded.content_uri,
    uploaded_bytes: payload.length,
  };
}

// What login-based bridges do (mautrix-python, legacy mautrix-go, mx-puppet-bridge,
// matrix-wechat): m.login.password with the HMAC of their login secret, then the token they got.
async function loginBridge(gatewayUrl, userId, roomId) {
  const secret = required("MXP_LOGIN_SECRET");
  const password = createHmac("sha512", secret).update(userId).digest("hex");
  const anonymous = sdk.createClient({ baseUrl: gatewayUrl });
  const login = await anonymous.login("m.login.password", {
    identifier: { type: "m.id.user", user: userId },
    password,
    initial_device_display_name: "interop bridge",
  });
  const client = sdk.createClient({
    baseUrl: gatewayUrl,
    accessToken: login.access_token,
    userId: login.user_id,
    deviceId: login.device_id,
  });
  const result = await whoamiSendUpload(client, userId, roomId, "login");
  return {
    mode: "login",
    login_user_id: login.user_id,
    handle_prefix: login.access_token.slice(0, 5),
    access_token_length: login.access_token.length,
    ...result,
  };
}

// What mautrix bridgev2 does: its bridge token as an appservice token plus ?user_id=.
async function bridgeTokenBridge(gatewayUrl, userId, roomId) {
  const client = sdk.createClient({
    baseUrl: gatewayUrl,
    accessToken: required("MXP_BRIDGE_TOKEN"),
    userId,
    queryParams: { user_id: userId },
  });
  return { mode: "bridge_token", ...(await whoamiSendUpload(client, userId, roomId, "bridge")) };
}

const modes = { login: loginBridge, bridge_token: bridgeTokenBridge };
const mode = process.argv[2];
try {
  if (!modes[mode]) throw new Error(`usage: gateway_interop.mjs ${Object.keys(modes).join("|")}`);
  const result = await modes[mode](required("MXP_GATEWAY_URL"), required("MXP_USER_ID"),
                                   required("MXP_ROOM_ID"));
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (error) {
  const detail = error?.data ? ` ${JSON.stringify(error.data)}` : "";
  process.stderr.write(`interop ${mode} failed: ${error?.message ?? error}${detail}\n`);
  process.exit(1);
}
