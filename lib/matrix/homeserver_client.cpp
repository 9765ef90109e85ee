// The real homeserver client: request bodies, answer parsing (simdjson) and error mapping.
#include "matrix/homeserver_client.hpp"

#include <simdjson.h>

#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>

#include <fmt/format.h>
#include <algorithm>
#include <charconv>
#include <vector>

#include "config/config.hpp"
#include "core/errc.hpp"
#include "core/json_writer.hpp"
#include "credentials/shared_secret.hpp"
#include "matrix/login_strategy.hpp"
#include "net/http_client.hpp"

namespace mxp::matrix {

namespace asio = boost::asio;

// Every http_request below is a named local moved into the call: GCC 12 destroys a
// brace-initialised temporary argument of a coroutine twice when it sits inside a
// co_await expression (seen as "free(): invalid pointer").

namespace {

constexpr std::string_view devture_type = "com.devture.shared_secret_auth";
constexpr std::string_view password_type = "m.login.password";
constexpr std::string_view refresh_v3 = "/_matrix/client/v3/refresh";
constexpr std::string_view refresh_v1 = "/_matrix/client/v1/refresh";

// Reads a JSON object's string member; nullopt when absent or not a string.
std::optional<std::string> string_member(simdjson::dom::element obj, std::string_view key) {
  std::string_view v;
  if (obj[key].get_string().get(v) != simdjson::SUCCESS) return std::nullopt;
  return std::string{v};
}

std::optional<std::int64_t> int_member(simdjson::dom::element obj, std::string_view key) {
  std::int64_t v = 0;
  if (obj[key].get_int64().get(v) != simdjson::SUCCESS) return std::nullopt;
  return v;
}

upstream_error bad_response(int status, std::string diagnostic) {
  return {errc::upstream_bad_response, status, {}, {}, std::nullopt, std::move(diagnostic)};
}

class matrix_homeserver final : public homeserver_client {
 public:
  matrix_homeserver(asio::any_io_executor executor, const config::homeserver_config& config,
                    rest_backends* backends)
      : executor_(std::move(executor)), config_(config), device_(config) {
    http_options_.ca_file = config.ca_file;
    http_options_.request_timeout = config.request_timeout;
    http_options_.connect_timeout = config.connect_timeout;
    http_options_.max_response_bytes = config.max_response_bytes;
    if (!config.url.empty())
      use_client(std::make_unique<net::http_client>(executor_, config.url, http_options_));
    if (auto* s = std::get_if<config::shared_secret_login>(&config_.login)) {
      if (s->login_type == config::shared_secret_login_type::devture)
        resolved_login_type_ = devture_type;
      if (s->login_type == config::shared_secret_login_type::password)
        resolved_login_type_ = password_type;
    }
    // jwt, appservice, synapse_admin, rest_backend; throws on a bad key
    strategy_ = make_login_strategy(executor_, config_, backends);
  }

  const std::string& server_name() const override { return config_.server_name; }
  std::string_view method_name() const override {
    return strategy_ ? strategy_->method_name() : "shared_secret";
  }
  std::string login_type() const override {
    if (strategy_) return strategy_->login_type();
    return resolved_login_type_.empty() ? "auto" : resolved_login_type_;
  }
  // Kept as a string: every token answer carries it.
  const std::string& base_url() const override { return base_url_; }
  void close_idle_connections() override {
    if (http_) http_->close_idle();
  }
  void cancel_requests() override {
    if (http_) http_->cancel_all();
    if (discovering_) discovering_->cancel_all();
    if (strategy_) strategy_->cancel_requests();
  }
  std::string token_handle(const secret_string& token) const override {
    return strategy_ ? strategy_->token_handle(token) : std::string{};
  }
  void adopt_token(const secret_string& token, std::string handle) override {
    if (strategy_) strategy_->adopt_token(token, std::move(handle));
  }
  std::string configuration_error() const override {
    return strategy_ ? strategy_->configuration_error() : std::string{};
  }
  asio::awaitable<void> drain(std::chrono::steady_clock::time_point deadline) override {
    if (strategy_) co_await strategy_->drain(deadline);
  }

