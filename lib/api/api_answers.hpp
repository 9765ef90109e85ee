// api_answers: the JSON bodies of the socket API's answers: errors (the one place where
// pool errors become API answers), tokens, /v1/status and /v1/sessions pages.
#pragma once

#include <string_view>

#include "api/http_api.hpp"

namespace mxp::api {

void write_error(api_response& res, int status, std::string_view errcode, std::string_view message);
void write_pool_error(api_response& res, const sessions::pool_error& e);
void write_token(api_response& res, const sessions::token_view& t);
// /v1/status: version, uptime, sessions by state, and per homeserver its health and what the
// metrics counted there (null metrics: zeros).
void write_status(api_response& res, std::int64_t uptime_ms, const sessions::session_pool& pool,
                  const api_metrics* metrics);
void write_sessions_page(api_response& res, const sessions::session_page& page);

}  // namespace mxp::api
