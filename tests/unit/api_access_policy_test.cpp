// access_policy: glob matching, peer matching by uid/gid/supplementary group, and the
// `clients:` / `listen.socket_owner` config keys it is built from.
#include <gtest/gtest.h>

#include <openssl/sha.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

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
  return config::load_config_text(
      "homeservers:\n  example.com:\n    url: https://m.example.com\n"
      "    login: {method: shared_secret, secret_file: " +
          secret_file() + "}\n" + extra,
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
  auto r = load(
      "clients:\n"
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
  EXPECT_TRUE(
      has_error(r,
                "test.yaml:6: clients[0]: one of uid, gid, user or group (Unix socket peers) or of "
                "api_key_file or api_key_sha256 (TCP clients) is required"))
      << errors_of(r);
  r = load("clients:\n  - {name: a, uid: 1, gid: 2, allow: [\"@*:x\"]}\n");
  EXPECT_TRUE(
      has_error(r, "test.yaml:6: clients[0]: at most one of uid, gid, user or group may be given"))
      << errors_of(r);
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
  r = load(
      "clients:\n  - {name: a, uid: 1, allow: [\"*\"]}\n  - {name: a, uid: 2, allow: [\"*\"]}\n");
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

// --- API keys and the TCP listener --------------------------------------------------------

std::array<unsigned char, 32> sha256(std::string_view s) {
  std::array<unsigned char, 32> d{};
  ::SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d.data());
  return d;
}

std::string hex(const std::array<unsigned char, 32>& d) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : d) out += {digits[b >> 4], digits[b & 15]};
  return out;
}

// A key file next to the secret file, removed at the end of the test.
struct key_file {
  std::string path;
  explicit key_file(const std::string& contents, unsigned mode = 0600) {
    char tmpl[] = "/tmp/mxp-api-key-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    if (fd >= 0) {
      (void)!::write(fd, contents.data(), contents.size());
      ::fchmod(fd, mode);
      ::close(fd);
    }
    path = tmpl;
  }
  ~key_file() { ::unlink(path.c_str()); }
};

constexpr const char* key_a = "0123456789abcdef-key-of-a";

TEST(access_policy, FindsTheClientByItsKeyAndAppliesItsGlobs) {
  std::vector<config::client_config> clients;
  clients.push_back({"unix-only", 998u, std::nullopt, {"*"}, std::nullopt, {}});
  clients.push_back({"a", std::nullopt, std::nullopt, {"@a_*:x"}, sha256(key_a), {}});
  clients.push_back({"b", 1000u, std::nullopt, {"@b_*:x"}, sha256("key-of-b-0123456789"), {}});
  api::access_policy p{std::move(clients)};

  const auto* a = p.client_with_key(key_a);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->name, "a");
  const auto* b = p.client_with_key("key-of-b-0123456789");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->name, "b");
  EXPECT_EQ(p.client_with_key(""), nullptr);
  EXPECT_EQ(p.client_with_key("0123456789abcdef-key-of-"), nullptr);  // a prefix
  EXPECT_EQ(p.client_with_key(std::string{key_a} + "x"), nullptr);
  EXPECT_EQ(p.client_with_key(hex(sha256(key_a))), nullptr);  // the hash is not the key

  auto d = p.allows(*a, "@a_1:x");
  EXPECT_TRUE(d.allowed);
  ASSERT_NE(d.client, nullptr);
  EXPECT_EQ(*d.client, "a");
  d = p.allows(*a, "@b_1:x");
  EXPECT_FALSE(d.allowed);
  ASSERT_NE(d.client, nullptr);
  EXPECT_EQ(*d.client, "a");
  EXPECT_TRUE(p.allows(*b, "@b_1:x").allowed);

  // An entry with only a key covers no Unix peer; one with both serves both ways.
  api::peer_credentials uid0{0, 0, 1, {}};
  EXPECT_FALSE(p.admits(&uid0).allowed);
  api::peer_credentials uid1000{1000, 1000, 1, {}};
  EXPECT_TRUE(p.allows(&uid1000, "@b_2:x").allowed);
  EXPECT_FALSE(p.allows(&uid1000, "@a_2:x").allowed);
}

