// classify_error_response: how a homeserver's failure answer becomes an upstream_error, and
// the clamp on the wait a 429 (or any answer) may impose.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>

#include "core/errc.hpp"
#include "matrix/homeserver_client.hpp"

using namespace mxp::matrix;

namespace {

std::optional<std::int64_t> wait_of(int status, const std::string& body,
                                    std::optional<std::string> header = std::nullopt) {
  return classify_error_response(status, body, header, "test").retry_after_ms;
}

}  // namespace

TEST(ErrorAnswer, RateLimitKeepsWhatTheHomeserverSaid) {
  const auto e = classify_error_response(
      429, R"({"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":2500})",
      std::nullopt, "login");
  EXPECT_EQ(e.code, mxp::make_error_code(mxp::errc::upstream_rate_limited));
  EXPECT_EQ(e.http_status, 429);
  EXPECT_EQ(e.errcode, "M_LIMIT_EXCEEDED");
  EXPECT_EQ(e.error, "Too Many Requests");
  EXPECT_EQ(e.retry_after_ms, 2500);
  EXPECT_EQ(e.diagnostic, "login");
}

TEST(ErrorAnswer, NegativeRetryAfterBecomesZero) {
  // The input fuzz_homeserver_answer found: a 400 (not a 429) with retry_after_ms -1.
  EXPECT_EQ(wait_of(400, R"({"retry_after_ms":-1})"), 0);
  EXPECT_EQ(wait_of(429, R"({"retry_after_ms":-1})"), 0);
  EXPECT_EQ(wait_of(403, R"({"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":-1})"), 0);
  EXPECT_EQ(wait_of(429, R"({"retry_after_ms":-9223372036854775808})"), 0);
  EXPECT_EQ(wait_of(429, "{}", "-5"), 0);
}

TEST(ErrorAnswer, HugeRetryAfterIsCappedAtAnHour) {
  EXPECT_EQ(max_retry_after_ms, 3'600'000);
  EXPECT_EQ(wait_of(429, R"({"retry_after_ms":3600000})"), 3'600'000);
  EXPECT_EQ(wait_of(429, R"({"retry_after_ms":3600001})"), max_retry_after_ms);
  EXPECT_EQ(wait_of(429, R"({"retry_after_ms":9223372036854775807})"), max_retry_after_ms);
  EXPECT_EQ(wait_of(500, R"({"retry_after_ms":9223372036854775807})"), max_retry_after_ms);
  // Retry-After in seconds: 9223372036854775807 s would overflow when turned into ms.
  EXPECT_EQ(wait_of(429, "not json", "9223372036854775807"), max_retry_after_ms);
  EXPECT_EQ(wait_of(429, "not json", "3601"), max_retry_after_ms);
}

TEST(ErrorAnswer, RetryAfterHeaderOnlyWhenTheBodySaysNothing) {
  EXPECT_EQ(wait_of(429, "not json", "7"), 7000);
  EXPECT_EQ(wait_of(429, R"({"retry_after_ms":1200})", "7"), 1200);
  EXPECT_EQ(wait_of(429, "{}", "Wed, 21 Oct 2015 07:28:00 GMT"), std::nullopt);  // date form
  EXPECT_EQ(wait_of(429, "{}"), std::nullopt);  // the pool then waits its default
}

TEST(ErrorAnswer, StatusMapping) {
  EXPECT_EQ(classify_error_response(502, "bad gateway", std::nullopt, "x").code,
            mxp::make_error_code(mxp::errc::upstream_unavailable));
  EXPECT_EQ(classify_error_response(503, "", std::nullopt, "x").code,
            mxp::make_error_code(mxp::errc::upstream_unavailable));
  const auto e = classify_error_response(403, R"({"errcode":"M_FORBIDDEN"})", std::nullopt, "x");
  EXPECT_EQ(e.code, mxp::make_error_code(mxp::errc::upstream_refused));
  EXPECT_EQ(e.errcode, "M_FORBIDDEN");
  EXPECT_EQ(e.retry_after_ms, std::nullopt);
}
