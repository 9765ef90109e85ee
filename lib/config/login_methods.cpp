// parse_login: `method:` first (it decides which other keys are valid), then that method's keys.
#include "config/login_methods.hpp"
#include "config/grammar.hpp"
#include "config/yaml_walker.hpp"

#include <algorithm>
#include <iterator>

namespace mxp::config {
namespace {

constexpr std::string_view jwt_algorithms[] = {"HS256", "HS384", "HS512", "RS256", "RS384",
                                               "RS512", "PS256", "PS384", "PS512", "ES256",
                                               "ES384", "ES512", "EdDSA"};

// Parses one method's map; request() leaves a secret file or registration to the loading step.
struct method_parser {
  yaml_walker& yaml;
  const field& where;
  const std::string& homeserver;
  input_requests& inputs;

  void request(input_kind kind, const field& f) {
    auto s = yaml.get_nonempty_string(f);
    if (!s) return;
    inputs.push_back({kind, yaml.reserve(f), std::move(*s), homeserver, 0});
  }

  shared_secret_login shared_secret() {
    shared_secret_login login;
    yaml.walk_map(where, {
                             {"method", true, [](const field&) {}},
                             {"secret_file", true,
                              [&](const field& f) { request(input_kind::login_secret, f); }},
                             {"login_type", false,
                              [&](const field& f) {
                                auto s = yaml.get_string(f);
                                if (!s) return;
                                if (*s == "auto")
                                  login.login_type = shared_secret_login_type::automatic;
                                else if (*s == "com.devture.shared_secret_auth")
                                  login.login_type = shared_secret_login_type::devture;
                                else if (*s == "m.login.password")
                                  login.login_type = shared_secret_login_type::password;
                                else
                                  yaml.error(f,
                                             "expected auto, com.devture.shared_secret_auth or "
                                             "m.login.password, got " +
                                                 echoed(*s));
                              }},
                         });
    return login;
  }

  jwt_login jwt() {
    jwt_login login;
    std::optional<field> algorithm_f, secret_f, private_key_f, subject_claim_f;
    yaml.walk_map(
        where,
        {
            {"method", true, [](const field&) {}},
            {"flavor", false,
             [&](const field& f) {
               auto s = yaml.get_string(f);
               if (!s) return;
               if (*s == "synapse")
                 login.flavor = jwt_flavor::synapse;
               else if (*s == "famedly")
                 login.flavor = jwt_flavor::famedly;
               else
                 yaml.error(f, "unknown flavor " + echoed(*s) + " (expected synapse or famedly)");
             }},
            {"algorithm", true,
             [&](const field& f) {
               auto s = yaml.get_string(f);
               if (!s) return;
               if (std::find(std::begin(jwt_algorithms), std::end(jwt_algorithms), *s) ==
                   std::end(jwt_algorithms)) {
                 yaml.error(f, "unknown algorithm " + echoed(*s) +
                                   " (expected HS256, HS384, HS512, RS256, RS384, RS512, PS256, "
                                   "PS384, PS512, ES256, ES384, ES512 or EdDSA)");
                 return;
               }
               login.algorithm = std::move(*s);
               algorithm_f = f;
             }},
            {"secret_file", false, [&](const field& f) { secret_f = f; }},
            {"private_key_file", false, [&](const field& f) { private_key_f = f; }},
            {"subject_claim", false,
             [&](const field& f) {
               if (auto s = yaml.get_nonempty_string(f)) {
                 login.subject_claim = std::move(*s);
                 subject_claim_f = f;
               }
             }},
            {"issuer", false,
             [&](const field& f) {
               if (auto s = yaml.get_nonempty_string(f)) login.issuer = std::move(*s);
             }},
            {"audiences", false,
             [&](const field& f) { yaml.read_string_list(f, login.audiences); }},
            {"token_lifetime", false,
             [&](const field& f) {
               yaml.read_duration(f, login.token_lifetime);
               if (login.token_lifetime < std::chrono::seconds{1}) {
                 yaml.error(f, "must be at least 1s (JWT times are whole seconds)");
                 login.token_lifetime = std::chrono::seconds{1};
               }
             }},
        });
    if (subject_claim_f && login.flavor == jwt_flavor::famedly && login.subject_claim != "sub")
      yaml.error(*subject_claim_f, "flavor famedly always reads the subject from 'sub'");
    if (algorithm_f) {
      // HS* take a shared secret from secret_file; the others a PEM key from private_key_file.
      const bool hmac = login.algorithm.starts_with("HS");
      const auto& wanted = hmac ? secret_f : private_key_f;
      const auto& other = hmac ? private_key_f : secret_f;
      const std::string wanted_key = hmac ? "secret_file" : "private_key_file";
      if (other) {
        yaml.error(*other, login.algorithm + " takes its key from " + wanted_key + ", not from " +
                               std::string{hmac ? "private_key_file" : "secret_file"});
      } else if (!wanted) {
        yaml.error({join(where.path, wanted_key), algorithm_f->line, {}},
                   "required key is missing (algorithm " + login.algorithm + ")");
      } else {
        request(input_kind::login_secret, *wanted);
      }
    }
    return login;
  }

