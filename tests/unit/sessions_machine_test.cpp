// session_machine step by step, with times as plain numbers (the mock clock).
#include <gtest/gtest.h>

#include "sessions/session_machine.hpp"

using namespace mxp::sessions;
using mxp::secret_string;

namespace {

session_token token(std::string value, std::optional<std::int64_t> expires_at = std::nullopt) {
  return {secret_string{std::move(value)}, std::string{"DEV"}, expires_at};
}

}  // namespace

TEST(SessionMachine, FirstRequestStartsOneLoginOthersWait) {
  session_machine m{1000};
  EXPECT_EQ(m.state(), session_state::absent);
  EXPECT_EQ(m.on_token_request(1000, 0, 0), token_step::start_login);
  EXPECT_EQ(m.state(), session_state::logging_in);
  const auto flight = m.flight();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(m.on_token_request(1001, 0, 0), token_step::wait);
  m.on_login_succeeded(token("t1"), 1020);
  EXPECT_EQ(m.state(), session_state::active);
  EXPECT_EQ(m.on_token_request(1021, 0, flight), token_step::hand_out);
  EXPECT_EQ(m.token().access_token.reveal(), "t1");
  EXPECT_EQ(m.last_used_at_ms(), 1021);
  EXPECT_EQ(m.created_at_ms(), 1000);
}

TEST(SessionMachine, WaitersOfAFailedLoginFailNewCallersRetry) {
  session_machine m{0};
  ASSERT_EQ(m.on_token_request(0, 0, 0), token_step::start_login);
  const auto flight = m.flight();
  ASSERT_EQ(m.on_token_request(1, 0, 0), token_step::wait);
  m.on_login_failed();
  EXPECT_EQ(m.state(), session_state::absent);
  EXPECT_EQ(m.on_token_request(2, 0, flight), token_step::fail);    // waited for that login
  EXPECT_EQ(m.on_token_request(3, 0, 0), token_step::start_login);  // a new caller tries again
  EXPECT_NE(m.flight(), flight);
}

TEST(SessionMachine, InvalidateOnlyTheCurrentToken) {
  session_machine m{0};
  m.on_token_request(0, 0, 0);
  m.on_login_succeeded(token("current"), 10);
  EXPECT_FALSE(m.on_invalidate(secret_string{"stale"}));
  EXPECT_EQ(m.state(), session_state::active);
  EXPECT_TRUE(m.on_invalidate(secret_string{"current"}));
  EXPECT_EQ(m.state(), session_state::revoking);
  EXPECT_EQ(m.token_to_log_out().reveal(), "current");
  EXPECT_EQ(m.on_token_request(11, 0, 0), token_step::wait);  // no login while the old token dies
  m.on_logout_finished(true);
  EXPECT_EQ(m.state(), session_state::absent);
  EXPECT_FALSE(m.has_pending_logout());
  EXPECT_EQ(m.on_token_request(12, 0, 0), token_step::start_login);
}

TEST(SessionMachine, UnconfirmedLogoutIsRetriedBeforeTheNextLogin) {
  session_machine m{0};
  m.on_token_request(0, 0, 0);
  m.on_login_succeeded(token("t1"), 1);
  ASSERT_TRUE(m.on_invalidate(secret_string{"t1"}));
  m.on_logout_finished(false);  // homeserver unreachable: the token may still be live
  EXPECT_EQ(m.state(), session_state::absent);
  ASSERT_TRUE(m.has_pending_logout());
  EXPECT_EQ(m.pending_logout().reveal(), "t1");
  EXPECT_FALSE(m.pending_logout_is_renewal()) << "invalidated: it must die before the login";
  EXPECT_EQ(m.on_token_request(2, 0, 0), token_step::start_login);
  EXPECT_TRUE(m.has_pending_logout());  // the driver logs it out first
  m.on_pending_logout_done();
  m.on_login_succeeded(token("t2"), 3);
  EXPECT_EQ(m.token().access_token.reveal(), "t2");
}