TEST(clients_config, ReadsApiKeysAsDigestsOnly) {
  key_file file{std::string{key_a} + "\n"};
  const auto b_hex = hex(sha256("key-of-b-0123456789"));
  auto r = load(
      "clients:\n"
      "  - {name: a, api_key_file: " +
      file.path +
      ", allow: [\"*\"]}\n"
      "  - {name: b, uid: 7, api_key_sha256: " +
      b_hex +
      ", allow: [\"*\"]}\n"
      "  - {name: c, uid: 8, allow: [\"*\"]}\n"
      "listen:\n  tcp: 127.0.0.1:8765\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_TRUE(r.warnings.empty());
  const auto& c = *r.config->clients;
  ASSERT_EQ(c.size(), 3u);
  EXPECT_FALSE(c[0].uid);
  EXPECT_FALSE(c[0].gid);
  EXPECT_EQ(c[0].api_key_sha256, sha256(key_a)) << "one trailing newline is not part of the key";
  EXPECT_EQ(c[0].api_key_file, file.path);
  EXPECT_EQ(c[1].api_key_sha256, sha256("key-of-b-0123456789"));
  EXPECT_EQ(c[1].uid, 7u);
  EXPECT_FALSE(c[2].api_key_sha256);
  ASSERT_TRUE(r.config->listen.tcp);
  EXPECT_EQ(r.config->listen.tcp->address, "127.0.0.1");
  EXPECT_EQ(r.config->listen.tcp->port, 8765);

  // Upper-case hex is the same digest.
  std::string upper = b_hex;
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  r = load("clients:\n  - {name: b, api_key_sha256: " + upper + ", allow: [\"*\"]}\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  EXPECT_EQ((*r.config->clients)[0].api_key_sha256, sha256("key-of-b-0123456789"));

  // No TCP listener: no listen.tcp.
  EXPECT_FALSE(load("").config->listen.tcp);
}

TEST(clients_config, ShortOrWorldReadableKeyFilesLoadWithAWarning) {
  key_file short_key{"short\n"};
  auto r = load("clients:\n  - {name: a, api_key_file: " + short_key.path + ", allow: [\"*\"]}\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("test.yaml:6: clients[0].api_key_file: the API key in '" +
                               short_key.path + "' is shorter than 16 characters"),
            std::string::npos)
      << r.warnings[0];
  EXPECT_EQ(r.warnings[0].find("short\n"), std::string::npos);
  key_file readable{std::string{key_a}, 0644};
  r = load("clients:\n  - {name: a, api_key_file: " + readable.path + ", allow: [\"*\"]}\n");
  ASSERT_TRUE(r.config) << errors_of(r);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("is readable by others"), std::string::npos) << r.warnings[0];
}

TEST(clients_config, RejectsBadApiKeysWithFileLineAndKey) {
  const auto a_hex = hex(sha256(key_a));
  auto r = load("clients:\n  - {name: a, api_key_sha256: abc, allow: [\"*\"]}\n");
  EXPECT_TRUE(
      has_error(r,
                "test.yaml:6: clients[0].api_key_sha256: expected the SHA-256 of the key as 64 "
                "hexadecimal digits"))
      << errors_of(r);
  r = load("clients:\n  - {name: a, api_key_sha256: " + a_hex.substr(1) + "g, allow: [\"*\"]}\n");
  EXPECT_TRUE(has_error(r, "clients[0].api_key_sha256: expected the SHA-256")) << errors_of(r);
  key_file file{key_a};
  r = load("clients:\n  - {name: a, api_key_file: " + file.path + ", api_key_sha256: " + a_hex +
           ", allow: [\"*\"]}\n");
  EXPECT_TRUE(
      has_error(r, "test.yaml:6: clients[0]: api_key_file and api_key_sha256 exclude each other"))
      << errors_of(r);
  r = load("clients:\n  - {name: a, api_key_file: /nonexistent/mxp.key, allow: [\"*\"]}\n");
  EXPECT_TRUE(
      has_error(r, "test.yaml:6: clients[0].api_key_file: cannot read '/nonexistent/mxp.key'"))
      << errors_of(r);
  key_file spaced{"two words here, long enough\n"};
  r = load("clients:\n  - {name: a, api_key_file: " + spaced.path + ", allow: [\"*\"]}\n");
  EXPECT_TRUE(has_error(r, "clients[0].api_key_file: API key file '" + spaced.path +
                               "' must hold one line of printable ASCII"))
      << errors_of(r);
  EXPECT_EQ(errors_of(r).find("two words"), std::string::npos) << "the key was echoed";
  r = load("clients:\n  - {name: a, api_key_file: " + file.path +
           ", allow: [\"*\"]}\n"
           "  - {name: b, api_key_sha256: " +
           a_hex + ", allow: [\"*\"]}\n");
  EXPECT_TRUE(has_error(r, "test.yaml:7: clients[1]: has the same API key as client 'a'"))
      << errors_of(r);
}

