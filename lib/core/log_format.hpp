// log_format: how mxpuppetd's log lines look. Text is spdlog's pattern; JSON is one
// object per line ({"time","level","message"}) for log shippers, valid JSON whatever
// bytes a message holds (escaped, and anything that is not UTF-8 replaced).
#pragma once

#include <spdlog/formatter.h>

#include <ctime>
#include <memory>
#include <string>
#include <string_view>

namespace mxp {

// "2024-05-01T12:00:00.000 info message", local time.
inline constexpr const char* text_log_pattern = "%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v";

// {"time":"2024-05-01T12:00:00.000Z","level":"info","message":"..."}: UTC time with
// milliseconds, spdlog's level names (as the text format prints them), one line each.
class json_log_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_log_formatter>();
  }

 private:
  std::string line_;  // reused: a sink formats one message at a time
  std::time_t cached_second_ = -1;
  char cached_time_[24] = {};  // "YYYY-MM-DDTHH:MM:SS" of cached_second_
};

// Appends `s` as a JSON string literal: control characters, '"' and '\\' escaped, and
// every byte that does not start a well-formed UTF-8 sequence replaced by \ufffd.
void append_json_log_string(std::string& out, std::string_view s);

}  // namespace mxp
