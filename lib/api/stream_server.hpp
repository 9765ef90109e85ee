// stream_server: what the Unix-socket and the TCP listener share, as a template on the
// transport: the accept loop, one coroutine per connection serving HTTP/1.1 keep-alive through
// the allocation-free request_parser, and on the Unix socket the hot loop, which holds the
// connections between requests and answers cached tokens itself (simple_request +
// http_api::answer_cached: one recv, one send, no coroutine resumed); watchdog deadlines,
// lingering close, stop and drain.
// Internal to lib/api: included by unix_server.cpp and tcp_server.cpp only (it brings Asio
// and Beast), each instantiating it for its own transport.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <spdlog/spdlog.h>

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <array>
#include <chrono>
#include <cstddef>
#include <exception>
#include <list>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include "api/http_api.hpp"
#include "api/request_parser.hpp"
#include "api/simple_request.hpp"
#include "api/stream_connection.hpp"
#include "sessions/wait_queue.hpp"

namespace mxp::api::detail {

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
//   static constexpr bool hot_path;                  // the hot loop answers cached tokens
//   static const peer_credentials* credentials(const peer&);  // for the hot path's access check
//   static api_request request(const request_buffers&, const peer&);
template <typename Transport>
class stream_server : public std::enable_shared_from_this<stream_server<Transport>> {
 public:
  using protocol = typename Transport::protocol;
  using connection_type = connection<Transport>;

  stream_server(boost::asio::any_io_executor ex, connection_limits limits, http_api& a)
      : executor(std::move(ex)),
        limits_(limits),
        api_(a),
        hot_ready_(executor),
        acceptor(executor) {
    if constexpr (Transport::hot_path) {
      const int set = ::epoll_create1(EPOLL_CLOEXEC);
      if (set < 0)
        throw std::system_error(errno, std::generic_category(), "cannot create an epoll set");
      hot_ready_.assign(set);  // readable when a connection the hot loop holds is
    }
  }

  boost::asio::any_io_executor executor;

 private:
  // One read of a connection takes at most this much: what a pipelined burst brings beyond it is
  // read on the next turn, after the other connections had theirs.
  static constexpr std::size_t read_size = 16 * 1024;
  connection_limits limits_;
  http_api& api_;
  std::list<std::weak_ptr<connection_type>> live_;
  sessions::wait_queue connection_closed_{sessions::system_session_clock::instance()};
  bool stopping_ = false;
  bool hot_loop_running_ = false;
  // The hot loop's epoll set (Unix socket only): the connections it holds between requests.
  boost::asio::posix::stream_descriptor hot_ready_;
  std::size_t refusing_ = 0;  // connections over the limit being told 503
  std::uint64_t refused_total_ = 0, refused_since_log_ = 0;
  std::chrono::steady_clock::time_point last_refusal_log_{};

 public:
  typename protocol::acceptor acceptor;  // opened, bound and listening before accept_loop()

  // Accepts until stop(); each connection runs as its own coroutine.
  boost::asio::awaitable<void> accept_loop() {
    namespace asio = boost::asio;
    auto self = this->shared_from_this();
    if constexpr (Transport::hot_path) start_hot_loop();
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
    hot_ready_.cancel(ignored);
    for (auto& weak : live_)
      if (auto c = weak.lock(); c && !c->busy) c->close();
  }

  boost::asio::awaitable<void> drain(std::chrono::steady_clock::time_point deadline) {
    auto self = this->shared_from_this();
    const auto deadline_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline.time_since_epoch()).count();
    while (!live_.empty() || hot_loop_running_)
      if (!co_await connection_closed_.wait(deadline_ms)) break;
    for (auto& weak : live_)
      if (auto c = weak.lock()) c->close();
  }

  std::size_t connections() const noexcept { return live_.size(); }
  std::uint64_t refused() const noexcept { return refused_total_; }

