// End-to-end: the built mxpuppetd, started with a temp config, talking to an
// in-process fake homeserver, driven over its Unix socket as a bridge would.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>

#include <csignal>
#include <fstream>
#include <set>
#include <thread>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"
#include "support/tcp_http.hpp"
#include "support/test_tls.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;
using namespace std::chrono_literals;

namespace {

constexpr const char* secret = "e2e-shared-secret-value";

struct daemon_fixture : e2e_fixture {
  daemon_fixture() : e2e_fixture{secret} {
    // Checked against the log at the end, with every token handed out.
    never_logged = {secret, fake_shared_secret_token(secret, "@alice:localhost")};
  }

  config_pieces config(std::vector<homeserver_entry> homeservers) {
    return {.listen = "  socket_mode: \"0640\"\n  request_timeout: 5s\n",
            .homeservers = std::move(homeservers)};
  }
  homeserver_entry default_homeserver(const std::string& url, const std::string& more = "") {
    return {.url = url,
            .login = std::string{shared_secret_login} + "      login_type: auto\n",
            .more =
                "    device_id: MXPTEST\n    device_display_name: \"e2e puppet\"\n"
                "    request_timeout: 2s\n" +
                more};
  }
  void start_default(const std::string& more = "") {
    start(config({default_homeserver(hs->url(), more)}));
  }
};

TEST_F(daemon_fixture, BridgeGetsAWorkingTokenLoggedInLazily) {
  hs->register_user("@alice:localhost");
  start_default();
  EXPECT_EQ(hs->login_count(), 0);  // lazy: nothing before the first request
  unix_http_client c{socket};
  auto r = get_token(c, "@alice:localhost");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto token = json_string(r.body, "access_token");
  EXPECT_EQ(hs->user_of_token(token), "@alice:localhost");
  EXPECT_EQ(json_string(r.body, "user_id"), "@alice:localhost");
  EXPECT_EQ(json_string(r.body, "device_id"), "MXPTEST");
  EXPECT_EQ(json_string(r.body, "method"), "shared_secret");
  EXPECT_EQ(json_string(r.body, "homeserver_url"), hs->url());
  EXPECT_EQ(hs->device_display_name("@alice:localhost", "MXPTEST"), "e2e puppet");
  // The wire format: devture type (auto prefers it), full user ID, HMAC token.
  const auto body = hs->last_login_body();
  EXPECT_NE(body.find("com.devture.shared_secret_auth"), std::string::npos);
  EXPECT_NE(body.find(R"("user":"@alice:localhost")"), std::string::npos);
  EXPECT_NE(body.find(fake_shared_secret_token(secret, "@alice:localhost")), std::string::npos);
  // Cached afterwards: same token, no new login.
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(json_string(get_token(c, "@alice:localhost").body, "access_token"), token);
  EXPECT_EQ(hs->login_count(), 1);
  // Percent-encoded user IDs are decoded.
  auto encoded = c.request("GET", "/v1/users/%40alice%3Alocalhost/token");
  EXPECT_EQ(json_string(encoded.body, "access_token"), token);
}

TEST_F(daemon_fixture, HundredConcurrentRequestsForOneUserCostOneLogin) {
  hs->register_user("@bob:localhost");
  hs->set_latency(200ms);
  start_default();
  std::vector<std::thread> threads;
  std::vector<std::string> tokens(100);
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&, i] {
      unix_http_client c{socket};
      auto r = c.request("GET", "/v1/users/@bob:localhost/token");
      if (r.status == 200) tokens[i] = json_string(r.body, "access_token");
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(hs->login_count(), 1);
  EXPECT_EQ(std::set<std::string>(tokens.begin(), tokens.end()).size(), 1u);
  EXPECT_FALSE(tokens[0].empty());
  EXPECT_TRUE(hs->token_is_live(tokens[0]));
  never_logged.insert(tokens[0]);
}

TEST_F(daemon_fixture, LoginsInFlightPerHomeserverAreCapped) {
  for (int i = 0; i < 12; ++i) hs->register_user("@user" + std::to_string(i) + ":localhost");
  hs->set_latency(100ms);
  start_default("    max_concurrent_logins: 2\n");
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 12; ++i) {
    threads.emplace_back([&, i] {
      unix_http_client c{socket};
      if (c.request("GET", "/v1/users/@user" + std::to_string(i) + ":localhost/token").status ==
          200)
        ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 12);
  EXPECT_EQ(hs->successful_login_count(), 12);
  EXPECT_LE(hs->max_concurrent_logins_seen(), 2);
}

TEST_F(daemon_fixture, InvalidatingALiveTokenKillsItAndYieldsANewWorkingOne) {
  hs->register_user("@carol:localhost");
  start_default();
  unix_http_client c{socket};
  const auto old_token = json_string(get_token(c, "@carol:localhost").body, "access_token");
  ASSERT_TRUE(hs->token_is_live(old_token));
  auto stale = c.request("POST", "/v1/users/@carol:localhost/invalidate",
                         R"({"access_token":"syt_not_current"})");
  EXPECT_EQ(stale.status, 200);
  EXPECT_EQ(stale.body, R"({"invalidated":false})");
  auto r = c.request("POST", "/v1/users/@carol:localhost/invalidate",
                     R"({"access_token":")" + old_token + "\"}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"invalidated":true})");
  EXPECT_FALSE(hs->token_is_live(old_token));  // dead at the homeserver already
  const auto new_token = json_string(get_token(c, "@carol:localhost").body, "access_token");
  EXPECT_NE(new_token, old_token);
  EXPECT_TRUE(hs->token_is_live(new_token));
  EXPECT_EQ(hs->device_count("@carol:localhost"), 1);  // the device was replaced, not added
  // Invalidating the old token again must not kill the new one.
  r = c.request("POST", "/v1/users/@carol:localhost/invalidate",
                R"({"access_token":")" + old_token + "\"}");
  EXPECT_EQ(r.body, R"({"invalidated":false})");
  EXPECT_TRUE(hs->token_is_live(new_token));
}

