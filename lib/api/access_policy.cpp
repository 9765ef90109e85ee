// access_policy: peer credentials, glob matching and the per-request decision.
#include "api/access_policy.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>

namespace mxp::api {

bool read_peer_credentials(int fd, peer_credentials& out) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred)
    return false;
  out.uid = cred.uid;
  out.gid = cred.gid;
  out.pid = cred.pid;
  out.groups.clear();
#ifdef SO_PEERGROUPS
  gid_t groups[64];
  len = sizeof groups;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
    out.groups.assign(groups, groups + len / sizeof(gid_t));
    // ERANGE (more than 64 groups): only the primary gid takes part in matching.
#endif
  return true;
}

access_policy::access_policy(std::optional<std::vector<config::client_config>> clients)
    : open_(!clients.has_value()) {
  if (clients) clients_ = std::move(*clients);
}

bool access_policy::covers(const config::client_config& c,
                           const peer_credentials& peer) const noexcept {
  if (c.uid) return *c.uid == peer.uid;
  if (c.gid)
    return *c.gid == peer.gid ||
           std::find(peer.groups.begin(), peer.groups.end(), *c.gid) != peer.groups.end();
  return false;
}

access_decision access_policy::allows(const peer_credentials* peer,
                                      std::string_view user_id) const noexcept {
  if (open_) return {true, nullptr};
  if (!peer) return {false, nullptr};
  access_decision d;
  for (const auto& c : clients_) {
    if (!covers(c, *peer)) continue;
    if (!d.client) d.client = &c.name;
    for (const auto& pattern : c.allow)
      if (glob_match(pattern, user_id)) return {true, &c.name};
  }
  return d;
}

bool access_policy::allows_every_user(const peer_credentials* peer) const noexcept {
  if (open_) return true;
  if (!peer) return false;
  for (const auto& c : clients_) {
    if (!covers(c, *peer)) continue;
    for (const auto& pattern : c.allow)
      if (!pattern.empty() && pattern.find_first_not_of('*') == std::string::npos) return true;
  }
  return false;
}

const config::client_config* access_policy::client_with_key(std::string_view key) const noexcept {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  ::SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest.data());
  const config::client_config* found = nullptr;
  for (const auto& c : clients_)  // no early exit: which entry matched does not show in the timing
    if (c.api_key_sha256 &&
        CRYPTO_memcmp(c.api_key_sha256->data(), digest.data(), digest.size()) == 0 && !found)
      found = &c;
  OPENSSL_cleanse(digest.data(), digest.size());
  return found;
}

access_decision access_policy::allows(const config::client_config& c,
                                      std::string_view user_id) const noexcept {
  for (const auto& pattern : c.allow)
    if (glob_match(pattern, user_id)) return {true, &c.name};
  return {false, &c.name};
}

access_decision access_policy::admits(const peer_credentials* peer) const noexcept {
  if (open_) return {true, nullptr};
  if (!peer) return {false, nullptr};
  for (const auto& c : clients_)
    if (covers(c, *peer)) return {true, &c.name};
  return {false, nullptr};
}

}  // namespace mxp::api
