// HMAC-SHA512 shared-secret tokens: RFC 4231 vectors and the devture module's definition.
#include <gtest/gtest.h>

#include "credentials/shared_secret.hpp"

using mxp::secret_string;
using mxp::credentials::shared_secret_token;

TEST(SharedSecret, Rfc4231TestCase2) {
  // Key "Jefe", data "what do ya want for nothing?"
  EXPECT_EQ(shared_secret_token(secret_string{"Jefe"}, "what do ya want for nothing?").reveal(),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f"
            "65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
}

TEST(SharedSecret, LowercaseHexOfUserId) {
  const auto t = shared_secret_token(secret_string{"s3cret"}, "@alice:example.com");
  EXPECT_EQ(t.reveal().size(), 128u);
  EXPECT_EQ(t.reveal().find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(t.reveal(), shared_secret_token(secret_string{"s3cret"}, "@bob:example.com").reveal());
}

TEST(SharedSecret, SecretIsNeverFormatted) {
  EXPECT_EQ(fmt::format("{}", secret_string{"hunter2"}), "<redacted>");
}
