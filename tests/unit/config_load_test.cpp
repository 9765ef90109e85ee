// Config loader: every key, defaults, and one test per kind of error with its exact FILE:LINE: KEY.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <random>
#include <regex>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "config/config.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using mxp::config::load_config_file;
using mxp::config::load_config_text;
using mxp::config::load_result;
using mxp::config::refresh_policy;
using mxp::config::shared_secret_login;
using mxp::config::shared_secret_login_type;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// A fresh directory per test, holding the secret files a config names; removed afterwards.
class ConfigLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("mxp_config_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) +
            "_" + std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
    write("hs.secret", "s3cret-value\n");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fs::path write(const std::string& name, const std::string& contents) {
    const auto path = dir_ / name;
    std::ofstream out{path, std::ios::binary};
    out << contents;
    return path;
  }

  load_result load(const std::string& yaml) {
    return load_config_text(yaml, "cfg.yaml", dir_.string());
  }

  // Loads a config that must be valid and returns it (failing the test with its errors if not).
  mxp::config::daemon_config load_ok(const std::string& yaml) {
    auto r = load(yaml);
    EXPECT_THAT(r.errors, ElementsAre()) << yaml;
    if (!r.config) return {};
    return *r.config;
  }

  // Loads a config that must produce exactly one error, and returns it.
  std::string single_error(const std::string& yaml) {
    auto r = load(yaml);
    EXPECT_FALSE(r.config.has_value());
    EXPECT_EQ(r.errors.size(), 1u) << ::testing::PrintToString(r.errors);
    return r.errors.empty() ? std::string{} : r.errors.front();
  }

  static const shared_secret_login& shared_secret(const mxp::config::homeserver_config& hs) {
    return std::get<shared_secret_login>(hs.login);
  }

  fs::path dir_;
};

constexpr const char* minimal = R"(homeservers:
  example.com:
    login:
      method: shared_secret
      secret_file: hs.secret
)";

TEST_F(ConfigLoad, FullConfigWithEveryKey) {
  write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
  write("other.secret", "other\r\n");
  const auto cfg = load_ok(R"(listen:
  unix_socket: /tmp/mxp.sock
  socket_mode: "0600"
  request_timeout: 45s
  idle_timeout: 2m
  max_header_bytes: 4096
  max_body_bytes: 32768
  max_connections: 17
homeservers:
  example.com:
    url: https://matrix.example.com/
    ca_file: ca.pem
    login:
      method: shared_secret
      secret_file: hs.secret
      login_type: com.devture.shared_secret_auth
    device_id: BRIDGE_01.x-y
    device_display_name: "Bridge double puppet"
    max_concurrent_logins: 8
    request_timeout: 15s
    connect_timeout: 250ms
    max_response_bytes: 2048
  "localhost:8448":
    url: http://127.0.0.1:8008
    login: {method: shared_secret, secret_file: other.secret, login_type: m.login.password}
sessions:
  max: 500
  idle_timeout: 1h30m
  revoke_on_evict: false
  revoke_on_shutdown: true
log:
  level: debug
  format: json
)");
  EXPECT_EQ(cfg.source_file, "cfg.yaml");
  EXPECT_EQ(cfg.listen.unix_socket, "/tmp/mxp.sock");
  EXPECT_EQ(cfg.listen.socket_mode, 0600u);
  EXPECT_EQ(cfg.listen.request_timeout, 45s);
  EXPECT_EQ(cfg.listen.idle_timeout, 2min);
  EXPECT_EQ(cfg.listen.max_header_bytes, 4096u);
  EXPECT_EQ(cfg.listen.max_body_bytes, 32768u);
  EXPECT_EQ(cfg.listen.max_connections, 17u);

  ASSERT_EQ(cfg.homeservers.size(), 2u);
  const auto& hs = cfg.homeservers.at("example.com");
  EXPECT_EQ(hs.server_name, "example.com");
  EXPECT_EQ(hs.url, "https://matrix.example.com");
  EXPECT_EQ(hs.ca_file, (dir_ / "ca.pem").string());
  EXPECT_EQ(shared_secret(hs).secret.reveal(), "s3cret-value");
  EXPECT_EQ(shared_secret(hs).secret_file, (dir_ / "hs.secret").string());
  EXPECT_EQ(shared_secret(hs).login_type, shared_secret_login_type::devture);
  EXPECT_EQ(hs.device_id, "BRIDGE_01.x-y");
  EXPECT_EQ(hs.device_display_name, "Bridge double puppet");
  EXPECT_EQ(hs.max_concurrent_logins, 8u);
  EXPECT_EQ(hs.request_timeout, 15s);
  EXPECT_EQ(hs.connect_timeout, 250ms);
  EXPECT_EQ(hs.max_response_bytes, 2048u);

  const auto& local = cfg.homeservers.at("localhost:8448");
  EXPECT_EQ(local.server_name, "localhost:8448");
  EXPECT_EQ(local.url, "http://127.0.0.1:8008");
  EXPECT_EQ(shared_secret(local).secret.reveal(), "other");
  EXPECT_EQ(shared_secret(local).login_type, shared_secret_login_type::password);

  EXPECT_EQ(cfg.sessions.max, 500u);
  EXPECT_EQ(cfg.sessions.idle_timeout, 90min);
  EXPECT_FALSE(cfg.sessions.revoke_on_evict);
  EXPECT_TRUE(cfg.sessions.revoke_on_shutdown);
  EXPECT_EQ(cfg.log.level, "debug");
  EXPECT_EQ(cfg.log.format, mxp::config::log_format::json);
}