TEST(listen_config, TcpTakesLoopbackAddressesOnly) {
  key_file file{key_a};
  const std::string clients =
      "clients:\n  - {name: a, api_key_file: " + file.path + ", allow: [\"*\"]}\n";
  auto tcp_of = [&](const std::string& value) {
    auto r = load(clients + "listen:\n  tcp: \"" + value + "\"\n");
    EXPECT_TRUE(r.config) << value << ": " << errors_of(r);
    return r.config && r.config->listen.tcp ? *r.config->listen.tcp : config::tcp_listen_config{};
  };
  EXPECT_EQ(tcp_of("127.0.0.1:8765"), (config::tcp_listen_config{"127.0.0.1", 8765}));
  EXPECT_EQ(tcp_of("127.45.6.7:1"), (config::tcp_listen_config{"127.45.6.7", 1}));
  EXPECT_EQ(tcp_of("[::1]:65535"), (config::tcp_listen_config{"::1", 65535}));
  EXPECT_EQ(tcp_of("[0:0:0:0:0:0:0:1]:80"), (config::tcp_listen_config{"0:0:0:0:0:0:0:1", 80}));

  auto error_of = [&](const std::string& value) {
    auto r = load(clients + "listen:\n  tcp: \"" + value + "\"\n");
    EXPECT_FALSE(r.config) << value;
    return errors_of(r);
  };
  EXPECT_EQ(
      error_of("0.0.0.0:8765"),
      "test.yaml:8: listen.tcp: '0.0.0.0' is not a loopback address; the TCP listener only takes "
      "127.0.0.0/8 or [::1]\n");
  EXPECT_NE(
      error_of("192.168.1.10:8765").find("listen.tcp: '192.168.1.10' is not a loopback address"),
      std::string::npos);
  EXPECT_NE(error_of("[::]:8765").find("listen.tcp: '::' is not a loopback address"),
            std::string::npos);
  EXPECT_NE(error_of("[::ffff:127.0.0.1]:8765").find("is not a loopback address"),
            std::string::npos);
  EXPECT_NE(error_of("128.0.0.1:8765").find("is not a loopback address"), std::string::npos);
  EXPECT_NE(error_of("localhost:8765").find("listen.tcp: 'localhost' is not a numeric IP address"),
            std::string::npos);
  EXPECT_NE(error_of("127.1:8765").find("is not a numeric IP address"), std::string::npos);
  EXPECT_NE(error_of("::1:8765").find("listen.tcp: write an IPv6 address in brackets"),
            std::string::npos);
  EXPECT_NE(error_of("127.0.0.1").find("listen.tcp: expected ADDRESS:PORT"), std::string::npos);
  EXPECT_NE(error_of(":8765").find("listen.tcp: expected ADDRESS:PORT"), std::string::npos);
  EXPECT_NE(error_of("127.0.0.1:0").find("listen.tcp: invalid port '0'"), std::string::npos);
  EXPECT_NE(error_of("127.0.0.1:65536").find("listen.tcp: invalid port"), std::string::npos);
  EXPECT_NE(error_of("[::1]8765").find("listen.tcp: expected ADDRESS:PORT"), std::string::npos);
}

TEST(listen_config, TcpNeedsAClientWithAKey) {
  auto r = load("listen:\n  tcp: 127.0.0.1:8765\n");
  EXPECT_EQ(errors_of(r),
            "test.yaml:6: listen.tcp: no client can use the TCP listener: give a clients: entry "
            "api_key_file or api_key_sha256\n");
  r = load("listen:\n  tcp: 127.0.0.1:8765\nclients:\n  - {name: a, uid: 1, allow: [\"*\"]}\n");
  EXPECT_TRUE(has_error(r, "test.yaml:6: listen.tcp: no client can use the TCP listener"))
      << errors_of(r);
}

}  // namespace
