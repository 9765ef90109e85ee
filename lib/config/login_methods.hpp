// How mxpuppetd logs users in on one homeserver (`homeservers.NAME.login:`): the methods'
// settings, and parse_login() which reads them. Secret files and registrations are read by the
// loading step (external_inputs), which fills in the secret_string members.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/external_inputs.hpp"
#include "core/secret.hpp"

namespace mxp::config {

class yaml_walker;  // config/yaml_walker.hpp: the parse functions below take it
struct field;

using std::chrono::milliseconds;

enum class shared_secret_login_type {
  automatic,  // `auto`: read GET /login flows, prefer com.devture.shared_secret_auth
  devture,    // `com.devture.shared_secret_auth`: HMAC in "token"
  password,   // `m.login.password`: HMAC in "password"
};

struct shared_secret_login {
  secret_string secret;  // contents of secret_file, trailing newline stripped
  std::string secret_file;
  shared_secret_login_type login_type = shared_secret_login_type::automatic;
};

enum class jwt_flavor {
  synapse,  // Synapse's own jwt_config: {"type":"org.matrix.login.jwt","token":JWT}
  famedly,  // synapse-token-authenticator: {"type":"com.famedly.login.token",...}
};

// `method: jwt`: a fresh short-lived JWT is minted for every login.
struct jwt_login {
  jwt_flavor flavor = jwt_flavor::synapse;
  std::string algorithm;  // JOSE name as written: HS256..HS512, RS*, PS*, ES256..ES512, EdDSA
  // HS*: contents of secret_file (trailing newline stripped); others: the PEM text of
  // private_key_file. Whether the key fits the algorithm is checked by the JWT signer
  // when the homeserver client is built; `key_origin` names the key for that error.
  secret_string key;
  std::string key_file;                // resolved path of secret_file / private_key_file
  std::string key_origin;              // "FILE:LINE: homeservers.NAME.login.private_key_file"
  std::string subject_claim = "sub";   // flavor synapse only (jwt_config.subject_claim)
  std::optional<std::string> issuer;   // "iss" claim when set
  std::vector<std::string> audiences;  // "aud" claim: none, one (a string) or several
  milliseconds token_lifetime{std::chrono::seconds{60}};  // exp - iat, whole seconds
};

// `method: appservice`: m.login.application_service with the bridge's as_token.
struct appservice_login {
  secret_string as_token;         // from as_token_file, or the registration's as_token
  std::string as_token_file;      // resolved path, when given
  std::string registration_file;  // resolved path, when given
  // From a registration: namespaces.users[].regex as written, and compiled (ECMAScript).
  // A user ID is inside when a regex matches at its start (Python's re.match, as Synapse
  // does), or when it is the registration's sender. Empty (as_token_file): no local check.
  std::vector<std::string> user_regex_sources;
  std::vector<std::regex> user_regexes;
  std::string sender_localpart;  // the registration's sender_localpart, "" when none
};

// `method: synapse_admin`: POST /_synapse/admin/v1/users/{userId}/login with an admin token.
struct synapse_admin_login {
  secret_string admin_token;  // contents of admin_token_file, trailing newline stripped
  std::string admin_token_file;
  milliseconds token_lifetime{std::chrono::hours{24}};  // valid_until_ms = now + this
};

// `method: rest_backend`: mxpuppetd is the backend of ma1uta's rest_auth_provider module and
// logs in with m.login.password and a single-use nonce it issued (matrix/rest_backend.hpp).
// Homeservers naming the same backend_listen share one listener.
struct rest_backend_login {
  std::string listen_address;  // numeric loopback address, without brackets
  std::uint16_t listen_port = 0;
  milliseconds nonce_lifetime{std::chrono::seconds{60}};  // an unused nonce dies after this
};

// `method: mas`: personal sessions minted with matrix-authentication-service's admin API
// (matrix/mas_login.hpp), for homeservers that delegate auth to MAS.
struct mas_login {
  std::string mas_url;  // normalised, without trailing '/'
  std::string client_id;
  secret_string client_secret;  // contents of client_secret_file, trailing newline stripped
  std::string client_secret_file;
  milliseconds token_lifetime{std::chrono::hours{24}};  // expires_in of each personal session
  milliseconds renew_grace{std::chrono::seconds{60}};   // the old session lives on this long
  bool device_scope = false;  // add urn:matrix:client:device:<device_id> to the scope
  int device_scope_line = 0;  // where device_scope was set, for the device_id check
};

using login_config = std::variant<shared_secret_login, jwt_login, appservice_login,
                                  synapse_admin_login, rest_backend_login, mas_login>;

// Reads `homeservers.NAME.login:` (`where`) into `login`; the secret file or registration it
// names becomes a request for the loading step.
void parse_login(yaml_walker& yaml, const field& where, const std::string& homeserver,
                 login_config& login, input_requests& inputs);

// The `method:` values parse_login accepts, in the order its error message lists them.
std::vector<std::string_view> login_method_names();

}  // namespace mxp::config
