// HMAC-SHA512 for shared-secret login, on OpenSSL's one-shot HMAC().
#include "credentials/shared_secret.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdexcept>

namespace mxp::credentials {

secret_string shared_secret_token(const secret_string& secret, std::string_view full_user_id) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  const auto& key = secret.reveal();
  if (!HMAC(EVP_sha512(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(full_user_id.data()), full_user_id.size(), mac,
            &mac_len))
    throw std::runtime_error("HMAC-SHA512 failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(mac_len * 2, '\0');
  for (unsigned i = 0; i < mac_len; ++i) {
    out[2 * i] = hex[mac[i] >> 4];
    out[2 * i + 1] = hex[mac[i] & 0xf];
  }
  OPENSSL_cleanse(mac, sizeof mac);
  return secret_string{std::move(out)};
}

}  // namespace mxp::credentials
