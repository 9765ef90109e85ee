// End-to-end: `method: rest_backend`. The fake homeserver runs ma1uta's REST module against the
// real mxpuppetd's backend listener: logins with single-use nonces, the backend's refusals
// (replayed nonce, wrong user, garbage), refresh, revocation, a restart, and the deadlines.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"
#include "support/tcp_http.hpp"

using namespace mxp::test;
using namespace std::chrono_literals;
using mxp::client::unix_http_client;

namespace {

constexpr const char* check_path = "/_matrix-internal/identity/v1/check_credentials";
constexpr const char* refused = R"({"auth":{"success":false}})";

std::string password_of(const std::string& login_body) {
  simdjson::dom::parser p;
  std::string_view v;
  if (p.parse(login_body).get_object()["password"].get_string().get(v) != simdjson::SUCCESS)
    return {};
  return std::string{v};
}

std::string check_body(const std::string& user, const std::string& password) {
  return R"({"user":{"id":")" + user + R"(","password":")" + password + R"("}})";
}

struct rest_backend : e2e_fixture {
  std::uint16_t backend_port = free_loopback_port();

  void start_with(fake_homeserver_options o, const std::string& sections = "") {
    if (o.rest_backend_port == 0) o.rest_backend_port = backend_port;
    start_homeserver(std::move(o));
    write_config(
        {.homeservers = {{.url = hs->url(),
                          .login = "      method: rest_backend\n      backend_listen: "
                                   "\"127.0.0.1:" +
                                   std::to_string(backend_port) + "\"\n      nonce_lifetime: 30s\n",
                          .more = "    device_id: MXPREST\n    request_timeout: 5s\n"}},
         .sections = "store: {path: sessions.db}\n" + sections});
    daemon = spawn_daemon();
    ASSERT_TRUE(daemon->wait_ready()) << daemon->log();
  }

  tcp_http_response check(const std::string& body) {
    return tcp_request(backend_port, "POST", check_path, {{"Content-Type", "application/json"}},
                       body);
  }

  std::pair<int, std::string> whoami(const std::string& token) {
    auto r = tcp_request(hs->port(), "GET", "/_matrix/client/v3/account/whoami",
                         {{"Authorization", "Bearer " + token}});
    return {r.status, r.body};
  }

  std::string expect_working_token(const std::string& user) {
    auto r = get_token(user);
    EXPECT_EQ(r.status, 200) << r.body << "\n" << daemon->log();
    EXPECT_EQ(json_string(r.body, "method"), "rest_backend");
    const auto token = json_string(r.body, "access_token");
    const auto [status, body] = whoami(token);
    EXPECT_EQ(status, 200) << body;
    EXPECT_EQ(json_string(body, "user_id"), user);
    return token;
  }
};

TEST_F(rest_backend, LogsInWithASingleUseNonceThatIsRefusedWhenReplayed) {
  ASSERT_NO_FATAL_FAILURE(start_with(homeserver_options()));
  EXPECT_FALSE(hs->is_registered("@alice:localhost"));
  expect_working_token("@alice:localhost");
  EXPECT_TRUE(hs->is_registered("@alice:localhost")) << "the module registered the new user";
  EXPECT_EQ(hs->rest_backend_call_count(), 1);
  EXPECT_EQ(hs->login_count(), 1);
  const auto login = hs->last_login_body();
  EXPECT_NE(login.find(R"("type":"m.login.password")"), std::string::npos) << login;
  EXPECT_NE(login.find(R"("identifier":{"type":"m.id.user","user":"@alice:localhost"})"),
            std::string::npos)
      << login;
  EXPECT_NE(login.find(R"("device_id":"MXPREST")"), std::string::npos) << login;
  const auto nonce = password_of(login);
  never_logged.insert(nonce);
  EXPECT_EQ(nonce.size(), 32u);  // 192 random bits

  // The nonce was consumed by the homeserver's check: replaying it gets nothing.
  auto r = check(check_body("@alice:localhost", nonce));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, refused);
  EXPECT_EQ(get_token("@alice:localhost").status, 200);  // cached: no second login
  EXPECT_EQ(hs->rest_backend_call_count(), 1);
}

