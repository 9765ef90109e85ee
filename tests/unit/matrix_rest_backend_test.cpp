// check_credentials_answer: the backend's whole decision, without a socket.
#include <gtest/gtest.h>

#include <string>

#include "credentials/nonce_book.hpp"
#include "matrix/rest_backend.hpp"

using mxp::credentials::nonce_book;
using mxp::matrix::check_credentials_answer;

namespace {
constexpr const char* refused = R"({"auth":{"success":false}})";
std::string body(const std::string& id, const std::string& password) {
  return R"({"user":{"id":")" + id + R"(","password":")" + password + R"("}})";
}
}  // namespace

TEST(RestBackendAnswer, SuccessCarriesMxidAndProfileOnceOnly) {
  nonce_book book;
  const auto n = book.issue("@a:hs", 0, 60'000).reveal();
  EXPECT_EQ(check_credentials_answer(book, body("@a:hs", n), 1),
            R"({"auth":{"success":true,"mxid":"@a:hs","profile":{}}})");
  EXPECT_EQ(check_credentials_answer(book, body("@a:hs", n), 2), refused);
}

TEST(RestBackendAnswer, EverythingElseIsRefused) {
  nonce_book book;
  const auto n = book.issue("@a:hs", 0, 1000).reveal();
  for (const std::string& b :
       {std::string{}, std::string{"nul\0l", 5}, std::string{"{"}, std::string{"[]"},
        std::string{R"({"user":null})"}, std::string{R"({"user":{"id":"@a:hs"}})"},
        std::string{R"({"user":{"password":"x"}})"}, body("@b:hs", n), body("@A:hs", n),
        body("@a:hs", n + "x"), body("@a:hs", "")})
    EXPECT_EQ(check_credentials_answer(book, b, 1), refused) << b;
  EXPECT_EQ(check_credentials_answer(book, body("@a:hs", n), 1000), refused) << "expired";
}

TEST(RestBackendAnswer, AUserIdNeedingEscapesIsEscaped) {
  nonce_book book;
  const std::string odd = "@a\\\"b:hs";  // @a\"b:hs as JSON text
  const auto n = book.issue("@a\"b:hs", 0, 1000).reveal();
  EXPECT_EQ(check_credentials_answer(book, body(odd, n), 1),
            R"({"auth":{"success":true,"mxid":"@a\"b:hs","profile":{}}})");
}
