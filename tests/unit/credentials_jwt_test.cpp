// JWT signing: RFC 7515/8037 known answers, every algorithm checked by an independent
// verifier (PyJWT + cryptography, tests/unit/credentials_jwt_verify.py), key/algorithm
// refusals, JOSE ECDSA signature form, claims layout.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "credentials/base64url.hpp"
#include "credentials/jwt.hpp"

namespace {

using namespace std::chrono_literals;
using mxp::secret_string;
using mxp::credentials::base64url_decode;
using mxp::credentials::base64url_encode;
using mxp::credentials::jwt_algorithm;
using mxp::credentials::jwt_claims;
using mxp::credentials::jwt_signer;
using mxp::credentials::mint_jwt;
using mxp::credentials::parse_jwt_algorithm;
using mxp::credentials::to_string;
namespace fs = std::filesystem;

// ---------------------------------------------------------------- OpenSSL helpers

struct pkey_free_t {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct bio_free_t {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free_t>;
using bio_ptr = std::unique_ptr<BIO, bio_free_t>;

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(len));
}

enum class pem_form { pkcs8, traditional, pkcs8_encrypted, public_key };

std::string to_pem(EVP_PKEY* key, pem_form form = pem_form::pkcs8) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  int ok = 0;
  switch (form) {
    case pem_form::pkcs8:
      ok = PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
      break;
    case pem_form::traditional:
      ok = PEM_write_bio_PrivateKey_traditional(bio.get(), key, nullptr, nullptr, 0, nullptr,
                                                nullptr);
      break;
    case pem_form::pkcs8_encrypted: {
      static const char pass[] = "correct horse";
      ok = PEM_write_bio_PKCS8PrivateKey(bio.get(), key, EVP_aes_256_cbc(), pass, sizeof pass - 1,
                                         nullptr, nullptr);
      break;
    }
    case pem_form::public_key:
      ok = PEM_write_bio_PUBKEY(bio.get(), key);
      break;
  }
  if (ok != 1) throw std::runtime_error("PEM write failed");
  return bio_contents(bio.get());
}

pkey_ptr generate_rsa(std::size_t bits) {
  return pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits));
}
pkey_ptr generate_ec(const char* curve) {
  return pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
}
pkey_ptr generate_okp(const char* type) {
  return pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, type));
}

// Keys are generated once per test binary (RSA key generation is slow in a Debug build).
// `what` names the key ("RSA2048", "P-384", "Ed25519", ...); a "/traditional" suffix asks
// for the same key in the traditional PEM form instead of PKCS#8.
const std::string& pem_for(const std::string& what) {
  static std::map<std::string, pkey_ptr> keys;
  static std::map<std::string, std::string> pems;
  if (auto it = pems.find(what); it != pems.end()) return it->second;
  const auto slash = what.find('/');
  const std::string kind = what.substr(0, slash);
  const pem_form form = slash == std::string::npos ? pem_form::pkcs8 : pem_form::traditional;
  auto& key = keys[kind];
  if (!key) {
    if (kind == "RSA2048")
      key = generate_rsa(2048);
    else if (kind == "RSA1024")
      key = generate_rsa(1024);
    else if (kind.starts_with("P-") || kind == "secp256k1")
      key = generate_ec(kind.c_str());
    else if (kind == "Ed25519")
      key = generate_okp("ED25519");
    else if (kind == "Ed448")
      key = generate_okp("ED448");
    else if (kind == "X25519")
      key = generate_okp("X25519");
    if (!key) throw std::runtime_error("cannot generate key " + what);
  }
  return pems[what] = to_pem(key.get(), form);
}

// ---------------------------------------------------------------- token helpers

std::vector<std::string> split_token(const std::string& token) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const auto dot = token.find('.', start);
    parts.push_back(token.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string decoded(const std::string& segment) {
  auto d = base64url_decode(segment);
  if (!d) throw std::runtime_error("not base64url: " + segment);
  return *d;
}

std::int64_t unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
}

// ---------------------------------------------------------------- the independent verifier

fs::path verifier_script() {
  if (const char* src = std::getenv("MXP_SOURCE_DIR"))
    return fs::path(src) / "tests" / "unit" / "credentials_jwt_verify.py";
  return fs::path(__FILE__).parent_path() / "credentials_jwt_verify.py";
}

