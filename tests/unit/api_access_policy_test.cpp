// access_policy: glob matching, peer matching by uid/gid/supplementary group, and the
// `clients:` / `listen.socket_owner` config keys it is built from.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include "api/access_policy.hpp"
#include "config/config.hpp"

using namespace mxp;

namespace {

// A secret file for the homeserver every test config needs.
const std::string& secret_file() {
  static const std::string path = [] {
    char tmpl[] = "/tmp/mxp-access-test-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    if (fd >= 0) {
      (void)!::write(fd, "s3cret\n", 7);
      ::close(fd);
    }
    return std::string{tmpl};
  }();
  return path;
}

struct cleanup {
  ~cleanup() { ::unlink(secret_file().c_str()); }
} remove_secret_at_exit;

config::load_result load(const std::string& extra) {
  return config::load_config_text("homeservers:\n  example.com:\n    url: https://m.example.com\n"
                                  "    login: {method: shared_secret, secret_file: " + secret_file() + "}\n" +
                                      extra,
                                  "test.yaml", "/");
}

bool has_error(const config::load_result& r, const std::string& part) {
  for (const auto& e : r.errors)
    if (e.find(part) != std::string::npos) return true;
  return false;
}

std::string errors_of(const config::load_result& r) {
  std::string out;
  for (const auto& e : r.errors) out += e + "\n";
  return out;
}

TEST(glob, MatchesLiteralsStarsAndQuestionMarks) {
  EXPECT_TRUE(api::glob_match("@*:example.com", "@alice:example.com"));
  EXPECT_TRUE(api::glob_match("@*:example.com", "@:example.com"));
  EXPECT_FALSE(api::glob_match("@*:example.com", "@alice:example.org"));
  EXPECT_FALSE(api::glob_match("@*:example.com", "@alice:example.com.evil"));
  EXPECT_TRUE(api::glob_match("@bot_*:other.org", "@bot_x:other.org"));
  EXPECT_FALSE(api::glob_match("@bot_*:other.org", "@bo_x:other.org"));
  EXPECT_TRUE(api::glob_match("@?:hs", "@a:hs"));
  EXPECT_FALSE(api::glob_match("@?:hs", "@ab:hs"));
  EXPECT_TRUE(api::glob_match("*", ""));
  EXPECT_TRUE(api::glob_match("*", "@anything:at.all"));
  EXPECT_TRUE(api::glob_match("@a*b*c:x", "@a-b-b-c:x"));
  EXPECT_FALSE(api::glob_match("@a*b*c:x", "@a-b-b-d:x"));
  EXPECT_TRUE(api::glob_match("**:x", "@u:x"));
  EXPECT_FALSE(api::glob_match("", "x"));
  EXPECT_FALSE(api::glob_match("@alice:hs", "@alice:hs2"));
  // '*' spans ':' too: "@*" means every user everywhere.
  EXPECT_TRUE(api::glob_match("@*", "@u:a.b:8448"));
  // No exponential blow-up on adversarial input.
  EXPECT_FALSE(api::glob_match("*a*a*a*a*a*a*a*a*a*a*b", std::string(5000, 'a')));
}

TEST(access_policy, NoClientsSectionIsOpen) {
  api::access_policy p{std::nullopt};
  EXPECT_TRUE(p.open());
  EXPECT_TRUE(p.allows(nullptr, "@x:y").allowed);
  EXPECT_TRUE(p.admits(nullptr).allowed);
}

TEST(access_policy, EmptyClientsListDeniesEveryone) {
  api::access_policy p{std::vector<config::client_config>{}};
  api::peer_credentials peer{0, 0, 1, {}};
  EXPECT_FALSE(p.open());
  EXPECT_FALSE(p.allows(&peer, "@x:y").allowed);
  EXPECT_FALSE(p.admits(&peer).allowed);
}

TEST(access_policy, MatchesUidGidAndSupplementaryGroups) {
  std::vector<config::client_config> clients;
  clients.push_back({"telegram", 998u, std::nullopt, {"@*:a.example"}});
  clients.push_back({"bridges", std::nullopt, 500u, {"@bot_*:b.example"}});
  api::access_policy p{std::move(clients)};

  api::peer_credentials telegram{998, 998, 10, {}};
  auto d = p.allows(&telegram, "@alice:a.example");
  EXPECT_TRUE(d.allowed);
  ASSERT_NE(d.client, nullptr);
  EXPECT_EQ(*d.client, "telegram");
  d = p.allows(&telegram, "@alice:b.example");
  EXPECT_FALSE(d.allowed);
  ASSERT_NE(d.client, nullptr);  // covered, but no glob matched
  EXPECT_EQ(*d.client, "telegram");

  api::peer_credentials member{1001, 1001, 11, {27, 500}};  // in group 500 as a supplementary group
  EXPECT_TRUE(p.allows(&member, "@bot_1:b.example").allowed);
  EXPECT_FALSE(p.allows(&member, "@alice:a.example").allowed);
  api::peer_credentials primary{1002, 500, 12, {}};
  EXPECT_TRUE(p.allows(&primary, "@bot_1:b.example").allowed);

  api::peer_credentials stranger{1234, 1234, 13, {}};
  d = p.allows(&stranger, "@alice:a.example");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.client, nullptr);
  EXPECT_FALSE(p.admits(&stranger).allowed);
  EXPECT_TRUE(p.admits(&member).allowed);
  EXPECT_FALSE(p.allows(nullptr, "@alice:a.example").allowed);  // unknown peer
}

