// rest_backend_login: nonce, POST /login {"type":"m.login.password",...}, whoami. The nonce is
// withdrawn as soon as the login answer (or its failure) is in: the homeserver checks it while
// the login request is open, so afterwards it could only serve someone replaying it.
#include "matrix/rest_backend_login.hpp"

#include <simdjson.h>

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "config/config.hpp"
#include "core/errc.hpp"
#include "credentials/nonce_book.hpp"
#include "matrix/rest_backend.hpp"
#include "matrix/user_id.hpp"

namespace mxp::matrix {
namespace {

namespace asio = boost::asio;

constexpr std::string_view password_type = "m.login.password";

std::int64_t steady_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

bool is_lowercase(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

upstream_error failure(errc code, int status, std::string diagnostic) {
  upstream_error e;
  e.code = code;
  e.http_status = status;
  e.diagnostic = std::move(diagnostic);
  return e;
}

class rest_backend_login_strategy final : public login_strategy {
 public:
  rest_backend_login_strategy(const config::homeserver_config& hs,
                              const config::rest_backend_login& method,
                              std::shared_ptr<credentials::nonce_book> book)
      : device_(hs),
        server_name_(hs.server_name),
        backend_(fmt::format("{}:{}",
                             method.listen_address.find(':') != std::string::npos
                                 ? "[" + method.listen_address + "]"
                                 : method.listen_address,
                             method.listen_port)),
        lifetime_ms_(method.nonce_lifetime.count()),
        book_(std::move(book)) {}

  std::string_view method_name() const override { return "rest_backend"; }
  std::string login_type() const override { return std::string{password_type}; }

  asio::awaitable<upstream_result<login_grant>> login(net::http_client* http,
                                                      std::string user_id) override {
    const auto parts = parse_user_id(user_id);
    if (!parts) co_return malformed_user_id(user_id);
    if (!is_lowercase(user_id)) {
      // One trip through the executor first: the pool must not see a login that completes
      // without suspending (see appservice_login.cpp).
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
      co_return failure(errc::invalid_user_id, 0,
                        fmt::format("rest_backend logs in lowercase user IDs only: the "
                                    "homeserver answers a case variant of {} with a dead token",
                                    user_id));
    }

    auto nonce = book_->issue(user_id, steady_ms(), lifetime_ms_);
    struct withdraw_on_exit {
      credentials::nonce_book& book;
      const std::string& user;
      ~withdraw_on_exit() { book.withdraw(user); }
    } withdraw{*book_, user_id};

    std::string body;
    json_writer w{body};
    w.begin_object().member("type", password_type);
    w.key("identifier")
        .begin_object()
        .member("type", "m.id.user")
        .member("user", user_id)
        .end_object();
    w.member("password", nonce.reveal());
    write_device_members(w, device_);
    w.end_object();
    secret_string body_secret{std::move(body)};  // it carries the nonce: wiped after use
    nonce.wipe();

    net::http_request request{
        .method = "POST", .target = "/_matrix/client/v3/login", .body = body_secret.reveal()};
    auto answer = co_await http->request(std::move(request));
    book_->withdraw(user_id);
    if (!answer) co_return transport_error(answer.error());
    if (answer->status == 403) {
      auto e = classify_error_response(answer->status, answer->body, answer->retry_after,
                                       fmt::format("rest_backend login of {}", user_id));
      e.retry_with_backoff = true;
      spdlog::warn(
          "login user={} homeserver={} method=rest_backend: 403 is ambiguous: the homeserver "
          "refused the nonce, or could not reach the backend at {} (check its "
          "password_providers endpoint); backing off as for an unreachable homeserver",
          user_id, server_name_, backend_);
      co_return std::move(e);
    }
    auto grant = read_login_answer(*answer, user_id, false,
                                   fmt::format("rest_backend login of {}", user_id));
    if (!grant) co_return std::move(grant);

    // A 200 can carry a token that is dead at once (a case variant, a foreign domain).
    net::http_request check{.method = "GET",
                            .target = "/_matrix/client/v3/account/whoami",
                            .bearer = &grant->access_token};
    auto who = co_await http->request(std::move(check));
    if (!who) co_return transport_error(who.error());
    if (who->status != 200) {
      auto e = classify_error_response(who->status, who->body, who->retry_after,
                                       fmt::format("whoami after the rest_backend login of {}: "
                                                   "the new token does not work",
                                                   user_id));
      if (who->status == 401) e.code = errc::upstream_bad_response;
      co_return std::move(e);
    }
    simdjson::dom::parser parser;
    std::string_view owner;
    if (parser.parse(who->body).get_object()["user_id"].get_string().get(owner) !=
            simdjson::SUCCESS ||
        owner != user_id)
      co_return failure(errc::upstream_bad_response, 200,
                        fmt::format("whoami after the rest_backend login of {}: the token "
                                    "belongs to someone else, or the answer is unreadable",
                                    user_id));
    co_return std::move(grant);
  }

 private:
  device_fields device_;
  std::string server_name_;
  std::string backend_;  // "address:port" as configured, for the log
  std::int64_t lifetime_ms_;
  std::shared_ptr<credentials::nonce_book> book_;
};

}  // namespace

std::unique_ptr<login_strategy> make_rest_backend_login(const config::homeserver_config& hs,
                                                        const config::rest_backend_login& method,
                                                        rest_backends* backends) {
  if (!backends)
    throw std::runtime_error("homeservers." + hs.server_name +
                             ".login: rest_backend needs the daemon's backend listeners");
  return std::make_unique<rest_backend_login_strategy>(
      hs, method, backends->attach(method.listen_address, method.listen_port));
}

}  // namespace mxp::matrix
