// JSON writer: escaping (word-at-a-time fast path checked against a byte-wise reference) and
// layout.
#include <gtest/gtest.h>

#include <random>

#include "core/json_writer.hpp"

namespace {

std::string reference_escape(std::string_view s) {
  std::string out = "\"";
  char buf[8];
  for (unsigned char c : s) {
    if (c == '"')
      out += "\\\"";
    else if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\b')
      out += "\\b";
    else if (c == '\f')
      out += "\\f";
    else if (c < 0x20)
      std::snprintf(buf, sizeof buf, "\\u%04x", c), out += buf;
    else
      out += static_cast<char>(c);
  }
  return out + "\"";
}

std::string escaped(std::string_view s) {
  std::string out;
  mxp::append_json_string(out, s);
  return out;
}

}  // namespace

TEST(JsonWriter, EscapesLikeTheReferenceAtEveryPosition) {
  const std::string specials = std::string("\"\\\n\r\t\b\f\x01\x1f", 9) + "\x7f\xc3\xa9";
  for (std::size_t len = 0; len < 40; ++len) {
    for (std::size_t pos = 0; pos < len; ++pos) {
      for (char sp : specials) {
        std::string s(len, 'a');
        s[pos] = sp;
        ASSERT_EQ(escaped(s), reference_escape(s))
            << "len " << len << " pos " << pos << " char " << int(sp);
      }
    }
  }
  std::mt19937 rng(42);
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 64, '\0');
    for (auto& c : s) c = static_cast<char>(rng() % 256);
    ASSERT_EQ(escaped(s), reference_escape(s));
  }
}

TEST(JsonWriter, ObjectsArraysAndNulls) {
  std::string out;
  mxp::json_writer w{out};
  w.begin_object().member("a", "x\"y").member("n", 5).member("b", true);
  w.key("none").null();
  w.member("opt", std::optional<std::int64_t>{})
      .key("list")
      .begin_array()
      .value("p")
      .value(1)
      .end_array();
  w.end_object();
  EXPECT_EQ(out, R"({"a":"x\"y","n":5,"b":true,"none":null,"opt":null,"list":["p",1]})");
}
