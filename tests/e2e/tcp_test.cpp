// End-to-end: the optional TCP listener (listen.tcp). The test process plays a bridge in a
// container: over loopback TCP it has no SO_PEERCRED, so every request carries the API key of
// a `clients:` entry, and that entry's globs decide. The Unix socket keeps working beside it.
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <simdjson.h>
#include <unistd.h>

#include <cstdio>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"
#include "support/tcp_http.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;

namespace {

constexpr const char* secret = "tcp-e2e-shared-secret";
constexpr const char* bridge_key = "bridge-key-3f9a1c0d5e7b2a4c6e8f0a1b";  // in a file
constexpr const char* narrow_key =
    "narrow-key-8d7c6b5a4f3e2d1c0b9a8f7e";  // only its SHA-256 in the config

std::string sha256_hex(std::string_view s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  ::SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  std::string out;
  char hex[3];
  for (unsigned char b : d) {
    std::snprintf(hex, sizeof hex, "%02x", b);
    out += hex;
  }
  return out;
}

using headers = std::vector<std::pair<std::string, std::string>>;
headers bearer(std::string_view key) {
  return {{"Authorization", "Bearer " + std::string{key}}};
}

struct tcp_fixture : e2e_fixture {
  tcp_fixture() : e2e_fixture{secret} {}
  std::uint16_t port = free_loopback_port();

