// The one Matrix server-name grammar, shared by the config loader (homeserver keys) and the
// user-ID parser (the part after the first ':'), so that a name the config accepts is a name
// requests can use, and the other way round.
#pragma once

#include <cstddef>
#include <string_view>

namespace mxp {

// A user ID ("@localpart:server_name") is at most 255 bytes (Matrix spec), so a server name
// longer than this cannot appear in any user ID ("@" + a one-byte localpart + ":").
inline constexpr std::size_t max_user_id_bytes = 255;
inline constexpr std::size_t max_server_name_in_user_id = max_user_id_bytes - 3;

// server_name = hostname [ ":" port ]     (Matrix spec, Appendices, "Server Name")
// hostname    = IPv4address / "[" IPv6address "]" / dns-name
//
// Where the specification is lax, mxpuppetd is stricter, in the same way everywhere:
// * dns-name: the spec allows 1*255 of [A-Za-z0-9-.], which admits "-foo", "a..b" and
//   "example.com.". Here a DNS name follows RFC 1035/1123 host-name rules: dot-separated
//   labels of 1-63 characters [A-Za-z0-9-], no label starts or ends with '-', no empty label
//   (so no leading '.', no "..", no trailing '.'), at most 253 characters. A trailing '.' is
//   refused because server names are compared as strings: "example.com." would be a second
//   name for "example.com".
// * A name whose last label is all digits is not a DNS name (no top-level domain is numeric,
//   RFC 3696 §2; resolvers read "1.2.3" or "10.0.0.256" as numbers): it must be an IPv4
//   address, else it is refused.
// * IPv4address: exactly four decimal octets 0-255 of 1-3 digits, without leading zeros
//   ("010" is octal to inet_aton); what inet_pton(AF_INET) accepts.
// * IPv6address: RFC 4291 §2.2 text form: eight groups of 1-4 hex digits, one "::" standing
//   for one or more zero groups, optionally ending in an IPv4 dotted quad in place of the last
//   two groups; no zone ID ('%' is not a server-name character). What inet_pton(AF_INET6)
//   accepts.
// * port: 1-65535 in decimal, 1-5 digits, no leading zero (one spelling per port, since
//   "host:08448" and "host:8448" would otherwise be two server names).
// * The whole server name is at most 255 bytes.
bool is_valid_server_name(std::string_view server_name);

// The parts on their own (used by is_valid_server_name; exposed for tests).
bool is_valid_dns_name(std::string_view name);
bool is_valid_ipv4_address(std::string_view text);
bool is_valid_ipv6_address(std::string_view text);  // without the brackets

}  // namespace mxp
