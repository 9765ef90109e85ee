// homeserver_client: the Matrix client-server calls mxpuppetd makes (login, logout,
// whoami), behind an interface so the session pool can be tested with a fake.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/secret.hpp"

namespace mxp::config {
struct homeserver_config;
}

namespace mxp::matrix {

// Why a homeserver call failed. `code` is an mxp::errc; the rest is what the
// homeserver said, kept for logs (its text never goes back to API clients).
struct upstream_error {
  boost::system::error_code code;
  int http_status = 0;                         // 0 when no HTTP answer arrived
  std::string errcode;                         // Matrix errcode, e.g. "M_FORBIDDEN"
  std::string error;                           // the homeserver's "error" text
  std::optional<std::int64_t> retry_after_ms;  // for M_LIMIT_EXCEEDED; 0..max_retry_after_ms
  std::string diagnostic;                      // what mxpuppetd was doing; no secrets
  // Without an answer (http_status 0): whether the request may have reached the homeserver
  // (false: it never left, e.g. connection refused). A login that may have been processed may
  // have created a live token nobody holds.
  bool request_sent = true;
  // A refusal the login method knows may be transient (rest_backend's 403: a wrong nonce, or
  // a homeserver that cannot reach the backend): retried with backoff and counted towards the
  // circuit like an unreachable homeserver, instead of reported at once.
  bool retry_with_backoff = false;
};

// What boost::system::result<T, upstream_error>::value() throws: system_error(code, diagnostic).
[[noreturn]] void throw_exception_from_error(const upstream_error& e,
                                             const boost::source_location& location);

// A homeserver call's value, or why it failed (upstream_result<void>: nothing but the outcome).
template <typename T>
using upstream_result = boost::system::result<T, upstream_error>;

struct login_grant {
  secret_string access_token;
  std::string user_id;
  std::optional<std::string> device_id;       // none for admin-minted tokens
  std::optional<std::int64_t> expires_in_ms;  // none: does not expire; 1..max_expires_in_ms
  secret_string refresh_token;                // empty: the homeserver gave none
};

// What POST /refresh gives: a new access token (same device) and usually a new refresh token.
struct refresh_grant {
  secret_string access_token;
  secret_string refresh_token;                // empty: keep using the old one
  std::optional<std::int64_t> expires_in_ms;  // none: does not expire; 1..max_expires_in_ms
};

struct logout_outcome {
  bool token_was_live = true;  // false: the homeserver did not know the token (already dead)
};

class homeserver_client {
 public:
  virtual ~homeserver_client() = default;

  virtual const std::string& server_name() const = 0;
  virtual std::string_view method_name() const = 0;  // "shared_secret", ...
  virtual std::string login_type() const = 0;       // e.g. "com.devture.shared_secret_auth", "auto"
  virtual const std::string& base_url() const = 0;  // empty until discovered

  virtual boost::asio::awaitable<upstream_result<login_grant>> login(std::string user_id) = 0;
  // Exchanges a refresh token (sent once, never replayed: a lost answer may have rotated it).
  // Tries /v3/refresh and falls back to /v1/refresh for good when the homeserver does not
  // know v3 (older Synapse: 400 M_UNRECOGNIZED).
  virtual boost::asio::awaitable<upstream_result<refresh_grant>> refresh(
      secret_string refresh_token) = 0;
  // Logging out a token deletes its device (Synapse) and so every token of that device.
  virtual boost::asio::awaitable<upstream_result<logout_outcome>> logout(secret_string token) = 0;
  // Logs out a token that a renewal replaced while it was still valid. The default is logout();
  // a method whose tokens are independent sessions (mas) may keep it alive for a grace period so
  // that a bridge that fetched it a moment ago is not cut off, and confirm at once.
  virtual boost::asio::awaitable<upstream_result<logout_outcome>> retire(secret_string token) {
    return logout(std::move(token));
  }
  // Returns the user ID the token belongs to.
  virtual boost::asio::awaitable<upstream_result<std::string>> whoami(secret_string token) = 0;
  // Drops pooled connections (shutdown, reload).
  virtual void close_idle_connections() = 0;
  // Ends every request in flight now (shutdown): each fails at once with errc::shutting_down,
  // its connection closed. Requests made afterwards go out as usual.
  virtual void cancel_requests() = 0;
  // An opaque handle the login method keeps beside a token it issued (mas: the personal
  // session's id), persisted with the token so that a later run can still end it; empty: none.
  virtual std::string token_handle(const secret_string& /*token*/) const { return {}; }
  // Gives back a persisted token's handle (start-up), before the token is used or logged out.
  virtual void adopt_token(const secret_string& /*token*/, std::string /*handle*/) {}
  // What the login method last found wrong in its configuration (mas: MAS answered
  // invalid_client or invalid_scope), shown in /v1/status; empty: nothing, or fixed since.
  virtual std::string configuration_error() const { return {}; }
  // Awaits the method's own background work (mas: the revocations of retired sessions, whose
  // grace periods end now); what still runs at `deadline` is cancelled and awaited (shutdown).
  virtual boost::asio::awaitable<void> drain(std::chrono::steady_clock::time_point /*deadline*/) {
    co_return;
  }
};

class rest_backends;  // matrix/rest_backend.hpp

// The real client: Beast over HTTP(S), .well-known discovery when `url` is empty.
// Throws std::runtime_error when the config cannot be turned into a client (bad CA file), and
// for method rest_backend without `backends` (std::system_error when it cannot listen).
std::unique_ptr<homeserver_client> make_homeserver_client(boost::asio::any_io_executor executor,
                                                          const config::homeserver_config& config,
                                                          rest_backends* backends = nullptr);

// The longest token lifetime taken from a homeserver's expires_in_ms: 365 days. The pool adds
// it to the wall clock, which a value near INT64_MAX would overflow; a token said to live
// longer is refreshed or replaced after a year, which costs one request.
inline constexpr std::int64_t max_expires_in_ms = 365LL * 24 * 3600 * 1000;

// The longest wait a homeserver's retry_after_ms (or Retry-After header) may impose: one hour.
// A homeserver asks for seconds to minutes (Synapse's rc_login); a larger value is a bug or
// garbage, and pausing a homeserver longer than this would lock its users out past any caller's
// deadline, while retrying an hour later costs one request. Negative values become 0.
inline constexpr std::int64_t max_retry_after_ms = 3'600'000;

// Maps an HTTP answer that was not a success onto an upstream_error (exposed for tests).
// retry_after_ms (body, else the Retry-After header in seconds) is clamped to
// 0..max_retry_after_ms.
upstream_error classify_error_response(int status, std::string_view body,
                                       const std::optional<std::string>& retry_after_header,
                                       std::string diagnostic);

}  // namespace mxp::matrix
