// session_pool against a scripted homeserver_client: single flight, login caps,
// failures, invalidation, revocation, LRU and idle eviction. Everything runs on a
// virtual_clock: the homeserver's latency, callers' deadlines, backoffs, 429 pauses and
// circuit windows take no real time, and no outcome depends on the machine's speed.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "core/errc.hpp"
#include "sessions/session_pool.hpp"
#include "sessions/virtual_clock.hpp"
#include "sessions/wait_queue.hpp"

namespace asio = boost::asio;
using namespace mxp;
using namespace mxp::sessions;
using namespace std::chrono_literals;

namespace {

// A homeserver that behaves like Synapse for devices: re-login keeps old tokens
// live; logging out any token of a device kills all of them.
class scripted_homeserver final : public matrix::homeserver_client {
 public:
  explicit scripted_homeserver(session_clock& clock) : clock_(clock), cancelled_(clock) {}
  std::string name = "hs.test";
  std::chrono::milliseconds latency{5};
  int fail_logins = 0;        // the next N logins fail with 403
  int rate_limit_logins = 0;  // the next N logins fail with 429 and retry_after_ms
  std::int64_t retry_after_ms = 100;
  int unreachable_logins = 0;  // the next N logins get no answer
  bool unreachable = false;
  std::optional<std::int64_t> expires_in_ms;
  bool grant_refresh_tokens = false;
  bool lose_refresh_answers = false;  // refreshes rotate the tokens, then the answer is lost
  int logins = 0, logouts = 0, refreshes = 0, whoamis = 0, in_flight = 0, peak_in_flight = 0;
  std::map<std::string, std::string> refresh_owner;  // live refresh token -> user
  std::vector<std::string> calls;                    // "login @u" / "logout @u"
  std::map<std::string, std::string> token_owner;    // live token -> user

  const std::string& server_name() const override { return name; }
  std::string_view method_name() const override { return "shared_secret"; }
  std::string login_type() const override { return "com.devture.shared_secret_auth"; }
  const std::string& base_url() const override { return url; }
  std::string url = "http://hs.test";
  void close_idle_connections() override {}
  void cancel_requests() override {
    ++cancellations;
    cancelled_.notify_all();
  }
  bool hang = false;  // requests never get an answer (until cancelled)
  int cancellations = 0;

  asio::awaitable<matrix::upstream_result<matrix::login_grant>> login(
      std::string user_id) override {
    ++in_flight;
    peak_in_flight = std::max(peak_in_flight, in_flight);
    const bool answered = co_await delay();
    --in_flight;
    if (!answered) co_return error(errc::shutting_down, 0);
    ++logins;
    calls.push_back("login " + user_id);
    if (unreachable) co_return error(errc::upstream_unavailable, 0);
    if (fail_logins > 0) {
      --fail_logins;
      co_return error(errc::upstream_refused, 403);
    }
    if (rate_limit_logins > 0) {
      --rate_limit_logins;
      auto e = error(errc::upstream_rate_limited, 429);
      e.retry_after_ms = retry_after_ms;
      co_return std::move(e);
    }
    if (unreachable_logins > 0) {
      --unreachable_logins;
      co_return error(errc::upstream_unavailable, 0);
    }
    auto token = "tok_" + std::to_string(++counter_);
    token_owner[token] = user_id;
    matrix::login_grant grant{secret_string{token}, user_id, std::string{"DEV"}, expires_in_ms, {}};
    if (grant_refresh_tokens) grant.refresh_token = secret_string{new_refresh_token(user_id)};
    co_return grant;
  }
  asio::awaitable<matrix::upstream_result<matrix::refresh_grant>> refresh(
      secret_string refresh_token) override {
    if (!co_await delay()) co_return error(errc::shutting_down, 0);
    ++refreshes;
    calls.push_back("refresh");
    if (unreachable) co_return error(errc::upstream_unavailable, 0);
    auto it = refresh_owner.find(refresh_token.reveal());
    if (it == refresh_owner.end()) co_return error(errc::upstream_refused, 401);
    const auto user = it->second;
    refresh_owner.erase(it);  // rotated; the old access token stays live, as Synapse keeps it
    auto token = "tok_" + std::to_string(++counter_);
    token_owner[token] = user;
    matrix::refresh_grant grant{secret_string{token}, secret_string{new_refresh_token(user)},
                                expires_in_ms};
    if (lose_refresh_answers) co_return error(errc::upstream_timeout, 0);
    co_return grant;
  }
  asio::awaitable<matrix::upstream_result<matrix::logout_outcome>> logout(
      secret_string token) override {
    if (!co_await delay()) co_return error(errc::shutting_down, 0);
    ++logouts;
    if (unreachable) co_return error(errc::upstream_unavailable, 0);
    auto it = token_owner.find(token.reveal());
    if (it == token_owner.end()) co_return matrix::logout_outcome{false};
    const auto user = it->second;
    calls.push_back("logout " + user);
    std::erase_if(token_owner, [&](const auto& kv) { return kv.second == user; });  // whole device
    co_return matrix::logout_outcome{true};
  }
  asio::awaitable<matrix::upstream_result<std::string>> whoami(secret_string token) override {
    ++whoamis;
    auto it = token_owner.find(token.reveal());
    if (it == token_owner.end()) co_return error(errc::upstream_refused, 401);
    co_return it->second;
  }
  bool live(const std::string& token) const { return token_owner.count(token) > 0; }

