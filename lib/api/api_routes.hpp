// api_routes: what a socket API request asks for, read off its target without
// copying: the route, the user segment (still percent-encoded) and the query's
// parameters, and the opaque /v1/sessions paging cursor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "api/api_metrics.hpp"

namespace mxp::api {

enum class route_kind {
  token,
  invalidate,
  session,
  sessions,
  status,
  healthz,
  metrics,
  gateway_bridges,
  unknown
};

endpoint to_endpoint(route_kind k) noexcept;

struct route {
  route_kind kind = route_kind::unknown;
  std::string_view user_segment;  // still percent-encoded
  std::string_view query;
  std::string_view allowed_method;
};

route match(std::string_view target);

// min_valid_ms=N from the query; -1 when malformed. Other parameters are ignored.
std::int64_t min_valid_from_query(std::string_view query);
// The first `name=value` of a query string (value still percent-encoded); nullopt when absent.
std::optional<std::string_view> query_param(std::string_view query, std::string_view name);

// /v1/sessions paging. `next_batch` is opaque to clients: today the hex spelling of the last
// user ID of the page (URL-safe whatever bytes a historical localpart holds); the next page
// starts after it, so paging is stable while sessions come and go.
inline constexpr std::size_t default_sessions_limit = 100;
inline constexpr std::size_t max_sessions_limit = 1000;
std::string sessions_cursor(std::string_view user_id);
std::optional<std::string> user_id_from_cursor(std::string_view cursor);
// limit=N (1-1000, default 100); nullopt when malformed or out of range.
std::optional<std::size_t> sessions_limit(std::optional<std::string_view> value);

}  // namespace mxp::api
