// ctl_json: simdjson DOM accessors; text_of makes every value printable (ctl_format).
#include "client/ctl_json.hpp"

#include <cmath>
#include <limits>

#include "client/ctl_format.hpp"

namespace mxp::client {

namespace dom = simdjson::dom;

std::optional<std::int64_t> as_int(dom::element e) {
  switch (e.type()) {
    case dom::element_type::INT64:
      return std::int64_t{e.get_int64().value_unsafe()};
    case dom::element_type::UINT64: {
      const std::uint64_t u = e.get_uint64().value_unsafe();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return std::nullopt;
      return static_cast<std::int64_t>(u);
    }
    case dom::element_type::DOUBLE: {
      const double d = e.get_double().value_unsafe();
      if (!std::isfinite(d) || std::fabs(d) > 9.0e18) return std::nullopt;
      return static_cast<std::int64_t>(d);
    }
    default:
      return std::nullopt;
  }
}

std::optional<std::string_view> as_string(dom::element e) {
  if (e.type() != dom::element_type::STRING) return std::nullopt;
  return e.get_string().value_unsafe();
}

std::string text_of(dom::element e) {
  switch (e.type()) {
    case dom::element_type::STRING:
      return printable(e.get_string().value_unsafe());
    case dom::element_type::NULL_VALUE:
      return "-";
    case dom::element_type::BOOL:
      return e.get_bool().value_unsafe() ? "true" : "false";
    default:
      return printable(simdjson::minify(e));
  }
}

std::optional<dom::element> member(dom::object o, std::string_view key) {
  dom::element e;
  if (o.at_key(key).get(e) != simdjson::SUCCESS) return std::nullopt;
  return e;
}

}  // namespace mxp::client