  asio::awaitable<upstream_result<login_grant>> login(std::string user_id) override {
    if (auto ready = co_await ensure_ready(); !ready) co_return std::move(ready).error();
    if (strategy_) co_return co_await strategy_->login(http_.get(), std::move(user_id));
    const auto& secret_cfg = std::get<config::shared_secret_login>(config_.login);
    const auto hmac = credentials::shared_secret_token(secret_cfg.secret, user_id);

    std::string body;
    json_writer w{body};
    w.begin_object().member("type", std::string_view{resolved_login_type_});
    w.key("identifier")
        .begin_object()
        .member("type", "m.id.user")
        .member("user", user_id)
        .end_object();
    w.member(resolved_login_type_ == devture_type ? "token" : "password", hmac.reveal());
    write_device_members(w, device_);
    w.end_object();
    secret_string body_secret{std::move(body)};  // the body carries the HMAC: wipe it after use

    net::http_request request{
        .method = "POST", .target = "/_matrix/client/v3/login", .body = body_secret.reveal()};
    auto answer = co_await http_->request(std::move(request));
    if (!answer) co_return transport_error(answer.error());
    co_return read_login_answer(*answer, user_id, false, fmt::format("login of {}", user_id));
  }

  asio::awaitable<upstream_result<refresh_grant>> refresh(secret_string refresh_token) override {
    if (auto ready = co_await ensure_ready(); !ready) co_return std::move(ready).error();
    std::string body;
    json_writer{body}.begin_object().member("refresh_token", refresh_token.reveal()).end_object();
    secret_string body_secret{std::move(body)};
    for (;;) {
      // replay_safe = false: a refresh whose answer was lost may have rotated the token already.
      net::http_request request{.method = "POST",
                                .target = refresh_path_,
                                .body = body_secret.reveal(),
                                .replay_safe = false};
      auto answer = co_await http_->request(std::move(request));
      if (!answer) co_return transport_error(answer.error());
      if (answer->status != 200) {
        auto e =
            classify_error_response(answer->status, answer->body, answer->retry_after, "refresh");
        // Older Synapse serves refresh only under /v1; an unrecognised endpoint processed nothing.
        if ((answer->status == 400 || answer->status == 404) && e.errcode == "M_UNRECOGNIZED" &&
            refresh_path_ == refresh_v3) {
          refresh_path_ = refresh_v1;
          continue;
        }
        co_return std::move(e);
      }
      simdjson::dom::element doc;
      std::string_view token;
      if (parser_.parse(answer->body).get(doc) != simdjson::SUCCESS || !doc.is_object() ||
          doc["access_token"].get_string().get(token) != simdjson::SUCCESS || token.empty())
        co_return bad_response(200, "refresh answer lacks access_token");
      refresh_grant grant;
      grant.access_token = secret_string{std::string{token}};
      if (auto next = string_member(doc, "refresh_token"))
        grant.refresh_token = secret_string{std::move(*next)};
      if (auto ms = int_member(doc, "expires_in_ms")) {
        if (*ms <= 0) co_return bad_response(200, "refresh answer: expires_in_ms is not positive");
        grant.expires_in_ms = std::min(*ms, max_expires_in_ms);
      }
      co_return grant;
    }
  }

  asio::awaitable<upstream_result<logout_outcome>> retire(secret_string token) override {
    if (strategy_ && strategy_->ends_its_tokens())
      co_return co_await strategy_->retire(std::move(token));
    co_return co_await logout(std::move(token));
  }

