// The loading step beside the parse: everything a config names outside itself. The parse only
// records what to fetch (input_request, in document order); load_external_inputs() then reads
// the secret files (lib/credentials), the CA file and appservice registrations, resolves user and
// group names through NSS and hashes API keys, and stores the results in the config.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "config/diagnostics.hpp"

namespace mxp::config {

struct daemon_config;

enum class input_kind {
  socket_owner,         // listen.socket_owner: a user name
  socket_group,         // listen.socket_group: a group name
  ca_file,              // homeservers.NAME.ca_file: must be a readable regular file
  login_secret,         // the secret file of homeservers.NAME.login (which one: its method)
  registration,         // homeservers.NAME.login.registration_file (method appservice)
  client_user,          // clients[i].user
  client_group,         // clients[i].group
  client_api_key,       // clients[i].api_key_file: read, checked, kept as its SHA-256
  bridge_token,         // gateway.bridges[i].token_file: read, checked, kept as its SHA-256
  bridge_login_secret,  // gateway.bridges[i].login_secret_file: read and kept
};

struct input_request {
  input_kind kind;
  source_location at;      // the key that names it; problems are reported there
  std::string value;       // as written in the config
  std::string homeserver;  // ca_file, login_secret, registration
  std::size_t client = 0;  // client_*: index in daemon_config::clients; bridge_*: in bridges
};

using input_requests = std::vector<input_request>;

// Performs `requests` in order, filling in `cfg`; problems go to `diag` at each request's place.
// Relative paths are relative to `base_dir`; bare secret names may come from
// $CREDENTIALS_DIRECTORY.
void load_external_inputs(const input_requests& requests, daemon_config& cfg,
                          const std::filesystem::path& base_dir, diagnostics& diag);

}  // namespace mxp::config
