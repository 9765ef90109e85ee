// session_pool: every user's session, keyed by full user ID. Lazy single-flight
// logins, a cap on logins in flight per homeserver, LRU and idle eviction with
// logout, invalidation and revocation. A thin driver: callers step their session's
// session_machine, background tasks perform what a session_operation asks for
// (session_tasks.cpp), homeservers live in a homeserver_registry and the reports in
// pool_report.cpp. Time comes from one injectable session_clock. One io_context
// thread; no locks.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/result.hpp>

#include "matrix/homeserver_client.hpp"
#include "sessions/homeserver_health.hpp"
#include "sessions/homeserver_registry.hpp"
#include "sessions/pool_observer.hpp"
#include "sessions/session_clock.hpp"
#include "sessions/session_machine.hpp"
#include "store/session_store.hpp"

namespace mxp::sessions {

using steady_time = std::chrono::steady_clock::time_point;
// Errors carry an mxp::errc code and, for homeserver refusals, what it said.
using pool_error = matrix::upstream_error;

struct pool_options {
  std::size_t max_sessions = 100'000;
  std::chrono::milliseconds idle_timeout{std::chrono::hours{24 * 7}};
  bool revoke_on_evict = true;
  // Steady and wall time and every timer the pool arms; nullptr: the system clock. Tests inject
  // a virtual one. Must outlive the pool.
  session_clock* clock = nullptr;
  // Where sessions persist (nullptr: memory only). Must outlive the pool.
  store::session_store* store = nullptr;
  // Metrics hook (cache hits, logins, logouts); nullptr: none. Must outlive the pool.
  pool_observer* observer = nullptr;
  // Refresh margin and whoami validation of idle sessions.
  renewal_policy renewal;
  // sessions.refresh: background renews tokens in use before they reach the margin.
  bool background_refresh = false;
  // Backoff, rate-limit pause and circuit breaker per homeserver.
  health_options health;
  // Login attempts one task makes on 5xx and network failures before its callers hear of it.
  unsigned max_login_attempts = 3;
};

// A place the caller may keep what it rendered from a session's token (the API keeps its ready
// answer there), with the key it was rendered for. The pool never reads it; it frees it with the
// session. The key of a token_view changes whenever anything the view shows changes.
// It holds the token: wiped like a secret_string when replaced or freed.
struct rendered_token {
  std::uint64_t key = 0;  // 0: nothing rendered yet
  std::string bytes;
  rendered_token() = default;
  rendered_token(const rendered_token&) = delete;
  rendered_token& operator=(const rendered_token&) = delete;
  ~rendered_token() { wipe(); }
  void wipe() noexcept {
    OPENSSL_cleanse(bytes.data(), bytes.capacity());
    bytes.clear();
    key = 0;
  }
};

// What a caller gets with a token. Points into the pool: valid until the caller's next co_await.
struct token_view {
  std::string_view user_id;
  const secret_string* access_token;
  const std::optional<std::string>* device_id;
  std::optional<std::int64_t> expires_at_ms;
  const matrix::homeserver_client* homeserver;
  // The session's rendering slot, and the key a rendering of this view must carry (never 0).
  rendered_token* rendered = nullptr;
  std::uint64_t render_key = 0;
  // The slot's bytes when they were rendered from exactly this view; null otherwise.
  const std::string* ready_rendering() const noexcept {
    return rendered && rendered->key == render_key ? &rendered->bytes : nullptr;
  }
};

struct session_info {
  std::string user_id;
  std::optional<std::string> device_id;
  std::string method;
  std::int64_t created_at_ms;
  std::int64_t last_used_at_ms;
  std::optional<std::int64_t> expires_at_ms;
  session_state state;
};

struct session_page {
  std::vector<session_info> sessions;
  bool more = false;  // further sessions sort after the last one
};

struct homeserver_status {
  std::string server_name, url, method, login_type;
  unsigned logins_in_flight = 0;
  // (Counts of logins, logouts and refreshes are the metrics' : api_metrics::homeserver_totals.)
  bool healthy = true;  // false while the last requests failed to reach it
  circuit_state circuit = circuit_state::closed;
  unsigned consecutive_failures = 0;
  bool rate_limited = false;        // pausing for a 429's retry_after_ms
  std::string configuration_error;  // what the login method found wrong; empty: nothing
};

struct pool_stats {
  std::size_t total = 0, active = 0, logging_in = 0, refreshing = 0, validating = 0, revoking = 0,
              absent = 0;
};

struct pool_state;

template <typename T>
using pool_result = boost::system::result<T, pool_error>;

class session_pool {
 public:
  session_pool(boost::asio::any_io_executor executor, pool_options options,
               std::map<std::string, homeserver_entry, std::less<>> homeservers);
  ~session_pool();
  session_pool(const session_pool&) = delete;
  session_pool& operator=(const session_pool&) = delete;

