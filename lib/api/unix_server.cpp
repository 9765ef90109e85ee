// unix_server: accept loop, per-connection coroutine, watchdog deadlines.
#include "api/unix_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <spdlog/spdlog.h>

#include <array>
#include <cstring>
#include <list>
#include <system_error>

#include "api/http_api.hpp"
#include "api/request_parser.hpp"
#include "sessions/wait_queue.hpp"

namespace mxp::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using local = asio::local::stream_protocol;
using std::chrono::steady_clock;
using boost::system::error_code;

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// A socket file left by a crashed run is replaced; a live daemon's is not.
void remove_stale_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    fail("cannot inspect " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    errno = EEXIST;
    fail(path + " exists and is not a socket");
  }
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) fail("socket()");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  const int rc = ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  ::close(probe);
  if (rc == 0) {
    errno = EADDRINUSE;
    fail("another process is listening on " + path);
  }
  if (err != ECONNREFUSED) {
    errno = err;
    fail("cannot probe existing socket " + path);
  }
  spdlog::warn("removing stale socket {} left by an earlier run", path);
  if (::unlink(path.c_str()) != 0) fail("cannot remove stale socket " + path);
}

struct connection {
  explicit connection(local::socket s) : socket(std::move(s)), watchdog(socket.get_executor()) {}
  local::socket socket;
  asio::steady_timer watchdog;
  steady_clock::time_point deadline = steady_clock::time_point::max();
  bool busy = false;  // handling a request: not closed by stop() until it is answered
  bool closing = false;
  peer_credentials peer;  // SO_PEERCRED at accept, for access control
  bool peer_known = false;

  void close() {
    if (closing) return;
    closing = true;
    error_code ignored;
    socket.shutdown(local::socket::shutdown_both, ignored);
    socket.close(ignored);
    watchdog.cancel();
  }
};

// Closes the connection when its deadline passes; one timer wake-up per deadline
// period instead of one timer operation per request.
void arm_watchdog(const std::shared_ptr<connection>& c) {
  if (c->closing) return;
  c->watchdog.expires_at(c->deadline);
  c->watchdog.async_wait([weak = std::weak_ptr<connection>(c)](error_code ec) {
    auto c = weak.lock();
    if (ec || !c || c->closing) return;
    if (steady_clock::now() >= c->deadline) return c->close();
    arm_watchdog(c);
  });
}

void serialize(const api_response& res, bool keep_alive, std::string& out) {
  out.clear();
  out += "HTTP/1.1 ";
  out += std::to_string(res.status);
  out += ' ';
  out += reason_phrase(res.status);
  out += "\r\nContent-Type: ";
  out += res.content_type.empty() ? std::string_view{"application/json"} : res.content_type;
  out += "\r\nContent-Length: ";
  out += std::to_string(res.body.size());
  out += keep_alive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n";
  out += res.body;
}

}  // namespace

struct unix_server::impl : std::enable_shared_from_this<unix_server::impl> {
  impl(asio::any_io_executor ex, server_options opts, http_api& a)
      : executor(std::move(ex)), options(std::move(opts)), api(a), acceptor(executor) {}

  asio::any_io_executor executor;
  server_options options;
  http_api& api;
  local::acceptor acceptor;
  ino_t socket_inode = 0;
  std::list<std::weak_ptr<connection>> live;
  sessions::wait_queue connection_closed;
  bool stopping = false;

  void bind() {
    if (options.adopt_fd >= 0) {
      error_code ec;
      acceptor.assign(local{}, options.adopt_fd, ec);
      if (ec) throw std::system_error(ec, "cannot adopt the listening socket passed by systemd");
      return;  // socket_inode stays 0: the file is not ours to remove
    }
    remove_stale_socket(options.socket_path);
    // The umask keeps the socket from ever being wider than socket_mode, even between bind and chmod.
    const mode_t old_mask = ::umask(static_cast<mode_t>(~options.socket_mode & 0777));
    error_code ec;
    acceptor.open(local{}, ec);
    if (!ec) acceptor.bind(local::endpoint{options.socket_path}, ec);
    ::umask(old_mask);
    if (ec) throw std::system_error(ec, "cannot bind " + options.socket_path);
    if (::chmod(options.socket_path.c_str(), static_cast<mode_t>(options.socket_mode)) != 0)
      fail("cannot chmod " + options.socket_path);
    if ((options.socket_uid >= 0 || options.socket_gid >= 0) &&
        ::chown(options.socket_path.c_str(), static_cast<uid_t>(options.socket_uid),
                static_cast<gid_t>(options.socket_gid)) != 0)
      fail("cannot chown " + options.socket_path + " (listen.socket_owner/socket_group)");
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::system_error(ec, "cannot listen on " + options.socket_path);
    struct stat st {};
    if (::stat(options.socket_path.c_str(), &st) == 0) socket_inode = st.st_ino;
  }

  void remove_socket_file() {
    struct stat st {};
    if (socket_inode != 0 && ::stat(options.socket_path.c_str(), &st) == 0 && st.st_ino == socket_inode)
      ::unlink(options.socket_path.c_str());
    socket_inode = 0;
  }

