// One server-name grammar: the config loader (homeserver keys) and the user-ID parser get the
// same table of names and must agree on every one of them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <fmt/format.h>

#include "config/config.hpp"
#include "core/server_name.hpp"
#include "matrix/user_id.hpp"
#include "server_name_cases.hpp"

namespace {

namespace fs = std::filesystem;

class ServerNameAgreement : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mxp_server_name_test_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
    std::ofstream{dir_ / "hs.secret"} << "s3cret-value\n";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // The homeserver key is written as a double-quoted YAML scalar with every ASCII byte escaped,
  // so that YAML syntax cannot get in the way of what the grammar sees (other bytes go as they
  // are: "\xc3" in YAML would be the code point U+00C3, not the byte).
  mxp::config::load_result load_with_homeserver(const std::string& name) {
    std::string quoted = "\"";
    for (unsigned char c : name) {
      if (c < 0x80)
        quoted += fmt::format("\\x{:02x}", c);
      else
        quoted += static_cast<char>(c);
    }
    quoted += "\"";
    return mxp::config::load_config_text(
        "homeservers:\n  " + quoted +
            ":\n    login: {method: shared_secret, secret_file: hs.secret}\n",
        "cfg.yaml", dir_.string());
  }

  fs::path dir_;
};

TEST_F(ServerNameAgreement, ConfigAndUserIdParserAgree) {
  for (const auto& c : mxp::test::server_name_cases()) {
    const auto loaded = load_with_homeserver(c.name);
    const bool config_ok = loaded.errors.empty();
    if (config_ok) {
      ASSERT_TRUE(loaded.config);
      EXPECT_TRUE(loaded.config->homeservers.contains(c.name)) << c.name;
    }
    const std::string user_id = "@a:" + c.name;
    const auto parsed = mxp::matrix::parse_user_id(user_id);
    if (parsed) {
      EXPECT_EQ(parsed->localpart, "a");
      EXPECT_EQ(parsed->server_name, c.name);
    }
    // A name the grammar accepts but that is too long for any user ID is refused by both.
    const bool expected = c.valid && c.name.size() <= mxp::max_server_name_in_user_id;
    EXPECT_EQ(config_ok, expected)
        << '"' << c.name << "\" config: " << (loaded.errors.empty() ? "" : loaded.errors.front());
    EXPECT_EQ(parsed.has_value(), expected) << '"' << user_id << '"';
  }
}

TEST_F(ServerNameAgreement, ConfigSaysWhy) {
  EXPECT_THAT(load_with_homeserver("-foo.example").errors,
              ::testing::ElementsAre(::testing::HasSubstr("invalid server name")));
  const std::string too_long(63, 'a');
  const auto name = too_long + "." + too_long + "." + too_long + "." + std::string(61, 'b');
  ASSERT_TRUE(mxp::is_valid_server_name(name));  // 253 bytes: a valid DNS name
  EXPECT_THAT(load_with_homeserver(name).errors,
              ::testing::ElementsAre(::testing::HasSubstr(
                  "server name too long: a user ID on it would exceed 255 bytes")));
  EXPECT_FALSE(mxp::matrix::parse_user_id("@a:" + name));
}

}  // namespace
