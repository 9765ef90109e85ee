// system_session_clock: real steady and wall time.
#include "sessions/session_clock.hpp"

#include <chrono>

namespace mxp::sessions {

namespace {
template <typename Clock>
std::int64_t ms_of(typename Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
}  // namespace

std::int64_t system_session_clock::steady_ms() const noexcept {
  return ms_of<std::chrono::steady_clock>(std::chrono::steady_clock::now());
}

std::int64_t system_session_clock::wall_ms() const noexcept {
  return ms_of<std::chrono::system_clock>(std::chrono::system_clock::now());
}

void system_session_clock::arm(boost::asio::steady_timer& timer, std::int64_t at_ms) {
  using std::chrono::steady_clock;
  // Far-future deadlines (never_ms, or what a time_point::max() converts to) stay far.
  const auto max_ms = ms_of<steady_clock>(steady_clock::time_point::max());
  timer.expires_at(at_ms >= max_ms ? steady_clock::time_point::max()
                                   : steady_clock::time_point{std::chrono::milliseconds{at_ms}});
}

system_session_clock& system_session_clock::instance() {
  static system_session_clock clock;
  return clock;
}

}  // namespace mxp::sessions
