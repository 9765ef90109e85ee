// JWT signing on OpenSSL's EVP interface: key loading and key/algorithm checks, JWS
// signatures (HMAC, RSASSA-PKCS1-v1_5, RSASSA-PSS, ECDSA in JOSE form, EdDSA), claims.
#include "credentials/jwt.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <fmt/format.h>
#include <array>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <utility>

#include "core/json_writer.hpp"
#include "credentials/base64url.hpp"

namespace mxp::credentials {
namespace {

enum class family { hmac, rsa_pkcs1, rsa_pss, ecdsa, eddsa };

struct algorithm_info {
  jwt_algorithm alg;
  std::string_view name;
  family fam;
  int digest_bits;  // SHA-2 size; 0 for EdDSA (the scheme fixes its own hash)
  int curve_nid;    // ES*: the curve the key must be on
  int curve_bytes;  // ES*: size of R and of S in the JOSE signature
};

constexpr std::array<algorithm_info, 13> algorithms{{
    {jwt_algorithm::HS256, "HS256", family::hmac, 256, 0, 0},
    {jwt_algorithm::HS384, "HS384", family::hmac, 384, 0, 0},
    {jwt_algorithm::HS512, "HS512", family::hmac, 512, 0, 0},
    {jwt_algorithm::RS256, "RS256", family::rsa_pkcs1, 256, 0, 0},
    {jwt_algorithm::RS384, "RS384", family::rsa_pkcs1, 384, 0, 0},
    {jwt_algorithm::RS512, "RS512", family::rsa_pkcs1, 512, 0, 0},
    {jwt_algorithm::PS256, "PS256", family::rsa_pss, 256, 0, 0},
    {jwt_algorithm::PS384, "PS384", family::rsa_pss, 384, 0, 0},
    {jwt_algorithm::PS512, "PS512", family::rsa_pss, 512, 0, 0},
    {jwt_algorithm::ES256, "ES256", family::ecdsa, 256, NID_X9_62_prime256v1, 32},
    {jwt_algorithm::ES384, "ES384", family::ecdsa, 384, NID_secp384r1, 48},
    {jwt_algorithm::ES512, "ES512", family::ecdsa, 512, NID_secp521r1, 66},
    {jwt_algorithm::EdDSA, "EdDSA", family::eddsa, 0, 0, 0},
}};

const algorithm_info& info(jwt_algorithm alg) {
  return algorithms[static_cast<std::size_t>(alg)];
}

const EVP_MD* digest(const algorithm_info& ai) {
  switch (ai.digest_bits) {
    case 256:
      return EVP_sha256();
    case 384:
      return EVP_sha384();
    case 512:
      return EVP_sha512();
    default:
      return nullptr;  // EdDSA: no separate digest
  }
}

constexpr int min_rsa_bits = 2048;

struct bio_free_t {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct md_ctx_free_t {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
struct ecdsa_sig_free_t {
  void operator()(ECDSA_SIG* s) const noexcept { ECDSA_SIG_free(s); }
};
using bio_ptr = std::unique_ptr<BIO, bio_free_t>;
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, md_ctx_free_t>;
using ecdsa_sig_ptr = std::unique_ptr<ECDSA_SIG, ecdsa_sig_free_t>;

// The reason of the oldest queued OpenSSL error (static text, never key material),
// and an empty queue afterwards so that no stale error leaks into unrelated code.
std::string take_openssl_reason() {
  const unsigned long code = ERR_peek_error();
  std::string reason;
  if (code != 0) {
    if (const char* r = ERR_reason_error_string(code)) reason = r;
  }
  ERR_clear_error();
  return reason;
}

// Stops OpenSSL from prompting on the terminal for an encrypted key's passphrase.
int refuse_passphrase(char*, int, int, void* asked) {
  *static_cast<bool*>(asked) = true;
  return -1;
}

// NID of an EC key's named curve, or NID_undef (explicit parameters, unknown curve).
int curve_nid(const EVP_PKEY* key) {
  std::array<char, 80> name{};
  std::size_t len = 0;
  if (EVP_PKEY_get_group_name(key, name.data(), name.size(), &len) != 1) {
    ERR_clear_error();
    return NID_undef;
  }
  int nid = OBJ_txt2nid(name.data());
  if (nid == NID_undef) nid = EC_curve_nist2nid(name.data());
  return nid;
}

std::string curve_display_name(int nid) {
  if (nid == NID_undef) return "an unnamed curve (explicit parameters)";
  if (const char* nist = EC_curve_nid2nist(nid)) return nist;
  if (const char* sn = OBJ_nid2sn(nid)) return sn;
  return "an unknown curve";
}

// "an RSA key of 1024 bits", "an EC key on P-384", "an Ed25519 key", for messages.
std::string describe_key(const EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "RSA"))
    return fmt::format("an RSA key of {} bits", EVP_PKEY_get_bits(key));
  if (EVP_PKEY_is_a(key, "RSA-PSS")) return "an RSA-PSS (restricted) key";
  if (EVP_PKEY_is_a(key, "EC")) return "an EC key on " + curve_display_name(curve_nid(key));
  if (EVP_PKEY_is_a(key, "ED25519")) return "an Ed25519 key";
  if (EVP_PKEY_is_a(key, "ED448")) return "an Ed448 key";
  const char* type = EVP_PKEY_get0_type_name(key);
  return fmt::format("a key of type {}", type ? type : "unknown");
}

// Why `key` cannot sign `ai.alg`, or nullopt when it fits.
std::optional<std::string> key_mismatch(const algorithm_info& ai, const EVP_PKEY* key) {
  const auto refuse = [&](std::string_view wanted) {
    return fmt::format("{} needs {}, but the key is {}", ai.name, wanted, describe_key(key));
  };
  switch (ai.fam) {
    case family::rsa_pkcs1:
    case family::rsa_pss:
      // RSA-PSS keys may carry digest/salt restrictions that contradict the JOSE
      // parameters; a plain RSA key serves both RS* and PS*.
      if (!EVP_PKEY_is_a(key, "RSA")) return refuse("an RSA key (plain RSA, not RSA-PSS)");
      if (EVP_PKEY_get_bits(key) < min_rsa_bits)
        return refuse(fmt::format("an RSA key of at least {} bits", min_rsa_bits));
      return std::nullopt;
    case family::ecdsa:
      if (!EVP_PKEY_is_a(key, "EC") || curve_nid(key) != ai.curve_nid)
        return refuse(fmt::format("an EC key on {}", curve_display_name(ai.curve_nid)));
      return std::nullopt;
    case family::eddsa:
      if (!EVP_PKEY_is_a(key, "ED25519") && !EVP_PKEY_is_a(key, "ED448"))
        return refuse("an Ed25519 (or Ed448) key");
      return std::nullopt;
    case family::hmac:
      break;
  }
  return std::nullopt;
}

// DER ECDSA-Sig-Value -> RFC 7518 section 3.4 R||S, each left-padded to the curve size.
std::optional<std::string> der_to_jose(const unsigned char* der, std::size_t der_len,
                                       int curve_bytes) {
  const unsigned char* p = der;
  ecdsa_sig_ptr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der_len)));
  if (!sig || p != der + der_len) return std::nullopt;
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string out(2 * static_cast<std::size_t>(curve_bytes), '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (BN_bn2binpad(r, o, curve_bytes) != curve_bytes ||
      BN_bn2binpad(s, o + curve_bytes, curve_bytes) != curve_bytes)
    return std::nullopt;
  return out;
}

}  // namespace

