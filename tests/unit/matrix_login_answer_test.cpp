// read_login_answer: what a login's 200 answer must hold, and the bound on expires_in_ms.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "core/errc.hpp"
#include "matrix/homeserver_client.hpp"
#include "matrix/login_strategy.hpp"
#include "net/http_client.hpp"

using namespace mxp::matrix;

namespace {

mxp::net::http_response ok(std::string body) {
  mxp::net::http_response r;
  r.status = 200;
  r.body = std::move(body);
  return r;
}

const std::string alice = "@alice:example.com";

}  // namespace

TEST(LoginAnswer, ReadsAGrant) {
  auto g = read_login_answer(
      ok(R"({"access_token":"tok","user_id":"@alice:example.com","device_id":"DEV",)"
         R"("expires_in_ms":60000,"refresh_token":"ref"})"),
      alice, false, "login");
  ASSERT_TRUE(g);
  EXPECT_FALSE(g->access_token.empty());
  EXPECT_EQ(g->user_id, alice);
  EXPECT_EQ(g->device_id, "DEV");
  EXPECT_EQ(g->expires_in_ms, 60000);
  EXPECT_FALSE(g->refresh_token.empty());
}

TEST(LoginAnswer, HugeExpiresInIsCappedAtAYear) {
  // The pool computes now + expires_in_ms: INT64_MAX would overflow.
  EXPECT_EQ(max_expires_in_ms, 31'536'000'000);
  auto g = read_login_answer(ok(R"({"access_token":"t","expires_in_ms":9223372036854775807})"),
                             alice, true, "login");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->expires_in_ms, max_expires_in_ms);
  g = read_login_answer(ok(R"({"access_token":"t","expires_in_ms":31536000000})"), alice, true,
                        "login");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->expires_in_ms, 31'536'000'000);
}

TEST(LoginAnswer, RefusesWhatIsNotAGrant) {
  for (const char* body :
       {R"({"access_token":"t","expires_in_ms":0})", R"({"access_token":"t","expires_in_ms":-1})",
        R"({"access_token":"","user_id":"@alice:example.com"})",
        R"({"user_id":"@alice:example.com"})", "[]", "not json"}) {
    const auto g = read_login_answer(ok(body), alice, true, "login");
    ASSERT_FALSE(g) << body;
    EXPECT_EQ(g.error().code, mxp::make_error_code(mxp::errc::upstream_bad_response)) << body;
  }
  const auto other = read_login_answer(ok(R"({"access_token":"t","user_id":"@bob:example.com"})"),
                                       alice, false, "login");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, mxp::make_error_code(mxp::errc::upstream_bad_response));
  EXPECT_FALSE(read_login_answer(ok(R"({"access_token":"t"})"), alice, false, "login"));
}
