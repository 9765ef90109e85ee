// End-to-end freshness: refresh tokens against a fake homeserver that issues short-lived
// refreshable tokens (v3/refresh unknown, as older Synapse), lost refresh answers, a
// background refresh, a 429 burst, many users meeting rc_login, and a homeserver that goes
// down and comes back.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <set>
#include <thread>
#include <vector>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;
using namespace std::chrono_literals;

namespace {

constexpr const char* secret = "refresh-secret";

std::int64_t expires_at_of(const std::string& body) {
  simdjson::dom::parser p;
  std::int64_t v = 0;
  if (p.parse(body).get_object()["expires_at_ms"].get_int64().get(v) != simdjson::SUCCESS) return 0;
  return v;
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct refresh_fixture : e2e_fixture {
  refresh_fixture() : e2e_fixture{secret} {}
  // A homeserver whose access tokens live `lifetime_ms` and come with refresh tokens.
  void start_refreshing_homeserver(std::int64_t lifetime_ms) {
    auto o = homeserver_options();
    o.refresh_access_lifetime_ms = lifetime_ms;
    start_homeserver(o);
  }
  void write_sessions_config(const std::string& sessions) {
    write_config({.homeservers = {{.url = hs->url(), .more = "    max_concurrent_logins: 4\n"}},
                  .sections = "store: {path: sessions.db}\nsessions:\n" + sessions});
  }
};

TEST_F(refresh_fixture, ShortLivedTokensAreRefreshedOnTheSameDeviceAndSurviveARestart) {
  // 8 s tokens: generous, so that a slow machine does not blur the steps. After the restart the
  // refreshed token must still have more than the 1 s margin left: stopping and starting the
  // daemon (slow under ASan on a busy machine) gets about 5 s of it.
  start_refreshing_homeserver(8000);
  hs->register_user("@ann:localhost");
  write_sessions_config("  refresh_tokens: true\n  refresh_margin: 1s\n");
  daemon = start_daemon();
  unix_http_client c{socket};
  auto r = c.request("GET", "/v1/users/@ann:localhost/token");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto first = token_of(r.body);
  EXPECT_NEAR(static_cast<double>(expires_at_of(r.body) - wall_ms()), 8000, 500);
  EXPECT_NE(hs->last_login_body().find("\"refresh_token\":true"), std::string::npos)
      << "asked as a JSON boolean";
  EXPECT_EQ(c.request("GET", "/v1/users/@ann:localhost/token").body, r.body);  // cached

  std::this_thread::sleep_for(7100ms);  // under 1 s left: the next request refreshes first
  r = c.request("GET", "/v1/users/@ann:localhost/token");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto second = token_of(r.body);
  EXPECT_NE(second, first);
  EXPECT_GT(expires_at_of(r.body) - wall_ms(), 7000);
  EXPECT_EQ(hs->login_count(), 1);
  EXPECT_EQ(hs->refresh_count(), 2);  // v3 unknown (400 M_UNRECOGNIZED), then v1
  EXPECT_EQ(hs->device_count("@ann:localhost"), 1);
  EXPECT_TRUE(hs->token_is_live(second));

  std::this_thread::sleep_for(
      1200ms);  // the first token has expired now (soft logout at the homeserver)
  EXPECT_FALSE(hs->token_is_live(first));

  ASSERT_EQ(daemon->stop(SIGTERM), 0);
  daemon = start_daemon("daemon2.log");
  unix_http_client c2{socket};
  r = c2.request("GET", "/v1/users/@ann:localhost/token?min_valid_ms=500");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(token_of(r.body), second) << "the refreshed token came back from the store";
  r = c2.request("GET", "/v1/users/@ann:localhost/token?min_valid_ms=7500");  // more than is left
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(token_of(r.body), second);
  EXPECT_GE(expires_at_of(r.body) - wall_ms(), 7400);
  EXPECT_EQ(hs->refresh_count(), 4)
      << "v1 is remembered per run: the restarted daemon tried v3 once more";
  EXPECT_EQ(hs->login_count(), 1) << "neither the restart nor the refreshes logged in again";
  r = c2.request("GET", "/v1/users/@ann:localhost/token?min_valid_ms=60000");
  EXPECT_EQ(r.status, 400) << r.body;  // longer than this homeserver's tokens live
  const auto log = daemon->log() + read_file(dir.file("daemon.log"));
  EXPECT_EQ(log.find(first), std::string::npos);
  EXPECT_EQ(log.find(second), std::string::npos);
}

TEST_F(refresh_fixture, ALostRefreshAnswerIsNotReplayedTheDaemonLogsInAgain) {
  start_refreshing_homeserver(10'000);
  hs->register_user("@bea:localhost");
  write_sessions_config("  refresh_tokens: true\n  refresh_margin: 1s\n");
  daemon = start_daemon();
  unix_http_client c{socket};
  const auto first = token_of(c.request("GET", "/v1/users/@bea:localhost/token").body);
  ASSERT_FALSE(first.empty());
  // Asking for more than is left refreshes; this one also settles the v3 -> v1 fallback, so that
  // the single refresh sent next is the one whose answer is lost. (600 ms of slack for the
  // renewal: with 10 ms, a loaded machine made the fresh token already too short.)
  std::this_thread::sleep_for(600ms);
  auto r = c.request("GET", "/v1/users/@bea:localhost/token?min_valid_ms=9400");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(hs->refresh_count(), 2);
  const int refreshes = hs->refresh_count();
  hs->fail_next_refresh(1, failure::drop_connection);
  std::this_thread::sleep_for(600ms);
  r = c.request("GET", "/v1/users/@bea:localhost/token?min_valid_ms=9400");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto after = token_of(r.body);
  EXPECT_EQ(hs->refresh_count(), refreshes + 1) << "the lost refresh is never sent again";
  EXPECT_EQ(hs->login_count(), 2);
  EXPECT_TRUE(hs->token_is_live(after));
  EXPECT_EQ(hs->device_count("@bea:localhost"), 1)
      << "the old device was logged out before the login";
}

TEST_F(refresh_fixture, BackgroundRefreshRenewsBeforeARequestHasToWait) {
  start_refreshing_homeserver(3000);
  hs->register_user("@cat:localhost");
  write_sessions_config("  refresh_tokens: true\n  refresh_margin: 1s\n  refresh: background\n");
  daemon = start_daemon();
  unix_http_client c{socket};
  const auto first = token_of(c.request("GET", "/v1/users/@cat:localhost/token").body);
  ASSERT_FALSE(first.empty());
  std::this_thread::sleep_for(1700ms);  // past twice the margin before expiry, no request meanwhile
  EXPECT_GE(hs->refresh_count(), 1) << "refreshed by the timer, not by a request";
  auto r = c.request("GET", "/v1/users/@cat:localhost/token");
  EXPECT_NE(token_of(r.body), first);
  EXPECT_GT(expires_at_of(r.body) - wall_ms(), 1000);
  EXPECT_EQ(hs->login_count(), 1);
}

TEST_F(refresh_fixture, ALoginBurstMeeting429sIsWaitedOut) {
  for (int i = 0; i < 20; ++i) hs->register_user("@burst" + std::to_string(i) + ":localhost");
  write_sessions_config("  max: 1000\n");
  hs->fail_next(6, failure::rate_limited, 300);
  daemon = start_daemon();
  std::atomic<int> ok{0};
  std::vector<std::thread> bridges;
  for (int i = 0; i < 20; ++i) {
    bridges.emplace_back([&, i] {
      unix_http_client c{socket};
      auto r = c.request("GET", "/v1/users/@burst" + std::to_string(i) + ":localhost/token");
      if (r.status == 200 && hs->token_is_live(token_of(r.body))) ++ok;
    });
  }
  for (auto& t : bridges) t.join();
  EXPECT_EQ(ok, 20) << daemon->log();
  EXPECT_EQ(hs->successful_login_count(), 20);
  EXPECT_EQ(hs->login_count(), 26);
}

TEST_F(refresh_fixture, RateLimitLongerThanTheDeadlineIsA429WithRetryAfter) {
  hs->register_user("@dan:localhost");
  write_sessions_config("  max: 1000\n");
  hs->fail_next(1, failure::rate_limited, 60'000);
  daemon = start_daemon();
  unix_http_client c{socket};
  const auto started = std::chrono::steady_clock::now();
  auto r = c.request("GET", "/v1/users/@dan:localhost/token");
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_NE(r.body.find("\"errcode\":\"M_LIMIT_EXCEEDED\""), std::string::npos) << r.body;
  simdjson::dom::parser p;
  std::int64_t retry_after = 0;
  EXPECT_EQ(p.parse(r.body)["retry_after_ms"].get_int64().get(retry_after), simdjson::SUCCESS)
      << r.body;
  EXPECT_GT(retry_after, 59'000);
  EXPECT_LE(retry_after, 60'000);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s)
      << "answered at once, not at the 30 s deadline";
}

// Many users logging in from one address against Synapse's rc_login (the fake's buckets, sped
// up so the test takes seconds): a burst of 3, then one login every 2.5 s, longer than the
// callers' 2 s deadline. Each bridge keeps asking for its user, waiting out every 429 as told;
// every answer is a token or a 429 with retry_after_ms, and in the end every user has a token.
TEST_F(refresh_fixture, ManyUsersFromOneAddressMeetRcLoginAndGetTheirTokensAsItAllows) {
  constexpr int users = 6;
  constexpr int burst = 3;
  constexpr double per_second = 0.4;
  auto o = homeserver_options();
  o.rc_login_address = {per_second, burst};
  o.rc_login_account = synapse_rc_login;  // each user logs in once: never in the way
  start_homeserver(o);
  for (int i = 0; i < users; ++i) hs->register_user("@many" + std::to_string(i) + ":localhost");
  write_config({.listen = "  request_timeout: 2s\n",
                .homeservers = {{.url = hs->url(), .more = "    max_concurrent_logins: 4\n"}}});
  daemon = start_daemon();

  struct outcome {
    std::string token;
    std::vector<std::int64_t> waits;  // retry_after_ms of each 429
    std::string unexpected;           // an answer that is neither
  };
  std::vector<outcome> outcomes(users);
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> bridges;
  for (int i = 0; i < users; ++i) {
    bridges.emplace_back([&, i] {
      auto& out = outcomes[i];
      unix_http_client c{socket};
      const auto user = "@many" + std::to_string(i) + ":localhost";
      for (const auto until = std::chrono::steady_clock::now() + 60s;
           std::chrono::steady_clock::now() < until;) {
        const auto r = c.request("GET", "/v1/users/" + user + "/token");
        if (r.status == 200) {
          out.token = token_of(r.body);
          if (json_string(r.body, "user_id") != user) out.unexpected = r.body;
          return;
        }
        simdjson::dom::parser p;
        std::int64_t wait = -1;
        if (r.status != 429 || json_string(r.body, "errcode") != "M_LIMIT_EXCEEDED" ||
            p.parse(r.body)["retry_after_ms"].get_int64().get(wait) != simdjson::SUCCESS) {
          out.unexpected = std::to_string(r.status) + " " + r.body;
          return;
        }
        out.waits.push_back(wait);
        std::this_thread::sleep_for(std::chrono::milliseconds{std::max<std::int64_t>(wait, 1)});
      }
      out.unexpected = "no token within 60 s";
    });
  }
  for (auto& t : bridges) t.join();
  const auto elapsed = std::chrono::steady_clock::now() - started;

  int limited_answers = 0;
  std::set<std::string> tokens;
  for (int i = 0; i < users; ++i) {
    const auto& out = outcomes[i];
    const auto user = "@many" + std::to_string(i) + ":localhost";
    EXPECT_EQ(out.unexpected, "") << user << "\n" << daemon->log();
    EXPECT_TRUE(hs->token_is_live(out.token)) << user;
    EXPECT_EQ(hs->user_of_token(out.token), user);
    tokens.insert(out.token);
    for (const auto wait : out.waits) {
      EXPECT_GT(wait, 0) << user;
      EXPECT_LE(wait, 2'500) << user << ": longer than the bucket needs for one login";
    }
    limited_answers += static_cast<int>(out.waits.size());
  }
  EXPECT_EQ(tokens.size(), static_cast<std::size_t>(users));
  // Past the burst, every login waits longer than a caller's deadline: callers saw 429s.
  EXPECT_GE(limited_answers, users - burst);
  EXPECT_GT(hs->rate_limited_count(), 0) << "the logins never met rc_login";
  EXPECT_EQ(hs->successful_login_count(), users);
  EXPECT_EQ(hs->device_count(), users) << "one device per user";
  // The bucket held: the logins past the burst needed (users - burst) / per_second seconds.
  EXPECT_GE(elapsed,
            std::chrono::milliseconds{static_cast<int>((users - burst) / per_second * 1000) - 100});
  const auto log = daemon->log();
  for (const auto& t : tokens) EXPECT_EQ(log.find(t), std::string::npos) << "a token in the log";
  std::printf(
      "[ figures  ] %d users, rc_login burst %d + %.1f/s: %d logins refused by rc_login, "
      "%d 429s to callers, all tokens after %lld ms\n",
      users, burst, per_second, hs->rate_limited_count(), limited_answers,
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()));
}

TEST_F(refresh_fixture, HomeserverDownKeepsServingCachedTokensAndNewUsersWaitOutTheCircuit) {
  hs->register_users({"@eve:localhost", "@fox:localhost", "@gil:localhost", "@hal:localhost"});
  write_sessions_config("  max: 1000\n");
  daemon = start_daemon();
  unix_http_client c{socket};
  const auto cached = token_of(c.request("GET", "/v1/users/@eve:localhost/token").body);
  ASSERT_FALSE(cached.empty());
  hs->fail_all(failure::server_error);
  auto r = c.request("GET", "/v1/users/@fox:localhost/token");  // 3 tries with backoff, then 502
  EXPECT_EQ(r.status, 502) << r.body;
  auto status = c.request("GET", "/v1/status").body;
  EXPECT_NE(status.find("\"circuit\":\"open\""), std::string::npos) << status;
  // The circuit is open, but this caller's 30 s deadline covers the window: it waits, probes
  // once at a time, and hears the homeserver's own failure rather than a blanket 503.
  const int sent = hs->login_count();
  r = c.request("GET", "/v1/users/@gil:localhost/token");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_LE(hs->login_count() - sent, 3) << "one probe at a time, three tries at most";
  r = c.request("GET", "/v1/users/@eve:localhost/token");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(token_of(r.body), cached);

  // Recovered while the circuit is open: a new user waits for the probe and gets a token,
  // instead of being refused until the window ends.
  hs->fail_all(failure::none);
  const auto started = std::chrono::steady_clock::now();
  r = c.request("GET", "/v1/users/@hal:localhost/token");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s);
  status = c.request("GET", "/v1/status").body;
  EXPECT_NE(status.find("\"circuit\":\"closed\""), std::string::npos) << status;
}

TEST_F(refresh_fixture, AnIdleSessionIsValidatedAndADeadTokenReplacedTransparently) {
  hs->register_user("@ida:localhost");
  write_sessions_config("  validate_after: 1s\n");
  daemon = start_daemon();
  unix_http_client c{socket};
  const auto first = token_of(c.request("GET", "/v1/users/@ida:localhost/token").body);
  EXPECT_EQ(token_of(c.request("GET", "/v1/users/@ida:localhost/token").body), first);
  EXPECT_EQ(hs->whoami_count(), 0) << "not idle: no check";
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(token_of(c.request("GET", "/v1/users/@ida:localhost/token").body), first);
  EXPECT_EQ(hs->whoami_count(), 1) << "idle past validate_after: checked, alive";
  hs->kill_token(first);
  std::this_thread::sleep_for(1200ms);
  auto r = c.request("GET", "/v1/users/@ida:localhost/token");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto replaced = token_of(r.body);
  EXPECT_NE(replaced, first);
  EXPECT_TRUE(hs->token_is_live(replaced));
  EXPECT_EQ(hs->whoami_count(), 2);
  EXPECT_EQ(hs->login_count(), 2);
  EXPECT_EQ(hs->device_count("@ida:localhost"), 1);
}

TEST_F(refresh_fixture, ShutdownWithRevokeOnShutdownLogsEverySessionOut) {
  hs->register_users({"@s1:localhost", "@s2:localhost", "@s3:localhost"});
  write_sessions_config("  revoke_on_shutdown: true\n");
  daemon = start_daemon();
  unix_http_client c{socket};
  std::vector<std::string> tokens;
  for (const char* u : {"@s1:localhost", "@s2:localhost", "@s3:localhost"})
    tokens.push_back(token_of(c.request("GET", std::string{"/v1/users/"} + u + "/token").body));
  c.close();
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << daemon->log();
  for (const auto& t : tokens) EXPECT_FALSE(hs->token_is_live(t));
  EXPECT_EQ(hs->device_count(), 0);
  // Nothing comes back from the store: every row went with its logout.
  daemon = start_daemon("daemon2.log");
  unix_http_client c2{socket};
  EXPECT_NE(c2.request("GET", "/v1/sessions").body.find("\"sessions\":[]"), std::string::npos);
}

}  // namespace
