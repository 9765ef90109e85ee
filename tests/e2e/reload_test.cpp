// End-to-end reload: SIGHUP adds, changes and removes homeservers and clients without
// dropping the sessions of homeservers that stay; a broken config changes nothing.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <csignal>
#include <thread>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;
using namespace std::chrono_literals;

namespace {

// `hs` is the first homeserver (localhost), `second` the one the reloads add and remove.
struct reload_fixture : e2e_fixture {
  reload_fixture() : e2e_fixture{"first-secret"} {}
  std::unique_ptr<fake_homeserver> second;

  void SetUp() override {
    e2e_fixture::SetUp();
    auto b = homeserver_options();
    b.server_name = "second.test";
    b.shared_secret = "second-secret";
    second = std::make_unique<fake_homeserver>(b);
    dir.write("first.secret", "first-secret");
    dir.write("second.secret", "second-secret");
  }
  homeserver_entry homeserver(const std::string& name, const fake_homeserver& server,
                              const std::string& secret_file, unsigned max_logins = 4) {
    return {.name = name,
            .url = server.url(),
            .login = "      method: shared_secret\n      secret_file: " + secret_file + "\n",
            .more = "    max_concurrent_logins: " + std::to_string(max_logins) + "\n"};
  }
  void write_config(std::vector<homeserver_entry> homeservers, const std::string& rest = "") {
    e2e_fixture::write_config(
        {.homeservers = std::move(homeservers), .sections = rest, .log = "  level: info\n"});
  }
  // Sends SIGHUP and waits until the daemon logged the outcome of that reload.
  bool reload_and_wait(const std::string& outcome) {
    const auto seen = count(daemon->log(), outcome);
    ::kill(daemon->pid(), SIGHUP);
    for (int i = 0; i < 200; ++i) {
      if (count(daemon->log(), outcome) > seen) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  static std::size_t count(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  }
};

TEST_F(reload_fixture, SighupAddsChangesAndRemovesHomeserversKeepingSessions) {
  hs->register_user("@alice:localhost");
  second->register_user("@bob:second.test");
  write_config({homeserver("localhost", *hs, "first.secret")});
  daemon = spawn_daemon();
  ASSERT_TRUE(daemon->wait_ready()) << daemon->log();
  unix_http_client c{socket};
  const auto alice = token_of(c.request("GET", "/v1/users/@alice:localhost/token").body);
  ASSERT_FALSE(alice.empty());
  EXPECT_EQ(c.request("GET", "/v1/users/@bob:second.test/token").status, 404);

  // Add a homeserver, and change the first one (a higher login cap): alice's session stays.
  write_config({homeserver("localhost", *hs, "first.secret", 8),
                homeserver("second.test", *second, "second.secret")});
  ASSERT_TRUE(reload_and_wait("configuration " + config_file + " applied")) << daemon->log();
  EXPECT_NE(daemon->log().find("homeserver second.test added"), std::string::npos);
  auto r = c.request("GET", "/v1/users/@bob:second.test/token");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto bob = token_of(r.body);
  EXPECT_TRUE(second->token_is_live(bob));
  EXPECT_EQ(token_of(c.request("GET", "/v1/users/@alice:localhost/token").body), alice);
  EXPECT_EQ(hs->login_count(), 1) << "the reload dropped no session";

  // A broken config changes nothing.
  dir.write("config.yaml",
            "listen: {unix_socket: " + socket + "}\nhomeservers:\n  localhost:\n    urll: x\n");
  ASSERT_TRUE(reload_and_wait("reload rejected")) << daemon->log();
  EXPECT_NE(daemon->log().find("homeservers.localhost.urll: unknown key"), std::string::npos)
      << daemon->log();
  EXPECT_EQ(token_of(c.request("GET", "/v1/users/@bob:second.test/token").body), bob);
  EXPECT_EQ(token_of(c.request("GET", "/v1/users/@alice:localhost/token").body), alice);

  // Remove the second homeserver: its users are unknown from now on and its session is logged out.
  write_config({homeserver("localhost", *hs, "first.secret", 8)});
  ASSERT_TRUE(reload_and_wait("configuration " + config_file + " applied")) << daemon->log();
  EXPECT_EQ(c.request("GET", "/v1/users/@bob:second.test/token").status, 404);
  for (int i = 0; i < 100 && second->token_is_live(bob); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(second->token_is_live(bob));
  EXPECT_EQ(token_of(c.request("GET", "/v1/users/@alice:localhost/token").body), alice);

  // Clients take effect at once: an entry for some other uid leaves this peer out.
  write_config({homeserver("localhost", *hs, "first.secret", 8)},
               "clients:\n  - {name: someone-else, uid: 65533, allow: [\"@*:localhost\"]}\n");
  ASSERT_TRUE(reload_and_wait("configuration " + config_file + " applied")) << daemon->log();
  EXPECT_EQ(c.request("GET", "/v1/users/@alice:localhost/token").status, 403);
  EXPECT_EQ(hs->login_count(), 1);
  EXPECT_EQ(daemon->stop(SIGTERM), 0);
}

TEST_F(reload_fixture, ARotatedSecretFileCountsAsAChange) {
  hs->register_user("@carol:localhost");  // so only the secret can be wrong
  write_config({homeserver("localhost", *hs, "first.secret")});
  daemon = spawn_daemon();
  ASSERT_TRUE(daemon->wait_ready()) << daemon->log();
  dir.write("first.secret", "rotated-secret");
  ASSERT_TRUE(reload_and_wait("configuration " + config_file + " applied")) << daemon->log();
  EXPECT_NE(daemon->log().find("homeserver localhost changed"), std::string::npos) << daemon->log();
  unix_http_client c{socket};
  EXPECT_EQ(c.request("GET", "/v1/users/@carol:localhost/token").status, 502)
      << "the fake still wants the old secret";
  EXPECT_EQ(daemon->log().find("rotated-secret"), std::string::npos);
}

}  // namespace
