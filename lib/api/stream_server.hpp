// stream_server: what the Unix-socket and the TCP listener share, as a template on the
// transport: the accept loop, one coroutine per connection serving HTTP/1.1 keep-alive with
// the hot path (simple_request + http_api::answer_cached: every cached-token request one read
// brings, answered with one write) and the allocation-free request_parser for everything else,
// watchdog deadlines, lingering close, stop and drain.
// Internal to lib/api: included by unix_server.cpp and tcp_server.cpp only (it brings Asio
// and Beast), each instantiating it for its own transport.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <cerrno>

#include <array>
#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <string>

#include "api/http_api.hpp"
#include "api/request_parser.hpp"
#include "api/simple_request.hpp"
#include "sessions/wait_queue.hpp"

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

// What a connection over max_connections is told before it is closed.
inline constexpr std::string_view too_many_connections_answer =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    "Content-Length: 71\r\nConnection: close\r\n\r\n"
    R"({"errcode":"MXP_UNAVAILABLE","error":"too many connections, try again"})";

// A Transport provides:
//   using protocol = ...;    // asio::local::stream_protocol, asio::ip::tcp
//   struct peer { ... };     // what is known about the other end, read once at accept
//   static void accepted(protocol::socket&, peer&);  // fills peer, sets socket options
//   static constexpr bool wants_authorization;       // parse the Authorization header
//   static constexpr bool hot_path;                  // answer cached tokens by answer_cached()
//   static const peer_credentials* credentials(const peer&);  // for the hot path's access check
//   static api_request request(const request_buffers&, const peer&);
template <typename Transport>
struct connection {
  using socket_type = typename Transport::protocol::socket;
  explicit connection(socket_type s) : socket(std::move(s)), watchdog(socket.get_executor()) {}
  socket_type socket;
  boost::asio::steady_timer watchdog;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // When the watchdog is set to wake (max: not waiting). A deadline later than this needs no
  // timer operation: the watchdog finds it when it wakes and sleeps on.
  std::chrono::steady_clock::time_point armed_for = std::chrono::steady_clock::time_point::max();
  bool busy = false;  // handling a request: not closed by stop() until it is answered
  bool closing = false;
  typename Transport::peer peer;
  connection_access access;  // the hot path's access decision for this peer

  void close() {
    if (closing) return;
    closing = true;
    boost::system::error_code ignored;
    socket.shutdown(boost::asio::socket_base::shutdown_both, ignored);
    socket.close(ignored);
    watchdog.cancel();
  }
};

// Closes the connection when its deadline passes; one timer wake-up per deadline
// period instead of one timer operation per request.
template <typename Transport>
void arm_watchdog(const std::shared_ptr<connection<Transport>>& c) {
  if (c->closing) return;
  c->armed_for = c->deadline;
  c->watchdog.expires_at(c->deadline);  // cancels a wait for a later time
  c->watchdog.async_wait(
      [weak = std::weak_ptr<connection<Transport>>(c)](boost::system::error_code ec) {
        auto c = weak.lock();
        if (ec || !c || c->closing) return;  // re-armed for an earlier deadline, or closed
        c->armed_for = std::chrono::steady_clock::time_point::max();
        if (std::chrono::steady_clock::now() >= c->deadline) return c->close();
        arm_watchdog(c);
      });
}

// Moves the connection's deadline; the timer is touched only when it must wake earlier.
template <typename Transport>
void set_deadline(const std::shared_ptr<connection<Transport>>& c,
                  std::chrono::steady_clock::time_point deadline) {
  c->deadline = deadline;
  if (deadline < c->armed_for) arm_watchdog(c);
}

template <typename Transport>
class stream_server : public std::enable_shared_from_this<stream_server<Transport>> {
 public:
  using protocol = typename Transport::protocol;
  using connection_type = connection<Transport>;