TEST_F(rest_backend, GarbageAndOrdinaryPasswordsAreRefusedAtOnceAndNeverLogged) {
  ASSERT_NO_FATAL_FAILURE(start_with(homeserver_options()));
  const std::string real_password = "correct-horse-battery-staple-of-a-real-user";
  never_logged.insert(real_password);
  const std::vector<std::string> bodies = {
      "",
      "not json{",
      "[]",
      "{}",
      R"({"user":{}})",
      R"({"user":{"id":"@alice:localhost"}})",
      R"({"user":{"id":5,"password":"x"}})",
      R"({"user":{"id":"@alice:localhost","password":7}})",
      R"({"user":"@alice:localhost","password":"x"})",
      check_body("@alice:localhost", real_password),
      check_body("@alice:localhost", std::string(32, 'A')),
      std::string(10000, '{'),  // over the body limit
  };
  for (const auto& b : bodies) {
    auto r = check(b);
    EXPECT_EQ(r.status, 200) << b.substr(0, 60);
    EXPECT_EQ(r.body, refused) << b.substr(0, 60);
  }
  EXPECT_EQ(tcp_request(backend_port, "GET", check_path).status, 405);
  EXPECT_EQ(tcp_request(backend_port, "POST", "/other", {}, "{}").status, 404);
  // Synapse sends a real user's password here too: it never shows in the log.
  auto raw = tcp_exchange(backend_port, "POST " + std::string{check_path} +
                                            " HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_NE(raw.find(refused), std::string::npos) << raw;
  expect_working_token("@bob:localhost");  // the daemon is none the worse
}

TEST_F(rest_backend, ANonceForAnotherUserIsRefusedAndTheAmbiguous403BacksOff) {
  auto o = homeserver_options();
  o.rest_backend_send_user = "@mallory:localhost";  // the module asks about someone else
  ASSERT_NO_FATAL_FAILURE(start_with(o));
  auto r = get_token("@alice:localhost");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(json_int(r.body, "upstream_status"), 403) << r.body;
  EXPECT_FALSE(hs->is_registered("@mallory:localhost"));
  EXPECT_GE(hs->login_count(), 2) << "403 is retried with backoff, as an unreachable homeserver";
  EXPECT_LE(hs->login_count(), 3);
  EXPECT_NE(daemon->log().find("403 is ambiguous"), std::string::npos) << daemon->log();
  // A case variant would get a dead token: refused before any request.
  r = get_token("@Alice:localhost");
  EXPECT_EQ(r.status, 400) << r.body;
}

TEST_F(rest_backend, ABackendTheHomeserverCannotReachIsTheSameAmbiguous403) {
  auto o = homeserver_options();
  o.rest_backend_port = free_loopback_port();  // the module's endpoint is wrong
  ASSERT_NO_FATAL_FAILURE(start_with(o));
  auto r = get_token("@alice:localhost");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(json_int(r.body, "upstream_status"), 403) << r.body;
  EXPECT_NE(daemon->log().find("could not reach the backend at 127.0.0.1:" +
                               std::to_string(backend_port)),
            std::string::npos)
      << daemon->log();
}

TEST_F(rest_backend, RefreshNeedsNoBackendCall) {
  auto o = homeserver_options();
  o.refresh_access_lifetime_ms = 4000;
  ASSERT_NO_FATAL_FAILURE(
      start_with(o, "sessions:\n  refresh_tokens: true\n  refresh_margin: 1s\n"));
  const auto first = expect_working_token("@carol:localhost");
  std::this_thread::sleep_for(500ms);  // under 3.8 s of validity left now
  unix_http_client c{socket};
  auto r = c.request("GET", token_path("@carol:localhost") + "?min_valid_ms=3800");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto second = token_of(r.body);
  never_logged.insert(second);
  EXPECT_NE(second, first);
  EXPECT_EQ(whoami(second).first, 200);
  EXPECT_GE(hs->refresh_count(), 1);
  EXPECT_EQ(hs->login_count(), 1);
  EXPECT_EQ(hs->rest_backend_call_count(), 1);
}

TEST_F(rest_backend, ARestartAddsNoLoginAndRevocationKillsTheToken) {
  ASSERT_NO_FATAL_FAILURE(start_with(homeserver_options()));
  const auto token = expect_working_token("@dave:localhost");
  ASSERT_EQ(daemon->stop(SIGTERM), 0);
  daemon = start_daemon("daemon2.log");
  auto r = get_token("@dave:localhost");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(token_of(r.body), token) << "the token came back from the store";
  EXPECT_EQ(hs->login_count(), 1);
  EXPECT_EQ(hs->rest_backend_call_count(), 1);

  unix_http_client c{socket};
  r = c.request("DELETE", "/v1/users/@dave:localhost/session");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"revoked\":true"), std::string::npos) << r.body;
  EXPECT_EQ(whoami(token).first, 401);
  const auto again = expect_working_token("@dave:localhost");
  EXPECT_NE(again, token);
  EXPECT_EQ(hs->rest_backend_call_count(), 2);
}

