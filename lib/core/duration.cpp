// Operator-written durations.
#include "core/duration.hpp"

#include <charconv>
#include <cstdint>
#include <limits>

namespace mxp {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::int64_t total_ms = 0;
  while (!text.empty()) {
    std::uint64_t amount = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), amount);
    if (ec != std::errc{} || end == text.data()) return std::nullopt;
    text.remove_prefix(static_cast<std::size_t>(end - text.data()));
    std::uint64_t unit_ms = 0;
    if (text.starts_with("ms")) {
      unit_ms = 1, text.remove_prefix(2);
    } else if (text.starts_with("s")) {
      unit_ms = 1000, text.remove_prefix(1);
    } else if (text.starts_with("m")) {
      unit_ms = 60'000, text.remove_prefix(1);
    } else if (text.starts_with("h")) {
      unit_ms = 3'600'000, text.remove_prefix(1);
    } else if (text.starts_with("d")) {
      unit_ms = 86'400'000, text.remove_prefix(1);
    } else {
      return std::nullopt;  // a bare number is ambiguous: demand a unit
    }
    constexpr auto max_ms =
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max() / 4);
    if (amount > max_ms / unit_ms ||
        static_cast<std::uint64_t>(total_ms) + amount * unit_ms > max_ms)
      return std::nullopt;
    total_ms += static_cast<std::int64_t>(amount * unit_ms);
  }
  return std::chrono::milliseconds{total_ms};
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  struct unit {
    std::int64_t size;
    const char* suffix;
  };
  for (auto u : {unit{86'400'000, "d"}, unit{3'600'000, "h"}, unit{60'000, "m"}, unit{1000, "s"}}) {
    if (ms != 0 && ms % u.size == 0) return std::to_string(ms / u.size) + u.suffix;
  }
  return std::to_string(ms) + "ms";
}

}  // namespace mxp
