// secret_string: holds a credential (shared secret, access token, key) so that
// it cannot be printed by accident; formatting it yields "<redacted>".
#pragma once

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <string>
#include <string_view>
#include <utility>

namespace mxp {

class secret_string {
 public:
  secret_string() = default;
  explicit secret_string(std::string value) : value_(std::move(value)) {}
  secret_string(const secret_string&) = default;
  // Moving leaves nothing behind: a short secret lives in the string's own buffer (SSO).
  secret_string(secret_string&& other) noexcept : value_(std::move(other.value_)) { other.wipe(); }
  secret_string& operator=(const secret_string&) = default;
  secret_string& operator=(secret_string&& other) noexcept {
    if (this != &other) {
      wipe();
      value_ = std::move(other.value_);
      other.wipe();
    }
    return *this;
  }
  ~secret_string() { wipe(); }

  // Deliberately verbose: every place that reads the secret is greppable.
  const std::string& reveal() const noexcept { return value_; }
  bool empty() const noexcept { return value_.empty(); }
  void wipe() noexcept {
    OPENSSL_cleanse(value_.data(), value_.capacity());  // the whole buffer, terminator included
    value_.clear();
  }

  // Constant time for equal lengths: comparing tokens must not leak a prefix.
  friend bool operator==(const secret_string& a, const secret_string& b) noexcept {
    return a.value_.size() == b.value_.size() &&
           CRYPTO_memcmp(a.value_.data(), b.value_.data(), a.value_.size()) == 0;
  }

 private:
  std::string value_;
};

}  // namespace mxp

template <>
struct fmt::formatter<mxp::secret_string> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(const mxp::secret_string&, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format("<redacted>", ctx);
  }
};