 private:
  // False when cancel_requests() ended the wait.
  asio::awaitable<bool> delay() {
    const std::chrono::milliseconds d = hang ? std::chrono::hours{1} : latency;
    co_return !co_await cancelled_.wait(clock_.steady_ms() + d.count());
  }
  session_clock& clock_;
  wait_queue cancelled_;
  static matrix::upstream_error error(errc code, int status) {
    matrix::upstream_error e;
    e.code = code;
    e.http_status = status;
    e.request_sent = code != errc::upstream_unavailable;  // unreachable: like a refused connect
    e.errcode = status == 403   ? "M_FORBIDDEN"
                : status == 401 ? "M_UNKNOWN_TOKEN"
                : status == 429 ? "M_LIMIT_EXCEEDED"
                                : "";
    return e;
  }
  std::string new_refresh_token(const std::string& user) {
    auto rt = "ref_" + std::to_string(++counter_);
    refresh_owner[rt] = user;
    return rt;
  }
  int counter_ = 0;
};

struct pool_fixture : ::testing::Test {
  asio::io_context io;
  virtual_clock clock;
  scripted_homeserver* hs = nullptr;
  std::unique_ptr<session_pool> pool;

  pool_options options;  // what make_pool() builds with; tests change it first
  void make_pool(std::size_t max = 1000, unsigned max_logins = 4,
                 std::chrono::milliseconds idle = 1h) {
    auto client = std::make_unique<scripted_homeserver>(clock);
    hs = client.get();
    std::map<std::string, homeserver_entry, std::less<>> hss;
    hss.emplace("hs.test", homeserver_entry{std::move(client), max_logins});
    options.max_sessions = max;
    options.idle_timeout = idle;
    options.revoke_on_evict = true;
    options.clock = &clock;
    if (options.health.base_backoff_ms == health_options{}.base_backoff_ms)
      options.health.base_backoff_ms = 20;  // the figures below assume quick retries
    pool = std::make_unique<session_pool>(io.get_executor(), options, std::move(hss));
  }
  void SetUp() override { make_pool(); }
  // Nothing may be left behind: once the pool is gone, whatever it spawned ends as soon as the
  // io_context runs it (woken and cancelled), and then the io_context has no work at all.
  void TearDown() override {
    pool.reset();
    io.restart();
    io.run_for(5s);
    EXPECT_TRUE(io.stopped()) << "work left on the io_context after the pool was destroyed";
  }

  // Runs `body` to completion on the io_context; fails instead of hanging.
  template <typename F>
  void run(F body) {
    bool done = false;
    asio::co_spawn(io, body(), [&](std::exception_ptr ep) {
      done = true;
      if (ep) std::rethrow_exception(ep);
    });
    clock.run_until(io, [&] { return done; });
    ASSERT_TRUE(done) << "coroutine did not finish (nothing left to run)";
  }
  // Runs the io_context on virtual time until done() holds.
  bool run_until(const std::function<bool()>& done) { return clock.run_until(io, done); }
  // Virtual milliseconds since `started` (a clock.steady_ms() reading).
  std::int64_t since(std::int64_t started) const { return clock.steady_ms() - started; }
  auto deadline(std::chrono::milliseconds d = 5s) { return std::chrono::steady_clock::now() + d; }
  asio::awaitable<void> sleep(std::chrono::milliseconds d) {
    wait_queue never_notified{clock};
    co_await never_notified.wait(clock.steady_ms() + d.count());
  }

  // What a token request ends with: its error code (empty: a token).
  asio::awaitable<boost::system::error_code> error_of(std::string user,
                                                      std::chrono::milliseconds within) {
    auto t = co_await pool->get_token(std::move(user), 0, deadline(within));
    co_return t ? boost::system::error_code{} : t.error().code;
  }

