// The `homeservers:` section: per server name, where the homeserver is, how to log in there and
// the limits of talking to it; parse_homeservers() reads it.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <string>

#include "config/external_inputs.hpp"
#include "config/login_methods.hpp"

namespace mxp::config {

class yaml_walker;  // config/yaml_walker.hpp: the parse functions below take it
struct field;

// How the bridge gateway puts a bridge's request on behalf of a user to this homeserver:
// `session`: with the user's pooled access token; `assert`: with the appservice's as_token and
// ?user_id= (appservice identity assertion; needs login.method: appservice).
enum class gateway_mode { session, assert_identity };

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
  std::size_t max_response_bytes = 1024 * 1024;            // body limit for answers
  gateway_mode gateway = gateway_mode::session;
  bool request_refresh_token = false;  // copied from sessions.refresh_tokens at load
  std::string fingerprint;             // the YAML of this entry as loaded, for reload comparisons
};

// Reads `homeservers:`, which must name at least one. ca_file and the login's secret files are
// left to the loading step (`inputs`).
void parse_homeservers(yaml_walker& yaml, const field& where,
                       std::map<std::string, homeserver_config>& out, input_requests& inputs);

}  // namespace mxp::config