TEST_F(ConfigLoad, DefaultsWhenOptionalKeysAreMissing) {
  const auto cfg = load_ok(minimal);
  const mxp::config::listen_config listen;
  EXPECT_EQ(cfg.listen.unix_socket, "/run/mxpuppetd/mxpuppetd.sock");
  EXPECT_EQ(cfg.listen.socket_mode, 0660u);
  EXPECT_EQ(cfg.listen.request_timeout, 30s);
  EXPECT_EQ(cfg.listen.idle_timeout, 60s);
  EXPECT_EQ(cfg.listen.max_header_bytes, listen.max_header_bytes);
  EXPECT_EQ(cfg.listen.max_body_bytes, listen.max_body_bytes);
  EXPECT_EQ(cfg.listen.max_connections, listen.max_connections);

  const auto& hs = cfg.homeservers.at("example.com");
  EXPECT_EQ(hs.server_name, "example.com");
  EXPECT_EQ(hs.url, "");
  EXPECT_EQ(hs.ca_file, "");
  EXPECT_EQ(shared_secret(hs).login_type, shared_secret_login_type::automatic);
  EXPECT_EQ(hs.device_id, "MXPUPPETD");
  EXPECT_EQ(hs.device_display_name, "mxpuppetd double puppet");
  EXPECT_EQ(hs.max_concurrent_logins, 4u);
  EXPECT_EQ(hs.request_timeout, 20s);
  EXPECT_EQ(hs.connect_timeout, 10s);
  EXPECT_EQ(hs.max_response_bytes, 1024u * 1024u);

  EXPECT_EQ(cfg.sessions.max, 100'000u);
  EXPECT_EQ(cfg.sessions.idle_timeout, std::chrono::hours{24 * 7});
  EXPECT_TRUE(cfg.sessions.revoke_on_evict);
  EXPECT_FALSE(cfg.sessions.revoke_on_shutdown);
  EXPECT_EQ(cfg.log.level, "info");
  EXPECT_EQ(cfg.log.format, mxp::config::log_format::text);
}

TEST_F(ConfigLoad, EmptySectionsAndNullValuesMeanDefaults) {
  const auto cfg = load_ok(R"(listen:
  # everything commented out
sessions:
  max:
log: ~
homeservers:
  example.com:
    url:
    login:
      method: shared_secret
      secret_file: hs.secret
)");
  EXPECT_EQ(cfg.listen.unix_socket, "/run/mxpuppetd/mxpuppetd.sock");
  EXPECT_EQ(cfg.sessions.max, 100'000u);
  EXPECT_EQ(cfg.log.level, "info");
  EXPECT_EQ(cfg.homeservers.at("example.com").url, "");
}

TEST_F(ConfigLoad, SocketModeAcceptsOctalStringsAndYamlOctalIntegers) {
  auto mode_of = [&](const std::string& value) {
    return load_ok("listen:\n  socket_mode: " + value + "\n" + minimal).listen.socket_mode;
  };
  EXPECT_EQ(mode_of("\"0660\""), 0660u);
  EXPECT_EQ(mode_of("0600"), 0600u);  // a YAML 1.1 octal integer, read as written
  EXPECT_EQ(mode_of("660"), 0660u);
  EXPECT_EQ(mode_of("0o640"), 0640u);
  EXPECT_EQ(mode_of("0777"), 0777u);
  EXPECT_EQ(mode_of("0"), 0u);
}

TEST_F(ConfigLoad, UnknownKeysAtEveryLevel) {
  const auto r = load(R"(listen:
  unix_sockt: /tmp/x
homeservers:
  example.com:
    urll: https://x
    login:
      method: shared_secret
      secret_file: hs.secret
      secret: do-not-echo-me
sessions:
  idle_timout: 60s
log:
  levl: info
clientz: []
)");
  EXPECT_FALSE(r.config);
  EXPECT_THAT(r.errors, ElementsAre("cfg.yaml:2: listen.unix_sockt: unknown key",
                                    "cfg.yaml:5: homeservers.example.com.urll: unknown key",
                                    "cfg.yaml:9: homeservers.example.com.login.secret: unknown key",
                                    "cfg.yaml:11: sessions.idle_timout: unknown key",
                                    "cfg.yaml:13: log.levl: unknown key",
                                    "cfg.yaml:14: clientz: unknown key"));
  for (const auto& e : r.errors) EXPECT_THAT(e, Not(HasSubstr("do-not-echo-me")));
}

TEST_F(ConfigLoad, LogFormatIsTextOrJson) {
  using mxp::config::log_format;
  EXPECT_EQ(load_ok("log:\n  format: text\n" + std::string{minimal}).log.format, log_format::text);
  EXPECT_EQ(load_ok("log:\n  format: json\n" + std::string{minimal}).log.format, log_format::json);
}

TEST_F(ConfigLoad, ServerNameGrammar) {
  auto load_name = [&](const std::string& name) {
    return load("homeservers:\n  \"" + name +
                "\":\n    login: {method: shared_secret, secret_file: hs.secret}\n");
  };
  for (const char* good : {"example.com", "localhost", "localhost:8448", "1.2.3.4", "1.2.3.4:1",
                           "[::1]", "[2001:db8::1]:65535", "matrix-1.example.org"}) {
    EXPECT_THAT(load_name(good).errors, ElementsAre()) << good;
  }
  for (const char* bad : {"exa mple.com", "bad_host", "example.com:0", "example.com:65536",
                          "example.com:", "example.com:8a", ".example.com", "example..com", "[::1",
                          "[zz::1]", "[::1]8448", "@example.com"}) {
    EXPECT_THAT(load_name(bad).errors,
                ElementsAre("cfg.yaml:2: homeservers." + std::string{bad} +
                            ": invalid server name (expected a host name, IPv4 address or [IPv6] "
                            "address, optionally followed by :port)"))
        << bad;
  }
}

TEST_F(ConfigLoad, UrlValidationAndTrailingSlash) {
  auto url_of = [&](const std::string& url) {
    const auto cfg = load_ok(std::string{minimal} + "    url: " + url + "\n");
    return cfg.homeservers.at("example.com").url;
  };
  EXPECT_EQ(url_of("https://matrix.example.com/"), "https://matrix.example.com");
  EXPECT_EQ(url_of("https://matrix.example.com//"), "https://matrix.example.com");
  EXPECT_EQ(url_of("http://[::1]:8008/prefix/"), "http://[::1]:8008/prefix");
  EXPECT_EQ(url_of("HTTPS://Matrix.example.com"), "https://Matrix.example.com");
  EXPECT_EQ(url_of("http://127.0.0.1:08008/a%20b"), "http://127.0.0.1:08008/a%20b");
}

TEST_F(ConfigLoad, LoginType) {
  auto type_of = [&](const std::string& t) {
    const auto cfg = load_ok(std::string{minimal} + "      login_type: " + t + "\n");
    return shared_secret(cfg.homeservers.at("example.com")).login_type;
  };
  EXPECT_EQ(type_of("auto"), shared_secret_login_type::automatic);
  EXPECT_EQ(type_of("com.devture.shared_secret_auth"), shared_secret_login_type::devture);
  EXPECT_EQ(type_of("m.login.password"), shared_secret_login_type::password);
}

TEST_F(ConfigLoad, SecretFileUnreadable) {
  if (::geteuid() == 0) GTEST_SKIP() << "root can read a mode 000 file";
  const auto path = write("locked.secret", "locked");
  fs::permissions(path, fs::perms::none);
  EXPECT_EQ(single_error("homeservers:\n  example.com:\n    login:\n      method: shared_secret\n"
                         "      secret_file: locked.secret\n"),
            "cfg.yaml:5: homeservers.example.com.login.secret_file: cannot read '" + path.string() +
                "': Permission denied");
}

TEST_F(ConfigLoad, SecretTrailingNewlineStripping) {
  auto secret_of = [&](const std::string& contents) {
    write("s.secret", contents);
    const auto cfg = load_ok(
        "homeservers:\n  example.com:\n    login:\n      method: shared_secret\n"
        "      secret_file: s.secret\n");
    if (cfg.homeservers.empty()) return std::string{"<not loaded>"};
    return shared_secret(cfg.homeservers.at("example.com")).secret.reveal();
  };
  EXPECT_EQ(secret_of("abc"), "abc");
  EXPECT_EQ(secret_of("abc\n"), "abc");
  EXPECT_EQ(secret_of("abc\r\n"), "abc");
  EXPECT_EQ(secret_of("abc\n\n"), "abc\n");  // only one newline is stripped
  EXPECT_EQ(secret_of("a b\tc \n"), "a b\tc ");
}

TEST_F(ConfigLoad, RelativeAndAbsoluteSecretPaths) {
  fs::create_directories(dir_ / "secrets");
  write("secrets/nested.secret", "nested");
  const auto cfg = load_ok(
      "homeservers:\n"
      "  a.example:\n    login: {method: shared_secret, secret_file: secrets/nested.secret}\n"
      "  b.example:\n    login: {method: shared_secret, secret_file: ./secrets/../hs.secret}\n"
      "  c.example:\n    login: {method: shared_secret, secret_file: " +
      (dir_ / "secrets" / "nested.secret").string() + "}\n");
  EXPECT_EQ(shared_secret(cfg.homeservers.at("a.example")).secret_file,
            (dir_ / "secrets" / "nested.secret").string());
  EXPECT_EQ(shared_secret(cfg.homeservers.at("a.example")).secret.reveal(), "nested");
  EXPECT_EQ(shared_secret(cfg.homeservers.at("b.example")).secret_file,
            (dir_ / "hs.secret").string());
  EXPECT_EQ(shared_secret(cfg.homeservers.at("b.example")).secret.reveal(), "s3cret-value");
  EXPECT_EQ(shared_secret(cfg.homeservers.at("c.example")).secret.reveal(), "nested");
}

TEST_F(ConfigLoad, DeviceId) {
  EXPECT_EQ(load_ok(std::string{minimal} + "    device_id: " + std::string(64, 'A') + "\n")
                .homeservers.at("example.com")
                .device_id,
            std::string(64, 'A'));
}

TEST_F(ConfigLoad, Booleans) {
  const auto cfg = load_ok("sessions:\n  revoke_on_evict: no\n  revoke_on_shutdown: yes\n" +
                           std::string{minimal});
  EXPECT_FALSE(cfg.sessions.revoke_on_evict);
  EXPECT_TRUE(cfg.sessions.revoke_on_shutdown);
}

TEST_F(ConfigLoad, LogLevel) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"})
    EXPECT_EQ(load_ok("log:\n  level: " + std::string{level} + "\n" + minimal).log.level, level);
}

TEST_F(ConfigLoad, SyntaxError) {
  const auto r = load("listen:\n  unix_socket: /x\nhomeservers: [unclosed\n");
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0], ::testing::StartsWith("cfg.yaml:"));
  EXPECT_THAT(r.errors[0], HasSubstr(": syntax error: "));

  EXPECT_THAT(single_error("listen:\n  a: b\n c: d\n"),
              ::testing::StartsWith("cfg.yaml:3: syntax error: "));
  EXPECT_THAT(single_error("log:\n\tlevel: info\n"),
              ::testing::StartsWith("cfg.yaml:2: syntax error: "));
}

