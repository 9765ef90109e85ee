// End-to-end: the operator commands of the built mxpuppetctl against the real mxpuppetd
// serving two fake homeservers: sessions --homeserver, revoke --all-idle, status.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <map>
#include <string>

#include "client/unix_http_client.hpp"
#include "support/daemon_process.hpp"
#include "support/fake_homeserver.hpp"
#include "support/json_fields.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;

namespace {

constexpr const char* secret = "e2e-ctl-shared-secret";

TEST(CtlAgainstDaemon, SessionsByHomeserverRevokeAllIdleAndStatus) {
  temp_dir dir;
  fake_homeserver_options o;
  o.shared_secret = secret;
  fake_homeserver first{o};
  o.server_name = "second.test";
  fake_homeserver second{o};
  first.register_users({"@alice:localhost", "@bob:localhost"});
  second.register_user("@carol:second.test");
  const auto socket = dir.file("mxpuppetd.sock");
  dir.write("secret", std::string{secret} + "\n");
  const auto login = "\n    login:\n      method: shared_secret\n      secret_file: secret\n";
  const auto config =
      dir.write("config.yaml", "listen:\n  unix_socket: " + socket +
                                   "\nhomeservers:\n  localhost:\n    url: " + first.url() + login +
                                   "  second.test:\n    url: " + second.url() + login +
                                   "log:\n  level: debug\n");
  daemon_process daemon{config, socket, dir.file("daemon.log")};
  ASSERT_TRUE(daemon.wait_ready()) << daemon.log();

  unix_http_client c{socket};
  std::map<std::string, std::string> tokens;
  for (const char* user : {"@alice:localhost", "@bob:localhost", "@carol:second.test"}) {
    const auto r = c.request("GET", std::string{"/v1/users/"} + user + "/token");
    ASSERT_EQ(r.status, 200) << r.body;
    tokens[user] = json_string(r.body, "access_token");
  }
  const auto ctl = env_or_throw("MXPUPPETCTL_BIN");

  auto r = run_program({ctl, "--socket", socket, "sessions", "--homeserver", "second.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("@carol:second.test"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("@alice:localhost"), std::string::npos) << r.output;
  for (const auto& [user, token] : tokens) EXPECT_EQ(r.output.find(token), std::string::npos);

  // Nothing has been idle for an hour: nothing is revoked.
  r = run_program({ctl, "--socket", socket, "revoke", "--all-idle"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "no active sessions idle for 1h or longer\n");
  // Everything on localhost has been idle for 0s or longer: both are logged out there.
  r = run_program({ctl, "--socket", socket, "revoke", "--all-idle", "--idle-for", "0s",
                   "--homeserver", "localhost"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("revoked 2 of 2 sessions idle for 0ms or longer on localhost"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(first.token_is_live(tokens["@alice:localhost"]));
  EXPECT_FALSE(first.token_is_live(tokens["@bob:localhost"]));
  EXPECT_TRUE(second.token_is_live(tokens["@carol:second.test"]));
  r = run_program({ctl, "--socket", socket, "sessions"});
  EXPECT_EQ(r.output.find("@alice:localhost"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("@bob:localhost"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("@carol:second.test"), std::string::npos) << r.output;

  // status: both homeservers with their health.
  r = run_program({ctl, "--socket", socket, "status"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("homeservers:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("localhost"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("second.test"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("healthy"), std::string::npos) << r.output;

  const auto log = daemon.log();
  for (const auto& [user, token] : tokens)
    EXPECT_EQ(log.find(token), std::string::npos) << "token in the log";
}

}  // namespace
