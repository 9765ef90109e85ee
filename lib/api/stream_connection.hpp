// stream_connection: one connection of an API listener (stream_server) with its deadlines: the
// socket, what was read and not yet answered, what was answered and not yet sent, the watchdog
// that closes it when its deadline passes, and, on the Unix socket, the raw descriptor while the
// hot loop holds it between requests.
// Internal to lib/api: included by stream_server.hpp only.
#pragma once

#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "api/http_api.hpp"

namespace mxp::api::detail {

// Limits every listener applies to its connections. Each phase of a connection has its own
// deadline: waiting for a request (idle), receiving its header once the first byte came
// (header: a slow sender cannot stretch it byte by byte), receiving its body, writing the
// answer to a client that does not read (write), and draining after a refusal (linger).
struct connection_limits {
  std::chrono::milliseconds idle_timeout;
  std::chrono::milliseconds header_timeout;
  std::chrono::milliseconds body_timeout;
  std::chrono::milliseconds write_timeout;
  std::size_t max_header_bytes;
  std::size_t max_body_bytes;
  std::size_t max_connections;
  std::chrono::milliseconds linger_timeout{std::chrono::seconds{2}};
};

// What a connection is waiting for, which decides its deadline.
enum class phase : unsigned char { idle, header, body };

template <typename Transport>
struct connection : std::enable_shared_from_this<connection<Transport>> {
  using socket_type = typename Transport::protocol::socket;
  using time_point = std::chrono::steady_clock::time_point;

  explicit connection(socket_type s)
      : socket(std::move(s)), watchdog(socket.get_executor()), parked(socket.get_executor()) {
    parked.expires_at(time_point::max());
  }

  socket_type socket;  // not open while the hot loop holds the descriptor (hot_fd)
  boost::asio::steady_timer watchdog;
  // While the hot loop holds the connection, its coroutine waits on this timer, which never
  // expires: handing the connection back (or closing it) cancels the wait.
  boost::asio::steady_timer parked;
  time_point deadline = time_point::max();
  // When the watchdog is set to wake (max: not waiting). A deadline later than this needs no
  // timer operation: the watchdog finds it when it wakes and sleeps on.
  time_point armed_for = time_point::max();
  phase waiting = phase::idle;
  bool busy = false;  // handling a request: not closed by stop() until it is answered
  bool closing = false;
  bool peer_closed = false;  // the hot loop read the end of the stream after a partial request
  typename Transport::peer peer;
  connection_access access;      // the hot path's access decision for this peer
  boost::beast::flat_buffer in;  // received, not yet answered
  std::string out;               // answered, not yet sent
  int hot_fd = -1;               // the descriptor, released from Asio, while the hot loop holds it
  int hot_epoll = -1;            // the hot loop's epoll set, while it does

  void close() {
    if (closing) return;
    closing = true;
    if (hot_fd >= 0) {
      ::epoll_ctl(hot_epoll, EPOLL_CTL_DEL, hot_fd, nullptr);
      ::shutdown(hot_fd, SHUT_RDWR);
      ::close(hot_fd);
      hot_fd = -1;
    } else {
      boost::system::error_code ignored;
      socket.shutdown(boost::asio::socket_base::shutdown_both, ignored);
      socket.close(ignored);
    }
    watchdog.cancel();
    parked.cancel();
  }
};

// Closes the connection when its deadline passes; one timer wake-up per deadline
// period instead of one timer operation per request.
template <typename Transport>
void arm_watchdog(connection<Transport>& c) {
  if (c.closing) return;
  c.armed_for = c.deadline;
  c.watchdog.expires_at(c.deadline);  // cancels a wait for a later time
  c.watchdog.async_wait([weak = c.weak_from_this()](boost::system::error_code ec) {
    auto c = weak.lock();
    if (ec || !c || c->closing) return;  // re-armed for an earlier deadline, or closed
    c->armed_for = std::chrono::steady_clock::time_point::max();
    if (std::chrono::steady_clock::now() >= c->deadline) return c->close();
    arm_watchdog(*c);
  });
}

// Moves the connection's deadline; the timer is touched only when it must wake earlier.
template <typename Transport>
void set_deadline(connection<Transport>& c, std::chrono::steady_clock::time_point deadline) {
  c.deadline = deadline;
  if (deadline < c.armed_for) arm_watchdog(c);
}

}  // namespace mxp::api::detail