TEST(clients_config, ParsesEntriesAndResolvesNames) {
  auto r = load("clients:\n"
                "  - {name: a, uid: 998, allow: [\"@*:example.com\"]}\n"
                "  - {name: b, gid: 0, allow: [\"@bot_*:other.org\", \"@x:y\"]}\n"
                "  - {name: c, user: root, allow: [\"*\"]}\n"
                "  - {name: d, group: root, allow: [\"@?:z\"]}\n"
                "listen:\n  socket_owner: root\n  socket_group: \"0\"\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  ASSERT_TRUE(r.config->clients);
  const auto& c = *r.config->clients;
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[0].name, "a");
  EXPECT_EQ(c[0].uid, 998u);
  EXPECT_FALSE(c[0].gid);
  EXPECT_EQ(c[1].gid, 0u);
  EXPECT_EQ(c[1].allow, (std::vector<std::string>{"@bot_*:other.org", "@x:y"}));
  EXPECT_EQ(c[2].uid, 0u);
  EXPECT_EQ(c[3].gid, 0u);
  EXPECT_EQ(r.config->listen.socket_owner, 0u);
  EXPECT_EQ(r.config->listen.socket_group, 0u);
}

TEST(clients_config, AbsentSectionMeansOpenEmptyListMeansClosed) {
  auto r = load("");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_FALSE(r.config->clients);
  r = load("clients: []\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  ASSERT_TRUE(r.config->clients);
  EXPECT_TRUE(r.config->clients->empty());
}

TEST(clients_config, RejectsMistakesWithFileLineAndKey) {
  auto r = load("clients:\n  - {name: a, allow: [\"@*:x\"]}\n");
  EXPECT_TRUE(has_error(r, "test.yaml:6: clients[0]: exactly one of uid, gid, user or group is required")) << errors_of(r);
  r = load("clients:\n  - {name: a, uid: 1, gid: 2, allow: [\"@*:x\"]}\n");
  EXPECT_TRUE(has_error(r, "exactly one of uid, gid, user or group")) << errors_of(r);
  r = load("clients:\n  - {name: a, user: no-such-user-mxp, allow: [\"@*:x\"]}\n");
  EXPECT_TRUE(has_error(r, "clients[0].user: unknown user 'no-such-user-mxp'")) << errors_of(r);
  r = load("clients:\n  - {name: a, group: no-such-group-mxp, allow: [\"@*:x\"]}\n");
  EXPECT_TRUE(has_error(r, "clients[0].group: unknown group")) << errors_of(r);
  r = load("clients:\n  - {name: a, uid: 1}\n");
  EXPECT_TRUE(has_error(r, "clients[0].allow: required key is missing")) << errors_of(r);
  r = load("clients:\n  - {name: a, uid: 1, allow: []}\n");
  EXPECT_TRUE(has_error(r, "clients[0].allow: must list at least one")) << errors_of(r);
  r = load("clients:\n  - {name: a, uid: 1, allow: [\"alice\"]}\n");
  EXPECT_TRUE(has_error(r, "clients[0].allow[0]: a user ID glob starts with '@'")) << errors_of(r);
  r = load("clients:\n  - {name: a, uid: 1, allow: [\"*\"]}\n  - {name: a, uid: 2, allow: [\"*\"]}\n");
  EXPECT_TRUE(has_error(r, "duplicate client name 'a'")) << errors_of(r);
  r = load("clients:\n  - {name: a, uid: -1, allow: [\"*\"]}\n");
  EXPECT_TRUE(has_error(r, "clients[0].uid: expected an integer")) << errors_of(r);
  r = load("clients:\n  - {name: a, uid: 1, allow: [\"*\"], api_key: x}\n");
  EXPECT_TRUE(has_error(r, "clients[0].api_key: unknown key")) << errors_of(r);
  r = load("clients: {name: a}\n");
  EXPECT_TRUE(has_error(r, "clients: expected a list of clients")) << errors_of(r);
  r = load("listen:\n  socket_group: no-such-group-mxp\n");
  EXPECT_TRUE(has_error(r, "listen.socket_group: unknown group")) << errors_of(r);
}

}  // namespace
