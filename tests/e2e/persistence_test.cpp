// End-to-end persistence: sessions survive restarts and kill -9 in SQLite, so a
// restart adds no login and no device at the homeserver.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <sys/stat.h>

#include <atomic>
#include <csignal>
#include <map>
#include <mutex>
#include <thread>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;
using namespace std::chrono_literals;

namespace {

constexpr const char* secret = "persistence-secret";

struct persistence_fixture : e2e_fixture {
  persistence_fixture() : e2e_fixture{secret} {}
  std::string db = dir.file("sessions.db");

  void SetUp() override {
    e2e_fixture::SetUp();
    write_config({.homeservers = {{.url = hs->url(), .more = "    max_concurrent_logins: 8\n"}},
                  .sections = "store:\n  path: sessions.db\n",
                  .log = "  level: info\n"});
  }
  // Users @u0..@u{n-1} exist on the homeserver.
  void register_numbered(int n) {
    for (int i = 0; i < n; ++i) hs->register_user("@u" + std::to_string(i) + ":localhost");
  }
  // Tokens of users @u0..@u{n-1}, fetched by `threads` bridges in parallel.
  std::map<std::string, std::string> fetch_all(int n, int threads = 16) {
    std::map<std::string, std::string> out;
    std::mutex m;
    std::atomic<int> next{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        unix_http_client c{socket};
        for (int i; (i = next++) < n;) {
          const auto user = "@u" + std::to_string(i) + ":localhost";
          try {
            auto r = c.request("GET", "/v1/users/" + user + "/token");
            std::lock_guard lock{m};
            out[user] = r.status == 200 ? token_of(r.body) : "";
          } catch (const std::exception&) {
            std::lock_guard lock{m};
            out[user] = "";
          }
        }
      });
    }
    for (auto& t : pool) t.join();
    return out;
  }
};

TEST_F(persistence_fixture, RestartKeepsEverySessionAndAddsNoLogin) {
  constexpr int users = 1000;
  register_numbered(users);
  daemon = start_daemon();
  const auto before = fetch_all(users);
  for (const auto& [user, token] : before) ASSERT_FALSE(token.empty()) << user;
  EXPECT_EQ(hs->successful_login_count(), users);
  ASSERT_EQ(daemon->stop(SIGTERM), 0);

  daemon = start_daemon("daemon2.log");
  const auto after = fetch_all(users);
  EXPECT_EQ(after, before);  // the same tokens, served from the store
  EXPECT_EQ(hs->login_count(), users) << "a restart must not log anyone in again";
  EXPECT_EQ(hs->device_count(), users) << "a restart must not add devices";
  for (const auto& [user, token] : after) EXPECT_TRUE(hs->token_is_live(token)) << user;
  const auto log = daemon->log();
  EXPECT_NE(log.find("1000 sessions read"), std::string::npos) << log;
  for (const auto& [user, token] : after) ASSERT_EQ(log.find(token), std::string::npos);
  std::printf(
      "[ figures  ] %d users across a restart: %d logins at the homeserver (target %d, not %d)\n",
      users, hs->login_count(), users, 2 * users);
}

TEST_F(persistence_fixture, StoreFileIsPrivateAndALooseOneIsFixed) {
  hs->register_user("@a:localhost");
  dir.write("sessions.db", "", 0644);  // as if an operator had created it world-readable
  daemon = start_daemon();
  struct stat st {};
  ASSERT_EQ(::stat(db.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(daemon->log().find("changed to 0600"), std::string::npos) << daemon->log();
  unix_http_client c{socket};
  EXPECT_EQ(c.request("GET", "/v1/users/@a:localhost/token").status, 200);
  struct stat wal {};
  if (::stat((db + "-wal").c_str(), &wal) == 0) {
    EXPECT_EQ(wal.st_mode & 077, 0u);
  }
}

TEST_F(persistence_fixture, InvalidationAndRevocationSurviveARestart) {
  hs->register_users({"@inv:localhost", "@rev:localhost"});
  daemon = start_daemon();
  unix_http_client c{socket};
  const auto old_token = token_of(c.request("GET", "/v1/users/@inv:localhost/token").body);
  const auto revoked = token_of(c.request("GET", "/v1/users/@rev:localhost/token").body);
  ASSERT_EQ(c.request("POST", "/v1/users/@inv:localhost/invalidate",
                      R"({"access_token":")" + old_token + "\"}")
                .body,
            R"({"invalidated":true})");
  const auto new_token = token_of(c.request("GET", "/v1/users/@inv:localhost/token").body);
  ASSERT_EQ(c.request("DELETE", "/v1/users/@rev:localhost/session").body, R"({"revoked":true})");
  c.close();
  ASSERT_EQ(daemon->stop(SIGTERM), 0);
  const int logins = hs->login_count();

  daemon = start_daemon("daemon2.log");
  unix_http_client c2{socket};
  EXPECT_EQ(token_of(c2.request("GET", "/v1/users/@inv:localhost/token").body), new_token);
  EXPECT_EQ(hs->login_count(), logins);
  const auto sessions = c2.request("GET", "/v1/sessions").body;
  EXPECT_EQ(sessions.find("@rev:localhost"), std::string::npos) << sessions;
  const auto fresh = token_of(c2.request("GET", "/v1/users/@rev:localhost/token").body);
  EXPECT_NE(fresh, revoked);
  EXPECT_FALSE(hs->token_is_live(revoked));
}

TEST_F(persistence_fixture, KillNineDuringALoginBurstLeavesAConsistentStore) {
  hs->set_latency(20ms);
  register_numbered(300);
  daemon = start_daemon();
  std::thread burst([&] { fetch_all(300, 32); });
  std::this_thread::sleep_for(300ms);
  daemon->stop(SIGKILL);
  burst.join();

  auto check = run_program({"/usr/bin/sqlite3", db, "PRAGMA integrity_check;"});
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("ok"), std::string::npos) << check.output;

  hs->set_latency(0ms);
  daemon = start_daemon("daemon2.log");
  const int logins_before = hs->successful_login_count();
  const auto tokens = fetch_all(300);
  int relogins = hs->successful_login_count() - logins_before;
  for (const auto& [user, token] : tokens) {
    ASSERT_FALSE(token.empty()) << user;
    EXPECT_EQ(hs->user_of_token(token), user)
        << "every token handed out after the crash works and is the user's";
    // Logins in flight at the kill left tokens nobody held; their devices were cleaned.
    EXPECT_EQ(hs->live_tokens(user), std::vector<std::string>{token})
        << user << ": a live token that nobody holds";
  }
  // Every session written before the kill came back without a login; a user whose login was in
  // flight came back marked and cost two (log in, log out the device, log in); the rest one.
  const auto log = daemon->log();
  const auto at = log.find("restored ");
  ASSERT_NE(at, std::string::npos) << log;
  const int restored = std::stoi(log.substr(at + 9));
  EXPECT_GT(restored, 0) << "the burst had persisted sessions before the kill";
  int cleaned = 0;
  for (auto p = log.find("device cleaned"); p != std::string::npos;
       p = log.find("device cleaned", p + 1))
    ++cleaned;
  EXPECT_EQ(relogins, 300 - restored + 2 * cleaned);
  EXPECT_LE(hs->device_count(), 300) << "no user has two devices";
  std::printf(
      "[ figures  ] kill -9 after %d logins: %d users logged in after the restart, %d devices "
      "cleaned of a login in flight\n",
      logins_before, relogins, cleaned);
}

}  // namespace