  asio::awaitable<std::string> token_of(std::string user) {
    auto t = co_await pool->get_token(user, 0, deadline());
    EXPECT_TRUE(t.has_value()) << user;
    co_return t ? t->access_token->reveal() : std::string{};
  }
};

TEST_F(pool_fixture, HundredConcurrentRequestsCostOneLogin) {
  std::vector<std::string> tokens;
  int finished = 0;
  for (int i = 0; i < 100; ++i) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto t = co_await pool->get_token("@alice:hs.test", 0, deadline());
          EXPECT_TRUE(t.has_value());
          if (t) tokens.push_back(t->access_token->reveal());
          ++finished;
        },
        [](std::exception_ptr ep) {
          if (ep) std::rethrow_exception(ep);
        });
  }
  run_until([&] { return finished == 100; });
  ASSERT_EQ(finished, 100);
  EXPECT_EQ(hs->logins, 1);
  EXPECT_EQ(std::set<std::string>(tokens.begin(), tokens.end()).size(), 1u);
  // Served from the cache afterwards, without suspending.
  auto cached = pool->find_ready("@alice:hs.test", 0);
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->access_token->reveal(), tokens.front());
}

TEST_F(pool_fixture, LoginsInFlightPerHomeserverAreCapped) {
  make_pool(1000, 3);
  int ok = 0;
  for (int i = 0; i < 20; ++i) {
    asio::co_spawn(
        io,
        [&, i]() -> asio::awaitable<void> {
          auto t =
              co_await pool->get_token("@user" + std::to_string(i) + ":hs.test", 0, deadline());
          if (t) ++ok;
        },
        [](std::exception_ptr ep) {
          if (ep) std::rethrow_exception(ep);
        });
  }
  run_until([&] { return ok == 20; });
  EXPECT_EQ(ok, 20);
  EXPECT_EQ(hs->logins, 20);
  EXPECT_EQ(hs->peak_in_flight, 3);
}

TEST_F(pool_fixture, FailedLoginFailsItsWaitersAndIsRetriedLater) {
  hs->fail_logins = 1;
  int failures = 0;
  for (int i = 0; i < 10; ++i) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto t = co_await pool->get_token("@bob:hs.test", 0, deadline());
          EXPECT_FALSE(t.has_value());
          if (t) co_return;
          EXPECT_EQ(t.error().code, errc::upstream_refused);
          EXPECT_EQ(t.error().http_status, 403);
          ++failures;
        },
        [](std::exception_ptr ep) {
          if (ep) std::rethrow_exception(ep);
        });
  }
  run_until([&] { return failures == 10; });
  io.restart();
  EXPECT_EQ(failures, 10);
  EXPECT_EQ(hs->logins, 1);
  run([&]() -> asio::awaitable<void> {
    EXPECT_FALSE((co_await token_of("@bob:hs.test")).empty());
  });
  EXPECT_EQ(hs->logins, 2);
}

TEST_F(pool_fixture, UnknownHomeserverAndMalformedIdsAreRefusedLocally) {
  run([&]() -> asio::awaitable<void> {
    auto t = co_await pool->get_token("@alice:other.test", 0, deadline());
    EXPECT_EQ(t.error().code, errc::unknown_homeserver);
    t = co_await pool->get_token("alice", 0, deadline());
    EXPECT_EQ(t.error().code, errc::invalid_user_id);
  });
  EXPECT_EQ(hs->logins, 0);
}

TEST_F(pool_fixture, InvalidateLogsTheCurrentTokenOutBeforeTheNextLogin) {
  run([&]() -> asio::awaitable<void> {
    const auto first = co_await token_of("@carol:hs.test");
    auto stale =
        co_await pool->invalidate("@carol:hs.test", secret_string{"not-the-token"}, deadline());
    EXPECT_FALSE(*stale);
    EXPECT_TRUE(hs->live(first));
    auto done = co_await pool->invalidate("@carol:hs.test", secret_string{first}, deadline());
    EXPECT_TRUE(*done);
    EXPECT_FALSE(hs->live(first));  // dead by the time invalidate answers
    const auto second = co_await token_of("@carol:hs.test");
    EXPECT_NE(first, second);
    EXPECT_TRUE(hs->live(second));
    // Invalidating the old token again changes nothing.
    EXPECT_FALSE(*co_await pool->invalidate("@carol:hs.test", secret_string{first}, deadline()));
    EXPECT_TRUE(hs->live(second));
  });
  EXPECT_EQ(hs->calls, (std::vector<std::string>{"login @carol:hs.test", "logout @carol:hs.test",
                                                 "login @carol:hs.test"}));
}

