// api_routes: route matching and query parameters of the socket API.
#include "api/api_routes.hpp"

#include <charconv>

#include "core/server_name.hpp"

namespace mxp::api {

endpoint to_endpoint(route_kind k) noexcept {
  switch (k) {
    case route_kind::token:
      return endpoint::token;
    case route_kind::invalidate:
      return endpoint::invalidate;
    case route_kind::session:
      return endpoint::session;
    case route_kind::sessions:
      return endpoint::sessions;
    case route_kind::status:
      return endpoint::status;
    case route_kind::healthz:
      return endpoint::healthz;
    case route_kind::metrics:
      return endpoint::metrics;
    case route_kind::gateway_bridges:
      return endpoint::gateway_bridges;
    case route_kind::unknown:
      break;
  }
  return endpoint::unknown;
}

route match(std::string_view target) {
  route r;
  const auto q = target.find('?');
  const auto path = target.substr(0, q);
  if (q != std::string_view::npos) r.query = target.substr(q + 1);
  if (path == "/healthz") return {route_kind::healthz, {}, r.query, "GET"};
  if (path == "/v1/status") return {route_kind::status, {}, r.query, "GET"};
  if (path == "/v1/sessions") return {route_kind::sessions, {}, r.query, "GET"};
  if (path == "/metrics") return {route_kind::metrics, {}, r.query, "GET"};
  if (path == "/v1/gateway/bridges") return {route_kind::gateway_bridges, {}, r.query, "GET"};
  constexpr std::string_view users = "/v1/users/";
  if (!path.starts_with(users)) return r;
  const auto rest = path.substr(users.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return r;
  r.user_segment = rest.substr(0, slash);
  const auto action = rest.substr(slash + 1);
  if (action == "token")
    r.kind = route_kind::token, r.allowed_method = "GET";
  else if (action == "invalidate")
    r.kind = route_kind::invalidate, r.allowed_method = "POST";
  else if (action == "session")
    r.kind = route_kind::session, r.allowed_method = "DELETE";
  return r;
}

// min_valid_ms=N from the query; -1 when malformed. Other parameters are ignored.
std::int64_t min_valid_from_query(std::string_view query) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    constexpr std::string_view key = "min_valid_ms=";
    if (!param.starts_with(key)) continue;
    const auto value = param.substr(key.size());
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    constexpr std::int64_t max_ms = 366LL * 24 * 3600 * 1000;
    if (ec != std::errc{} || end != value.data() + value.size() || n < 0 || n > max_ms) return -1;
    return n;
  }
  return 0;
}

// The first `name=value` of a query string (value still percent-encoded); nullopt when absent.
std::optional<std::string_view> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (param.size() > name.size() && param.starts_with(name) && param[name.size()] == '=')
      return param.substr(name.size() + 1);
  }
  return std::nullopt;
}

std::string sessions_cursor(std::string_view user_id) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(user_id.size() * 2);
  for (const unsigned char c : user_id) {
    out += digits[c >> 4];
    out += digits[c & 0xf];
  }
  return out;
}

std::optional<std::string> user_id_from_cursor(std::string_view cursor) {
  const auto nibble = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (cursor.empty() || cursor.size() % 2 != 0 || cursor.size() > 2 * max_user_id_bytes)
    return std::nullopt;
  std::string out;
  out.reserve(cursor.size() / 2);
  for (std::size_t i = 0; i < cursor.size(); i += 2) {
    const int hi = nibble(cursor[i]), lo = nibble(cursor[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

// limit=N (1-1000, default 100); nullopt when malformed or out of range.
std::optional<std::size_t> sessions_limit(std::optional<std::string_view> value) {
  if (!value) return default_sessions_limit;
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), n);
  if (value->empty() || ec != std::errc{} || end != value->data() + value->size() || n < 1 ||
      n > max_sessions_limit)
    return std::nullopt;
  return n;
}

}  // namespace mxp::api
