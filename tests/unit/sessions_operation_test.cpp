// session_operation and login_retry step by step, without sockets or coroutines: each test
// feeds outcomes as a driver would and checks the action that comes next.
#include <gtest/gtest.h>

#include "core/errc.hpp"
#include "sessions/login_retry.hpp"
#include "sessions/session_operation.hpp"

using namespace mxp;
using namespace mxp::sessions;
using kind = session_action_kind;

namespace {

matrix::upstream_error failure(errc code, int status = 0) {
  matrix::upstream_error e;
  e.code = code;
  e.http_status = status;
  return e;
}

// A homeserver call's failure as the client returns it.
struct failed {
  matrix::upstream_error e;
  template <typename T>
  operator matrix::upstream_result<T>() const {
    return e;
  }
};

matrix::login_grant grant(std::string token, std::optional<std::int64_t> expires_in = {}) {
  return {secret_string{std::move(token)}, "@u:hs.test", std::string{"DEV"}, expires_in, {}};
}

struct operation_test : ::testing::Test {
  session_record record{0};
  homeserver_health health{health_options{100, 1000, 3, 500}};
  tick at(std::int64_t ms, unsigned waiters = 1) { return {ms, 1'000'000 + ms, false, waiters}; }
  // The session asked for a token: logging_in, as the pool's caller leaves it.
  void request_login() {
    ASSERT_EQ(record.machine.on_token_request(1'000'000, 0, 0), token_step::start_login);
  }
};

TEST_F(operation_test, ALoginMarksTheDeviceThenLogsInThenPersistsTheToken) {
  request_login();
  session_operation op{record, health, 3};
  auto a = op.start(at(0));
  EXPECT_EQ(a.kind, kind::persist);  // the login-in-flight mark, durable before the login
  EXPECT_TRUE(a.with_pending_logout);
  EXPECT_TRUE(record.device_unclean);
  EXPECT_EQ(op.on_persisted(at(0)).kind, kind::login);
  a = op.on_logged_in(at(5), grant("tok", 60'000), 0.5);
  EXPECT_EQ(a.kind, kind::persist);  // the token, durable before anyone sees it
  EXPECT_FALSE(a.with_pending_logout);
  EXPECT_FALSE(record.device_unclean);
  EXPECT_EQ(record.machine.state(), session_state::active);
  EXPECT_EQ(record.machine.token().expires_at_ms, 1'000'005 + 60'000);
  EXPECT_EQ(op.on_persisted(at(6)).kind, kind::done);
  EXPECT_EQ(op.outcome().login_attempts, 1u);
  EXPECT_FALSE(op.outcome().failure);
}

TEST_F(operation_test, APendingLogoutGoesFirstAndAFailedOneEndsTheAttempt) {
  record.machine.restore({}, secret_string{"old"}, 0, 0);
  request_login();
  session_operation op{record, health, 1};
  EXPECT_EQ(op.start(at(0)).kind, kind::logout_pending);
  auto a = op.on_pending_logged_out(at(1), failed{failure(errc::upstream_unavailable)});
  EXPECT_EQ(a.kind, kind::done);  // one attempt allowed
  EXPECT_TRUE(record.machine.has_pending_logout()) << "never dropped";
  EXPECT_EQ(record.machine.state(), session_state::absent);
  EXPECT_EQ(health.consecutive_failures(), 1u);
}

TEST_F(operation_test, AnUncleanDeviceIsCleanedBeforeTheLogin) {
  record.device_unclean = true;
  request_login();
  session_operation op{record, health, 3};
  EXPECT_EQ(op.start(at(0)).kind, kind::clean_device_login);
  EXPECT_EQ(op.on_orphan_killer(at(1), grant("killer")).kind, kind::clean_device_logout);
  EXPECT_EQ(op.orphan_killer().reveal(), "killer");
  EXPECT_EQ(op.on_device_cleaned(at(2), matrix::logout_outcome{true}).kind, kind::login);
  EXPECT_EQ(op.on_logged_in(at(3), grant("tok"), 0).kind, kind::persist);
  EXPECT_FALSE(record.device_unclean);
}

TEST_F(operation_test, ARefusedLoginIssuedNoTokenAndIsReportedAtOnce) {
  request_login();
  session_operation op{record, health, 3};
  op.start(at(0));
  op.on_persisted(at(0));
  auto a = op.on_logged_in(at(1), failed{failure(errc::upstream_refused, 403)}, 0);
  EXPECT_EQ(a.kind, kind::done);
  EXPECT_FALSE(record.device_unclean) << "a 403 issued no token";
  ASSERT_TRUE(op.outcome().failure);
  EXPECT_EQ(op.outcome().failure->http_status, 403);
  EXPECT_EQ(health.consecutive_failures(), 0u) << "it answered";
}

TEST_F(operation_test, ATimedOutLoginKeepsTheDeviceMarkedAndBacksOffBeforeTheNextTry) {
  request_login();
  session_operation op{record, health, 3};
  op.start(at(0));
  op.on_persisted(at(0));
  auto a = op.on_logged_in(at(10), failed{failure(errc::upstream_timeout)}, 0.0);
  EXPECT_TRUE(record.device_unclean) << "a token may exist that nobody holds";
  // Backoff: 100 ms scaled by jitter 0 to 50 ms; callers hear why, then the task waits.
  EXPECT_EQ(a.kind, kind::answer);
  ASSERT_TRUE(record.last_failure);
  EXPECT_EQ(record.last_failure->retry_after_ms, 50);
  EXPECT_EQ(record.retry_at_ms, 60);
  a = op.on_answered(at(10));
  EXPECT_EQ(a.kind, kind::wait_until);
  EXPECT_EQ(a.until_ms, 60);
  // Woken at the end of the pause with a caller still waiting: the next try cleans the device.
  EXPECT_EQ(op.on_woken(at(60)).kind, kind::clean_device_login);
}

TEST_F(operation_test, APauseNobodyWaitsForIsGivenUp) {
  request_login();
  session_operation op{record, health, 3};
  op.start(at(0));
  op.on_persisted(at(0));
  op.on_logged_in(at(0), failed{failure(errc::upstream_unavailable)}, 0.5);
  op.on_answered(at(0));
  auto a = op.on_woken(at(10, /*waiters=*/0));  // the last caller left before the pause ended
  EXPECT_EQ(a.kind, kind::done);
  ASSERT_TRUE(op.outcome().failure);
  EXPECT_EQ(op.outcome().failure->code, errc::upstream_unavailable);
  EXPECT_GT(op.outcome().failure->retry_after_ms.value_or(0), 0);
  EXPECT_EQ(record.machine.state(), session_state::absent);
}

TEST_F(operation_test, ARateLimitIsWaitedOutWithoutCountingAgainstTheAttempts) {
  request_login();
  session_operation op{record, health, 1};
  op.start(at(0));
  op.on_persisted(at(0));
  auto limited = failure(errc::upstream_rate_limited, 429);
  limited.retry_after_ms = 2'000;
  auto a = op.on_logged_in(at(0), failed{limited}, 0);
  EXPECT_EQ(a.kind, kind::answer);
  EXPECT_EQ(record.last_failure->code, errc::upstream_rate_limited);
  EXPECT_EQ(op.on_answered(at(0)).until_ms, 2'000);
  // A 429 issued no token: the device is clean, and the next try marks it again.
  EXPECT_FALSE(record.device_unclean);
  EXPECT_EQ(op.on_woken(at(2'000)).kind, kind::persist);
  EXPECT_EQ(op.on_persisted(at(2'000)).kind, kind::login);
}

TEST_F(operation_test, TheHalfOpenCircuitSendsOneProbeAndReleasesWhoWaitsForIt) {
  for (int i = 0; i < 3; ++i) health.on_unreachable(0, 0.0);  // open until 200 ms
  request_login();
  session_operation op{record, health, 3};
  EXPECT_EQ(op.start(at(0)).kind, kind::answer);  // open: callers hear it, the task waits
  EXPECT_EQ(op.on_answered(at(0)).until_ms, 200);
  EXPECT_EQ(op.on_woken(at(200)).kind, kind::persist);  // half open: this login is the probe
  EXPECT_TRUE(health.probing());
  EXPECT_EQ(health.admit(200), admission::wait_for_probe);
  EXPECT_EQ(op.on_persisted(at(200)).kind, kind::login);
  EXPECT_EQ(op.on_logged_in(at(201), grant("tok"), 0).kind, kind::persist);
  EXPECT_EQ(op.on_persisted(at(201)).kind, kind::probe_finished);
  EXPECT_FALSE(health.probing());
  EXPECT_EQ(health.circuit(201), circuit_state::closed);
  EXPECT_EQ(op.resume(at(201)).kind, kind::done);
}

TEST_F(operation_test, ARefreshThatFailsFallsBackToALoginAndOneThatWorksIsPersisted) {
  record.machine.restore(
      {secret_string{"a"}, std::string{"DEV"}, 1'000'000 + 20'000, secret_string{"r"}, 60'000}, {},
      0, 0);
  ASSERT_EQ(record.machine.on_token_request(1'000'000, 0, 0, {40'000, 0}),
            token_step::start_renewal);
  session_operation op{record, health, 3};
  EXPECT_EQ(op.start(at(0)).kind, kind::refresh);
  auto a = op.on_refreshed(at(1), matrix::refresh_grant{secret_string{"b"}, {}, 60'000});
  EXPECT_EQ(a.kind, kind::persist);
  EXPECT_EQ(record.machine.token().access_token.reveal(), "b");
  EXPECT_EQ(record.machine.token().refresh_token.reveal(), "r") << "kept when none came back";
  EXPECT_EQ(op.on_persisted(at(1)).kind, kind::done);

  ASSERT_EQ(record.machine.on_token_request(1'000'000 + 40'000, 0, 0, {40'000, 0}),
            token_step::start_renewal);
  session_operation again{record, health, 3};
  EXPECT_EQ(again.start(at(40'000)).kind, kind::refresh);
  a = again.on_refreshed(at(40'001), failed{failure(errc::upstream_timeout)});
  EXPECT_EQ(a.kind, kind::logout_pending) << "never replayed: the old token dies, then a login";
}

TEST_F(operation_test, AnOpenCircuitDefersARefreshAndKeepsTheToken) {
  for (int i = 0; i < 3; ++i) health.on_unreachable(0, 0.0);
  record.machine.restore(
      {secret_string{"a"}, std::string{"DEV"}, 1'000'000 + 20'000, secret_string{"r"}, 60'000}, {},
      0, 0);
  ASSERT_EQ(record.machine.on_token_request(1'000'000, 0, 0, {40'000, 0}),
            token_step::start_renewal);
  session_operation op{record, health, 3};
  EXPECT_EQ(op.start(at(0)).kind, kind::done);
  EXPECT_EQ(record.machine.state(), session_state::active);
  EXPECT_EQ(record.machine.token().access_token.reveal(), "a");
}

TEST_F(operation_test, ShutdownEndsALoginBeforeItIsSent) {
  request_login();
  session_operation op{record, health, 3};
  auto a = op.start({0, 0, /*stopping=*/true, 1});
  EXPECT_EQ(a.kind, kind::done);
  ASSERT_TRUE(op.outcome().failure);
  EXPECT_EQ(op.outcome().failure->code, errc::shutting_down);
  EXPECT_EQ(op.outcome().login_attempts, 0u) << "not counted as a login";
}

TEST(login_retry, ClassifiesFailuresAndCountsAttempts) {
  homeserver_health health;
  login_retry retry{2};
  retry.on_attempt();
  EXPECT_EQ(retry.on_failure(health, failure(errc::upstream_unavailable), 0, 0),
            retry_decision::again);
  retry.on_attempt();
  EXPECT_EQ(retry.on_failure(health, failure(errc::upstream_unavailable), 0, 0),
            retry_decision::report);
  EXPECT_EQ(retry.on_failure(health, failure(errc::upstream_refused, 403), 0, 0),
            retry_decision::report);
  EXPECT_EQ(retry.on_failure(health, failure(errc::shutting_down), 0, 0), retry_decision::report);
  EXPECT_EQ(retry.on_failure(health, failure(errc::upstream_rate_limited, 429), 0, 0),
            retry_decision::again);

  EXPECT_TRUE(is_transient(failure(errc::upstream_refused, 502)));
  EXPECT_TRUE(is_transient(failure(errc::upstream_bad_response, 200)));
  EXPECT_FALSE(is_transient(failure(errc::upstream_refused, 403)));
  auto never_sent = failure(errc::upstream_unavailable);
  never_sent.request_sent = false;
  EXPECT_FALSE(may_have_issued_token(never_sent));
  EXPECT_TRUE(may_have_issued_token(failure(errc::upstream_timeout)));
  EXPECT_TRUE(may_have_issued_token(failure(errc::upstream_unavailable, 504)));
  EXPECT_FALSE(may_have_issued_token(failure(errc::upstream_refused, 403)));
}

// rest_backend's 403 may mean a backend the homeserver cannot reach: it backs off, is retried
// and counts towards the circuit like a 5xx, while keeping its status for the API answer.
TEST(login_retry, ARefusalMarkedRetryWithBackoffIsTransient) {
  auto ambiguous = failure(errc::upstream_refused, 403);
  ambiguous.retry_with_backoff = true;
  EXPECT_TRUE(is_transient(ambiguous));
  EXPECT_FALSE(may_have_issued_token(ambiguous));
  homeserver_health health;
  login_retry retry{2};
  retry.on_attempt();
  EXPECT_EQ(retry.on_failure(health, ambiguous, 0, 0), retry_decision::again);
  EXPECT_GT(health.not_before_ms(), 0) << "backing off";
  EXPECT_EQ(health.consecutive_failures(), 1u);
  retry.on_attempt();
  EXPECT_EQ(retry.on_failure(health, ambiguous, 1000, 0), retry_decision::report);
  EXPECT_EQ(health.consecutive_failures(), 2u);
}

TEST(login_retry, APauseIsReportedAs429ForARateLimitAnd503OtherwiseWithTheWait) {
  homeserver_health health;
  health.on_rate_limited(0, 3'000);
  auto why = pause_reason(health, 1'000, std::nullopt);
  EXPECT_EQ(why.code, errc::upstream_rate_limited);
  EXPECT_EQ(why.retry_after_ms, 2'000);
  homeserver_health failing{health_options{100, 1000, 3, 500}};
  for (int i = 0; i < 3; ++i) failing.on_unreachable(0, 0.0);
  why = pause_reason(failing, 50, std::nullopt);
  EXPECT_EQ(why.code, errc::upstream_unavailable);
  EXPECT_EQ(why.retry_after_ms, 150);
  EXPECT_NE(why.diagnostic.find("circuit open"), std::string::npos);
}

}  // namespace
