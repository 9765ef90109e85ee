// session_pool against a scripted homeserver_client: single flight, login caps,
// failures, invalidation, revocation, LRU and idle eviction (mock clock).
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

namespace asio = boost::asio;
using namespace mxp;
using namespace mxp::sessions;
using namespace std::chrono_literals;

namespace {

// A homeserver that behaves like Synapse for devices: re-login keeps old tokens
// live; logging out any token of a device kills all of them.
class scripted_homeserver final : public matrix::homeserver_client {
 public:
  explicit scripted_homeserver(asio::any_io_executor ex) : ex_(std::move(ex)) {}
  std::string name = "hs.test";
  std::chrono::milliseconds latency{5};
  int fail_logins = 0;  // the next N logins fail with 403
  bool unreachable = false;
  std::optional<std::int64_t> expires_in_ms;
  int logins = 0, logouts = 0, in_flight = 0, peak_in_flight = 0;
  std::vector<std::string> calls;                      // "login @u" / "logout @u"
  std::map<std::string, std::string> token_owner;      // live token -> user

  const std::string& server_name() const override { return name; }
  std::string_view method_name() const override { return "shared_secret"; }
  std::string login_type() const override { return "com.devture.shared_secret_auth"; }
  const std::string& base_url() const override { return url; }
  std::string url = "http://hs.test";
  void close_idle_connections() override {}

  asio::awaitable<matrix::upstream_result<matrix::login_grant>> login(std::string user_id) override {
    ++in_flight;
    peak_in_flight = std::max(peak_in_flight, in_flight);
    co_await delay();
    --in_flight;
    ++logins;
    calls.push_back("login " + user_id);
    if (unreachable) co_return unexpected{error(errc::upstream_unavailable, 0)};
    if (fail_logins > 0) {
      --fail_logins;
      co_return unexpected{error(errc::upstream_refused, 403)};
    }
    auto token = "tok_" + std::to_string(++counter_);
    token_owner[token] = user_id;
    co_return matrix::login_grant{secret_string{token}, user_id, std::string{"DEV"}, expires_in_ms};
  }
  asio::awaitable<matrix::upstream_result<matrix::logout_outcome>> logout(secret_string token) override {
    co_await delay();
    ++logouts;
    if (unreachable) co_return unexpected{error(errc::upstream_unavailable, 0)};
    auto it = token_owner.find(token.reveal());
    if (it == token_owner.end()) co_return matrix::logout_outcome{false};
    const auto user = it->second;
    calls.push_back("logout " + user);
    std::erase_if(token_owner, [&](const auto& kv) { return kv.second == user; });  // whole device
    co_return matrix::logout_outcome{true};
  }
  asio::awaitable<matrix::upstream_result<std::string>> whoami(secret_string token) override {
    auto it = token_owner.find(token.reveal());
    if (it == token_owner.end()) co_return unexpected{error(errc::upstream_refused, 401)};
    co_return it->second;
  }
  bool live(const std::string& token) const { return token_owner.count(token) > 0; }

 private:
  asio::awaitable<void> delay() {
    asio::steady_timer t{ex_, latency};
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  static matrix::upstream_error error(errc code, int status) {
    matrix::upstream_error e;
    e.code = code;
    e.http_status = status;
    e.errcode = status == 403 ? "M_FORBIDDEN" : "";
    return e;
  }
  asio::any_io_executor ex_;
  int counter_ = 0;
};

struct pool_fixture : ::testing::Test {
  asio::io_context io;
  std::int64_t clock_ms = 1'000'000;
  scripted_homeserver* hs = nullptr;
  std::unique_ptr<session_pool> pool;

  void make_pool(std::size_t max = 1000, unsigned max_logins = 4, std::chrono::milliseconds idle = 1h) {
    auto client = std::make_unique<scripted_homeserver>(io.get_executor());
    hs = client.get();
    std::map<std::string, homeserver_entry, std::less<>> hss;
    hss.emplace("hs.test", homeserver_entry{std::move(client), max_logins});
    pool = std::make_unique<session_pool>(io.get_executor(),
                                          pool_options{max, idle, true, [this] { return clock_ms; }}, std::move(hss));
  }
  void SetUp() override { make_pool(); }