constexpr const char* python = "/usr/bin/python3";

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

struct run_result {
  int status = -1;     // exit status, -1 if it did not exit normally
  std::string output;  // stdout
};

run_result run(const std::string& command) {
  run_result r;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int wstatus = ::pclose(p);
  if (wstatus != -1 && WIFEXITED(wstatus)) r.status = WEXITSTATUS(wstatus);
  return r;
}

// Empty when the verifier can run; otherwise why not (the tests that need it skip).
const std::string& verifier_unavailable() {
  static const std::string why = []() -> std::string {
    if (!fs::exists(python)) return std::string(python) + " not found";
    if (!fs::exists(verifier_script())) return verifier_script().string() + " not found";
    const auto r = run(std::string(python) + " -c 'import jwt, cryptography' 2>/dev/null");
    if (r.status != 0) return "python3-jwt or python3-cryptography is not installed";
    return {};
  }();
  return why;
}

#define REQUIRE_VERIFIER()                                                       \
  do {                                                                           \
    if (!verifier_unavailable().empty()) GTEST_SKIP() << verifier_unavailable(); \
  } while (0)

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "mxp-jwt-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  fs::path write(const std::string& name, const std::string& content) const {
    const auto p = path_ / name;
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
    return p;
  }

 private:
  fs::path path_;
};

// Runs credentials_jwt_verify.py; `token` may be "@file" for a file of tokens.
run_result verify(jwt_algorithm alg, const fs::path& keyfile, const std::string& token,
                  const std::string& audience = {}) {
  std::string cmd = std::string(python) + " " + shell_quote(verifier_script().string()) + " " +
                    std::string(to_string(alg)) + " " + shell_quote(keyfile.string()) + " " +
                    shell_quote(token);
  if (!audience.empty()) cmd += " " + shell_quote(audience);
  return run(cmd);
}

jwt_signer make_signer(jwt_algorithm alg, const std::string& material) {
  auto s = jwt_signer::create(alg, secret_string{material});
  if (!s) throw std::runtime_error("create failed: " + s.error());
  return *std::move(s);
}

// ---------------------------------------------------------------- base64url, names

TEST(Base64Url, Rfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
      {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, enc] : vectors) {
    EXPECT_EQ(base64url_encode(plain), enc);
    EXPECT_EQ(base64url_decode(enc), std::optional<std::string>(plain));
  }
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");  // the two URL-safe characters
  EXPECT_EQ(base64url_decode("-_8"), std::optional<std::string>("\xfb\xff"));
}

TEST(Base64Url, DecoderIsStrict) {
  EXPECT_FALSE(base64url_decode("Zg=="));   // padding
  EXPECT_FALSE(base64url_decode("+/8"));    // standard alphabet
  EXPECT_FALSE(base64url_decode("Zm9 v"));  // whitespace
  EXPECT_FALSE(base64url_decode("Zm9vY"));  // a length no byte count has
  EXPECT_FALSE(base64url_decode("Zh"));     // non-zero unused bits
}

TEST(JwtAlgorithm, NamesRoundTrip) {
  const jwt_algorithm all[] = {jwt_algorithm::HS256, jwt_algorithm::HS384, jwt_algorithm::HS512,
                               jwt_algorithm::RS256, jwt_algorithm::RS384, jwt_algorithm::RS512,
                               jwt_algorithm::PS256, jwt_algorithm::PS384, jwt_algorithm::PS512,
                               jwt_algorithm::ES256, jwt_algorithm::ES384, jwt_algorithm::ES512,
                               jwt_algorithm::EdDSA};
  for (const auto alg : all) EXPECT_EQ(parse_jwt_algorithm(to_string(alg)), alg);
  EXPECT_EQ(to_string(jwt_algorithm::EdDSA), "EdDSA");
  EXPECT_EQ(to_string(jwt_algorithm::PS384), "PS384");
  for (const char* bad : {"none", "hs256", "HS1", "", "EdDSA ", "ES256K"})
    EXPECT_FALSE(parse_jwt_algorithm(bad)) << bad;
}

// ---------------------------------------------------------------- known answers