// The module's connections get 5 s to send their request: a silent one is closed.
TEST_F(rest_backend, ASilentConnectionIsClosedByTheReadDeadline) {
  ASSERT_NO_FATAL_FAILURE(start_with(homeserver_options()));
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(backend_port);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  timeval tv{15, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string partial = "POST /_matrix-internal/identity/v1/check_credentials HTTP/1.1\r\n";
  ASSERT_EQ(::write(fd, partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
  const auto began = std::chrono::steady_clock::now();
  char buf[64];
  const auto n = ::read(fd, buf, sizeof buf);
  const auto took = std::chrono::steady_clock::now() - began;
  ::close(fd);
  EXPECT_EQ(n, 0) << "closed without an answer";
  EXPECT_GT(took, 4s);
  EXPECT_LT(took, 8s);
}

}  // namespace

// Once both landed: the gateway's session mode hands bridges tokens this method minted.
TEST_F(rest_backend, TheGatewayInSessionModeForwardsTheTokenANonceLoginMinted) {
  const auto gateway_port = free_loopback_port();
  const std::string bridge_token = "rest-backend-gateway-bridge-token-5e1f";
  dir.write("bridge.token", bridge_token + "\n", 0600);
  never_logged.insert(bridge_token);
  ASSERT_NO_FATAL_FAILURE(start_with(
      homeserver_options(), "gateway:\n  listen: [\"127.0.0.1:" + std::to_string(gateway_port) +
                                "\"]\n  bridges:\n    - {name: b, token_file: bridge.token, allow: "
                                "[\"@*:localhost\"]}\n"));
  const auto r = tcp_request(gateway_port, "GET",
                             "/_matrix/client/v3/account/whoami?user_id=%40nora%3Alocalhost",
                             {{"Authorization", "Bearer " + bridge_token}});
  EXPECT_EQ(r.status, 200) << r.body << "\n" << daemon->log();
  EXPECT_EQ(json_string(r.body, "user_id"), "@nora:localhost");
  const auto header = hs->last_authorization_header();
  ASSERT_TRUE(header.starts_with("Bearer ")) << header;
  const auto forwarded = header.substr(7);
  never_logged.insert(forwarded);
  EXPECT_EQ(hs->user_of_token(forwarded), "@nora:localhost") << "nora's pooled token";
  EXPECT_EQ(hs->successful_login_count(), 1) << "one m.login.password with a nonce";
  EXPECT_EQ(token_of(get_token("@nora:localhost").body), forwarded)
      << "the same session the socket API hands out";
}
