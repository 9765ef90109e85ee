// Backoff, rate-limit pause and circuit breaker of one homeserver.
#include "sessions/homeserver_health.hpp"

#include <algorithm>

namespace mxp::sessions {

std::string_view to_string(circuit_state s) noexcept {
  switch (s) {
    case circuit_state::closed:
      return "closed";
    case circuit_state::open:
      return "open";
    case circuit_state::half_open:
      return "half_open";
  }
  return "unknown";
}

circuit_state homeserver_health::circuit(std::int64_t now_ms) const noexcept {
  if (failures_ < options_.open_after) return circuit_state::closed;
  return now_ms < backoff_until_ms_ ? circuit_state::open : circuit_state::half_open;
}

admission homeserver_health::admit(std::int64_t now_ms) const noexcept {
  if (now_ms < not_before_ms()) return admission::wait;  // rate limited, backoff, circuit open
  if (circuit(now_ms) == circuit_state::half_open)
    return probing_ ? admission::wait_for_probe : admission::probe;
  return admission::go;
}

void homeserver_health::on_success() noexcept {
  failures_ = 0;
  backoff_until_ms_ = 0;
}

void homeserver_health::on_rate_limited(std::int64_t now_ms, std::int64_t retry_after_ms) noexcept {
  if (retry_after_ms <= 0) retry_after_ms = options_.default_retry_after_ms;
  rate_limited_until_ms_ = std::max(rate_limited_until_ms_, now_ms + retry_after_ms);
  on_success();  // it answered: a rate limit is not an outage
}

void homeserver_health::on_unreachable(std::int64_t now_ms, double jitter) noexcept {
  ++failures_;
  std::int64_t backoff = options_.base_backoff_ms;
  for (unsigned i = 1; i < failures_ && backoff < options_.max_backoff_ms; ++i) backoff *= 2;
  backoff = std::min(backoff, options_.max_backoff_ms);
  jitter = std::clamp(jitter, 0.0, 1.0);
  backoff_until_ms_ =
      now_ms + static_cast<std::int64_t>(static_cast<double>(backoff) * (0.5 + 0.5 * jitter));
}

}  // namespace mxp::sessions
