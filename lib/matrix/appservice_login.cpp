// appservice_login: POST /register (once per user and daemon run, so the login below yields
// a token that works: Synapse hands out a dead token for a user that was never registered),
// then POST /login {"type":"m.login.application_service",...}, both with the as_token.
#include "matrix/appservice_login.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <regex>
#include <unordered_set>

#include "config/config.hpp"
#include "core/errc.hpp"
#include "matrix/user_id.hpp"

namespace mxp::matrix {
namespace {

namespace asio = boost::asio;

constexpr std::string_view appservice_type = "m.login.application_service";

class appservice_login_strategy final : public login_strategy {
 public:
  appservice_login_strategy(const config::homeserver_config& hs,
                            const config::appservice_login& method)
      : device_(hs), server_name_(hs.server_name), method_(method) {}

  std::string_view method_name() const override { return "appservice"; }
  std::string login_type() const override { return std::string{appservice_type}; }

  asio::awaitable<upstream_result<login_grant>> login(net::http_client* http,
                                                      std::string user_id) override {
    const auto parts = parse_user_id(user_id);
    if (!parts) co_return malformed_user_id(user_id);
    if (!appservice_is_interested(method_, server_name_, user_id)) {
      // Refused without a request, but still after one trip through the executor: the session
      // pool starts a login with co_spawn (which dispatches inline) and only then waits for its
      // outcome, so a login that completes without suspending would be missed by its waiters.
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
      co_return upstream_error{errc::forbidden,
                               0,
                               {},
                               {},
                               std::nullopt,
                               fmt::format("{} is outside the user namespaces of {}", user_id,
                                           method_.registration_file)};
    }
    if (!registered_.contains(user_id)) {
      auto reg = co_await register_user(http, std::string{parts->localpart}, user_id);
      if (!reg) co_return std::move(reg).error();
      registered_.insert(user_id);
    }

    std::string body;
    json_writer w{body};
    w.begin_object().member("type", appservice_type);
    w.key("identifier")
        .begin_object()
        .member("type", "m.id.user")
        .member("user", user_id)
        .end_object();
    write_device_members(w, device_);
    w.end_object();
    net::http_request request{.method = "POST",
                              .target = "/_matrix/client/v3/login",
                              .body = std::move(body),
                              .bearer = &method_.as_token};
    auto answer = co_await http->request(std::move(request));
    if (!answer) co_return transport_error(answer.error());
    co_return read_login_answer(*answer, user_id, false,
                                fmt::format("appservice login of {}", user_id));
  }

 private:
  // POST /register {"type":"m.login.application_service","username":localpart,
  // "inhibit_login":true}: 200 registered it, 400 M_USER_IN_USE means it existed already.
  asio::awaitable<upstream_result<void>> register_user(net::http_client* http,
                                                       std::string localpart, std::string user_id) {
    std::string body;
    json_writer{body}
        .begin_object()
        .member("type", appservice_type)
        .member("username", localpart)
        .member("inhibit_login", true)
        .end_object();
    net::http_request request{.method = "POST",
                              .target = "/_matrix/client/v3/register",
                              .body = std::move(body),
                              .bearer = &method_.as_token};
    auto answer = co_await http->request(std::move(request));
    if (!answer) co_return transport_error(answer.error());
    if (answer->status == 200) co_return upstream_result<void>{};
    auto e = classify_error_response(answer->status, answer->body, answer->retry_after,
                                     fmt::format("appservice registration of {}", user_id));
    if (answer->status == 400 && e.errcode == "M_USER_IN_USE") co_return upstream_result<void>{};
    co_return std::move(e);
  }

  device_fields device_;
  std::string server_name_;
  config::appservice_login method_;
  std::unordered_set<std::string> registered_;  // users known to exist, this daemon run
};

}  // namespace

bool appservice_is_interested(const config::appservice_login& method, std::string_view server_name,
                              std::string_view user_id) {
  if (method.user_regexes.empty() && method.sender_localpart.empty()) return true;
  if (!method.sender_localpart.empty() &&
      user_id.size() == method.sender_localpart.size() + 2 + server_name.size() &&
      user_id == fmt::format("@{}:{}", method.sender_localpart, server_name))
    return true;
  for (const auto& re : method.user_regexes)
    if (std::regex_search(user_id.begin(), user_id.end(), re,
                          std::regex_constants::match_continuous))
      return true;
  return false;
}

std::unique_ptr<login_strategy> make_appservice_login(const config::homeserver_config& hs,
                                                      const config::appservice_login& method) {
  return std::make_unique<appservice_login_strategy>(hs, method);
}

}  // namespace mxp::matrix
