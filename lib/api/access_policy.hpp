// access_policy: who may ask the socket API for which user's token. A peer is known by
// its SO_PEERCRED credentials (plus SO_PEERGROUPS); `clients:` entries match it by uid or
// gid and list the user-ID globs it may request. No `clients:` section: everyone may.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace mxp::api {

// Credentials of the process at the other end of a connection, read once at accept.
struct peer_credentials {
  std::uint32_t uid = ~0U;
  std::uint32_t gid = ~0U;
  std::int32_t pid = 0;
  std::vector<std::uint32_t> groups;  // supplementary groups (SO_PEERGROUPS), may be empty
};

// Reads SO_PEERCRED and SO_PEERGROUPS of a connected AF_UNIX socket; false if that failed.
bool read_peer_credentials(int fd, peer_credentials& out);

// '*' matches any run of characters (':' included), '?' exactly one; everything else itself.
bool glob_match(std::string_view pattern, std::string_view text) noexcept;

struct access_decision {
  bool allowed = false;
  const std::string* client = nullptr;  // the entry that decided, or the first covering the peer; null if none
};

class access_policy {
 public:
  // nullopt: no `clients:` section, every peer is allowed everything.
  explicit access_policy(std::optional<std::vector<config::client_config>> clients);

  bool open() const noexcept { return open_; }
  // May this peer (null: unknown peer) have `user_id`'s token?
  access_decision allows(const peer_credentials* peer, std::string_view user_id) const noexcept;
  // Is this peer covered by any entry (for /v1/status, /v1/sessions, /metrics)?
  access_decision admits(const peer_credentials* peer) const noexcept;
  std::size_t size() const noexcept { return clients_.size(); }

 private:
  bool covers(const config::client_config& c, const peer_credentials& peer) const noexcept;
  std::vector<config::client_config> clients_;
  bool open_ = true;
};

}  // namespace mxp::api
