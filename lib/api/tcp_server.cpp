// tcp_server: binds the loopback address, names each peer by its address for the log, and asks
// the parser for the Authorization header; the accept loop and connections are stream_server's.
#include "api/tcp_server.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <spdlog/spdlog.h>

#include <system_error>

#include "api/stream_server.hpp"

namespace mxp::api {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

std::string to_string(const tcp::endpoint& ep) {
  const auto address = ep.address().to_string();
  return ep.address().is_v6() ? "[" + address + "]:" + std::to_string(ep.port())
                              : address + ":" + std::to_string(ep.port());
}

// The TCP side of stream_server: no peer credentials, only an address to log; the request's
// Authorization header goes to http_api, which finds the client by its key.
struct tcp_transport {
  using protocol = tcp;
  struct peer {
    std::string address;  // "127.0.0.1:54321"
  };
  static constexpr bool wants_authorization = true;
  // Every TCP request is authenticated by its own API key: no hot path (yet).
  static constexpr bool hot_path = false;
  static const peer_credentials* credentials(const peer&) { return nullptr; }

  static void accepted(tcp::socket& socket, peer& p) {
    error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    const auto remote = socket.remote_endpoint(ec);
    p.address = ec ? std::string{"(unknown address)"} : to_string(remote);
  }
  static api_request request(const request_buffers& b, const peer& p) {
    api_request r{b.method, b.target, b.body, nullptr};
    r.tcp = true;
    r.tcp_peer = p.address;
    r.authorization = b.authorization;
    return r;
  }
};

}  // namespace

struct tcp_server::impl : detail::stream_server<tcp_transport> {
  impl(asio::any_io_executor ex, const tcp_server_options& o, http_api& a)
      : stream_server(std::move(ex),
                      {o.idle_timeout, o.header_timeout, o.body_timeout, o.write_timeout,
                       o.max_header_bytes, o.max_body_bytes, o.max_connections},
                      a) {}
  tcp::endpoint bound;

  void bind(const tcp_server_options& o) {
    const auto where =
        (o.address.find(':') != std::string::npos ? "[" + o.address + "]" : o.address) + ":" +
        std::to_string(o.port);
    error_code ec;
    const auto address = asio::ip::make_address(o.address, ec);
    if (ec) throw std::system_error(ec, "listen.tcp: bad address " + where);
    const tcp::endpoint ep{address, o.port};
    acceptor.open(ep.protocol(), ec);
    if (!ec)
      acceptor.set_option(tcp::acceptor::reuse_address(true),
                          ec);  // restart while old connections linger
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::system_error(ec, "cannot listen on " + where + " (listen.tcp)");
    bound = acceptor.local_endpoint(ec);
  }
};

tcp_server::tcp_server(asio::any_io_executor executor, tcp_server_options options, http_api& api)
    : impl_(std::make_shared<impl>(std::move(executor), options, api)) {
  impl_->bind(options);
}

tcp_server::~tcp_server() {
  error_code ignored;
  impl_->acceptor.close(ignored);
}

asio::awaitable<void> tcp_server::run() {
  auto self = impl_;
  spdlog::info("listening on TCP {} (API key required)", to_string(self->bound));
  co_await self->accept_loop();
}

void tcp_server::stop() {
  impl_->stop();
}

asio::awaitable<void> tcp_server::drain(std::chrono::steady_clock::time_point deadline) {
  auto self = impl_;
  co_await self->drain(deadline);
}

std::size_t tcp_server::connections() const noexcept {
  return impl_->connections();
}
std::uint64_t tcp_server::refused_connections() const noexcept {
  return impl_->refused();
}
std::uint16_t tcp_server::port() const noexcept {
  return impl_->bound.port();
}
std::string tcp_server::endpoint() const {
  return to_string(impl_->bound);
}

}  // namespace mxp::api