  void SetUp() override {
    e2e_fixture::SetUp();
    // Every user the tests name exists: only keys and globs decide who gets a token.
    hs->register_users({"@bridged-a:localhost", "@bridged-b:localhost", "@narrow_1:localhost",
                        "@local-x:localhost", "@local-u:localhost"});
    dir.write("bridge.key", std::string{bridge_key} + "\n");
    start({.listen = "  tcp: 127.0.0.1:" + std::to_string(port) + "\n",
           .sections = "clients:\n"
                       "  - name: container-bridge\n    api_key_file: bridge.key\n    allow: "
                       "[\"@bridged*:localhost\"]\n"
                       "  - name: narrow-bridge\n    api_key_sha256: " +
                       sha256_hex(narrow_key) +
                       "\n    allow: [\"@narrow_*:localhost\"]\n"
                       "  - name: local-bridge\n    uid: " +
                       std::to_string(::getuid()) + "\n    allow: [\"@local*:localhost\"]\n"});
  }
};

TEST_F(tcp_fixture, NoKeyOrAWrongKeyGets401AndNoLogin) {
  auto r = tcp_request(port, "GET", "/v1/users/@bridged-a:localhost/token");
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(json_string(r.body, "errcode"), "M_MISSING_TOKEN") << r.body;
  // No anonymous access at all over TCP, not even to /healthz.
  EXPECT_EQ(tcp_request(port, "GET", "/healthz").status, 401);
  r = tcp_request(port, "GET", "/v1/users/@bridged-a:localhost/token",
                  {{"Authorization", "Basic YTpi"}});
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(json_string(r.body, "errcode"), "M_MISSING_TOKEN") << r.body;
  r = tcp_request(port, "GET", "/v1/users/@bridged-a:localhost/token",
                  {{"Authorization", "Bearer "}});
  EXPECT_EQ(json_string(r.body, "errcode"), "M_MISSING_TOKEN") << r.body;

  r = tcp_request(port, "GET", "/v1/users/@bridged-a:localhost/token", bearer("not-the-key"));
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(json_string(r.body, "errcode"), "M_UNKNOWN_TOKEN") << r.body;
  // A prefix of the right key is a wrong key; so is the key's hash.
  EXPECT_EQ(tcp_request(port, "GET", "/healthz", bearer(std::string_view{bridge_key}.substr(0, 20)))
                .status,
            401);
  EXPECT_EQ(tcp_request(port, "GET", "/healthz", bearer(sha256_hex(narrow_key))).status, 401);
  // Slow-path routes refuse the same way.
  EXPECT_EQ(tcp_request(port, "GET", "/v1/status", bearer("not-the-key")).status, 401);
  EXPECT_EQ(tcp_request(port, "DELETE", "/v1/users/@bridged-a:localhost/session").status, 401);
  EXPECT_EQ(hs->login_count(), 0);

  const auto log = daemon->log();
  EXPECT_NE(
      log.find("access: refused GET /v1/users/@bridged-a:localhost/token to TCP peer 127.0.0.1:"),
      std::string::npos)
      << log;
  EXPECT_NE(log.find(": no Authorization header"), std::string::npos) << log;
  EXPECT_NE(log.find(": unknown API key"), std::string::npos) << log;
  EXPECT_EQ(log.find("not-the-key"), std::string::npos) << "a presented key was logged";
}

TEST_F(tcp_fixture, RightKeyGetsATokenThatWorksAtTheHomeserver) {
  auto r = tcp_request(port, "GET", "/v1/users/@bridged-a:localhost/token", bearer(bridge_key));
  ASSERT_EQ(r.status, 200) << r.body;
  const auto token = json_string(r.body, "access_token");
  EXPECT_TRUE(hs->token_is_live(token));
  EXPECT_EQ(hs->user_of_token(token), "@bridged-a:localhost");
  EXPECT_EQ(hs->login_count(), 1);
  // Cached (fast path), percent-encoded (slow path), lower-case scheme: the same token, no new
  // login.
  r = tcp_request(port, "GET", "/v1/users/@bridged-a:localhost/token", bearer(bridge_key));
  EXPECT_EQ(json_string(r.body, "access_token"), token);
  r = tcp_request(port, "GET", "/v1/users/%40bridged-a%3Alocalhost/token",
                  {{"Authorization", std::string{"bearer "} + bridge_key}});
  EXPECT_EQ(json_string(r.body, "access_token"), token) << r.body;
  EXPECT_EQ(hs->login_count(), 1);

  // The key in the config as a SHA-256 works as well, for its own users.
  r = tcp_request(port, "GET", "/v1/users/@narrow_1:localhost/token", bearer(narrow_key));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(hs->token_is_live(json_string(r.body, "access_token")));

  // A client known by its key reaches healthz, status and sessions; sessions lists only its users.
  EXPECT_EQ(tcp_request(port, "GET", "/healthz", bearer(bridge_key)).status, 200);
  EXPECT_EQ(tcp_request(port, "GET", "/v1/status", bearer(bridge_key)).status, 200);
  r = tcp_request(port, "GET", "/v1/sessions", bearer(bridge_key));
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("@bridged-a:localhost"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("@narrow_1:localhost"), std::string::npos) << r.body;

  const auto log = daemon->log();
  EXPECT_NE(log.find("access: allowed @bridged-a:localhost to TCP peer 127.0.0.1:"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("(client container-bridge)"), std::string::npos) << log;
  EXPECT_EQ(log.find(bridge_key), std::string::npos) << "the API key was logged";
  EXPECT_EQ(log.find(narrow_key), std::string::npos) << "the API key was logged";
  EXPECT_EQ(log.find(token), std::string::npos) << "the token was logged";
}

TEST_F(tcp_fixture, KeyWhoseGlobsDoNotCoverTheUserGets403AndNoLogin) {
  auto r = tcp_request(port, "GET", "/v1/users/@bridged-a:localhost/token", bearer(narrow_key));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(json_string(r.body, "errcode"), "M_FORBIDDEN") << r.body;
  EXPECT_EQ(tcp_request(port, "GET", "/v1/users/%40bridged-a%3Alocalhost/token", bearer(narrow_key))
                .status,
            403);
  EXPECT_EQ(
      tcp_request(port, "DELETE", "/v1/users/@bridged-a:localhost/session", bearer(narrow_key))
          .status,
      403);
  // The Unix peer's entry (uid) gives a TCP client nothing.
  EXPECT_EQ(
      tcp_request(port, "GET", "/v1/users/@local-x:localhost/token", bearer(bridge_key)).status,
      403);
  EXPECT_EQ(hs->login_count(), 0) << "a denied request caused a login";
  const auto log = daemon->log();
  EXPECT_NE(log.find("access: denied @bridged-a:localhost to TCP peer 127.0.0.1:"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("(client narrow-bridge: no allow glob matches)"), std::string::npos) << log;
}

TEST_F(tcp_fixture, EveryRequestOnAConnectionNeedsTheKey) {
  const std::string with_key =
      std::string{"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "} + bridge_key +
      "\r\n\r\n";
  const std::string without =
      "GET /v1/users/@bridged-b:localhost/token HTTP/1.1\r\nHost: x\r\n\r\n";
  const auto answer = tcp_exchange(port, with_key + without + with_key);
  EXPECT_EQ(http_statuses(answer), (std::vector<int>{200, 401, 200})) << answer;
  // Two Authorization headers: refused as malformed rather than guessing which one counts.
  const auto twice =
      tcp_exchange(port, std::string{"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "} +
                             bridge_key + "\r\nAuthorization: Bearer x\r\n\r\n");
  EXPECT_EQ(http_statuses(twice), (std::vector<int>{400})) << twice;
  EXPECT_EQ(hs->login_count(), 0);
}

TEST_F(tcp_fixture, UnixSocketStillWorksAndIgnoresKeys) {
  unix_http_client c{socket};
  auto r = c.request("GET", "/v1/users/@local-u:localhost/token");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(hs->token_is_live(json_string(r.body, "access_token")));
  // Unix peers are matched by uid, never by key entries: this user is only the TCP clients'.
  EXPECT_EQ(c.request("GET", "/v1/users/@bridged-a:localhost/token").status, 403);
  EXPECT_EQ(c.request("GET", "/healthz").status, 200);
  EXPECT_EQ(hs->login_count(), 1);
}

}  // namespace
