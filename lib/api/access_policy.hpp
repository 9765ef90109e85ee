// access_policy: who may ask the socket API for which user's token. A Unix-socket peer is
// known by its SO_PEERCRED credentials (plus SO_PEERGROUPS), matched by an entry's uid or gid;
// a TCP client by the API key it presents, matched by the key's SHA-256. `clients:` entries
// list the user-ID globs they may request. No `clients:` section: every Unix peer may (TCP
// clients never get in without a key).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/glob.hpp"

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
using mxp::glob_match;

struct access_decision {
  bool allowed = false;
  const std::string* client =
      nullptr;  // the entry that decided, or the first covering the peer; null if none
};

class access_policy {
 public:
  // nullopt: no `clients:` section, every peer is allowed everything.
  explicit access_policy(std::optional<std::vector<config::client_config>> clients);

  bool open() const noexcept { return open_; }
  // May this peer (null: unknown peer) have `user_id`'s token?
  access_decision allows(const peer_credentials* peer, std::string_view user_id) const noexcept;
  // Does allows(peer, id) hold for every user ID (an open policy, or an entry covering the peer
  // with a glob of only '*')? A connection's peer never changes: decided once per connection.
  bool allows_every_user(const peer_credentials* peer) const noexcept;
  // Is this peer covered by any entry (for /v1/status, /v1/sessions, /metrics)?
  access_decision admits(const peer_credentials* peer) const noexcept;
  std::size_t size() const noexcept { return clients_.size(); }

  // The entry whose API key is `key` (TCP listener), or null. Every entry's SHA-256 digest is
  // compared with CRYPTO_memcmp, so the time taken says nothing about the keys.
  const config::client_config* client_with_key(std::string_view key) const noexcept;
  // May the entry `c` (found by its API key) have `user_id`'s token? Its globs, as for a Unix peer.
  access_decision allows(const config::client_config& c, std::string_view user_id) const noexcept;

 private:
  bool covers(const config::client_config& c, const peer_credentials& peer) const noexcept;
  std::vector<config::client_config> clients_;
  bool open_ = true;
};

}  // namespace mxp::api