std::optional<jwt_algorithm> parse_jwt_algorithm(std::string_view name) {
  for (const auto& ai : algorithms)
    if (ai.name == name) return ai.alg;
  return std::nullopt;
}

std::string_view to_string(jwt_algorithm alg) {
  return info(alg).name;
}

void jwt_signer::pkey_deleter::operator()(evp_pkey_st* key) const noexcept {
  EVP_PKEY_free(key);
}

jwt_signer::jwt_signer(jwt_algorithm alg, pkey_ptr key, const secret_string* hmac_key)
    : alg_(alg),
      key_(std::move(key)),
      hmac_key_(hmac_key ? std::make_unique<const secret_string>(*hmac_key) : nullptr) {
  std::string header;
  json_writer{header}
      .begin_object()
      .member("alg", info(alg).name)
      .member("typ", "JWT")
      .end_object();
  header_b64_ = base64url_encode(header);
}

jwt_signer::jwt_signer(jwt_signer&&) noexcept = default;
jwt_signer& jwt_signer::operator=(jwt_signer&&) noexcept = default;
jwt_signer::~jwt_signer() = default;

boost::system::result<jwt_signer, std::string> jwt_signer::create(
    jwt_algorithm alg, const secret_string& key_material) {
  const auto& ai = info(alg);
  const std::string& material = key_material.reveal();
  pkey_ptr key;

  if (ai.fam == family::hmac) {
    if (material.empty()) return fmt::format("{} needs a non-empty secret", ai.name);
    if (material.size() > static_cast<std::size_t>(INT_MAX))
      return fmt::format("{} secret is too long", ai.name);
    // Verifiers (PyJWT, authlib) refuse PEM text as an HMAC secret to prevent algorithm
    // confusion, so such a configuration can never log anyone in: say so now.
    if (material.find("-----BEGIN ") != std::string::npos)
      return fmt::format(
          "{} needs a shared secret, but the key material is a PEM key or certificate; "
          "use an RS*, PS*, ES* or EdDSA algorithm for a private key",
          ai.name);
  } else {
    if (material.size() > static_cast<std::size_t>(INT_MAX))
      return fmt::format("{} private key is too long", ai.name);
    bio_ptr bio(BIO_new_mem_buf(material.data(), static_cast<int>(material.size())));
    if (!bio) throw std::runtime_error("BIO_new_mem_buf failed");
    bool passphrase_asked = false;
    key.reset(PEM_read_bio_PrivateKey_ex(bio.get(), nullptr, refuse_passphrase, &passphrase_asked,
                                         nullptr, nullptr));
    const std::string reason = take_openssl_reason();
    if (!key) {
      if (passphrase_asked)
        return fmt::format(
            "{} private key is encrypted; a passphrase-protected key is not supported, store "
            "it unencrypted with restrictive file permissions",
            ai.name);
      return fmt::format(
          "{} needs an unencrypted PEM private key (PKCS#8 \"PRIVATE KEY\" or traditional "
          "\"RSA/EC PRIVATE KEY\"), but none could be read{}{}",
          ai.name, reason.empty() ? "" : ": ", reason);
    }
    if (auto why = key_mismatch(ai, key.get())) return std::move(*why);
  }
  jwt_signer signer(alg, std::move(key), ai.fam == family::hmac ? &key_material : nullptr);

  // A trial signature: whatever would make sign() fail later shows up now, at load time.
  if (!signer.try_signature("mxpuppet key check")) {
    const std::string reason = take_openssl_reason();
    return fmt::format("{} cannot sign with this key{}{}", ai.name, reason.empty() ? "" : ": ",
                       reason);
  }
  return signer;
}