 private:
  // A connection's coroutine. On the Unix socket it lends the connection to the hot loop between
  // requests and takes it back for whatever the hot path does not answer; elsewhere (TCP) it
  // reads every request itself.
  boost::asio::awaitable<void> serve(std::shared_ptr<connection_type> c) {
    namespace asio = boost::asio;
    namespace http = boost::beast::http;
    using std::chrono::steady_clock;
    auto& buffer = c->in;
    api_response res;
    request_buffers request_data;
    // The idle deadline is a plain store (no timer operation): a request that arrives whole,
    // the usual case, never touches the timer. Only a request that comes in pieces gets the
    // header (then body) deadline, counted from its first byte, not from each byte.
    for (;;) {
      boost::system::error_code ec;
      // --- the hot path: cached tokens answered here, then by the hot loop ---------------------
      if constexpr (Transport::hot_path) {
        const auto parsed = stopping_ ? simple_parse::not_simple : answer_buffered(*c);
        if (!c->out.empty()) {  // answered here, or what the hot loop could not send at once
          co_await write_out(c, ec);
          if (ec || c->closing) co_return;
          answered(*c, steady_clock::now());
        }
        if (parsed == simple_parse::incomplete && !c->peer_closed) {
          if (buffer.size() > 0) request_begun(*c, steady_clock::now());
          if (park(*c)) {
            co_await c->parked.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (c->closing) co_return;
            continue;  // handed back: what it left is judged again, from the top
          }
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
        if (parser.got_some()) request_begun(*c, steady_clock::now());
        if (parser.is_header_done() && c->waiting != phase::body) {
          c->waiting = phase::body;
          set_deadline(*c, steady_clock::now() + limits_.body_timeout);
        }
        const auto n = co_await c->socket.async_read_some(
            buffer.prepare(read_size), asio::redirect_error(asio::use_awaitable, ec));
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
      serialize(res, keep_alive, c->out);
      const bool malformed = static_cast<bool>(ec);
      co_await write_out(c, ec);
      if (!ec && malformed) co_await linger(c);
      if (ec || !keep_alive || c->closing) co_return;
      answered(*c, steady_clock::now());
    }
  }

  // The deadline of each phase, moved by plain stores (set_deadline): after an answer the
  // connection waits for the next request (idle); once a request's first byte is here, the
  // whole header must follow within header_timeout, counted from that byte.
  void answered(connection_type& c, std::chrono::steady_clock::time_point now) {
    c.waiting = phase::idle;
    set_deadline(c, now + limits_.idle_timeout);
  }
  void request_begun(connection_type& c, std::chrono::steady_clock::time_point now) {
    if (c.waiting != phase::idle) return;
    c.waiting = phase::header;
    set_deadline(c, now + limits_.header_timeout);
  }

  // Answers the cached-token requests at the front of c.in (appending to c.out) until one is not
  // for the hot path (not_simple: the general path's) or the rest has not fully arrived.
  simple_parse answer_buffered(connection_type& c) {
    while (c.in.size() > 0) {
      const auto data = c.in.data();
      simple_request request;
      const auto parsed = parse_simple_request({static_cast<const char*>(data.data()), data.size()},
                                               limits_.max_header_bytes, request);
      if (parsed != simple_parse::complete) return parsed;
      if (!api_.answer_cached(request.target, Transport::credentials(c.peer), c.access, c.out))
        return simple_parse::not_simple;
      c.in.consume(request.size);
    }
    return simple_parse::incomplete;
  }

  // Sends c->out and empties it. Most answers fit the socket buffer: one non-blocking send, no
  // timer, no suspension. What does not fit is written under the write deadline (a client that
  // does not read).
  boost::asio::awaitable<void> write_out(std::shared_ptr<connection_type> c,
                                         boost::system::error_code& ec) {
    namespace asio = boost::asio;
    const std::size_t sent = send_now(c->socket.native_handle(), c->out, ec);
    if (!ec && sent < c->out.size()) {
      set_deadline(*c, std::chrono::steady_clock::now() + limits_.write_timeout);
      co_await asio::async_write(c->socket, asio::buffer(c->out) + sent,
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    c->out.clear();
  }

  // What ended an owned task (a connection, the hot loop) with an exception, logged.
  static void log_failure(std::exception_ptr ep, std::string_view what) {
    if (!ep) return;
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& ex) {
      spdlog::error("{} failed: {}", what, ex.what());
    }
  }

  // One non-blocking send of what is ready; how much went (a full socket buffer is no error).
  // The socket is non-blocking (start()); MSG_NOSIGNAL: a peer gone is an error, not a signal.
  static std::size_t send_now(int fd, std::string_view out, boost::system::error_code& ec) {
    ec = {};
    for (;;) {
      const auto n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        ec.assign(errno, boost::asio::error::get_system_category());
      return 0;
    }
  }

  // --- the hot loop (Unix socket) ----------------------------------------------------------------
  // Between requests a connection's descriptor leaves Asio's reactor for the hot loop's own epoll
  // set, and the connection's coroutine sleeps. One wake-up of the hot loop serves every
  // connection that became readable: one recv each, the cached-token requests it completes
  // answered (http_api::answer_cached) with one send, deadlines moved by plain stores. Anything
  // else (another request, a cache miss, an answer the socket would not take whole, a request cut
  // short) hands the connection back to its coroutine, which takes the general path and then
  // lends it again. The daemon runs its io_context on one thread (mxpuppetd's main); the hot loop
  // relies on it as all of the API does.

  void start_hot_loop() {
    hot_loop_running_ = true;
    boost::asio::co_spawn(executor, hot_loop(),
                          [self = this->shared_from_this()](std::exception_ptr ep) {
                            self->hot_loop_running_ = false;
                            self->connection_closed_.notify_all();
                            log_failure(ep, "the API's hot loop");
                          });
  }

  boost::asio::awaitable<void> hot_loop() {
    namespace asio = boost::asio;
    auto self = this->shared_from_this();
    std::array<epoll_event, 64> ready;
    const int set = hot_ready_.native_handle();
    while (!stopping_) {
      const int n = ::epoll_wait(set, ready.data(), static_cast<int>(ready.size()), 0);
      if (n < 0 && errno != EINTR)
        throw std::system_error(errno, std::generic_category(), "epoll_wait");
      // A connection is reported while it is readable (level-triggered); one whose read filled
      // its buffer may hold more, and a full batch may leave some: read on after the rest of the
      // daemon had a turn. Anything that arrives later wakes the set again.
      bool more = n == static_cast<int>(ready.size());
      if (n > 0) {
        const auto now = std::chrono::steady_clock::now();
        for (int i = 0; i < n; ++i) {
          auto& c = *static_cast<connection_type*>(ready[i].data.ptr);
          try {
            more |= serve_ready(c, now);
          } catch (const std::exception& ex) {  // that connection ends, the others go on
            spdlog::error("API connection failed: {}", ex.what());
            c.close();
          }
        }
      }
      boost::system::error_code ec;
      if (more)
        co_await asio::post(executor, asio::redirect_error(asio::use_awaitable, ec));
      else
        co_await hot_ready_.async_wait(asio::posix::descriptor_base::wait_read,
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;  // stop()
    }
  }

  // Lends the connection to the hot loop; false when it cannot (the coroutine keeps it).
  bool park(connection_type& c) {
    boost::system::error_code ec;
    const int fd = c.socket.release(ec);  // out of Asio's reactor: one readiness report, ours
    if (ec) return false;
    epoll_event interest{};
    interest.events = EPOLLIN;
    interest.data.ptr = &c;  // alive: its coroutine holds it until the loop lets it go
    if (::epoll_ctl(hot_ready_.native_handle(), EPOLL_CTL_ADD, fd, &interest) != 0) {
      spdlog::warn("cannot add an API connection to the hot loop: {}", std::strerror(errno));
      return_to_asio(c, fd);
      return false;
    }
    c.hot_fd = fd;
    c.hot_epoll = hot_ready_.native_handle();
    return true;
  }

  // Gives the connection back to its coroutine, which finds what is left in c.in and c.out.
  void hand_back(connection_type& c) {
    const int fd = std::exchange(c.hot_fd, -1);
    ::epoll_ctl(c.hot_epoll, EPOLL_CTL_DEL, fd, nullptr);
    if (return_to_asio(c, fd)) c.parked.cancel();  // else close() woke the coroutine
  }

  // Puts a released descriptor back under Asio; when Asio will not take it, the connection is
  // closed.
  bool return_to_asio(connection_type& c, int fd) {
    boost::system::error_code ec;
    c.socket.assign(protocol{}, fd, ec);
    if (!ec) return true;
    spdlog::warn("cannot give an API connection back to Asio: {}", ec.message());
    ::close(fd);
    c.close();
    return false;
  }

  // One readiness of a connection the hot loop holds: one recv, the requests it completes
  // answered with one send. True when the read filled its buffer (more may be waiting).
  bool serve_ready(connection_type& c, std::chrono::steady_clock::time_point now) {
    if (c.hot_fd < 0) return false;
    const auto space = c.in.prepare(read_size);
    ssize_t n;
    do n = ::recv(c.hot_fd, space.data(), space.size(), MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) c.close();
      return false;
    }
    if (n == 0) {  // the peer closed: a request it cut short is the general path's 400
      if (c.in.size() == 0) {
        c.close();
      } else {
        c.peer_closed = true;
        hand_back(c);
      }
      return false;
    }
    c.in.commit(static_cast<std::size_t>(n));
    const auto parsed = answer_buffered(c);
    if (!c.out.empty()) {
      boost::system::error_code ec;
      const std::size_t sent = send_now(c.hot_fd, c.out, ec);
      if (ec) {
        c.close();
        return false;
      }
      if (sent < c.out.size()) {  // the coroutine writes the rest, under the write deadline
        c.out.erase(0, sent);
        hand_back(c);
        return false;
      }
      c.out.clear();
      answered(c, now);
    }
    if (parsed == simple_parse::not_simple) {
      hand_back(c);
      return false;
    }
    if (c.in.size() > 0) request_begun(c, now);
    return static_cast<std::size_t>(n) == space.size();
  }

  // After refusing a request mid-stream, read and drop what the client is still
  // sending (bounded in bytes and time) so it gets to read the answer instead of
  // a connection reset, as nginx's lingering close does.
  boost::asio::awaitable<void> linger(std::shared_ptr<connection_type> c) {
    namespace asio = boost::asio;
    boost::system::error_code ec;
    c->socket.shutdown(asio::socket_base::shutdown_send, ec);
    set_deadline(*c, std::chrono::steady_clock::now() + limits_.linger_timeout);
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
    set_deadline(*c, now + limits_.linger_timeout);
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
    set_deadline(*c, std::chrono::steady_clock::now() + limits_.idle_timeout);
    boost::asio::co_spawn(executor, serve(c),
                          [self = this->shared_from_this(), c, where](std::exception_ptr ep) {
                            c->close();
                            self->live_.erase(where);
                            self->connection_closed_.notify_all();
                            log_failure(ep, "API connection");
                          });
  }
};

}  // namespace mxp::api::detail
