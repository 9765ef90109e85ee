// unix_http_client: Beast's request serializer and response parser over an AF_UNIX stream,
// driven synchronously on a private io_context. beast::basic_stream's timer puts the exchange's
// deadline on every read and write; keep-alive, one transparent reconnect, Content-Length /
// chunked / close-delimited bodies, header and body limits.
#include "client/unix_http_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>

namespace mxp::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using steady = std::chrono::steady_clock;

struct unix_connection {
  asio::io_context ioc{1};
  beast::basic_stream<asio::local::stream_protocol> stream{ioc};
  beast::flat_buffer buffer;  // bytes received but not yet parsed
};

namespace {

using request_message = http::request<http::string_body>;
using response_parser = http::response_parser<http::string_body>;

constexpr std::size_t read_chunk_bytes = 16 * 1024;

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

// Asio's codes as std::error_code, so that callers compare them with std::errc.
std::error_code to_std(const error_code& ec) {
  if (ec.category() == boost::system::system_category() ||
      ec.category() == boost::system::generic_category())
    return {ec.value(), std::system_category()};
  return ec;
}

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::system_category(), what);
}

// Runs one asynchronous operation of `c` to completion; basic_stream's expiry bounds it.
template <typename Start>
error_code run(unix_connection& c, std::size_t& bytes, Start&& start) {
  error_code result = asio::error::operation_aborted;
  start([&](error_code ec, std::size_t n) {
    result = ec;
    bytes = n;
  });
  c.ioc.restart();
  c.ioc.run();
  return result;
}

// Beast folds obsolete line folding (a header line starting with SP or HTAB) into the previous
// value; an answer that uses it is refused instead. Looks at the whole header section, which the
// parser leaves in the buffer until it is complete.
bool has_obs_fold(std::string_view head) {
  const auto end = head.find("\r\n\r\n");
  if (end != std::string_view::npos) head = head.substr(0, end + 2);
  for (auto at = head.find("\r\n"); at != std::string_view::npos; at = head.find("\r\n", at + 2)) {
    if (at + 2 < head.size() && (head[at + 2] == ' ' || head[at + 2] == '\t')) return true;
  }
  return false;
}

class exchange {
 public:
  enum class outcome { done, peer_closed_early };

  exchange(unix_connection& c, const std::string& socket_path, std::chrono::milliseconds timeout,
           steady::time_point deadline)
      : c_(c), socket_path_(socket_path), timeout_(timeout), deadline_(deadline) {}

  // Sends `req` and reads its answer into `out`; `keep_alive` says whether the connection may
  // carry another request.
  outcome run_once(const request_message& req, http_response& out, bool& keep_alive) {
    c_.buffer.clear();
    c_.stream.expires_at(deadline_);
    std::size_t sent = 0;
    const auto ec =
        run(c_, sent, [&](auto handler) { http::async_write(c_.stream, req, std::move(handler)); });
    if (ec == beast::error::timeout) timed_out();
    if (ec == asio::error::broken_pipe || ec == asio::error::connection_reset)
      return outcome::peer_closed_early;
    if (ec) throw std::system_error(to_std(ec), "send");

    bool any_byte = false;
    for (;;) {  // loops over interim 1xx answers
      response_parser parser;
      parser.header_limit(static_cast<std::uint32_t>(unix_http_client::max_header_bytes));
      parser.body_limit(unix_http_client::max_body_bytes);
      parser.eager(true);
      if (req.method() == http::verb::head) parser.skip(true);
      if (!read_message(parser, any_byte)) return outcome::peer_closed_early;

      auto& msg = parser.get();
      const unsigned status = msg.result_int();
      if (status < 200) {
        if (status == 101) protocol_error("unexpected protocol switch");
        continue;  // 100 Continue, 102, 103: the real answer follows
      }
      // Bytes after the answer were never asked for: do not trust this connection.
      keep_alive = msg.keep_alive() && !parser.need_eof() && c_.buffer.size() == 0;
      out.status = static_cast<int>(status);
      out.headers.clear();
      for (const auto& field : msg)
        out.headers.emplace_back(std::string{field.name_string()}, std::string{field.value()});
      out.body = std::move(msg.body());
      return outcome::done;
    }
  }

 private:
  // Feeds the parser until it has one whole message; false when the connection closed before
  // the first byte of the answer.
  bool read_message(response_parser& parser, bool& any_byte) {
    for (;;) {
      error_code ec = http::error::need_more;
      if (c_.buffer.size() != 0) {
        if (!parser.is_header_done() && has_obs_fold(as_view(c_.buffer)))
          protocol_error("obsolete header line folding");
        c_.buffer.consume(parser.put(c_.buffer.data(), ec));
      }
      if (parser.is_done()) return true;
      if (ec == http::error::need_more) {
        if (fill()) {
          any_byte = true;
          continue;
        }
        if (!any_byte) return false;
        parser.put_eof(ec);  // ends a close-delimited body; anything else is cut short
        if (!ec) return true;
      }
      if (ec) protocol_error(ec.message());
    }
  }

  // Reads more bytes into the buffer; false on EOF (or a reset, which ends a body the same way).
  bool fill() {
    c_.stream.expires_at(deadline_);
    std::size_t got = 0;
    const auto ec = run(c_, got, [&](auto handler) {
      c_.stream.async_read_some(c_.buffer.prepare(read_chunk_bytes), std::move(handler));
    });
    c_.buffer.commit(got);
    if (!ec) return true;
    if (ec == asio::error::eof || ec == asio::error::connection_reset) return false;
    if (ec == beast::error::timeout) timed_out();
    throw std::system_error(to_std(ec), "receive");
  }

