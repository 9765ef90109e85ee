// tcp_server: the optional TCP listener (`listen.tcp`) for bridges in containers, on a
// loopback address only. Serves the same API as unix_server; every request must carry the
// API key of a `clients:` entry (http_api checks it), since TCP peers have no SO_PEERCRED.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace mxp::api {

class http_api;

struct tcp_server_options {
  std::string address;     // numeric: "127.0.0.1", "::1" (the config allows loopback only)
  std::uint16_t port = 0;  // 0: an ephemeral port, see tcp_server::port()
  std::chrono::milliseconds idle_timeout{std::chrono::seconds{60}};    // between requests
  std::chrono::milliseconds header_timeout{std::chrono::seconds{10}};  // first byte to header end
  std::chrono::milliseconds body_timeout{std::chrono::seconds{10}};    // header end to body end
  std::chrono::milliseconds write_timeout{std::chrono::seconds{10}};   // an answer to a non-reader
  std::size_t max_header_bytes = 8 * 1024;
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_connections = 1024;
};

class tcp_server {
 public:
  // Binds and listens now; throws std::system_error with a message naming address and port.
  tcp_server(boost::asio::any_io_executor executor, tcp_server_options options, http_api& api);
  ~tcp_server();
  tcp_server(const tcp_server&) = delete;
  tcp_server& operator=(const tcp_server&) = delete;

  // Accepts until stop(); each connection runs as its own coroutine.
  boost::asio::awaitable<void> run();
  // Stops accepting, closes idle connections, lets in-flight requests finish.
  void stop();
  // Waits until every connection is gone or the deadline passes.
  boost::asio::awaitable<void> drain(std::chrono::steady_clock::time_point deadline);
  std::size_t connections() const noexcept;
  std::uint64_t refused_connections() const noexcept;  // over max_connections, since start
  std::uint16_t port() const noexcept;                 // the bound port
  std::string endpoint() const;                        // "127.0.0.1:8765", "[::1]:8765"

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace mxp::api
