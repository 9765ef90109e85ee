// End-to-end: `method: mas`. The real mxpuppetd mints personal sessions with the admin API of
// the fake MAS (served by the fake homeserver, which accepts the mpt_ tokens it issued):
// a working token, the cached admin token, revocation and invalidation, a restart, the device
// scope and the error cases (unknown user, deactivated user, bad client credentials, MAS down).
#include <gtest/gtest.h>
#include <simdjson.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"
#include "support/tcp_http.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;
using namespace std::chrono_literals;

namespace {

constexpr const char* client_id = "01JMXPUPPETDCLIENT";
constexpr const char* client_secret = "mas-client-secret-for-the-e2e-test";

struct mas : e2e_fixture {
  void start_with(const std::string& more_login = "", const std::string& more = "",
                  std::string mas_url = "", const std::string& secret = client_secret,
                  const std::string& sessions = "", const std::string& lifetime = "1h") {
    auto o = homeserver_options();
    o.mas_client_id = client_id;
    o.mas_client_secret = client_secret;
    start_homeserver(o);
    never_logged.insert(client_secret);
    std::ofstream{dir.file("mas.secret")} << secret << "\n";
    if (mas_url.empty()) mas_url = hs->url();
    write_config({.homeservers = {{.url = hs->url(),
                                   .login = "      method: mas\n      mas_url: " + mas_url +
                                            "\n      client_id: " + client_id +
                                            "\n      client_secret_file: mas.secret\n"
                                            "      token_lifetime: " +
                                            lifetime + "\n" + more_login,
                                   .more = "    request_timeout: 5s\n" + more}},
                  .sections = "store: {path: sessions.db}\n" + sessions});
    daemon = spawn_daemon();
    ASSERT_TRUE(daemon->wait_ready()) << daemon->log();
  }

  std::pair<int, std::string> whoami(const std::string& token) {
    auto r = tcp_request(hs->port(), "GET", "/_matrix/client/v3/account/whoami",
                         {{"Authorization", "Bearer " + token}});
    return {r.status, r.body};
  }

  std::string expect_working_token(const std::string& user) {
    auto r = get_token(user);
    EXPECT_EQ(r.status, 200) << r.body << "\n" << daemon->log();
    EXPECT_EQ(json_string(r.body, "method"), "mas");
    const auto token = json_string(r.body, "access_token");
    EXPECT_TRUE(token.starts_with("mpt_")) << r.body;
    const auto [status, body] = whoami(token);
    EXPECT_EQ(status, 200) << body;
    EXPECT_EQ(json_string(body, "user_id"), user);
    return token;
  }
};

TEST_F(mas, APersonalSessionPerUserWithOneCachedAdminToken) {
  ASSERT_NO_FATAL_FAILURE(start_with());
  hs->register_users({"@erin:localhost", "@finn:localhost"});
  expect_working_token("@erin:localhost");
  const auto body = hs->mas_last_session_body();
  EXPECT_NE(body.find(R"("actor_user_id":"01FAKEUSERerin")"), std::string::npos) << body;
  EXPECT_NE(body.find(R"("human_name":"mxpuppetd double puppet of @erin:localhost")"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find(R"("scope":"urn:matrix:client:api:*")"), std::string::npos) << body;
  EXPECT_NE(body.find(R"("expires_in":3600)"), std::string::npos) << body;
  expect_working_token("@finn:localhost");
  EXPECT_EQ(hs->mas_token_count(), 1) << "the admin token is cached";
  EXPECT_EQ(hs->mas_personal_session_count(), 2);
  EXPECT_EQ(hs->login_count(), 0) << "no /login under MAS";
}

TEST_F(mas, RevocationAndInvalidationRevokeThePersonalSession) {
  ASSERT_NO_FATAL_FAILURE(start_with());
  hs->register_user("@gail:localhost");
  const auto first = expect_working_token("@gail:localhost");
  unix_http_client c{socket};
  auto r = c.request("POST", "/v1/users/@gail:localhost/invalidate",
                     R"({"access_token":")" + first + "\"}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("true"), std::string::npos) << r.body;
  const auto second = expect_working_token("@gail:localhost");
  EXPECT_NE(second, first);
  EXPECT_EQ(whoami(first).first, 401) << "revoked (at the fake at once; Synapse caches ~2 min)";
  EXPECT_EQ(hs->mas_revocation_count(), 1);

  r = c.request("DELETE", "/v1/users/@gail:localhost/session");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"revoked\":true"), std::string::npos) << r.body;
  EXPECT_EQ(whoami(second).first, 401);
  EXPECT_EQ(hs->mas_revocation_count(), 2);
}