TEST_F(ConfigLoad, AllErrorsAreCollectedInLineOrder) {
  const auto r = load(R"(listen:
  socket_mode: "0999"
  max_connections: -1
homeservers:
  example.com:
    url: example.com
    login:
      method: shared_secret
      secret_file: nothing-here
    max_concurrent_logins: 0
  "bad name":
    login: {method: jwt}
  ok.example:
    login: {method: shared_secret, secret_file: hs.secret}
sessions:
  revoke_on_evict: perhaps
log:
  level: loud
  colour: true
)");
  EXPECT_FALSE(r.config);
  EXPECT_THAT(
      r.errors,
      ElementsAre(
          "cfg.yaml:2: listen.socket_mode: expected an octal file mode such as \"0660\", got "
          "'0999'",
          "cfg.yaml:3: listen.max_connections: expected a positive integer, got '-1'",
          "cfg.yaml:6: homeservers.example.com.url: 'example.com' must start with http:// or "
          "https://",
          "cfg.yaml:9: homeservers.example.com.login.secret_file: cannot read '" +
              (dir_ / "nothing-here").string() + "': No such file or directory",
          "cfg.yaml:10: homeservers.example.com.max_concurrent_logins: expected an integer from 1 "
          "to "
          "1000, got '0'",
          "cfg.yaml:11: homeservers.bad name: invalid server name (expected a host name, IPv4 "
          "address "
          "or [IPv6] address, optionally followed by :port)",
          "cfg.yaml:12: homeservers.bad name.login.algorithm: required key is missing",
          "cfg.yaml:16: sessions.revoke_on_evict: expected a boolean (true or false), got "
          "'perhaps'",
          "cfg.yaml:18: log.level: expected one of trace, debug, info, warn, error, critical, off, "
          "got "
          "'loud'",
          "cfg.yaml:19: log.colour: unknown key"));
}

TEST_F(ConfigLoad, SecretNeverAppearsInErrors) {
  const std::string secret = "TOPSECRET-4f1d9c";
  write("top.secret", secret + "\n");
  write("big.secret", secret + std::string(70 * 1024, 'x'));
  const auto r = load(R"(homeservers:
  a.example:
    login:
      method: shared_secret
      secret_file: top.secret
      login_type: nope
    device_id: "bad id"
    max_concurrent_logins: 0
  b.example:
    login:
      method: shared_secret
      secret_file: big.secret
  c.example:
    login:
      method: shared_secret
      secret_file: top.secret
      secret: TOPSECRET-4f1d9c
)");
  EXPECT_FALSE(r.config);
  EXPECT_EQ(r.errors.size(), 5u) << ::testing::PrintToString(r.errors);
  EXPECT_THAT(r.errors,
              Contains("cfg.yaml:12: homeservers.b.example.login.secret_file: cannot read '" +
                       (dir_ / "big.secret").string() + "': file is larger than 65536 bytes"));
  for (const auto& e : r.errors) EXPECT_THAT(e, Not(HasSubstr(secret)));
}

TEST_F(ConfigLoad, LoadFileResolvesRelativeToTheConfigDirectory) {
  const auto path = write("mxpuppetd.yaml", std::string{minimal} + "log: {level: warn}\n");
  const auto r = load_config_file(path.string());
  ASSERT_THAT(r.errors, ElementsAre());
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->source_file, path.string());
  EXPECT_EQ(r.config->log.level, "warn");
  const auto& login = shared_secret(r.config->homeservers.at("example.com"));
  EXPECT_EQ(login.secret_file, (dir_ / "hs.secret").string());
  EXPECT_EQ(login.secret.reveal(), "s3cret-value");
}

// --- jwt, appservice and synapse_admin -------------------------------------------------------

constexpr const char* login_head =
    "homeservers:\n  example.com:\n    login:\n";  // method on line 4

TEST_F(ConfigLoad, JwtEveryKey) {
  write("jwt.key", "-----BEGIN PRIVATE KEY-----\nnot-checked-here\n-----END PRIVATE KEY-----\n");
  const auto cfg = load_ok(std::string{login_head} + R"(      method: jwt
      flavor: synapse
      algorithm: ES256
      private_key_file: jwt.key
      subject_claim: user
      issuer: mxpuppetd
      audiences: [matrix, other]
      token_lifetime: 2m
)");
  const auto& j = std::get<mxp::config::jwt_login>(cfg.homeservers.at("example.com").login);
  EXPECT_EQ(j.flavor, mxp::config::jwt_flavor::synapse);
  EXPECT_EQ(j.algorithm, "ES256");
  EXPECT_THAT(j.key.reveal(), HasSubstr("not-checked-here"));
  EXPECT_EQ(j.key_file, (dir_ / "jwt.key").string());
  EXPECT_EQ(j.key_origin, "cfg.yaml:7: homeservers.example.com.login.private_key_file");
  EXPECT_EQ(j.subject_claim, "user");
  EXPECT_EQ(j.issuer, "mxpuppetd");
  EXPECT_THAT(j.audiences, ElementsAre("matrix", "other"));
  EXPECT_EQ(j.token_lifetime, 2min);
}

TEST_F(ConfigLoad, JwtDefaults) {
  const auto cfg =
      load_ok(std::string{login_head} +
              "      method: jwt\n      algorithm: HS512\n      secret_file: hs.secret\n");
  const auto& j = std::get<mxp::config::jwt_login>(cfg.homeservers.at("example.com").login);
  EXPECT_EQ(j.flavor, mxp::config::jwt_flavor::synapse);
  EXPECT_EQ(j.key.reveal(), "s3cret-value");  // trailing newline stripped
  EXPECT_EQ(j.subject_claim, "sub");
  EXPECT_FALSE(j.issuer);
  EXPECT_TRUE(j.audiences.empty());
  EXPECT_EQ(j.token_lifetime, 60s);
  const auto famedly = load_ok(std::string{login_head} +
                               "      method: jwt\n      flavor: famedly\n      algorithm: HS256\n"
                               "      secret_file: hs.secret\n      audiences: one\n");
  const auto& f = std::get<mxp::config::jwt_login>(famedly.homeservers.at("example.com").login);
  EXPECT_EQ(f.flavor, mxp::config::jwt_flavor::famedly);
  EXPECT_THAT(f.audiences, ElementsAre("one"));
}