  asio::awaitable<void> serve(std::shared_ptr<connection> c) {
    beast::flat_buffer buffer;
    api_response res;
    std::string out;
    request_buffers request_data;
    for (;;) {
      // --- read one request --------------------------------------------------
      request_parser parser{request_data};
      parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
      parser.body_limit(options.max_body_bytes);
      parser.eager(true);
      error_code ec;
      for (;;) {
        if (buffer.size() > 0) {
          const auto used = parser.put(buffer.data(), ec);
          buffer.consume(used);
          if (ec == http::error::need_more) ec = {};
          if (ec || parser.is_done()) break;
        }
        if (stopping && !parser.got_some()) co_return;  // idle at shutdown: just close
        c->deadline = steady_clock::now() + options.idle_timeout;
        const auto n = co_await c->socket.async_read_some(buffer.prepare(16 * 1024),
                                                          asio::redirect_error(asio::use_awaitable, ec));
        buffer.commit(n);
        if (ec) {
          if (ec == asio::error::eof && parser.got_some()) ec = http::error::partial_message;
          if (!parser.got_some()) co_return;  // peer closed, idle timeout or shutdown
          break;
        }
      }
      bool keep_alive = true;
      if (ec) {
        // Malformed or oversized request: answer once, then close.
        const int status = ec == http::error::header_limit ? 431 : ec == http::error::body_limit ? 413 : 400;
        res.clear();
        res.status = status;
        res.body = R"({"errcode":"M_BAD_REQUEST","error":"malformed HTTP request"})";
        if (status != 400)
          res.body = status == 431 ? R"({"errcode":"M_TOO_LARGE","error":"request headers too large"})"
                                   : R"({"errcode":"M_TOO_LARGE","error":"request body too large"})";
        keep_alive = false;
      } else {
        keep_alive = parser.keep_alive();
        const api_request request{request_data.method, request_data.target, request_data.body,
                                  c->peer_known ? &c->peer : nullptr};
        res.clear();
        if (!api.handle_now(request, res)) {
          c->busy = true;
          c->deadline = steady_clock::time_point::max();  // the API bounds its own wait
          co_await api.handle(request, res);
          c->busy = false;
        }
        if (stopping) keep_alive = false;
      }
      // --- write the answer ----------------------------------------------------
      api.record(res);
      serialize(res, keep_alive, out);
      c->deadline = steady_clock::now() + options.write_timeout;
      const bool malformed = static_cast<bool>(ec);
      co_await asio::async_write(c->socket, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
      if (!ec && malformed) co_await linger(*c);
      if (ec || !keep_alive) co_return;
    }
  }

  // After refusing a request mid-stream, read and drop what the client is still
  // sending (bounded in bytes and time) so it gets to read the answer instead of
  // a connection reset, as nginx's lingering close does.
  static asio::awaitable<void> linger(connection& c) {
    error_code ec;
    c.socket.shutdown(local::socket::shutdown_send, ec);
    c.deadline = steady_clock::now() + std::chrono::seconds{2};
    std::array<char, 16 * 1024> sink;
    for (std::size_t drained = 0; !ec && drained < 1024 * 1024;)
      drained += co_await c.socket.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
  }

  void start(local::socket socket) {
    auto c = std::make_shared<connection>(std::move(socket));
    c->peer_known = read_peer_credentials(c->socket.native_handle(), c->peer);
    if (!c->peer_known) spdlog::warn("cannot read the peer credentials of an API connection: {}", std::strerror(errno));
    live.push_back(c);
    auto where = std::prev(live.end());
    arm_watchdog(c);
    asio::co_spawn(executor, serve(c), [self = shared_from_this(), c, where](std::exception_ptr ep) {
      c->close();
      self->live.erase(where);
      self->connection_closed.notify_all();
      if (!ep) return;
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& ex) {
        spdlog::error("API connection failed: {}", ex.what());
      }
    });
  }
};

unix_server::unix_server(asio::any_io_executor executor, server_options options, http_api& api)
    : impl_(std::make_shared<impl>(std::move(executor), std::move(options), api)) {
  impl_->bind();
}

unix_server::~unix_server() {
  error_code ignored;
  impl_->acceptor.close(ignored);
  impl_->remove_socket_file();
}

asio::awaitable<void> unix_server::run() {
  auto self = impl_;
  if (self->options.adopt_fd >= 0)
    spdlog::info("listening on the socket passed by systemd (fd {})", self->options.adopt_fd);
  else
    spdlog::info("listening on {} (mode {:04o})", self->options.socket_path, self->options.socket_mode);
  while (!self->stopping) {
    error_code ec;
    auto socket = co_await self->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (self->stopping || ec == asio::error::operation_aborted) break;
      spdlog::warn("accept failed: {}", ec.message());
      if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
        asio::steady_timer pause{self->executor, std::chrono::milliseconds{100}};  // let descriptors free up
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      continue;
    }
    if (self->live.size() >= self->options.max_connections) {
      spdlog::warn("refusing API connection: {} connections open (listen.max_connections)", self->live.size());
      continue;  // the socket closes as it goes out of scope
    }
    self->start(std::move(socket));
  }
}

void unix_server::stop() {
  auto& self = *impl_;
  if (self.stopping) return;
  self.stopping = true;
  error_code ignored;
  self.acceptor.close(ignored);
  self.remove_socket_file();
  for (auto& weak : self.live)
    if (auto c = weak.lock(); c && !c->busy) c->close();
}

asio::awaitable<void> unix_server::drain(steady_clock::time_point deadline) {
  auto self = impl_;
  while (!self->live.empty())
    if (!co_await self->connection_closed.wait(deadline)) break;
  for (auto& weak : self->live)
    if (auto c = weak.lock()) c->close();
}

std::size_t unix_server::connections() const noexcept { return impl_->live.size(); }

}  // namespace mxp::api
