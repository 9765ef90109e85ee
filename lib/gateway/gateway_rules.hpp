// gateway_rules: the bridge gateway's decisions without I/O. What the gateway knows from the
// config (bridges by token hash, login secrets, allow globs, each homeserver's URL and
// gateway_mode), how a request target splits (the /_hs/<server_name>/ prefix, user_id and
// org.matrix.msc3202.device_id in the query), the route class of a path, the login façade's
// body check (HMAC of a bridge's login secret, constant time) and the handle table.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/homeservers.hpp"
#include "core/secret.hpp"

namespace mxp::config {
struct daemon_config;
}

namespace mxp::gateway {

using std::chrono::milliseconds;

// What a request is, for metrics and logs: room sends (send, state, redact), media (uploads,
// downloads, thumbnails), /sync long-polls, everything else.
enum class route_class : std::uint8_t { send, media, sync, other };
inline constexpr std::size_t route_class_count = 4;
std::string_view to_string(route_class c) noexcept;
route_class classify_route(std::string_view path) noexcept;

// Paths the gateway serves at all: /_matrix/client/... and /_matrix/media/...
bool is_proxied_path(std::string_view path) noexcept;
// /_matrix/client/{v3,r0}/login, /logout, /logout/all
bool is_login_path(std::string_view path) noexcept;
bool is_logout_path(std::string_view path) noexcept;

struct bridge_entry {
  std::string name;
  std::array<unsigned char, 32> token_sha256{};
  secret_string login_secret;  // empty: no login façade for this bridge
  std::vector<std::string> allow;
};

struct homeserver_target {
  std::string server_name;
  std::string url;      // base URL; empty: not reachable through the gateway (no url: set)
  std::string ca_file;  // "" : system store
  config::gateway_mode mode = config::gateway_mode::session;
  secret_string as_token;  // assert mode: the appservice's as_token
  milliseconds connect_timeout{std::chrono::seconds{10}};
};

struct gateway_settings {
  std::vector<bridge_entry> bridges;
  std::map<std::string, homeserver_target, std::less<>> homeservers;
  std::string default_homeserver;  // "" : none
  milliseconds request_timeout{std::chrono::seconds{120}};
  std::size_t max_body_bytes = 100 * 1024 * 1024;

  // The bridge whose token this is (SHA-256 compared in constant time against every bridge).
  const bridge_entry* bridge_by_token(std::string_view token) const noexcept;
  // The bridge whose login secret gives `hmac_hex` for `user_id` (every bridge is checked, in
  // constant time each), or nullptr.
  const bridge_entry* bridge_by_login(std::string_view user_id, std::string_view hmac_hex) const;
  const bridge_entry* bridge_named(std::string_view name) const noexcept;
  const homeserver_target* homeserver(std::string_view name) const noexcept;
};

bool allows(const bridge_entry& b, std::string_view user_id) noexcept;

// The gateway's part of a loaded config (gateway: and each homeserver's URL, mode, as_token).
gateway_settings settings_from(const config::daemon_config& cfg);

// A request target taken apart: an optional /_hs/<server_name>/ prefix (stripped), the path
// and the query without user_id and org.matrix.msc3202.device_id (kept aside, decoded).
struct split_target {
  std::string routed_homeserver;       // from the prefix; "" when none
  std::string path;                    // "/_matrix/client/v3/..."
  std::string query;                   // without '?', user_id and the MSC3202 device_id removed
  std::optional<std::string> user_id;  // ?user_id=, percent-decoded
  bool had_device_id = false;
};
// nullopt: a malformed target (bad prefix or escape).
std::optional<split_target> split(std::string_view target);
// path + "?" + query (+ "user_id=..." when `user_id` is given), as it goes upstream.
std::string join_target(const split_target& t, const std::string* user_id);

// The login façade: what a POST /login body asks for. nullopt: not a shared-secret login the
// gateway can check (passed through to the homeserver).
struct login_request {
  std::string user;        // identifier.user (or legacy top-level user), full ID or localpart
  std::string credential;  // token (devture) or password (m.login.password)
  std::string type;
  std::optional<std::string> device_id;
};
std::optional<login_request> parse_login_body(std::string_view body);

// GET /login's answer.
std::string_view login_flows_body() noexcept;

// Handles (`mxpg_…`): 192 random bits, stored only as SHA-256 hex. Each stands for (bridge,
// user) until the bridge logs it out.
struct handle_entry {
  std::string bridge;
  std::string user_id;
  std::int64_t created_at_ms = 0;
  std::int64_t last_used_at_ms = 0;
};

class handle_table {
 public:
  // A new handle for (bridge, user); returns the handle itself (the only time it exists in
  // clear) and its hash for the store.
  std::pair<secret_string, std::string> issue(std::string bridge, std::string user_id,
                                              std::int64_t now_ms);
  void adopt(std::string sha256_hex, handle_entry e) { table_[std::move(sha256_hex)] = e; }
  // The entry of a presented handle (its last use updated), or nullptr.
  handle_entry* find(std::string_view handle, std::int64_t now_ms);
  // Forgets a presented handle; returns its hash ("" when unknown).
  std::string forget(std::string_view handle);
  std::size_t size() const noexcept { return table_.size(); }
  const std::unordered_map<std::string, handle_entry>& entries() const noexcept { return table_; }

  static bool looks_like_handle(std::string_view token) noexcept {
    return token.starts_with("mxpg_");
  }
  static std::string hash_hex(std::string_view handle);

 private:
  std::unordered_map<std::string, handle_entry> table_;
};

}  // namespace mxp::gateway