TEST_F(ConfigLoad, JwtErrorsNeverEchoTheSecret) {
  write("hs.secret", "-----BEGIN-but-secret-material\n");
  auto r = load(std::string{login_head} +
                "      method: jwt\n      algorithm: HS256\n      secret_file: hs.secret\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0], Not(HasSubstr("secret-material")));
}

TEST_F(ConfigLoad, AppserviceWithTokenFile) {
  write("as.token", "as-token-value\n");
  const auto cfg = load_ok(std::string{login_head} +
                           "      method: appservice\n      as_token_file: as.token\n");
  const auto& a = std::get<mxp::config::appservice_login>(cfg.homeservers.at("example.com").login);
  EXPECT_EQ(a.as_token.reveal(), "as-token-value");
  EXPECT_EQ(a.as_token_file, (dir_ / "as.token").string());
  EXPECT_TRUE(a.registration_file.empty());
  EXPECT_TRUE(a.user_regexes.empty());
}

TEST_F(ConfigLoad, AppserviceWithRegistrationFile) {
  write("registration.yaml", R"(id: telegram
url: http://localhost:29317
as_token: the-as-token
hs_token: the-hs-token
sender_localpart: telegrambot
namespaces:
  users:
    - exclusive: true
      regex: '@telegram_.*:example\.com'
    - regex: "@tg-.+"
  aliases: []
)");
  const auto cfg =
      load_ok(std::string{login_head} +
              "      method: appservice\n      registration_file: registration.yaml\n");
  const auto& a = std::get<mxp::config::appservice_login>(cfg.homeservers.at("example.com").login);
  EXPECT_EQ(a.as_token.reveal(), "the-as-token");
  EXPECT_EQ(a.registration_file, (dir_ / "registration.yaml").string());
  EXPECT_EQ(a.sender_localpart, "telegrambot");
  EXPECT_THAT(a.user_regex_sources, ElementsAre("@telegram_.*:example\\.com", "@tg-.+"));
  ASSERT_EQ(a.user_regexes.size(), 2u);
  EXPECT_TRUE(std::regex_search("@telegram_123:example.com", a.user_regexes[0],
                                std::regex_constants::match_continuous));
}

TEST_F(ConfigLoad, AppserviceRegistrationErrorsNeverEchoTheToken) {
  const std::string head = std::string{login_head} + "      method: appservice\n";
  const std::string k = "cfg.yaml:5: homeservers.example.com.login.";
  const auto reg = (dir_ / "reg.yaml").string();
  write("reg.yaml", "as_token: secret-as-token\nnamespaces:\n  users:\n    - regex: '@a(['\n");
  auto e = single_error(head + "      registration_file: reg.yaml\n");
  EXPECT_THAT(e,
              HasSubstr(k + "registration_file: registration '" + reg +
                        "' line 4: namespaces.users[0].regex: '@a([' is not a regular expression"));
  EXPECT_THAT(e, Not(HasSubstr("secret-as-token")));
  write("reg.yaml", "as_token: secret-as-token\n  bad: [\n");
  e = single_error(head + "      registration_file: reg.yaml\n");
  EXPECT_THAT(e, HasSubstr(k + "registration_file: registration '" + reg + "' line "));
  EXPECT_THAT(e, HasSubstr("not valid YAML"));
  EXPECT_THAT(e, Not(HasSubstr("secret-as-token")));
}

TEST_F(ConfigLoad, SynapseAdmin) {
  write("admin.token", "syt_admin\n");
  auto cfg = load_ok(std::string{login_head} +
                     "      method: synapse_admin\n      admin_token_file: admin.token\n");
  const auto& a =
      std::get<mxp::config::synapse_admin_login>(cfg.homeservers.at("example.com").login);
  EXPECT_EQ(a.admin_token.reveal(), "syt_admin");
  EXPECT_EQ(a.admin_token_file, (dir_ / "admin.token").string());
  EXPECT_EQ(a.token_lifetime, 24h);
  cfg = load_ok(std::string{login_head} +
                "      method: synapse_admin\n      admin_token_file: admin.token\n      "
                "token_lifetime: 2h\n");
  EXPECT_EQ(std::get<mxp::config::synapse_admin_login>(cfg.homeservers.at("example.com").login)
                .token_lifetime,
            2h);
}

TEST_F(ConfigLoad, RestBackend) {
  auto cfg = load_ok(std::string{login_head} +
                     "      method: rest_backend\n      backend_listen: \"127.0.0.1:8090\"\n");
  const auto& hs = cfg.homeservers.at("example.com");
  const auto& r = std::get<mxp::config::rest_backend_login>(hs.login);
  EXPECT_EQ(r.listen_address, "127.0.0.1");
  EXPECT_EQ(r.listen_port, 8090);
  EXPECT_EQ(r.nonce_lifetime, 60s);
  EXPECT_EQ(hs.max_concurrent_logins, 1u);  // the default for this method
  cfg = load_ok(std::string{login_head} +
                "      method: rest_backend\n      backend_listen: \"[::1]:9\"\n      "
                "nonce_lifetime: 5s\n    max_concurrent_logins: 3\n");
  const auto& hs2 = cfg.homeservers.at("example.com");
  const auto& r2 = std::get<mxp::config::rest_backend_login>(hs2.login);
  EXPECT_EQ(r2.listen_address, "::1");
  EXPECT_EQ(r2.listen_port, 9);
  EXPECT_EQ(r2.nonce_lifetime, 5s);
  EXPECT_EQ(hs2.max_concurrent_logins, 3u);  // given: kept
}

TEST_F(ConfigLoad, Mas) {
  write("mas.secret", "client-secret\n");
  auto cfg = load_ok(std::string{login_head} +
                     "      method: mas\n      mas_url: https://auth.example.com/\n      "
                     "client_id: CLIENT\n      client_secret_file: mas.secret\n");
  const auto& m = std::get<mxp::config::mas_login>(cfg.homeservers.at("example.com").login);
  EXPECT_EQ(m.mas_url, "https://auth.example.com");
  EXPECT_EQ(m.client_id, "CLIENT");
  EXPECT_EQ(m.client_secret.reveal(), "client-secret");
  EXPECT_EQ(m.token_lifetime, 24h);
  EXPECT_EQ(m.renew_grace, 60s);
  EXPECT_FALSE(m.device_scope);
  cfg = load_ok(std::string{login_head} +
                "      method: mas\n      mas_url: http://127.0.0.1:8080\n      client_id: C\n"
                "      client_secret_file: mas.secret\n      token_lifetime: 1h\n      "
                "renew_grace: 5s\n      device_scope: true\n    device_id: MXPUPPETD-01\n");
  const auto& m2 = std::get<mxp::config::mas_login>(cfg.homeservers.at("example.com").login);
  EXPECT_EQ(m2.token_lifetime, 1h);
  EXPECT_EQ(m2.renew_grace, 5s);
  EXPECT_TRUE(m2.device_scope);
}

TEST_F(ConfigLoad, LoadFileErrorsNameTheFile) {
  const auto path =
      write("broken.yaml", "homeservers:\n  example.com:\n    login: {method: jwt}\n");
  EXPECT_THAT(load_config_file(path.string()).errors,
              ElementsAre(path.string() +
                          ":3: homeservers.example.com.login.algorithm: required key is missing"));
}

TEST_F(ConfigLoad, LoadFileThatDoesNotExist) {
  const auto path = (dir_ / "absent.yaml").string();
  const auto r = load_config_file(path);
  EXPECT_FALSE(r.config);
  EXPECT_THAT(r.errors, ElementsAre(path + ": cannot read config file: No such file or directory"));
  EXPECT_THAT(load_config_file(dir_.string()).errors,
              ElementsAre(dir_.string() + ": cannot read config file: not a regular file"));
}

// The shipped example must load (with its secret path pointed at a real file) and every value it
// spells out must be the built-in default, as its comments claim.
TEST_F(ConfigLoad, ExampleConfigIsValidAndShowsTheDefaults) {
  fs::path source_dir = fs::path{__FILE__}.parent_path().parent_path().parent_path();
  if (const char* env = std::getenv("MXP_SOURCE_DIR")) source_dir = env;
  std::ifstream in{source_dir / "config.example.yaml"};
  ASSERT_TRUE(in) << "cannot open " << (source_dir / "config.example.yaml");
  std::string text{std::istreambuf_iterator<char>{in}, {}};
  const std::string secret_path = "/etc/mxpuppetd/example.com.secret";
  const auto at = text.find(secret_path);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, secret_path.size(), (dir_ / "hs.secret").string());

  const auto example = load_ok(text);
  const auto defaults = load_ok(minimal);
  EXPECT_EQ(example.listen.unix_socket, defaults.listen.unix_socket);
  EXPECT_EQ(example.listen.socket_mode, defaults.listen.socket_mode);
  EXPECT_EQ(example.listen.request_timeout, defaults.listen.request_timeout);
  EXPECT_EQ(example.listen.idle_timeout, defaults.listen.idle_timeout);
  EXPECT_EQ(example.listen.max_header_bytes, defaults.listen.max_header_bytes);
  EXPECT_EQ(example.listen.max_body_bytes, defaults.listen.max_body_bytes);
  EXPECT_EQ(example.listen.max_connections, defaults.listen.max_connections);
  EXPECT_EQ(example.listen.tcp, defaults.listen.tcp);
  EXPECT_FALSE(example.listen.tcp);
  EXPECT_THAT(text, HasSubstr("\n  #tcp: 127.0.0.1:8765\n"));  // shown, commented out
  EXPECT_FALSE(example.clients);  // shown commented out: no access control by default
  EXPECT_THAT(text, HasSubstr("\n#    api_key_file: "));
  ASSERT_EQ(example.homeservers.size(), 1u);
  const auto& e = example.homeservers.at("example.com");
  const auto& d = defaults.homeservers.at("example.com");
  EXPECT_EQ(e.url, "https://matrix.example.com");
  EXPECT_EQ(e.ca_file, d.ca_file);
  EXPECT_EQ(shared_secret(e).login_type, shared_secret(d).login_type);
  EXPECT_EQ(e.device_id, d.device_id);
  EXPECT_EQ(e.device_display_name, d.device_display_name);
  EXPECT_EQ(e.max_concurrent_logins, d.max_concurrent_logins);
  EXPECT_EQ(e.request_timeout, d.request_timeout);
  EXPECT_EQ(e.connect_timeout, d.connect_timeout);
  EXPECT_EQ(e.max_response_bytes, d.max_response_bytes);
  EXPECT_EQ(example.sessions.max, defaults.sessions.max);
  EXPECT_EQ(example.sessions.idle_timeout, defaults.sessions.idle_timeout);
  EXPECT_EQ(example.sessions.revoke_on_evict, defaults.sessions.revoke_on_evict);
  EXPECT_EQ(example.sessions.revoke_on_shutdown, defaults.sessions.revoke_on_shutdown);
  EXPECT_EQ(example.sessions.refresh_tokens, defaults.sessions.refresh_tokens);
  EXPECT_EQ(example.sessions.refresh_margin, defaults.sessions.refresh_margin);
  EXPECT_EQ(example.sessions.refresh, defaults.sessions.refresh);
  EXPECT_EQ(example.sessions.validate_after, defaults.sessions.validate_after);
  EXPECT_EQ(example.log.level, defaults.log.level);
  EXPECT_EQ(example.log.format, defaults.log.format);
  EXPECT_THAT(text, HasSubstr("\n  format: text"));  // shown, with its default
}

// --- every error the loader reports, one table --------------------------------------------

// A config that must fail with exactly one error. "{dir}" in `yaml`, `expected` and file
// contents stands for the test's directory (where relative paths point).
struct error_case {
  const char* name;
  std::string yaml;
  std::string expected;
  std::vector<std::pair<std::string, std::string>> files = {};  // written before loading
};

std::ostream& operator<<(std::ostream& out, const error_case& c) {
  return out << c.name;
}

const std::string hs = "cfg.yaml:6: homeservers.example.com.";
const std::string secret_head =
    "homeservers:\n  example.com:\n    login:\n      method: shared_secret\n";
