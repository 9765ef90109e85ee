// config.example.yaml against the loader: the example loads as shipped and with every
// commented-out key and example block uncommented, and it shows every key the loader knows
// (config::known_keys(), read from the parse's own rules), so the two cannot drift apart.
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace {

namespace fs = std::filesystem;
using mxp::config::known_keys;
using mxp::config::load_config_file;

std::string read_example() {
  fs::path source_dir = fs::path{__FILE__}.parent_path().parent_path().parent_path();
  if (const char* env = std::getenv("MXP_SOURCE_DIR")) source_dir = env;
  std::ifstream in{source_dir / "config.example.yaml"};
  EXPECT_TRUE(in) << "cannot open " << (source_dir / "config.example.yaml");
  return {std::istreambuf_iterator<char>{in}, {}};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// A line that is a YAML key once one '#' is taken out: "  #header_timeout: 10s",
// "#  - name: x". Prose ("# One of text ...", "#  # A TCP client") is not.
const std::regex commented_key{R"(^(\s*)#(\s*(- )?[a-z_][a-z0-9_.-]*:(\s.*)?)$)"};

// Every key path the example shows, commented out or not: "listen.header_timeout",
// "homeservers.*.login.issuer" (any server name), "clients[].allow" (any entry). The nesting
// of a commented line is that of the line with its '#' taken out.
std::set<std::string> example_keys(const std::string& text) {
  static const std::regex key_line{R"(^( *)(- )?([A-Za-z0-9_.-]+):(\s.*)?$)"};
  struct frame {
    std::size_t indent;
    std::string path;
  };
  std::vector<frame> stack;
  std::set<std::string> keys;
  for (std::string line : lines_of(text)) {
    if (const auto hash = line.find_first_not_of(' ');
        hash != std::string::npos && line[hash] == '#')
      line.erase(hash, 1);
    std::smatch m;
    if (!std::regex_match(line, m, key_line)) continue;
    std::size_t indent = m[1].length();
    const auto pop_to = [&](std::size_t level) {
      while (!stack.empty() && stack.back().indent >= level) stack.pop_back();
    };
    if (m[2].matched) {  // "- key:": a new list entry of the key above
      pop_to(indent);
      stack.push_back({indent, (stack.empty() ? std::string{} : stack.back().path) + "[]"});
      indent += 2;
    }
    pop_to(indent);
    const std::string parent = stack.empty() ? std::string{} : stack.back().path;
    const std::string key = parent == "homeservers" ? "*" : m[3].str();
    const std::string path = parent.empty() ? key : parent + "." + key;
    keys.insert(path);
    stack.push_back({indent, path});
  }
  return keys;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

class ConfigExample : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("mxp-config-example-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The example with its absolute paths moved into the temp dir, and every file it names
  // written there (a secret, a PEM key, a bridge registration), mode 0600 like a real one.
  std::string localise(std::string text) {
    for (const char* from : {"/etc/mxpuppetd/", "/var/lib/mxpuppetd/", "/run/mxpuppetd/"})
      text = replace_all(text, from, dir_.string() + "/");
    static const std::regex file_key{R"((_file|ca_file): (\S+))"};
    for (std::sregex_iterator it{text.begin(), text.end(), file_key}, end; it != end; ++it) {
      const fs::path path{(*it)[2].str()};
      std::ofstream out{path};
      if (path.string().ends_with(".pem"))
        out << "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
      else if (path.string().ends_with("registration.yaml"))
        out << "as_token: as-token-for-the-test\nnamespaces:\n  users:\n"
               "    - regex: \"@telegram_.*:example\\\\.org\"\n      exclusive: true\n";
      else
        out << "a-secret-for-the-test-0123456789\n";
      out.close();
      fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
    }
    return text;
  }

  // Loads `text` from a file in the temp dir, as `mxpuppetd --check-config` does.
  std::vector<std::string> load_errors(const std::string& text) {
    const auto path = dir_ / "config.yaml";
    std::ofstream{path} << text;
    return load_config_file(path.string()).errors;
  }

  fs::path dir_;
};

TEST_F(ConfigExample, LoadsAsShipped) {
  EXPECT_THAT(load_errors(localise(read_example())), ::testing::IsEmpty());
}

// Every commented-out key and example block, uncommented at once, must load too: this is what
// makes each of them a real example. User and group names are this test's own, since the
// example's (mautrix-telegram, mxpuppetd) need not exist here.
TEST_F(ConfigExample, LoadsWithEveryCommentedKeyUncommented) {
  std::string text;
  int uncommented = 0;
  for (const auto& line : lines_of(read_example())) {
    std::smatch m;
    if (std::regex_match(line, m, commented_key)) {
      text += m[1].str() + m[2].str() + "\n";
      ++uncommented;
    } else {
      text += line + "\n";
    }
  }
  EXPECT_GT(uncommented, 40);
  const std::string user = ::getpwuid(::geteuid())->pw_name;
  const std::string group = ::getgrgid(::getegid())->gr_name;
  text = std::regex_replace(text, std::regex{R"(\b(user|socket_owner): .*)"}, "$1: " + user);
  text = std::regex_replace(text, std::regex{R"(\b(group|socket_group): .*)"}, "$1: " + group);
  EXPECT_THAT(load_errors(localise(text)), ::testing::IsEmpty()) << text;
}

TEST_F(ConfigExample, ShowsEveryKeyTheLoaderKnows) {
  const auto known = known_keys();
  // The mechanism itself: keys of every section, every login method and list entries.
  for (const char* k : {"listen.header_timeout", "homeservers.*.login.issuer",
                        "homeservers.*.login.admin_token_file", "clients[].api_key_sha256",
                        "store.path", "log.format", "shutdown_grace", "sessions.validate_after"})
    EXPECT_TRUE(known.contains(k)) << k;
  const auto shown = example_keys(read_example());
  std::vector<std::string> missing;
  for (const auto& k : known)
    if (!shown.contains(k)) missing.push_back(k);
  EXPECT_THAT(missing, ::testing::IsEmpty())
      << "keys the loader accepts that config.example.yaml does not show (add each, commented "
         "out with its default if it has one)";
}

// The parser of example keys reads nesting, comments and list entries the way YAML does.
TEST_F(ConfigExample, ExampleKeysFollowsNesting) {
  const auto keys = example_keys(
      "a:\n  b: 1\n  #c: 2\n#d:\n#  - e: x\n#    f: y\n#  - e: z\nhomeservers:\n  x.org:\n"
      "    #login:\n    #  method: jwt\n# Prose: not a key\n");
  EXPECT_THAT(keys, ::testing::UnorderedElementsAre(
                        "a", "a.b", "a.c", "d", "d[].e", "d[].f", "homeservers", "homeservers.*",
                        "homeservers.*.login", "homeservers.*.login.method"));
}

}  // namespace
