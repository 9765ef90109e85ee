// api_metrics: the metric families of mxpuppetd and how the pool's events land in them.
#include "api/api_metrics.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

#include "core/errc.hpp"
#include "sessions/session_pool.hpp"

namespace mxp::api {

std::string_view to_string(endpoint e) noexcept {
  switch (e) {
    case endpoint::token:
      return "token";
    case endpoint::invalidate:
      return "invalidate";
    case endpoint::session:
      return "session";
    case endpoint::sessions:
      return "sessions";
    case endpoint::status:
      return "status";
    case endpoint::healthz:
      return "healthz";
    case endpoint::metrics:
      return "metrics";
    case endpoint::gateway_bridges:
      return "gateway_bridges";
    case endpoint::unknown:
      break;
  }
  return "unknown";
}

std::string_view failure_kind(const matrix::upstream_error& e) noexcept {
  if (e.code.category() != mxp_category()) return "error";
  switch (static_cast<errc>(e.code.value())) {
    case errc::upstream_refused:
    case errc::forbidden:
      return "refused";
    case errc::upstream_rate_limited:
      return "rate_limited";
    case errc::upstream_unavailable:
      return "unavailable";
    case errc::upstream_timeout:
    case errc::deadline_exceeded:
      return "timeout";
    case errc::upstream_bad_response:
      return "bad_response";
    case errc::discovery_failed:
      return "discovery_failed";
    default:
      return "error";
  }
}

api_metrics::api_metrics()
    : requests_family_(registry_.add_counter(
          "mxpuppetd_api_requests_total",
          "Socket API requests answered, by endpoint and HTTP status.", {"endpoint", "status"})),
      cache_hits_(registry_
                      .add_counter("mxpuppetd_token_cache_hits_total",
                                   "Token requests answered from a cached, valid session.")
                      .with({})),
      cache_misses_(registry_
                        .add_counter("mxpuppetd_token_cache_misses_total",
                                     "Token requests that had to wait for a login.")
                        .with({})),
      logins_(
          registry_.add_counter("mxpuppetd_logins_total",
                                "Logins at homeservers, by homeserver, login method and result.",
                                {"homeserver", "method", "result"})),
      logouts_(registry_.add_counter("mxpuppetd_logouts_total",
                                     "Logouts at homeservers, by homeserver, login method and "
                                     "result.",
                                     {"homeserver", "method", "result"})),
      login_duration_(
          registry_.add_histogram("mxpuppetd_login_duration_seconds",
                                  "Time a login took, successful or not, by homeserver.",
                                  {"homeserver"}, metrics::latency_buckets())),
      refreshes_(registry_.add_counter(
          "mxpuppetd_refreshes_total",
          "Token refreshes at homeservers, by homeserver and result (a failed one "
          "falls back to a login).",
          {"homeserver", "result"})),
      refresh_duration_(
          registry_.add_histogram("mxpuppetd_refresh_duration_seconds",
                                  "Time a refresh took, successful or not, by homeserver.",
                                  {"homeserver"}, metrics::latency_buckets())),
      circuit_state_(registry_.add_gauge("mxpuppetd_homeserver_circuit_state",
                                         "Circuit breaker per homeserver: 1 for the state it is in "
                                         "(closed, open, half_open), 0 for the others.",
                                         {"homeserver", "state"})),
      upstream_errors_(
          registry_.add_counter("mxpuppetd_upstream_errors_total",
                                "Failed homeserver operations (logins, refreshes and logouts), by "
                                "homeserver and kind.",
                                {"homeserver", "kind"})),
      sessions_(
          registry_.add_gauge("mxpuppetd_sessions", "Sessions in the pool, by state.", {"state"})),
      homeserver_up_(registry_.add_gauge("mxpuppetd_homeserver_up",
                                         "1 while the homeserver is reachable: 0 after its last "
                                         "request failed to reach it.",
                                         {"homeserver"})),
      logins_in_flight_(registry_.add_gauge("mxpuppetd_logins_in_flight",
                                            "Logins in flight, by homeserver.", {"homeserver"})) {
  registry_.add_gauge("mxpuppetd_build_info", "Always 1; the version is a label.", {"version"})
      .with({MXP_VERSION})
      .set(1);
  registry_
      .add_gauge("mxpuppetd_start_time_seconds",
                 "When the daemon started, in seconds since the Unix epoch.")
      .with({})
      .set(static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()));
  // The series everyone looks at exist from the start, at 0.
  requests_[static_cast<std::size_t>(endpoint::token)][0] = &resolve_request(endpoint::token, 200);
  for (const char* state :
       {"active", "logging_in", "refreshing", "validating", "revoking", "absent"})
    sessions_.with({state});
  registry_.add_collector([this] { collect(); });
}