TEST_F(daemon_fixture, RevokeLogsOutAndSessionsNeverShowTokens) {
  hs->register_user("@dave:localhost");
  start_default();
  unix_http_client c{socket};
  const auto token = json_string(get_token(c, "@dave:localhost").body, "access_token");
  auto sessions = c.request("GET", "/v1/sessions");
  ASSERT_EQ(sessions.status, 200);
  EXPECT_NE(sessions.body.find(R"("user_id":"@dave:localhost")"), std::string::npos);
  EXPECT_NE(sessions.body.find(R"("state":"active")"), std::string::npos);
  EXPECT_EQ(sessions.body.find(token), std::string::npos);
  EXPECT_EQ(sessions.body.find("access_token"), std::string::npos);
  auto status = c.request("GET", "/v1/status");
  EXPECT_EQ(status.status, 200);
  EXPECT_NE(status.body.find(R"("login_type":"com.devture.shared_secret_auth")"),
            std::string::npos);
  EXPECT_EQ(status.body.find(token), std::string::npos);
  auto r = c.request("DELETE", "/v1/users/@dave:localhost/session");
  EXPECT_EQ(r.body, R"({"revoked":true})");
  EXPECT_FALSE(hs->token_is_live(token));
  EXPECT_EQ(hs->device_count("@dave:localhost"), 0);
  EXPECT_EQ(c.request("DELETE", "/v1/users/@dave:localhost/session").body, R"({"revoked":false})");
}

TEST_F(daemon_fixture, ErrorsAreAnsweredAsDesignSays) {
  // @ghost is never registered: the homeserver refuses its login like a wrong secret.
  hs->register_users({"@alice:localhost", "@garbage:localhost", "@shape:localhost",
                      "@limited:localhost", "@other:localhost"});
  start_default();
  unix_http_client c{socket};
  auto r = c.request("GET", "/v1/users/not-a-user/token");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json_string(r.body, "errcode"), "M_INVALID_PARAM");
  r = c.request("GET", "/v1/users/@alice:elsewhere.org/token");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json_string(r.body, "errcode"), "M_NOT_FOUND");
  r = c.request("GET", "/v1/users/@ghost:localhost/token");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(json_string(r.body, "errcode"), "MXP_UPSTREAM");
  EXPECT_EQ(json_int(r.body, "upstream_status"), 403);
  EXPECT_EQ(json_string(r.body, "upstream_errcode"), "M_FORBIDDEN");
  EXPECT_EQ(r.body.find("Invalid username"), std::string::npos);  // upstream text stays in the log
  EXPECT_NE(daemon->log().find("Invalid username or password"), std::string::npos);
  r = c.request("GET", "/v1/users/@alice:localhost/token?min_valid_ms=soon");
  EXPECT_EQ(r.status, 400);
  r = c.request("GET", "/v1/nothing");
  EXPECT_EQ(r.status, 404);
  r = c.request("POST", "/v1/users/@alice:localhost/token");
  EXPECT_EQ(r.status, 405);
  r = c.request("POST", "/v1/users/@alice:localhost/invalidate", "not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json_string(r.body, "errcode"), "M_BAD_JSON");
  // An unusable 200 (garbage, the wrong shape) is retried after a backoff, like a 5xx: the
  // next try gets the token. (Three in a row give 502: tests/e2e/upstream_errors_test.cpp.)
  hs->fail_next(1, failure::garbage);
  r = c.request("GET", "/v1/users/@garbage:localhost/token");
  EXPECT_EQ(r.status, 200) << r.body;
  hs->fail_next(1, failure::wrong_json_shape);
  r = c.request("GET", "/v1/users/@shape:localhost/token");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(get_token(c, "@alice:localhost").status, 200);
  // A rate limit longer than the request deadline (5 s) is answered at once. It pauses every
  // login to this homeserver (Synapse limits per IP too), but cached tokens are still served.
  hs->fail_next(1, failure::rate_limited, 7000);
  r = c.request("GET", "/v1/users/@limited:localhost/token");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(json_string(r.body, "errcode"), "M_LIMIT_EXCEEDED");
  EXPECT_GT(json_int(r.body, "retry_after_ms"), 6900);
  EXPECT_LE(json_int(r.body, "retry_after_ms"), 7000);
  r = c.request("GET", "/v1/users/@other:localhost/token");  // paused too
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(get_token(c, "@alice:localhost").status, 200);
}

