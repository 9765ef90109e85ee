// End-to-end: access control of the socket API. The test process is the bridge; the
// `clients:` section matches it by its uid/gid (SO_PEERCRED) and lists the user IDs it
// may ask for. A denied request gets 403 M_FORBIDDEN and causes no login.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/e2e_fixture.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;
using namespace std::chrono_literals;

namespace {

constexpr const char* secret = "access-e2e-shared-secret";

struct access_fixture : e2e_fixture {
  access_fixture() : e2e_fixture{secret} {}
  void start(const std::string& clients_yaml, const std::string& listen_extra = "") {
    e2e_fixture::start({.listen = listen_extra, .sections = clients_yaml});
  }
  static std::string me() { return std::to_string(::getuid()); }
};

TEST_F(access_fixture, DeniedUserGets403AndNoLoginWhileAllowedUserGetsItsToken) {
  // Every user exists, the denied ones too: only the access policy can refuse them.
  hs->register_users(
      {"@bob:localhost", "@bot_12:localhost", "@allowed-alice:localhost", "@bot_1:localhost"});
  start("clients:\n  - name: test-bridge\n    uid: " + me() +
        "\n    allow: [\"@allowed*:localhost\", \"@bot_?:localhost\"]\n");
  unix_http_client c{socket};

  auto denied = c.request("GET", "/v1/users/@bob:localhost/token");
  EXPECT_EQ(denied.status, 403) << denied.body;
  EXPECT_NE(denied.body.find(R"("errcode":"M_FORBIDDEN")"), std::string::npos) << denied.body;
  // The slow path (percent-encoded user ID) decides the same way.
  EXPECT_EQ(c.request("GET", "/v1/users/%40bob%3Alocalhost/token").status, 403);
  EXPECT_EQ(c.request("DELETE", "/v1/users/@bob:localhost/session").status, 403);
  EXPECT_EQ(
      c.request("POST", "/v1/users/@bob:localhost/invalidate", R"({"access_token":"x"})").status,
      403);
  EXPECT_EQ(c.request("GET", "/v1/users/@bot_12:localhost/token").status,
            403);  // '?' is one character
  EXPECT_EQ(hs->login_count(), 0) << "a denied request caused a login";

  auto allowed = c.request("GET", "/v1/users/@allowed-alice:localhost/token");
  EXPECT_EQ(allowed.status, 200) << allowed.body;
  EXPECT_EQ(c.request("GET", "/v1/users/%40bot_1%3Alocalhost/token").status, 200);
  EXPECT_EQ(hs->login_count(), 2);
  EXPECT_EQ(c.request("GET", "/v1/users/@allowed-alice:localhost/token").status,
            200);  // cached: fast path
  EXPECT_EQ(hs->login_count(), 2);

  // The peer is covered by an entry: status and sessions answer; healthz is open anyway.
  EXPECT_EQ(c.request("GET", "/v1/status").status, 200);
  EXPECT_EQ(c.request("GET", "/v1/sessions").status, 200);
  EXPECT_EQ(c.request("GET", "/healthz").status, 200);

  const auto log = daemon->log();
  const auto pid = std::to_string(::getpid());
  EXPECT_NE(log.find("access: denied @bob:localhost to peer uid=" + me() + " pid=" + pid +
                     " (client test-bridge: no allow glob matches)"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("access: allowed @allowed-alice:localhost to peer uid=" + me() +
                     " pid=" + pid + " (client test-bridge)"),
            std::string::npos)
      << log;
}

TEST_F(access_fixture, PeerCoveredByNoEntryOnlyReachesHealthz) {
  hs->register_user("@alice:localhost");
  start("clients:\n  - name: someone-else\n    uid: " + std::to_string(::getuid() + 4242) +
        "\n    allow: [\"*\"]\n");
  unix_http_client c{socket};
  EXPECT_EQ(c.request("GET", "/v1/users/@alice:localhost/token").status, 403);
  EXPECT_EQ(c.request("GET", "/v1/status").status, 403);
  EXPECT_EQ(c.request("GET", "/v1/sessions").status, 403);
  EXPECT_EQ(c.request("GET", "/healthz").status, 200);
  EXPECT_EQ(hs->login_count(), 0);
  EXPECT_NE(daemon->log().find("(no client entry covers it)"), std::string::npos) << daemon->log();
}

TEST_F(access_fixture, GroupEntriesMatchThePeersGroupAndEntriesAddUp) {
  hs->register_users({"@gina:localhost", "@ulla:localhost", "@xavier:localhost"});
  start("clients:\n  - name: by-group\n    gid: " + std::to_string(::getgid()) +
        "\n    allow: [\"@g*:localhost\"]\n  - name: by-uid\n    uid: " + me() +
        "\n    allow: [\"@u*:localhost\"]\n");
  unix_http_client c{socket};
  EXPECT_EQ(c.request("GET", "/v1/users/@gina:localhost/token").status, 200);
  EXPECT_EQ(c.request("GET", "/v1/users/@ulla:localhost/token").status, 200);
  EXPECT_EQ(c.request("GET", "/v1/users/@xavier:localhost/token").status, 403);
  EXPECT_EQ(hs->login_count(), 2);
}

TEST_F(access_fixture, NoClientsSectionAllowsEveryone) {
  hs->register_user("@anyone:localhost");
  start("");
  unix_http_client c{socket};
  EXPECT_EQ(c.request("GET", "/v1/users/@anyone:localhost/token").status, 200);
  EXPECT_NE(daemon->log().find("no clients: section"), std::string::npos);
}

TEST_F(access_fixture, SocketOwnerGroupAndModeAreApplied) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another user needs root";
  start("", "  socket_owner: \"4321\"\n  socket_group: \"5432\"\n  socket_mode: \"0620\"\n");
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 4321u);
  EXPECT_EQ(st.st_gid, 5432u);
  EXPECT_EQ(st.st_mode & 0777, 0620u);
}

}  // namespace
