// The grammar of config values that are more than a YAML scalar: numbers, ports, device IDs,
// file modes, homeserver URLs (through Boost.URL) and the TCP listen address. Pure functions:
// each returns the value, or nullopt and what is wrong (echoed input included) in `why`.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mxp::config {

// Digits only (no sign, no spaces); nullopt on anything else or overflow.
std::optional<std::uint64_t> parse_decimal(std::string_view s);
// 1-65535, at most five digits.
bool is_valid_port(std::string_view p);
// 1 to 64 characters from A-Z a-z 0-9 _ . -
bool is_valid_device_id(std::string_view id);

// "0660", 0660 (YAML 1.1 octal, read as written), "660" and "0o660" all mean rw-rw----.
std::optional<unsigned> parse_file_mode(std::string_view text, std::string& why);

// A homeserver base URL as the HTTP client will parse it: http or https, a host, an optional
// port, a path; no user information, query or fragment. Returns it normalised (lower-case
// scheme, no trailing '/').
std::optional<std::string> normalise_url(std::string_view url, std::string& why);

// `listen.tcp`: "127.0.0.1:PORT" (any address in 127.0.0.0/8) or "[::1]:PORT".
struct loopback_endpoint {
  std::string address;  // numeric, without brackets
  std::uint16_t port = 0;
};
std::optional<loopback_endpoint> parse_loopback_endpoint(std::string_view text, std::string& why);

// An API key's SHA-256 as 64 hex digits (as `sha256sum` prints it).
std::optional<std::array<unsigned char, 32>> parse_sha256_hex(std::string_view text);

}  // namespace mxp::config
