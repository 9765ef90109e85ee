// log_format: the JSON log line formatter and its UTF-8-safe string escaping.
#include "core/log_format.hpp"

#include <chrono>

#include "core/json_writer.hpp"

namespace mxp {
namespace {

// Length of the well-formed UTF-8 sequence starting at p[0] (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or 0 if there is none.
std::size_t utf8_sequence_length(const unsigned char* p, std::size_t n) {
  const unsigned c = p[0];
  auto cont = [&](std::size_t i, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return i < n && p[i] >= lo && p[i] <= hi;
  };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;  // not U+D800..U+DFFF
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

}  // namespace

void append_json_log_string(std::string& out, std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  // Runs of ASCII and valid multi-byte sequences go through append_json_string (which
  // escapes what JSON needs); each invalid byte becomes one replacement character.
  std::string valid;
  std::size_t run_start = 0, i = 0;
  bool any_invalid = false;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    if (const auto len = utf8_sequence_length(p + i, n - i)) {
      i += len;
      continue;
    }
    any_invalid = true;
    valid.append(s.data() + run_start, i - run_start);
    valid += "\xEF\xBF\xBD";  // U+FFFD
    run_start = ++i;
  }
  if (!any_invalid) return append_json_string(out, s);
  valid.append(s.data() + run_start, n - run_start);
  append_json_string(out, valid);
}

void json_log_formatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  using namespace std::chrono;
  const auto since_epoch = msg.time.time_since_epoch();
  const auto secs = duration_cast<seconds>(since_epoch);
  const auto millis = static_cast<int>(duration_cast<milliseconds>(since_epoch - secs).count());
  const std::time_t t = static_cast<std::time_t>(secs.count());
  if (t != cached_second_) {
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    std::strftime(cached_time_, sizeof cached_time_, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_second_ = t;
  }
  const unsigned ms = millis < 0 ? 0u : static_cast<unsigned>(millis);
  const char fraction[] = {'.',
                           static_cast<char>('0' + ms / 100),
                           static_cast<char>('0' + ms / 10 % 10),
                           static_cast<char>('0' + ms % 10),
                           'Z',
                           '\0'};

  line_.clear();
  line_ += R"({"time":")";
  line_ += cached_time_;
  line_ += fraction;
  line_ += R"(","level":)";
  const auto level = spdlog::level::to_string_view(msg.level);
  append_json_string(line_, std::string_view{level.data(), level.size()});
  line_ += R"(,"message":)";
  append_json_log_string(line_, std::string_view{msg.payload.data(), msg.payload.size()});
  line_ += "}\n";
  dest.append(line_.data(), line_.data() + line_.size());
}

}  // namespace mxp
