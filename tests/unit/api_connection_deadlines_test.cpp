// Every connection deadline of the API listeners, on the Unix socket and on TCP: idle
// keep-alive, a header or a body that trickles in, an answer the client does not read, the
// linger after a refusal, and the 503 for a connection over max_connections. The server runs
// on its own thread; the clients are plain blocking sockets with poll deadlines, and each test
// waits for the server's verdict (a close) with a generous bound instead of sleeping.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "api/http_api.hpp"
#include "api/tcp_server.hpp"
#include "api/unix_server.hpp"
#include "sessions/session_pool.hpp"
#include "support/raw_socket.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

using mxp::test::read_until_closed;

namespace {

enum class transport { unix_socket, tcp };

// Limits every test starts from; each test shortens the one it is about.
struct limits {
  std::chrono::milliseconds idle = 10s, header = 10s, body = 10s, write = 10s;
  std::size_t max_connections = 64;
};

// mxpuppetd's API listener, alone: a pool with no homeserver (so /healthz, /v1/status and
// /metrics answer; tokens would be 404) on an io_context of its own thread.
class server_under_test {
 public:
  server_under_test(transport t, limits l)
      : pool_(io_.get_executor(), {}, {}), api_(pool_, 5s), transport_(t) {
    api_.set_ready(true);
    if (t == transport::unix_socket) {
      char tmpl[] = "/tmp/mxp-deadlines-XXXXXX";
      dir_ = ::mkdtemp(tmpl);
      path_ = dir_ + "/api.sock";
      mxp::api::server_options o;
      o.socket_path = path_;
      o.idle_timeout = l.idle, o.header_timeout = l.header, o.body_timeout = l.body;
      o.write_timeout = l.write, o.max_connections = l.max_connections;
      unix_ = std::make_unique<mxp::api::unix_server>(io_.get_executor(), o, api_);
      asio::co_spawn(io_, unix_->run(), [](std::exception_ptr) {});
    } else {
      mxp::api::tcp_server_options o{"127.0.0.1", 0};
      o.idle_timeout = l.idle, o.header_timeout = l.header, o.body_timeout = l.body;
      o.write_timeout = l.write, o.max_connections = l.max_connections;
      tcp_ = std::make_unique<mxp::api::tcp_server>(io_.get_executor(), o, api_);
      port_ = tcp_->port();
      asio::co_spawn(io_, tcp_->run(), [](std::exception_ptr) {});
    }
    thread_ = std::thread{[this] { io_.run(); }};
  }
  ~server_under_test() {
    asio::post(io_, [this] {
      if (unix_) unix_->stop();
      if (tcp_) tcp_->stop();
      asio::co_spawn(
          io_,
          [this]() -> asio::awaitable<void> {
            if (unix_) co_await unix_->drain(steady::now() + 1s);
            if (tcp_) co_await tcp_->drain(steady::now() + 1s);
          },
          [](std::exception_ptr) {});
    });
    thread_.join();  // returns once every connection and the accept loop are gone
    unix_.reset();
    tcp_.reset();
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }

  // A new blocking client socket connected to the listener.
  int connect_client() const {
    int fd = -1;
    if (transport_ == transport::unix_socket) {
      fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      path_.copy(a.sun_path, sizeof a.sun_path - 1);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect";
    } else {
      fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port_);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect";
    }
    return fd;
  }

  // Asks the server thread (the only one that may touch the server).
  template <typename F>
  auto on_server(F f) {
    std::promise<decltype(f())> done;
    asio::post(io_, [&] { done.set_value(f()); });
    return done.get_future().get();
  }
  std::size_t connections() {
    return on_server([this] { return unix_ ? unix_->connections() : tcp_->connections(); });
  }
  std::uint64_t refused() {
    return on_server(
        [this] { return unix_ ? unix_->refused_connections() : tcp_->refused_connections(); });
  }

 private:
  asio::io_context io_;
  mxp::sessions::session_pool pool_;
  mxp::api::http_api api_;
  transport transport_;
  std::string dir_, path_;
  unsigned short port_ = 0;
  std::unique_ptr<mxp::api::unix_server> unix_;
  std::unique_ptr<mxp::api::tcp_server> tcp_;
  std::thread thread_;
};

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Waits until the server holds no connection (bounded).
bool no_connections_within(server_under_test& s, std::chrono::milliseconds limit) {
  const auto until = steady::now() + limit;
  while (steady::now() < until) {
    if (s.connections() == 0) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

constexpr std::string_view healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

class connection_deadlines : public ::testing::TestWithParam<transport> {};

TEST_P(connection_deadlines, AnIdleConnectionIsClosedAtTheIdleTimeout) {
  server_under_test s{GetParam(), {.idle = 300ms}};
  const int fd = s.connect_client();
  const auto started = steady::now();
  const auto got = read_until_closed(fd, 5s);
  ASSERT_TRUE(got.has_value()) << "still open 5 s after a 300 ms idle timeout";
  EXPECT_GE(steady::now() - started, 250ms);
  EXPECT_TRUE(got->empty());
  ::close(fd);
}

TEST_P(connection_deadlines, AKeepAliveConnectionIsClosedWhenIdleAfterItsRequests) {
  server_under_test s{GetParam(), {.idle = 300ms}};
  const int fd = s.connect_client();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(send_all(fd, healthz));
    char buf[512];
    ASSERT_GT(::recv(fd, buf, sizeof buf, 0), 0);
    std::this_thread::sleep_for(100ms);  // less than the idle timeout: kept
  }
  const auto got = read_until_closed(fd, 5s);
  ASSERT_TRUE(got.has_value()) << "still open 5 s after a 300 ms idle timeout";
  ::close(fd);
}

TEST_P(connection_deadlines, AHeaderSentAByteAtATimeIsCutAtTheHeaderDeadline) {
  // Each byte comes well within the idle timeout: only the header deadline can end it.
  server_under_test s{GetParam(), {.idle = 10s, .header = 400ms}};
  const int fd = s.connect_client();
  const std::string request =
      "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(200, 'a');
  const auto started = steady::now();
  bool cut = false;
  for (char c : request) {
    if (!send_all(fd, std::string_view{&c, 1})) {
      cut = true;
      break;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) > 0) {  // the server closed it
      cut = true;
      break;
    }
  }
  ASSERT_TRUE(cut)
      << "a 200-byte header trickled for "
      << std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started).count()
      << " ms without being cut";
  EXPECT_LT(steady::now() - started, 3s);
  EXPECT_TRUE(no_connections_within(s, 2s));
  ::close(fd);
}

