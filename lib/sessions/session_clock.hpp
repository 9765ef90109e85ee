// session_clock: the one source of time for the session pool, its wait queues and
// every timer they arm. The daemon uses system_session_clock (steady and system
// clocks, real asio timers); tests inject a virtual clock (tests/support/mock_clock)
// so that expiry, refresh margins, idle eviction, backoff, 429 pauses and circuit
// windows take no real time at all.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <limits>

namespace mxp::sessions {

class session_clock {
 public:
  static constexpr std::int64_t never_ms = std::numeric_limits<std::int64_t>::max();
  virtual ~session_clock() = default;
  // Monotonic milliseconds: deadlines, backoffs, pauses.
  virtual std::int64_t steady_ms() const noexcept = 0;
  // Wall-clock milliseconds since the epoch: token expiry and what is persisted.
  virtual std::int64_t wall_ms() const noexcept = 0;
  // Makes `timer` complete at steady time `at_ms` (never_ms: not by itself). A virtual clock
  // fires a timer by cancelling it, so callers tell a deadline from an early wake-up by their
  // own flag, never by the error code. disarm() before the timer is destroyed.
  virtual void arm(boost::asio::steady_timer& timer, std::int64_t at_ms) = 0;
  virtual void disarm(boost::asio::steady_timer& timer) noexcept = 0;
};

// Real time: steady_clock and system_clock, the timer's own expiry.
class system_session_clock final : public session_clock {
 public:
  std::int64_t steady_ms() const noexcept override;
  std::int64_t wall_ms() const noexcept override;
  void arm(boost::asio::steady_timer& timer, std::int64_t at_ms) override;
  void disarm(boost::asio::steady_timer&) noexcept override {}
  static system_session_clock& instance();
};

}  // namespace mxp::sessions
