// percent_encode / percent_decode: the one encoder and decoder (Boost.URL underneath).
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "core/percent_encoding.hpp"

namespace {

using mxp::pct_keep;
using mxp::percent_decode;
using mxp::percent_encode;

TEST(PercentEncode, UnreservedKeepsOnlyRfc3986Unreserved) {
  EXPECT_EQ(percent_encode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(percent_encode("@alice:example.org"), "%40alice%3Aexample.org");
  EXPECT_EQ(percent_encode("a b+c/d?e#f%g"), "a%20b%2Bc%2Fd%3Fe%23f%25g");
  EXPECT_EQ(percent_encode(std::string_view{"\0\xFF", 2}), "%00%FF");
  EXPECT_EQ(percent_encode(""), "");
}

TEST(PercentEncode, UserIdSegmentsKeepAtAndColon) {
  EXPECT_EQ(percent_encode("@alice:example.org", pct_keep::unreserved_at_colon),
            "@alice:example.org");
  EXPECT_EQ(percent_encode("@a/b:[::1]:8448", pct_keep::unreserved_at_colon),
            "@a%2Fb:%5B::1%5D:8448");
}

TEST(PercentDecode, DecodesEscapesAndRefusesBrokenOnes) {
  EXPECT_EQ(percent_decode("%40a%3ab"), "@a:b");  // either case of hex digit
  EXPECT_EQ(percent_decode("a+b c"), "a+b c");    // a path, not a form
  EXPECT_EQ(percent_decode("a%00b"), std::string("a\0b", 3));
  for (const char* bad : {"%", "%4", "%zz", "abc%4", "%g0"})
    EXPECT_FALSE(percent_decode(bad)) << bad;
  // What the encoder writes, the decoder reads back.
  const std::string all_bytes = [] {
    std::string s;
    for (int c = 0; c < 256; ++c) s += static_cast<char>(c);
    return s;
  }();
  EXPECT_EQ(percent_decode(percent_encode(all_bytes)), all_bytes);
}

}  // namespace
