// Matrix user ID grammar (spec: Appendices, "User Identifiers"; historical localparts allowed).
#include "matrix/user_id.hpp"

#include <charconv>

namespace mxp::matrix {
namespace {

constexpr std::size_t max_user_id_bytes = 255;

bool is_dns_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.';
}

bool is_valid_port(std::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  return ec == std::errc{} && end == p.data() + p.size() && value >= 1 && value <= 65535;
}

bool is_valid_host(std::string_view host) {
  if (host.empty()) return false;
  if (host.front() == '[') {  // IPv6 literal: hex digits, ':' and '.' inside brackets
    if (host.size() < 4 || host.back() != ']') return false;
    for (char c : host.substr(1, host.size() - 2)) {
      const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                      c == ':' || c == '.';
      if (!ok) return false;
    }
    return true;
  }
  if (host.size() > 253 || host.front() == '.' || host.front() == '-') return false;
  for (char c : host)
    if (!is_dns_char(c)) return false;
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool is_valid_server_name(std::string_view server_name) {
  std::string_view host = server_name;
  if (!server_name.empty() && server_name.front() == '[') {
    const auto close = server_name.find(']');
    if (close == std::string_view::npos) return false;
    host = server_name.substr(0, close + 1);
    const auto rest = server_name.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !is_valid_port(rest.substr(1)))) return false;
  } else if (const auto colon = server_name.find(':'); colon != std::string_view::npos) {
    host = server_name.substr(0, colon);
    if (!is_valid_port(server_name.substr(colon + 1))) return false;
  }
  return is_valid_host(host);
}

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
