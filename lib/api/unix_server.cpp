// unix_server: the socket file (stale ones replaced, mode and owner set, removed at stop) and
// SO_PEERCRED of each peer; the accept loop and the connections are stream_server's.
#include "api/unix_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>

#include <spdlog/spdlog.h>

#include <cstring>
#include <system_error>

#include "api/access_policy.hpp"
#include "api/stream_server.hpp"

namespace mxp::api {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using boost::system::error_code;
using std::chrono::steady_clock;

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

// The Unix-socket side of stream_server: peers are known by SO_PEERCRED, read once at accept.
struct unix_transport {
  using protocol = local;
  struct peer {
    peer_credentials credentials;
    bool known = false;
  };
  static constexpr bool wants_authorization = false;
  static constexpr bool hot_path = true;
  static const peer_credentials* credentials(const peer& p) {
    return p.known ? &p.credentials : nullptr;
  }

  static void accepted(local::socket& socket, peer& p) {
    p.known = read_peer_credentials(socket.native_handle(), p.credentials);
    if (!p.known)
      spdlog::warn("cannot read the peer credentials of an API connection: {}",
                   std::strerror(errno));
  }
  static api_request request(const request_buffers& b, const peer& p) {
    return api_request{b.method, b.target, b.body, p.known ? &p.credentials : nullptr};
  }
};

detail::connection_limits limits_of(const server_options& o) {
  return {o.idle_timeout,     o.header_timeout, o.body_timeout,   o.write_timeout,
          o.max_header_bytes, o.max_body_bytes, o.max_connections};
}

}  // namespace

struct unix_server::impl : detail::stream_server<unix_transport> {
  impl(asio::any_io_executor ex, server_options opts, http_api& a)
      : stream_server(std::move(ex), limits_of(opts), a), options(std::move(opts)) {}

  server_options options;
  ino_t socket_inode = 0;

  void bind() {
    if (options.adopt_fd >= 0) {
      error_code ec;
      acceptor.assign(local{}, options.adopt_fd, ec);
      if (ec) throw std::system_error(ec, "cannot adopt the listening socket passed by systemd");
      return;  // socket_inode stays 0: the file is not ours to remove
    }
    remove_stale_socket(options.socket_path);
    // The umask keeps the socket from ever being wider than socket_mode, even between bind and
    // chmod.
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
    if (socket_inode != 0 && ::stat(options.socket_path.c_str(), &st) == 0 &&
        st.st_ino == socket_inode)
      ::unlink(options.socket_path.c_str());
    socket_inode = 0;
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
    spdlog::info("listening on {} (mode {:04o})", self->options.socket_path,
                 self->options.socket_mode);
  co_await self->accept_loop();
}

void unix_server::stop() {
  impl_->stop();
  impl_->remove_socket_file();
}

asio::awaitable<void> unix_server::drain(steady_clock::time_point deadline) {
  auto self = impl_;
  co_await self->drain(deadline);
}

std::size_t unix_server::connections() const noexcept {
  return impl_->connections();
}
std::uint64_t unix_server::refused_connections() const noexcept {
  return impl_->refused();
}

}  // namespace mxp::api
