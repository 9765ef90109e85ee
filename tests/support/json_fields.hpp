// json_fields: reading one member of a JSON answer in tests (simdjson), e.g. the
// access_token of a token answer. Missing or mistyped members give "" / -1.
#pragma once

#include <cstdint>
#include <string>

namespace mxp::test {

std::string json_string(const std::string& body, const char* key);
std::int64_t json_int(const std::string& body, const char* key);
inline std::string token_of(const std::string& body) {
  return json_string(body, "access_token");
}

}  // namespace mxp::test