  static std::string_view as_view(const beast::flat_buffer& b) {
    const auto data = b.data();
    return {static_cast<const char*>(data.data()), data.size()};
  }

  [[noreturn]] void timed_out() const {
    throw std::system_error(
        std::make_error_code(std::errc::timed_out),
        "no answer from " + socket_path_ + " within " + std::to_string(timeout_.count()) + "ms");
  }

  unix_connection& c_;
  const std::string& socket_path_;
  std::chrono::milliseconds timeout_;
  steady::time_point deadline_;
};

// Readable while idle: either EOF/reset, or bytes nobody asked for. Neither connection can
// carry a new request.
bool idle_connection_closed(unix_connection& c) noexcept {
  if (c.buffer.size() != 0) return true;
  pollfd p{c.stream.socket().native_handle(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && p.revents != 0;
}

}  // namespace

std::string http_response::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (beast::iequals(k, name)) return v;
  }
  return {};
}

unix_http_client::unix_http_client(std::string socket_path, std::chrono::milliseconds timeout)
    : socket_path_(std::move(socket_path)), timeout_(timeout) {}

unix_http_client::~unix_http_client() = default;
unix_http_client::unix_http_client(unix_http_client&& other) noexcept = default;

unix_http_client& unix_http_client::operator=(unix_http_client&& other) noexcept {
  if (this != &other) {
    close();
    socket_path_ = std::move(other.socket_path_);
    timeout_ = other.timeout_;
    conn_ = std::move(other.conn_);
  }
  return *this;
}

void unix_http_client::close() noexcept {
  if (!conn_) return;
  error_code ignored;
  conn_->stream.socket().close(ignored);
  conn_.reset();
}

void unix_http_client::connect(steady::time_point deadline) {
  close();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.empty() || socket_path_.size() >= sizeof(addr.sun_path)) {
    throw std::system_error(std::make_error_code(std::errc::filename_too_long),
                            "socket path '" + socket_path_ + "'");
  }
  std::memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());

  auto c = std::make_unique<unix_connection>();
  auto& socket = c->stream.socket();
  error_code ec;
  socket.open(asio::local::stream_protocol{}, ec);
  if (!ec) socket.non_blocking(true, ec);
  if (ec) throw std::system_error(to_std(ec), "socket");
  // The connect is the system call itself: when the listener's backlog is full, Linux answers
  // EAGAIN, and Asio would then wait for writability, which an unconnected AF_UNIX socket
  // reports at once. So: try again every 10 ms within the deadline.
  const std::string what = "connect to " + socket_path_;
  for (;;) {
    if (::connect(socket.native_handle(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) ==
        0)
      break;
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN) {
      if (steady::now() >= deadline)
        throw std::system_error(std::make_error_code(std::errc::timed_out), what);
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
      continue;
    }
    if (err != EINPROGRESS) throw_errno(err, what);
    // Not used by AF_UNIX on Linux, but allowed by POSIX: wait for writability, then ask.
    asio::steady_timer timer{c->ioc, deadline};
    bool expired = false;
    timer.async_wait([&](error_code e) {
      expired = !e;
      if (expired) socket.cancel();
    });
    socket.async_wait(asio::socket_base::wait_write, [&](error_code) { timer.cancel(); });
    c->ioc.run();
    if (expired) throw std::system_error(std::make_error_code(std::errc::timed_out), what);
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &so_error, &len) != 0)
      so_error = errno;
    if (so_error != 0) throw_errno(so_error, what);
    break;
  }
  conn_ = std::move(c);
}

http_response unix_http_client::request(std::string_view method, std::string_view target,
                                        std::string_view body, std::string_view content_type) {
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_token_char)) {
    throw std::invalid_argument("bad HTTP method");
  }
  if (target.empty() || has_ctl_or_space(target)) throw std::invalid_argument("bad request target");
  if (has_line_break(content_type)) throw std::invalid_argument("bad Content-Type");

  request_message req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(http::field::host, "localhost");
  if (!body.empty()) {
    if (!content_type.empty()) req.set(http::field::content_type, content_type);
    req.content_length(body.size());
    req.body() = std::string{body};
  } else if (method == "POST" || method == "PUT" || method == "PATCH") {
    req.content_length(0);
  }

  const auto deadline = steady::now() + timeout_;
  try {
    if (conn_ && idle_connection_closed(*conn_)) close();
    const bool reused = conn_ != nullptr;
    if (!reused) connect(deadline);
    http_response resp;
    bool keep_alive = false;
    auto attempt = [&] {
      const auto result =
          exchange{*conn_, socket_path_, timeout_, deadline}.run_once(req, resp, keep_alive);
      if (result == exchange::outcome::done && !keep_alive) close();
      return result == exchange::outcome::done;
    };
    if (attempt()) return resp;
    // The server dropped the idle connection as we used it: once more, on a fresh one.
    if (reused) {
      connect(deadline);
      if (attempt()) return resp;
    }
    throw std::system_error(std::make_error_code(std::errc::connection_reset),
                            "connection to " + socket_path_ + " closed before an answer");
  } catch (...) {
    close();
    throw;
  }
}

}  // namespace mxp::client
