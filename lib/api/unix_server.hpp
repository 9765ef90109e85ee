// unix_server: the socket API's listener. Creates the socket file (mode from
// config, stale files from a crashed run replaced, a live daemon's never stolen),
// accepts connections and serves HTTP/1.1 keep-alive with Beast's parser.
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

struct server_options {
  std::string socket_path;
  unsigned socket_mode = 0660;
  std::chrono::milliseconds idle_timeout{std::chrono::seconds{60}};    // between requests
  std::chrono::milliseconds header_timeout{std::chrono::seconds{10}};  // first byte to header end
  std::chrono::milliseconds body_timeout{std::chrono::seconds{10}};    // header end to body end
  std::chrono::milliseconds write_timeout{std::chrono::seconds{10}};   // an answer to a non-reader
  std::size_t max_header_bytes = 8 * 1024;
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_connections = 1024;
  // A listening AF_UNIX stream socket to adopt instead of binding socket_path (systemd
  // socket activation); its file belongs to whoever created it and is never removed.
  int adopt_fd = -1;
  // Owner and group set on the socket file after bind (-1: leave as created).
  long long socket_uid = -1;
  long long socket_gid = -1;
};

class unix_server {
 public:
  // Binds the socket now; throws std::system_error with a message naming the path.
  unix_server(boost::asio::any_io_executor executor, server_options options, http_api& api);
  ~unix_server();
  unix_server(const unix_server&) = delete;
  unix_server& operator=(const unix_server&) = delete;

  // Accepts until stop(); each connection runs as its own coroutine.
  boost::asio::awaitable<void> run();
  // Stops accepting, closes idle connections, lets in-flight requests finish, removes the socket
  // file.
  void stop();
  // Waits until every connection is gone or the deadline passes.
  boost::asio::awaitable<void> drain(std::chrono::steady_clock::time_point deadline);
  std::size_t connections() const noexcept;
  std::uint64_t refused_connections() const noexcept;  // over max_connections, since start

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace mxp::api