  stream_server(boost::asio::any_io_executor ex, connection_limits limits, http_api& a)
      : executor(std::move(ex)), limits_(limits), api_(a), acceptor(executor) {}

  boost::asio::any_io_executor executor;

 private:
  connection_limits limits_;
  http_api& api_;
  std::list<std::weak_ptr<connection_type>> live_;
  sessions::wait_queue connection_closed_{sessions::system_session_clock::instance()};
  bool stopping_ = false;
  std::size_t refusing_ = 0;  // connections over the limit being told 503
  std::uint64_t refused_total_ = 0, refused_since_log_ = 0;
  std::chrono::steady_clock::time_point last_refusal_log_{};

 public:
  typename protocol::acceptor acceptor;  // opened, bound and listening before accept_loop()

  // Accepts until stop(); each connection runs as its own coroutine.
  boost::asio::awaitable<void> accept_loop() {
    namespace asio = boost::asio;
    auto self = this->shared_from_this();
    while (!stopping_) {
      boost::system::error_code ec;
      auto socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (stopping_ || ec == asio::error::operation_aborted) break;
        spdlog::warn("accept failed: {}", ec.message());
        if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
          asio::steady_timer pause{executor,
                                   std::chrono::milliseconds{100}};  // let descriptors free up
          co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
        continue;
      }
      if (live_.size() >= limits_.max_connections) {
        refuse(std::move(socket));
        continue;
      }
      start(std::move(socket));
    }
  }

  // Stops accepting and closes idle connections; in-flight requests finish.
  void stop() {
    if (stopping_) return;
    stopping_ = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    for (auto& weak : live_)
      if (auto c = weak.lock(); c && !c->busy) c->close();
  }

  boost::asio::awaitable<void> drain(std::chrono::steady_clock::time_point deadline) {
    auto self = this->shared_from_this();
    const auto deadline_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline.time_since_epoch()).count();
    while (!live_.empty())
      if (!co_await connection_closed_.wait(deadline_ms)) break;
    for (auto& weak : live_)
      if (auto c = weak.lock()) c->close();
  }

  std::size_t connections() const noexcept { return live_.size(); }
  std::uint64_t refused() const noexcept { return refused_total_; }

 private:
  boost::asio::awaitable<void> serve(std::shared_ptr<connection_type> c) {
    namespace asio = boost::asio;
    namespace http = boost::beast::http;
    using std::chrono::steady_clock;
    boost::beast::flat_buffer buffer;
    api_response res;
    std::string out;
    request_buffers request_data;
    // The idle deadline is a plain store (no timer operation): a request that arrives whole,
    // the usual case, never touches the timer. Only a request that comes in pieces gets the
    // header (then body) deadline, counted from its first byte, not from each byte.
    enum class phase { idle, header, body } waiting = phase::idle;
    set_deadline(c, steady_clock::now() + limits_.idle_timeout);
    for (;;) {
      boost::system::error_code ec;
      // --- the hot path: every cached-token request one read brought, one write -----------------
      if constexpr (Transport::hot_path) {
        auto parsed = stopping_ ? simple_parse::not_simple : simple_parse::incomplete;
        out.clear();
        while (parsed == simple_parse::incomplete && buffer.size() > 0) {
          const auto data = buffer.data();
          simple_request request;
          parsed = parse_simple_request({static_cast<const char*>(data.data()), data.size()},
                                        limits_.max_header_bytes, request);
          if (parsed != simple_parse::complete) break;
          if (!api_.answer_cached(request.target, Transport::credentials(c->peer), c->access,
                                  out)) {
            parsed = simple_parse::not_simple;  // the general path answers it
            break;
          }
          buffer.consume(request.size);
          parsed = simple_parse::incomplete;  // what follows, if anything
        }
        if (!out.empty()) {
          const std::size_t sent = send_now(*c, out, ec);
          if (!ec && sent < out.size()) {
            set_deadline(c, steady_clock::now() + limits_.write_timeout);
            co_await asio::async_write(c->socket, asio::buffer(out) + sent,
                                       asio::redirect_error(asio::use_awaitable, ec));
          }
          if (ec || c->closing) co_return;
          waiting = phase::idle;
          set_deadline(c, steady_clock::now() + limits_.idle_timeout);
        }
        if (parsed == simple_parse::incomplete) {
          if (buffer.size() == 0 && stopping_) co_return;  // idle at shutdown: just close
          if (buffer.size() > 0 && waiting == phase::idle) {
            waiting = phase::header;
            set_deadline(c, steady_clock::now() + limits_.header_timeout);
          }
          const auto n = co_await c->socket.async_read_some(
              buffer.prepare(16 * 1024), asio::redirect_error(asio::use_awaitable, ec));
          buffer.commit(n);
          if (!ec) continue;
          // Peer closed, a deadline, shutdown; a request cut short is the general path's 400.
          if (buffer.size() == 0 || c->closing) co_return;
          ec = {};
        }
      }
      // --- the general path: one request through request_parser -------------------------------
      request_parser parser{request_data, Transport::wants_authorization};
      parser.header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
      parser.body_limit(limits_.max_body_bytes);
      parser.eager(true);
      for (;;) {
        if (buffer.size() > 0) {
          const auto used = parser.put(buffer.data(), ec);
          buffer.consume(used);
          if (ec == http::error::need_more) ec = {};
          if (ec || parser.is_done()) break;
        }
        if (stopping_ && !parser.got_some()) co_return;  // idle at shutdown: just close
        if (parser.got_some() && waiting == phase::idle) {
          waiting = phase::header;
          set_deadline(c, steady_clock::now() + limits_.header_timeout);
        }
        if (parser.is_header_done() && waiting != phase::body) {
          waiting = phase::body;
          set_deadline(c, steady_clock::now() + limits_.body_timeout);
        }
        const auto n = co_await c->socket.async_read_some(
            buffer.prepare(16 * 1024), asio::redirect_error(asio::use_awaitable, ec));
        buffer.commit(n);
        if (ec) {
          if (ec == asio::error::eof && parser.got_some()) ec = http::error::partial_message;
          if (!parser.got_some() || c->closing) co_return;  // peer closed, a deadline, shutdown
          break;
        }
      }
      bool keep_alive = true;
      if (ec) {
        // Malformed or oversized request: answer once, then close.
        const int status = ec == http::error::header_limit ? 431
                           : ec == http::error::body_limit ? 413
                                                           : 400;
        res.clear();
        res.status = status;
        res.body = R"({"errcode":"M_BAD_REQUEST","error":"malformed HTTP request"})";
        if (status != 400)
          res.body = status == 431
                         ? R"({"errcode":"M_TOO_LARGE","error":"request headers too large"})"
                         : R"({"errcode":"M_TOO_LARGE","error":"request body too large"})";
        keep_alive = false;
      } else {
        keep_alive = parser.keep_alive();
        const api_request request = Transport::request(request_data, c->peer);
        res.clear();
        pending_request pending;
        if (!api_.handle_now(request, res, pending)) {
          c->busy = true;
          c->deadline = steady_clock::time_point::max();  // the API bounds its own wait
          co_await api_.handle(request, pending, res);
          c->busy = false;
        }
        if (stopping_) keep_alive = false;
      }
      // --- write the answer ----------------------------------------------------
      api_.record(res);
      serialize(res, keep_alive, out);
      const bool malformed = static_cast<bool>(ec);
      // Most answers fit the socket buffer: one non-blocking send, no timer, no suspension.
      // What does not fit is written under the write deadline (a client that does not read).
      const std::size_t sent = send_now(*c, out, ec);
      if (!ec && sent < out.size()) {
        set_deadline(c, steady_clock::now() + limits_.write_timeout);
        co_await asio::async_write(c->socket, asio::buffer(out) + sent,
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!ec && malformed) co_await linger(c);
      if (ec || !keep_alive || c->closing) co_return;
      waiting = phase::idle;
      set_deadline(c, steady_clock::now() + limits_.idle_timeout);
    }
  }

  // One non-blocking send of what is ready; how much went (a full socket buffer is no error).
  // The socket is non-blocking (start()); MSG_NOSIGNAL: a peer gone is an error, not a signal.
  static std::size_t send_now(connection_type& c, const std::string& out,
                              boost::system::error_code& ec) {
    ec = {};
    for (;;) {
      const auto n = ::send(c.socket.native_handle(), out.data(), out.size(), MSG_NOSIGNAL);
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        ec.assign(errno, boost::asio::error::get_system_category());
      return 0;
    }
  }

  // After refusing a request mid-stream, read and drop what the client is still
  // sending (bounded in bytes and time) so it gets to read the answer instead of
  // a connection reset, as nginx's lingering close does.
  boost::asio::awaitable<void> linger(std::shared_ptr<connection_type> c) {
    namespace asio = boost::asio;
    boost::system::error_code ec;
    c->socket.shutdown(asio::socket_base::shutdown_send, ec);
    set_deadline(c, std::chrono::steady_clock::now() + limits_.linger_timeout);
    std::array<char, 16 * 1024> sink;
    for (std::size_t drained = 0; !ec && drained < 1024 * 1024;)
      drained += co_await c->socket.async_read_some(asio::buffer(sink),
                                                    asio::redirect_error(asio::use_awaitable, ec));
  }

  // A connection over max_connections: told 503 and closed after a short linger, so that a
  // bridge sees why instead of a silent close. The refusals themselves are capped: beyond
  // max_refusing, a connection is closed at once.
  void refuse(typename protocol::socket socket) {
    ++refused_total_;
    ++refused_since_log_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_refusal_log_ >= std::chrono::seconds{10}) {  // a flood logs one line per 10 s
      spdlog::warn(
          "refused {} API connection(s): {} connections open (listen.max_connections); answered "
          "503",
          refused_since_log_, live_.size());
      refused_since_log_ = 0;
      last_refusal_log_ = now;
    }
    static constexpr std::size_t max_refusing = 64;
    if (refusing_ >= max_refusing) return;  // the socket closes as it goes out of scope
    ++refusing_;
    auto c = std::make_shared<connection_type>(std::move(socket));
    boost::system::error_code ec;
    c->socket.non_blocking(true, ec);
    c->socket.write_some(boost::asio::buffer(too_many_connections_answer), ec);
    auto drain = [](std::shared_ptr<stream_server> self,
                    std::shared_ptr<connection_type> c) -> boost::asio::awaitable<void> {
      co_await self->linger(c);
    };
    set_deadline(c, now + limits_.linger_timeout);
    boost::asio::co_spawn(executor, drain(this->shared_from_this(), c),
                          [self = this->shared_from_this(), c](std::exception_ptr) {
                            c->close();
                            --self->refusing_;
                          });
  }

  void start(typename protocol::socket socket) {
    auto c = std::make_shared<connection_type>(std::move(socket));
    Transport::accepted(c->socket, c->peer);
    boost::system::error_code ignored;
    c->socket.non_blocking(true, ignored);  // for the send that answers without suspending
    live_.push_back(c);
    auto where = std::prev(live_.end());
    set_deadline(c, std::chrono::steady_clock::now() + limits_.idle_timeout);
    boost::asio::co_spawn(executor, serve(c),
                          [self = this->shared_from_this(), c, where](std::exception_ptr ep) {
                            c->close();
                            self->live_.erase(where);
                            self->connection_closed_.notify_all();
                            if (!ep) return;
                            try {
                              std::rethrow_exception(ep);
                            } catch (const std::exception& ex) {
                              spdlog::error("API connection failed: {}", ex.what());
                            }
                          });
  }
};

}  // namespace mxp::api::detail