  appservice_login appservice() {
    std::optional<field> token_f, registration_f;
    yaml.walk_map(where,
                  {
                      {"method", true, [](const field&) {}},
                      {"as_token_file", false, [&](const field& f) { token_f = f; }},
                      {"registration_file", false, [&](const field& f) { registration_f = f; }},
                  });
    if (token_f && registration_f)
      yaml.error(*registration_f, "give either as_token_file or registration_file, not both");
    else if (token_f)
      request(input_kind::login_secret, *token_f);
    else if (registration_f)
      request(input_kind::registration, *registration_f);
    else
      yaml.error({join(where.path, "as_token_file"), where.line, {}},
                 "required key is missing (or give registration_file)");
    return {};
  }

  synapse_admin_login synapse_admin() {
    synapse_admin_login login;
    yaml.walk_map(where,
                  {
                      {"method", true, [](const field&) {}},
                      {"admin_token_file", true,
                       [&](const field& f) { request(input_kind::login_secret, f); }},
                      {"token_lifetime", false,
                       [&](const field& f) {
                         yaml.read_duration(f, login.token_lifetime);
                         if (login.token_lifetime < std::chrono::minutes{1}) {
                           yaml.error(
                               f, "must be at least 1m (the token is replaced before it runs out)");
                           login.token_lifetime = std::chrono::minutes{1};
                         }
                       }},
                  });
    return login;
  }

  rest_backend_login rest_backend() {
    rest_backend_login login;
    yaml.walk_map(
        where, {
                   {"method", true, [](const field&) {}},
                   // Loopback only: the module sends users' real passwords to this address.
                   {"backend_listen", true,
                    [&](const field& f) {
                      auto s = yaml.get_nonempty_string(f);
                      if (!s) return;
                      std::string why;
                      auto ep = parse_loopback_endpoint(*s, why);
                      if (!ep) {
                        // The grammar's message speaks of listen.tcp.
                        if (const auto at = why.find("the TCP listener"); at != std::string::npos)
                          why.replace(at, 16, "the backend listener");
                        return yaml.error(f, why);
                      }
                      login.listen_address = std::move(ep->address);
                      login.listen_port = ep->port;
                    }},
                   {"nonce_lifetime", false,
                    [&](const field& f) {
                      yaml.read_duration(f, login.nonce_lifetime);
                      if (login.nonce_lifetime < std::chrono::seconds{1}) {
                        yaml.error(f, "must be at least 1s");
                        login.nonce_lifetime = std::chrono::seconds{1};
                      } else if (login.nonce_lifetime > std::chrono::minutes{10}) {
                        yaml.error(f, "must be at most 10m (a nonce lives for one login)");
                        login.nonce_lifetime = std::chrono::minutes{10};
                      }
                    }},
               });
    return login;
  }

