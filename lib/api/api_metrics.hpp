// api_metrics: mxpuppetd's Prometheus metrics. Counts API requests by endpoint and
// status (pre-resolved series: one integer increment per request), observes the
// session pool (cache hits/misses, logins, logouts, upstream errors) and mirrors the
// pool's state into gauges when /metrics is scraped.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "metrics/registry.hpp"
#include "sessions/pool_observer.hpp"

namespace mxp::sessions {
class session_pool;
}

namespace mxp::api {

enum class endpoint : std::uint8_t {
  unknown,
  token,
  invalidate,
  session,
  sessions,
  status,
  healthz,
  metrics,
  gateway_bridges
};
inline constexpr std::size_t endpoint_count = 9;
std::string_view to_string(endpoint e) noexcept;

// "ok" is not a kind: refused, rate_limited, unavailable, timeout, bad_response, discovery_failed,
// error.
std::string_view failure_kind(const matrix::upstream_error& e) noexcept;

// What happened at one homeserver since the daemon started, summed over login methods: read off
// the same counters /metrics exposes, so that /v1/status and /metrics never disagree.
struct homeserver_totals {
  std::uint64_t logins_ok = 0, logins_failed = 0, logouts = 0, refreshes_ok = 0,
                refreshes_failed = 0;
};

class api_metrics final : public sessions::pool_observer {
 public:
  api_metrics();
  api_metrics(const api_metrics&) = delete;
  api_metrics& operator=(const api_metrics&) = delete;

  // Gauges that mirror the pool (sessions by state, homeserver health) are read from it at scrape
  // time.
  void attach(const sessions::session_pool* pool) noexcept { pool_ = pool; }

  void count_request(endpoint e, int status) noexcept {
    const auto slot = status_slot(status);
    auto*& c = requests_[static_cast<std::size_t>(e)][slot];
    if (!c) [[unlikely]]
      c = &resolve_request(e, status);
    c->inc();
    if (slot == other_status) c = nullptr;  // rare statuses are looked up each time
  }

  homeserver_totals totals_of(std::string_view homeserver) const;

  // The text exposition (and its Content-Type: metrics::registry::content_type).
  void expose(std::string& out) { registry_.expose(out); }
  metrics::registry& registry() noexcept { return registry_; }

  // sessions::pool_observer
  void on_token_lookup(bool hit) noexcept override { (hit ? cache_hits_ : cache_misses_).inc(); }
  void on_login(std::string_view homeserver, std::string_view method,
                std::chrono::nanoseconds duration,
                const matrix::upstream_error* failure) noexcept override;
  void on_logout(std::string_view homeserver,
                 const matrix::upstream_error* failure) noexcept override;
  void on_refresh(std::string_view homeserver, std::chrono::nanoseconds duration,
                  const matrix::upstream_error* failure) noexcept override;

 private:
  static constexpr std::size_t other_status = 12;
  static std::size_t status_slot(int status) noexcept {
    switch (status) {
      case 200:
        return 0;
      case 400:
        return 1;
      case 403:
        return 2;
      case 404:
        return 3;
      case 405:
        return 4;
      case 413:
        return 5;
      case 429:
        return 6;
      case 431:
        return 7;
      case 500:
        return 8;
      case 502:
        return 9;
      case 503:
        return 10;
      case 504:
        return 11;
    }
    return other_status;
  }
  metrics::counter& resolve_request(endpoint e, int status);
  void collect();
  // The login method of a homeserver, for the logout series (the pool reports only its name).
  std::string_view method_of(std::string_view homeserver);
  void refresh_methods();

  metrics::registry registry_;
  metrics::family<metrics::counter>& requests_family_;
  metrics::counter& cache_hits_;
  metrics::counter& cache_misses_;
  metrics::family<metrics::counter>& logins_;
  metrics::family<metrics::counter>& logouts_;
  metrics::family<metrics::histogram>& login_duration_;
  metrics::family<metrics::counter>& refreshes_;
  metrics::family<metrics::histogram>& refresh_duration_;
  metrics::family<metrics::gauge>& circuit_state_;
  metrics::family<metrics::counter>& upstream_errors_;
  metrics::family<metrics::gauge>& sessions_;
  metrics::family<metrics::gauge>& homeserver_up_;
  metrics::family<metrics::gauge>& logins_in_flight_;
  std::array<std::array<metrics::counter*, other_status + 1>, endpoint_count> requests_{};
  const sessions::session_pool* pool_ = nullptr;
  // Homeserver -> login method, refreshed at every scrape.
  std::map<std::string, std::string, std::less<>> methods_;
};

}  // namespace mxp::api
