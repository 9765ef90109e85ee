// session_operation: one background task's work on one session (validate, refresh, log
// in) as a state machine that does no I/O, in the manner of Boost.Redis's operation FSMs.
// The driver (session_pool) performs the action it returns and reports the outcome as the
// next event; the operation moves the session_machine, the homeserver's health and the
// login's retry policy, and decides what comes next:
//
//   validating: whoami ─alive/unknown─> done
//                      └dead─> refreshing or logging_in
//   refreshing: refresh ─ok─> persist ─> done         (an open circuit defers it: done)
//                       └failed─> logging_in
//   logging_in: [wait_for_probe | answer + wait_until(pause end)]*  (what the health says)
//               [logout_pending] [persist (login in flight) | clean_device_login +
//               clean_device_logout] login ─ok─> persist ─> done
//                                          └failed─> the retry policy: again, or done
//
// Every event carries a `tick`: the steady and wall time, whether the pool is stopping and
// how many callers still wait for this session.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "matrix/homeserver_client.hpp"
#include "sessions/homeserver_health.hpp"
#include "sessions/login_retry.hpp"
#include "sessions/session_machine.hpp"

namespace mxp::sessions {

// What the pool keeps of one session beside its machine; the operation and the callers share it.
struct session_record {
  explicit session_record(std::int64_t now_ms) : machine(now_ms) {}
  session_machine machine;
  std::unique_ptr<pool_error> last_failure;  // what the last failed operation said
  // While its login waits out a 429 or a backoff: when it will try again (steady ms), so that
  // callers whose deadline comes first get their answer now instead of a timeout later.
  std::int64_t retry_at_ms = 0;
  // A login went out whose outcome is unknown (cancelled, timed out, or the daemon died: the
  // row says so at restart). The homeserver may hold a live token of this device that nobody
  // has, so the next login cleans the device: log in, log out (every token of the device dies),
  // log in.
  bool device_unclean = false;
};

struct tick {
  std::int64_t steady_ms = 0;
  std::int64_t wall_ms = 0;
  bool stopping = false;
  unsigned waiters = 0;  // callers waiting for this session's token
};

enum class session_action_kind : std::uint8_t {
  whoami,               // whoami(machine.token().access_token) -> on_whoami
  refresh,              // refresh(machine.token().refresh_token) -> on_refreshed
  logout_pending,       // logout(machine.pending_logout()) -> on_pending_logged_out
  persist,              // save the session's row (with_pending_logout) -> on_persisted
  clean_device_login,   // login(user) -> on_orphan_killer
  clean_device_logout,  // logout(orphan_killer()) -> on_device_cleaned
  login,                // login(user) -> on_logged_in
  wait_for_probe,       // until the half-open circuit's probe is back -> on_woken
  answer,               // wake the session's callers (a pause began), then -> on_answered
  wait_until,           // until steady `until_ms`, or a caller leaves -> on_woken
  probe_finished,       // wake whoever waits for the probe (its outcome is recorded) -> resume
  done,                 // finished; outcome() says how
};

struct session_action {
  session_action_kind kind = session_action_kind::done;
  std::int64_t until_ms = 0;         // wait_until
  bool with_pending_logout = false;  // persist: the row keeps machine.pending_logout()
};

// How a finished operation went, for the driver's log line and metrics.
struct session_outcome {
  bool login = false;           // it worked a login (not only a validation or refresh)
  unsigned login_attempts = 0;  // logins that went out (0: never sent, not counted)
  std::optional<pool_error> failure;
};

class session_operation {
 public:
  session_operation(session_record& record, homeserver_health& health, unsigned max_attempts)
      : record_(record), health_(health), retry_(max_attempts) {}

  // The first action, from whatever busy state the machine is in.
  session_action start(const tick& t);

  // --- outcomes of the actions ----------------------------------------------------------------
  session_action on_whoami(const tick& t, validation outcome);
  session_action on_refreshed(const tick& t, matrix::upstream_result<matrix::refresh_grant> r);
  session_action on_pending_logged_out(const tick& t,
                                       const matrix::upstream_result<matrix::logout_outcome>& r);
  session_action on_persisted(const tick& t);
  session_action on_orphan_killer(const tick& t, matrix::upstream_result<matrix::login_grant> r);
  session_action on_device_cleaned(const tick& t,
                                   const matrix::upstream_result<matrix::logout_outcome>& r);
  // `jitter` in [0, 1) spreads the backoff should this login have failed.
  session_action on_logged_in(const tick& t, matrix::upstream_result<matrix::login_grant> r,
                              double jitter);
  session_action on_answered(const tick& t);
  session_action on_woken(const tick& t);
  session_action resume(const tick& t);  // after probe_finished

  const secret_string& orphan_killer() const noexcept { return orphan_killer_; }
  const session_outcome& outcome() const noexcept { return outcome_; }
  // A login was refused or paused while callers wait: the failure they would hear now.
  const std::optional<pool_error>& last_attempt_failure() const noexcept { return failure_; }

 private:
  enum class step : std::uint8_t {
    idle,
    validating,
    refreshing,
    admitting,
    pausing,
    persisting_mark,
    logging_out_pending,
    cleaning,
    logging_in,
    persisting_token,
    persisting_refresh,
    finishing_attempt,
    done
  };
  session_action next_phase(const tick& t);  // from the machine's state
  session_action refresh(const tick& t);
  session_action admit(const tick& t);
  session_action attempt(const tick& t);
  session_action after_pending_logout(const tick& t);
  session_action end_attempt(const tick& t, std::optional<pool_error> failure, double jitter);
  session_action finish_login(const tick& t);
  static session_action act(session_action_kind k) { return {k, 0, false}; }

  session_record& record_;
  homeserver_health& health_;
  login_retry retry_;
  step step_ = step::idle;
  bool probing_ = false;             // this attempt is the half-open circuit's probe
  bool was_unclean_ = false;         // the device needed cleaning when this attempt began
  bool attempt_failed_ = false;      // the attempt that just ended failed
  bool stop_after_attempt_ = false;  // ... and the retry policy says report it
  secret_string orphan_killer_;      // the cleaning login's token, logged out next
  std::optional<pool_error> failure_;
  session_outcome outcome_;
};

}  // namespace mxp::sessions
