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
  EXPECT_EQ(m.on_token_request(2, 0, flight), token_step::fail);  // waited for that login
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
  EXPECT_EQ(m.on_token_request(30'000, 20'000, 0), token_step::hand_out);  // 30 s left >= 20 s asked
  EXPECT_EQ(m.on_token_request(50'000, 20'000, 0), token_step::start_login);  // only 10 s left
  EXPECT_EQ(m.pending_logout().reveal(), "short");
  m.on_pending_logout_done();
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
