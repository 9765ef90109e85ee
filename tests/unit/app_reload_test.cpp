// Reload as a library function: what changed is applied (and only that), an unchanged config
// applies nothing, and a config with errors, or a client that cannot be built, keeps the old one.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "app/reload.hpp"
#include "config/config.hpp"

namespace {

namespace fs = std::filesystem;
using mxp::app::apply_reload;
using mxp::app::reload_outcome;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Records what a reload asks of the daemon, in order.
struct recording_target final : mxp::app::reload_target {
  std::vector<std::string> calls;
  std::set<std::string> unbuildable;  // make_homeserver throws for these server names

  mxp::sessions::homeserver_entry make_homeserver(
      const mxp::config::homeserver_config& hs) override {
    calls.push_back("make " + hs.server_name);
    if (unbuildable.contains(hs.server_name))
      throw std::runtime_error(hs.server_name + ": key does not fit");
    return {nullptr, hs.max_concurrent_logins};
  }
  void put_homeserver(const std::string& name, mxp::sessions::homeserver_entry entry) override {
    calls.push_back("put " + name + " " + std::to_string(entry.max_concurrent_logins));
  }
  std::size_t remove_homeserver(const std::string& name) override {
    calls.push_back("remove " + name);
    return 0;
  }
  void set_session_limits(const mxp::config::sessions_config& s) override {
    calls.push_back("limits " + std::to_string(s.max));
  }
  void set_access(const std::optional<std::vector<mxp::config::client_config>>& c) override {
    calls.push_back("access " + (c ? std::to_string(c->size()) : std::string{"open"}));
  }
  void set_log_level(const std::string& level) override { calls.push_back("log " + level); }
};

class Reload : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("mxp_reload_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) +
            "_" + std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
    write("hs.secret", "s3cret\n");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void write(const std::string& name, const std::string& contents) {
    std::ofstream{dir_ / name, std::ios::binary} << contents;
    fs::permissions(dir_ / name, fs::perms::owner_read | fs::perms::owner_write);
  }
  mxp::config::load_result load(const std::string& yaml) {
    return mxp::config::load_config_text(yaml, "cfg.yaml", dir_.string());
  }
  mxp::config::daemon_config load_ok(const std::string& yaml) {
    auto r = load(yaml);
    EXPECT_THAT(r.errors, IsEmpty());
    return r.config ? *r.config : mxp::config::daemon_config{};
  }
  static std::string homeserver(const std::string& name, unsigned max_logins = 4) {
    return "  " + name + ":\n    login: {method: shared_secret, secret_file: hs.secret}\n" +
           "    max_concurrent_logins: " + std::to_string(max_logins) + "\n";
  }

  fs::path dir_;
  recording_target target_;
};

TEST_F(Reload, UnchangedConfigAppliesNothing) {
  const std::string yaml = "homeservers:\n" + homeserver("a.example") +
                           "clients:\n  - {name: me, uid: 1000, allow: [\"@*:a.example\"]}\n";
  auto current = load_ok(yaml);
  EXPECT_EQ(apply_reload(load(yaml), current, target_), reload_outcome::applied);
  EXPECT_THAT(target_.calls, IsEmpty());
  EXPECT_EQ(current.homeservers.size(), 1u);
}

TEST_F(Reload, WhatChangedIsApplied) {
  auto current =
      load_ok("homeservers:\n" + homeserver("changed.example") + homeserver("gone.example") +
              homeserver("same.example") + "sessions: {max: 100}\n");
  const auto result =
      apply_reload(load("homeservers:\n" + homeserver("changed.example", 8) +
                        homeserver("new.example") + homeserver("same.example") +
                        "sessions: {max: 500}\n"
                        "clients:\n  - {name: me, uid: 1000, allow: [\"@*:a.example\"]}\n"
                        "log: {level: debug}\n"),
                   current, target_);
  EXPECT_EQ(result, reload_outcome::applied);
  // Every client is built first; then removals, then additions and changes, then the rest.
  EXPECT_THAT(target_.calls,
              ElementsAre("make new.example", "make changed.example", "remove gone.example",
                          "put changed.example 8", "put new.example 4", "limits 500", "access 1",
                          "log debug"));
  EXPECT_EQ(current.sessions.max, 500u);
  EXPECT_TRUE(current.homeservers.contains("new.example"));
  EXPECT_FALSE(current.homeservers.contains("gone.example"));
  EXPECT_EQ(current.log.level, "debug");
}

TEST_F(Reload, ARotatedSecretIsAChangedHomeserver) {
  auto current = load_ok("homeservers:\n" + homeserver("a.example"));
  write("hs.secret", "rotated\n");
  EXPECT_EQ(apply_reload(load("homeservers:\n" + homeserver("a.example")), current, target_),
            reload_outcome::applied);
  EXPECT_THAT(target_.calls, ElementsAre("make a.example", "put a.example 4"));
}

TEST_F(Reload, ABadConfigKeepsTheOldOne) {
  auto current = load_ok("homeservers:\n" + homeserver("a.example") + "sessions: {max: 100}\n");
  const auto bad = load("homeservers:\n" + homeserver("b.example") + "sessions: {max: 0}\n");
  ASSERT_FALSE(bad.errors.empty());
  EXPECT_EQ(apply_reload(bad, current, target_), reload_outcome::rejected);
  EXPECT_THAT(target_.calls, IsEmpty());
  EXPECT_TRUE(current.homeservers.contains("a.example"));
  EXPECT_FALSE(current.homeservers.contains("b.example"));
  EXPECT_EQ(current.sessions.max, 100u);
}

TEST_F(Reload, AClientThatCannotBeBuiltRejectsTheWholeReload) {
  auto current = load_ok("homeservers:\n" + homeserver("a.example") + homeserver("b.example"));
  target_.unbuildable = {"new.example"};
  EXPECT_EQ(apply_reload(load("homeservers:\n" + homeserver("a.example", 8) +
                              homeserver("new.example") + "log: {level: debug}\n"),
                         current, target_),
            reload_outcome::rejected);
  // Clients were built (and dropped), nothing was changed.
  for (const auto& call : target_.calls) EXPECT_THAT(call, ::testing::StartsWith("make ")) << call;
  EXPECT_TRUE(current.homeservers.contains("b.example"));
  EXPECT_FALSE(current.homeservers.contains("new.example"));
  EXPECT_EQ(current.homeservers.at("a.example").max_concurrent_logins, 4u);
  EXPECT_EQ(current.log.level, "info");
}

TEST_F(Reload, ListenStoreAndLogFormatWaitForARestart) {
  auto current =
      load_ok("listen: {unix_socket: /tmp/a.sock}\nhomeservers:\n" + homeserver("a.example"));
  EXPECT_EQ(apply_reload(load("listen: {unix_socket: /tmp/b.sock}\nstore: {path: s.db}\n"
                              "log: {format: json}\nhomeservers:\n" +
                              homeserver("a.example")),
                         current, target_),
            reload_outcome::applied);
  EXPECT_THAT(target_.calls, IsEmpty());
  EXPECT_EQ(current.listen.unix_socket, "/tmp/a.sock");  // what is actually in force
  EXPECT_EQ(current.store.path, "");
  EXPECT_EQ(current.log.format, mxp::config::log_format::text);
}

TEST_F(Reload, ReloadConfigFileReadsTheFile) {
  auto current = load_ok("homeservers:\n" + homeserver("a.example"));
  write("config.yaml", "homeservers:\n" + homeserver("b.example"));
  EXPECT_EQ(mxp::app::reload_config_file((dir_ / "config.yaml").string(), current, target_),
            reload_outcome::applied);
  EXPECT_THAT(target_.calls, ElementsAre("make b.example", "remove a.example", "put b.example 4"));
  EXPECT_EQ(current.source_file, (dir_ / "config.yaml").string());
  EXPECT_EQ(mxp::app::reload_config_file((dir_ / "absent.yaml").string(), current, target_),
            reload_outcome::rejected);
}

}  // namespace
