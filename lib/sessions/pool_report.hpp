// pool_report: read-only views of the pool for /v1/sessions, /v1/status and the
// metrics gauges (internal to lib/sessions; session_pool's report methods forward here).
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>
#include <vector>

#include "sessions/session_pool.hpp"

namespace mxp::sessions {

struct pool_state;

session_page sessions_page_of(const pool_state& pool, std::string_view after, std::size_t limit,
                              const std::function<bool(std::string_view)>& visible);
std::vector<homeserver_status> homeserver_statuses_of(const pool_state& pool);
pool_stats stats_of(const pool_state& pool);

}  // namespace mxp::sessions
