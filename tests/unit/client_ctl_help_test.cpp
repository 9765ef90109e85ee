// mxpuppetctl's help, completion file and doctor, in process: `help COMMAND` and
// `COMMAND --help` for every command of the table, the bash completion offering every command
// and option the help names, and doctor's lines when the daemon is absent.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "client/ctl.hpp"
#include "client/ctl_doctor.hpp"
#include "client/ctl_help.hpp"

namespace {

namespace fs = std::filesystem;
using mxp::client::ctl_commands;
using ::testing::HasSubstr;

struct ctl_result {
  int exit_code;
  std::string out, err;
};

constexpr std::int64_t fixed_now = 1'700'000'000'000;  // 2023-11-14: before any build of this

ctl_result ctl(std::vector<std::string_view> args, std::string env_socket = {}) {
  std::ostringstream out, err;
  std::istringstream in;
  const mxp::client::ctl_context ctx{out, err, in, std::move(env_socket), [] { return fixed_now; }};
  const int rc = mxp::client::run_ctl(args, ctx);
  return {rc, out.str(), err.str()};
}

fs::path source_dir() {
  fs::path dir = fs::path{__FILE__}.parent_path().parent_path().parent_path();
  if (const char* env = std::getenv("MXP_SOURCE_DIR")) dir = env;
  return dir;
}

TEST(CtlHelp, EveryCommandHasItsOwnHelp) {
  const auto all = ctl({"--help"});
  EXPECT_EQ(all.exit_code, 0);
  for (const auto& c : ctl_commands()) {
    SCOPED_TRACE(std::string{c.name});
    EXPECT_THAT(all.out, HasSubstr("  " + std::string{c.synopsis} + "\n"));
    const auto help = ctl({"help", c.name});
    EXPECT_EQ(help.exit_code, 0) << help.err;
    EXPECT_THAT(help.out, HasSubstr("Usage: mxpuppetctl [--socket PATH] [--json] " +
                                    std::string{c.synopsis} + "\n"));
    EXPECT_THAT(help.out, HasSubstr(std::string{c.description}));
    EXPECT_THAT(help.out, HasSubstr(std::string{c.options}));
    EXPECT_THAT(help.out, HasSubstr("--socket PATH"));
    const auto dash = ctl({c.name, "--help"});
    EXPECT_EQ(dash.exit_code, 0);
    EXPECT_EQ(dash.out, c.name == "help" ? all.out : help.out);  // `help --help`: everything
  }
  const auto unknown = ctl({"help", "frobnicate"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("unknown command 'frobnicate'"));
}

TEST(CtlHelp, CompletionOffersEveryCommandAndOption) {
  std::ifstream in{source_dir() / "completion/mxpuppetctl.bash"};
  ASSERT_TRUE(in);
  const std::string text{std::istreambuf_iterator<char>{in}, {}};
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex{R"re(local commands="([^"]*)")re"}));
  const std::string commands = " " + m[1].str() + " ";
  const std::regex option{R"(--[a-z-]+)"};
  for (const auto& c : ctl_commands()) {
    EXPECT_THAT(commands, HasSubstr(" " + std::string{c.name} + " "));
    const std::string options{c.options};
    for (std::sregex_iterator it{options.begin(), options.end(), option}, end; it != end; ++it)
      EXPECT_THAT(text, HasSubstr(it->str())) << c.name;
  }
  for (const char* global : {"--socket", "--json", "--help", "--version"})
    EXPECT_THAT(text, HasSubstr(global));
}

// The completion function itself, run by bash as completion would: COMPREPLY for a command line.
std::string complete(const std::string& line_words, int cword) {
  const auto file = (source_dir() / "completion/mxpuppetctl.bash").string();
  const auto script = fs::temp_directory_path() / ("mxp-complete-" + std::to_string(::getpid()));
  std::ofstream{script} << "source '" << file << "'\nCOMP_WORDS=(" << line_words
                        << ")\nCOMP_CWORD=" << cword
                        << "\n_mxpuppetctl\nprintf '%s ' \"${COMPREPLY[@]}\"\n";
  std::string out;
  if (FILE* p = ::popen(("bash --norc --noprofile " + script.string() + " 2>&1").c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    ::pclose(p);
  }
  fs::remove(script);
  return out;
}

TEST(CtlHelp, CompletionRunsInBash) {
  EXPECT_EQ(complete("mxpuppetctl ''", 1),
            "token invalidate revoke sessions status bridges gateway-token check-config doctor "
            "help ");
  EXPECT_EQ(complete("mxpuppetctl do", 1), "doctor ");
  EXPECT_EQ(complete("mxpuppetctl --socket /tmp/s doctor --c", 4), "--config ");
  EXPECT_EQ(complete("mxpuppetctl revoke --a", 2), "--all-idle ");
  EXPECT_EQ(complete("mxpuppetctl help ch", 2), "check-config ");
}

TEST(CtlHelp, UsageErrorsOfTheNewOptions) {
  EXPECT_EQ(ctl({"status", "--config", "x.yaml"}).exit_code, 2);
  EXPECT_EQ(ctl({"doctor", ""}).exit_code, 2);  // doctor USER...: not an empty user ID
  EXPECT_EQ(ctl({"doctor", "--config", ""}).exit_code, 2);
}

TEST(CtlDoctor, FlowsNeeded) {
  using mxp::client::flows_needed;
  EXPECT_THAT(flows_needed("auto"),
              ::testing::ElementsAre("com.devture.shared_secret_auth", "m.login.password"));
  EXPECT_THAT(flows_needed("org.matrix.login.jwt"), ::testing::ElementsAre("org.matrix.login.jwt"));
  EXPECT_THAT(flows_needed("synapse_admin"), ::testing::IsEmpty());
}

// No daemon, a homeserver nobody listens on, a store in a directory that does not exist, a
// clock before the build: every check fails, each with its fix, and nothing else is said.
TEST(CtlDoctor, EveryFailureHasAFix) {
  const fs::path dir = fs::temp_directory_path() / ("mxp-doctor-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream{dir / "secret"} << "a-secret-that-is-never-printed\n";
  fs::permissions(dir / "secret", fs::perms::owner_read | fs::perms::owner_write);
  std::ofstream{dir / "config.yaml"}
      << "homeservers:\n  localhost:\n    url: http://127.0.0.1:9\n    login:\n"
         "      method: shared_secret\n      secret_file: secret\n"
         "store:\n  path: absent-dir/sessions.db\n";
  const auto config = (dir / "config.yaml").string();
  const auto r = ctl({"doctor", "--config", config}, (dir / "absent.sock").string());
  fs::remove_all(dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("FAIL socket: cannot connect to " + (dir / "absent.sock").string() +
                               ": No such file or directory\n  fix: start the daemon"));
  EXPECT_THAT(r.out, HasSubstr("ok config: " + config + " is valid (1 homeserver)\n"));
  EXPECT_THAT(r.out, HasSubstr("FAIL homeserver localhost: cannot reach http://127.0.0.1:9"));
  EXPECT_THAT(r.out, HasSubstr("FAIL store: directory " + (dir / "absent-dir").string() +
                               " does not exist\n  fix: create "));
  EXPECT_THAT(r.out, HasSubstr("FAIL clock: the system clock says 2023-11-14T22:13:20Z, before "
                               "this program was built"));
  std::istringstream lines{r.out};
  int fails = 0, fixes = 0;
  for (std::string line; std::getline(lines, line);) {
    EXPECT_THAT(line, ::testing::ContainsRegex("^(ok |FAIL |  fix: )"));
    fails += line.starts_with("FAIL ");
    fixes += line.starts_with("  fix: ");
  }
  EXPECT_EQ(fails, 4);
  EXPECT_EQ(fixes, fails);
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("a-secret-that-is-never-printed")));
  EXPECT_EQ(r.err, "");
}

}  // namespace