  // Adopts sessions persisted by an earlier run (before serving). Rows of users
  // whose homeserver is no longer configured are skipped and counted.
  struct restore_result {
    std::size_t restored = 0, skipped = 0;
  };
  restore_result restore(std::vector<store::stored_session> sessions);

  // Fast path without suspension: a cached token valid for min_valid_ms, or nullopt.
  std::optional<token_view> find_ready(std::string_view user_id, std::int64_t min_valid_ms);

  // A token for `user_id`, logging in if needed; the view is valid until the next co_await.
  boost::asio::awaitable<pool_result<token_view>> get_token(std::string user_id,
                                                            std::int64_t min_valid_ms,
                                                            steady_time deadline);
  // Drops `token` if it is still the current one (logging it out first); true if it was.
  boost::asio::awaitable<pool_result<bool>> invalidate(std::string user_id, secret_string token,
                                                       steady_time deadline);
  // Logs the session out and forgets it; true if there was one.
  boost::asio::awaitable<pool_result<bool>> revoke(std::string user_id, steady_time deadline);

  // Evicts sessions idle for longer than idle_timeout (logging them out in the background).
  std::size_t evict_idle();
  // Background policy: starts a refresh for every session within twice the margin; returns how
  // many.
  std::size_t refresh_due();
  // Runs evict_idle() periodically until stop().
  boost::asio::awaitable<void> run_maintenance();
  // Ends the pool's work by `deadline`: waiting callers are answered shutting_down at once,
  // homeserver requests in flight are cancelled, then (revoke_all) every session is logged out
  // within what is left of the deadline, and queued store writes are flushed.
  boost::asio::awaitable<void> shutdown(bool revoke_all, steady_time deadline);

  // Sessions ordered by user ID (bytewise): at most `limit` of those whose user ID sorts after
  // `after` (from the first when empty) and that `visible` accepts (all when it is empty).
  session_page sessions_page(std::string_view after, std::size_t limit,
                             const std::function<bool(std::string_view)>& visible = {}) const;
  std::vector<homeserver_status> homeservers() const;
  pool_stats stats() const;
  std::size_t background_tasks() const noexcept;

  // --- reload ----------------------------------------------------------------------------------
  // Adds a homeserver or gives an existing one a new client (new URL, method, keys, limits). Its
  // sessions are kept: tokens belong to the server name, and the next login uses the new client.
  void put_homeserver(const std::string& server_name, homeserver_entry entry);
  // Removes a homeserver: its users get M_NOT_FOUND from now on, and its sessions are evicted
  // (logged out with the old client when revoke_on_evict). Returns how many sessions it had.
  std::size_t remove_homeserver(const std::string& server_name);
  // New limits and renewal settings (store and observer stay as they are).
  void set_limits(std::size_t max_sessions, std::chrono::milliseconds idle_timeout,
                  bool revoke_on_evict, renewal_policy renewal, bool background_refresh);

 private:
  std::shared_ptr<pool_state> state_;  // shared with the background tasks, which may outlive it
};

}  // namespace mxp::sessions
