// End-to-end: `mxpuppetctl doctor` against the real mxpuppetd and the fake homeserver: every
// check passes on a working installation; an absent socket, a homeserver that does not offer
// the login flow, an unreachable homeserver, an unwritable store and a wrong login secret each
// fail with a fix line.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "support/e2e_fixture.hpp"

using namespace mxp::test;

namespace {

struct Doctor : e2e_fixture {
  // The lines of doctor's output that start with `prefix`.
  static std::vector<std::string> lines_starting(const std::string& output,
                                                 const std::string& prefix) {
    std::vector<std::string> out;
    std::istringstream in{output};
    for (std::string line; std::getline(in, line);)
      if (line.starts_with(prefix)) out.push_back(line);
    return out;
  }
  std::string store_sections() { return "store:\n  path: " + dir.file("store/sessions.db") + "\n"; }
};

TEST_F(Doctor, PassesAgainstARunningDaemon) {
  ASSERT_EQ(::mkdir(dir.file("store").c_str(), 0700), 0);
  hs->register_user("@alice:localhost");
  ASSERT_NO_FATAL_FAILURE(start({.sections = store_sections()}));
  const auto r = run_ctl({"doctor", "--config", config_file, "@alice:localhost"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(lines_starting(r.output, "FAIL").empty()) << r.output;
  for (const char* check :
       {"ok socket: ", "ok config: ", "ok homeserver localhost: ", "ok store: ",
        "ok login @alice:localhost: the daemon holds a token for it (shared_secret login)",
        "ok clock: "})
    EXPECT_EQ(lines_starting(r.output, check).size(), 1u) << check << "\n" << r.output;
  EXPECT_NE(r.output.find("(needs com.devture.shared_secret_auth or m.login.password)\n"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find(homeserver_secret), std::string::npos);
}

TEST_F(Doctor, AbsentSocketFailsWithAFix) {
  write_config({});
  const auto r = run_ctl({"doctor", "--config", config_file, "--socket", dir.file("absent.sock")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("FAIL socket: cannot connect to " + dir.file("absent.sock") +
                          ": No such file or directory\n  fix: start the daemon"),
            std::string::npos)
      << r.output;
  // Without the daemon the config still names the homeserver, and it is still checked.
  EXPECT_EQ(lines_starting(r.output, "ok config: ").size(), 1u) << r.output;
  EXPECT_EQ(lines_starting(r.output, "ok homeserver localhost: ").size(), 1u) << r.output;
}

TEST_F(Doctor, MissingLoginFlowUnreachableHomeserverAndUnwritableStore) {
  auto o = homeserver_options();
  o.flow_devture = false;
  o.flow_password = false;
  start_homeserver(o);
  ASSERT_EQ(::mkdir(dir.file("store").c_str(), 0700), 0);
  ASSERT_NO_FATAL_FAILURE(
      start({.homeservers = {default_entry(), {.name = "gone.test", .url = "http://127.0.0.1:9"}},
             .sections = store_sections()}));
  // Root writes through any mode bits: as root the directory is made immutable instead (ext4's
  // `chattr +i` holds for root too), so the check is shown failing either way.
  const bool root = ::geteuid() == 0;
  const std::string store_dir = dir.file("store");
  const bool unwritable = root ? std::system(("chattr +i " + store_dir).c_str()) == 0
                               : ::chmod(store_dir.c_str(), 0500) == 0;
  ASSERT_TRUE(unwritable) << "cannot make " << store_dir << " unwritable";
  const auto r = run_ctl({"doctor", "--config", config_file});
  if (root)
    (void)std::system(("chattr -i " + store_dir).c_str());
  else
    ::chmod(store_dir.c_str(), 0700);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("FAIL homeserver localhost: " + hs->url() +
                          " offers no flow, not com.devture.shared_secret_auth or "
                          "m.login.password\n  fix: enable "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("FAIL homeserver gone.test: cannot reach http://127.0.0.1:9"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("  fix: check homeservers.gone.test.url"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("FAIL store: directory " + store_dir + " is not writable"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(lines_starting(r.output, "ok socket: ").size(), 1u) << r.output;
}

TEST_F(Doctor, AWrongSecretFailsTheLoginOfTheUserGiven) {
  hs->register_user("@alice:localhost");
  dir.write("wrong", "not-the-homeserver-secret");
  ASSERT_NO_FATAL_FAILURE(start({.homeservers = {{.url = hs->url(),
                                                  .login = "      method: shared_secret\n"
                                                           "      secret_file: wrong\n"}}}));
  auto r = run_ctl({"doctor", "--config", config_file, "@alice:localhost"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("FAIL login @alice:localhost: the homeserver refused the login (403 "
                          "M_FORBIDDEN)\n  fix: the login secret or key does not match"),
            std::string::npos)
      << r.output;
  // The rest of the installation is fine: only the login fails.
  EXPECT_EQ(lines_starting(r.output, "FAIL").size(), 1u) << r.output;

  EXPECT_EQ(r.output.find("not-the-homeserver-secret"), std::string::npos);
}

}  // namespace
