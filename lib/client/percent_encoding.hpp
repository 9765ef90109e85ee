// percent_encode_path_segment: a Matrix user ID (or any text) as one URL path segment of a
// socket-API request. The encoder itself is core/percent_encoding.hpp; this name stays for
// mxpuppetctl's callers (end-to-end tests, the soak bench).
#pragma once

#include <string>
#include <string_view>

#include "core/percent_encoding.hpp"

namespace mxp::client {

// Encodes every byte except A-Za-z0-9 - . _ ~ and the '@' and ':' that every user ID contains.
// "@a/b:x.org" -> "@a%2Fb:x.org". Hex digits are upper case.
inline std::string percent_encode_path_segment(std::string_view text) {
  return percent_encode(text, pct_keep::unreserved_at_colon);
}

}  // namespace mxp::client
