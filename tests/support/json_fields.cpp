// json_fields: one member of a JSON answer, for tests.
#include "support/json_fields.hpp"

#include <simdjson.h>

namespace mxp::test {

std::string json_string(const std::string& body, const char* key) {
  simdjson::dom::parser p;
  std::string_view v;
  if (p.parse(body).get_object()[key].get_string().get(v) != simdjson::SUCCESS) return {};
  return std::string{v};
}

std::int64_t json_int(const std::string& body, const char* key) {
  simdjson::dom::parser p;
  std::int64_t v = -1;
  if (p.parse(body).get_object()[key].get_int64().get(v) != simdjson::SUCCESS) return -1;
  return v;
}

}  // namespace mxp::test
