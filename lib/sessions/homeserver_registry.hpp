// homeserver_registry: the homeservers the pool serves, by server name, with what the
// pool knows of each (its client, health, logins in flight). A reload adds, replaces
// and removes entries; a removed one is retired, not destroyed, while sessions and
// tasks may still point at it. Routing a user ID parses it once.
#pragma once

#include <boost/system/result.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "matrix/homeserver_client.hpp"
#include "sessions/homeserver_health.hpp"
#include "sessions/login_retry.hpp"
#include "sessions/session_clock.hpp"
#include "sessions/wait_queue.hpp"

namespace mxp::sessions {

struct homeserver_entry {
  // Shared: a task that is talking to the homeserver keeps its client even when a reload
  // replaces it.
  std::shared_ptr<matrix::homeserver_client> client;
  unsigned max_concurrent_logins = 4;
};

struct homeserver_state {
  homeserver_state(homeserver_entry e, health_options health_opts, session_clock& clock);
  homeserver_entry entry;
  bool removed = false;       // by a reload: its sessions are on their way out
  std::uint32_t version = 0;  // bumped when a reload gives it a new entry (URL, method)
  homeserver_health health;
  unsigned logins_in_flight = 0;
  wait_queue login_slot_freed;
  wait_queue probe_finished;  // the half-open circuit's probe is back (or gone)
};

class homeserver_registry {
 public:
  using map_type = std::map<std::string, std::unique_ptr<homeserver_state>, std::less<>>;

  homeserver_registry(session_clock& clock, health_options health) noexcept
      : clock_(&clock), health_(health) {}

  // The homeserver of a user ID: invalid_user_id / unknown_homeserver otherwise.
  boost::system::result<homeserver_state*, pool_error> route(std::string_view user_id) const;
  homeserver_state* find(std::string_view server_name) const;

  // Adds a homeserver or gives an existing one a new entry (health starts afresh).
  void put(const std::string& server_name, homeserver_entry entry);
  // Retires a homeserver: routing no longer finds it; nullptr when it was not there.
  homeserver_state* remove(const std::string& server_name);

  const map_type& active() const noexcept { return active_; }
  // Active and retired ones: everything a shutdown must wake and cancel.
  void for_each(const std::function<void(homeserver_state&)>& f);

 private:
  session_clock* clock_;
  health_options health_;
  map_type active_;
  std::vector<std::unique_ptr<homeserver_state>> retired_;
};

}  // namespace mxp::sessions
