// parse_duration / format_duration: the spellings operators write in the config.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "core/duration.hpp"

namespace {

using namespace std::chrono_literals;
using mxp::format_duration;
using mxp::parse_duration;
using std::chrono::milliseconds;

TEST(ParseDuration, AcceptsEachUnit) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds{250});
  EXPECT_EQ(parse_duration("30s"), milliseconds{30s});
  EXPECT_EQ(parse_duration("5m"), milliseconds{5min});
  EXPECT_EQ(parse_duration("24h"), milliseconds{24h});
  EXPECT_EQ(parse_duration("7d"), milliseconds{std::chrono::hours{24 * 7}});
  EXPECT_EQ(parse_duration("0s"), milliseconds{0});
}

TEST(ParseDuration, AcceptsCombinedForms) {
  EXPECT_EQ(parse_duration("1h30m"), milliseconds{90min});
  EXPECT_EQ(parse_duration("1m30s500ms"), milliseconds{90'500});
  EXPECT_EQ(parse_duration("1d12h"), milliseconds{36h});
}

TEST(ParseDuration, RejectsMalformedText) {
  for (const char* bad : {"", "10", "-5s", "5x", "s", "ms", "5 s", " 5s", "5s ", "+5s", "1.5s",
                          "5S", "1h30", "5sec", "0x10s"}) {
    EXPECT_EQ(parse_duration(bad), std::nullopt) << '"' << bad << '"';
  }
}

TEST(ParseDuration, RejectsOverflow) {
  EXPECT_EQ(parse_duration("99999999999999999999999s"), std::nullopt);  // beyond uint64
  EXPECT_EQ(parse_duration("18446744073709551615d"), std::nullopt);     // amount * unit overflows
  EXPECT_EQ(parse_duration("9223372036854775807ms"), std::nullopt);     // beyond the cap
  // Each part fits, the sum does not.
  const auto max_days = std::numeric_limits<std::int64_t>::max() / 4 / 86'400'000;
  ASSERT_TRUE(parse_duration(std::to_string(max_days) + "d"));
  EXPECT_EQ(parse_duration(std::to_string(max_days) + "d" + std::to_string(max_days) + "d"),
            std::nullopt);
}

TEST(FormatDuration, ShortestExactSpelling) {
  EXPECT_EQ(format_duration(milliseconds{250}), "250ms");
  EXPECT_EQ(format_duration(30s), "30s");
  EXPECT_EQ(format_duration(90s), "90s");
  EXPECT_EQ(format_duration(5min), "5m");
  EXPECT_EQ(format_duration(1h), "1h");
  EXPECT_EQ(format_duration(24h), "1d");
  EXPECT_EQ(format_duration(std::chrono::hours{24 * 7}), "7d");
  EXPECT_EQ(format_duration(milliseconds{1500}), "1500ms");
  EXPECT_EQ(format_duration(milliseconds{0}), "0ms");
}

TEST(FormatDuration, RoundTripsThroughParse) {
  for (const milliseconds d :
       {milliseconds{0}, milliseconds{1}, milliseconds{250}, milliseconds{1500}, milliseconds{30s},
        milliseconds{90s}, milliseconds{90min}, milliseconds{36h},
        milliseconds{std::chrono::hours{24 * 3650}}}) {
    const auto text = format_duration(d);
    EXPECT_EQ(parse_duration(text), d) << text;
  }
  for (const char* text : {"250ms", "30s", "5m", "36h", "7d", "1500ms"}) {
    const auto d = parse_duration(text);
    ASSERT_TRUE(d) << text;
    EXPECT_EQ(format_duration(*d), text);
  }
}

}  // namespace