  mas_login mas() {
    mas_login login;
    yaml.walk_map(where,
                  {
                      {"method", true, [](const field&) {}},
                      {"mas_url", true,
                       [&](const field& f) {
                         auto s = yaml.get_nonempty_string(f);
                         if (!s) return;
                         std::string why;
                         if (auto url = normalise_url(*s, why))
                           login.mas_url = std::move(*url);
                         else
                           yaml.error(f, echoed(*s) + " " + why);
                       }},
                      {"client_id", true,
                       [&](const field& f) {
                         if (auto s = yaml.get_nonempty_string(f)) login.client_id = std::move(*s);
                       }},
                      {"client_secret_file", true,
                       [&](const field& f) { request(input_kind::login_secret, f); }},
                      {"token_lifetime", false,
                       [&](const field& f) {
                         yaml.read_duration(f, login.token_lifetime);
                         if (login.token_lifetime < std::chrono::seconds{10}) {
                           yaml.error(
                               f, "must be at least 10s (the token is renewed before it runs out)");
                           login.token_lifetime = std::chrono::seconds{10};
                         }
                       }},
                      {"renew_grace", false,
                       [&](const field& f) { yaml.read_duration(f, login.renew_grace); }},
                      {"device_scope", false,
                       [&](const field& f) {
                         yaml.read_bool(f, login.device_scope);
                         login.device_scope_line = f.line;
                       }},
                  });
    return login;
  }
};

// The login methods: parse_login's dispatch, its error message and known_keys() read this table.
struct method_entry {
  std::string_view name;
  login_config (*parse)(method_parser&);
};
constexpr method_entry methods[] = {
    {"shared_secret", [](method_parser& p) -> login_config { return p.shared_secret(); }},
    {"jwt", [](method_parser& p) -> login_config { return p.jwt(); }},
    {"appservice", [](method_parser& p) -> login_config { return p.appservice(); }},
    {"synapse_admin", [](method_parser& p) -> login_config { return p.synapse_admin(); }},
    {"rest_backend", [](method_parser& p) -> login_config { return p.rest_backend(); }},
    {"mas", [](method_parser& p) -> login_config { return p.mas(); }},
};

}  // namespace

void parse_login(yaml_walker& yaml, const field& where, const std::string& homeserver,
                 login_config& login, input_requests& inputs) {
  const YAML::Node& node = where.value;
  if (!node.IsMap()) {
    yaml.error(where, std::string{"expected a map, got "} + kind_of(node));
    return;
  }
  std::optional<field> method_field;
  for (const auto& kv : node) {
    if (kv.first.IsScalar() && kv.first.Scalar() == "method") {
      method_field = field{join(where.path, "method"), line_of(kv.first, where.line), kv.second};
      break;
    }
  }
  if (!method_field) {
    yaml.error({join(where.path, "method"), where.line, {}}, "required key is missing");
    return;
  }
  if (method_field->value.IsNull()) {
    yaml.error(*method_field, "a value is required");
    return;
  }
  const auto method = yaml.get_string(*method_field);
  if (!method) return;
  method_parser parse{yaml, where, homeserver, inputs};
  const auto* m = std::find_if(std::begin(methods), std::end(methods),
                               [&](const method_entry& e) { return e.name == *method; });
  if (m != std::end(methods)) {
    login = m->parse(parse);
    return;
  }
  std::string expected;
  for (std::size_t i = 0; i < std::size(methods); ++i)
    expected += std::string{i == 0                        ? ""
                            : i + 1 == std::size(methods) ? " or "
                                                          : ", "} +
                std::string{methods[i].name};
  yaml.error(*method_field,
             "unknown login method " + echoed(*method) + " (expected " + expected + ")");
}

std::vector<std::string_view> login_method_names() {
  std::vector<std::string_view> out;
  for (const auto& m : methods) out.push_back(m.name);
  return out;
}

}  // namespace mxp::config
