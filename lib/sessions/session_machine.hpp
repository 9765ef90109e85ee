// session_machine: the lifecycle of one user's session as a state machine that
// does no I/O. The pool's coroutines feed it events with the current time and
// perform the steps it returns; tests drive it directly with made-up times.
//
//   absent --token request--> logging_in --ok--> active --invalidate--> revoking --> absent
//      ^                          |                 |  \--revoke/evict--> revoking --> gone
//      +-------- login failed ----+                 +-- too close to expiry: log out, log in again
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

enum class session_state : std::uint8_t { absent, logging_in, active, revoking, gone };
std::string_view to_string(session_state s) noexcept;

struct session_token {
  secret_string access_token;
  std::optional<std::string> device_id;
  std::optional<std::int64_t> expires_at_ms;  // wall clock; none: does not expire
};

// What a caller asking for a token must do next.
enum class token_step : std::uint8_t {
  hand_out,     // the current token is good for long enough: return it
  start_login,  // this caller starts the login (logging out pending_logout() first), then waits
  wait,         // an operation is under way: wait for the next change, then ask again
  fail,         // the login this caller waited for failed: report that failure
  gone,         // the session is being dropped: look the user up again
};

enum class revoke_step : std::uint8_t {
  start_logout,  // log out token_to_log_out(), then call on_logout_finished()
  forget,        // nothing to log out: drop the session now
  wait,          // an operation is under way: wait, then ask again
};

class session_machine {
 public:
  explicit session_machine(std::int64_t now_ms) : created_at_ms_(now_ms), last_used_at_ms_(now_ms) {}

  // --- events -------------------------------------------------------------
  // `waited_for` is the flight() value the caller saw before it waited (0 if it did not).
  token_step on_token_request(std::int64_t now_ms, std::int64_t min_valid_ms, std::uint32_t waited_for);
  void on_login_succeeded(session_token token, std::int64_t now_ms);
  void on_login_failed();
  void on_pending_logout_done() { pending_logout_.wipe(); }
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
  bool has_pending_logout() const noexcept { return !pending_logout_.empty(); }
  const secret_string& pending_logout() const noexcept { return pending_logout_; }
  const secret_string& token_to_log_out() const noexcept { return logout_token_; }
  std::int64_t created_at_ms() const noexcept { return created_at_ms_; }
  std::int64_t last_used_at_ms() const noexcept { return last_used_at_ms_; }
  bool busy() const noexcept { return state_ == session_state::logging_in || state_ == session_state::revoking; }
  // Valid for at least min_valid_ms more at now_ms?
  bool usable(std::int64_t now_ms, std::int64_t min_valid_ms) const noexcept {
    return state_ == session_state::active &&
           (!token_.expires_at_ms || *token_.expires_at_ms - now_ms >= std::max<std::int64_t>(min_valid_ms, 1));
  }
  void touch(std::int64_t now_ms) noexcept { last_used_at_ms_ = std::max(last_used_at_ms_, now_ms); }

 private:
  void begin(session_state s) {
    state_ = s;
    ++flight_;
  }

  session_state state_ = session_state::absent;
  bool forget_after_logout_ = false;  // revoking for revoke/evict (-> gone) vs invalidate (-> absent)
  std::uint32_t flight_ = 0;          // bumped when a login or logout starts
  std::uint32_t failed_flight_ = 0;   // the flight whose login failed last
  std::int64_t created_at_ms_;
  std::int64_t last_used_at_ms_;
  session_token token_;
  secret_string pending_logout_;  // a token that may be live and must die before the next login
  secret_string logout_token_;    // the token a revoking session is logging out
};

}  // namespace mxp::sessions