TEST_F(daemon_fixture, TransportFailuresAreRetriedWithBackoffThenAnswered) {
  hs->register_users({"@once:localhost", "@five:localhost", "@dropped:localhost", "@hung:localhost",
                      "@alice:localhost"});
  start_default();
  unix_http_client c{socket};
  hs->fail_next(1, failure::server_error);  // one 500: the retry after a backoff succeeds
  EXPECT_EQ(get_token(c, "@once:localhost").status, 200);
  EXPECT_EQ(hs->login_count(), 2);
  hs->fail_next(3, failure::server_error);  // every try fails: the homeserver's answer is passed on
  auto r = c.request("GET", "/v1/users/@five:localhost/token");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(json_int(r.body, "upstream_status"), 500);
  // Three failures opened the circuit for at most 1 s: a caller whose deadline (5 s) covers that
  // waits it out; two dropped answers (a reused keep-alive connection is retried once) are one
  // failed try; the next try, after a backoff, gets a token. A dropped login may have issued a
  // token, so the device is cleaned first: log in, log out, log in.
  hs->fail_next(2, failure::drop_connection);
  const int before_drop = hs->login_count();
  r = c.request("GET", "/v1/users/@dropped:localhost/token");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(hs->login_count() - before_drop, 2 + 2);
  EXPECT_EQ(hs->device_count("@dropped:localhost"), 1);
  // Logins that hang until the caller's own deadline (5 s; each try times out after 2 s): 504.
  hs->fail_next(3, failure::hang);
  r = c.request("GET", "/v1/users/@hung:localhost/token");
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_EQ(json_string(r.body, "errcode"), "MXP_TIMEOUT");
  EXPECT_EQ(get_token(c, "@alice:localhost").status, 200);  // recovered (after waiting it out)
}

TEST_F(daemon_fixture, HomeserverDownGivesFastUnavailableAndOthersKeepBeingServed) {
  auto o = homeserver_options();
  o.server_name = "second.test";
  auto second = std::make_unique<fake_homeserver>(o);
  second->register_users({"@frank:second.test", "@gina:second.test"});
  hs->register_users({"@erin:localhost", "@newuser:localhost"});
  const auto down_url = second->url();
  start(config({default_homeserver(hs->url()), {.name = "second.test", .url = down_url}}));
  unix_http_client c{socket};
  const auto cached = json_string(get_token(c, "@erin:localhost").body, "access_token");
  ASSERT_EQ(get_token(c, "@frank:second.test").status, 200);
  second.reset();  // the second homeserver goes away
  const auto before = std::chrono::steady_clock::now();
  auto r = get_token(c, "@gina:second.test");
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(json_string(r.body, "errcode"), "MXP_UNAVAILABLE");
  EXPECT_LT(std::chrono::steady_clock::now() - before, 3s);
  EXPECT_EQ(json_string(get_token(c, "@erin:localhost").body, "access_token"), cached);
  EXPECT_EQ(get_token(c, "@frank:second.test").status, 200);  // cached token of the down server
  EXPECT_EQ(get_token(c, "@newuser:localhost").status, 200);
  if (HasFailure()) ADD_FAILURE() << daemon->log();
}

TEST_F(daemon_fixture, HttpsWithCaFileAndWellKnownDiscovery) {
  auto cert = make_self_signed_cert(dir.path());
  auto o = homeserver_options();
  o.tls_cert_file = cert.cert_file;
  o.tls_key_file = cert.key_file;
  o.port = free_loopback_port();
  const auto server_name = "localhost:" + std::to_string(o.port);
  o.server_name = server_name;
  auto tls = std::make_unique<fake_homeserver>(o);
  tls->register_user("@tls:" + server_name);
  // No url: discovered through https://localhost:PORT/.well-known/matrix/client.
  start(config({{.name = server_name, .more = "    ca_file: " + cert.ca_file + "\n"}}));
  unix_http_client c{socket};
  auto r = get_token(c, "@tls:" + server_name);
  ASSERT_EQ(r.status, 200) << r.body << daemon->log();
  EXPECT_EQ(tls->user_of_token(json_string(r.body, "access_token")), "@tls:" + server_name);
  EXPECT_EQ(json_string(r.body, "homeserver_url"), tls->url());
  const auto tls_log = tls->request_log();
  ASSERT_FALSE(tls_log.empty());
  EXPECT_EQ(tls_log.front(), "GET /.well-known/matrix/client");
  EXPECT_EQ(json_string(c.request("GET", "/v1/status").body, "version"), "0.1.0");
}

