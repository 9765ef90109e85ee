// Parsing and printing of operator-written durations: "250ms", "30s", "5m", "24h", "7d".
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace mxp {

// Accepts a non-negative integer followed by one of ms, s, m, h, d (e.g. "90s",
// "7d"); combined forms like "1h30m" are accepted too. Returns nullopt otherwise.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// Shortest exact spelling: 90000ms -> "90s", 3600000ms -> "1h".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace mxp