const std::string jwt_head = std::string{login_head} + "      method: jwt\n";
const std::string jwt_at = ": homeservers.example.com.login.";
const std::string as_head = std::string{login_head} + "      method: appservice\n";
const std::string as_at = "cfg.yaml:5: homeservers.example.com.login.registration_file: ";
const std::string admin_head = std::string{login_head} + "      method: synapse_admin\n";
const std::string rest_head = std::string{login_head} + "      method: rest_backend\n";
const std::string mas_head = std::string{login_head} +
                             "      method: mas\n      mas_url: https://auth.example.com\n      "
                             "client_id: C\n";
const std::string duration = "expected a duration such as 250ms, 30s, 5m, 24h or 7d, got ";
const std::string device = "device_id: expected 1 to 64 characters from A-Z a-z 0-9 _ . -, got ";
const std::string algorithms =
    " (expected HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, "
    "ES512 or EdDSA)";
const std::string pem = "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n";

std::string gw_head(const std::string& listen) {
  return "gateway:\n  listen: [\"" + listen + "\"]\n";
}
const std::string gw_bridge =
    "  bridges:\n    - name: b\n      token_sha256: " + std::string(64, 'a') +
    "\n      allow: [\"@*:x\"]\n";

std::string with_minimal(const std::string& before) {
  return before + minimal;
}
std::string minimal_with(const std::string& after) {
  return std::string{minimal} + after;
}

