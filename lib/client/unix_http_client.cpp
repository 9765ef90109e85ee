// unix_http_client: blocking HTTP/1.1 over AF_UNIX with keep-alive, one
// transparent reconnect, Content-Length / chunked / close-delimited bodies.
#include "client/unix_http_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <system_error>

namespace mxp::client {

namespace {

constexpr std::size_t max_chunk_line_bytes = 4096;

char ascii_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls f(token) for each element of a comma-separated header list.
template <typename F>
void for_each_list_token(std::string_view value, F&& f) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    f(trim_ows(value.substr(0, comma)));
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

bool is_token_char(char c) noexcept {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return std::string_view{"!#$%&'*+-.^_`|~"}.find(c) != std::string_view::npos;
}

bool has_ctl_or_space(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7F;
  });
}

bool has_line_break(std::string_view s) noexcept {
  return s.find_first_of("\r\n") != std::string_view::npos ||
         s.find('\0') != std::string_view::npos;
}

[[noreturn]] void protocol_error(const std::string& what) {
  throw http_protocol_error("malformed HTTP answer: " + what);
}

[[noreturn]] void throw_errno(int err, const char* what) {
  throw std::system_error(err, std::system_category(), what);
}

// Parses the status line and header fields of `head` (without the final CRLFCRLF).
struct parsed_head {
  int minor_version = 1;
  http_response response;
};

parsed_head parse_head(std::string_view head) {
  parsed_head out;
  const auto eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  head = eol == std::string_view::npos ? std::string_view{} : head.substr(eol + 2);

  // HTTP-version SP status-code SP [reason-phrase]
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || status_line[7] < '0' ||
      status_line[7] > '9' || status_line[8] != ' ') {
    protocol_error("bad status line");
  }
  out.minor_version = status_line[7] - '0';
  int status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (status_line[i] < '0' || status_line[i] > '9') protocol_error("bad status code");
    status = status * 10 + (status_line[i] - '0');
  }
  if (status < 100) protocol_error("bad status code");
  if (status_line.size() > 12 && status_line[12] != ' ') protocol_error("bad status line");
  out.response.status = status;

  while (!head.empty()) {
    const auto end = head.find("\r\n");
    std::string_view line = head.substr(0, end);
    head = end == std::string_view::npos ? std::string_view{} : head.substr(end + 2);
    if (line.empty()) protocol_error("empty header line");
    if (line.front() == ' ' || line.front() == '\t') protocol_error("obsolete header line folding");
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) protocol_error("header line without a name");
    const auto name = line.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), is_token_char)) protocol_error("bad header name");
    const auto value = trim_ows(line.substr(colon + 1));
    if (value.find_first_of(std::string_view{"\r\n\0", 3}) != std::string_view::npos) {
      protocol_error("bad header value");
    }
    out.response.headers.emplace_back(std::string{name}, std::string{value});
  }
  return out;
}

// Parses a Content-Length value; throws on garbage, returns SIZE_MAX when over any sane size.
std::size_t parse_content_length(std::string_view v) {
  v = trim_ows(v);
  if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    protocol_error("bad Content-Length");
  }
  if (v.size() > 18) return SIZE_MAX;
  std::size_t n = 0;
  for (const char c : v) n = n * 10 + static_cast<std::size_t>(c - '0');
  return n;
}

}  // namespace

std::string http_response::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return {};
}

unix_http_client::unix_http_client(std::string socket_path, std::chrono::milliseconds timeout)
    : socket_path_(std::move(socket_path)), timeout_(timeout) {}

unix_http_client::~unix_http_client() {
  close();
}

unix_http_client::unix_http_client(unix_http_client&& other) noexcept
    : socket_path_(std::move(other.socket_path_)),
      timeout_(other.timeout_),
      fd_(std::exchange(other.fd_, -1)),
      buf_(std::move(other.buf_)) {}

unix_http_client& unix_http_client::operator=(unix_http_client&& other) noexcept {
  if (this != &other) {
    close();
    socket_path_ = std::move(other.socket_path_);
    timeout_ = other.timeout_;
    fd_ = std::exchange(other.fd_, -1);
    buf_ = std::move(other.buf_);
  }
  return *this;
}

void unix_http_client::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buf_.clear();
}

void unix_http_client::wait(short events, clock::time_point deadline) const {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0) {
      throw std::system_error(
          std::make_error_code(std::errc::timed_out),
          "no answer from " + socket_path_ + " within " + std::to_string(timeout_.count()) + "ms");
    }
    pollfd p{fd_, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 60'000)));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "poll");
    }
    if (n == 0) continue;  // re-check the deadline
    if (p.revents & POLLNVAL) throw_errno(EBADF, "poll");
    return;  // ready, or POLLERR/POLLHUP: the next send/recv reports what happened
  }
}

