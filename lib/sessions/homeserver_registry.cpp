// homeserver_registry: routing and reload of the pool's homeservers.
#include "sessions/homeserver_registry.hpp"

#include "core/errc.hpp"
#include "matrix/user_id.hpp"

namespace mxp::sessions {

homeserver_state::homeserver_state(homeserver_entry e, health_options health_opts,
                                   session_clock& clock)
    : entry(std::move(e)), health(health_opts), login_slot_freed(clock), probe_finished(clock) {
  if (entry.max_concurrent_logins == 0) entry.max_concurrent_logins = 1;
}

boost::system::result<homeserver_state*, pool_error> homeserver_registry::route(
    std::string_view user_id) const {
  auto parts = matrix::parse_user_id(user_id);
  if (!parts) return local_error(errc::invalid_user_id, "malformed user ID");
  if (auto* hs = find(parts->server_name)) return hs;
  return local_error(errc::unknown_homeserver, "no homeserver configured for server name '" +
                                                   std::string{parts->server_name} + "'");
}

homeserver_state* homeserver_registry::find(std::string_view server_name) const {
  auto it = active_.find(server_name);
  return it == active_.end() ? nullptr : it->second.get();
}

void homeserver_registry::put(const std::string& server_name, homeserver_entry entry) {
  auto it = active_.find(server_name);
  if (it == active_.end()) {
    active_.emplace(server_name,
                    std::make_unique<homeserver_state>(std::move(entry), health_, *clock_));
    return;
  }
  auto& hs = *it->second;
  if (entry.max_concurrent_logins == 0) entry.max_concurrent_logins = 1;
  hs.entry = std::move(entry);  // running tasks hold the old client until they finish
  ++hs.version;                 // what callers rendered from the old client is stale
  hs.health = homeserver_health{health_};
  hs.login_slot_freed.notify_all();  // a higher cap lets waiting logins go
}

homeserver_state* homeserver_registry::remove(const std::string& server_name) {
  auto it = active_.find(server_name);
  if (it == active_.end()) return nullptr;
  auto* state = it->second.get();
  state->removed = true;
  retired_.push_back(std::move(it->second));
  active_.erase(it);
  return state;
}

void homeserver_registry::for_each(const std::function<void(homeserver_state&)>& f) {
  for (auto& [_, hs] : active_) f(*hs);
  for (auto& hs : retired_) f(*hs);
}

}  // namespace mxp::sessions
