// simple_request: the hot path's request-line and header reader.
#include "api/simple_request.hpp"

#include <array>
#include <cstdint>
#include <cstring>

#include "core/byte_scan.hpp"

namespace mxp::api {

namespace {

// Character classes, one table lookup per byte.
enum : std::uint8_t {
  target_char = 1,  // visible ASCII (Beast also takes bytes >= 0x80: those go the general way)
  token_char = 2,   // tchar of a field name (RFC 9110)
  value_char = 4,   // field-vchar, SP and HTAB (obs-text goes the general way)
};

constexpr std::array<std::uint8_t, 256> make_classes() {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0x21; c <= 0x7e; ++c) t[c] |= target_char | value_char;
  t[' '] |= value_char;
  t['\t'] |= value_char;
  for (int c = '0'; c <= '9'; ++c) t[c] |= token_char;
  for (int c = 'a'; c <= 'z'; ++c) t[c] |= token_char;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] |= token_char;
  for (char c : std::string_view{"!#$%&'*+-.^_`|~"}) t[static_cast<unsigned char>(c)] |= token_char;
  return t;
}
constexpr auto classes = make_classes();

bool is(char c, std::uint8_t cls) noexcept {
  return (classes[static_cast<unsigned char>(c)] & cls) != 0;
}

// ASCII case-insensitive equality with a lower-case literal.
bool name_is(std::string_view name, std::string_view lower) noexcept {
  if (name.size() != lower.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i)
    if ((name[i] | 0x20) != lower[i]) return false;
  return true;
}

std::string_view trim(std::string_view v) noexcept {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

}  // namespace

simple_parse parse_simple_request(std::string_view data, std::size_t max_header_bytes,
                                  simple_request& out) noexcept {
  // What is here is judged as far as it goes; only a simple request cut short is incomplete.
  const auto more = [&] {
    return data.size() < max_header_bytes ? simple_parse::incomplete : simple_parse::not_simple;
  };
  const char* p = data.data();
  const char* const end = p + data.size();
  constexpr std::string_view get = "GET ";
  if (data.size() < get.size()) return get.starts_with(data) ? more() : simple_parse::not_simple;
  if (!data.starts_with(get)) return simple_parse::not_simple;
  p += get.size();
  const char* const target = p;
  p = core::skip_printable(p, end, 0x21);
  while (p < end && is(*p, target_char)) ++p;
  if (p == end) return more();
  if (*p != ' ' || p == target || *target != '/') return simple_parse::not_simple;
  const std::string_view target_view{target, static_cast<std::size_t>(p - target)};
  ++p;
  constexpr std::string_view version = "HTTP/1.1\r\n";
  const auto left = static_cast<std::size_t>(end - p);
  if (left < version.size())
    return version.starts_with(std::string_view{p, left}) ? more() : simple_parse::not_simple;
  if (std::memcmp(p, version.data(), version.size()) != 0) return simple_parse::not_simple;
  p += version.size();
  // Fields: name ":" OWS value OWS CRLF, until an empty line.
  bool keep_alive_seen = false;
  for (;;) {
    if (p == end) return more();
    if (*p == '\r') {
      if (p + 1 == end) return more();
      if (p[1] != '\n') return simple_parse::not_simple;
      p += 2;
      break;
    }
    const char* const name = p;
    while (p < end && is(*p, token_char)) ++p;
    if (p == end) return more();
    if (*p != ':' || p == name) return simple_parse::not_simple;
    const std::string_view name_view{name, static_cast<std::size_t>(p - name)};
    const char* const value = ++p;
    p = core::skip_printable(p, end, 0x20);
    while (p < end && is(*p, value_char)) ++p;
    if (p == end) return more();
    if (*p != '\r') return simple_parse::not_simple;
    if (p + 1 == end) return more();
    if (p[1] != '\n') return simple_parse::not_simple;
    const std::string_view value_view{value, static_cast<std::size_t>(p - value)};
    p += 2;
    // Fields that change how the request is read or answered: the general parser's business,
    // except a single `Connection: keep-alive`, which says what HTTP/1.1 means anyway.
    switch (name_view.size()) {
      case 7:  // upgrade
        if (name_is(name_view, "upgrade")) return simple_parse::not_simple;
        break;
      case 10:  // connection
        if (name_is(name_view, "connection")) {
          if (keep_alive_seen || !name_is(trim(value_view), "keep-alive"))
            return simple_parse::not_simple;
          keep_alive_seen = true;
        }
        break;
      case 14:  // content-length
        if (name_is(name_view, "content-length")) return simple_parse::not_simple;
        break;
      case 17:  // transfer-encoding
        if (name_is(name_view, "transfer-encoding")) return simple_parse::not_simple;
        break;
      default:
        break;
    }
  }
  const auto size = static_cast<std::size_t>(p - data.data());
  if (size >= max_header_bytes) return simple_parse::not_simple;
  out.target = target_view;
  out.size = size;
  return simple_parse::complete;
}

}  // namespace mxp::api