TEST_F(daemon_fixture, TlsWithoutTheRightCaIsRefused) {
  auto cert = make_self_signed_cert(dir.path());
  auto o = homeserver_options();
  o.tls_cert_file = cert.cert_file;
  o.tls_key_file = cert.key_file;
  auto tls = std::make_unique<fake_homeserver>(o);
  tls->register_user("@alice:localhost");  // so that only the certificate can stop the login
  start(config({{.url = tls->url()}}));
  unix_http_client c{socket};
  auto r = get_token(c, "@alice:localhost");
  EXPECT_EQ(r.status, 503) << r.body;  // system CA store does not know the self-signed cert
  EXPECT_EQ(tls->login_count(), 0);
  EXPECT_NE(daemon->log().find("certificate verify failed"), std::string::npos) << daemon->log();
}

TEST_F(daemon_fixture, MalformedRequestsGetAnAnswerAndTheDaemonLivesOn) {
  hs->register_user("@alice:localhost");
  start_default();
  {
    unix_http_client c{socket};
    auto r = c.request("GET", "/v1/users/@alice:localhost/token?x=" + std::string(20000, 'a'));
    EXPECT_EQ(r.status, 431);
  }
  {
    unix_http_client c{socket};
    auto r =
        c.request("POST", "/v1/users/@alice:localhost/invalidate", std::string(100 * 1024, 'x'));
    EXPECT_EQ(r.status, 413);
  }
  unix_http_client c{socket};
  EXPECT_EQ(get_token(c, "@alice:localhost").status, 200);
  EXPECT_FALSE(daemon->exited());
}

TEST_F(daemon_fixture, SocketModeStaleSocketAndLiveSocket) {
  // A stale socket file from a crashed run is replaced.
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socket.copy(addr.sun_path, sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);  // leaves the file behind, nobody listening
  }
  start_default();
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  // A live daemon's socket is not stolen by a second one.
  auto second = run_mxpuppetd({"-c", config_file}, 10s);
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.output.find("another process is listening"), std::string::npos) << second.output;
  unix_http_client c{socket};
  EXPECT_EQ(c.request("GET", "/healthz").status, 200);
  // SIGTERM: clean exit, socket file removed.
  EXPECT_EQ(daemon->stop(SIGTERM), 0);
  EXPECT_NE(::access(socket.c_str(), F_OK), 0);
}

TEST_F(daemon_fixture, CheckConfigNamesFileLineAndKey) {
  const auto bad = dir.write("bad.yaml",
                             "listen:\n  unix_socket: /tmp/x.sock\n  bogus_key: 1\nhomeservers:\n"
                             "  localhost:\n    login:\n      method: shared_secret\n"
                             "      secret_file: missing.secret\n");
  auto r = run_mxpuppetd({"--check-config", "-c", bad});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find(bad + ":3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("listen.bogus_key"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("missing.secret"), std::string::npos) << r.output;
  // A daemon with that config never starts half-configured.
  r = run_mxpuppetd({"-c", bad});
  EXPECT_EQ(r.exit_code, 2);
  const auto good = write_config(config({default_homeserver(hs->url())}));
  r = run_mxpuppetd({"--check-config", "-c", good});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(daemon_fixture, MxpuppetctlTalksToTheDaemon) {
  hs->register_user("@henry:localhost");
  start_default();
  auto r = run_ctl({"token", "@henry:localhost"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string token = r.output.substr(0, r.output.find('\n'));
  never_logged.insert(token);
  EXPECT_EQ(hs->user_of_token(token), "@henry:localhost");
  r = run_ctl({"--json", "sessions"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("@henry:localhost"), std::string::npos);
  r = run_ctl({"invalidate", "@henry:localhost", token});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(hs->token_is_live(token));
  r = run_ctl({"revoke", "@henry:localhost"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_ctl({"token", "@nobody:elsewhere.org"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("M_NOT_FOUND"), std::string::npos);
  r = run_ctl({"status"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_program({env_or_throw("MXPUPPETCTL_BIN"), "--socket", dir.file("nope.sock"), "status"});
  EXPECT_EQ(r.exit_code, 3);
}

}  // namespace
