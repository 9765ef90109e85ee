// virtual_clock: a session_clock whose time moves only when told to, for tests and
// benchmarks. Timers armed on it fire when the clock is advanced past their time;
// run_until() runs an io_context as a discrete-event simulation: it runs whatever is
// ready, and when nothing is, jumps to the next timer. Token expiry, refresh margins,
// idle eviction, backoff, 429 pauses and circuit windows then take no real time, and
// no outcome depends on how fast the machine is.
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>

#include "sessions/session_clock.hpp"

namespace mxp::sessions {

class virtual_clock final : public session_clock {
 public:
  explicit virtual_clock(std::int64_t steady_ms = 1'000'000, std::int64_t wall_ms = 1'000'000)
      : steady_(steady_ms), wall_offset_(wall_ms - steady_ms) {}

  std::int64_t steady_ms() const noexcept override { return steady_; }
  std::int64_t wall_ms() const noexcept override { return steady_ + wall_offset_; }
  void arm(boost::asio::steady_timer& timer, std::int64_t at_ms) override;
  void disarm(boost::asio::steady_timer& timer) noexcept override;

  // Moves time forward (never back), firing every timer due by then.
  void advance(std::int64_t ms) { advance_to(steady_ + ms); }
  void advance_to(std::int64_t steady_ms);
  // The earliest armed timer's time, if any.
  std::optional<std::int64_t> next_due() const;
  std::size_t armed() const noexcept { return armed_.size(); }

  // Runs `io` until done() holds: ready handlers first, then time jumps to the next timer.
  // False when nothing is left to run or time would pass `limit_ms` from now first.
  bool run_until(boost::asio::io_context& io, const std::function<bool()>& done,
                 std::int64_t limit_ms = 24LL * 3600 * 1000);

 private:
  std::int64_t steady_;
  std::int64_t wall_offset_;
  std::multimap<std::int64_t, boost::asio::steady_timer*> armed_;
};

}  // namespace mxp::sessions