// No refresh token exists: a new personal session replaces the old one before it expires, and
// the old one keeps working for renew_grace (a bridge may have fetched it a moment ago).
TEST_F(mas, RenewalWithoutAGapTheOldTokenLivesOutItsGrace) {
  ASSERT_NO_FATAL_FAILURE(start_with("      renew_grace: 3s\n", "", "", client_secret,
                                     "sessions:\n  refresh_margin: 2s\n", "10s"));
  hs->register_user("@lena:localhost");
  const auto first = expect_working_token("@lena:localhost");
  std::this_thread::sleep_for(8500ms);  // 1.5 s left: under the refresh margin
  const auto second = expect_working_token("@lena:localhost");
  EXPECT_NE(second, first);
  EXPECT_EQ(hs->mas_personal_session_count(), 2);
  EXPECT_EQ(whoami(first).first, 200) << "the replaced token works during the grace";
  EXPECT_EQ(hs->mas_revocation_count(), 0);
  std::this_thread::sleep_for(3500ms);
  EXPECT_EQ(whoami(first).first, 401) << "revoked after the grace";
  EXPECT_EQ(hs->mas_revocation_count(), 1);
  EXPECT_EQ(whoami(second).first, 200);
}

TEST_F(mas, ARestartAddsNoPersonalSession) {
  ASSERT_NO_FATAL_FAILURE(start_with());
  hs->register_user("@hank:localhost");
  const auto token = expect_working_token("@hank:localhost");
  ASSERT_EQ(daemon->stop(SIGTERM), 0);
  daemon = start_daemon("daemon2.log");
  auto r = get_token("@hank:localhost");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(token_of(r.body), token);
  EXPECT_EQ(hs->mas_personal_session_count(), 1);
}

// The personal session id is persisted with the token: a later run can still revoke it.
TEST_F(mas, ARevocationAfterARestartRevokesThePersonalSession) {
  ASSERT_NO_FATAL_FAILURE(start_with());
  hs->register_user("@olga:localhost");
  const auto token = expect_working_token("@olga:localhost");
  ASSERT_EQ(daemon->stop(SIGTERM), 0);
  EXPECT_EQ(hs->mas_revocation_count(), 0);
  daemon = start_daemon("daemon2.log");
  unix_http_client c{socket};
  auto r = c.request("DELETE", "/v1/users/@olga:localhost/session");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"revoked\":true"), std::string::npos) << r.body << daemon->log();
  EXPECT_EQ(hs->mas_revocation_count(), 1);
  EXPECT_EQ(whoami(token).first, 401);
  EXPECT_EQ(daemon->log().find("cannot be revoked"), std::string::npos) << daemon->log();
}

TEST_F(mas, ARenewalAfterARestartRevokesTheOldSessionAfterTheGrace) {
  ASSERT_NO_FATAL_FAILURE(start_with("      renew_grace: 3s\n", "", "", client_secret,
                                     "sessions:\n  refresh_margin: 2s\n", "10s"));
  hs->register_user("@pete:localhost");
  const auto began = std::chrono::steady_clock::now();
  const auto first = expect_working_token("@pete:localhost");
  ASSERT_EQ(daemon->stop(SIGTERM), 0);
  daemon = start_daemon("daemon2.log");
  std::this_thread::sleep_until(began + 8500ms);  // 1.5 s left: under the refresh margin
  const auto second = expect_working_token("@pete:localhost");
  EXPECT_NE(second, first);
  EXPECT_EQ(whoami(first).first, 200) << "the replaced token works during the grace";
  EXPECT_EQ(hs->mas_revocation_count(), 0);
  std::this_thread::sleep_for(3500ms);
  EXPECT_EQ(hs->mas_revocation_count(), 1) << daemon->log();
  EXPECT_EQ(whoami(first).first, 401) << "revoked after the grace";
  EXPECT_EQ(whoami(second).first, 200);
}

// A revocation held back by renew_grace when SIGTERM comes is made, and awaited, before the
// daemon exits.
TEST_F(mas, ARevocationPendingAtShutdownReachesMasBeforeTheDaemonExits) {
  ASSERT_NO_FATAL_FAILURE(start_with("      renew_grace: 60s\n", "", "", client_secret,
                                     "sessions:\n  refresh_margin: 2s\n", "10s"));
  hs->register_user("@rita:localhost");
  const auto first = expect_working_token("@rita:localhost");
  std::this_thread::sleep_for(8500ms);
  const auto second = expect_working_token("@rita:localhost");
  EXPECT_NE(second, first);
  EXPECT_EQ(hs->mas_revocation_count(), 0);
  ASSERT_EQ(daemon->stop(SIGTERM), 0);
  EXPECT_EQ(hs->mas_revocation_count(), 1) << daemon->log();
  EXPECT_EQ(whoami(first).first, 401);
  EXPECT_EQ(whoami(second).first, 200) << "not revoked: revoke_on_shutdown is off";
}

