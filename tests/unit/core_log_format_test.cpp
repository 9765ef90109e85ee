// log_format: the JSON log lines (fields, UTC time, escaping, invalid UTF-8 replaced)
// and that a logger set up with the formatter writes exactly one object per line.
#include <gtest/gtest.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>

#include <chrono>
#include <sstream>

#include "core/log_format.hpp"

namespace {

std::string json_of(std::string_view s) {
  std::string out;
  mxp::append_json_log_string(out, s);
  return out;
}

std::string format(spdlog::level::level_enum level, std::string_view message,
                   std::chrono::system_clock::time_point at) {
  mxp::json_log_formatter f;
  spdlog::details::log_msg msg{
      at, {}, "mxpuppetd", level, spdlog::string_view_t{message.data(), message.size()}};
  spdlog::memory_buf_t buf;
  f.format(msg, buf);
  return {buf.data(), buf.size()};
}

// 2024-05-01T12:34:56.789Z
const auto may_first =
    std::chrono::system_clock::time_point{std::chrono::milliseconds{1714566896789}};

}  // namespace

TEST(JsonLogFormatter, OneObjectPerLineWithTimeLevelAndMessage) {
  EXPECT_EQ(
      format(spdlog::level::info, "mxpuppetd 0.1.0 ready", may_first),
      R"({"time":"2024-05-01T12:34:56.789Z","level":"info","message":"mxpuppetd 0.1.0 ready"})"
      "\n");
  EXPECT_EQ(format(spdlog::level::warn, "w", may_first + std::chrono::milliseconds{211}),
            R"({"time":"2024-05-01T12:34:57.000Z","level":"warning","message":"w"})"
            "\n");
  EXPECT_EQ(format(spdlog::level::critical, "", may_first - std::chrono::milliseconds{789}),
            R"({"time":"2024-05-01T12:34:56.000Z","level":"critical","message":""})"
            "\n");
}

TEST(JsonLogFormatter, MessagesAreEscapedSoALineStaysOneLine) {
  const auto line =
      format(spdlog::level::err, "homeserver said \"no\"\nsecond line\\\t\x01", may_first);
  EXPECT_NE(line.find(R"("message":"homeserver said \"no\"\nsecond line\\\t\u0001"})"),
            std::string::npos)
      << line;
  EXPECT_EQ(line.find('\n'), line.size() - 1);
}

TEST(JsonLogFormatter, InvalidUtf8BecomesReplacementCharacters) {
  EXPECT_EQ(json_of("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"),
            "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
  EXPECT_EQ(json_of("a\xFFz"), "\"a\xEF\xBF\xBDz\"");
  EXPECT_EQ(json_of("\xC3"), "\"\xEF\xBF\xBD\"");                  // truncated sequence
  EXPECT_EQ(json_of("\xC0\xAF"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");  // overlong '/'
  EXPECT_EQ(json_of("\xED\xA0\x80"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");  // a surrogate
  EXPECT_EQ(json_of("\xF4\x90\x80\x80"),
            "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");  // > U+10FFFF
  EXPECT_EQ(json_of("\"\xFF\n"), "\"\\\"\xEF\xBF\xBD\\n\"");  // escaping still applies around them
}

TEST(JsonLogFormatter, ALoggerWritesEveryMessageAsItsOwnLine) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out);
  spdlog::logger logger{"test", sink};
  logger.set_formatter(std::make_unique<mxp::json_log_formatter>());
  logger.info("user {} logged in", "@alice:example.com");
  logger.warn("multi\nline");
  const auto text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
  EXPECT_NE(text.find(R"("level":"info","message":"user @alice:example.com logged in"})"),
            std::string::npos);
  EXPECT_NE(text.find(R"("message":"multi\nline"})"), std::string::npos);
}
