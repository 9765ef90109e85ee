// Transitions of session_machine.
#include "sessions/session_machine.hpp"

namespace mxp::sessions {

std::string_view to_string(session_state s) noexcept {
  switch (s) {
    case session_state::absent: return "absent";
    case session_state::logging_in: return "logging_in";
    case session_state::active: return "active";
    case session_state::revoking: return "revoking";
    case session_state::gone: return "gone";
  }
  return "unknown";
}

token_step session_machine::on_token_request(std::int64_t now_ms, std::int64_t min_valid_ms,
                                             std::uint32_t waited_for) {
  switch (state_) {
    case session_state::gone:
      return token_step::gone;
    case session_state::logging_in:
    case session_state::revoking:
      return token_step::wait;
    case session_state::active:
      if (usable(now_ms, min_valid_ms)) {
        touch(now_ms);
        return token_step::hand_out;
      }
      // Too close to expiry: the old token may still be live, so it dies first.
      pending_logout_ = std::move(token_.access_token);
      token_ = {};
      [[fallthrough]];
    case session_state::absent:
      if (waited_for != 0 && waited_for == failed_flight_) return token_step::fail;
      touch(now_ms);
      begin(session_state::logging_in);
      return token_step::start_login;
  }
  return token_step::wait;
}

void session_machine::restore(session_token token, secret_string pending_logout, std::int64_t created_at_ms,
                              std::int64_t last_used_at_ms) {
  state_ = token.access_token.empty() ? session_state::absent : session_state::active;
  token_ = std::move(token);
  pending_logout_ = std::move(pending_logout);
  created_at_ms_ = created_at_ms;
  last_used_at_ms_ = last_used_at_ms;
}

void session_machine::on_login_succeeded(session_token token, std::int64_t now_ms) {
  if (state_ != session_state::logging_in) return;
  token_ = std::move(token);
  state_ = session_state::active;
  touch(now_ms);
}

void session_machine::on_login_failed() {
  if (state_ != session_state::logging_in) return;
  state_ = session_state::absent;
  failed_flight_ = flight_;
}

bool session_machine::on_invalidate(const secret_string& token) {
  if (state_ != session_state::active || !(token_.access_token == token)) return false;
  logout_token_ = std::move(token_.access_token);
  token_ = {};
  forget_after_logout_ = false;
  begin(session_state::revoking);
  return true;
}

revoke_step session_machine::on_revoke() {
  switch (state_) {
    case session_state::logging_in:
    case session_state::revoking:
      return revoke_step::wait;
    case session_state::gone:
      return revoke_step::forget;
    case session_state::active:
      logout_token_ = std::move(token_.access_token);
      token_ = {};
      break;
    case session_state::absent:
      if (pending_logout_.empty()) {
        state_ = session_state::gone;
        return revoke_step::forget;
      }
      logout_token_ = std::move(pending_logout_);
      pending_logout_ = {};
      break;
  }
  forget_after_logout_ = true;
  begin(session_state::revoking);
  return revoke_step::start_logout;
}

void session_machine::on_logout_finished(bool confirmed) {
  if (state_ != session_state::revoking) return;
  if (!confirmed) {
    pending_logout_ = std::move(logout_token_);
    state_ = session_state::absent;  // kept so that the logout is retried, never lost
  } else {
    state_ = forget_after_logout_ ? session_state::gone : session_state::absent;
  }
  logout_token_ = {};
}

}  // namespace mxp::sessions