  asio::awaitable<upstream_result<logout_outcome>> logout(secret_string token) override {
    if (strategy_ && strategy_->ends_its_tokens())
      co_return co_await strategy_->logout(std::move(token));
    if (auto ready = co_await ensure_ready(); !ready) co_return std::move(ready).error();
    net::http_request request{
        .method = "POST", .target = "/_matrix/client/v3/logout", .body = "{}", .bearer = &token};
    auto answer = co_await http_->request(std::move(request));
    if (!answer) co_return transport_error(answer.error());
    if (answer->status == 200) {
      // Synapse answers {}. A 200 whose body is not a JSON object (a proxy's page, garbage)
      // does not confirm anything: the token stays pending logout and is logged out again.
      simdjson::dom::parser parser;
      simdjson::dom::object object;
      if (parser.parse(answer->body).get(object) == simdjson::SUCCESS)
        co_return logout_outcome{true};
      upstream_error e;
      e.code = errc::upstream_bad_response;
      e.http_status = 200;
      e.diagnostic = "logout: a 200 answer that is not a JSON object, not taken as a logout";
      co_return std::move(e);
    }
    auto e = classify_error_response(answer->status, answer->body, answer->retry_after, "logout");
    if (answer->status == 401 && e.errcode == "M_UNKNOWN_TOKEN") co_return logout_outcome{false};
    co_return std::move(e);
  }

  asio::awaitable<upstream_result<std::string>> whoami(secret_string token) override {
    if (auto ready = co_await ensure_ready(); !ready) co_return std::move(ready).error();
    net::http_request request{
        .method = "GET", .target = "/_matrix/client/v3/account/whoami", .bearer = &token};
    auto answer = co_await http_->request(std::move(request));
    if (!answer) co_return transport_error(answer.error());
    if (answer->status != 200)
      co_return classify_error_response(answer->status, answer->body, answer->retry_after,
                                        "whoami");
    simdjson::dom::element doc;
    if (parser_.parse(answer->body).get(doc) != simdjson::SUCCESS || !doc.is_object())
      co_return bad_response(200, "whoami answer is not a JSON object");
    auto who = string_member(doc, "user_id");
    if (!who) co_return bad_response(200, "whoami answer lacks user_id");
    co_return std::move(*who);
  }

 private:
  // Discovers the base URL and the login type when the config left them open.
  asio::awaitable<upstream_result<void>> ensure_ready() {
    if (!http_) {
      auto url = co_await discover();
      if (!url) co_return std::move(url).error();
      if (!http_) {  // another coroutine may have finished discovery meanwhile
        try {
          use_client(std::make_unique<net::http_client>(executor_, *url, http_options_));
        } catch (const std::exception& e) {
          co_return upstream_error{errc::discovery_failed, 0, {}, {}, std::nullopt, e.what()};
        }
      }
    }
    if (!strategy_ && resolved_login_type_.empty()) {  // shared_secret with login_type auto
      auto chosen = co_await choose_login_type();
      if (!chosen) co_return std::move(chosen).error();
      resolved_login_type_ = *chosen;
    }
    co_return upstream_result<void>{};
  }

  // GET https://<server_name>/.well-known/matrix/client -> m.homeserver.base_url
  asio::awaitable<upstream_result<std::string>> discover() {
    const auto fail = [&](std::string why) {
      return upstream_error{errc::discovery_failed,
                            0,
                            {},
                            {},
                            std::nullopt,
                            fmt::format("discovery of {}: {}", config_.server_name, why)};
    };
    std::unique_ptr<net::http_client> well_known;
    try {
      well_known = std::make_unique<net::http_client>(executor_, "https://" + config_.server_name,
                                                      http_options_);
    } catch (const std::exception& e) {
      co_return fail(e.what());
    }
    net::http_request request{.method = "GET", .target = "/.well-known/matrix/client"};
    discovering_ = well_known.get();
    auto answer = co_await well_known->request(std::move(request));
    discovering_ = nullptr;
    if (!answer) co_return fail(answer.error().diagnostic);
    if (answer->status != 200) co_return fail(fmt::format("HTTP {}", answer->status));
    simdjson::dom::element doc;
    std::string_view base;
    if (parser_.parse(answer->body).get(doc) != simdjson::SUCCESS ||
        doc["m.homeserver"]["base_url"].get_string().get(base) != simdjson::SUCCESS)
      co_return fail("answer has no m.homeserver.base_url");
    if (!net::parse_base_url(base)) co_return fail("m.homeserver.base_url is not an http(s) URL");
    co_return std::string{base};
  }

