// plan_reload: what differs between the config in force and a new one, and what stays until a
// restart. Pure comparisons of loaded configs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "config/reload_plan.hpp"

namespace {

namespace fs = std::filesystem;
using mxp::config::plan_reload;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

class ReloadPlan : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("mxp_plan_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
    write("hs.secret", "s3cret\n");
    write("reg.yaml", "as_token: t\nnamespaces:\n  users: [{regex: '@a_.*'}]\n");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void write(const std::string& name, const std::string& contents) {
    std::ofstream{dir_ / name, std::ios::binary} << contents;
    fs::permissions(dir_ / name, fs::perms::owner_read | fs::perms::owner_write);
  }
  mxp::config::daemon_config load(const std::string& rest = "") {
    const auto r = mxp::config::load_config_text(
        "homeservers:\n"
        "  a.example:\n    login: {method: shared_secret, secret_file: hs.secret}\n"
        "  b.example:\n    login: {method: appservice, registration_file: reg.yaml}\n" +
            rest,
        "cfg.yaml", dir_.string());
    EXPECT_THAT(r.errors, IsEmpty());
    return r.config ? *r.config : mxp::config::daemon_config{};
  }

  fs::path dir_;
};

TEST_F(ReloadPlan, TheSameConfigChangesNothing) {
  const auto plan = plan_reload(load(), load());
  EXPECT_TRUE(plan.empty());
  EXPECT_FALSE(plan.needs_restart);
}

TEST_F(ReloadPlan, ANewRegistrationNamespaceChangesItsHomeserver) {
  const auto current = load();
  write("reg.yaml", "as_token: t\nnamespaces:\n  users: [{regex: '@b_.*'}]\n");
  const auto plan = plan_reload(current, load());
  EXPECT_THAT(plan.changed, ElementsAre("b.example"));
  EXPECT_THAT(plan.added, IsEmpty());
  EXPECT_THAT(plan.removed, IsEmpty());
}

TEST_F(ReloadPlan, RefreshTokensChangeEveryHomeserverButNotThePoolLimits) {
  const auto plan = plan_reload(load(), load("sessions: {refresh_tokens: true}\n"));
  EXPECT_THAT(plan.changed, ElementsAre("a.example", "b.example"));
  EXPECT_FALSE(plan.limits);
}

TEST_F(ReloadPlan, SessionLimitsAccessAndLogLevel) {
  const auto plan =
      plan_reload(load(), load("sessions: {idle_timeout: 1h}\nlog: {level: warn}\n"
                               "clients:\n  - {name: me, uid: 1000, allow: [\"@*:a.example\"]}\n"));
  EXPECT_TRUE(plan.limits);
  EXPECT_TRUE(plan.access);
  EXPECT_TRUE(plan.log_level);
  EXPECT_THAT(plan.changed, IsEmpty());
}

TEST_F(ReloadPlan, ShutdownSettingsNeedNoAction) {
  // Read from the config in force when the daemon stops.
  EXPECT_TRUE(
      plan_reload(load(), load("sessions: {revoke_on_shutdown: true}\nshutdown_grace: 5s\n"))
          .empty());
}

TEST_F(ReloadPlan, ListenStoreAndLogFormatWaitForARestart) {
  const auto current = load();
  for (const char* rest :
       {"listen: {unix_socket: /tmp/other.sock}\n", "listen: {socket_mode: 0600}\n",
        "store: {path: s.db}\n", "log: {format: json}\n"}) {
    const auto next = load(rest);
    const auto plan = plan_reload(current, next);
    EXPECT_TRUE(plan.needs_restart) << rest;
    EXPECT_TRUE(plan.empty()) << rest;
    const auto in_force = mxp::config::in_force_after_reload(current, next);
    EXPECT_EQ(in_force.listen, current.listen) << rest;
    EXPECT_EQ(in_force.store, current.store) << rest;
    EXPECT_EQ(in_force.log, current.log) << rest;
  }
}

}  // namespace
