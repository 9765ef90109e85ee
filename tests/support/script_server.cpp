// script_server: plain POSIX sockets and poll(), so that a script can write any bytes at all,
// including answers no HTTP library would produce.
#include "support/script_server.hpp"

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

namespace mxp::test {

using namespace std::chrono_literals;

script_server::script_server(script s) : script_(std::move(s)) {
  char dir_template[] = "/tmp/mxp-client-test-XXXXXX";
  if (!::mkdtemp(dir_template)) throw std::system_error(errno, std::system_category(), "mkdtemp");
  dir_ = dir_template;
  path_ = dir_ + "/test.sock";
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 16) != 0) {
    throw std::system_error(errno, std::system_category(), "bind/listen");
  }
  thread_ = std::thread([this] { serve(); });
}

script_server::~script_server() {
  stopping = true;
  thread_.join();
  ::close(listen_fd_);
  ::unlink(path_.c_str());
  ::rmdir(dir_.c_str());
}

std::vector<recorded_request> script_server::requests() {
  std::lock_guard lock{mutex_};
  return requests_;
}

void script_server::record(recorded_request r) {
  std::lock_guard lock{mutex_};
  requests_.push_back(std::move(r));
}

void script_server::serve() {
  while (!stopping) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const int n = ++accepted_;
    {
      script_connection c{fd, *this};
      script_(c, n);
    }
    ::close(fd);
  }
}

void script_connection::write(std::string_view s) const {
  while (!s.empty()) {
    const ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

void script_connection::write_slowly(std::string_view s) const {
  for (std::size_t i = 0; i < s.size(); ++i) {
    write(s.substr(i, 1));
    if (i % 7 == 0) std::this_thread::sleep_for(1ms);
  }
}

bool script_connection::fill() {
  while (!server_.stopping) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    char tmp[4096];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
  return false;
}

std::optional<recorded_request> script_connection::read_request() {
  std::size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return std::nullopt;
  }
  recorded_request r;
  r.head = buf_.substr(0, end + 2);
  const auto sp1 = r.head.find(' ');
  const auto sp2 = r.head.find(' ', sp1 + 1);
  r.method = r.head.substr(0, sp1);
  r.target = r.head.substr(sp1 + 1, sp2 - sp1 - 1);
  std::size_t length = 0;
  if (const auto cl = r.head.find("Content-Length: "); cl != std::string::npos) {
    length = std::stoul(r.head.substr(cl + 16));
  }
  while (buf_.size() < end + 4 + length) {
    if (!fill()) return std::nullopt;
  }
  r.body = buf_.substr(end + 4, length);
  buf_.erase(0, end + 4 + length);
  server_.record(r);
  return r;
}

void script_connection::wait_for_shutdown() const {
  while (!server_.stopping) std::this_thread::sleep_for(10ms);
}

std::string json_answer(int status, std::string_view body) {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + std::string{body};
}

}  // namespace mxp::test
