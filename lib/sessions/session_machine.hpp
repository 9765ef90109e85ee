// session_machine: the lifecycle of one user's session as a state machine that
// does no I/O. The pool's coroutines feed it events with the current time and
// perform the steps it returns; tests drive it directly with made-up times.
//
//   absent --token request--> logging_in --ok--> active --invalidate--> revoking --> absent
//      ^                          |   ^             |  \--revoke/evict--> revoking --> gone
//      +-------- login failed ----+   |             +-- within the refresh margin --> refreshing
//                                     |             |     refreshing --ok--> active
//                                     +-------------+---- refresh failed (log the old token out,
//                                     log in)
//                                                   +-- idle past validate_after --> validating
//                                                   (whoami)
//                                                         validating --alive--> active, --dead-->
//                                                         logging_in
//
// Synapse facts it encodes: logging in again with the same device_id does not
// kill the device's older tokens, and logging out any token of the device kills
// all of them. So a token that may still be live is logged out *before* the next
// login (`pending_logout`), and never after it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/secret.hpp"

namespace mxp::sessions {

enum class session_state : std::uint8_t {
  absent,
  logging_in,
  active,
  refreshing,
  validating,
  revoking,
  gone
};
std::string_view to_string(session_state s) noexcept;

struct session_token {
  secret_string access_token;
  std::optional<std::string> device_id;
  std::optional<std::int64_t> expires_at_ms;  // wall clock; none: does not expire
  secret_string refresh_token;                // empty: renewed by a new login instead
  std::int64_t lifetime_ms = 0;               // expires_in_ms as granted; 0: unknown
};

// How the pool wants tokens renewed; the same for every session, passed with each event.
struct renewal_policy {
  std::int64_t refresh_margin_ms = 0;  // renew a token with less than this left
  std::int64_t validate_after_ms = 0;  // whoami a session idle for longer; 0: never
};

// What the homeserver's whoami said of a token that was being validated.
enum class validation : std::uint8_t { alive, dead, unknown };

// What a caller asking for a token must do next.
enum class token_step : std::uint8_t {
  hand_out,       // the current token is good for long enough: return it
  start_login,    // this caller starts the login (logging out pending_logout() first), then waits
  start_renewal,  // this caller starts the refresh or validation task (state() says which), then
                  // waits
  wait,           // an operation is under way: wait for the next change, then ask again
  fail,           // the login this caller waited for failed: report that failure
  too_short,      // a token just granted is still valid for less than min_valid_ms: report that
  gone,           // the session is being dropped: look the user up again
};

enum class revoke_step : std::uint8_t {
  start_logout,  // log out token_to_log_out(), then call on_logout_finished()
  forget,        // nothing to log out: drop the session now
  wait,          // an operation is under way: wait, then ask again
};

class session_machine {
 public:
  explicit session_machine(std::int64_t now_ms)
      : created_at_ms_(now_ms), last_used_at_ms_(now_ms) {}

  // --- events -------------------------------------------------------------
  // `waited_for` is the flight() value the caller saw before it waited (0 if it did not).
  token_step on_token_request(std::int64_t now_ms, std::int64_t min_valid_ms,
                              std::uint32_t waited_for, const renewal_policy& policy = {});
  void on_login_succeeded(session_token token, std::int64_t now_ms);
  // refreshing -> active with the new token (an empty refresh token keeps the old one).
  void on_refresh_succeeded(session_token token, std::int64_t now_ms);
  // refreshing -> active with the token it had: the refresh could not be sent (circuit open).
  // Waiters of this flight get the token if it still covers their min_valid_ms (margin aside),
  // else the failure; new callers try again.
  void on_refresh_deferred();
  // refreshing -> logging_in in the same flight: the old access token may still be live, so
  // it becomes pending_logout(); the caller goes on with the login.
  void on_refresh_failed();
  // validating -> active (alive, or unknown: the homeserver could not say), or for a dead
  // token -> refreshing when it has a refresh token, else logging_in; same flight either way.
  void on_validated(validation outcome);
  // Background policy: true (and refreshing) when an active refreshable token is within twice
  // the margin, so that it is renewed before any request has to wait for it.
  bool start_background_refresh(std::int64_t now_ms, const renewal_policy& policy);
  void on_login_failed();
  void on_pending_logout_done() {
    pending_logout_.wipe();
    pending_is_renewal_ = false;
  }
  // True when `token` was the current one: the session moves to revoking and the
  // caller logs token_to_log_out() out; false when it was stale (nothing happens).
  bool on_invalidate(const secret_string& token);
  revoke_step on_revoke();
  // `confirmed`: the homeserver answered (200, or 401 for a token it did not know).
  // Unconfirmed logouts are kept in pending_logout() and retried before the next login.
  void on_logout_finished(bool confirmed);

