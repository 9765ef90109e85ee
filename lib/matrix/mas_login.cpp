// mas_login: the admin token (client_credentials, client_secret_basic, scope urn:mas:admin),
// the user lookup and the personal sessions of `method: mas`, with MAS's error shapes
// ({"errors":[{"title"}]} from the admin API, {"error","error_description"} from OAuth).
#include "matrix/mas_login.hpp"

#include <simdjson.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/evp.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <unordered_map>

#include "config/config.hpp"
#include "core/errc.hpp"
#include "core/percent_encoding.hpp"
#include "matrix/user_id.hpp"
#include "net/http_client.hpp"

namespace mxp::matrix {
namespace {

namespace asio = boost::asio;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::int64_t steady_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

// RFC 7617 credentials: base64("id:secret"), standard alphabet with padding.
secret_string basic_credentials(const std::string& id, const secret_string& secret) {
  const secret_string plain{id + ":" + secret.reveal()};
  std::string out(4 * ((plain.reveal().size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(plain.reveal().data()),
                                static_cast<int>(plain.reveal().size()));
  out.resize(static_cast<std::size_t>(n));
  return secret_string{std::move(out)};
}

// An answer of MAS that was not a success, with what it said in errcode/error.
upstream_error mas_error(const net::http_response& answer, std::string diagnostic) {
  auto e = classify_error_response(answer.status, answer.body, answer.retry_after,
                                   std::move(diagnostic));
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(answer.body).get(doc) == simdjson::SUCCESS && doc.is_object()) {
    std::string_view v;
    if (doc["errors"].at(0)["title"].get_string().get(v) == simdjson::SUCCESS) e.error = v;
    if (doc["error"].get_string().get(v) == simdjson::SUCCESS) e.errcode = v;  // OAuth
    if (doc["error_description"].get_string().get(v) == simdjson::SUCCESS) e.error = v;
  }
  return e;
}

upstream_error bad(int status, std::string diagnostic) {
  upstream_error e;
  e.code = errc::upstream_bad_response;
  e.http_status = status;
  e.diagnostic = std::move(diagnostic);
  return e;
}

// Everything of the method, shared with the delayed revocations of retired sessions so that
// they may outlive the strategy (a reload, shutdown).
class mas_core : public std::enable_shared_from_this<mas_core> {
 public:
  mas_core(asio::any_io_executor executor, const config::homeserver_config& hs,
           const config::mas_login& method)
      : executor_(executor),
        server_name_(hs.server_name),
        device_id_(hs.device_id),
        method_(method),
        basic_(basic_credentials(method.client_id, method.client_secret)),
        renewed_(executor) {
    net::http_client_options options;
    options.ca_file = hs.ca_file;
    options.request_timeout = hs.request_timeout;
    options.connect_timeout = hs.connect_timeout;
    options.max_response_bytes = hs.max_response_bytes;
    mas_ = std::make_unique<net::http_client>(executor, method.mas_url, options);
    renewed_.expires_at(asio::steady_timer::time_point::max());
    scope_ = "urn:matrix:client:api:*";
    if (method.device_scope) scope_ += " urn:matrix:client:device:" + device_id_;
  }

  void cancel_requests() {
    mas_->cancel_all();
    end_grace_periods();
  }
  // The grace periods end now, and those of sessions retired from now on too: the retired
  // sessions are revoked at once (shutdown, reload).
  void end_grace_periods() {
    grace_over_ = true;
    for (auto* t : grace_timers_) t->cancel();
  }

  // The personal session id is the token's handle: persisted beside it, given back at start-up.
  std::string token_handle(const secret_string& token) const {
    const auto it = sessions_.find(token.reveal());
    return it == sessions_.end() ? std::string{} : it->second;
  }
  const std::string& configuration_error() const noexcept { return config_error_; }
  void adopt_token(const secret_string& token, std::string id) {
    if (!token.empty() && !id.empty()) sessions_[token.reveal()] = std::move(id);
  }

  // Ends the grace periods and awaits the revocations they held back (shutdown); those still
  // out at `deadline` are cancelled, then awaited for at most a second more.
  asio::awaitable<void> drain(asio::steady_timer::time_point deadline) {
    const auto self = shared_from_this();
    end_grace_periods();
    bool cancelled = false;
    while (revoking_ > 0) {
      const auto until = cancelled ? deadline + std::chrono::seconds(1) : deadline;
      asio::steady_timer wake{executor_, until};
      drain_waiters_.insert(&wake);
      auto [ec] = co_await wake.async_wait(use_tuple);
      drain_waiters_.erase(&wake);
      if (ec) continue;  // a revocation finished
      if (cancelled) {
        spdlog::error("homeserver={} method=mas: {} revocations did not end after being cancelled",
                      server_name_, revoking_);
        break;
      }
      spdlog::warn(
          "homeserver={} method=mas: cancelling {} revocations of retired personal sessions still "
          "out at the shutdown deadline (they end at their expiry)",
          server_name_, revoking_);
      mas_->cancel_all();
      cancelled = true;
    }
  }

  asio::awaitable<upstream_result<login_grant>> login(std::string user_id) {
    const auto parts = parse_user_id(user_id);
    if (!parts) co_return malformed_user_id(user_id);
    auto mas_user = co_await mas_user_id(std::string{parts->localpart}, user_id);
    if (!mas_user) co_return std::move(mas_user).error();

    std::string body;
    json_writer{body}
        .begin_object()
        .member("actor_user_id", *mas_user)
        .member("human_name", "mxpuppetd double puppet of " + user_id)
        .member("scope", scope_)
        .member(
            "expires_in",
            static_cast<std::int64_t>(std::max<std::int64_t>(
                1,
                std::chrono::duration_cast<std::chrono::seconds>(method_.token_lifetime).count())))
        .end_object();
    auto answer =
        co_await admin_call("POST", "/api/admin/v1/personal-sessions", std::move(body), false);
    if (!answer) co_return std::move(answer).error();
    const auto what = fmt::format("MAS personal session for {}", user_id);
    if (answer->status != 201 && answer->status != 200) co_return mas_error(*answer, what);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    std::string_view id, token;
    if (parser.parse(answer->body).get(doc) != simdjson::SUCCESS ||
        doc["data"]["id"].get_string().get(id) != simdjson::SUCCESS ||
        doc["data"]["attributes"]["access_token"].get_string().get(token) != simdjson::SUCCESS ||
        token.empty())
      co_return bad(answer->status, what + ": the answer lacks data.id or its access_token");
    sessions_[std::string{token}] = std::string{id};
    login_grant grant;
    grant.access_token = secret_string{std::string{token}};
    grant.user_id = user_id;
    if (method_.device_scope) grant.device_id = device_id_;
    grant.expires_in_ms = std::min<std::int64_t>(method_.token_lifetime.count(), max_expires_in_ms);
    co_return grant;
  }

  // A renewal replaced the token: it lives on for renew_grace, then its session is revoked.
  // Confirmed at once (the revocation is this object's business from now on).
  upstream_result<logout_outcome> retire(secret_string token) {
    if (!sessions_.contains(token.reveal())) return logout_outcome{false};
    // Owned by this object: counted, and awaited by drain() (shutdown).
    ++revoking_;
    asio::co_spawn(executor_, revoke_after_grace(shared_from_this(), std::move(token)),
                   [self = shared_from_this(), server = server_name_](std::exception_ptr ep) {
                     --self->revoking_;
                     for (auto* t : self->drain_waiters_) t->cancel();
                     if (!ep) return;
                     try {
                       std::rethrow_exception(ep);
                     } catch (const std::exception& e) {
                       spdlog::error("homeserver={} method=mas: revoking a retired session: {}",
                                     server, e.what());
                     }
                   });
    return logout_outcome{true};
  }

  // Revokes the personal session the token belongs to.
  asio::awaitable<upstream_result<logout_outcome>> logout(secret_string token) {
    const auto it = sessions_.find(token.reveal());
    if (it == sessions_.end()) {
      // Minted by an earlier run whose store did not keep its session id (an older version),
      // so it ends at its own expiry.
      spdlog::warn(
          "homeserver={} method=mas: a personal session of an earlier run cannot be revoked "
          "(its id was not persisted): it ends at its expiry",
          server_name_);
      co_return logout_outcome{false};
    }
    const std::string id = it->second;
    auto answer = co_await admin_call(
        "POST", "/api/admin/v1/personal-sessions/" + percent_encode(id) + "/revoke", "{}", true);
    if (!answer) co_return std::move(answer).error();
    if (answer->status == 200 || answer->status == 404 || answer->status == 409) {
      sessions_.erase(token.reveal());
      co_return logout_outcome{answer->status == 200};
    }
    co_return mas_error(*answer, fmt::format("revoking MAS personal session {}", id));
  }

 private:
  static asio::awaitable<void> revoke_after_grace(std::shared_ptr<mas_core> self,
                                                  secret_string token) {
    if (!self->grace_over_) {
      asio::steady_timer grace{self->executor_, self->method_.renew_grace};
      self->grace_timers_.insert(&grace);
      co_await grace.async_wait(use_tuple);
      self->grace_timers_.erase(&grace);
    }
    auto out = co_await self->logout(std::move(token));
    if (!out)
      spdlog::warn(
          "homeserver={} method=mas: the personal session a renewal replaced could not be "
          "revoked after its grace period: {} ({})",
          self->server_name_, out.error().diagnostic, out.error().error);
  }

  // An admin API request with the cached admin token; a 401 (the token expired or was revoked)
  // fetches a new one and tries once more.
  asio::awaitable<upstream_result<net::http_response>> admin_call(std::string_view verb,
                                                                  std::string target,
                                                                  std::string body,
                                                                  bool replay_safe) {
    for (int attempt = 0;; ++attempt) {
      auto admin = co_await admin_token(attempt > 0);
      if (!admin) co_return std::move(admin).error();
      const secret_string bearer = *admin;
      net::http_request request{.method = verb,
                                .target = target,
                                .body = body,
                                .bearer = &bearer,
                                .replay_safe = replay_safe};
      auto answer = co_await mas_->request(std::move(request));
      if (!answer) co_return transport_error(answer.error());
      if (answer->status == 401 && attempt == 0) continue;
      co_return std::move(*answer);
    }
  }

  // The cached admin token, fetched when absent, near its expiry or `force`d; one fetch at a
  // time (the others wait for it).
  asio::awaitable<upstream_result<secret_string>> admin_token(bool force) {
    if (force && !renewing_) admin_expires_ms_ = 0;
    while (renewing_) co_await renewed_.async_wait(use_tuple);
    if (!admin_.empty() && steady_ms() < admin_expires_ms_) co_return admin_;
    renewing_ = true;
    auto fetched = co_await fetch_admin_token();
    renewing_ = false;
    renewed_.cancel();  // wakes every waiter
    if (!fetched) co_return std::move(fetched).error();
    co_return admin_;
  }

  asio::awaitable<upstream_result<void>> fetch_admin_token() {
    net::http_request request{.method = "POST",
                              .target = "/oauth2/token",
                              .body = "grant_type=client_credentials&scope=urn%3Amas%3Aadmin",
                              .replay_safe = false,
                              .basic = &basic_,
                              .content_type = "application/x-www-form-urlencoded"};
    auto answer = co_await mas_->request(std::move(request));
    if (!answer) co_return transport_error(answer.error());
    if (answer->status != 200) {
      auto e = mas_error(*answer, "MAS admin token (client credentials)");
      if (e.errcode == "invalid_client" || e.errcode == "invalid_scope")
        config_error_ = e.errcode == "invalid_client"
                            ? "invalid_client: MAS refused the client credentials (client_id, "
                              "client_secret_file)"
                            : "invalid_scope: MAS does not let the client ask for urn:mas:admin "
                              "(policy.data.admin_clients)";
      if (e.errcode == "invalid_client")
        spdlog::error(
            "homeservers.{}.login: MAS refused the client credentials (invalid_client): check "
            "client_id {} and client_secret_file {}",
            server_name_, method_.client_id, method_.client_secret_file);
      else if (e.errcode == "invalid_scope")
        spdlog::error(
            "homeservers.{}.login: MAS does not let client {} ask for urn:mas:admin "
            "(invalid_scope): list it in MAS's policy.data.admin_clients",
            server_name_, method_.client_id);
      if (!e.errcode.empty()) e.diagnostic += ": " + e.errcode;
      co_return std::move(e);
    }
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    std::string_view token;
    std::int64_t expires_in = 0;
    if (parser.parse(answer->body).get(doc) != simdjson::SUCCESS ||
        doc["access_token"].get_string().get(token) != simdjson::SUCCESS || token.empty())
      co_return bad(200, "MAS admin token: the answer lacks access_token");
    if (doc["expires_in"].get_int64().get(expires_in) != simdjson::SUCCESS || expires_in <= 0)
      expires_in = 300;  // MAS's default
    admin_ = secret_string{std::string{token}};
    config_error_.clear();
    // Renewed before it runs out: a fifth of its life early, at most a minute.
    const auto life_ms = expires_in * 1000;
    admin_expires_ms_ = steady_ms() + life_ms - std::min<std::int64_t>(60'000, life_ms / 5);
    co_return upstream_result<void>{};
  }

  asio::awaitable<upstream_result<std::string>> mas_user_id(std::string localpart,
                                                            std::string user_id) {
    if (const auto it = users_.find(localpart); it != users_.end()) co_return it->second;
    auto answer = co_await admin_call(
        "GET", "/api/admin/v1/users/by-username/" + percent_encode(localpart), {}, true);
    if (!answer) co_return std::move(answer).error();
    const auto what = fmt::format("MAS user of {}", user_id);
    if (answer->status != 200) co_return mas_error(*answer, what);
    simdjson::dom::parser parser;
    std::string_view id;
    if (parser.parse(answer->body).get_object()["data"]["id"].get_string().get(id) !=
        simdjson::SUCCESS)
      co_return bad(200, what + ": the answer lacks data.id");
    users_.emplace(localpart, std::string{id});
    co_return std::string{id};
  }

  asio::any_io_executor executor_;
  std::string server_name_, device_id_;
  config::mas_login method_;
  std::set<asio::steady_timer*> grace_timers_;   // revocations waiting out renew_grace
  bool grace_over_ = false;                      // end_grace_periods() was called
  std::size_t revoking_ = 0;                     // revocations of retired sessions not ended
  std::set<asio::steady_timer*> drain_waiters_;  // drain() calls, woken as each one ends
  secret_string basic_;
  std::string scope_;
  std::unique_ptr<net::http_client> mas_;
  secret_string admin_;
  std::int64_t admin_expires_ms_ = 0;
  bool renewing_ = false;
  std::string config_error_;    // the last invalid_client/invalid_scope, until a token comes
  asio::steady_timer renewed_;  // never expires: cancel() wakes those waiting for a renewal
  std::unordered_map<std::string, std::string> users_;     // localpart -> MAS user id
  std::unordered_map<std::string, std::string> sessions_;  // token -> personal session id
};

class mas_login_strategy final : public login_strategy {
 public:
  explicit mas_login_strategy(std::shared_ptr<mas_core> core) : core_(std::move(core)) {}
  ~mas_login_strategy() override { core_->end_grace_periods(); }

  std::string_view method_name() const override { return "mas"; }
  std::string login_type() const override { return "mas_personal_session"; }
  bool ends_its_tokens() const override { return true; }
  void cancel_requests() override { core_->cancel_requests(); }

  asio::awaitable<upstream_result<login_grant>> login(net::http_client*,
                                                      std::string user_id) override {
    auto core = core_;
    co_return co_await core->login(std::move(user_id));
  }
  asio::awaitable<upstream_result<logout_outcome>> logout(secret_string token) override {
    auto core = core_;
    co_return co_await core->logout(std::move(token));
  }
  asio::awaitable<upstream_result<logout_outcome>> retire(secret_string token) override {
    co_return core_->retire(std::move(token));
  }
  std::string token_handle(const secret_string& token) const override {
    return core_->token_handle(token);
  }
  void adopt_token(const secret_string& token, std::string handle) override {
    core_->adopt_token(token, std::move(handle));
  }
  std::string configuration_error() const override { return core_->configuration_error(); }
  asio::awaitable<void> drain(std::chrono::steady_clock::time_point deadline) override {
    auto core = core_;
    co_await core->drain(deadline);
  }

 private:
  std::shared_ptr<mas_core> core_;
};

}  // namespace

std::unique_ptr<login_strategy> make_mas_login(asio::any_io_executor executor,
                                               const config::homeserver_config& hs,
                                               const config::mas_login& method) {
  return std::make_unique<mas_login_strategy>(
      std::make_shared<mas_core>(std::move(executor), hs, method));
}

}  // namespace mxp::matrix