metrics::counter& api_metrics::resolve_request(endpoint e, int status) {
  return requests_family_.with({std::string{to_string(e)}, std::to_string(status)});
}

void api_metrics::on_login(std::string_view homeserver, std::string_view method,
                           std::chrono::nanoseconds duration,
                           const matrix::upstream_error* failure) noexcept {
  try {
    const std::string hs{homeserver};
    const auto result = failure ? failure_kind(*failure) : std::string_view{"ok"};
    logins_.with({hs, std::string{method}, std::string{result}}).inc();
    login_duration_.with({hs}).observe(std::chrono::duration<double>(duration).count());
    if (failure) upstream_errors_.with({hs, std::string{result}}).inc();
  } catch (const std::exception& e) {  // allocation failure: metrics are not worth a crash
    spdlog::warn("metrics: {}", e.what());
  }
}

homeserver_totals api_metrics::totals_of(std::string_view homeserver) const {
  homeserver_totals t;
  // Labels: logins {homeserver, method, result}, logouts likewise, refreshes {homeserver, result}.
  logins_.for_each([&](const metrics::label_values& l, const metrics::counter& c) {
    if (l[0] == homeserver) (l[2] == "ok" ? t.logins_ok : t.logins_failed) += c.value();
  });
  logouts_.for_each([&](const metrics::label_values& l, const metrics::counter& c) {
    if (l[0] == homeserver && l[2] == "ok") t.logouts += c.value();
  });
  refreshes_.for_each([&](const metrics::label_values& l, const metrics::counter& c) {
    if (l[0] == homeserver) (l[1] == "ok" ? t.refreshes_ok : t.refreshes_failed) += c.value();
  });
  return t;
}

void api_metrics::on_refresh(std::string_view homeserver, std::chrono::nanoseconds duration,
                             const matrix::upstream_error* failure) noexcept {
  try {
    const std::string hs{homeserver};
    const auto result = failure ? failure_kind(*failure) : std::string_view{"ok"};
    refreshes_.with({hs, std::string{result}}).inc();
    refresh_duration_.with({hs}).observe(std::chrono::duration<double>(duration).count());
    if (failure) upstream_errors_.with({hs, std::string{result}}).inc();
  } catch (const std::exception& e) {
    spdlog::warn("metrics: {}", e.what());
  }
}

void api_metrics::on_logout(std::string_view homeserver,
                            const matrix::upstream_error* failure) noexcept {
  try {
    const std::string hs{homeserver};
    const auto result = failure ? failure_kind(*failure) : std::string_view{"ok"};
    logouts_.with({hs, std::string{method_of(homeserver)}, std::string{result}}).inc();
    if (failure) upstream_errors_.with({hs, std::string{result}}).inc();
  } catch (const std::exception& e) {
    spdlog::warn("metrics: {}", e.what());
  }
}

std::string_view api_metrics::method_of(std::string_view homeserver) {
  auto it = methods_.find(homeserver);
  if (it == methods_.end()) {  // first logout there, or a homeserver added by a reload
    refresh_methods();
    it = methods_.find(homeserver);
    // Gone by a reload: remembered as unknown (until the next scrape), so that its logouts
    // do not ask the pool one by one.
    if (it == methods_.end()) it = methods_.emplace(std::string{homeserver}, "unknown").first;
  }
  return it->second;
}

void api_metrics::refresh_methods() {
  if (!pool_) return;
  methods_.clear();
  for (auto& hs : pool_->homeservers())
    methods_.emplace(std::move(hs.server_name), std::move(hs.method));
}

void api_metrics::collect() {
  if (!pool_) return;
  const auto s = pool_->stats();
  sessions_.with({"active"}).set(static_cast<double>(s.active));
  sessions_.with({"logging_in"}).set(static_cast<double>(s.logging_in));
  sessions_.with({"refreshing"}).set(static_cast<double>(s.refreshing));
  sessions_.with({"validating"}).set(static_cast<double>(s.validating));
  sessions_.with({"revoking"}).set(static_cast<double>(s.revoking));
  sessions_.with({"absent"}).set(static_cast<double>(s.absent));
  homeserver_up_.clear();  // homeservers can come and go with a reload
  logins_in_flight_.clear();
  circuit_state_.clear();
  methods_.clear();
  for (auto& hs : pool_->homeservers()) {
    homeserver_up_.with({hs.server_name}).set(hs.healthy ? 1 : 0);
    logins_in_flight_.with({hs.server_name}).set(hs.logins_in_flight);
    for (auto state : {sessions::circuit_state::closed, sessions::circuit_state::open,
                       sessions::circuit_state::half_open})
      circuit_state_.with({hs.server_name, std::string{sessions::to_string(state)}})
          .set(hs.circuit == state ? 1 : 0);
    methods_.emplace(std::move(hs.server_name), std::move(hs.method));
  }
}

}  // namespace mxp::api
