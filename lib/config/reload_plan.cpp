// plan_reload and same_homeserver: the comparison behind SIGHUP.
#include "config/reload_plan.hpp"

#include <type_traits>
#include <variant>

namespace mxp::config {
namespace {

// The secret material a login method was loaded with (files are read at load time).
const secret_string& secret_of(const login_config& login) {
  return std::visit(
      [](const auto& m) -> const secret_string& {
        using method_t = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<method_t, shared_secret_login>)
          return m.secret;
        else if constexpr (std::is_same_v<method_t, jwt_login>)
          return m.key;
        else if constexpr (std::is_same_v<method_t, appservice_login>)
          return m.as_token;
        else if constexpr (std::is_same_v<method_t, synapse_admin_login>)
          return m.admin_token;
        else if constexpr (std::is_same_v<method_t, mas_login>)
          return m.client_secret;
        else {  // rest_backend: no secret, its settings are in the fingerprint
          static const secret_string none;
          return none;
        }
      },
      login);
}

// The settings the session pool takes from `sessions:` (set_limits).
bool same_limits(const sessions_config& a, const sessions_config& b) {
  return a.max == b.max && a.idle_timeout == b.idle_timeout &&
         a.revoke_on_evict == b.revoke_on_evict && a.refresh_margin == b.refresh_margin &&
         a.validate_after == b.validate_after && a.refresh == b.refresh;
}

}  // namespace

bool same_homeserver(const homeserver_config& a, const homeserver_config& b) {
  if (a.fingerprint != b.fingerprint || a.request_refresh_token != b.request_refresh_token ||
      a.login.index() != b.login.index())
    return false;
  if (const auto* asa = std::get_if<appservice_login>(&a.login)) {  // the registration may change
    const auto& asb = std::get<appservice_login>(b.login);
    if (asa->user_regex_sources != asb.user_regex_sources ||
        asa->sender_localpart != asb.sender_localpart)
      return false;
  }
  return secret_of(a.login) == secret_of(b.login);
}

reload_plan plan_reload(const daemon_config& current, const daemon_config& next) {
  reload_plan plan;
  for (const auto& [name, hs] : next.homeservers) {
    const auto old = current.homeservers.find(name);
    if (old == current.homeservers.end())
      plan.added.push_back(name);
    else if (!same_homeserver(old->second, hs))
      plan.changed.push_back(name);
  }
  for (const auto& [name, _] : current.homeservers)
    if (!next.homeservers.contains(name)) plan.removed.push_back(name);
  plan.limits = !same_limits(current.sessions, next.sessions);
  plan.access = current.clients != next.clients;
  plan.log_level = current.log.level != next.log.level;
  const bool gateway_listen_changed =
      current.gateway.has_value() != next.gateway.has_value() ||
      (current.gateway && current.gateway->listen != next.gateway->listen);
  plan.gateway = current.gateway && next.gateway &&
                 (*current.gateway != *next.gateway || !plan.added.empty() ||
                  !plan.changed.empty() || !plan.removed.empty());
  plan.needs_restart = next.listen.unix_socket != current.listen.unix_socket ||
                       next.listen.socket_mode != current.listen.socket_mode ||
                       next.listen.tcp != current.listen.tcp ||
                       next.store.path != current.store.path ||
                       next.log.format != current.log.format || gateway_listen_changed;
  return plan;
}

daemon_config in_force_after_reload(const daemon_config& current, daemon_config next) {
  next.listen = current.listen;
  next.store = current.store;
  next.log.format = current.log.format;
  if (!current.gateway || !next.gateway)
    next.gateway = current.gateway;
  else
    next.gateway->listen = current.gateway->listen;
  return next;
}

}  // namespace mxp::config
