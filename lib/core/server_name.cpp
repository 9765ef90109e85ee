// The Matrix server-name grammar (see server_name.hpp for the rules and why they are strict).
#include "core/server_name.hpp"

#include <cstddef>

namespace mxp {
namespace {

constexpr std::size_t max_server_name_bytes = 255;
constexpr std::size_t max_dns_name_bytes = 253;
constexpr std::size_t max_label_bytes = 63;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool all_digits(std::string_view s) {
  for (char c : s)
    if (!is_digit(c)) return false;
  return !s.empty();
}

// 1-5 digits, no leading zero, 1..65535.
bool is_valid_port(std::string_view p) {
  if (p.empty() || p.size() > 5 || p.front() == '0' || !all_digits(p)) return false;
  unsigned value = 0;
  for (char c : p) value = value * 10 + static_cast<unsigned>(c - '0');
  return value <= 65535;
}

// One decimal octet: 1-3 digits, 0-255, no leading zero.
bool is_octet(std::string_view s) {
  if (s.empty() || s.size() > 3 || !all_digits(s)) return false;
  if (s.size() > 1 && s.front() == '0') return false;
  unsigned value = 0;
  for (char c : s) value = value * 10 + static_cast<unsigned>(c - '0');
  return value <= 255;
}

}  // namespace

bool is_valid_ipv4_address(std::string_view text) {
  for (int part = 0; part < 4; ++part) {
    const auto dot = text.find('.');
    if (part < 3) {
      if (dot == std::string_view::npos || !is_octet(text.substr(0, dot))) return false;
      text.remove_prefix(dot + 1);
    } else if (dot != std::string_view::npos || !is_octet(text)) {
      return false;
    }
  }
  return true;
}

bool is_valid_ipv6_address(std::string_view text) {
  // Split on ':'; an empty piece marks "::" (or its halves at either end). Count the 16-bit
  // groups written; an IPv4 tail counts for two.
  if (text.size() < 2 || text.size() > 45) return false;
  const auto gap = text.find("::");
  if (gap != std::string_view::npos && text.find("::", gap + 1) != std::string_view::npos)
    return false;  // at most one "::" (":::" is caught here too)
  // A single ':' at either end is not a "::".
  if (text.front() == ':' && gap != 0) return false;
  if (text.back() == ':' && gap != text.size() - 2) return false;

  int groups = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const auto piece = rest.substr(0, colon);
    const bool last = colon == std::string_view::npos;
    if (piece.empty()) {
      // Only the two halves of the one "::" produce empty pieces.
    } else if (last && piece.find('.') != std::string_view::npos) {
      if (!is_valid_ipv4_address(piece)) return false;
      groups += 2;
    } else {
      if (piece.size() > 4) return false;
      for (char c : piece)
        if (!is_hex(c)) return false;
      ++groups;
    }
    if (last) break;
    rest.remove_prefix(colon + 1);
  }
  if (gap == std::string_view::npos) return groups == 8;
  return groups <= 7;  // "::" stands for at least one zero group
}

bool is_valid_dns_name(std::string_view name) {
  if (name.empty() || name.size() > max_dns_name_bytes) return false;
  std::string_view last_label;
  std::string_view rest = name;
  while (true) {
    const auto dot = rest.find('.');
    const auto label = rest.substr(0, dot);
    if (label.empty() || label.size() > max_label_bytes) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!is_alpha(c) && !is_digit(c) && c != '-') return false;
    last_label = label;
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  // "1.2.3", "10.0.0.256", "example.123": numbers, not names.
  return !all_digits(last_label);
}

bool is_valid_server_name(std::string_view server_name) {
  if (server_name.empty() || server_name.size() > max_server_name_bytes) return false;
  std::string_view host = server_name;
  if (server_name.front() == '[') {
    const auto close = server_name.find(']');
    if (close == std::string_view::npos) return false;
    if (!is_valid_ipv6_address(server_name.substr(1, close - 1))) return false;
    const auto rest = server_name.substr(close + 1);
    if (rest.empty()) return true;
    return rest.front() == ':' && is_valid_port(rest.substr(1));
  }
  if (const auto colon = server_name.find(':'); colon != std::string_view::npos) {
    if (!is_valid_port(server_name.substr(colon + 1))) return false;
    host = server_name.substr(0, colon);
  }
  return is_valid_ipv4_address(host) || is_valid_dns_name(host);
}

}  // namespace mxp
