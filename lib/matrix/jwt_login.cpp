// jwt_login: request bodies of the two JWT login flavors.
//   synapse: {"type":"org.matrix.login.jwt","token":JWT,device...}, <subject_claim> = localpart
//   famedly: {"type":"com.famedly.login.token","identifier":{"type":"m.id.user","user":localpart},
//             "token":JWT,device...}, sub = localpart
#include "matrix/jwt_login.hpp"

#include <fmt/format.h>

#include <chrono>
#include <stdexcept>

#include "config/config.hpp"
#include "core/errc.hpp"
#include "credentials/jwt.hpp"
#include "matrix/user_id.hpp"

namespace mxp::matrix {
namespace {

namespace asio = boost::asio;

constexpr std::string_view synapse_type = "org.matrix.login.jwt";
constexpr std::string_view famedly_type = "com.famedly.login.token";

credentials::jwt_signer make_signer(const config::jwt_login& method) {
  const auto alg = credentials::parse_jwt_algorithm(method.algorithm);
  if (!alg)  // the config loader accepts only known names
    throw std::runtime_error(
        fmt::format("{}: unknown JWT algorithm '{}'", method.key_origin, method.algorithm));
  auto signer = credentials::jwt_signer::create(*alg, method.key);
  if (!signer) throw std::runtime_error(fmt::format("{}: {}", method.key_origin, signer.error()));
  return *std::move(signer);  // checked above (a string error has no value() to throw)
}

class jwt_login_strategy final : public login_strategy {
 public:
  jwt_login_strategy(const config::homeserver_config& hs, const config::jwt_login& method)
      : device_(hs),
        famedly_(method.flavor == config::jwt_flavor::famedly),
        signer_(make_signer(method)) {
    claims_template_.subject_claim = method.subject_claim;
    claims_template_.issuer = method.issuer;
    claims_template_.audiences = method.audiences;
    claims_template_.lifetime =
        std::chrono::duration_cast<std::chrono::seconds>(method.token_lifetime);
  }

  std::string_view method_name() const override { return "jwt"; }
  std::string login_type() const override {
    return std::string{famedly_ ? famedly_type : synapse_type};
  }

  asio::awaitable<upstream_result<login_grant>> login(net::http_client* http,
                                                      std::string user_id) override {
    const auto parts = parse_user_id(user_id);
    if (!parts) co_return malformed_user_id(user_id);
    credentials::jwt_claims claims = claims_template_;
    claims.subject = std::string{parts->localpart};
    secret_string body_secret;
    {
      const secret_string jwt =
          credentials::mint_jwt(signer_, claims, std::chrono::system_clock::now());
      std::string body;
      json_writer w{body};
      w.begin_object().member("type", famedly_ ? famedly_type : synapse_type);
      if (famedly_)
        w.key("identifier")
            .begin_object()
            .member("type", "m.id.user")
            .member("user", claims.subject)
            .end_object();
      w.member("token", jwt.reveal());
      write_device_members(w, device_);
      w.end_object();
      body_secret = secret_string{std::move(body)};  // carries the JWT: wiped after use
    }
    net::http_request request{
        .method = "POST", .target = "/_matrix/client/v3/login", .body = body_secret.reveal()};
    auto answer = co_await http->request(std::move(request));
    if (!answer) co_return transport_error(answer.error());
    co_return read_login_answer(
        *answer, user_id, false,
        fmt::format("{} login of {}", famedly_ ? famedly_type : synapse_type, user_id));
  }

 private:
  device_fields device_;
  bool famedly_;
  credentials::jwt_signer signer_;
  credentials::jwt_claims claims_template_;
};

}  // namespace

std::unique_ptr<login_strategy> make_jwt_login(const config::homeserver_config& hs,
                                               const config::jwt_login& method) {
  return std::make_unique<jwt_login_strategy>(hs, method);
}

}  // namespace mxp::matrix