// RFC 7515 Appendix A.1: HMAC SHA-256 over the RFC's exact header and payload bytes.
TEST(JwtKnownAnswer, Rfc7515A1Hs256) {
  const std::string header = "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
  const std::string payload =
      "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
  const auto key = base64url_decode(
      "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow");
  ASSERT_TRUE(key);
  ASSERT_EQ(key->size(), 64u);

  const std::string input = base64url_encode(header) + "." + base64url_encode(payload);
  EXPECT_EQ(input,
            "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
            "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ij"
            "p0cnVlfQ");

  const auto signer = make_signer(jwt_algorithm::HS256, *key);
  EXPECT_EQ(base64url_encode(signer.signature(input)),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");

  // sign() uses its own header; the payload segment is the RFC's.
  const auto parts = split_token(signer.sign(payload));
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(decoded(parts[0]), R"({"alg":"HS256","typ":"JWT"})");
  EXPECT_EQ(decoded(parts[1]), payload);
  EXPECT_EQ(decoded(parts[2]), signer.signature(parts[0] + "." + parts[1]));
}

// RFC 8037 Appendices A.1 and A.4: Ed25519 is deterministic, so the signature is exact.
TEST(JwtKnownAnswer, Rfc8037A4Ed25519) {
  const auto d = base64url_decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
  ASSERT_TRUE(d);
  pkey_ptr key(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(d->data()), d->size()));
  ASSERT_TRUE(key);
  // The public key of A.1, derived from d: the key was rebuilt correctly.
  std::array<unsigned char, 32> x{};
  std::size_t x_len = x.size();
  ASSERT_EQ(EVP_PKEY_get_raw_public_key(key.get(), x.data(), &x_len), 1);
  EXPECT_EQ(base64url_encode(std::string(reinterpret_cast<const char*>(x.data()), x_len)),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");

  const auto signer = make_signer(jwt_algorithm::EdDSA, to_pem(key.get()));
  const std::string input =
      base64url_encode(R"({"alg":"EdDSA"})") + "." + base64url_encode("Example of Ed25519 signing");
  EXPECT_EQ(input, "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc");
  EXPECT_EQ(
      base64url_encode(signer.signature(input)),
      "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg");
}

// ---------------------------------------------------------------- claims

TEST(JwtClaims, ExactLayout) {
  const auto signer = make_signer(jwt_algorithm::HS256, "0123456789abcdef0123456789abcdef");
  const auto now = std::chrono::sys_seconds{1700000000s} + 750ms;  // rounded down
  const std::regex jti(R"("jti":"[0-9a-f]{32}"\}$)");

  jwt_claims c;
  c.subject = "alice";
  auto payload = decoded(split_token(mint_jwt(signer, c, now).reveal())[1]);
  EXPECT_TRUE(std::regex_search(payload, jti)) << payload;
  EXPECT_EQ(payload.substr(0, payload.find(",\"jti\"")),
            R"({"sub":"alice","iat":1700000000,"nbf":1700000000,"exp":1700000060)");

  c.subject_claim = "user";
  c.subject = "@b\"ob:example.com";  // escaped as JSON
  c.issuer = "https://idp.example";
  c.audiences = {"matrix"};
  c.lifetime = 300s;
  payload = decoded(split_token(mint_jwt(signer, c, now).reveal())[1]);
  EXPECT_EQ(payload.substr(0, payload.find(",\"jti\"")),
            R"({"user":"@b\"ob:example.com","iss":"https://idp.example","aud":"matrix",)"
            R"("iat":1700000000,"nbf":1700000000,"exp":1700000300)");

  c.audiences = {"matrix", "synapse"};
  payload = decoded(split_token(mint_jwt(signer, c, now).reveal())[1]);
  EXPECT_NE(payload.find(R"("aud":["matrix","synapse"],)"), std::string::npos) << payload;
}

// (f) Every token has its own ID.
TEST(JwtClaims, JtiDiffersBetweenMints) {
  const auto signer = make_signer(jwt_algorithm::HS512, "k");
  const auto now = std::chrono::system_clock::now();
  const std::regex jti(R"re("jti":"([0-9a-f]{32})")re");
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const auto payload = decoded(split_token(mint_jwt(signer, {.subject = "a"}, now).reveal())[1]);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(payload, m, jti)) << payload;
    EXPECT_TRUE(seen.insert(m[1]).second) << "repeated jti " << m[1];
  }
}

