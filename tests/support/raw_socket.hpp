// raw_socket: what the listener tests do with a plain blocking client socket: read until the
// server closes, and write a burst again and again without reading until the server cuts the
// connection. Header-only; poll deadlines everywhere, so a server that never decides fails the
// test instead of hanging it.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace mxp::test {

// Reads until the peer closes (or resets) and returns what came, or nullopt when the connection
// is still open after `limit`.
inline std::optional<std::string> read_until_closed(int fd, std::chrono::milliseconds limit) {
  using clock = std::chrono::steady_clock;
  std::string got;
  const auto until = clock::now() + limit;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
    char buf[4096];
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return got;
    got.append(buf, static_cast<std::size_t>(n));
  }
}

// Sends `burst` whenever the socket takes it and never reads, until the server cuts the
// connection (a send fails, or `connections()` says the server holds none) or `limit` passes.
// True when it was cut.
inline bool flood_until_cut(int fd, std::string_view burst,
                            const std::function<std::size_t()>& connections,
                            std::chrono::milliseconds limit) {
  const auto started = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - started < limit) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 100) <= 0) {
      if (connections() == 0) return true;
      continue;
    }
    if (::send(fd, burst.data(), burst.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
        errno != EAGAIN && errno != EWOULDBLOCK)
      return true;  // EPIPE / ECONNRESET: the server closed it
  }
  return false;
}

}  // namespace mxp::test
