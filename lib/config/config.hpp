// daemon_config: the validated, typed form of mxpuppetd's YAML configuration, and
// load_config_file(), which refuses anything it does not understand. Loading is two steps: the
// parse (YAML -> daemon_config, no I/O; one file per section) and the loading step beside it
// (external_inputs: secret files, registrations, user and group names, API key hashes).
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/clients.hpp"
#include "config/gateway.hpp"
#include "config/homeservers.hpp"
#include "config/listen.hpp"
#include "config/login_methods.hpp"
#include "config/sessions.hpp"

namespace mxp::config {

struct daemon_config {
  std::string source_file;  // path the config was loaded from
  listen_config listen;
  std::map<std::string, homeserver_config> homeservers;  // keyed by server name
  sessions_config sessions;
  store_config store;
  // Access control of the socket API; nullopt (no `clients:` section): every peer may ask for
  // anything.
  std::optional<std::vector<client_config>> clients;
  log_config log;
  // The bridge gateway (a Matrix client-server proxy on loopback); nullopt: none.
  std::optional<gateway_config> gateway;
  // SIGTERM: callers answered, revoke_on_shutdown logouts done, the process gone within this.
  // Capped below the unit's TimeoutStopSec=30s, so systemd never has to SIGKILL.
  milliseconds shutdown_grace{std::chrono::seconds{10}};
};

struct load_result {
  std::optional<daemon_config> config;  // set only when errors is empty
  std::vector<std::string> errors;      // "FILE:LINE: KEY: what is wrong", one per problem
  std::vector<std::string>
      warnings;  // same form; loading still succeeds (e.g. a secret file readable by others)
};

// Loads and validates a YAML config file, including reading every secret file
// it names (paths relative to the config file's directory). Never throws.
load_result load_config_file(const std::string& path);

// Same, from YAML text; `source_name` is used in error messages and `base_dir`
// resolves relative secret paths.
load_result load_config_text(const std::string& yaml_text, const std::string& source_name,
                             const std::string& base_dir);

// Every key the loader accepts, as a dotted path read from the rules of the parse itself:
// "listen.tcp", "homeservers.*.login.issuer" (any server name), "clients[].allow" (any entry).
// The keys of every login method are under "homeservers.*.login". Section keys ("listen") are
// included. tests/unit/config_example_test.cpp checks config.example.yaml shows each of them.
std::set<std::string> known_keys();

}  // namespace mxp::config
