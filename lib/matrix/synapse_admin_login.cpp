// synapse_admin_login: {"valid_until_ms": now + token_lifetime} in, {"access_token"} out. The
// token has no device; the grant's expires_in_ms makes the pool replace it before
// valid_until_ms. Revocation is the ordinary POST /logout with the puppet token.
#include "matrix/synapse_admin_login.hpp"

#include <fmt/format.h>

#include <chrono>

#include "config/config.hpp"
#include "core/errc.hpp"
#include "core/percent_encoding.hpp"

namespace mxp::matrix {
namespace {

namespace asio = boost::asio;

std::int64_t wall_clock_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

class synapse_admin_login_strategy final : public login_strategy {
 public:
  explicit synapse_admin_login_strategy(const config::synapse_admin_login& method)
      : method_(method) {}

  std::string_view method_name() const override { return "synapse_admin"; }
  std::string login_type() const override { return "synapse_admin"; }

  asio::awaitable<upstream_result<login_grant>> login(net::http_client* http,
                                                      std::string user_id) override {
    const std::int64_t valid_until_ms = wall_clock_ms() + method_.token_lifetime.count();
    std::string body;
    json_writer{body}.begin_object().member("valid_until_ms", valid_until_ms).end_object();
    net::http_request request{
        .method = "POST",
        .target = "/_synapse/admin/v1/users/" + percent_encode(user_id) + "/login",
        .body = std::move(body),
        .bearer = &method_.admin_token};
    auto answer = co_await http->request(std::move(request));
    if (!answer) co_return transport_error(answer.error());
    auto grant =
        read_login_answer(*answer, user_id, true, fmt::format("admin login as {}", user_id));
    if (!grant) co_return std::move(grant);
    grant->device_id.reset();  // admin-minted tokens have none
    // Measured after the answer so the pool's now + expires_in_ms lands on valid_until_ms.
    grant->expires_in_ms = valid_until_ms - wall_clock_ms();
    if (*grant->expires_in_ms <= 0)
      co_return upstream_error{
          errc::upstream_bad_response,
          200,
          {},
          {},
          std::nullopt,
          fmt::format("admin login as {}: the token expired before it arrived", user_id)};
    co_return std::move(grant);
  }

 private:
  config::synapse_admin_login method_;
};

}  // namespace

std::unique_ptr<login_strategy> make_synapse_admin_login(
    const config::homeserver_config&, const config::synapse_admin_login& method) {
  return std::make_unique<synapse_admin_login_strategy>(method);
}

}  // namespace mxp::matrix
