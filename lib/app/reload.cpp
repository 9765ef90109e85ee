// apply_reload: plan (config::plan_reload), build every new client, then change the daemon.
#include "app/reload.hpp"

#include <spdlog/spdlog.h>

#include <exception>
#include <map>
#include <memory>

#include "api/access_policy.hpp"
#include "app/options.hpp"
#include "config/reload_plan.hpp"
#include "matrix/homeserver_client.hpp"

namespace mxp::app {

sessions::homeserver_entry running_daemon_target::make_homeserver(
    const config::homeserver_config& hs) {
  return {matrix::make_homeserver_client(executor_, hs, backends_), hs.max_concurrent_logins};
}

void running_daemon_target::put_homeserver(const std::string& name,
                                           sessions::homeserver_entry entry) {
  pool_.put_homeserver(name, std::move(entry));
}

std::size_t running_daemon_target::remove_homeserver(const std::string& name) {
  return pool_.remove_homeserver(name);
}

void running_daemon_target::set_session_limits(const config::sessions_config& sessions) {
  const auto o = pool_options_from(sessions, nullptr, nullptr);
  pool_.set_limits(o.max_sessions, o.idle_timeout, o.revoke_on_evict, o.renewal,
                   o.background_refresh);
}

void running_daemon_target::set_access(
    const std::optional<std::vector<config::client_config>>& clients) {
  api_.set_access_policy(std::make_shared<const api::access_policy>(clients));
}

void running_daemon_target::set_log_level(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
}

void running_daemon_target::set_gateway(const config::daemon_config& cfg) {
  if (gateway_) gateway_->apply(cfg);
}

reload_outcome apply_reload(config::load_result loaded, config::daemon_config& current,
                            reload_target& target) {
  if (!loaded.config) {
    for (const auto& e : loaded.errors) spdlog::error("reload: {}", e);
    spdlog::error("reload rejected ({} error(s)): the running configuration stays in force",
                  loaded.errors.size());
    return reload_outcome::rejected;
  }
  for (const auto& w : loaded.warnings) spdlog::warn("reload: {}", w);
  auto& next = *loaded.config;
  const auto plan = config::plan_reload(current, next);
  // Every new client is built before anything changes: a key that does not fit rejects the whole
  // reload.
  std::map<std::string, sessions::homeserver_entry> replacements;
  try {
    for (const auto* names : {&plan.added, &plan.changed})
      for (const auto& name : *names)
        replacements.emplace(name, target.make_homeserver(next.homeservers.at(name)));
  } catch (const std::exception& e) {
    spdlog::error("reload rejected: {}: the running configuration stays in force", e.what());
    return reload_outcome::rejected;
  }
  for (const auto& name : plan.removed) {
    const auto n = target.remove_homeserver(name);
    spdlog::info("reload: homeserver {} removed ({} sessions evicted)", name, n);
  }
  for (auto& [name, entry] : replacements) {
    const bool added = !current.homeservers.contains(name);
    target.put_homeserver(name, std::move(entry));
    spdlog::info("reload: homeserver {} {}", name,
                 added ? "added" : "changed (its sessions are kept)");
  }
  if (plan.limits) target.set_session_limits(next.sessions);
  if (plan.access) target.set_access(next.clients);
  if (plan.log_level) target.set_log_level(next.log.level);
  if (plan.gateway) {
    try {
      target.set_gateway(config::in_force_after_reload(current, next));
      spdlog::info("reload: gateway settings applied (handles and sessions kept)");
    } catch (const std::exception& e) {
      spdlog::error("reload: gateway settings not applied: {}", e.what());
    }
  }
  if (plan.needs_restart)
    spdlog::warn("reload: listen, store and log.format changes take effect at the next restart");
  current = config::in_force_after_reload(current, std::move(next));
  spdlog::info("reload: configuration {} applied ({} homeserver(s))", current.source_file,
               current.homeservers.size());
  return reload_outcome::applied;
}

reload_outcome reload_config_file(const std::string& path, config::daemon_config& current,
                                  reload_target& target) {
  return apply_reload(config::load_config_file(path), current, target);
}

}  // namespace mxp::app
