// simple_request: a tiny parser for the requests the hot path answers: `GET <target> HTTP/1.1`
// with header fields that change nothing (no body, no Connection other than keep-alive, no
// Upgrade). It accepts a strict subset of what Beast's parser accepts and reads it the same way;
// anything else is `not_simple` and goes to request_parser, which gives the full grammar, the
// limits and the errors. No allocation, no copy: the target views the caller's bytes.
#pragma once

#include <cstddef>
#include <string_view>

namespace mxp::api {

enum class simple_parse : unsigned char {
  complete,    // one whole request at the front of the bytes: `target` and `size` are set
  incomplete,  // a simple request may still be arriving: read more (under max_header_bytes)
  not_simple,  // take the general parser (another method, a body, a field that matters, bad bytes)
};

struct simple_request {
  std::string_view target;  // still percent-encoded, as sent
  std::size_t size = 0;     // bytes of the request line and header, the final CRLF included
};

// Reads the request at the front of `data`. A header longer than `max_header_bytes` (request line
// included) is never simple, so that request_parser answers it 431.
simple_parse parse_simple_request(std::string_view data, std::size_t max_header_bytes,
                                  simple_request& out) noexcept;

}  // namespace mxp::api
