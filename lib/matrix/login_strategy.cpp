// The login strategy factory and the answer parsing the strategies share.
#include "matrix/login_strategy.hpp"

#include <simdjson.h>

#include <fmt/format.h>

#include <algorithm>
#include <variant>

#include "config/config.hpp"
#include "core/errc.hpp"
#include "matrix/appservice_login.hpp"
#include "matrix/jwt_login.hpp"
#include "matrix/mas_login.hpp"
#include "matrix/rest_backend_login.hpp"
#include "matrix/synapse_admin_login.hpp"

namespace mxp::matrix {

std::unique_ptr<login_strategy> make_login_strategy(boost::asio::any_io_executor executor,
                                                    const config::homeserver_config& config,
                                                    rest_backends* backends) {
  return std::visit(
      [&](const auto& method) -> std::unique_ptr<login_strategy> {
        using method_t = std::decay_t<decltype(method)>;
        if constexpr (std::is_same_v<method_t, config::jwt_login>)
          return make_jwt_login(config, method);
        else if constexpr (std::is_same_v<method_t, config::appservice_login>)
          return make_appservice_login(config, method);
        else if constexpr (std::is_same_v<method_t, config::synapse_admin_login>)
          return make_synapse_admin_login(config, method);
        else if constexpr (std::is_same_v<method_t, config::rest_backend_login>)
          return make_rest_backend_login(config, method, backends);
        else if constexpr (std::is_same_v<method_t, config::mas_login>)
          return make_mas_login(executor, config, method);
        else
          return nullptr;  // shared_secret
      },
      config.login);
}

boost::asio::awaitable<upstream_result<logout_outcome>> login_strategy::logout(secret_string) {
  co_return logout_outcome{false};  // not called unless ends_its_tokens()
}

boost::asio::awaitable<void> login_strategy::drain(std::chrono::steady_clock::time_point) {
  co_return;  // nothing of its own runs in the background
}

upstream_error malformed_user_id(std::string_view user_id) {
  upstream_error e;
  e.code = errc::invalid_user_id;
  e.diagnostic = fmt::format("'{}' is not a user ID", user_id);
  return e;
}

upstream_error transport_error(const net::http_failure& failure) {
  upstream_error e;
  // No usable HTTP answer came, whatever the reason: the homeserver is as good as unreachable
  // (the pool retries with backoff and counts it towards the circuit). Only a timeout keeps its
  // own code. The diagnostic says which it was (e.g. "malformed HTTP answer").
  e.code = failure.code == errc::upstream_timeout ? failure.code
                                                  : make_error_code(errc::upstream_unavailable);
  e.diagnostic = failure.diagnostic;
  e.request_sent = failure.request_sent;
  return e;
}

upstream_result<login_grant> read_login_answer(const net::http_response& answer,
                                               const std::string& user_id, bool user_id_optional,
                                               std::string diagnostic) {
  if (answer.status != 200)
    return classify_error_response(answer.status, answer.body, answer.retry_after,
                                   std::move(diagnostic));
  const auto bad = [&](std::string why) {
    return upstream_error{errc::upstream_bad_response,           200, {}, {}, std::nullopt,
                          fmt::format("{}: {}", diagnostic, why)};
  };
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(answer.body).get(doc) != simdjson::SUCCESS || !doc.is_object())
    return bad("answer is not a JSON object");
  std::string_view token;
  if (doc["access_token"].get_string().get(token) != simdjson::SUCCESS || token.empty())
    return bad("answer lacks access_token");
  login_grant grant;
  std::string_view who;
  if (doc["user_id"].get_string().get(who) == simdjson::SUCCESS) {
    if (who != user_id)
      return bad(fmt::format("homeserver logged in {} instead of {}", who, user_id));
  } else if (!user_id_optional) {
    return bad("answer lacks user_id");
  }
  grant.access_token = secret_string{std::string{token}};
  grant.user_id = user_id;
  if (std::string_view device; doc["device_id"].get_string().get(device) == simdjson::SUCCESS)
    grant.device_id = std::string{device};
  if (std::int64_t ms = 0; doc["expires_in_ms"].get_int64().get(ms) == simdjson::SUCCESS) {
    if (ms <= 0) return bad("expires_in_ms is not positive");
    grant.expires_in_ms = std::min(ms, max_expires_in_ms);
  }
  if (std::string_view refresh; doc["refresh_token"].get_string().get(refresh) == simdjson::SUCCESS)
    grant.refresh_token = secret_string{std::string{refresh}};
  return grant;
}

device_fields::device_fields(const config::homeserver_config& config)
    : device_id(config.device_id),
      display_name(config.device_display_name),
      request_refresh_token(config.request_refresh_token) {}

void write_device_members(json_writer& w, const device_fields& device) {
  w.member("device_id", device.device_id);
  w.member("initial_device_display_name", device.display_name);
  if (device.request_refresh_token) w.member("refresh_token", true);
}

}  // namespace mxp::matrix
