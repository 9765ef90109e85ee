// End-to-end: the operator commands of the built mxpuppetctl against the real mxpuppetd
// serving two fake homeservers: sessions --homeserver, revoke --all-idle, status.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <map>
#include <string>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;

namespace {

constexpr const char* secret = "e2e-ctl-shared-secret";

struct CtlAgainstDaemon : e2e_fixture {
  CtlAgainstDaemon() : e2e_fixture{secret} {}
};

TEST_F(CtlAgainstDaemon, SessionsByHomeserverRevokeAllIdleAndStatus) {
  fake_homeserver& first = *hs;
  auto o = homeserver_options();
  o.server_name = "second.test";
  fake_homeserver second{o};
  first.register_users({"@alice:localhost", "@bob:localhost"});
  second.register_user("@carol:second.test");
  ASSERT_NO_FATAL_FAILURE(
      start({.homeservers = {default_entry(), {.name = "second.test", .url = second.url()}}}));

  unix_http_client c{socket};
  std::map<std::string, std::string> tokens;
  for (const char* user : {"@alice:localhost", "@bob:localhost", "@carol:second.test"}) {
    const auto r = c.request("GET", std::string{"/v1/users/"} + user + "/token");
    ASSERT_EQ(r.status, 200) << r.body;
    tokens[user] = json_string(r.body, "access_token");
  }

  auto r = run_ctl({"sessions", "--homeserver", "second.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("@carol:second.test"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("@alice:localhost"), std::string::npos) << r.output;
  for (const auto& [user, token] : tokens) EXPECT_EQ(r.output.find(token), std::string::npos);

  // Nothing has been idle for an hour: nothing is revoked.
  r = run_ctl({"revoke", "--all-idle"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "no active sessions idle for 1h or longer\n");
  // Everything on localhost has been idle for 0s or longer: both are logged out there.
  r = run_ctl({"revoke", "--all-idle", "--idle-for", "0s", "--homeserver", "localhost"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("revoked 2 of 2 sessions idle for 0ms or longer on localhost"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(first.token_is_live(tokens["@alice:localhost"]));
  EXPECT_FALSE(first.token_is_live(tokens["@bob:localhost"]));
  EXPECT_TRUE(second.token_is_live(tokens["@carol:second.test"]));
  r = run_ctl({"sessions"});
  EXPECT_EQ(r.output.find("@alice:localhost"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("@bob:localhost"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("@carol:second.test"), std::string::npos) << r.output;

  // status: both homeservers with their health.
  r = run_ctl({"status"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("homeservers:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("localhost"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("second.test"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("healthy"), std::string::npos) << r.output;

  const auto log = daemon->log();
  for (const auto& [user, token] : tokens)
    EXPECT_EQ(log.find(token), std::string::npos) << "token in the log";
}

}  // namespace