TEST_F(pool_fixture, UnreachableLogoutIsRetriedBeforeTheNextLogin) {
  run([&]() -> asio::awaitable<void> {
    const auto first = co_await token_of("@dave:hs.test");
    hs->unreachable = true;
    EXPECT_TRUE(*co_await pool->invalidate("@dave:hs.test", secret_string{first}, deadline()));
    EXPECT_TRUE(hs->live(first));  // could not be logged out
    auto t = co_await pool->get_token("@dave:hs.test", 0, deadline());
    EXPECT_EQ(t.error().code, errc::upstream_unavailable);
    EXPECT_EQ(hs->logouts, 1 + 3);  // the invalidation, then max_login_attempts tries with backoff
    hs->unreachable = false;
    co_await sleep(200ms);  // the circuit opened after 3 failures: wait out its backoff
    const auto second = co_await token_of("@dave:hs.test");
    EXPECT_FALSE(hs->live(first));
    EXPECT_TRUE(hs->live(second));
  });
}

TEST_F(pool_fixture, RevokeLogsOutAndForgets) {
  run([&]() -> asio::awaitable<void> {
    const auto t = co_await token_of("@erin:hs.test");
    EXPECT_TRUE(*co_await pool->revoke("@erin:hs.test", deadline()));
    EXPECT_FALSE(hs->live(t));
    EXPECT_EQ(pool->stats().total, 0u);
    EXPECT_FALSE(*co_await pool->revoke("@erin:hs.test", deadline()));
  });
}

TEST_F(pool_fixture, LeastRecentlyUsedSessionIsEvictedAndLoggedOut) {
  make_pool(2);
  run([&]() -> asio::awaitable<void> {
    const auto a = co_await token_of("@a:hs.test");
    clock.advance(10);
    const auto b = co_await token_of("@b:hs.test");
    clock.advance(10);
    EXPECT_TRUE(pool->find_ready("@a:hs.test", 0));  // a is now the most recent
    clock.advance(10);
    const auto c = co_await token_of("@c:hs.test");
    // b was least recently used
    co_await sleep(50ms);
    EXPECT_FALSE(hs->live(b));
    EXPECT_TRUE(hs->live(a));
    EXPECT_TRUE(hs->live(c));
    EXPECT_EQ(pool->stats().total, 2u);
    EXPECT_FALSE(pool->find_ready("@b:hs.test", 0));
  });
}

TEST_F(pool_fixture, IdleSessionsAreEvictedOnTheMockClock) {
  make_pool(1000, 4, 1h);
  run([&]() -> asio::awaitable<void> {
    const auto old_token = co_await token_of("@old:hs.test");
    clock.advance(30 * 60 * 1000);
    const auto fresh = co_await token_of("@fresh:hs.test");
    clock.advance(31 * 60 * 1000);  // old: idle 61 min, fresh: 31 min
    EXPECT_EQ(pool->evict_idle(), 1u);
    co_await sleep(50ms);
    EXPECT_FALSE(hs->live(old_token));
    EXPECT_TRUE(hs->live(fresh));
    EXPECT_EQ(pool->stats().total, 1u);
  });
}

