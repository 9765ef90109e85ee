// JSON string escaping. On the hot path (every token answer) strings rarely need
// escaping, so plain runs are found with a table lookup and copied in one append.
#include "core/json_writer.hpp"

#include <array>
#include <cstdint>
#include <cstring>

namespace mxp {
namespace {

constexpr std::array<bool, 256> make_escape_table() {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[static_cast<std::size_t>(c)] = true;
  t['"'] = t['\\'] = true;
  return t;
}
constexpr auto needs_escape = make_escape_table();

// Index of the first byte that needs escaping, 8 bytes at a time (SWAR): a byte
// below 0x20, a '"' or a '\\'. Most strings on the hot path have none.
std::size_t plain_prefix(const unsigned char* p, std::size_t n) {
  constexpr std::uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    const std::uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    const std::uint64_t hits =
        ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
    if (hits & highs) break;  // some byte in this word needs a look
  }
  while (i < n && !needs_escape[p[i]]) ++i;
  return i;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = plain_prefix(p, n);
  out.reserve(out.size() + n + 2);
  out += '"';
  out.append(s.data(), i);
  while (i < n) {
    const auto c = p[i++];
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default: {
        const char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
        out.append(esc, 6);
      }
    }
    const std::size_t run = i;
    i += plain_prefix(p + i, n - i);
    out.append(s.data() + run, i - run);
  }
  out += '"';
}

}  // namespace mxp
