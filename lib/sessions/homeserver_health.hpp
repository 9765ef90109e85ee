// homeserver_health: what the pool knows about one homeserver's trouble, without I/O:
// a rate-limit pause (M_LIMIT_EXCEEDED retry_after_ms), exponential backoff with jitter
// after 5xx and network failures, and a circuit breaker: after open_after failures in a row
// nothing goes out until the backoff has passed, then exactly one request probes the
// homeserver (half open) while the others wait for its outcome. Callers whose deadline ends
// before the circuit half-opens are answered at once (503 with retry_after_ms); those that
// can wait, wait, exactly as for a 429. Times are steady-clock milliseconds
// supplied by the caller, so tests drive it with plain numbers.
#pragma once

#include <cstdint>
#include <string_view>

namespace mxp::sessions {

struct health_options {
  std::int64_t base_backoff_ms = 250;          // first backoff after a failure
  std::int64_t max_backoff_ms = 30'000;        // backoff never grows past this
  unsigned open_after = 3;                     // consecutive failures that open the circuit
  std::int64_t default_retry_after_ms = 1000;  // for a 429 that did not say how long
};

// May a request go out now?
enum class admission : std::uint8_t {
  go,              // yes
  probe,           // yes, as the half-open circuit's one probe: begin_probe(), then report it
  wait,            // not before not_before_ms(): rate limited, backing off, or circuit open
  wait_for_probe,  // the probe is out: wait for its outcome
};

enum class circuit_state : std::uint8_t { closed, open, half_open };
std::string_view to_string(circuit_state s) noexcept;

class homeserver_health {
 public:
  explicit homeserver_health(health_options options = {}) : options_(options) {}

  admission admit(std::int64_t now_ms) const noexcept;
  void begin_probe() noexcept { probing_ = true; }
  // The probe's request is over, whatever its outcome (reported with on_success & co.).
  void end_probe() noexcept { probing_ = false; }
  bool probing() const noexcept { return probing_; }
  std::int64_t not_before_ms() const noexcept {
    return rate_limited_until_ms_ > backoff_until_ms_ ? rate_limited_until_ms_ : backoff_until_ms_;
  }

  // The homeserver answered as it should (any answer that is not trouble counts).
  void on_success() noexcept;
  // 429 M_LIMIT_EXCEEDED: every request to it waits retry_after_ms (a limit is per IP too).
  void on_rate_limited(std::int64_t now_ms, std::int64_t retry_after_ms) noexcept;
  // 5xx or no answer. `jitter` in [0, 1) spreads the retries: the backoff is
  // base * 2^(failures-1), capped, scaled into [50%, 100%] of that.
  void on_unreachable(std::int64_t now_ms, double jitter) noexcept;

  circuit_state circuit(std::int64_t now_ms) const noexcept;
  unsigned consecutive_failures() const noexcept { return failures_; }
  bool rate_limited(std::int64_t now_ms) const noexcept { return now_ms < rate_limited_until_ms_; }

 private:
  health_options options_;
  unsigned failures_ = 0;
  std::int64_t backoff_until_ms_ = 0;
  std::int64_t rate_limited_until_ms_ = 0;
  bool probing_ = false;
};

}  // namespace mxp::sessions