TEST_F(pool_fixture, ExpiringTokensAreReplacedAfterLoggingTheOldOneOut) {
  hs->expires_in_ms = 60'000;
  run([&]() -> asio::awaitable<void> {
    const auto first = co_await token_of("@fay:hs.test");
    clock.advance(30'000);
    EXPECT_TRUE(pool->find_ready("@fay:hs.test", 10'000));
    EXPECT_FALSE(pool->find_ready("@fay:hs.test", 40'000));
    auto t = co_await pool->get_token("@fay:hs.test", 40'000, deadline());
    EXPECT_TRUE(t.has_value());
    if (!t) co_return;
    EXPECT_NE(t->access_token->reveal(), first);
    EXPECT_GE(*t->expires_at_ms - clock.wall_ms(), 40'000);
    EXPECT_FALSE(hs->live(first));
  });
}

TEST_F(pool_fixture, CallerDeadlinePassesButTheLoginStillCompletes) {
  hs->latency = 300ms;
  run([&]() -> asio::awaitable<void> {
    auto t = co_await pool->get_token("@gus:hs.test", 0, deadline(50ms));
    EXPECT_EQ(t.error().code, errc::deadline_exceeded);
    co_await sleep(400ms);
    EXPECT_TRUE(pool->find_ready("@gus:hs.test", 0));
    EXPECT_EQ(hs->logins, 1);
  });
}

TEST_F(pool_fixture, ShutdownRevokesEverySessionWhenAsked) {
  run([&]() -> asio::awaitable<void> {
    const auto a = co_await token_of("@a:hs.test");
    const auto b = co_await token_of("@b:hs.test");
    co_await pool->shutdown(true, deadline());
    EXPECT_FALSE(hs->live(a));
    EXPECT_FALSE(hs->live(b));
    auto t = co_await pool->get_token("@a:hs.test", 0, deadline());
    EXPECT_EQ(t.error().code, errc::shutting_down);
  });
}

// --- refresh tokens, validation, homeserver trouble --------------------------------

TEST_F(pool_fixture, RefreshableTokensAreRefreshedWithinTheMarginOnTheMockClock) {
  options.renewal.refresh_margin_ms = 60'000;
  make_pool();
  hs->grant_refresh_tokens = true;
  hs->expires_in_ms = 300'000;
  run([&]() -> asio::awaitable<void> {
    const auto first = co_await token_of("@rae:hs.test");
    clock.advance(239'000);  // 61 s left: handed out as it is
    EXPECT_TRUE(pool->find_ready("@rae:hs.test", 0));
    clock.advance(2'000);  // 59 s left: the fast path declines, the next request refreshes
    EXPECT_FALSE(pool->find_ready("@rae:hs.test", 0));
    const auto second = co_await token_of("@rae:hs.test");
    EXPECT_NE(second, first);
    EXPECT_EQ(hs->refreshes, 1);
    EXPECT_EQ(hs->logins, 1);  // no new login, no logout: the device goes on
    EXPECT_EQ(hs->logouts, 0);
    auto t = co_await pool->get_token("@rae:hs.test", 0, deadline());
    EXPECT_EQ(*t->expires_at_ms, clock.wall_ms() + 300'000);
  });
}

TEST_F(pool_fixture, MinValidAsksForARefreshAndTooLongIsRefused) {
  make_pool();
  hs->grant_refresh_tokens = true;
  hs->expires_in_ms = 300'000;
  run([&]() -> asio::awaitable<void> {
    co_await token_of("@min:hs.test");
    clock.advance(100'000);
    auto t = co_await pool->get_token("@min:hs.test", 250'000, deadline());
    EXPECT_TRUE(t.has_value());
    if (t) {
      EXPECT_GE(*t->expires_at_ms - clock.wall_ms(), 250'000);
    }
    EXPECT_EQ(hs->refreshes, 1);
    auto too_long = co_await pool->get_token("@min:hs.test", 400'000, deadline());
    EXPECT_FALSE(too_long.has_value());
    if (too_long.has_value()) co_return;
    EXPECT_EQ(too_long.error().code, errc::invalid_request);
    EXPECT_EQ(hs->refreshes, 2);  // one renewal tried, then the answer: no loop
  });
}

TEST_F(pool_fixture, ALostRefreshAnswerIsNeverReplayedTheSessionLogsInAgain) {
  options.renewal.refresh_margin_ms = 60'000;
  make_pool();
  hs->grant_refresh_tokens = true;
  hs->expires_in_ms = 100'000;
  run([&]() -> asio::awaitable<void> {
    const auto first = co_await token_of("@lost:hs.test");
    clock.advance(60'000);  // 40 s left: within the margin (50 s, half the lifetime)
    hs->lose_refresh_answers = true;
    const auto second = co_await token_of("@lost:hs.test");
    EXPECT_EQ(hs->refreshes, 1);  // sent once only
    EXPECT_EQ(hs->logins, 2);
    EXPECT_FALSE(hs->live(first));  // logged out before the login, as Synapse devices require
    EXPECT_TRUE(hs->live(second));
  });
}

TEST_F(pool_fixture, ARejectedRefreshTokenFallsBackToALogin) {
  options.renewal.refresh_margin_ms = 60'000;
  make_pool();
  hs->grant_refresh_tokens = true;
  hs->expires_in_ms = 100'000;
  run([&]() -> asio::awaitable<void> {
    co_await token_of("@rej:hs.test");
    hs->refresh_owner.clear();  // the homeserver forgot every refresh token
    clock.advance(60'000);
    const auto second = co_await token_of("@rej:hs.test");
    EXPECT_TRUE(hs->live(second));
    EXPECT_EQ(hs->refreshes, 1);
    EXPECT_EQ(hs->logins, 2);
  });
}

TEST_F(pool_fixture, BackgroundRefreshRenewsBeforeAnyRequestWaits) {
  options.renewal.refresh_margin_ms = 60'000;
  options.background_refresh = true;
  make_pool();
  hs->grant_refresh_tokens = true;
  hs->expires_in_ms = 300'000;
  run([&]() -> asio::awaitable<void> {
    const auto first = co_await token_of("@bg:hs.test");
    clock.advance(170'000);  // 130 s left
    EXPECT_EQ(pool->refresh_due(), 0u);
    clock.advance(20'000);  // 110 s left: within twice the margin
    EXPECT_EQ(pool->refresh_due(), 1u);
    auto during = pool->find_ready("@bg:hs.test", 0);  // still served while it refreshes
    EXPECT_TRUE(during);
    if (!during) co_return;
    EXPECT_EQ(during->access_token->reveal(), first);
    co_await sleep(50ms);
    EXPECT_EQ(hs->refreshes, 1);
    auto after = pool->find_ready("@bg:hs.test", 0);
    EXPECT_TRUE(after);
    if (!after) co_return;
    EXPECT_NE(after->access_token->reveal(), first);
  });
}

TEST_F(pool_fixture, IdleSessionsAreValidatedAndADeadOneIsReplaced) {
  options.renewal.validate_after_ms = 10'000;
  make_pool();
  run([&]() -> asio::awaitable<void> {
    const auto first = co_await token_of("@val:hs.test");
    clock.advance(5'000);
    EXPECT_EQ(co_await token_of("@val:hs.test"), first);
    EXPECT_EQ(hs->whoamis, 0);
    clock.advance(11'000);
    EXPECT_FALSE(pool->find_ready("@val:hs.test", 0));
    EXPECT_EQ(co_await token_of("@val:hs.test"), first);  // alive
    EXPECT_EQ(hs->whoamis, 1);
    hs->token_owner.clear();  // killed behind our back
    clock.advance(11'000);
    const auto replaced = co_await token_of("@val:hs.test");
    EXPECT_NE(replaced, first);
    EXPECT_TRUE(hs->live(replaced));
    EXPECT_EQ(hs->whoamis, 2);
    EXPECT_EQ(hs->logins, 2);
  });
}

TEST_F(pool_fixture, RateLimitedLoginsAreWaitedOutForCallersThatCanWait) {
  make_pool(1000, 2);
  hs->rate_limit_logins = 3;
  hs->retry_after_ms = 100;
  run([&]() -> asio::awaitable<void> {
    std::vector<std::string> users;
    for (int i = 0; i < 6; ++i) users.push_back("@burst" + std::to_string(i) + ":hs.test");
    int ok = 0;
    for (const auto& u : users) {
      asio::co_spawn(io, token_of(u), [&](std::exception_ptr, std::string t) { ok += !t.empty(); });
    }
    co_await sleep(1500ms);
    EXPECT_EQ(ok, 6);
    EXPECT_EQ(hs->logins, 6 + 3);
  });
}

TEST_F(pool_fixture, RateLimitPastTheCallersDeadlineIsAnsweredAt429AtOnce) {
  make_pool();
  hs->rate_limit_logins = 1;
  hs->retry_after_ms = 20'000;
  run([&]() -> asio::awaitable<void> {
    const auto started = clock.steady_ms();
    auto t = co_await pool->get_token("@slow:hs.test", 0, deadline(2s));
    EXPECT_FALSE(t.has_value());
    if (t.has_value()) co_return;
    EXPECT_EQ(t.error().code, errc::upstream_rate_limited);
    EXPECT_GT(*t.error().retry_after_ms, 19'000);
    EXPECT_LT(since(started), 1000);  // not the whole deadline
  });
}

TEST_F(pool_fixture, ALongRateLimitHoldsNoLoginSlotAndNewCallersGet429AtOnce) {
  make_pool(1000, 2);
  hs->rate_limit_logins = 2;
  hs->retry_after_ms = 60'000;
  run([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 6; ++i) {  // more users than login slots, one after another
      const auto started = clock.steady_ms();
      auto t = co_await pool->get_token("@held" + std::to_string(i) + ":hs.test", 0, deadline(2s));
      EXPECT_FALSE(t.has_value());
      if (t.has_value()) co_return;
      EXPECT_EQ(t.error().code, errc::upstream_rate_limited) << i;
      EXPECT_GT(t.error().retry_after_ms.value_or(0), 50'000) << i;
      EXPECT_LT(since(started), 500) << i;
    }
    co_await sleep(50ms);
    EXPECT_EQ(pool->homeservers().front().logins_in_flight, 0u) << "a pause nobody waits for";
    EXPECT_EQ(hs->logins, 1);  // the one that met the 429; the others never went out
  });
}

TEST_F(pool_fixture, ShutdownAnswersEveryWaitingCallerAndCancelsHangingLogins) {
  make_pool(1000, 4);
  hs->hang = true;
  run([&]() -> asio::awaitable<void> {
    int answered = 0, shutting_down = 0;
    for (int i = 0; i < 50; ++i)
      asio::co_spawn(io, error_of("@wait" + std::to_string(i) + ":hs.test", 30s),
                     [&](std::exception_ptr, boost::system::error_code ec) {
                       ++answered;
                       shutting_down += ec == errc::shutting_down;
                     });
    co_await sleep(50ms);
    EXPECT_EQ(hs->in_flight, 4);  // the login cap: four hang at the homeserver
    const auto started = clock.steady_ms();
    co_await pool->shutdown(false, deadline(2s));
    EXPECT_LT(since(started), 500);
    co_await sleep(10ms);
    EXPECT_EQ(answered, 50);
    EXPECT_EQ(shutting_down, 50);
    EXPECT_EQ(hs->in_flight, 0);
    EXPECT_GE(hs->cancellations, 1);
    EXPECT_EQ(pool->background_tasks(), 0u);
  });
}

TEST_F(pool_fixture, ShutdownRevokesWithinTheGraceEvenWhenLogoutsHang) {
  make_pool();
  run([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) (void)co_await token_of("@r" + std::to_string(i) + ":hs.test");
    hs->hang = true;
    const auto started = clock.steady_ms();
    co_await pool->shutdown(true, deadline(1s));
    const auto took = since(started);
    EXPECT_LT(took, 1200);
    EXPECT_GT(took, 500);  // the logouts had their time
    EXPECT_EQ(pool->background_tasks(), 0u);
  });
}

TEST_F(pool_fixture, APoolDestroyedWithLoginsInFlightLeavesNothingBehind) {
  make_pool();
  hs->hang = true;
  bool answered = false;
  asio::co_spawn(io, error_of("@orphan:hs.test", 30s),
                 [&](std::exception_ptr, boost::system::error_code) { answered = true; });
  run_until([&] { return hs->in_flight == 1; });
  io.restart();
  EXPECT_EQ(hs->in_flight, 1);
  // TearDown destroys the pool and checks the io_context runs dry (it would wait an hour for the
  // hanging login if the destructor did not cancel it).
  pool.reset();
  run_until([&] { return answered; });
  io.restart();
  EXPECT_TRUE(answered);
}

TEST_F(pool_fixture, TransientFailuresAreRetriedWithBackoff) {
  make_pool();
  hs->unreachable_logins = 2;
  run([&]() -> asio::awaitable<void> {
    const auto t = co_await token_of("@retry:hs.test");
    EXPECT_TRUE(hs->live(t));
    EXPECT_EQ(hs->logins, 3);
    auto status = pool->homeservers().front();
    EXPECT_TRUE(status.healthy);
    EXPECT_EQ(status.circuit, circuit_state::closed);
  });
}

TEST_F(pool_fixture, AnOpenCircuitAnswersAtOnceWhoCannotWaitWhileCachedTokensAreServed) {
  options.health.base_backoff_ms = 2'000;  // opens for 4-8 s after the third failure
  make_pool();
  run([&]() -> asio::awaitable<void> {
    const auto cached = co_await token_of("@cached:hs.test");
    hs->unreachable = true;
    auto first = co_await pool->get_token("@new1:hs.test", 0, deadline(30s));
    EXPECT_EQ(first.error().code, errc::upstream_unavailable);
    EXPECT_EQ(pool->homeservers().front().circuit, circuit_state::open);
    const auto logins_before = hs->logins;
    const auto started = clock.steady_ms();
    auto fast = co_await pool->get_token("@new2:hs.test", 0, deadline(1s));
    EXPECT_EQ(fast.error().code, errc::upstream_unavailable);
    EXPECT_GT(fast.error().retry_after_ms.value_or(0), 1'000);  // when to come back
    EXPECT_EQ(hs->logins, logins_before);                       // nothing was sent
    EXPECT_LT(since(started), 200);
    auto still = pool->find_ready("@cached:hs.test", 0);
    EXPECT_TRUE(still);
    if (!still) co_return;
    EXPECT_EQ(still->access_token->reveal(), cached);
  });
}

TEST_F(pool_fixture, CallersThatCanWaitOutTheOpenCircuitGetTheirTokenAfterOneProbe) {
  options.health.base_backoff_ms = 100;  // the third failure opens it for 200-400 ms
  make_pool(1000, 4);
  hs->unreachable_logins = 3;  // three 500s in a row, then a healthy homeserver
  run([&]() -> asio::awaitable<void> {
    int ok = 0, done = 0;
    for (int i = 0; i < 3; ++i)
      asio::co_spawn(io, token_of("@u" + std::to_string(i) + ":hs.test"),
                     [&](std::exception_ptr, std::string t) { ok += !t.empty(), ++done; });
    while (done < 3) co_await sleep(20ms);
    EXPECT_EQ(ok, 3);
    EXPECT_EQ(hs->logins, 3 + 3);  // the three failures, one probe, then the two others
    EXPECT_EQ(pool->homeservers().front().circuit, circuit_state::closed);
  });
}

TEST_F(pool_fixture, AfterAHangingHomeserverRecoversANewUserWaitsForTheProbeNotA503) {
  options.health.base_backoff_ms = 300;  // the third failure in a row opens it for 0.6-1.2 s
  make_pool();
  hs->unreachable = true;
  run([&]() -> asio::awaitable<void> {
    auto down = co_await pool->get_token("@down:hs.test", 0, deadline(5s));  // three tries
    EXPECT_FALSE(down.has_value());
    EXPECT_EQ(pool->homeservers().front().circuit, circuit_state::open);
    hs->unreachable = false;  // recovered while the circuit is still open
    const auto logins_before = hs->logins;
    const auto t = co_await pool->get_token("@fresh:hs.test", 0, deadline(30s));
    EXPECT_TRUE(t.has_value()) << "a caller whose deadline covers the open window waits for it";
    EXPECT_EQ(hs->logins, logins_before + 1);  // the probe was its login
    EXPECT_EQ(pool->homeservers().front().circuit, circuit_state::closed);
  });
}

TEST_F(pool_fixture, ALoginInFlightAtACrashGetsACleanDeviceBeforeAnyTokenIsHandedOut) {
  // The last run sent a login and died before its answer: the homeserver issued a token that
  // nobody holds (Synapse keeps it alive across re-logins on the same device).
  hs->token_owner["orphan_tok"] = "@crashed:hs.test";
  store::stored_session row;
  row.user_id = "@crashed:hs.test";
  row.login_in_flight = true;
  EXPECT_EQ(pool->restore({row}).restored, 1u);
  run([&]() -> asio::awaitable<void> {
    const auto t = co_await token_of("@crashed:hs.test");
    EXPECT_FALSE(hs->live("orphan_tok")) << "the orphan must be dead before a token is handed out";
    EXPECT_TRUE(hs->live(t));
    EXPECT_EQ(hs->logins, 2);  // log in, log out (the whole device), log in
    EXPECT_EQ(hs->logouts, 1);
    (void)co_await token_of("@fresh:hs.test");  // a user with no such mark: one login
    EXPECT_EQ(hs->logins, 3);
  });
}

TEST_F(pool_fixture, WhileTheCircuitIsOpenRefreshableTokensAreServedUntilTheyExpire) {
  options.renewal.refresh_margin_ms = 60'000;
  // One failure opens the circuit, for 300-600 s: longer than the token has left.
  options.health.open_after = 1;
  options.health.base_backoff_ms = options.health.max_backoff_ms = 600'000;
  make_pool();
  hs->grant_refresh_tokens = true;
  hs->expires_in_ms = 300'000;
  run([&]() -> asio::awaitable<void> {
    const auto token = co_await token_of("@keep:hs.test");
    hs->unreachable = true;
    auto down = co_await pool->get_token("@other:hs.test", 0, deadline());  // opens the circuit
    EXPECT_EQ(pool->homeservers().front().circuit, circuit_state::open);
    clock.advance(250'000);  // 50 s left: inside the margin, and no refresh can go out
    auto t = co_await pool->get_token("@keep:hs.test", 10'000, deadline());
    EXPECT_TRUE(t.has_value());
    if (t) {
      EXPECT_EQ(t->access_token->reveal(), token);
    }
    EXPECT_TRUE(hs->live(token)) << "not logged out";
    EXPECT_EQ(hs->refreshes, 0);
    auto too_much = co_await pool->get_token("@keep:hs.test", 55'000, deadline());
    EXPECT_FALSE(too_much.has_value());
    if (!too_much) {
      EXPECT_EQ(too_much.error().code, errc::upstream_unavailable);
    }
    (void)down;
  });
}

}  // namespace
