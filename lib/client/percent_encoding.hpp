// percent_encode_path_segment: puts a Matrix user ID (or any text) into one URL
// path segment of a socket-API request, the way the Matrix C-S API does.
#pragma once

#include <string>
#include <string_view>

namespace mxp::client {

// Encodes every byte except the unreserved characters A-Za-z0-9 - . _ ~ and the
// '@' and ':' that every user ID contains (both are legal in a path segment,
// RFC 3986 pchar). "@a/b:x.org" -> "@a%2Fb:x.org". Hex digits are upper case.
std::string percent_encode_path_segment(std::string_view text);

}  // namespace mxp::client