  // Runs `body` to completion on the io_context; fails instead of hanging.
  template <typename F>
  void run(F body) {
    bool done = false;
    asio::co_spawn(io, body(), [&](std::exception_ptr ep) {
      done = true;
      if (ep) std::rethrow_exception(ep);
    });
    io.run_for(10s);
    io.restart();
    ASSERT_TRUE(done) << "coroutine did not finish within 10 s";
  }
  auto deadline(std::chrono::milliseconds d = 5s) { return std::chrono::steady_clock::now() + d; }

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
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      auto t = co_await pool->get_token("@alice:hs.test", 0, deadline());
      EXPECT_TRUE(t.has_value());
      if (t) tokens.push_back(t->access_token->reveal());
      ++finished;
    }, [](std::exception_ptr ep) { if (ep) std::rethrow_exception(ep); });
  }
  io.run_for(5s);
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
    asio::co_spawn(io, [&, i]() -> asio::awaitable<void> {
      auto t = co_await pool->get_token("@user" + std::to_string(i) + ":hs.test", 0, deadline());
      if (t) ++ok;
    }, [](std::exception_ptr ep) { if (ep) std::rethrow_exception(ep); });
  }
  io.run_for(5s);
  EXPECT_EQ(ok, 20);
  EXPECT_EQ(hs->logins, 20);
  EXPECT_EQ(hs->peak_in_flight, 3);
}

TEST_F(pool_fixture, FailedLoginFailsItsWaitersAndIsRetriedLater) {
  hs->fail_logins = 1;
  int failures = 0;
  for (int i = 0; i < 10; ++i) {
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      auto t = co_await pool->get_token("@bob:hs.test", 0, deadline());
      EXPECT_FALSE(t.has_value());
      if (t) co_return;
      EXPECT_EQ(t.error().code, errc::upstream_refused);
      EXPECT_EQ(t.error().http_status, 403);
      ++failures;
    }, [](std::exception_ptr ep) { if (ep) std::rethrow_exception(ep); });
  }
  io.run_for(5s);
  io.restart();
  EXPECT_EQ(failures, 10);
  EXPECT_EQ(hs->logins, 1);
  run([&]() -> asio::awaitable<void> { EXPECT_FALSE((co_await token_of("@bob:hs.test")).empty()); });
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
    auto stale = co_await pool->invalidate("@carol:hs.test", secret_string{"not-the-token"}, deadline());
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
  EXPECT_EQ(hs->calls, (std::vector<std::string>{"login @carol:hs.test", "logout @carol:hs.test", "login @carol:hs.test"}));
}

TEST_F(pool_fixture, UnreachableLogoutIsRetriedBeforeTheNextLogin) {
  run([&]() -> asio::awaitable<void> {
    const auto first = co_await token_of("@dave:hs.test");
    hs->unreachable = true;
    EXPECT_TRUE(*co_await pool->invalidate("@dave:hs.test", secret_string{first}, deadline()));
    EXPECT_TRUE(hs->live(first));  // could not be logged out
    auto t = co_await pool->get_token("@dave:hs.test", 0, deadline());
    EXPECT_EQ(t.error().code, errc::upstream_unavailable);
    hs->unreachable = false;
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
    clock_ms += 10;
    const auto b = co_await token_of("@b:hs.test");
    clock_ms += 10;
    EXPECT_TRUE(pool->find_ready("@a:hs.test", 0));  // a is now the most recent
    clock_ms += 10;
    const auto c = co_await token_of("@c:hs.test");
    // b was least recently used
    asio::steady_timer settle{io, 50ms};
    co_await settle.async_wait(asio::use_awaitable);
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
    clock_ms += 30 * 60 * 1000;
    const auto fresh = co_await token_of("@fresh:hs.test");
    clock_ms += 31 * 60 * 1000;  // old: idle 61 min, fresh: 31 min
    EXPECT_EQ(pool->evict_idle(), 1u);
    asio::steady_timer settle{io, 50ms};
    co_await settle.async_wait(asio::use_awaitable);
    EXPECT_FALSE(hs->live(old_token));
    EXPECT_TRUE(hs->live(fresh));
    EXPECT_EQ(pool->stats().total, 1u);
  });
}

TEST_F(pool_fixture, ExpiringTokensAreReplacedAfterLoggingTheOldOneOut) {
  hs->expires_in_ms = 60'000;
  run([&]() -> asio::awaitable<void> {
    const auto first = co_await token_of("@fay:hs.test");
    clock_ms += 30'000;
    EXPECT_TRUE(pool->find_ready("@fay:hs.test", 10'000));
    EXPECT_FALSE(pool->find_ready("@fay:hs.test", 40'000));
    auto t = co_await pool->get_token("@fay:hs.test", 40'000, deadline());
    EXPECT_TRUE(t.has_value());
    if (!t) co_return;
    EXPECT_NE(t->access_token->reveal(), first);
    EXPECT_GE(*t->expires_at_ms - clock_ms, 40'000);
    EXPECT_FALSE(hs->live(first));
  });
}

TEST_F(pool_fixture, CallerDeadlinePassesButTheLoginStillCompletes) {
  hs->latency = 300ms;
  run([&]() -> asio::awaitable<void> {
    auto t = co_await pool->get_token("@gus:hs.test", 0, deadline(50ms));
    EXPECT_EQ(t.error().code, errc::deadline_exceeded);
    asio::steady_timer settle{io, 400ms};
    co_await settle.async_wait(asio::use_awaitable);
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

}  // namespace