void unix_http_client::connect(clock::time_point deadline) {
  close();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.empty() || socket_path_.size() >= sizeof(addr.sun_path)) {
    throw std::system_error(std::make_error_code(std::errc::filename_too_long),
                            "socket path '" + socket_path_ + "'");
  }
  std::memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());

  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) throw_errno(errno, "socket");
  const std::string what = "connect to " + socket_path_;
  for (;;) {
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return;
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN) {  // listen backlog full: try again shortly, within the deadline
      if (clock::now() >= deadline) {
        close();
        throw std::system_error(std::make_error_code(std::errc::timed_out), what);
      }
      ::poll(nullptr, 0, 10);
      continue;
    }
    if (err == EINPROGRESS) {  // not used by AF_UNIX on Linux, but allowed by POSIX
      try {
        wait(POLLOUT, deadline);
      } catch (...) {
        close();
        throw;
      }
      int so_error = 0;
      socklen_t len = sizeof so_error;
      if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
      if (so_error == 0) return;
      close();
      throw_errno(so_error, what.c_str());
    }
    close();
    throw_errno(err, what.c_str());
  }
}

bool unix_http_client::idle_connection_closed() const noexcept {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  // Readable while idle: either EOF/reset, or bytes nobody asked for. Neither
  // connection can carry a new request.
  return p.revents != 0;
}

bool unix_http_client::fill(clock::time_point deadline) {
  char tmp[16 * 1024];
  for (;;) {
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n > 0) {
      buf_.append(tmp, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0) return false;
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      wait(POLLIN, deadline);
      continue;
    }
    if (err == ECONNRESET) return false;
    throw_errno(err, "receive");
  }
}

