// tcp_http: a tiny blocking HTTP/1.1 client over loopback TCP (Beast, with a deadline) for the
// end-to-end tests of the daemon's TCP listener, and a free-port helper.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mxp::test {

struct tcp_http_response {
  int status = 0;
  std::string body;
};

// A loopback port nobody listened on a moment ago (bound with port 0, then closed).
std::uint16_t free_loopback_port(const char* address = "127.0.0.1");

// Connects to address:port, sends `raw` as is, half-closes and reads until the server closes
// (10 s at most). Throws std::system_error on connect or I/O failure.
std::string tcp_exchange(std::uint16_t port, std::string_view raw,
                         const char* address = "127.0.0.1");

// One request with "Connection: close" and the given extra headers; parses the one answer.
// Throws std::runtime_error when the answer is not HTTP.
tcp_http_response tcp_request(std::uint16_t port, std::string_view method, std::string_view target,
                              const std::vector<std::pair<std::string, std::string>>& headers = {},
                              std::string_view body = {}, const char* address = "127.0.0.1");

// Statuses of every answer in `raw` (several when requests were pipelined), in order.
std::vector<int> http_statuses(std::string_view raw);

}  // namespace mxp::test
