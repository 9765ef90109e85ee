// login_retry: the retry, backoff and rate-limit policy of one login operation, without
// I/O, beside homeserver_health (which holds the homeserver-wide state it updates).
// An attempt that failed is classified and recorded; the policy says whether the login
// tries again (after whatever pause the health then imposes) or reports the failure,
// and what callers that cannot wait for a pause are told.
#pragma once

#include <cstdint>
#include <optional>

#include "core/errc.hpp"
#include "matrix/homeserver_client.hpp"
#include "sessions/homeserver_health.hpp"

namespace mxp::sessions {

using pool_error = matrix::upstream_error;

pool_error local_error(errc code, std::string diagnostic);

// No answer at all: connection refused or reset, timeout, discovery failed.
bool is_unreachable(const pool_error& e) noexcept;
// Worth another try after a backoff: no answer, the homeserver's own 5xx, or a 2xx it cannot
// have meant (garbage, wrong shape). The last is retried too so that a broken homeserver or
// proxy meets the backoff and the circuit instead of a login per bridge request. Also a refusal
// its login method marked retry_with_backoff (rest_backend's ambiguous 403).
bool is_transient(const pool_error& e) noexcept;
// A failed login may have left a live token on the device (a timeout, a lost answer, a 2xx we
// could not read, a proxy's 502/504 whose homeserver may have finished). A refusal, or a
// request that never left, issued none.
bool may_have_issued_token(const pool_error& e) noexcept;

enum class retry_decision : std::uint8_t {
  again,   // try again once the health admits it (a rate limit or backoff pause may come first)
  report,  // stop: the callers hear this failure
};

class login_retry {
 public:
  explicit login_retry(unsigned max_attempts) : max_attempts_(max_attempts ? max_attempts : 1) {}

  void on_attempt() noexcept { ++attempts_; }
  unsigned attempts() const noexcept { return attempts_; }

  // Records a failed attempt in `health` (a rate limit, a backoff, or an answer that was a
  // refusal) and decides. `jitter` in [0, 1) spreads the backoff.
  retry_decision on_failure(homeserver_health& health, const pool_error& failure,
                            std::int64_t now_ms, double jitter) const noexcept;

 private:
  unsigned max_attempts_;
  unsigned attempts_ = 0;
};

// Why a login is not going out now, for the callers that cannot wait for it: the remaining
// wait in retry_after_ms, upstream_rate_limited (429) for a rate limit, otherwise what the
// login's own last try met or upstream_unavailable (503) for a failing homeserver.
pool_error pause_reason(const homeserver_health& health, std::int64_t now_ms,
                        const std::optional<pool_error>& own_failure);

}  // namespace mxp::sessions