unix_http_client::attempt_result unix_http_client::attempt(std::string_view method,
                                                           const std::string& wire,
                                                           clock::time_point deadline,
                                                           http_response& out) {
  buf_.clear();
  // Send the whole request.
  std::size_t sent = 0;
  while (sent < wire.size()) {
    const ssize_t n = ::send(fd_, wire.data() + sent, wire.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      wait(POLLOUT, deadline);
      continue;
    }
    if (err == EPIPE || err == ECONNRESET) return attempt_result::peer_closed_early;
    throw_errno(err, "send");
  }

  bool any_byte = false;
  for (;;) {  // loops over interim 1xx answers
    // Status line and header fields.
    std::size_t head_end = std::string::npos;
    std::size_t scanned = 0;
    for (;;) {
      head_end = buf_.find("\r\n\r\n", scanned);
      if (head_end != std::string::npos) break;
      scanned = buf_.size() < 3 ? 0 : buf_.size() - 3;
      if (buf_.size() > max_header_bytes) protocol_error("header section larger than 64 KiB");
      if (!fill(deadline)) {
        if (!any_byte && buf_.empty()) return attempt_result::peer_closed_early;
        protocol_error("connection closed in the middle of the header section");
      }
      any_byte = true;
    }
    if (head_end + 4 > max_header_bytes) protocol_error("header section larger than 64 KiB");
    parsed_head head = parse_head(std::string_view{buf_}.substr(0, head_end));
    buf_.erase(0, head_end + 4);
    http_response& resp = head.response;

    if (resp.status < 200) {
      if (resp.status == 101) protocol_error("unexpected protocol switch");
      continue;  // 100 Continue, 102, 103: the real answer follows
    }

    // Connection persistence.
    bool keep_alive = head.minor_version >= 1;
    for (const auto& [k, v] : resp.headers) {
      if (!iequals(k, "Connection")) continue;
      for_each_list_token(v, [&](std::string_view t) {
        if (iequals(t, "close")) keep_alive = false;
        if (iequals(t, "keep-alive") && head.minor_version == 0) keep_alive = true;
      });
    }

    // Body framing (RFC 9112 section 6.3).
    enum class framing { none, length, chunked, until_close } how = framing::until_close;
    std::size_t length = 0;
    bool have_te = false;
    bool chunked = false;
    bool have_length = false;
    for (const auto& [k, v] : resp.headers) {
      if (iequals(k, "Transfer-Encoding")) {
        have_te = true;
        chunked = false;
        for_each_list_token(v, [&](std::string_view t) {
          if (!t.empty()) chunked = iequals(t, "chunked");
        });
      } else if (iequals(k, "Content-Length")) {
        const std::size_t n = parse_content_length(v);
        if (have_length && n != length) protocol_error("conflicting Content-Length values");
        have_length = true;
        length = n;
      }
    }
    if (method == "HEAD" || resp.status == 204 || resp.status == 304) {
      how = framing::none;
    } else if (have_te) {
      how = chunked ? framing::chunked : framing::until_close;
      if (have_length) keep_alive = false;  // smuggling-shaped answer: do not reuse
    } else if (have_length) {
      how = framing::length;
    }

    switch (how) {
      case framing::none:
        break;
      case framing::length: {
        if (length > max_body_bytes) protocol_error("body larger than 16 MiB");
        while (buf_.size() < length) {
          if (!fill(deadline)) protocol_error("connection closed before the end of the body");
        }
        resp.body.assign(buf_, 0, length);
        buf_.erase(0, length);
        break;
      }
      case framing::chunked: {
        std::size_t pos = 0;
        auto read_line = [&]() -> std::string_view {
          for (std::size_t scan = pos;;) {
            const auto eol = buf_.find("\r\n", scan);
            if (eol != std::string::npos) {
              if (eol - pos > max_chunk_line_bytes) protocol_error("chunk line too long");
              std::string_view line{buf_.data() + pos, eol - pos};
              pos = eol + 2;
              return line;
            }
            if (buf_.size() - pos > max_chunk_line_bytes) protocol_error("chunk line too long");
            scan = std::max(pos, buf_.empty() ? std::size_t{0} : buf_.size() - 1);
            if (!fill(deadline))
              protocol_error("connection closed in the middle of a chunked body");
          }
        };
        for (;;) {
          // read_line may grow buf_; keep only indices across calls.
          std::string_view size_text = read_line();
          size_text = trim_ows(size_text.substr(0, size_text.find(';')));
          if (size_text.empty() || size_text.size() > 8) protocol_error("bad chunk size");
          std::size_t size = 0;
          for (const char c : size_text) {
            int d = 0;
            if (c >= '0' && c <= '9')
              d = c - '0';
            else if (c >= 'a' && c <= 'f')
              d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F')
              d = c - 'A' + 10;
            else
              protocol_error("bad chunk size");
            size = size * 16 + static_cast<std::size_t>(d);
          }
          if (size == 0) break;
          if (size > max_body_bytes || resp.body.size() + size > max_body_bytes) {
            protocol_error("body larger than 16 MiB");
          }
          while (buf_.size() - pos < size + 2) {
            if (!fill(deadline))
              protocol_error("connection closed in the middle of a chunked body");
          }
          resp.body.append(buf_, pos, size);
          if (buf_.compare(pos + size, 2, "\r\n") != 0)
            protocol_error("chunk not followed by CRLF");
          pos += size + 2;
          if (pos > 64 * 1024) {  // keep the buffer small on big bodies
            buf_.erase(0, pos);
            pos = 0;
          }
        }
        // Trailer section, ignored.
        std::size_t trailer_bytes = 0;
        for (;;) {
          const std::string_view line = read_line();
          if (line.empty()) break;
          trailer_bytes += line.size() + 2;
          if (trailer_bytes > max_header_bytes)
            protocol_error("trailer section larger than 64 KiB");
        }
        buf_.erase(0, pos);
        break;
      }
      case framing::until_close: {
        keep_alive = false;
        while (fill(deadline)) {
          if (buf_.size() > max_body_bytes) protocol_error("body larger than 16 MiB");
        }
        resp.body = std::move(buf_);
        buf_.clear();
        break;
      }
    }

    // Bytes after the answer were never asked for: do not trust this connection.
    if (!buf_.empty()) keep_alive = false;
    if (!keep_alive) close();
    out = std::move(resp);
    return attempt_result::done;
  }
}

http_response unix_http_client::request(std::string_view method, std::string_view target,
                                        std::string_view body, std::string_view content_type) {
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_token_char)) {
    throw std::invalid_argument("bad HTTP method");
  }
  if (target.empty() || has_ctl_or_space(target)) throw std::invalid_argument("bad request target");
  if (has_line_break(content_type)) throw std::invalid_argument("bad Content-Type");

  std::string wire;
  wire.reserve(128 + target.size() + body.size());
  wire.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: localhost\r\n");
  if (!body.empty()) {
    if (!content_type.empty()) wire.append("Content-Type: ").append(content_type).append("\r\n");
    wire.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  } else if (method == "POST" || method == "PUT" || method == "PATCH") {
    wire.append("Content-Length: 0\r\n");
  }
  wire.append("\r\n").append(body);

  const auto deadline = clock::now() + timeout_;
  try {
    if (fd_ >= 0 && idle_connection_closed()) close();
    const bool reused = fd_ >= 0;
    if (!reused) connect(deadline);
    http_response resp;
    if (attempt(method, wire, deadline, resp) == attempt_result::done) return resp;
    if (reused) {  // the server dropped the idle connection as we used it: once more, on a fresh
                   // one
      connect(deadline);
      if (attempt(method, wire, deadline, resp) == attempt_result::done) return resp;
    }
    throw std::system_error(std::make_error_code(std::errc::connection_reset),
                            "connection to " + socket_path_ + " closed before an answer");
  } catch (...) {
    close();
    throw;
  }
}

}  // namespace mxp::client
