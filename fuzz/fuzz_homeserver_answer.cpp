// fuzz_homeserver_answer: any bytes as a homeserver's answer to a login or an error. The
// first byte picks the HTTP status; the rest is the body. Parsing must never crash, a
// grant must always carry a token, and every number the daemon computes with (expires_in_ms,
// retry_after_ms) must be within its documented range.
#include <cstdint>
#include <string>

#include "matrix/homeserver_client.hpp"
#include "matrix/login_strategy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static constexpr int statuses[] = {200, 400, 401, 403, 404, 429, 500, 502, 503};
  mxp::net::http_response answer;
  answer.status = statuses[data[0] % std::size(statuses)];
  answer.body.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 0x80) answer.retry_after = std::string(answer.body, 0, 8);
  auto grant = mxp::matrix::read_login_answer(answer, "@alice:example.com", (data[0] & 0x40) != 0,
                                              "fuzz login");
  if (grant && grant->access_token.empty()) __builtin_trap();
  if (grant && grant->expires_in_ms &&
      (*grant->expires_in_ms <= 0 || *grant->expires_in_ms > mxp::matrix::max_expires_in_ms))
    __builtin_trap();  // the pool adds it to the wall clock: it must not overflow
  const auto e =
      mxp::matrix::classify_error_response(answer.status, answer.body, answer.retry_after, "fuzz");
  if (e.retry_after_ms &&
      (*e.retry_after_ms < 0 || *e.retry_after_ms > mxp::matrix::max_retry_after_ms))
    __builtin_trap();
  return 0;
}
