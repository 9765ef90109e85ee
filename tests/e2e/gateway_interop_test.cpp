// End-to-end interop: the unmodified matrix-js-sdk from npm (tests/interop, versions pinned by
// package-lock.json, installed by scripts/test.sh with `npm ci`) double-puppets through the
// real mxpuppetd's gateway in front of the fake homeserver, the two ways bridges do it:
//   login:        login("m.login.password") with the HMAC of the bridge's login secret, then
//                 whoami, sendEvent and uploadContent with the handle it got;
//   bridge_token: createClient with the bridge token and queryParams {user_id}, then the same.
// The homeserver's record shows what arrived and with which credentials. node and the npm
// packages must be there: a missing one fails the test rather than skipping it.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/child_program.hpp"
#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"
#include "support/tcp_http.hpp"

using namespace mxp::test;

namespace {

constexpr const char* hs_secret = "interop-homeserver-secret";
constexpr const char* bridge_token = "interop-bridge-token-93c4d1e0b7a2";
constexpr const char* login_secret = "interop-login-secret-0f6e2b9d8c41";
constexpr const char* as_token = "interop-as-token-of-the-double-puppet-appservice";
constexpr const char* user = "@alice:localhost";
constexpr const char* room = "!interop:localhost";

struct interop_fixture : e2e_fixture, ::testing::WithParamInterface<std::string> {
  interop_fixture() : e2e_fixture{hs_secret} {}
  std::uint16_t port = free_loopback_port();
  std::vector<std::string> node;

  void SetUp() override {
    e2e_fixture::SetUp();
    const auto interop = env_or_throw("MXP_SOURCE_DIR") + "/tests/interop";
    const auto node_bin = find_in_path("node");
    ASSERT_FALSE(node_bin.empty()) << "node is not in PATH: install nodejs";
    ASSERT_TRUE(std::filesystem::exists(interop + "/node_modules/matrix-js-sdk"))
        << "matrix-js-sdk is not installed: npm ci --prefix tests/interop (scripts/test.sh)";
    node = {node_bin, interop + "/gateway_interop.mjs"};
    dir.write("bridge.token", std::string{bridge_token} + "\n", 0600);
    dir.write("bridge.login", std::string{login_secret} + "\n", 0600);
    for (const char* s : {bridge_token, login_secret, as_token}) never_logged.insert(s);
  }

  // The gateway on `port`; the fixture's homeserver in `mode` (assert: appservice login).
  void start_gateway(const std::string& mode) {
    auto o = homeserver_options();
    o.as_token = as_token;
    start_homeserver(o);
    hs->register_user(user);
    auto entry = default_entry();
    if (mode == "assert") {
      dir.write("as.token", std::string{as_token} + "\n", 0600);
      entry.login = "      method: appservice\n      as_token_file: as.token\n";
    }
    entry.more = "    gateway_mode: " + mode + "\n";
    start({.homeservers = {entry},
           .sections = "gateway:\n  listen: [\"127.0.0.1:" + std::to_string(port) +
                       "\"]\n  bridges:\n    - name: interop\n      token_file: bridge.token\n"
                       "      login_secret_file: bridge.login\n      allow: [\"@*:localhost\"]\n"});
  }

  // The SDK run as a bridge: `how` is login or bridge_token. Its one line of JSON.
  std::string run_sdk(const std::string& how) {
    const auto r =
        run_child(dir, {node[0], node[1], how},
                  {"MXP_GATEWAY_URL=http://127.0.0.1:" + std::to_string(port),
                   std::string{"MXP_USER_ID="} + user, std::string{"MXP_ROOM_ID="} + room,
                   std::string{"MXP_LOGIN_SECRET="} + login_secret,
                   std::string{"MXP_BRIDGE_TOKEN="} + bridge_token});
    EXPECT_EQ(r.exit_code, 0) << "stdout:\n" << r.out << "\nstderr:\n" << r.err;
    return r.out;
  }

  // The Authorization header of each request the homeserver got whose "METHOD TARGET" starts
  // with `prefix`.
  std::vector<std::string> authorizations_of(const std::string& prefix) const {
    const auto log = hs->request_log();
    const auto auth = hs->authorization_log();
    std::vector<std::string> found;
    for (std::size_t i = 0; i < log.size() && i < auth.size(); ++i)
      if (log[i].starts_with(prefix)) found.push_back(auth[i]);
    return found;
  }
};

TEST_P(interop_fixture, LoginBasedBridgeGetsAHandleAndUsesIt) {
  ASSERT_NO_FATAL_FAILURE(start_gateway(GetParam()));
  const auto out = run_sdk("login");
  EXPECT_EQ(json_string(out, "login_user_id"), user) << out;
  EXPECT_EQ(json_string(out, "handle_prefix"), "mxpg_") << "a handle, never a real token";
  EXPECT_EQ(json_string(out, "whoami_user_id"), user) << out;
  EXPECT_FALSE(json_string(out, "event_id").empty()) << out;
  EXPECT_TRUE(json_string(out, "content_uri").starts_with("mxc://localhost/")) << out;

  // At the homeserver: the send and the upload arrived as alice, never with the handle.
  const auto sends = authorizations_of("PUT /_matrix/client/v3/rooms/");
  const auto uploads = authorizations_of("POST /_matrix/media/v3/upload");
  ASSERT_EQ(sends.size(), 1u);
  ASSERT_EQ(uploads.size(), 1u);
  EXPECT_EQ(hs->last_upload().bytes, static_cast<std::uint64_t>(json_int(out, "uploaded_bytes")));
  for (const auto& a : {sends[0], uploads[0]}) {
    ASSERT_TRUE(a.starts_with("Bearer ")) << a;
    const auto token = a.substr(7);
    never_logged.insert(token);
    EXPECT_FALSE(token.starts_with("mxpg_"));
    if (GetParam() == "assert") {
      EXPECT_EQ(token, as_token);
    } else {
      EXPECT_EQ(hs->user_of_token(token), user) << "alice's pooled token";
    }
  }
  EXPECT_EQ(hs->successful_login_count(), GetParam() == "assert" ? 0 : 1);
}

TEST_P(interop_fixture, BridgeV2StyleBridgeTokenWithUserId) {
  ASSERT_NO_FATAL_FAILURE(start_gateway(GetParam()));
  const auto out = run_sdk("bridge_token");
  EXPECT_EQ(json_string(out, "whoami_user_id"), user) << out;
  EXPECT_FALSE(json_string(out, "event_id").empty()) << out;
  EXPECT_TRUE(json_string(out, "content_uri").starts_with("mxc://localhost/")) << out;

  const auto sends = authorizations_of("PUT /_matrix/client/v3/rooms/");
  ASSERT_EQ(sends.size(), 1u);
  const auto token = sends[0].substr(7);
  never_logged.insert(token);
  EXPECT_NE(token, bridge_token) << "the bridge token never reaches the homeserver";
  const auto log = hs->request_log();
  bool user_id_kept = false;
  for (const auto& line : log)
    if (line.starts_with("PUT /_matrix/client/v3/rooms/"))
      user_id_kept = line.find("user_id=") != std::string::npos;
  if (GetParam() == "assert") {
    EXPECT_EQ(token, as_token);
    EXPECT_TRUE(user_id_kept) << "appservice identity assertion keeps ?user_id=";
  } else {
    EXPECT_EQ(hs->user_of_token(token), user);
    EXPECT_FALSE(user_id_kept) << "session mode strips ?user_id=";
  }
}

INSTANTIATE_TEST_SUITE_P(GatewayModes, interop_fixture, ::testing::Values("session", "assert"));

}  // namespace
