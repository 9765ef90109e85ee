// nonce_book: the single-use login nonces of `method: rest_backend`, one per user ID, issued
// before a login and redeemed (at most once, before they expire) by the backend listener when
// the homeserver's REST module asks. No I/O, no clock of its own: callers pass the time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/secret.hpp"

namespace mxp::credentials {

class nonce_book {
 public:
  // 24 random bytes (192 bits, OpenSSL's RAND_bytes) as 32 base64url characters.
  static constexpr std::size_t nonce_chars = 32;

  // A fresh nonce for exactly `user_id`, valid until now_ms + lifetime_ms; it replaces any
  // earlier nonce of that user. Throws std::runtime_error when no random bytes can be had.
  secret_string issue(std::string_view user_id, std::int64_t now_ms, std::int64_t lifetime_ms);

  // True at most once per issued nonce: `password` is the unexpired nonce issued for exactly
  // `user_id` (compared in constant time). A match consumes it; an expired one is dropped.
  // Anything else (another user, a case variant, a wrong or used nonce) is false.
  bool redeem(std::string_view user_id, std::string_view password, std::int64_t now_ms);

  // The login that asked for `user_id`'s nonce is over: an unused nonce dies with it.
  void withdraw(std::string_view user_id);

  std::size_t size() const noexcept { return nonces_.size(); }

 private:
  struct entry {
    secret_string nonce;
    std::int64_t expires_at_ms = 0;
  };
  void drop_expired(std::int64_t now_ms);

  std::unordered_map<std::string, entry> nonces_;  // user ID -> its one outstanding nonce
};

}  // namespace mxp::credentials
