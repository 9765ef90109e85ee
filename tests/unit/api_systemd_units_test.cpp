// The units in systemd/: `systemd-analyze verify` accepts them, the service's exposure
// score (`systemd-analyze security --offline=yes`) stays at 2.0 or lower, and the
// sysusers/tmpfiles snippets apply cleanly to an empty root. Skipped without systemd-analyze.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;

struct command_result {
  int exit_code = -1;
  std::string output;
};

// Runs a shell command, stdout and stderr together.
command_result run(const std::string& command) {
  command_result r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  while (auto n = std::fread(buf.data(), 1, buf.size(), p)) r.output.append(buf.data(), n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool have(const char* program) {
  return run(std::string{"command -v "} + program).exit_code == 0;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

struct systemd_units : ::testing::Test {
  fs::path units;
  fs::path work;

  void SetUp() override {
    if (!have("systemd-analyze")) GTEST_SKIP() << "systemd-analyze is not installed";
    const char* src = std::getenv("MXP_SOURCE_DIR");
    ASSERT_TRUE(src && *src) << "MXP_SOURCE_DIR is not set (run the tests through ctest)";
    units = fs::path{src} / "systemd";
    ASSERT_TRUE(fs::exists(units / "mxpuppetd.service")) << units;
    std::string tmpl = (fs::temp_directory_path() / "mxp-units-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    work = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    if (!work.empty()) fs::remove_all(work, ec);
  }

  // verify needs ExecStart's binary to exist: point the copy at the built daemon (or /bin/true).
  void copy_units() {
    std::string bin = "/bin/true";
    if (const char* b = std::getenv("MXPUPPETD_BIN"); b && ::access(b, X_OK) == 0) bin = b;
    std::ofstream(work / "mxpuppetd.service")
        << replace_all(slurp(units / "mxpuppetd.service"), "/usr/bin/mxpuppetd", bin);
    fs::copy_file(units / "mxpuppetd.socket", work / "mxpuppetd.socket");
  }
};

TEST_F(systemd_units, VerifyAcceptsServiceAndSocket) {
  copy_units();
  const auto r = run("cd '" + work.string() +
                     "' && systemd-analyze verify ./mxpuppetd.service ./mxpuppetd.socket");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("mxpuppetd."), std::string::npos) << "warnings about our units:\n"
                                                            << r.output;
}

TEST_F(systemd_units, ServiceExposureIsAtMostTwo) {
  const auto r = run("systemd-analyze security --offline=yes --no-pager '" +
                     (units / "mxpuppetd.service").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::smatch m;
  const std::regex overall{R"(Overall exposure level for mxpuppetd\.service: ([0-9]+\.[0-9]+))"};
  ASSERT_TRUE(std::regex_search(r.output, m, overall)) << r.output;
  const double score = std::stod(m[1].str());
  std::printf("systemd-analyze security exposure: %.1f\n", score);
  EXPECT_LE(score, 2.0) << r.output;
}

TEST_F(systemd_units, ServiceHasThePromisedSettings) {
  const auto unit = slurp(units / "mxpuppetd.service");
  for (const char* line :
       {"Type=notify", "ExecStart=/usr/bin/mxpuppetd -c /etc/mxpuppetd/config.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID", "User=mxpuppetd", "RuntimeDirectory=mxpuppetd",
        "StateDirectory=mxpuppetd", "ConfigurationDirectory=mxpuppetd", "WatchdogSec=30s",
        "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallFilter=@system-service",
        "UMask=0077"})
    EXPECT_NE(unit.find(line), std::string::npos) << line;
  const auto socket = slurp(units / "mxpuppetd.socket");
  EXPECT_NE(socket.find("ListenStream=/run/mxpuppetd/mxpuppetd.sock"), std::string::npos);
  EXPECT_NE(socket.find("SocketMode=0660"), std::string::npos);
}

TEST_F(systemd_units, SysusersAndTmpfilesApplyToAnEmptyRoot) {
  if (!have("systemd-sysusers") || !have("systemd-tmpfiles"))
    GTEST_SKIP() << "systemd-sysusers/tmpfiles missing";
  fs::create_directories(work / "root/etc");
  const auto root = (work / "root").string();
  auto r = run("systemd-sysusers --root='" + root + "' '" +
               (units / "mxpuppetd.sysusers.conf").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(slurp(work / "root/etc/passwd").find("mxpuppetd:x:"), std::string::npos);
  r = run("systemd-tmpfiles --root='" + root + "' --create '" +
          (units / "mxpuppetd.tmpfiles.conf").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "");
  for (const char* d : {"etc/mxpuppetd", "var/lib/mxpuppetd", "run/mxpuppetd"})
    EXPECT_TRUE(fs::is_directory(work / "root" / d)) << d;
  EXPECT_EQ(fs::status(work / "root/var/lib/mxpuppetd").permissions() & fs::perms::all,
            fs::perms::owner_all);
}

}  // namespace
