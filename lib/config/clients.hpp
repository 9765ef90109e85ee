// The `clients:` section: who may ask the API for which user's token. parse_clients() reads
// it; check_client_keys() runs once the loading step has hashed the API keys.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/external_inputs.hpp"

namespace mxp::config {

class yaml_walker;  // config/yaml_walker.hpp: the parse functions below take it
struct field;

// One `clients:` entry: which peers it covers (at most one of uid, gid, user, group; names
// are resolved when the config is loaded), the API key it presents over TCP (api_key_file or
// api_key_sha256; at least one way of identifying it), and which user IDs it may ask for.
struct client_config {
  std::string name;
  std::optional<std::uint32_t> uid;  // from `uid:` or `user:`
  std::optional<std::uint32_t>
      gid;  // from `gid:` or `group:`; matches primary and supplementary groups
  std::vector<std::string> allow;  // globs on the full user ID: '*' any run, '?' one character
  // SHA-256 of the client's API key: given as `api_key_sha256`, or computed from the contents of
  // `api_key_file` (one trailing newline stripped). The key itself is not kept.
  std::optional<std::array<unsigned char, 32>> api_key_sha256;
  std::string api_key_file;  // resolved path, when given
  bool operator==(const client_config&) const = default;
};

// Reads an `allow:` list of user ID globs (at least one, each starting with '@' or a wildcard);
// `gateway.bridges[].allow` uses it too.
void read_allow(yaml_walker& yaml, const field& f, std::vector<std::string>& out);

// Reads `clients:` (a list). User and group names and API key files become requests for the
// loading step; `entries` gets where each entry is, for check_client_keys().
void parse_clients(yaml_walker& yaml, const field& where, std::vector<client_config>& clients,
                   input_requests& inputs, std::vector<source_location>& entries);

// Each client needs its own API key: reports an entry whose key an earlier entry has.
void check_client_keys(const std::vector<client_config>& clients,
                       const std::vector<source_location>& entries, diagnostics& diag);

}  // namespace mxp::config
