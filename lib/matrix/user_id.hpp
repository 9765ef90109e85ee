// Matrix user IDs (@localpart:server_name): grammar checks and splitting, plus the
// percent-decoding of a path segment that carries one.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/percent_encoding.hpp"
#include "core/server_name.hpp"

namespace mxp::matrix {

struct user_id_parts {
  std::string_view localpart;    // without '@'
  std::string_view server_name;  // everything after the first ':' (may carry a port)
};

// Checks a full user ID against the Matrix grammar: '@', a localpart of printable
// ASCII without ':' (historical IDs allowed), ':', a valid server name; at most
// 255 bytes. The parts point into `user_id`.
std::optional<user_id_parts> parse_user_id(std::string_view user_id);

// Server name grammar: DNS name, IPv4 literal or [IPv6] literal, optional :port. The one
// grammar in core/server_name.hpp, which the config loader uses too.
using ::mxp::is_valid_server_name;

// Decodes %XX escapes; nullopt for a malformed escape. '+' stays '+' (path, not form). The one
// decoder in core/percent_encoding.hpp (Boost.URL).
using ::mxp::percent_decode;

}  // namespace mxp::matrix