  // Rebuilds a session persisted by an earlier run: active when it has a token,
  // absent otherwise; a pending logout is kept either way.
  void restore(session_token token, secret_string pending_logout, std::int64_t created_at_ms,
               std::int64_t last_used_at_ms);

  // --- observers ----------------------------------------------------------
  session_state state() const noexcept { return state_; }
  std::uint32_t flight() const noexcept { return flight_; }
  const session_token& token() const noexcept { return token_; }  // meaningful when active
  // Changes whenever token() does (a login, a refresh, a restore, a drop): what a caller built
  // from the token is stale once this moved.
  std::uint32_t token_version() const noexcept { return token_version_; }
  bool has_pending_logout() const noexcept { return !pending_logout_.empty(); }
  const secret_string& pending_logout() const noexcept { return pending_logout_; }
  // The pending logout is of a token replaced while still valid (a renewal by a new login), not
  // of one found dead or given up: methods that can (mas) let it live on for a grace period.
  bool pending_logout_is_renewal() const noexcept { return pending_is_renewal_; }
  const secret_string& token_to_log_out() const noexcept { return logout_token_; }
  std::int64_t created_at_ms() const noexcept { return created_at_ms_; }
  std::int64_t last_used_at_ms() const noexcept { return last_used_at_ms_; }
  bool busy() const noexcept {
    return state_ == session_state::logging_in || state_ == session_state::refreshing ||
           state_ == session_state::validating || state_ == session_state::revoking;
  }
  // The margin actually used: at most half the token's lifetime, so that a homeserver
  // issuing tokens shorter than the margin does not make every request renew.
  std::int64_t effective_margin(const renewal_policy& p) const noexcept {
    return token_.lifetime_ms > 0 ? std::min(p.refresh_margin_ms, token_.lifetime_ms / 2)
                                  : p.refresh_margin_ms;
  }
  // Valid for at least min_valid_ms more at now_ms? (The current token, in active or refreshing.)
  bool usable(std::int64_t now_ms, std::int64_t min_valid_ms) const noexcept {
    return (state_ == session_state::active || state_ == session_state::refreshing) &&
           (!token_.expires_at_ms ||
            *token_.expires_at_ms - now_ms >= std::max<std::int64_t>(min_valid_ms, 1));
  }
  // Would on_token_request hand the current token out without starting anything? (No side effects:
  // the pool's fast path.)
  bool ready_for(std::int64_t now_ms, std::int64_t min_valid_ms,
                 const renewal_policy& p) const noexcept {
    if (!usable(now_ms, std::max<std::int64_t>(min_valid_ms, effective_margin(p)))) return false;
    return state_ != session_state::active || p.validate_after_ms <= 0 ||
           now_ms - last_used_at_ms_ <= p.validate_after_ms;
  }
  void touch(std::int64_t now_ms) noexcept {
    last_used_at_ms_ = std::max(last_used_at_ms_, now_ms);
  }

 private:
  void set_token(session_token t) {
    token_ = std::move(t);
    ++token_version_;
  }
  void begin(session_state s) {
    state_ = s;
    ++flight_;
  }

  session_state state_ = session_state::absent;
  bool forget_after_logout_ =
      false;                  // revoking for revoke/evict (-> gone) vs invalidate (-> absent)
  std::uint32_t flight_ = 0;  // bumped when a login or logout starts
  std::uint32_t failed_flight_ = 0;   // the flight whose login failed last
  std::uint32_t granted_flight_ = 0;  // the flight that granted the current token
  std::uint32_t token_version_ = 0;   // bumped by every set_token()
  std::int64_t created_at_ms_;
  std::int64_t last_used_at_ms_;
  session_token token_;
  secret_string pending_logout_;  // a token that may be live and must die before the next login
  bool pending_is_renewal_ = false;
  secret_string logout_token_;  // the token a revoking session is logging out
};

}  // namespace mxp::sessions
