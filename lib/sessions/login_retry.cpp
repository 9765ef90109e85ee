// The login retry policy: classification of failures and what a pause is reported as.
#include "sessions/login_retry.hpp"

#include <fmt/format.h>

namespace mxp::sessions {

pool_error local_error(errc code, std::string diagnostic) {
  pool_error e;
  e.code = code;
  e.diagnostic = std::move(diagnostic);
  return e;
}

bool is_unreachable(const pool_error& e) noexcept {
  return e.code == errc::upstream_unavailable || e.code == errc::upstream_timeout ||
         e.code == errc::discovery_failed;
}

bool is_transient(const pool_error& e) noexcept {
  return is_unreachable(e) || e.http_status >= 500 || e.code == errc::upstream_bad_response ||
         e.retry_with_backoff;
}

bool may_have_issued_token(const pool_error& e) noexcept {
  if (e.http_status == 0) return e.request_sent;
  return e.http_status < 400 || e.http_status == 502 || e.http_status == 504;
}

retry_decision login_retry::on_failure(homeserver_health& health, const pool_error& failure,
                                       std::int64_t now_ms, double jitter) const noexcept {
  if (failure.code == errc::shutting_down) return retry_decision::report;
  if (failure.code == errc::upstream_rate_limited) {
    // Waited out whatever the count of attempts: a 429 is the homeserver asking for patience.
    health.on_rate_limited(now_ms, failure.retry_after_ms.value_or(0));
    return retry_decision::again;
  }
  if (!is_transient(failure)) {
    health.on_success();  // it answered, and refused: trying again would not help
    return retry_decision::report;
  }
  health.on_unreachable(now_ms, jitter);
  return attempts_ >= max_attempts_ ? retry_decision::report : retry_decision::again;
}

pool_error pause_reason(const homeserver_health& health, std::int64_t now_ms,
                        const std::optional<pool_error>& own_failure) {
  const auto wait_ms = health.not_before_ms() - now_ms;
  if (health.rate_limited(now_ms)) {
    auto why = local_error(errc::upstream_rate_limited,
                           fmt::format("homeserver rate limit: logins paused for {} ms", wait_ms));
    why.retry_after_ms = wait_ms;
    return why;
  }
  // After a try of its own, the caller hears what that try met, and when the next one goes.
  auto why = own_failure ? *own_failure
                         : local_error(errc::upstream_unavailable,
                                       health.circuit(now_ms) == circuit_state::open
                                           ? fmt::format("homeserver unreachable ({} failures in "
                                                         "a row): circuit open for {} ms",
                                                         health.consecutive_failures(), wait_ms)
                                           : fmt::format("homeserver failing: backing off for "
                                                         "{} ms",
                                                         wait_ms));
  why.retry_after_ms = wait_ms;
  return why;
}

}  // namespace mxp::sessions
