// tcp_http: POSIX socket client for the TCP listener tests.
#include "support/tcp_http.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace mxp::test {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
};

// Fills a sockaddr for an IPv4 or IPv6 numeric address.
socklen_t make_addr(const char* address, std::uint16_t port, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  if (::inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return sizeof(sockaddr_in);
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (::inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return sizeof(sockaddr_in6);
  }
  throw std::invalid_argument(std::string{"not a numeric address: "} + address);
}

}  // namespace

std::uint16_t free_loopback_port(const char* address) {
  sockaddr_storage addr{};
  const auto len = make_addr(address, 0, addr);
  fd_guard s{::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (s.fd < 0) fail("socket()");
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) fail("bind()");
  socklen_t got = sizeof addr;
  if (::getsockname(s.fd, reinterpret_cast<sockaddr*>(&addr), &got) != 0) fail("getsockname()");
  return addr.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port)
                                   : ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
}

std::string tcp_exchange(std::uint16_t port, std::string_view raw, const char* address) {
  sockaddr_storage addr{};
  const auto len = make_addr(address, port, addr);
  fd_guard s{::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (s.fd < 0) fail("socket()");
  timeval tv{10, 0};
  ::setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&addr), len) != 0)
    fail("connect to " + std::string{address} + ":" + std::to_string(port));
  for (std::size_t sent = 0; sent < raw.size();) {
    const auto n = ::send(s.fd, raw.data() + sent, raw.size() - sent, MSG_NOSIGNAL);
    if (n < 0) fail("send()");
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(s.fd, SHUT_WR);
  std::string out;
  char buf[16 * 1024];
  for (;;) {
    const auto n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ECONNRESET && !out.empty()) break;
      fail("recv()");
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

tcp_http_response tcp_request(std::uint16_t port, std::string_view method, std::string_view target,
                              const std::vector<std::pair<std::string, std::string>>& headers,
                              std::string_view body, const char* address) {
  std::string raw;
  raw.append(method).append(" ").append(target).append(
      " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
  for (const auto& [name, value] : headers)
    raw.append(name).append(": ").append(value).append("\r\n");
  if (!body.empty())
    raw.append("Content-Type: application/json\r\nContent-Length: ")
        .append(std::to_string(body.size()))
        .append("\r\n");
  raw.append("\r\n").append(body);
  const auto answer = tcp_exchange(port, raw, address);
  const auto statuses = http_statuses(answer);
  const auto end = answer.find("\r\n\r\n");
  if (statuses.size() != 1 || end == std::string::npos)
    throw std::runtime_error("not one HTTP answer: " + answer);
  return {statuses.front(), answer.substr(end + 4)};
}

std::vector<int> http_statuses(std::string_view raw) {
  // Walks answer by answer: status line, headers, Content-Length bytes of body.
  std::vector<int> out;
  while (raw.starts_with("HTTP/1.1 ") && raw.size() >= 12) {
    out.push_back(std::stoi(std::string{raw.substr(9, 3)}));
    const auto end = raw.find("\r\n\r\n");
    if (end == std::string_view::npos) break;
    std::string head{raw.substr(0, end)};
    for (auto& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    std::size_t length = 0;
    if (const auto at = head.find("\r\ncontent-length:"); at != std::string::npos)
      length = std::stoul(head.substr(at + 17));
    raw.remove_prefix(std::min(raw.size(), end + 4 + length));
  }
  return out;
}

}  // namespace mxp::test