TEST(SessionMachine, ExpiringTokenIsLoggedOutThenReplaced) {
  session_machine m{0};
  m.on_token_request(0, 0, 0);
  m.on_login_succeeded(token("short", 60'000), 0);
  EXPECT_EQ(m.on_token_request(30'000, 0, 0), token_step::hand_out);
  EXPECT_EQ(m.on_token_request(30'000, 20'000, 0),
            token_step::hand_out);  // 30 s left >= 20 s asked
  EXPECT_EQ(m.on_token_request(50'000, 20'000, 0), token_step::start_login);  // only 10 s left
  EXPECT_EQ(m.pending_logout().reveal(), "short");
  EXPECT_TRUE(m.pending_logout_is_renewal()) << "replaced while valid: mas lets it live on";
  m.on_pending_logout_done();
  EXPECT_FALSE(m.pending_logout_is_renewal());
  m.on_login_succeeded(token("fresh", 110'000), 50'010);
  EXPECT_EQ(m.on_token_request(50'020, 20'000, 0), token_step::hand_out);
}

TEST(SessionMachine, ExpiredTokenIsNeverHandedOut) {
  session_machine m{0};
  m.on_token_request(0, 0, 0);
  m.on_login_succeeded(token("t", 1000), 0);
  EXPECT_TRUE(m.usable(999, 0));
  EXPECT_FALSE(m.usable(1000, 0));
  EXPECT_EQ(m.on_token_request(1000, 0, 0), token_step::start_login);
}

TEST(SessionMachine, RevokeActiveLogsOutAndForgets) {
  session_machine m{0};
  m.on_token_request(0, 0, 0);
  EXPECT_EQ(m.on_revoke(), revoke_step::wait);  // login in flight
  m.on_login_succeeded(token("t"), 1);
  EXPECT_EQ(m.on_revoke(), revoke_step::start_logout);
  EXPECT_EQ(m.token_to_log_out().reveal(), "t");
  EXPECT_EQ(m.on_token_request(2, 0, 0), token_step::wait);
  m.on_logout_finished(true);
  EXPECT_EQ(m.state(), session_state::gone);
  EXPECT_EQ(m.on_token_request(3, 0, 0), token_step::gone);
}

TEST(SessionMachine, RevokeWithoutTokenForgetsAtOnce) {
  session_machine m{0};
  EXPECT_EQ(m.on_revoke(), revoke_step::forget);
  EXPECT_EQ(m.state(), session_state::gone);
}

TEST(SessionMachine, RevokeOfAbsentSessionStillLogsOutAPendingToken) {
  session_machine m{0};
  m.on_token_request(0, 0, 0);
  m.on_login_succeeded(token("t"), 1);
  m.on_invalidate(secret_string{"t"});
  m.on_logout_finished(false);
  EXPECT_EQ(m.on_revoke(), revoke_step::start_logout);
  EXPECT_EQ(m.token_to_log_out().reveal(), "t");
  m.on_logout_finished(false);  // still unreachable: kept, not lost
  EXPECT_EQ(m.state(), session_state::absent);
  EXPECT_TRUE(m.has_pending_logout());
}

TEST(SessionMachine, StaleEventsAreIgnored) {
  session_machine m{0};
  m.on_login_succeeded(token("x"), 0);  // no login was started
  EXPECT_EQ(m.state(), session_state::absent);
  m.on_logout_finished(true);
  EXPECT_EQ(m.state(), session_state::absent);
  m.on_login_failed();
  EXPECT_EQ(m.state(), session_state::absent);
}

// --- refresh, margins, validation ------------------------------------------------

namespace {

session_token refreshable(std::string value, std::int64_t now, std::int64_t lifetime,
                          std::string refresh) {
  return {secret_string{std::move(value)}, std::string{"DEV"}, now + lifetime,
          secret_string{std::move(refresh)}, lifetime};
}

}  // namespace

TEST(SessionMachineRefresh, WithinTheMarginARefreshableTokenIsRefreshedNotReplaced) {
  const renewal_policy policy{.refresh_margin_ms = 60'000};
  session_machine m{0};
  ASSERT_EQ(m.on_token_request(0, 0, 0, policy), token_step::start_login);
  m.on_login_succeeded(refreshable("a1", 0, 300'000, "r1"), 0);
  EXPECT_EQ(m.on_token_request(239'000, 0, 0, policy), token_step::hand_out);       // 61 s left
  EXPECT_EQ(m.on_token_request(241'000, 0, 0, policy), token_step::start_renewal);  // 59 s left
  EXPECT_EQ(m.state(), session_state::refreshing);
  const auto flight = m.flight();
  EXPECT_FALSE(m.has_pending_logout());  // the same device goes on: nothing is logged out
  EXPECT_EQ(m.on_token_request(241'001, 0, 0, policy), token_step::wait);
  m.on_refresh_succeeded({secret_string{"a2"}, std::nullopt, 541'000, secret_string{}, 300'000},
                         241'000);
  EXPECT_EQ(m.state(), session_state::active);
  EXPECT_EQ(m.on_token_request(241'002, 0, flight, policy), token_step::hand_out);
  EXPECT_EQ(m.token().access_token.reveal(), "a2");
  EXPECT_EQ(m.token().refresh_token.reveal(), "r1");  // none in the answer: the old one is kept
  EXPECT_EQ(m.token().device_id, "DEV");
}

TEST(SessionMachineRefresh, CallersTheCurrentTokenSatisfiesDoNotWaitForARefresh) {
  const renewal_policy policy{.refresh_margin_ms = 60'000};
  session_machine m{0};
  m.on_token_request(0, 0, 0, policy);
  m.on_login_succeeded(refreshable("a1", 0, 300'000, "r1"), 0);
  ASSERT_TRUE(m.start_background_refresh(190'000, policy));   // 110 s left < 2 x margin
  EXPECT_FALSE(m.start_background_refresh(190'001, policy));  // already under way
  EXPECT_TRUE(m.ready_for(190'000, 0, policy));
  EXPECT_EQ(m.on_token_request(190'000, 0, 0, policy), token_step::hand_out);
  EXPECT_EQ(m.on_token_request(190'000, 120'000, 0, policy),
            token_step::wait);  // wants more than is left
}

TEST(SessionMachineRefresh, BackgroundRefreshWaitsUntilTwiceTheMargin) {
  const renewal_policy policy{.refresh_margin_ms = 60'000};
  session_machine m{0};
  m.on_token_request(0, 0, 0, policy);
  m.on_login_succeeded(refreshable("a1", 0, 300'000, "r1"), 0);
  EXPECT_FALSE(m.start_background_refresh(179'999, policy));  // 120.001 s left
  EXPECT_TRUE(m.start_background_refresh(180'001, policy));
  session_machine plain{0};
  plain.on_token_request(0, 0, 0, policy);
  plain.on_login_succeeded(token("t", 300'000), 0);
  EXPECT_FALSE(
      plain.start_background_refresh(290'000, policy));  // no refresh token: renewed on demand
}

TEST(SessionMachineRefresh, AFailedRefreshBecomesALoginOfTheSameFlightThatLogsTheOldTokenOut) {
  const renewal_policy policy{.refresh_margin_ms = 60'000};
  session_machine m{0};
  m.on_token_request(0, 0, 0, policy);
  m.on_login_succeeded(refreshable("a1", 0, 100'000, "r1"), 0);
  ASSERT_EQ(m.on_token_request(60'000, 0, 0, policy), token_step::start_renewal);
  const auto flight = m.flight();
  m.on_refresh_failed();
  EXPECT_EQ(m.state(), session_state::logging_in);
  EXPECT_EQ(m.flight(), flight);  // its waiters keep waiting for the login
  EXPECT_EQ(m.pending_logout().reveal(), "a1");
  m.on_login_failed();
  EXPECT_EQ(m.on_token_request(60'001, 0, flight, policy), token_step::fail);
}

TEST(SessionMachineRefresh, MarginIsAtMostHalfTheLifetime) {
  const renewal_policy policy{.refresh_margin_ms = 60'000};
  session_machine m{0};
  m.on_token_request(0, 0, 0, policy);
  m.on_login_succeeded(refreshable("a1", 0, 30'000, "r1"), 0);  // shorter than the margin
  EXPECT_EQ(m.effective_margin(policy), 15'000);
  EXPECT_EQ(m.on_token_request(14'000, 0, 0, policy), token_step::hand_out);
  EXPECT_EQ(m.on_token_request(16'000, 0, 0, policy), token_step::start_renewal);
}

TEST(SessionMachineRefresh, AskingForMoreThanATokenLivesIsTooShortAfterTheRenewal) {
  session_machine m{0};
  m.on_token_request(0, 0, 0);
  m.on_login_succeeded(refreshable("a1", 0, 30'000, "r1"), 0);
  ASSERT_EQ(m.on_token_request(1, 60'000, 0), token_step::start_renewal);
  const auto flight = m.flight();
  m.on_refresh_succeeded(refreshable("a2", 1, 30'000, "r2"), 1);
  EXPECT_EQ(m.on_token_request(2, 60'000, flight), token_step::too_short);
  EXPECT_EQ(m.on_token_request(2, 20'000, flight), token_step::hand_out);
}

TEST(SessionMachineValidation, AnIdleSessionIsValidatedBeforeItIsHandedOut) {
  const renewal_policy policy{.validate_after_ms = 10'000};
  session_machine m{0};
  m.on_token_request(0, 0, 0, policy);
  m.on_login_succeeded(token("t1"), 0);
  EXPECT_EQ(m.on_token_request(9'000, 0, 0, policy), token_step::hand_out);
  EXPECT_FALSE(m.ready_for(20'000, 0, policy));  // idle 11 s: the fast path must not hand it out
  EXPECT_EQ(m.on_token_request(20'000, 0, 0, policy), token_step::start_renewal);
  EXPECT_EQ(m.state(), session_state::validating);
  EXPECT_EQ(m.on_token_request(20'001, 0, 0, policy), token_step::wait);
  m.on_validated(validation::alive);
  EXPECT_EQ(m.on_token_request(20'002, 0, 0, policy), token_step::hand_out);
}

TEST(SessionMachineValidation, ADeadTokenIsReplacedWithoutALogout) {
  const renewal_policy policy{.validate_after_ms = 10'000};
  session_machine m{0};
  m.on_token_request(0, 0, 0, policy);
  m.on_login_succeeded(token("t1"), 0);
  ASSERT_EQ(m.on_token_request(20'000, 0, 0, policy), token_step::start_renewal);
  m.on_validated(validation::dead);
  EXPECT_EQ(m.state(), session_state::logging_in);
  EXPECT_FALSE(m.has_pending_logout());

  session_machine r{0};
  r.on_token_request(0, 0, 0, policy);
  r.on_login_succeeded(refreshable("a1", 0, 300'000, "r1"), 0);
  ASSERT_EQ(r.on_token_request(20'000, 0, 0, policy), token_step::start_renewal);
  r.on_validated(validation::dead);  // soft logout: the refresh token still works
  EXPECT_EQ(r.state(), session_state::refreshing);
}

TEST(SessionMachineValidation, UnknownOutcomeHandsTheTokenOut) {
  const renewal_policy policy{.validate_after_ms = 10'000};
  session_machine m{0};
  m.on_token_request(0, 0, 0, policy);
  m.on_login_succeeded(token("t1"), 0);
  ASSERT_EQ(m.on_token_request(20'000, 0, 0, policy), token_step::start_renewal);
  m.on_validated(validation::unknown);
  EXPECT_EQ(m.on_token_request(20'001, 0, 0, policy), token_step::hand_out);
}

TEST(SessionMachineRefresh, ADeferredRefreshKeepsTheTokenForWaitersItStillCovers) {
  const renewal_policy policy{.refresh_margin_ms = 60'000};
  session_machine m{0};
  m.on_token_request(0, 0, 0, policy);
  m.on_login_succeeded(refreshable("a1", 0, 300'000, "r1"), 0);
  ASSERT_EQ(m.on_token_request(250'000, 0, 0, policy), token_step::start_renewal);  // 50 s left
  const auto flight = m.flight();
  m.on_refresh_deferred();  // the homeserver's circuit is open
  EXPECT_EQ(m.state(), session_state::active);
  EXPECT_FALSE(m.has_pending_logout()) << "a token that still works is not thrown away";
  EXPECT_EQ(m.on_token_request(250'001, 10'000, flight, policy), token_step::hand_out);
  EXPECT_EQ(m.token().access_token.reveal(), "a1");
  EXPECT_EQ(m.on_token_request(250'001, 55'000, flight, policy),
            token_step::fail);  // not enough left
  EXPECT_EQ(m.on_token_request(250'002, 0, 0, policy),
            token_step::start_renewal);  // new callers retry
}
