// percent_encoding: the one percent-encoder and the one percent-decoder of the tree (RFC 3986,
// on Boost.URL), for URL path segments that carry a Matrix user ID or any other text.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mxp {

// Which bytes stay literal; every other byte becomes %XX (upper-case hex digits).
enum class pct_keep {
  // RFC 3986 unreserved: A-Za-z0-9 - . _ ~. A segment sent to a homeserver
  // ("@a:b" -> "%40a%3Ab").
  unreserved,
  // unreserved plus the '@' and ':' every user ID holds (both legal in a path segment,
  // RFC 3986 pchar), so socket-API paths stay readable: "@a/b:x.org" -> "@a%2Fb:x.org".
  unreserved_at_colon,
};

std::string percent_encode(std::string_view text, pct_keep keep = pct_keep::unreserved);

// Decodes %XX escapes (either case of hex digit); nullopt when a '%' is not followed by two hex
// digits. '+' stays '+' (a path, not a form); %00 decodes to a NUL byte.
std::optional<std::string> percent_decode(std::string_view text);

}  // namespace mxp
