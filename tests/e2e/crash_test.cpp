// End-to-end: a daemon killed while its login is in flight leaves no live token that nobody
// holds. Synapse keeps a device's older tokens alive when it logs in again with the same
// device_id, so the token the homeserver issued to the dead daemon would live on; the next run
// finds the login_in_flight mark in its store and cleans the device before handing out a token.
#include <gtest/gtest.h>

#include <csignal>
#include <thread>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;
using namespace std::chrono_literals;

namespace {

constexpr const char* secret = "crash-shared-secret";

// A config with a store, for daemons started and killed by each test.
struct crash_fixture : e2e_fixture {
  crash_fixture() : e2e_fixture{secret} {}
  void SetUp() override {
    e2e_fixture::SetUp();
    write_config({.homeservers = {{.url = hs->url(), .more = "    device_id: MXPCRASH\n"}},
                  .sections = "store:\n  path: sessions.db\n",
                  .log = ""});
  }
};

TEST_F(crash_fixture, ADaemonKilledMidLoginLeavesNoTokenThatNobodyHolds) {
  const std::string user = "@victim:localhost";
  const auto path = "/v1/users/" + mxp::client::percent_encode_path_segment(user) + "/token";

  hs->register_user(user);
  hs->set_latency(1500ms);  // the login is at the homeserver while the daemon dies
  {
    const auto first = spawn_daemon("first.log");
    ASSERT_TRUE(first->wait_ready()) << first->log();
    std::thread caller{[&] {
      try {
        unix_http_client{socket, 10s}.request("GET", path);
      } catch (const std::exception&) {  // the daemon dies under it: expected
      }
    }};
    for (int i = 0; i < 200 && hs->login_count() == 0; ++i) std::this_thread::sleep_for(10ms);
    ASSERT_EQ(hs->login_count(), 1) << first->log();
    first->stop(SIGKILL, 5s);
    caller.join();
  }
  std::this_thread::sleep_for(2s);  // the homeserver finishes the login: a token nobody holds
  const auto orphans = hs->live_tokens(user);
  ASSERT_EQ(orphans.size(), 1u) << "the fake should have issued the orphan by now";
  hs->set_latency(0ms);

  const auto second = spawn_daemon("second.log");
  ASSERT_TRUE(second->wait_ready()) << second->log();
  const auto r = unix_http_client{socket}.request("GET", path);
  ASSERT_EQ(r.status, 200) << r.body << second->log();
  const auto held = token_of(r.body);
  EXPECT_FALSE(hs->token_is_live(orphans.front())) << "the orphan token is still live";
  const auto live = hs->live_tokens(user);
  ASSERT_EQ(live.size(), 1u) << "more than one live token for the user";
  EXPECT_EQ(live.front(), held);
  EXPECT_EQ(hs->device_count(user), 1);
  // A later restart has nothing to clean: the mark was cleared with the token's row.
  second->stop(SIGTERM, 10s);
  const auto logins = hs->login_count();
  const auto third = spawn_daemon("third.log");
  ASSERT_TRUE(third->wait_ready()) << third->log();
  const auto again = unix_http_client{socket}.request("GET", path);
  EXPECT_EQ(token_of(again.body), held);
  EXPECT_EQ(hs->login_count(), logins);
  const auto log = second->log() + third->log();
  EXPECT_EQ(log.find(held), std::string::npos) << "a token appeared in the log";
  EXPECT_EQ(log.find(orphans.front()), std::string::npos);
}

// A 200 to /logout whose body is not JSON (a proxy's page, garbage) confirms nothing: the token
// stays pending logout and dies before the next login, instead of living on unheld.
TEST_F(crash_fixture, AGarbageAnswerToALogoutIsNotALogout) {
  const std::string user = "@garbled:localhost";
  const auto segment = mxp::client::percent_encode_path_segment(user);
  hs->register_user(user);
  daemon = spawn_daemon();
  ASSERT_TRUE(daemon->wait_ready()) << daemon->log();
  unix_http_client c{socket};
  const auto first = token_of(c.request("GET", "/v1/users/" + segment + "/token").body);
  ASSERT_FALSE(first.empty());
  hs->fail_all(failure::garbage);  // 200 "not json{"
  const auto revoked = c.request("DELETE", "/v1/users/" + segment + "/session");
  EXPECT_NE(revoked.status, 200) << "a garbage answer was taken as a logout: " << revoked.body;
  EXPECT_TRUE(hs->token_is_live(first));  // the fake did not log it out
  hs->fail_all(failure::none);
  const auto second = token_of(c.request("GET", "/v1/users/" + segment + "/token").body);
  ASSERT_FALSE(second.empty());
  EXPECT_FALSE(hs->token_is_live(first)) << "the unconfirmed logout was not retried";
  EXPECT_EQ(hs->live_tokens(user), std::vector<std::string>{second});
}

}  // namespace