const error_case error_cases[] = {
    // listen
    {"socket_mode_not_octal", with_minimal("listen:\n  socket_mode: \"0680\"\n"),
     "cfg.yaml:2: listen.socket_mode: expected an octal file mode such as \"0660\", got '0680'"},
    {"socket_mode_sticky", with_minimal("listen:\n  socket_mode: 01777\n"),
     "cfg.yaml:2: listen.socket_mode: file mode '01777' is larger than 0777"},
    {"socket_mode_huge", with_minimal("listen:\n  socket_mode: 07777777777777777777\n"),
     "cfg.yaml:2: listen.socket_mode: file mode '07777777777777777777' is larger than 0777"},
    {"socket_mode_symbolic", with_minimal("listen:\n  socket_mode: rw-rw----\n"),
     "cfg.yaml:2: listen.socket_mode: expected an octal file mode such as \"0660\", got "
     "'rw-rw----'"},
    {"socket_mode_map", with_minimal("listen:\n  socket_mode: {a: 1}\n"),
     "cfg.yaml:2: listen.socket_mode: expected an octal file mode such as \"0660\", got a map"},
    {"body_bytes_zero", with_minimal("listen:\n  max_body_bytes: 0\n"),
     "cfg.yaml:2: listen.max_body_bytes: expected a positive integer, got '0'"},
    {"request_timeout_no_unit", with_minimal("listen:\n  request_timeout: 30\n"),
     "cfg.yaml:2: listen.request_timeout: " + duration + "'30'"},
    {"idle_timeout_bad_unit", with_minimal("listen:\n  idle_timeout: 5x\n"),
     "cfg.yaml:2: listen.idle_timeout: " + duration + "'5x'"},
    {"idle_timeout_negative", with_minimal("listen:\n  idle_timeout: -5s\n"),
     "cfg.yaml:2: listen.idle_timeout: " + duration + "'-5s'"},
    {"idle_timeout_zero", with_minimal("listen:\n  idle_timeout: 0s\n"),
     "cfg.yaml:2: listen.idle_timeout: must be greater than 0"},
    {"idle_timeout_too_long", with_minimal("listen:\n  idle_timeout: 3651d\n"),
     "cfg.yaml:2: listen.idle_timeout: must be at most 3650d"},
    {"idle_timeout_list", with_minimal("listen:\n  idle_timeout: [1s]\n"),
     "cfg.yaml:2: listen.idle_timeout: expected a duration such as 250ms, 30s, 5m, 24h or 7d, got "
     "a list"},
    {"unix_socket_map", with_minimal("listen:\n  unix_socket: {path: /x}\n"),
     "cfg.yaml:2: listen.unix_socket: expected a string, got a map"},
    {"unix_socket_empty", with_minimal("listen:\n  unix_socket: \"\"\n"),
     "cfg.yaml:2: listen.unix_socket: must not be empty"},
    {"listen_scalar", minimal_with("listen: /tmp/sock\n"),
     "cfg.yaml:6: listen: expected a map, got a scalar"},
    // structure
    {"unknown_top_level_key", with_minimal("base: &b {level: info}\n"),
     "cfg.yaml:1: base: unknown key"},
    {"merge_key", with_minimal("log:\n  <<: {level: info}\n"),
     "cfg.yaml:2: log.<<: merge keys ('<<') are not supported"},
    {"duplicate_key", with_minimal("log:\n  level: info\n  level: debug\n"),
     "cfg.yaml:3: log.level: duplicate key (first set on line 2)"},
    {"duplicate_homeserver",
     minimal_with("  example.com:\n    login: {method: shared_secret, secret_file: hs.secret}\n"),
     "cfg.yaml:6: homeservers.example.com: duplicate homeserver"},
    {"empty_file", "", "cfg.yaml:1: homeservers: required key is missing"},
    {"homeservers_missing", "log:\n  level: info\n",
     "cfg.yaml:1: homeservers: required key is missing"},
    {"homeservers_empty_map", "homeservers: {}\n",
     "cfg.yaml:1: homeservers: at least one homeserver is required"},
    {"homeservers_null", "homeservers:\n", "cfg.yaml:1: homeservers: a value is required"},
    {"homeservers_list", "log: {}\nhomeservers: [example.com]\n",
     "cfg.yaml:2: homeservers: expected a map of server names to homeserver settings, got a "
     "list"},
    {"top_level_list", "- listen\n- homeservers\n",
     "cfg.yaml:1: (top level): expected a map, got a list"},
    {"top_level_scalar", "just text\n", "cfg.yaml:1: (top level): expected a map, got a scalar"},
    {"two_documents", minimal_with("---\nlog: {level: info}\n"),
     "cfg.yaml:7: (top level): expected a single YAML document, found 2"},
    // homeservers
    {"url_no_scheme", minimal_with("    url: matrix.example.com\n"),
     hs + "url: 'matrix.example.com' must start with http:// or https://"},
    {"url_ftp", minimal_with("    url: ftp://example.com\n"),
     hs + "url: 'ftp://example.com' must start with http:// or https://"},
    {"url_no_host", minimal_with("    url: https://\n"), hs + "url: 'https://' has no host name"},
    {"url_bad_port", minimal_with("    url: https://example.com:99999\n"),
     hs + "url: 'https://example.com:99999' has an invalid port (expected 1-65535)"},
    {"url_query", minimal_with("    url: \"https://example.com/?x=1\"\n"),
     hs + "url: 'https://example.com/?x=1' must not contain a query ('?') or fragment ('#')"},
    {"url_list", minimal_with("    url: [https://example.com]\n"),
     hs + "url: expected a string, got a list"},
    {"url_port_without_host", minimal_with("    url: \"https://:8008\"\n"),
     hs + "url: 'https://:8008' has no host name"},
    {"url_empty_port", minimal_with("    url: \"https://example.com:\"\n"),
     hs + "url: 'https://example.com:' has an invalid port (expected 1-65535)"},
    {"url_port_letters", minimal_with("    url: \"https://example.com:8a/x\"\n"),
     hs + "url: 'https://example.com:8a/x' has an invalid port (expected 1-65535)"},
    {"url_user_information", minimal_with("    url: \"https://user@example.com\"\n"),
     hs + "url: 'https://user@example.com' must not contain user information ('@')"},
    {"url_space", minimal_with("    url: \"https://exa mple.com\"\n"),
     hs + "url: 'https://exa mple.com' must not contain spaces or control characters"},
    {"url_unclosed_ipv6", minimal_with("    url: \"https://[::1\"\n"),
     hs + "url: 'https://[::1' has a malformed [IPv6] host"},
    {"url_ipv6_then_junk", minimal_with("    url: \"https://[::1]x\"\n"),
     hs + "url: 'https://[::1]x' has a malformed [IPv6] host"},
    {"url_ipv6_bad_port", minimal_with("    url: \"https://[::1]:8a\"\n"),
     hs + "url: 'https://[::1]:8a' has an invalid port (expected 1-65535)"},
    {"ca_file_missing", minimal_with("    ca_file: nope.pem\n"),
     hs + "ca_file: cannot read '{dir}/nope.pem': No such file or directory"},
    {"ca_file_directory", minimal_with("    ca_file: {dir}\n"),
     hs + "ca_file: cannot read '{dir}': not a regular file"},
    {"device_id_empty", minimal_with("    device_id: \"\"\n"), hs + device + "''"},
    {"device_id_space", minimal_with("    device_id: MY DEVICE\n"), hs + device + "'MY DEVICE'"},
    {"device_id_slash", minimal_with("    device_id: dev/1\n"), hs + device + "'dev/1'"},
    {"device_id_too_long", minimal_with("    device_id: " + std::string(65, 'A') + "\n"),
     hs + device + "'" + std::string(64, 'A') + "...'"},
    {"max_logins_zero", minimal_with("    max_concurrent_logins: 0\n"),
     hs + "max_concurrent_logins: expected an integer from 1 to 1000, got '0'"},
    {"max_logins_too_many", minimal_with("    max_concurrent_logins: 1001\n"),
     hs + "max_concurrent_logins: expected an integer from 1 to 1000, got '1001'"},
    {"max_logins_word", minimal_with("    max_concurrent_logins: four\n"),
     hs + "max_concurrent_logins: expected an integer from 1 to 1000, got 'four'"},
    {"response_bytes_negative", minimal_with("    max_response_bytes: -5\n"),
     hs + "max_response_bytes: expected a positive integer, got '-5'"},
    {"response_bytes_fraction", minimal_with("    max_response_bytes: 1.5\n"),
     hs + "max_response_bytes: expected a positive integer, got '1.5'"},
    {"response_bytes_overflow", minimal_with("    max_response_bytes: 99999999999999999999999\n"),
     hs + "max_response_bytes: expected a positive integer, got '99999999999999999999999'"},
    {"response_bytes_map", minimal_with("    max_response_bytes: {a: 1}\n"),
     hs + "max_response_bytes: expected a positive integer, got a map"},
    {"connect_timeout_zero", minimal_with("    connect_timeout: 0ms\n"),
     hs + "connect_timeout: must be greater than 0"},
    {"display_name_list", minimal_with("    device_display_name: [a, b]\n"),
     hs + "device_display_name: expected a string, got a list"},
    // login
    {"login_scalar", "homeservers:\n  example.com:\n    login: shared_secret\n",
     "cfg.yaml:3: homeservers.example.com.login: expected a map, got a scalar"},
    {"login_missing", "homeservers:\n  example.com:\n    device_id: X\n",
     "cfg.yaml:2: homeservers.example.com.login: required key is missing"},
    {"method_missing", "homeservers:\n  example.com:\n    login:\n      secret_file: hs.secret\n",
     "cfg.yaml:3: homeservers.example.com.login.method: required key is missing"},
    {"method_null", "homeservers:\n  example.com:\n    login:\n      method:\n",
     "cfg.yaml:4: homeservers.example.com.login.method: a value is required"},
    {"method_unknown", "homeservers:\n  example.com:\n    login:\n      method: password\n",
     "cfg.yaml:4: homeservers.example.com.login.method: unknown login method 'password' "
     "(expected shared_secret, jwt, appservice, synapse_admin, rest_backend or mas)"},
    {"method_list", "homeservers:\n  example.com:\n    login:\n      method: [jwt]\n",
     "cfg.yaml:4: homeservers.example.com.login.method: expected a string, got a list"},
    {"login_type_unknown", minimal_with("      login_type: devture\n"),
     hs + "login.login_type: expected auto, com.devture.shared_secret_auth or m.login.password, "
          "got 'devture'"},
    {"secret_file_missing_key", secret_head,
     "cfg.yaml:3: homeservers.example.com.login.secret_file: required key is missing"},
    {"secret_file_empty_name", secret_head + "      secret_file: \"\"\n",
     "cfg.yaml:5: homeservers.example.com.login.secret_file: must not be empty"},
    {"secret_file_absent", secret_head + "      secret_file: missing.secret\n",
     "cfg.yaml:5: homeservers.example.com.login.secret_file: cannot read '{dir}/missing.secret': "
     "No such file or directory"},
    {"secret_file_empty",
     secret_head + "      secret_file: empty.secret\n",
     "cfg.yaml:5: homeservers.example.com.login.secret_file: secret file '{dir}/empty.secret' is "
     "empty",
     {{"empty.secret", ""}}},
    {"secret_file_only_newline",
     secret_head + "      secret_file: newline.secret\n",
     "cfg.yaml:5: homeservers.example.com.login.secret_file: secret file '{dir}/newline.secret' "
     "is empty",
     {{"newline.secret", "\n"}}},
    {"secret_file_directory", secret_head + "      secret_file: .\n",
     "cfg.yaml:5: homeservers.example.com.login.secret_file: cannot read '{dir}/': not a regular "
     "file"},
    {"jwt_flavor_unknown",
     jwt_head + "      flavor: matrix\n      algorithm: HS256\n      secret_file: hs.secret\n",
     "cfg.yaml:5" + jwt_at + "flavor: unknown flavor 'matrix' (expected synapse or famedly)"},
    {"jwt_algorithm_none", jwt_head + "      algorithm: none\n      secret_file: hs.secret\n",
     "cfg.yaml:5" + jwt_at + "algorithm: unknown algorithm 'none'" + algorithms},
    {"jwt_algorithm_lower_case",
     jwt_head + "      algorithm: hs256\n      secret_file: hs.secret\n",
     "cfg.yaml:5" + jwt_at + "algorithm: unknown algorithm 'hs256'" + algorithms},
    {"jwt_private_key_missing", jwt_head + "      algorithm: RS256\n",
     "cfg.yaml:5" + jwt_at + "private_key_file: required key is missing (algorithm RS256)"},
    {"jwt_secret_missing", jwt_head + "      algorithm: HS256\n",
     "cfg.yaml:5" + jwt_at + "secret_file: required key is missing (algorithm HS256)"},
    {"jwt_rsa_with_secret", jwt_head + "      algorithm: RS256\n      secret_file: hs.secret\n",
     "cfg.yaml:6" + jwt_at +
         "secret_file: RS256 takes its key from private_key_file, not from secret_file"},
    {"jwt_hmac_with_private_key",
     jwt_head + "      algorithm: HS384\n      private_key_file: pem.key\n",
     "cfg.yaml:6" + jwt_at +
         "private_key_file: HS384 takes its key from secret_file, not from private_key_file",
     {{"pem.key", pem}}},
    {"jwt_key_not_pem", jwt_head + "      algorithm: ES256\n      private_key_file: hs.secret\n",
     "cfg.yaml:6" + jwt_at +
         "private_key_file: ES256 needs a PEM private key, but '{dir}/hs.secret' holds no PEM "
         "text"},
    {"jwt_secret_is_pem",
     jwt_head + "      algorithm: HS256\n      secret_file: pem.key\n",
     "cfg.yaml:6" + jwt_at +
         "secret_file: HS256 needs a shared secret, but '{dir}/pem.key' holds a PEM key or "
         "certificate",
     {{"pem.key", pem}}},
    {"jwt_key_absent", jwt_head + "      algorithm: EdDSA\n      private_key_file: missing.pem\n",
     "cfg.yaml:6" + jwt_at +
         "private_key_file: cannot read '{dir}/missing.pem': No such file or directory"},
    {"jwt_secret_empty",
     jwt_head + "      algorithm: HS256\n      secret_file: empty\n",
     "cfg.yaml:6" + jwt_at + "secret_file: file '{dir}/empty' is empty",
     {{"empty", "\n"}}},
    {"jwt_famedly_subject",
     jwt_head + "      flavor: famedly\n      algorithm: HS256\n      secret_file: hs.secret\n"
                "      subject_claim: user\n",
     "cfg.yaml:8" + jwt_at + "subject_claim: flavor famedly always reads the subject from 'sub'"},
    {"jwt_lifetime_short",
     jwt_head +
         "      algorithm: HS256\n      secret_file: hs.secret\n      token_lifetime: 500ms\n",
     "cfg.yaml:7" + jwt_at + "token_lifetime: must be at least 1s (JWT times are whole seconds)"},
    {"jwt_audiences_map",
     jwt_head + "      algorithm: HS256\n      secret_file: hs.secret\n      audiences: {a: 1}\n",
     "cfg.yaml:7" + jwt_at + "audiences: expected a list of strings, got a map"},
    {"jwt_login_type",
     jwt_head + "      algorithm: HS256\n      secret_file: hs.secret\n      login_type: auto\n",
     "cfg.yaml:7" + jwt_at + "login_type: unknown key"},
    {"appservice_nothing", as_head,
     "cfg.yaml:3: homeservers.example.com.login.as_token_file: required key is missing (or give "
     "registration_file)"},
    {"appservice_both",
     as_head + "      as_token_file: as.token\n      registration_file: reg.yaml\n",
     "cfg.yaml:6: homeservers.example.com.login.registration_file: give either as_token_file or "
     "registration_file, not both",
     {{"as.token", "t\n"}}},
    {"registration_absent", as_head + "      registration_file: reg.yaml\n",
     as_at + "cannot read registration '{dir}/reg.yaml': No such file or directory"},
    {"registration_without_token",
     as_head + "      registration_file: reg.yaml\n",
     as_at + "registration '{dir}/reg.yaml': as_token is missing or not a non-empty string",
     {{"reg.yaml", "id: x\nnamespaces:\n  users: [{regex: '@a.*'}]\n"}}},
    {"registration_users_map",
     as_head + "      registration_file: reg.yaml\n",
     as_at + "registration '{dir}/reg.yaml' line 3: namespaces.users: expected a list, got a map",
     {{"reg.yaml", "as_token: secret-as-token\nnamespaces:\n  users: {regex: x}\n"}}},
    {"registration_without_users",
     as_head + "      registration_file: reg.yaml\n",
     as_at + "registration '{dir}/reg.yaml': has no namespaces.users regex, so no user could be "
             "logged in",
     {{"reg.yaml", "as_token: secret-as-token\nnamespaces:\n  users: []\n"}}},
    {"admin_token_missing", admin_head,
     "cfg.yaml:3: homeservers.example.com.login.admin_token_file: required key is missing"},
    {"admin_lifetime_short",
     admin_head + "      admin_token_file: admin.token\n      token_lifetime: 30s\n",
     "cfg.yaml:6: homeservers.example.com.login.token_lifetime: must be at least 1m (the token "
     "is replaced before it runs out)",
     {{"admin.token", "syt_admin\n"}}},
    {"rest_listen_missing", rest_head,
     "cfg.yaml:3: homeservers.example.com.login.backend_listen: required key is missing"},
    {"rest_listen_public", rest_head + "      backend_listen: \"0.0.0.0:8090\"\n",
     "cfg.yaml:5: homeservers.example.com.login.backend_listen: '0.0.0.0' is not a loopback "
     "address; the backend listener only takes 127.0.0.0/8 or [::1]"},
    {"rest_listen_no_port", rest_head + "      backend_listen: 127.0.0.1\n",
     "cfg.yaml:5: homeservers.example.com.login.backend_listen: expected ADDRESS:PORT such as "
     "127.0.0.1:8765 or [::1]:8765, got '127.0.0.1'"},
    {"rest_listen_port_zero", rest_head + "      backend_listen: \"127.0.0.1:0\"\n",
     "cfg.yaml:5: homeservers.example.com.login.backend_listen: invalid port '0' (1-65535)"},
    {"rest_nonce_short",
     rest_head + "      backend_listen: \"127.0.0.1:8090\"\n      nonce_lifetime: 500ms\n",
     "cfg.yaml:6: homeservers.example.com.login.nonce_lifetime: must be at least 1s"},
    {"rest_nonce_long",
     rest_head + "      backend_listen: \"127.0.0.1:8090\"\n      nonce_lifetime: 1h\n",
     "cfg.yaml:6: homeservers.example.com.login.nonce_lifetime: must be at most 10m (a nonce "
     "lives for one login)"},
    {"rest_secret_file",
     rest_head + "      backend_listen: \"127.0.0.1:8090\"\n      "
                 "secret_file: x\n",
     "cfg.yaml:6: homeservers.example.com.login.secret_file: unknown key"},
    {"mas_secret_missing", mas_head,
     "cfg.yaml:3: homeservers.example.com.login.client_secret_file: required key is missing"},
    {"mas_url_bad",
     std::string{login_head} +
         "      method: mas\n      mas_url: ftp://x\n      client_id: C\n      "
         "client_secret_file: mas.secret\n",
     "cfg.yaml:5: homeservers.example.com.login.mas_url: 'ftp://x' must start with http:// or "
     "https://",
     {{"mas.secret", "s\n"}}},
    {"mas_lifetime_short",
     mas_head + "      client_secret_file: mas.secret\n      token_lifetime: 5s\n",
     "cfg.yaml:8: homeservers.example.com.login.token_lifetime: must be at least 10s (the token is "
     "renewed before it runs out)",
     {{"mas.secret", "s\n"}}},
    {"mas_device_scope_short_id",
     mas_head + "      client_secret_file: mas.secret\n      device_scope: true\n",
     "cfg.yaml:8: homeservers.example.com.login.device_scope: MAS needs a device_id of at least 10 "
     "characters from A-Z a-z 0-9 - for a device scope, got 'MXPUPPETD'",
     {{"mas.secret", "s\n"}}},
    {"mas_secret_absent", mas_head + "      client_secret_file: nope\n",
     "cfg.yaml:7: homeservers.example.com.login.client_secret_file: cannot read '{dir}/nope': No "
     "such file or directory"},
    {"admin_token_absent", admin_head + "      admin_token_file: nope\n",
     "cfg.yaml:5: homeservers.example.com.login.admin_token_file: cannot read '{dir}/nope': No "
     "such file or directory"},
    // sessions and log
    {"sessions_max_zero", with_minimal("sessions:\n  max: 0\n"),
     "cfg.yaml:2: sessions.max: expected a positive integer, got '0'"},
    {"sessions_idle_forever", with_minimal("sessions:\n  idle_timeout: forever\n"),
     "cfg.yaml:2: sessions.idle_timeout: " + duration + "'forever'"},
    {"bool_maybe", with_minimal("sessions:\n  revoke_on_evict: maybe\n"),
     "cfg.yaml:2: sessions.revoke_on_evict: expected a boolean (true or false), got 'maybe'"},
    {"bool_list", with_minimal("sessions:\n  revoke_on_shutdown: [true]\n"),
     "cfg.yaml:2: sessions.revoke_on_shutdown: expected a boolean (true or false), got a list"},
    {"log_level_verbose", with_minimal("log:\n  level: verbose\n"),
     "cfg.yaml:2: log.level: expected one of trace, debug, info, warn, error, critical, off, got "
     "'verbose'"},
    {"log_format_logfmt", with_minimal("log:\n  level: info\n  format: logfmt\n"),
     "cfg.yaml:3: log.format: expected text or json, got 'logfmt'"},
    {"log_format_upper_case", with_minimal("log:\n  format: JSON\n"),
     "cfg.yaml:2: log.format: expected text or json, got 'JSON'"},
    {"log_format_list", with_minimal("log:\n  format: [json]\n"),
     "cfg.yaml:2: log.format: expected a string, got a list"},
    // gateway
    {"gateway_listen_public", minimal_with(gw_head("0.0.0.0:8449") + gw_bridge),
     "cfg.yaml:7: gateway.listen: '0.0.0.0' is not a loopback address; the TCP listener only "
     "takes 127.0.0.0/8 or [::1]"},
    {"gateway_listen_missing", minimal_with("gateway:\n" + gw_bridge),
     "cfg.yaml:6: gateway.listen: required key is missing"},
    {"gateway_no_token",
     minimal_with(gw_head("127.0.0.1:8449") +
                  "  bridges:\n    - name: b\n      allow: [\"@*:x\"]\n"),
     "cfg.yaml:9: gateway.bridges[0]: token_file or token_sha256 is required (mxpuppetctl "
     "gateway-token makes a token)"},
    {"gateway_two_tokens",
     minimal_with(gw_head("127.0.0.1:8449") + gw_bridge + "      token_file: t.token\n"),
     "cfg.yaml:9: gateway.bridges[0]: token_file and token_sha256 exclude each other",
     {{"t.token", "a-bridge-token-0123456789\n"}}},
    {"gateway_bad_sha",
     minimal_with(gw_head("127.0.0.1:8449") + "  bridges:\n    - name: b\n      token_sha256: abc\n"
                                              "      allow: [\"@*:x\"]\n"),
     "cfg.yaml:10: gateway.bridges[0].token_sha256: expected the SHA-256 of the bridge token as "
     "64 hexadecimal digits (mxpuppetctl gateway-token prints it), got 'abc'"},
    {"gateway_token_file_absent",
     minimal_with(gw_head("127.0.0.1:8449") +
                  "  bridges:\n    - name: b\n      token_file: nope\n      allow: [\"@*:x\"]\n"),
     "cfg.yaml:10: gateway.bridges[0].token_file: cannot read '{dir}/nope': No such file or "
     "directory"},
    {"gateway_allow_missing",
     minimal_with(gw_head("127.0.0.1:8449") +
                  "  bridges:\n    - name: b\n      token_sha256: " + std::string(64, 'a') + "\n"),
     "cfg.yaml:9: gateway.bridges[0].allow: required key is missing"},
    {"gateway_default_unknown",
     minimal_with(gw_head("127.0.0.1:8449") + "  default_homeserver: other.org\n" + gw_bridge),
     "cfg.yaml:8: gateway.default_homeserver: names no homeserver of homeservers: 'other.org'"},
    {"gateway_same_token",
     minimal_with(gw_head("127.0.0.1:8449") + gw_bridge + "    - name: c\n      token_sha256: " +
                  std::string(64, 'a') + "\n      allow: [\"@*:x\"]\n"),
     "cfg.yaml:12: gateway.bridges[1]: has the same token as bridge 'b' (each bridge needs its "
     "own)"},
    {"gateway_mode_unknown", minimal_with("") + "    gateway_mode: proxy\n",
     "cfg.yaml:6: homeservers.example.com.gateway_mode: expected session or assert, got 'proxy'"},
    {"gateway_mode_assert_needs_appservice", minimal_with("") + "    gateway_mode: assert\n",
     "cfg.yaml:6: homeservers.example.com.gateway_mode: assert needs login.method: appservice "
     "(the as_token it asserts with)"},
};

