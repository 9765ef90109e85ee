// http_api: the socket API's routes and answers, independent of the transport.
// The server hands it parsed requests; cached tokens are answered without
// suspending (handle_now), everything else through the coroutine handle().
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "sessions/session_pool.hpp"

namespace mxp::api {

struct api_request {
  std::string_view method;  // "GET", "POST", "DELETE"
  std::string_view target;  // path and query, still percent-encoded
  std::string_view body;
};

struct api_response {
  int status = 200;
  std::string body;  // JSON; reused across requests on one connection
  void clear() { status = 200, body.clear(); }
};

// Reason phrase for the status line.
std::string_view reason_phrase(int status) noexcept;

class http_api {
 public:
  http_api(sessions::session_pool& pool, std::chrono::milliseconds request_timeout);

  // Answers without suspending when it can (cached token, health, status); false otherwise.
  bool handle_now(const api_request& req, api_response& res);
  // Answers any request; may log users in, within the request deadline.
  boost::asio::awaitable<void> handle(api_request req, api_response& res);

  void set_ready(bool ready) noexcept { ready_ = ready; }

 private:
  sessions::session_pool& pool_;
  std::chrono::milliseconds request_timeout_;
  std::chrono::steady_clock::time_point started_;
  bool ready_ = false;
};

}  // namespace mxp::api
