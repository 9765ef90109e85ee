// unix_http_client: a small blocking HTTP/1.1 client over a Unix stream socket (Beast,
// run synchronously with a deadline), used by mxpuppetctl and end-to-end tests.
// Beast stays out of this header: it is compiled in unix_http_client.cpp only.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "client/percent_encoding.hpp"

namespace mxp::client {

struct unix_connection;  // the socket, its private io_context and the unparsed bytes (.cpp)

struct http_response {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // in order received

  // Value of the first header called `name` (ASCII case-insensitive); "" if absent.
  std::string header(std::string_view name) const;
};

// The server's answer could not be parsed as HTTP/1.x, or broke a limit.
// (std::system_error also derives from std::runtime_error: catch it first.)
class http_protocol_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class unix_http_client {
 public:
  static constexpr std::size_t max_header_bytes = 64 * 1024;
  static constexpr std::size_t max_body_bytes = 16 * 1024 * 1024;

  explicit unix_http_client(std::string socket_path,
                            std::chrono::milliseconds timeout = std::chrono::seconds(35));
  ~unix_http_client();
  unix_http_client(const unix_http_client&) = delete;
  unix_http_client& operator=(const unix_http_client&) = delete;
  unix_http_client(unix_http_client&& other) noexcept;
  unix_http_client& operator=(unix_http_client&& other) noexcept;

  // Sends one request and reads its answer; `timeout` bounds the whole exchange
  // (connect, send, receive). Keep-alive: one connection is reused; if the server
  // closed an idle connection (EOF/EPIPE/ECONNRESET before any byte of the
  // answer), it reconnects and resends once, transparently.
  // Sends Host: localhost, and Content-Type/Content-Length when `body` is not empty.
  // Throws std::system_error on connect/IO failure (std::errc::timed_out on
  // timeout), http_protocol_error (a std::runtime_error) on a malformed answer.
  // After any exception the connection is closed.
  http_response request(std::string_view method, std::string_view target,
                        std::string_view body = {},
                        std::string_view content_type = "application/json");

  void close() noexcept;

  bool connected() const noexcept { return conn_ != nullptr; }
  const std::string& socket_path() const noexcept { return socket_path_; }

 private:
  void connect(std::chrono::steady_clock::time_point deadline);

  std::string socket_path_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<unix_connection> conn_;  // null: not connected
};

}  // namespace mxp::client
