// homeserver_health on plain millisecond numbers: rate-limit pauses, exponential
// backoff with jitter, and the circuit breaker's closed -> open -> half open -> closed.
#include <gtest/gtest.h>

#include "sessions/homeserver_health.hpp"

using namespace mxp::sessions;

TEST(HomeserverHealth, RateLimitPausesEveryRequestForRetryAfter) {
  homeserver_health h;
  EXPECT_EQ(h.admit(0), admission::go);
  h.on_rate_limited(1'000, 19'916);
  EXPECT_TRUE(h.rate_limited(1'000));
  EXPECT_EQ(h.admit(1'000), admission::wait);
  EXPECT_EQ(h.not_before_ms(), 20'916);
  EXPECT_EQ(h.admit(20'916), admission::go);
  EXPECT_EQ(h.circuit(1'000), circuit_state::closed);  // a rate limit is not an outage
  h.on_rate_limited(30'000, 0);                        // no retry_after_ms: the default
  EXPECT_EQ(h.not_before_ms(), 31'000);
}

TEST(HomeserverHealth, BackoffDoublesUpToTheCapWithJitter) {
  homeserver_health h{{.base_backoff_ms = 100, .max_backoff_ms = 1'000, .open_after = 100}};
  const std::int64_t expected_full[] = {100, 200, 400, 800, 1000, 1000};
  std::int64_t now = 0;
  for (auto full : expected_full) {
    h.on_unreachable(now, 0.999999);  // the top of the jitter range
    EXPECT_NEAR(static_cast<double>(h.not_before_ms() - now), static_cast<double>(full), 1.0);
    EXPECT_EQ(h.admit(now), admission::wait);
    now = h.not_before_ms();
    EXPECT_EQ(h.admit(now), admission::go);
  }
  homeserver_health low{{.base_backoff_ms = 100, .max_backoff_ms = 1'000, .open_after = 100}};
  low.on_unreachable(0, 0.0);  // the bottom: half of it
  EXPECT_EQ(low.not_before_ms(), 50);
}

TEST(HomeserverHealth, CircuitOpensAfterConsecutiveFailuresAndClosesOnSuccess) {
  homeserver_health h{{.base_backoff_ms = 100, .max_backoff_ms = 10'000, .open_after = 3}};
  h.on_unreachable(0, 1.0);
  h.on_unreachable(100, 1.0);
  EXPECT_EQ(h.circuit(100), circuit_state::closed);
  EXPECT_EQ(h.admit(150), admission::wait);  // backing off
  h.on_unreachable(300, 1.0);                // third in a row: 400 ms open
  EXPECT_EQ(h.circuit(300), circuit_state::open);
  EXPECT_EQ(h.admit(699), admission::wait);  // waited out like a 429, never refused outright
  EXPECT_EQ(h.not_before_ms(), 700);         // callers with shorter deadlines answer now
  EXPECT_EQ(h.circuit(700), circuit_state::half_open);
  EXPECT_EQ(h.admit(700), admission::probe);  // exactly one probe
  h.begin_probe();
  EXPECT_EQ(h.admit(700), admission::wait_for_probe);  // everyone else waits for its outcome
  h.on_unreachable(700, 1.0);                          // probe failed: open again, longer
  h.end_probe();
  EXPECT_EQ(h.admit(1'499), admission::wait);
  EXPECT_EQ(h.admit(1'500), admission::probe);
  h.begin_probe();
  h.on_success();
  h.end_probe();
  EXPECT_EQ(h.circuit(1'500), circuit_state::closed);
  EXPECT_EQ(h.consecutive_failures(), 0u);
  EXPECT_EQ(h.admit(1'500), admission::go);
}

TEST(HomeserverHealth, AProbeThatEndsWithoutAnOutcomeLetsTheNextOneGo) {
  homeserver_health h{{.base_backoff_ms = 100, .max_backoff_ms = 10'000, .open_after = 1}};
  h.on_unreachable(0, 1.0);
  EXPECT_EQ(h.admit(100), admission::probe);
  h.begin_probe();
  h.end_probe();  // cancelled (shutdown) or refused locally: nothing learnt
  EXPECT_EQ(h.admit(100), admission::probe);
}
