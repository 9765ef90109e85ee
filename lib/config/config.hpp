// daemon_config: the validated, typed form of mxpuppetd's YAML configuration,
// and load_config(), which refuses anything it does not understand.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/secret.hpp"

namespace mxp::config {

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

// Further login methods (jwt, appservice, synapse_admin) join this variant.
using login_config = std::variant<shared_secret_login>;

struct homeserver_config {
  std::string server_name;  // the map key, e.g. "example.com" or "localhost:8448"
  std::string url;          // base URL without trailing '/'; empty -> .well-known discovery
  std::string ca_file;      // optional PEM bundle; empty -> system CA store
  login_config login;
  std::string device_id = "MXPUPPETD";
  std::string device_display_name = "mxpuppetd double puppet";
  unsigned max_concurrent_logins = 4;
  milliseconds request_timeout{std::chrono::seconds{20}};  // one homeserver request
  milliseconds connect_timeout{std::chrono::seconds{10}};  // TCP connect + TLS handshake
  std::size_t max_response_bytes = 1024 * 1024;             // body limit for answers
};

struct listen_config {
  std::string unix_socket = "/run/mxpuppetd/mxpuppetd.sock";
  unsigned socket_mode = 0660;
  milliseconds request_timeout{std::chrono::seconds{30}};  // whole API request, retries included
  milliseconds idle_timeout{std::chrono::seconds{60}};     // keep-alive connection idle
  std::size_t max_header_bytes = 8 * 1024;
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_connections = 1024;
};

struct sessions_config {
  std::size_t max = 100'000;
  milliseconds idle_timeout{std::chrono::hours{24 * 7}};
  bool revoke_on_evict = true;
  bool revoke_on_shutdown = false;
};

struct log_config {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
};

struct daemon_config {
  std::string source_file;  // path the config was loaded from
  listen_config listen;
  std::map<std::string, homeserver_config> homeservers;  // keyed by server name
  sessions_config sessions;
  log_config log;
};

struct load_result {
  std::optional<daemon_config> config;  // set only when errors is empty
  std::vector<std::string> errors;      // "FILE:LINE: KEY: what is wrong", one per problem
};

// Loads and validates a YAML config file, including reading every secret file
// it names (paths relative to the config file's directory). Never throws.
load_result load_config_file(const std::string& path);

// Same, from YAML text; `source_name` is used in error messages and `base_dir`
// resolves relative secret paths.
load_result load_config_text(const std::string& yaml_text, const std::string& source_name,
                             const std::string& base_dir);

}  // namespace mxp::config
