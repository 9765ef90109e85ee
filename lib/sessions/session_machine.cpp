// Transitions of session_machine.
#include "sessions/session_machine.hpp"

namespace mxp::sessions {

std::string_view to_string(session_state s) noexcept {
  switch (s) {
    case session_state::absent:
      return "absent";
    case session_state::logging_in:
      return "logging_in";
    case session_state::active:
      return "active";
    case session_state::refreshing:
      return "refreshing";
    case session_state::validating:
      return "validating";
    case session_state::revoking:
      return "revoking";
    case session_state::gone:
      return "gone";
  }
  return "unknown";
}

token_step session_machine::on_token_request(std::int64_t now_ms, std::int64_t min_valid_ms,
                                             std::uint32_t waited_for,
                                             const renewal_policy& policy) {
  // A token is handed out only with the margin to spare on top of what the caller needs.
  const auto need = std::max<std::int64_t>(min_valid_ms, effective_margin(policy));
  switch (state_) {
    case session_state::gone:
      return token_step::gone;
    case session_state::logging_in:
    case session_state::validating:
    case session_state::revoking:
      return token_step::wait;
    case session_state::refreshing:
      // The current token stays valid while it is being renewed: no caller that it satisfies waits.
      if (usable(now_ms, need)) {
        touch(now_ms);
        return token_step::hand_out;
      }
      return token_step::wait;
    case session_state::active:
      if (usable(now_ms, need)) {
        if (policy.validate_after_ms > 0 && now_ms - last_used_at_ms_ > policy.validate_after_ms) {
          touch(now_ms);
          begin(session_state::validating);
          return token_step::start_renewal;
        }
        touch(now_ms);
        return token_step::hand_out;
      }
      // The token this caller waited for is already too short for it: renewing cannot help.
      if (waited_for != 0 && waited_for == granted_flight_) return token_step::too_short;
      // The renewal this caller waited for could not happen: the current token, if it will do.
      if (waited_for != 0 && waited_for == failed_flight_) {
        if (!usable(now_ms, min_valid_ms)) return token_step::fail;
        touch(now_ms);
        return token_step::hand_out;
      }
      touch(now_ms);
      if (!token_.refresh_token.empty()) {
        begin(session_state::refreshing);
        return token_step::start_renewal;
      }
      // Renewed by a new login: the old token may still be live, so it dies first.
      pending_logout_ = std::move(token_.access_token);
      pending_is_renewal_ = true;
      set_token({});
      begin(session_state::logging_in);
      return token_step::start_login;
    case session_state::absent:
      if (waited_for != 0 && waited_for == failed_flight_) return token_step::fail;
      touch(now_ms);
      begin(session_state::logging_in);
      return token_step::start_login;
  }
  return token_step::wait;
}

void session_machine::on_refresh_succeeded(session_token token, std::int64_t now_ms) {
  if (state_ != session_state::refreshing) return;
  if (token.refresh_token.empty()) token.refresh_token = std::move(token_.refresh_token);
  if (!token.device_id) token.device_id = std::move(token_.device_id);
  set_token(std::move(token));
  granted_flight_ = flight_;
  state_ = session_state::active;
  touch(now_ms);
}

void session_machine::on_refresh_deferred() {
  if (state_ != session_state::refreshing) return;
  failed_flight_ = flight_;
  state_ = session_state::active;
}

void session_machine::on_refresh_failed() {
  if (state_ != session_state::refreshing) return;
  // Never replay the refresh: its answer may have been lost after it rotated the tokens.
  pending_logout_ = std::move(token_.access_token);
  pending_is_renewal_ = false;
  set_token({});
  state_ = session_state::logging_in;
}

void session_machine::on_validated(validation outcome) {
  if (state_ != session_state::validating) return;
  if (outcome != validation::dead) {
    state_ = session_state::active;
    return;
  }
  if (!token_.refresh_token
           .empty()) {  // e.g. expired early (soft logout): the refresh token still works
    state_ = session_state::refreshing;
    return;
  }
  set_token({});  // dead already: nothing to log out
  state_ = session_state::logging_in;
}

bool session_machine::start_background_refresh(std::int64_t now_ms, const renewal_policy& policy) {
  if (state_ != session_state::active || token_.refresh_token.empty() || !token_.expires_at_ms)
    return false;
  if (*token_.expires_at_ms - now_ms >= 2 * effective_margin(policy)) return false;
  begin(session_state::refreshing);
  return true;
}

void session_machine::restore(session_token token, secret_string pending_logout,
                              std::int64_t created_at_ms, std::int64_t last_used_at_ms) {
  state_ = token.access_token.empty() ? session_state::absent : session_state::active;
  set_token(std::move(token));
  pending_logout_ = std::move(pending_logout);
  pending_is_renewal_ = false;
  created_at_ms_ = created_at_ms;
  last_used_at_ms_ = last_used_at_ms;
}

void session_machine::on_login_succeeded(session_token token, std::int64_t now_ms) {
  if (state_ != session_state::logging_in) return;
  set_token(std::move(token));
  granted_flight_ = flight_;
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
  set_token({});
  forget_after_logout_ = false;
  begin(session_state::revoking);
  return true;
}

revoke_step session_machine::on_revoke() {
  switch (state_) {
    case session_state::logging_in:
    case session_state::refreshing:
    case session_state::validating:
    case session_state::revoking:
      return revoke_step::wait;
    case session_state::gone:
      return revoke_step::forget;
    case session_state::active:
      logout_token_ = std::move(token_.access_token);
      set_token({});
      break;
    case session_state::absent:
      if (pending_logout_.empty()) {
        state_ = session_state::gone;
        return revoke_step::forget;
      }
      logout_token_ = std::move(pending_logout_);
      pending_logout_ = {};
      pending_is_renewal_ = false;
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
    pending_is_renewal_ = false;
    state_ = session_state::absent;  // kept so that the logout is retried, never lost
  } else {
    state_ = forget_after_logout_ ? session_state::gone : session_state::absent;
  }
  logout_token_ = {};
}

}  // namespace mxp::sessions