TEST_F(mas, TheDeviceScopeNamesTheConfiguredDevice) {
  ASSERT_NO_FATAL_FAILURE(
      start_with("      device_scope: true\n", "    device_id: MXPUPPETD-E2E\n"));
  hs->register_user("@ivy:localhost");
  auto r = get_token("@ivy:localhost");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_string(r.body, "device_id"), "MXPUPPETD-E2E");
  const auto [status, body] = whoami(token_of(r.body));
  EXPECT_EQ(status, 200);
  EXPECT_EQ(json_string(body, "device_id"), "MXPUPPETD-E2E");
  EXPECT_NE(hs->mas_last_session_body().find(
                R"("scope":"urn:matrix:client:api:* urn:matrix:client:device:MXPUPPETD-E2E")"),
            std::string::npos)
      << hs->mas_last_session_body();
}

TEST_F(mas, AnUnknownUserIs404AndADeactivatedOne410WithoutRetries) {
  ASSERT_NO_FATAL_FAILURE(start_with());
  auto r = get_token("@nobody:localhost");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(json_int(r.body, "upstream_status"), 404) << r.body;
  hs->register_user("@gone:localhost");
  hs->mas_deactivate_user("@gone:localhost");
  r = get_token("@gone:localhost");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(json_int(r.body, "upstream_status"), 410) << r.body;
  EXPECT_EQ(hs->mas_personal_session_count(), 0);
  EXPECT_NE(daemon->log().find("User is deactivated"), std::string::npos) << daemon->log();
}

TEST_F(mas, BadClientCredentialsAreAConfigurationErrorInTheLog) {
  ASSERT_NO_FATAL_FAILURE(start_with("", "", "", "not-the-secret"));
  never_logged.insert("not-the-secret");
  hs->register_user("@jan:localhost");
  auto r = get_token("@jan:localhost");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(json_int(r.body, "upstream_status"), 401) << r.body;
  EXPECT_NE(daemon->log().find("MAS refused the client credentials (invalid_client)"),
            std::string::npos)
      << daemon->log();
  unix_http_client c{socket};
  const auto status = c.request("GET", "/v1/status");
  ASSERT_EQ(status.status, 200) << status.body;
  EXPECT_NE(status.body.find(R"("configuration_error":"invalid_client: MAS refused the client)"),
            std::string::npos)
      << status.body;
}

TEST_F(mas, MasDownIs503) {
  ASSERT_NO_FATAL_FAILURE(
      start_with("", "", "http://127.0.0.1:" + std::to_string(free_loopback_port())));
  hs->register_user("@kim:localhost");
  auto r = get_token("@kim:localhost");
  EXPECT_EQ(r.status, 503) << r.body;
}

}  // namespace

// Once both landed: the gateway's session mode hands bridges the personal sessions MAS minted.
TEST_F(mas, TheGatewayInSessionModeForwardsThePersonalSessionsToken) {
  const auto gateway_port = free_loopback_port();
  const std::string bridge_token = "mas-gateway-bridge-token-8a2c61";
  dir.write("bridge.token", bridge_token + "\n", 0600);
  never_logged.insert(bridge_token);
  ASSERT_NO_FATAL_FAILURE(
      start_with("", "", "", client_secret,
                 "gateway:\n  listen: [\"127.0.0.1:" + std::to_string(gateway_port) +
                     "\"]\n  bridges:\n    - {name: b, token_file: bridge.token, allow: "
                     "[\"@*:localhost\"]}\n"));
  hs->register_user("@omar:localhost");
  const auto r = tcp_request(gateway_port, "GET",
                             "/_matrix/client/v3/account/whoami?user_id=%40omar%3Alocalhost",
                             {{"Authorization", "Bearer " + bridge_token}});
  EXPECT_EQ(r.status, 200) << r.body << "\n" << daemon->log();
  EXPECT_EQ(json_string(r.body, "user_id"), "@omar:localhost");
  const auto header = hs->last_authorization_header();
  ASSERT_TRUE(header.starts_with("Bearer mpt_")) << "a personal session's token";
  never_logged.insert(header.substr(7));
  EXPECT_EQ(hs->mas_personal_session_count(), 1);
  EXPECT_EQ(hs->login_count(), 0) << "no /login under MAS";
}
