// mxpuppet's own error codes and their error_category; every failure the daemon
// reports to a bridge maps onto one of these plus a diagnostic string.
#pragma once

#include <boost/system/error_code.hpp>
#include <string_view>

namespace mxp {

// The API status of the upstream_* codes also depends on whether an HTTP answer came (an
// http_status beside the code): one rule, in api/http_api.cpp (write_pool_error).
enum class errc {
  ok = 0,
  invalid_user_id,        // malformed user ID (M_INVALID_PARAM)
  invalid_request,        // malformed API request (M_BAD_JSON / M_INVALID_PARAM)
  unknown_homeserver,     // no homeserver configured for that server name (M_NOT_FOUND)
  forbidden,              // client may not have this user (M_FORBIDDEN)
  not_found,              // no such route / session (M_NOT_FOUND)
  upstream_refused,       // homeserver answered with an error status (MXP_UPSTREAM)
  upstream_rate_limited,  // homeserver said M_LIMIT_EXCEEDED (M_LIMIT_EXCEEDED)
  upstream_unavailable,   // no usable answer (MXP_UNAVAILABLE), or a proxy's 5xx (MXP_UPSTREAM)
  upstream_bad_response,  // homeserver answered something we cannot use (MXP_UPSTREAM)
  upstream_timeout,       // homeserver did not answer in time (MXP_TIMEOUT)
  deadline_exceeded,      // the API request's own deadline passed (MXP_TIMEOUT)
  shutting_down,          // daemon is stopping (MXP_UNAVAILABLE)
  discovery_failed,       // .well-known lookup failed (MXP_UNAVAILABLE)
};

const boost::system::error_category& mxp_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), mxp_category()};
}

}  // namespace mxp

namespace boost::system {
template <>
struct is_error_code_enum<mxp::errc> : std::true_type {};
}  // namespace boost::system