TEST_P(connection_deadlines, ABodySentSlowlyIsCutAtTheBodyDeadline) {
  server_under_test s{GetParam(), {.idle = 10s, .header = 10s, .body = 400ms}};
  const int fd = s.connect_client();
  ASSERT_TRUE(send_all(fd,
                       "POST /v1/users/%40a%3Ax/invalidate HTTP/1.1\r\nHost: x\r\n"
                       "Content-Length: 200\r\n\r\n{"));
  const auto started = steady::now();
  bool cut = false;
  for (int i = 0; i < 150 && !cut; ++i) {
    cut = !send_all(fd, " ");
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) > 0) cut = true;
  }
  ASSERT_TRUE(cut) << "a trickling body was never cut";
  EXPECT_LT(steady::now() - started, 3s);
  EXPECT_TRUE(no_connections_within(s, 2s));
  ::close(fd);
}

// On the Unix socket only: over loopback TCP the kernel's flow control can leave the server
// waiting to *read* the rest of a pipelined request (its answers all queued in a send buffer
// that autotunes to megabytes) instead of blocked in a write, so which deadline ends the
// connection is up to the kernel there; the write path is the same code for both transports.
TEST(connection_deadlines_unix, AClientThatNeverReadsIsCutAtTheWriteDeadline) {
  server_under_test s{transport::unix_socket,
                      {.idle = 30s, .header = 30s, .body = 30s, .write = 400ms}};
  const int fd = s.connect_client();
  int small = 4096;  // a small receive buffer fills sooner
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  // Pipelined requests whose answers are never read: once the buffers between us are full, the
  // server's write waits, and the write deadline must end it.
  std::string burst;
  for (int i = 0; i < 64; ++i) burst += "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  const bool cut = mxp::test::flood_until_cut(
      fd, burst, [&] { return s.connections(); }, 10s);
  ASSERT_TRUE(cut) << "a client that never reads kept its connection for 10 s";
  EXPECT_TRUE(no_connections_within(s, 2s));
  ::close(fd);
}

TEST_P(connection_deadlines, AConnectionOverTheLimitIsTold503ThenClosed) {
  server_under_test s{GetParam(), {.max_connections = 2}};
  const int a = s.connect_client(), b = s.connect_client();
  for (int i = 0; i < 100 && s.connections() < 2; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(s.connections(), 2u);
  const int c = s.connect_client();
  ASSERT_TRUE(send_all(c, healthz));
  const auto got = read_until_closed(c, 5s);
  ASSERT_TRUE(got.has_value()) << "the refused connection was left open";
  EXPECT_NE(got->find("HTTP/1.1 503"), std::string::npos) << *got;
  EXPECT_NE(got->find("MXP_UNAVAILABLE"), std::string::npos) << *got;
  EXPECT_EQ(s.refused(), 1u);
  // A slot that frees up is usable again.
  ::close(a);
  EXPECT_TRUE([&] {
    for (int i = 0; i < 100; ++i, std::this_thread::sleep_for(10ms))
      if (s.connections() < 2) return true;
    return false;
  }());
  const int d = s.connect_client();
  ASSERT_TRUE(send_all(d, healthz));
  char buf[512];
  const auto n = ::recv(d, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  const std::string answer(buf, static_cast<std::size_t>(n));
  EXPECT_EQ(answer.rfind("HTTP/1.1 ", 0), 0u);  // served (over TCP: 401, it carries no API key)
  EXPECT_EQ(answer.find("503"), std::string::npos) << answer;
  for (int fd : {b, c, d}) ::close(fd);
}

TEST_P(connection_deadlines, AMalformedRequestIsAnsweredThenLingersAtMostTheLingerTime) {
  server_under_test s{GetParam(), {.idle = 30s}};
  const int fd = s.connect_client();
  ASSERT_TRUE(send_all(fd, "NOT HTTP AT ALL\r\n\r\n"));
  // The answer, then the server's half close (it stops sending, and drains what we send).
  const auto got = read_until_closed(fd, 5s);
  ASSERT_TRUE(got.has_value());
  EXPECT_NE(got->find("HTTP/1.1 400"), std::string::npos) << *got;
  // A client that keeps sending holds the linger open only until its deadline (2 s).
  const auto started = steady::now();
  bool closed = false;
  while (!closed && steady::now() - started < 6s) {
    closed = ::send(fd, "x", 1, MSG_NOSIGNAL) < 0;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(closed) << "lingered for more than 6 s";
  EXPECT_GT(steady::now() - started, 1s);
  EXPECT_LT(steady::now() - started, 4s);
  EXPECT_TRUE(no_connections_within(s, 2s));
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(BothListeners, connection_deadlines,
                         ::testing::Values(transport::unix_socket, transport::tcp),
                         [](const auto& info) {
                           return info.param == transport::unix_socket ? std::string{"unix"}
                                                                       : std::string{"tcp"};
                         });

}  // namespace
