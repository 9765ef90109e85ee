// virtual_clock: timers that fire when time is advanced, and the simulation loop.
#include "sessions/virtual_clock.hpp"

#include <algorithm>
#include <vector>

namespace mxp::sessions {

void virtual_clock::arm(boost::asio::steady_timer& timer, std::int64_t at_ms) {
  using tp = std::chrono::steady_clock::time_point;
  disarm(timer);
  if (at_ms <= steady_) {
    timer.expires_at(tp::min());  // due already: the wait completes at once
    return;
  }
  timer.expires_at(tp::max());  // fired by advance_to() cancelling it
  armed_.emplace(at_ms, &timer);
}

void virtual_clock::disarm(boost::asio::steady_timer& timer) noexcept {
  for (auto it = armed_.begin(); it != armed_.end();)
    it = it->second == &timer ? armed_.erase(it) : std::next(it);
}

void virtual_clock::advance_to(std::int64_t steady_ms) {
  steady_ = std::max(steady_, steady_ms);
  std::vector<boost::asio::steady_timer*> due;
  while (!armed_.empty() && armed_.begin()->first <= steady_) {
    due.push_back(armed_.begin()->second);
    armed_.erase(armed_.begin());
  }
  for (auto* t : due) t->cancel();
}

std::optional<std::int64_t> virtual_clock::next_due() const {
  if (armed_.empty()) return std::nullopt;
  return armed_.begin()->first;
}

bool virtual_clock::run_until(boost::asio::io_context& io, const std::function<bool()>& done,
                              std::int64_t limit_ms) {
  const auto limit = steady_ + limit_ms;
  for (;;) {
    io.restart();
    io.poll();
    if (done()) return true;
    const auto due = next_due();
    if (!due || *due > limit) return false;
    advance_to(*due);
  }
}

}  // namespace mxp::sessions