TEST(JwtSigner, MovedSignerSigns) {
  auto a = make_signer(jwt_algorithm::ES256, pem_for("P-256"));
  jwt_signer b = std::move(a);
  EXPECT_EQ(b.algorithm(), jwt_algorithm::ES256);
  EXPECT_EQ(split_token(b.sign("{}")).size(), 3u);
}

// ---------------------------------------------------------------- (c) every algorithm

struct alg_case {
  jwt_algorithm alg;
  std::string key;  // pem_for() name, or "secret" for HS*
};

std::ostream& operator<<(std::ostream& os, const alg_case& c) {
  return os << to_string(c.alg) << "/" << c.key;
}

class JwtEveryAlgorithm : public ::testing::TestWithParam<alg_case> {};

TEST_P(JwtEveryAlgorithm, IndependentVerifierAccepts) {
  REQUIRE_VERIFIER();
  const auto& [alg, key_name] = GetParam();
  temp_dir dir;
  std::string material;
  if (key_name == "secret") {
    // 64 random bytes, NULs and newlines included: the secret is used as raw bytes.
    material.assign("\x00\n\xff secret \r\n", 13);
    material += std::string(51, '\x9c');
  } else {
    material = pem_for(key_name);
  }
  const auto keyfile = dir.write("key", material);
  const auto signer = make_signer(alg, material);
  EXPECT_EQ(signer.algorithm(), alg);

  jwt_claims c;
  c.subject = "alice";
  c.issuer = "mxpuppet-test";
  c.audiences = {"https://matrix.example", "other"};
  c.lifetime = 120s;
  const auto now = std::chrono::system_clock::now();
  const std::string token = mint_jwt(signer, c, now).reveal();

  const auto r = verify(alg, keyfile, token, "https://matrix.example");
  ASSERT_EQ(r.status, 0) << "verifier refused " << token;
  const std::string& out = r.output;
  const std::string alg_s(to_string(alg));
  EXPECT_NE(out.find(R"("header":{"alg":")" + alg_s + R"(","typ":"JWT"})"), std::string::npos)
      << out;
  EXPECT_NE(out.find(R"("sub":"alice")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("iss":"mxpuppet-test")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("aud":["https://matrix.example","other"])"), std::string::npos) << out;
  const auto iat = unix_seconds(now);
  EXPECT_NE(out.find("\"iat\":" + std::to_string(iat) + ","), std::string::npos) << out;
  EXPECT_NE(out.find("\"nbf\":" + std::to_string(iat) + ","), std::string::npos) << out;
  EXPECT_NE(out.find("\"exp\":" + std::to_string(iat + 120) + ","), std::string::npos) << out;

  // The verifier really verifies: a flipped signature bit and a changed payload fail.
  auto parts = split_token(token);
  auto sig = decoded(parts[2]);
  sig[sig.size() / 2] = static_cast<char>(sig[sig.size() / 2] ^ 0x01);
  EXPECT_EQ(verify(alg, keyfile, parts[0] + "." + parts[1] + "." + base64url_encode(sig),
                   "https://matrix.example")
                .status,
            1);
  auto forged = decoded(parts[1]);
  forged.replace(forged.find("alice"), 5, "mallo");
  EXPECT_EQ(verify(alg, keyfile, parts[0] + "." + base64url_encode(forged) + "." + parts[2],
                   "https://matrix.example")
                .status,
            1);
}

INSTANTIATE_TEST_SUITE_P(
    All, JwtEveryAlgorithm,
    ::testing::Values(
        alg_case{jwt_algorithm::HS256, "secret"}, alg_case{jwt_algorithm::HS384, "secret"},
        alg_case{jwt_algorithm::HS512, "secret"}, alg_case{jwt_algorithm::RS256, "RSA2048"},
        alg_case{jwt_algorithm::RS384, "RSA2048/traditional"},
        alg_case{jwt_algorithm::RS512, "RSA2048"}, alg_case{jwt_algorithm::PS256, "RSA2048"},
        alg_case{jwt_algorithm::PS384, "RSA2048"},
        alg_case{jwt_algorithm::PS512, "RSA2048/traditional"},
        alg_case{jwt_algorithm::ES256, "P-256"},
        alg_case{jwt_algorithm::ES256, "P-256/traditional"},
        alg_case{jwt_algorithm::ES384, "P-384"}, alg_case{jwt_algorithm::ES512, "P-521"},
        alg_case{jwt_algorithm::EdDSA, "Ed25519"}, alg_case{jwt_algorithm::EdDSA, "Ed448"}),
    [](const auto& info) {
      std::string name = std::string(to_string(info.param.alg)) + "_" + info.param.key;
      for (auto& ch : name)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return name;
    });

TEST(JwtVerifier, WrongAudienceIsRefused) {
  REQUIRE_VERIFIER();
  temp_dir dir;
  const auto keyfile = dir.write("key", "s3cret");
  const auto signer = make_signer(jwt_algorithm::HS256, "s3cret");
  jwt_claims c{.subject = "alice", .audiences = {"matrix"}};
  const std::string token = mint_jwt(signer, c, std::chrono::system_clock::now()).reveal();
  EXPECT_EQ(verify(jwt_algorithm::HS256, keyfile, token, "matrix").status, 0);
  EXPECT_EQ(verify(jwt_algorithm::HS256, keyfile, token, "elsewhere").status, 1);
  const std::string late = mint_jwt(signer, c, std::chrono::system_clock::now() - 61s).reveal();
  EXPECT_EQ(verify(jwt_algorithm::HS256, keyfile, late, "matrix").status, 1);  // expired
}

// ---------------------------------------------------------------- (e) JOSE ECDSA form

struct es_case {
  jwt_algorithm alg;
  const char* curve;
  std::size_t bytes;  // R||S
};

TEST(JwtEcdsa, RawSignaturesOfCurveSize) {
  const es_case cases[] = {{jwt_algorithm::ES256, "P-256", 64},
                           {jwt_algorithm::ES384, "P-384", 96},
                           {jwt_algorithm::ES512, "P-521", 132}};
  temp_dir dir;
  for (const auto& [alg, curve, bytes] : cases) {
    SCOPED_TRACE(to_string(alg));
    const auto& pem = pem_for(curve);
    const auto signer = make_signer(alg, pem);
    // Enough signatures that an R or S with a leading zero byte (1 in 128 per signature)
    // turns up on every curve; all of them go through the independent verifier. On P-521
    // the first of the 66 bytes of each half is always padding.
    std::string tokens;
    const auto now = std::chrono::system_clock::now();
    for (int i = 0; i < 300; ++i) {
      const std::string token = mint_jwt(signer, {.subject = "alice"}, now).reveal();
      const auto sig = decoded(split_token(token)[2]);
      ASSERT_EQ(sig.size(), bytes);
      if (alg == jwt_algorithm::ES512) {  // a 521-bit value in 66 bytes: top byte 0 or 1
        EXPECT_LE(static_cast<unsigned char>(sig[0]), 1);
        EXPECT_LE(static_cast<unsigned char>(sig[66]), 1);
      }
      tokens += token + "\n";
    }
    if (!verifier_unavailable().empty()) continue;
    const auto keyfile = dir.write(std::string(curve) + ".pem", pem);
    const auto listfile = dir.write(std::string(curve) + ".tokens", tokens);
    const auto r = verify(alg, keyfile, "@" + listfile.string());
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 300);
  }
}

// ---------------------------------------------------------------- (d) refusals

// True if `message` repeats any 8 characters of the key material's body.
bool leaks_key(const std::string& message, const std::string& material) {
  std::string body;
  std::size_t pos = 0;
  while (pos < material.size()) {
    auto eol = material.find('\n', pos);
    if (eol == std::string::npos) eol = material.size();
    const auto line = material.substr(pos, eol - pos);
    if (!line.starts_with("-----")) body += line;
    pos = eol + 1;
  }
  for (std::size_t i = 0; i + 8 <= body.size(); ++i)
    if (message.find(body.substr(i, 8)) != std::string::npos) return true;
  return false;
}

struct refusal_case {
  const char* what;
  jwt_algorithm alg;
  std::string material;
  std::string expected;  // the whole message, or a part of it
};

TEST(JwtSigner, RefusesKeysThatDoNotFit) {
  pkey_ptr p256 = generate_ec("P-256");
  const std::string garbage =
      "-----BEGIN PRIVATE KEY-----\nTWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuc2VjcmV0\n"
      "-----END PRIVATE KEY-----\n";
  const refusal_case cases[] = {
      {"RSA key for ES256", jwt_algorithm::ES256, pem_for("RSA2048"),
       "ES256 needs an EC key on P-256, but the key is an RSA key of 2048 bits"},
      {"P-384 key for ES256", jwt_algorithm::ES256, pem_for("P-384"),
       "ES256 needs an EC key on P-256, but the key is an EC key on P-384"},
      {"P-256 key for ES512", jwt_algorithm::ES512, pem_for("P-256"),
       "ES512 needs an EC key on P-521, but the key is an EC key on P-256"},
      {"secp256k1 key for ES256", jwt_algorithm::ES256, pem_for("secp256k1"),
       "ES256 needs an EC key on P-256, but the key is an EC key on secp256k1"},
      {"1024-bit RSA", jwt_algorithm::RS256, pem_for("RSA1024"),
       "RS256 needs an RSA key of at least 2048 bits, but the key is an RSA key of 1024 bits"},
      {"1024-bit RSA for PSS", jwt_algorithm::PS512, pem_for("RSA1024/traditional"),
       "PS512 needs an RSA key of at least 2048 bits, but the key is an RSA key of 1024 bits"},
      {"EC key for EdDSA", jwt_algorithm::EdDSA, pem_for("P-256"),
       "EdDSA needs an Ed25519 (or Ed448) key, but the key is an EC key on P-256"},
      {"X25519 key for EdDSA", jwt_algorithm::EdDSA, pem_for("X25519"),
       "EdDSA needs an Ed25519 (or Ed448) key, but the key is a key of type X25519"},
      {"Ed25519 key for RS256", jwt_algorithm::RS256, pem_for("Ed25519"),
       "RS256 needs an RSA key (plain RSA, not RSA-PSS), but the key is an Ed25519 key"},
      {"empty HS256 secret", jwt_algorithm::HS256, "", "HS256 needs a non-empty secret"},
      {"PEM as HS384 secret", jwt_algorithm::HS384, pem_for("P-256"),
       "HS384 needs a shared secret, but the key material is a PEM key"},
      {"garbage PEM", jwt_algorithm::ES256, garbage, "ES256 needs an unencrypted PEM private key"},
      {"not PEM at all", jwt_algorithm::RS256, "hunter2hunter2hunter2",
       "RS256 needs an unencrypted PEM private key"},
      {"empty PEM", jwt_algorithm::EdDSA, "", "EdDSA needs an unencrypted PEM private key"},
      {"public key", jwt_algorithm::ES256, to_pem(p256.get(), pem_form::public_key),
       "ES256 needs an unencrypted PEM private key"},
      {"encrypted key", jwt_algorithm::ES256, to_pem(p256.get(), pem_form::pkcs8_encrypted),
       "ES256 private key is encrypted"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const auto s = jwt_signer::create(c.alg, secret_string{c.material});
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().find(c.expected), std::string::npos) << s.error();
    EXPECT_FALSE(leaks_key(s.error(), c.material)) << s.error();
    EXPECT_EQ(ERR_peek_error(), 0u) << "OpenSSL error queue left dirty";
  }
}

TEST(JwtSigner, AcceptsEveryFittingKeyForm) {
  // RS and PS share RSA keys; larger RSA keys are fine; both PEM spellings load.
  for (const auto alg : {jwt_algorithm::RS256, jwt_algorithm::PS256, jwt_algorithm::PS512})
    EXPECT_TRUE(jwt_signer::create(alg, secret_string{pem_for("RSA2048/traditional")}));
  EXPECT_TRUE(jwt_signer::create(jwt_algorithm::ES384, secret_string{pem_for("P-384")}));
  EXPECT_TRUE(jwt_signer::create(jwt_algorithm::EdDSA, secret_string{pem_for("Ed448")}));
  EXPECT_TRUE(jwt_signer::create(jwt_algorithm::HS256, secret_string{"x"}));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

}  // namespace
