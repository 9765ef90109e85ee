// nonce_book: issuing (RAND_bytes), constant-time redemption and expiry of login nonces.
#include "credentials/nonce_book.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "credentials/base64url.hpp"

namespace mxp::credentials {

namespace {
// Nonces are withdrawn when their login ends, so the book holds the logins in flight; a sweep
// past this size only guards against a caller that forgets to withdraw.
constexpr std::size_t sweep_above = 1024;
}  // namespace

secret_string nonce_book::issue(std::string_view user_id, std::int64_t now_ms,
                                std::int64_t lifetime_ms) {
  unsigned char bytes[nonce_chars * 3 / 4];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    throw std::runtime_error("no random bytes for a login nonce (RAND_bytes failed)");
  std::string text;
  text.reserve(nonce_chars);
  append_base64url(text, bytes, sizeof bytes);
  OPENSSL_cleanse(bytes, sizeof bytes);
  if (nonces_.size() > sweep_above) drop_expired(now_ms);
  secret_string nonce{std::move(text)};
  nonces_.insert_or_assign(std::string{user_id}, entry{nonce, now_ms + lifetime_ms});
  return nonce;
}

bool nonce_book::redeem(std::string_view user_id, std::string_view password, std::int64_t now_ms) {
  // Heterogeneous lookup needs C++20's transparent unordered_map; one short string is cheap.
  const auto it = nonces_.find(std::string{user_id});
  if (it == nonces_.end()) return false;
  if (now_ms >= it->second.expires_at_ms) {
    nonces_.erase(it);
    return false;
  }
  const auto& nonce = it->second.nonce.reveal();
  if (password.size() != nonce.size() ||
      CRYPTO_memcmp(password.data(), nonce.data(), nonce.size()) != 0)
    return false;  // a wrong guess leaves the nonce for the login it belongs to
  nonces_.erase(it);
  return true;
}

void nonce_book::withdraw(std::string_view user_id) {
  if (const auto it = nonces_.find(std::string{user_id}); it != nonces_.end()) nonces_.erase(it);
}

void nonce_book::drop_expired(std::int64_t now_ms) {
  std::erase_if(nonces_, [&](const auto& kv) { return now_ms >= kv.second.expires_at_ms; });
}

}  // namespace mxp::credentials
