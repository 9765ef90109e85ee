// JWT (RFC 7519) minting for the `jwt` login method: a signer per configured key
// (HS*/RS*/PS*/ES*/EdDSA over OpenSSL's EVP interface) and the claims of one login.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/result.hpp>

#include "core/secret.hpp"

struct evp_pkey_st;  // EVP_PKEY, kept out of this header

namespace mxp::credentials {

// The JWS "alg" values RFC 7518 section 3.1 and RFC 8037 define for signatures.
enum class jwt_algorithm {
  HS256,
  HS384,
  HS512,
  RS256,
  RS384,
  RS512,
  PS256,
  PS384,
  PS512,
  ES256,
  ES384,
  ES512,
  EdDSA
};

// Exact, case-sensitive JOSE names ("HS256", "EdDSA"); nullopt for anything else ("none" too).
std::optional<jwt_algorithm> parse_jwt_algorithm(std::string_view name);
std::string_view to_string(jwt_algorithm alg);

// Signs compact JWS tokens with one key. Immutable after create(). Move-only; a moved-from
// signer may only be destroyed or assigned to.
class jwt_signer {
 public:
  // HS*: `key_material` is the raw secret, any non-empty byte string except PEM text
  // (verifiers refuse that as an HMAC key). Other algorithms:
  // a PEM private key, PKCS#8 ("PRIVATE KEY") or traditional ("RSA PRIVATE KEY",
  // "EC PRIVATE KEY"), unencrypted. The key must fit the algorithm: RS*/PS* an RSA key of
  // at least 2048 bits; ES256 P-256, ES384 P-384, ES512 P-521; EdDSA Ed25519 or Ed448.
  // The key is test-signed once here, so sign() only fails if OpenSSL itself does.
  // On refusal returns a message for operators; it never contains key material.
  static boost::system::result<jwt_signer, std::string> create(jwt_algorithm alg,
                                                               const secret_string& key_material);

  jwt_signer(jwt_signer&&) noexcept;
  jwt_signer& operator=(jwt_signer&&) noexcept;
  ~jwt_signer();

  // The compact JWS of header {"alg":"<alg>","typ":"JWT"} and `payload_json` (the
  // serialised claims, signed as given): header.payload.signature, all base64url.
  // Throws std::runtime_error only on an OpenSSL failure (out of memory).
  std::string sign(std::string_view payload_json) const;

  // The raw JWS signature (RFC 7518 form: R||S for ES*, not DER) of `signing_input`,
  // i.e. of "base64url(header).base64url(payload)". For callers with their own header.
  std::string signature(std::string_view signing_input) const;

  jwt_algorithm algorithm() const noexcept { return alg_; }

 private:
  struct pkey_deleter {
    void operator()(evp_pkey_st* key) const noexcept;
  };
  using pkey_ptr = std::unique_ptr<evp_pkey_st, pkey_deleter>;

  jwt_signer(jwt_algorithm alg, pkey_ptr key, const secret_string* hmac_key);
  std::optional<std::string> try_signature(std::string_view signing_input) const;

  jwt_algorithm alg_;
  pkey_ptr key_;  // RS/PS/ES/EdDSA
  // HS: on the heap so that moving the signer moves a pointer and leaves no copy of a
  // short (in-place stored) secret behind in the moved-from object.
  std::unique_ptr<const secret_string> hmac_key_;
  std::string header_b64_;  // base64url of the fixed header, computed once
};

// The claims of one login token.
struct jwt_claims {
  std::string subject;                 // Synapse: the localpart; famedly: localpart or user ID
  std::string subject_claim = "sub";   // Synapse's `jwt_config.subject_claim`
  std::optional<std::string> issuer;   // "iss" when set
  std::vector<std::string> audiences;  // "aud": absent, a string (one), or an array (several)
  std::chrono::seconds lifetime{60};   // exp - iat
};

// Mints {"<subject_claim>":subject,"iss"?,"aud"?,"iat":now,"nbf":now,"exp":now+lifetime,
// "jti":<32 lowercase hex digits from RAND_bytes>} and signs it. Times are whole seconds
// since the epoch, rounded down. The token is a login credential for its lifetime, hence a
// secret_string. Throws std::runtime_error if the RNG or OpenSSL fails.
secret_string mint_jwt(const jwt_signer& signer, const jwt_claims& claims,
                       std::chrono::system_clock::time_point now);

}  // namespace mxp::credentials
