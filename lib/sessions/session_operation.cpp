// The transitions of session_operation: what comes after each outcome.
#include "sessions/session_operation.hpp"

#include "core/errc.hpp"

namespace mxp::sessions {

using kind = session_action_kind;

session_action session_operation::start(const tick& t) {
  return next_phase(t);
}

session_action session_operation::next_phase(const tick& t) {
  switch (record_.machine.state()) {
    case session_state::validating:
      step_ = step::validating;
      return act(kind::whoami);
    case session_state::refreshing:
      return refresh(t);
    case session_state::logging_in:
      outcome_.login = true;
      return admit(t);
    default:
      step_ = step::done;
      return act(kind::done);
  }
}

session_action session_operation::on_whoami(const tick& t, validation outcome) {
  // unknown: handed out, the homeserver could not say otherwise
  record_.machine.on_validated(outcome);
  return next_phase(t);
}

// --- refreshing: one POST /refresh, never replayed; any failure falls back to a login --------

session_action session_operation::refresh(const tick& t) {
  // Only an open circuit stops a refresh (Synapse's login rate limit does not cover /refresh),
  // and then the session keeps the token it has: it is served for as long as it is valid.
  if (health_.circuit(t.steady_ms) == circuit_state::open || t.stopping) {
    record_.last_failure = std::make_unique<pool_error>(local_error(
        errc::upstream_unavailable, "homeserver unreachable (circuit open): cannot refresh"));
    record_.machine.on_refresh_deferred();
    step_ = step::done;
    return act(kind::done);
  }
  step_ = step::refreshing;
  return act(kind::refresh);
}

session_action session_operation::on_refreshed(const tick& t,
                                               matrix::upstream_result<matrix::refresh_grant> r) {
  if (!r.has_value()) {
    record_.machine.on_refresh_failed();  // the old token becomes pending_logout: log in
    return next_phase(t);
  }
  auto& grant = *r;
  session_token token{std::move(grant.access_token), std::nullopt, std::nullopt,
                      std::move(grant.refresh_token), grant.expires_in_ms.value_or(0)};
  if (grant.expires_in_ms) token.expires_at_ms = t.wall_ms + *grant.expires_in_ms;
  record_.machine.on_refresh_succeeded(std::move(token), t.wall_ms);
  health_.on_success();
  step_ = step::persisting_refresh;  // the old refresh token is dead now: durable first
  return {kind::persist, 0, false};
}

// --- logging_in ----------------------------------------------------------------------------

// Waits out 429s, backoffs and an open circuit while callers whose deadlines cover the wait
// still wait (the others are answered at once by the pool), up to the retry policy's attempts.
// A pause that nobody waits for any more is given up, so that it does not hold a login slot.
session_action session_operation::admit(const tick& t) {
  if (t.stopping) return finish_login(t);
  const auto admitted = health_.admit(t.steady_ms);
  switch (admitted) {
    case admission::wait_for_probe:
      step_ = step::admitting;
      return act(kind::wait_for_probe);
    case admission::wait:
      if (retry_.attempts() > 0 && t.waiters == 0) return finish_login(t);
      record_.last_failure =
          std::make_unique<pool_error>(pause_reason(health_, t.steady_ms, failure_));
      record_.retry_at_ms = health_.not_before_ms();
      step_ = step::pausing;
      return act(kind::answer);  // waiters whose deadline comes first answer now
    case admission::go:
    case admission::probe:
      break;
  }
  record_.retry_at_ms = 0;
  retry_.on_attempt();
  outcome_.login_attempts = retry_.attempts();
  probing_ = admitted == admission::probe;
  if (probing_) health_.begin_probe();
  return attempt(t);
}

session_action session_operation::on_answered(const tick& /*t*/) {
  return {kind::wait_until, record_.retry_at_ms, false};
}

session_action session_operation::on_woken(const tick& t) {
  if (step_ == step::pausing && !t.stopping && t.waiters == 0 &&
      t.steady_ms < health_.not_before_ms()) {
    failure_ = *record_.last_failure;  // nobody waits for the pause: give the slot back
    if (failure_->retry_after_ms) failure_->retry_after_ms = record_.retry_at_ms - t.steady_ms;
    return finish_login(t);
  }
  return admit(t);
}

// One try: the pending logout (if any), then the login; the token is durable before anyone
// sees it. The login is marked in the store before it goes out: if its outcome is lost
// (cancelled, timed out, the daemon killed), the homeserver may hold a live token of the device
// that nobody has, and the next login cleans the device first.
session_action session_operation::attempt(const tick& t) {
  if (record_.machine.has_pending_logout()) {
    // The previous token may still be live: it must die before a new login on the same device.
    step_ = step::logging_out_pending;
    return act(kind::logout_pending);
  }
  return after_pending_logout(t);
}

session_action session_operation::on_pending_logged_out(
    const tick& t, const matrix::upstream_result<matrix::logout_outcome>& r) {
  if (!r.has_value()) return end_attempt(t, r.error(), 0);
  record_.machine.on_pending_logout_done();
  return after_pending_logout(t);
}

session_action session_operation::after_pending_logout(const tick& /*t*/) {
  was_unclean_ = record_.device_unclean;
  if (!was_unclean_) {
    record_.device_unclean = true;
    step_ = step::persisting_mark;
    return {kind::persist, 0, true};
  }
  // Logging out any token of the device kills every token of it, the orphan included.
  step_ = step::cleaning;
  return act(kind::clean_device_login);
}

session_action session_operation::on_orphan_killer(const tick& t,
                                                   matrix::upstream_result<matrix::login_grant> r) {
  if (!r.has_value()) return end_attempt(t, r.error(), 0);
  orphan_killer_ = std::move(r->access_token);
  return act(kind::clean_device_logout);
}

session_action session_operation::on_device_cleaned(
    const tick& t, const matrix::upstream_result<matrix::logout_outcome>& r) {
  orphan_killer_ = {};
  if (!r.has_value()) return end_attempt(t, r.error(), 0);
  step_ = step::logging_in;
  return act(kind::login);
}

session_action session_operation::on_logged_in(const tick& t,
                                               matrix::upstream_result<matrix::login_grant> r,
                                               double jitter) {
  if (!r.has_value()) {
    if (!was_unclean_ && !may_have_issued_token(r.error())) record_.device_unclean = false;
    return end_attempt(t, r.error(), jitter);
  }
  auto& grant = *r;
  session_token token{std::move(grant.access_token), std::move(grant.device_id), std::nullopt,
                      std::move(grant.refresh_token), grant.expires_in_ms.value_or(0)};
  if (grant.expires_in_ms) token.expires_at_ms = t.wall_ms + *grant.expires_in_ms;
  record_.machine.on_login_succeeded(std::move(token), t.wall_ms);
  record_.device_unclean = false;  // the device holds this token and nothing else of ours
  // Durable before any caller sees it: a restart must find this token, not add a device.
  step_ = step::persisting_token;
  return {kind::persist, 0, false};
}

session_action session_operation::on_persisted(const tick& t) {
  switch (step_) {
    case step::persisting_mark:
      step_ = step::logging_in;
      return act(kind::login);
    case step::persisting_token:
      return end_attempt(t, std::nullopt, 0);
    case step::persisting_refresh:
      step_ = step::done;
      return act(kind::done);
    default:
      return next_phase(t);
  }
}

// Records the attempt's outcome in the health (through the retry policy), then lets whoever
// waits for the probe go, then decides.
session_action session_operation::end_attempt(const tick& t, std::optional<pool_error> failure,
                                              double jitter) {
  step_ = step::finishing_attempt;
  failure_ = std::move(failure);
  attempt_failed_ = failure_.has_value();
  if (!failure_) {
    health_.on_success();
  } else {
    record_.last_failure = std::make_unique<pool_error>(*failure_);
    stop_after_attempt_ =
        retry_.on_failure(health_, *failure_, t.steady_ms, jitter) == retry_decision::report;
  }
  if (probing_) {
    probing_ = false;
    health_.end_probe();
    return act(kind::probe_finished);
  }
  return resume(t);
}

session_action session_operation::resume(const tick& t) {
  if (!attempt_failed_ || stop_after_attempt_) return finish_login(t);
  return admit(t);
}

session_action session_operation::finish_login(const tick& t) {
  record_.retry_at_ms = 0;
  if (!failure_ && record_.machine.state() == session_state::logging_in && t.stopping)
    failure_ = local_error(errc::shutting_down, "daemon is shutting down");
  if (failure_) {
    record_.last_failure = std::make_unique<pool_error>(*failure_);
    record_.machine.on_login_failed();
  } else {
    record_.last_failure.reset();
  }
  outcome_.failure = failure_;
  step_ = step::done;
  return act(kind::done);
}

}  // namespace mxp::sessions