class ConfigError : public ConfigLoad, public ::testing::WithParamInterface<error_case> {
 protected:
  std::string in_dir(std::string text) const {
    for (auto at = text.find("{dir}"); at != std::string::npos; at = text.find("{dir}", at))
      text.replace(at, 5, dir_.string());
    return text;
  }
};

TEST_P(ConfigError, IsReportedAtItsKey) {
  const auto& c = GetParam();
  for (const auto& [name, contents] : c.files) write(name, in_dir(contents));
  EXPECT_EQ(single_error(in_dir(c.yaml)), in_dir(c.expected));
}

INSTANTIATE_TEST_SUITE_P(Table, ConfigError, ::testing::ValuesIn(error_cases),
                         [](const auto& info) { return std::string{info.param.name}; });

}  // namespace

TEST_F(ConfigLoad, RefreshKeys) {
  auto c =
      load_ok(std::string{minimal} +
              "sessions:\n  refresh_tokens: true\n  refresh_margin: 2m\n  refresh: background\n"
              "  validate_after: 1h\n");
  EXPECT_TRUE(c.sessions.refresh_tokens);
  EXPECT_EQ(c.sessions.refresh_margin, std::chrono::minutes{2});
  EXPECT_EQ(c.sessions.refresh, refresh_policy::background);
  EXPECT_EQ(c.sessions.validate_after, std::chrono::hours{1});
  EXPECT_TRUE(c.homeservers.at("example.com").request_refresh_token)
      << "copied to every homeserver";
  const auto d = load_ok(minimal);
  EXPECT_FALSE(d.sessions.refresh_tokens);
  EXPECT_EQ(d.sessions.refresh_margin, std::chrono::seconds{60});
  EXPECT_EQ(d.sessions.refresh, refresh_policy::on_demand);
  EXPECT_FALSE(d.sessions.validate_after);
  EXPECT_FALSE(d.homeservers.at("example.com").request_refresh_token);
}

