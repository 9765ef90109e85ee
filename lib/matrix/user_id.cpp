// Matrix user ID grammar (spec: Appendices, "User Identifiers"; historical localparts allowed).
#include "matrix/user_id.hpp"

namespace mxp::matrix {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<user_id_parts> parse_user_id(std::string_view user_id) {
  if (user_id.size() < 4 || user_id.size() > max_user_id_bytes || user_id.front() != '@')
    return std::nullopt;
  const auto colon = user_id.find(':');
  if (colon == std::string_view::npos || colon == 1) return std::nullopt;
  const auto localpart = user_id.substr(1, colon - 1);
  for (char c : localpart) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) return std::nullopt;  // printable ASCII only, no space
  }
  const auto server_name = user_id.substr(colon + 1);
  if (!is_valid_server_name(server_name)) return std::nullopt;
  return user_id_parts{localpart, server_name};
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;  // '%' needs two hex digits after it
    const int hi = hex_value(text[i + 1]);
    const int lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

}  // namespace mxp::matrix
