// The `gateway:` section: the bridge gateway's loopback listeners, its limits and the bridges
// that may use it (their token, optional login secret and allowed users); parse_gateway() reads
// it and check_gateway() runs the checks that need the whole loaded file.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "config/external_inputs.hpp"
#include "config/listen.hpp"
#include "core/secret.hpp"

namespace mxp::config {

class yaml_walker;  // config/yaml_walker.hpp: the parse functions below take it
struct field;
struct daemon_config;

// One `gateway.bridges` entry. The bridge token is kept only as its SHA-256 (from token_file,
// one trailing newline stripped, or token_sha256); the login secret (optional: login-based
// bridges) is kept as read, for the HMAC check.
struct gateway_bridge_config {
  std::string name;
  std::optional<std::array<unsigned char, 32>> token_sha256;
  std::string token_file;  // resolved path, when given
  secret_string login_secret;
  std::string login_secret_file;   // resolved path, when given
  std::vector<std::string> allow;  // user ID globs: '*' any run, '?' one character
  bool operator==(const gateway_bridge_config&) const = default;
};

struct gateway_config {
  std::vector<tcp_listen_config> listen;  // loopback addresses only
  std::string default_homeserver;         // empty: the only homeserver, when there is one
  milliseconds request_timeout{std::chrono::seconds{120}};  // one proxied exchange, /sync fits
  std::size_t max_body_bytes = 100 * 1024 * 1024;           // request bodies (uploads)
  std::vector<gateway_bridge_config> bridges;
  bool operator==(const gateway_config&) const = default;
};

// Reads `gateway:`. Token and login secret files become requests for the loading step;
// `bridge_at` gets where each bridge entry is, `default_at` where default_homeserver is.
void parse_gateway(yaml_walker& yaml, const field& where, gateway_config& g, input_requests& inputs,
                   std::vector<source_location>& bridge_at,
                   std::optional<source_location>& default_at);

// Once loaded: default_homeserver names a homeserver (or there is only one), each bridge has its
// own token, gateway_mode: assert only with an appservice login.
void check_gateway(const daemon_config& cfg, const std::vector<source_location>& bridge_at,
                   const std::optional<source_location>& default_at, diagnostics& diag);

}  // namespace mxp::config
