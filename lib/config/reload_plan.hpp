// reload_plan: what differs between the configuration in force and a newly loaded one, as far as
// a running daemon can apply it (SIGHUP). Pure: comparing two daemon_configs does no I/O.
#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"

namespace mxp::config {

// Would a client built from `a` behave like one built from `b`? (Same settings and same
// secret material: a rotated secret file counts as a change.)
bool same_homeserver(const homeserver_config& a, const homeserver_config& b);

struct reload_plan {
  std::vector<std::string> added;    // homeservers new in the config
  std::vector<std::string> changed;  // homeservers whose client must be rebuilt (sessions kept)
  std::vector<std::string> removed;  // homeservers gone (their sessions are evicted)
  bool limits = false;               // the session pool's limits and renewal settings differ
  bool access = false;               // `clients:` differs
  bool log_level = false;            // log.level differs
  // The running gateway's settings differ: `gateway:` (but its listen addresses) or a homeserver
  // (URL, gateway_mode, as_token). Handles and sessions are kept.
  bool gateway = false;
  // listen.unix_socket, socket_mode or tcp, store.path, log.format, gateway.listen or whether
  // there is a gateway at all differ: these, like the rest of `listen:`, stay as they are until
  // the next restart.
  bool needs_restart = false;

  // Nothing to change in the running daemon.
  bool empty() const noexcept {
    return added.empty() && changed.empty() && removed.empty() && !limits && !access &&
           !log_level && !gateway;
  }
};

// What applying `next` over `current` changes. Homeserver names come out sorted.
reload_plan plan_reload(const daemon_config& current, const daemon_config& next);

// `next` as it is in force once applied: `listen:`, `store:`, log.format, gateway.listen and
// whether there is a gateway stay `current`'s.
daemon_config in_force_after_reload(const daemon_config& current, daemon_config next);

}  // namespace mxp::config
