// base64url (RFC 4648 section 5) without padding, as JOSE (RFC 7515) uses it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mxp::credentials {

// Appends the unpadded base64url encoding of `size` bytes at `data` to `out`.
void append_base64url(std::string& out, const void* data, std::size_t size);

inline std::string base64url_encode(std::string_view bytes) {
  std::string out;
  append_base64url(out, bytes.data(), bytes.size());
  return out;
}

// Strict decoding: the unpadded alphabet only, no whitespace, no '=' padding, and
// the unused low bits of the last character must be zero (one spelling per value).
// Returns nullopt for anything else.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace mxp::credentials
