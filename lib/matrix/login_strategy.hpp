// login_strategy: how one login method (jwt, appservice, synapse_admin, rest_backend) turns a user
// ID into a login_grant, plus the request/answer helpers the strategies share. The homeserver
// client owns the HTTP connection and hands it to its strategy per login.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "core/json_writer.hpp"
#include "matrix/homeserver_client.hpp"
#include "net/http_client.hpp"

namespace mxp::matrix {

class rest_backends;  // matrix/rest_backend.hpp

class login_strategy {
 public:
  virtual ~login_strategy() = default;

  virtual std::string_view method_name() const = 0;  // "jwt", "appservice", "synapse_admin"
  virtual std::string login_type() const = 0;        // the wire type, e.g. "org.matrix.login.jwt"

  // Logs `user_id` in over `http`, which the caller keeps alive until the call completes.
  virtual boost::asio::awaitable<upstream_result<login_grant>> login(net::http_client* http,
                                                                     std::string user_id) = 0;

  // Whether logout() below ends this method's tokens (MAS: revoking the personal session)
  // instead of the homeserver's POST /logout.
  virtual bool ends_its_tokens() const { return false; }
  virtual boost::asio::awaitable<upstream_result<logout_outcome>> logout(secret_string token);
  // A token a renewal replaced (homeserver_client::retire); the default is logout().
  virtual boost::asio::awaitable<upstream_result<logout_outcome>> retire(secret_string token) {
    return logout(std::move(token));
  }
  // Ends its own requests in flight (shutdown), as homeserver_client::cancel_requests.
  virtual void cancel_requests() {}
  // As homeserver_client::token_handle, adopt_token, configuration_error and drain.
  virtual std::string token_handle(const secret_string& /*token*/) const { return {}; }
  virtual void adopt_token(const secret_string& /*token*/, std::string /*handle*/) {}
  virtual std::string configuration_error() const { return {}; }
  virtual boost::asio::awaitable<void> drain(std::chrono::steady_clock::time_point deadline);
};

// The strategy for config.login; nullptr for shared_secret, which homeserver_client
// handles itself (it may have to read GET /login first). Throws std::runtime_error with a
// "FILE:LINE: KEY: why" message when the config cannot be used (a key that does not fit the
// JWT algorithm); the message never carries key material.
// `backends`: the daemon's rest_backend listeners (required for method rest_backend only).
// `executor`: for methods with a service of their own (mas).
std::unique_ptr<login_strategy> make_login_strategy(boost::asio::any_io_executor executor,
                                                    const config::homeserver_config& config,
                                                    rest_backends* backends = nullptr);

// --- shared by the strategies ----------------------------------------------------------------

// A user ID the strategy cannot log in because it is not one (checked before any request).
upstream_error malformed_user_id(std::string_view user_id);

// A transport failure (no complete HTTP answer) as an upstream_error: upstream_timeout when a
// deadline passed, otherwise upstream_unavailable (refused, reset, TLS, DNS, and also an answer
// cut short, bytes that are not HTTP or an answer over max_response_bytes), with http_status 0.
// See the rule in api/http_api.cpp (write_pool_error).
upstream_error transport_error(const net::http_failure& failure);

// Reads a 200 answer of a login: access_token (required), user_id (must be `user_id` when
// present; required unless `user_id_optional`), device_id and expires_in_ms (optional; at
// most max_expires_in_ms).
// Any other status goes through classify_error_response with `diagnostic`.
upstream_result<login_grant> read_login_answer(const net::http_response& answer,
                                               const std::string& user_id, bool user_id_optional,
                                               std::string diagnostic);

// Writes the "device_id" and "initial_device_display_name" members every login sends, so
// that a re-login replaces the device instead of adding one, and "refresh_token": true
// when sessions.refresh_tokens is on (a JSON boolean: Synapse ignores anything else).
struct device_fields {
  explicit device_fields(const config::homeserver_config& config);
  std::string device_id, display_name;
  bool request_refresh_token = false;
};
void write_device_members(json_writer& w, const device_fields& device);

}  // namespace mxp::matrix