std::optional<std::string> jwt_signer::try_signature(std::string_view signing_input) const {
  const auto& ai = info(alg_);
  const auto* data = reinterpret_cast<const unsigned char*>(signing_input.data());
  const std::size_t size = signing_input.size();

  if (ai.fam == family::hmac) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    unsigned int mac_len = 0;
    if (!hmac_key_) return std::nullopt;
    const auto& key = hmac_key_->reveal();
    if (!HMAC(digest(ai), key.data(), static_cast<int>(key.size()), data, size, mac.data(),
              &mac_len))
      return std::nullopt;
    return std::string(reinterpret_cast<const char*>(mac.data()), mac_len);
  }

  if (!key_) return std::nullopt;
  md_ctx_ptr ctx(EVP_MD_CTX_new());
  if (!ctx) return std::nullopt;
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (EVP_DigestSignInit(ctx.get(), &pctx, digest(ai), nullptr, key_.get()) != 1)
    return std::nullopt;
  if (ai.fam == family::rsa_pss) {
    // RFC 7518 section 3.5: MGF1 with the same SHA-2 function, salt as long as the hash.
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, digest(ai)) != 1)
      return std::nullopt;
  } else if (ai.fam == family::rsa_pkcs1) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) return std::nullopt;
  }

  // One-shot EVP_DigestSign: required for EdDSA, equivalent to Update+Final otherwise.
  std::size_t sig_len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &sig_len, data, size) != 1) return std::nullopt;
  std::string sig(sig_len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len, data,
                     size) != 1)
    return std::nullopt;
  sig.resize(sig_len);
  if (ai.fam == family::ecdsa)
    return der_to_jose(reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       ai.curve_bytes);
  return sig;
}

std::string jwt_signer::signature(std::string_view signing_input) const {
  auto sig = try_signature(signing_input);
  if (!sig) {
    const std::string reason = take_openssl_reason();
    throw std::runtime_error(
        fmt::format("{} signing failed{}{}", to_string(alg_), reason.empty() ? "" : ": ", reason));
  }
  return std::move(*sig);
}

std::string jwt_signer::sign(std::string_view payload_json) const {
  std::string token;
  token.reserve(header_b64_.size() + 2 + (payload_json.size() * 4 + 2) / 3 + 180);
  token += header_b64_;
  token += '.';
  append_base64url(token, payload_json.data(), payload_json.size());
  const std::string sig = signature(token);
  token += '.';
  append_base64url(token, sig.data(), sig.size());
  return token;
}

secret_string mint_jwt(const jwt_signer& signer, const jwt_claims& claims,
                       std::chrono::system_clock::time_point now) {
  std::array<unsigned char, 16> id{};
  if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1) {
    ERR_clear_error();
    throw std::runtime_error("RAND_bytes failed: cannot mint a JWT ID");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string jti;
  jti.reserve(2 * id.size());
  for (const unsigned char b : id) {
    jti += hex[b >> 4];
    jti += hex[b & 0xf];
  }

  const std::int64_t iat = std::chrono::floor<std::chrono::seconds>(now.time_since_epoch()).count();
  const std::int64_t exp = iat + static_cast<std::int64_t>(claims.lifetime.count());

  std::string payload;
  json_writer w{payload};
  w.begin_object().member(claims.subject_claim, claims.subject);
  if (claims.issuer) w.member("iss", *claims.issuer);
  if (claims.audiences.size() == 1) {
    w.member("aud", claims.audiences.front());
  } else if (claims.audiences.size() > 1) {
    w.key("aud").begin_array();
    for (const auto& a : claims.audiences) w.value(a);
    w.end_array();
  }
  w.member("iat", iat).member("nbf", iat).member("exp", exp).member("jti", jti).end_object();
  return secret_string{signer.sign(payload)};
}

}  // namespace mxp::credentials
