// End-to-end: mxpuppetd with `log.format: json` writes one JSON object per line (time,
// level, message) through a run with logins, refusals, invalidation, revocation and
// shutdown, and no token or secret it handled appears anywhere in its log.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <csignal>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;

namespace {

constexpr const char* secret = "e2e-logging-shared-secret";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  for (std::size_t pos = 0; pos < text.size();) {
    const auto end = text.find('\n', pos);
    lines.push_back(text.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    pos = end == std::string::npos ? text.size() : end + 1;
  }
  return lines;
}

struct logging_fixture : e2e_fixture {
  logging_fixture() : e2e_fixture{secret} {}
  // The config with `log_section` as the lines under log:.
  config_pieces config(const std::string& log_section) {
    return {.listen = "  request_timeout: 5s\n",
            .homeservers = {{.url = hs->url(), .more = "    request_timeout: 2s\n"}},
            .log = log_section};
  }
};

TEST_F(logging_fixture, JsonFormatWritesOneObjectPerLineAndNeverAToken) {
  // @ghost is never registered: its login is refused with the homeserver's words.
  hs->register_users({"@alice:localhost", "@bob:localhost", "@quote\"and\\backslash:localhost"});
  ASSERT_NO_FATAL_FAILURE(start(config("  level: debug\n  format: json\n")));

  std::set<std::string> tokens;
  unix_http_client c{socket};
  auto token_of = [&](const std::string& user) {
    auto r =
        c.request("GET", "/v1/users/" + mxp::client::percent_encode_path_segment(user) + "/token");
    EXPECT_EQ(r.status, 200) << r.body;
    auto t = json_string(r.body, "access_token");
    EXPECT_FALSE(t.empty());
    tokens.insert(t);
    return t;
  };
  const auto alice = token_of("@alice:localhost");
  token_of("@bob:localhost");
  token_of("@quote\"and\\backslash:localhost");  // user IDs that need escaping end up in messages
  EXPECT_EQ(c.request("GET", "/v1/users/@ghost:localhost/token").status,
            502);  // upstream error text is logged
  EXPECT_EQ(c.request("POST", "/v1/users/@alice:localhost/invalidate",
                      R"({"access_token":")" + alice + "\"}")
                .status,
            200);
  token_of("@alice:localhost");  // a new one after the invalidation
  EXPECT_EQ(c.request("DELETE", "/v1/users/@bob:localhost/session").status, 200);
  EXPECT_EQ(c.request("GET", "/v1/users/@alice:localhost/token?min_valid_ms=soon").status, 400);
  c.close();
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << daemon->log();

  const auto log = daemon->log();
  const auto lines = lines_of(log);
  ASSERT_GT(lines.size(), 5u) << log;
  EXPECT_EQ(log.back(), '\n');
  simdjson::dom::parser parser;
  std::set<std::string> levels;
  bool saw_ready = false, saw_upstream_text = false;
  for (const auto& line : lines) {
    simdjson::dom::object obj;
    ASSERT_EQ(parser.parse(line).get_object().get(obj), simdjson::SUCCESS)
        << "not a JSON object: " << line;
    std::size_t fields = 0;
    for (auto field : obj) {
      ++fields;
      EXPECT_TRUE(field.key == "time" || field.key == "level" || field.key == "message") << line;
      EXPECT_TRUE(field.value.is_string()) << line;
    }
    EXPECT_EQ(fields, 3u) << line;
    std::string_view time, level, message;
    ASSERT_EQ(obj["time"].get_string().get(time), simdjson::SUCCESS) << line;
    ASSERT_EQ(obj["level"].get_string().get(level), simdjson::SUCCESS) << line;
    ASSERT_EQ(obj["message"].get_string().get(message), simdjson::SUCCESS) << line;
    EXPECT_EQ(time.size(), 24u) << line;  // 2024-05-01T12:00:00.000Z
    EXPECT_TRUE(time.ends_with('Z')) << line;
    levels.insert(std::string{level});
    if (message.find(" ready: ") != std::string_view::npos) saw_ready = true;
    if (message.find("Invalid username or password") != std::string_view::npos)
      saw_upstream_text = true;
  }
  EXPECT_TRUE(saw_ready) << log;
  EXPECT_TRUE(saw_upstream_text) << log;  // the homeserver's words are kept, as a JSON string
  EXPECT_TRUE(levels.contains("info")) << log;
  EXPECT_TRUE(levels.contains("debug")) << log;

  ASSERT_GE(tokens.size(), 4u);
  for (const auto& t : tokens)
    EXPECT_EQ(log.find(t), std::string::npos) << "a token appeared in the log";
  EXPECT_EQ(log.find(secret), std::string::npos) << "the shared secret appeared in the log";
  for (const char* user : {"@alice:localhost", "@bob:localhost", "@ghost:localhost"})
    EXPECT_EQ(log.find(fake_shared_secret_token(secret, user)), std::string::npos)
        << "a login credential leaked";
}

TEST_F(logging_fixture, TextFormatIsTheDefault) {
  ASSERT_NO_FATAL_FAILURE(start(config("  level: info\n")));
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << daemon->log();
  const auto log = daemon->log();
  ASSERT_FALSE(log.empty());
  const std::regex text_line{
      R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} [a-z]+ .+)"};  // "TIME level message"
  for (const auto& line : lines_of(log)) EXPECT_TRUE(std::regex_match(line, text_line)) << line;
}

TEST_F(logging_fixture, UnknownFormatIsRefusedByCheckConfig) {
  const auto file = write_config(config("  format: logfmt\n"));
  const auto r = run_mxpuppetd({"--check-config", "-c", file});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(file + ":12: log.format: expected text or json, got 'logfmt'"),
            std::string::npos)
      << r.output;
}

}  // namespace