  // login_type auto: prefer com.devture.shared_secret_auth, fall back to m.login.password.
  asio::awaitable<upstream_result<std::string>> choose_login_type() {
    net::http_request request{.method = "GET", .target = "/_matrix/client/v3/login"};
    auto answer = co_await http_->request(std::move(request));
    if (!answer) co_return transport_error(answer.error());
    if (answer->status != 200)
      co_return classify_error_response(answer->status, answer->body, answer->retry_after,
                                        "reading login flows");
    simdjson::dom::element doc;
    simdjson::dom::array flows;
    if (parser_.parse(answer->body).get(doc) != simdjson::SUCCESS ||
        doc["flows"].get_array().get(flows) != simdjson::SUCCESS)
      co_return bad_response(200, "GET /login answer has no flows array");
    bool has_devture = false, has_password = false;
    for (auto flow : flows) {
      std::string_view type;
      if (flow["type"].get_string().get(type) != simdjson::SUCCESS) continue;
      has_devture |= type == devture_type;
      has_password |= type == password_type;
    }
    if (has_devture) co_return std::string{devture_type};
    if (has_password) co_return std::string{password_type};
    co_return upstream_error{
        errc::upstream_refused,
        200,
        {},
        {},
        std::nullopt,
        "homeserver offers neither com.devture.shared_secret_auth nor m.login.password"};
  }

  void use_client(std::unique_ptr<net::http_client> client) {
    http_ = std::move(client);
    const auto& u = http_->url();
    base_url_ = fmt::format("{}://{}{}", u.tls ? "https" : "http", u.host_header, u.path_prefix);
  }

  asio::any_io_executor executor_;
  std::string base_url_;
  config::homeserver_config config_;
  net::http_client_options http_options_;
  std::unique_ptr<net::http_client> http_;
  net::http_client* discovering_ = nullptr;   // the .well-known lookup in flight, if any
  std::unique_ptr<login_strategy> strategy_;  // null for shared_secret, handled above
  std::string resolved_login_type_;
  device_fields device_;
  std::string refresh_path_{refresh_v3};  // becomes v1 once the homeserver refused v3
  simdjson::dom::parser parser_;
};

}  // namespace

void throw_exception_from_error(const upstream_error& e, const boost::source_location& location) {
  boost::throw_exception(boost::system::system_error(e.code, e.diagnostic), location);
}

upstream_error classify_error_response(int status, std::string_view body,
                                       const std::optional<std::string>& retry_after_header,
                                       std::string diagnostic) {
  upstream_error e;
  e.http_status = status;
  e.diagnostic = std::move(diagnostic);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body.data(), body.size()).get(doc) == simdjson::SUCCESS && doc.is_object()) {
    e.errcode = string_member(doc, "errcode").value_or("");
    e.error = string_member(doc, "error").value_or("");
    e.retry_after_ms = int_member(doc, "retry_after_ms");
  }
  if (status == 429 || e.errcode == "M_LIMIT_EXCEEDED") {
    e.code = errc::upstream_rate_limited;
    if (!e.retry_after_ms && retry_after_header) {
      std::int64_t seconds = 0;
      const auto& h = *retry_after_header;
      if (std::from_chars(h.data(), h.data() + h.size(), seconds).ec == std::errc{})
        e.retry_after_ms = std::clamp<std::int64_t>(seconds, 0, max_retry_after_ms / 1000) * 1000;
    }
  } else if (status == 502 || status == 503 || status == 504) {
    e.code = errc::upstream_unavailable;  // a proxy in front of a homeserver that is down
  } else {
    e.code = errc::upstream_refused;
  }
  // Any status: a 400 may carry "retry_after_ms": -1 too (found by fuzz_homeserver_answer).
  if (e.retry_after_ms)
    e.retry_after_ms = std::clamp<std::int64_t>(*e.retry_after_ms, 0, max_retry_after_ms);
  return e;
}

std::unique_ptr<homeserver_client> make_homeserver_client(asio::any_io_executor executor,
                                                          const config::homeserver_config& config,
                                                          rest_backends* backends) {
  return std::make_unique<matrix_homeserver>(std::move(executor), config, backends);
}

}  // namespace mxp::matrix