TEST_F(ConfigLoad, RefreshKeyErrors) {
  const auto r =
      load(std::string{minimal} +
           "sessions:\n  refresh_tokens: maybe\n  refresh: eager\n  refresh_margin: soon\n");
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 3u);
  EXPECT_THAT(r.errors[0], HasSubstr("sessions.refresh_tokens"));
  EXPECT_THAT(r.errors[1],
              HasSubstr("sessions.refresh: expected on_demand or background, got 'eager'"));
  EXPECT_THAT(r.errors[2], HasSubstr("sessions.refresh_margin"));
}

TEST_F(ConfigLoad, SecretFilesReadableByOthersLoadWithAWarning) {
  const auto path = write("open.secret", "s3cret\n");
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
  const auto r = load(
      "homeservers:\n  example.com:\n    login:\n      method: shared_secret\n"
      "      secret_file: open.secret\n");
  ASSERT_TRUE(r.config) << ::testing::PrintToString(r.errors);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_THAT(r.warnings[0],
              HasSubstr("cfg.yaml:5: homeservers.example.com.login.secret_file: secret file '"));
  EXPECT_THAT(r.warnings[0], HasSubstr("is readable by others (mode 0604)"));
  EXPECT_THAT(r.warnings[0], Not(HasSubstr("s3cret")));
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_TRUE(load("homeservers:\n  example.com:\n    login:\n      method: shared_secret\n"
                   "      secret_file: open.secret\n")
                  .warnings.empty());
}

TEST_F(ConfigLoad, BareSecretNamesComeFromTheSystemdCredentialsDirectory) {
  const auto creds = dir_ / "credentials";
  fs::create_directories(creds);
  {
    std::ofstream out{creds / "hs.secret"};
    out << "from-systemd\n";
  }
  ::setenv("CREDENTIALS_DIRECTORY", creds.c_str(), 1);
  auto c = load_ok(minimal);  // secret_file: hs.secret exists in both places: the credential wins
  EXPECT_EQ(shared_secret(c.homeservers.at("example.com")).secret.reveal(), "from-systemd");
  EXPECT_EQ(shared_secret(c.homeservers.at("example.com")).secret_file,
            (creds / "hs.secret").string());
  fs::remove(creds / "hs.secret");
  c = load_ok(minimal);  // not a credential: relative to the config file as always
  EXPECT_EQ(shared_secret(c.homeservers.at("example.com")).secret.reveal(), "s3cret-value");
  ::unsetenv("CREDENTIALS_DIRECTORY");
}

TEST_F(ConfigLoad, InputsThatHangYamlCppsLoadAllAreErrors) {
  // yaml-cpp 0.7's LoadAll loops forever on these (found by fuzz/fuzz_config).
  for (const char* text : {",", "\n,\n", "homeservers: {}\n,\n"}) {
    const auto r = load(text);
    EXPECT_FALSE(r.config) << text;
    EXPECT_FALSE(r.errors.empty()) << text;
  }
}

TEST_F(ConfigLoad, GatewayEveryKey) {
  write("tg.token", "bridge-token-for-telegram\n");
  write("tg.login", "login-secret-for-telegram\n");
  const auto c = load_ok(std::string{minimal} +
                         "    gateway_mode: session\n"
                         "gateway:\n"
                         "  listen: [\"127.0.0.1:8449\", \"[::1]:8449\"]\n"
                         "  default_homeserver: example.com\n"
                         "  request_timeout: 90s\n"
                         "  max_body_bytes: 1048576\n"
                         "  bridges:\n"
                         "    - name: telegram\n"
                         "      token_file: tg.token\n"
                         "      login_secret_file: tg.login\n"
                         "      allow: [\"@*:example.com\"]\n"
                         "    - name: whatsapp\n"
                         "      token_sha256: " +
                         std::string(64, 'b') + "\n      allow: [\"@wa_*:example.com\"]\n");
  ASSERT_TRUE(c.gateway);
  const auto& g = *c.gateway;
  ASSERT_EQ(g.listen.size(), 2u);
  EXPECT_EQ(g.listen[0].address, "127.0.0.1");
  EXPECT_EQ(g.listen[1].address, "::1");
  EXPECT_EQ(g.listen[1].port, 8449);
  EXPECT_EQ(g.default_homeserver, "example.com");
  EXPECT_EQ(g.request_timeout, 90s);
  EXPECT_EQ(g.max_body_bytes, 1048576u);
  ASSERT_EQ(g.bridges.size(), 2u);
  EXPECT_EQ(g.bridges[0].name, "telegram");
  ASSERT_TRUE(g.bridges[0].token_sha256);
  // sha256("bridge-token-for-telegram"): the newline stripped, the token itself not kept
  EXPECT_EQ((*g.bridges[0].token_sha256)[0], 0xed);
  EXPECT_EQ((*g.bridges[0].token_sha256)[31], 0xcd);
  EXPECT_EQ(g.bridges[0].login_secret.reveal(), "login-secret-for-telegram");
  EXPECT_THAT(g.bridges[1].allow, ElementsAre("@wa_*:example.com"));
  EXPECT_EQ(c.homeservers.at("example.com").gateway, mxp::config::gateway_mode::session);
}

TEST_F(ConfigLoad, GatewayDefaultsAndAssertMode) {
  write("as.token", "as-token-value\n");
  const auto c = load_ok(
      "homeservers:\n  example.com:\n    login:\n      method: appservice\n"
      "      as_token_file: as.token\n    gateway_mode: assert\n"
      "gateway:\n  listen: 127.0.0.1:8449\n  bridges:\n    - name: b\n      token_sha256: " +
      std::string(64, 'c') + "\n      allow: [\"@*:example.com\"]\n");
  ASSERT_TRUE(c.gateway);
  EXPECT_EQ(c.gateway->request_timeout, 120s);
  EXPECT_EQ(c.gateway->max_body_bytes, 100u * 1024 * 1024);
  EXPECT_EQ(c.gateway->default_homeserver, "");
  EXPECT_EQ(c.homeservers.at("example.com").gateway, mxp::config::gateway_mode::assert_identity);
  EXPECT_FALSE(load_ok(minimal).gateway);
}
