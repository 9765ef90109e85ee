// The hot path: http_api::answer_cached answers only cached tokens, with the same bytes the
// general path would send, rendered once per token and rendered again when the token changes;
// it leaves everything else (not cached, percent-encoded, denied, other routes) untouched. Over
// the Unix socket: pipelined requests get their answers in order, one cut anywhere is answered
// once whole, and cached and uncached requests mix.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/access_policy.hpp"
#include "api/http_api.hpp"
#include "api/unix_server.hpp"
#include "sessions/session_pool.hpp"
#include "support/raw_socket.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;

using mxp::test::read_until_closed;

namespace {

// Grants tok-1, tok-2, ... (no expiry, device DEV); logouts succeed.
class granting_homeserver final : public mxp::matrix::homeserver_client {
 public:
  explicit granting_homeserver(std::string url = "https://matrix.example.com")
      : url_(std::move(url)) {}
  const std::string& server_name() const override { return name_; }
  std::string_view method_name() const override { return "shared_secret"; }
  std::string login_type() const override { return "com.devture.shared_secret_auth"; }
  const std::string& base_url() const override { return url_; }
  void close_idle_connections() override {}
  void cancel_requests() override {}
  asio::awaitable<mxp::matrix::upstream_result<mxp::matrix::login_grant>> login(
      std::string user_id) override {
    ++logins;
    mxp::matrix::login_grant g;
    g.access_token = mxp::secret_string{"tok-" + std::to_string(logins)};
    g.user_id = std::move(user_id);
    g.device_id = "DEV";
    co_return g;
  }
  asio::awaitable<mxp::matrix::upstream_result<mxp::matrix::refresh_grant>> refresh(
      mxp::secret_string) override {
    co_return mxp::matrix::upstream_error{};
  }
  asio::awaitable<mxp::matrix::upstream_result<mxp::matrix::logout_outcome>> logout(
      mxp::secret_string) override {
    co_return mxp::matrix::logout_outcome{true};
  }
  asio::awaitable<mxp::matrix::upstream_result<std::string>> whoami(mxp::secret_string) override {
    co_return std::string{};
  }
  int logins = 0;

 private:
  std::string name_ = "example.com", url_;
};

struct world {
  asio::io_context io;
  std::shared_ptr<granting_homeserver> hs = std::make_shared<granting_homeserver>();
  std::unique_ptr<mxp::sessions::session_pool> pool;
  std::unique_ptr<mxp::api::http_api> api;
  world() {
    std::map<std::string, mxp::sessions::homeserver_entry, std::less<>> hss;
    hss.emplace("example.com", mxp::sessions::homeserver_entry{hs, 4});
    pool = std::make_unique<mxp::sessions::session_pool>(io.get_executor(),
                                                         mxp::sessions::pool_options{}, hss);
    api = std::make_unique<mxp::api::http_api>(*pool, 5s);
    api->set_ready(true);
  }
  // The general path, as the server takes it for a request the hot path left.
  mxp::api::api_response general(std::string_view method, std::string_view target,
                                 std::string_view body = {},
                                 const mxp::api::peer_credentials* peer = nullptr) {
    mxp::api::api_response res;
    const mxp::api::api_request req{method, target, body, peer};
    mxp::api::pending_request pending;
    if (!api->handle_now(req, res, pending)) {
      bool done = false;
      asio::co_spawn(io, api->handle(req, pending, res), [&](std::exception_ptr e) {
        done = true;
        if (e) std::rethrow_exception(e);
      });
      io.run_for(5s);
      io.restart();
      EXPECT_TRUE(done);
    }
    return res;
  }
  std::string hot(std::string_view target, const mxp::api::peer_credentials* peer = nullptr) {
    std::string out = "before|";
    if (!api->answer_cached(target, peer, access, out)) {
      EXPECT_EQ(out, "before|") << "a declined request appends nothing";
      return {};
    }
    return out.substr(7);
  }
  mxp::api::connection_access access;
};

constexpr std::string_view alice = "/v1/users/@alice:example.com/token";

std::string keep_alive_bytes(const mxp::api::api_response& res) {
  std::string out;
  mxp::api::serialize(res, true, out);
  return out;
}

TEST(hot_path, AnswersOnlyACachedTokenWithTheGeneralPathsBytes) {
  world w;
  EXPECT_EQ(w.hot(alice), "");  // not logged in: the general path logs in
  const auto first = w.general("GET", alice);
  ASSERT_EQ(first.status, 200);
  EXPECT_NE(first.body.find("\"access_token\":\"tok-1\""), std::string::npos);
  const auto answer = w.hot(alice);
  EXPECT_EQ(answer, keep_alive_bytes(first));
  EXPECT_EQ(w.hot(alice), answer);
  EXPECT_EQ(w.hot(std::string{alice} + "?min_valid_ms=60000"), answer);  // never expires
  EXPECT_EQ(w.hs->logins, 1);
}

TEST(hot_path, TheAnswerChangesWhenTheTokenDoes) {
  world w;
  ASSERT_EQ(w.general("GET", alice).status, 200);
  ASSERT_NE(w.hot(alice).find("tok-1"), std::string::npos);
  const auto inv =
      w.general("POST", "/v1/users/@alice:example.com/invalidate", R"({"access_token":"tok-1"})");
  ASSERT_EQ(inv.body, R"({"invalidated":true})");
  EXPECT_EQ(w.hot(alice), "");  // no token: not the old answer
  const auto second = w.general("GET", alice);
  ASSERT_NE(second.body.find("tok-2"), std::string::npos);
  const auto answer = w.hot(alice);
  EXPECT_EQ(answer, keep_alive_bytes(second));
  EXPECT_EQ(answer.find("tok-1"), std::string::npos);
  EXPECT_EQ(w.hs->logins, 2);
}

TEST(hot_path, APercentEncodedRequestThatLoggedInServesThePlainOnes) {
  world w;
  // Logged in by a request the hot path never takes; handle() keeps the rendering all the same.
  const auto first = w.general("GET", "/v1/users/%40alice%3Aexample.com/token");
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(w.hot(alice), keep_alive_bytes(first));
}

TEST(hot_path, AReloadThatChangesTheHomeserverChangesTheAnswer) {
  world w;
  ASSERT_EQ(w.general("GET", alice).status, 200);
  ASSERT_NE(w.hot(alice).find("https://matrix.example.com"), std::string::npos);
  w.pool->put_homeserver("example.com",
                         {std::make_shared<granting_homeserver>("https://moved.example.com"), 4});
  const auto answer = w.hot(alice);  // the same token, kept across the reload
  EXPECT_NE(answer.find("https://moved.example.com"), std::string::npos) << answer;
  EXPECT_NE(answer.find("tok-1"), std::string::npos);
  EXPECT_EQ(answer.find("https://matrix.example.com"), std::string::npos);
}

TEST(hot_path, ARestoredSessionIsRenderedByTheHotPathItself) {
  world w;
  std::vector<mxp::store::stored_session> rows(1);
  rows[0].user_id = "@carol:example.com";
  rows[0].access_token = mxp::secret_string{"restored-token"};
  rows[0].device_id = "OLD";
  w.pool->restore(std::move(rows));
  const auto answer = w.hot("/v1/users/@carol:example.com/token");
  ASSERT_NE(answer.find("restored-token"), std::string::npos);
  EXPECT_EQ(answer, keep_alive_bytes(w.general("GET", "/v1/users/@carol:example.com/token")));
  EXPECT_EQ(w.hs->logins, 0);
}

TEST(hot_path, LeavesEverythingElseToTheGeneralPath) {
  world w;
  ASSERT_EQ(w.general("GET", alice).status, 200);
  for (std::string_view t :
       {"/v1/users/%40alice%3Aexample.com/token",  // needs decoding
        "/v1/users/@alice:example.com/token?min_valid_ms=x",
        "/v1/users/@alice:example.com/token?min_valid_ms=-1", "/v1/users/@alice:example.com/tokens",
        "/v1/users/@alice:example.com/token/", "/v1/users/@alice:example.com/session",
        "/v1/users//token",
        "/v1/users/@bob:example.com/token",  // not cached
        "/v1/status", "/healthz", "/metrics"})
    EXPECT_EQ(w.hot(t), "") << t;
}

TEST(hot_path, AccessIsDecidedPerConnectionWhenAGlobAllowsEveryUserElsePerRequest) {
  world w;
  ASSERT_EQ(w.general("GET", alice).status, 200);
  ASSERT_EQ(w.general("GET", "/v1/users/@bob:example.com/token").status, 200);
  mxp::api::peer_credentials me;
  me.uid = 1234, me.gid = 1234;
  mxp::config::client_config only_alice{"alice-bridge", 1234u, std::nullopt, {"@alice:*"}};
  w.api->set_access_policy(std::make_shared<mxp::api::access_policy>(
      std::vector<mxp::config::client_config>{only_alice}));
  EXPECT_NE(w.hot(alice, &me), "");
  EXPECT_EQ(w.hot("/v1/users/@bob:example.com/token", &me), "");  // the general path says 403
  EXPECT_EQ(w.general("GET", "/v1/users/@bob:example.com/token", {}, &me).status, 403);
  EXPECT_EQ(w.hot(alice, nullptr), "");  // unknown peer
  EXPECT_FALSE(w.access.every_user);
  // A reload to a policy whose glob allows everything: decided again, once.
  mxp::config::client_config everyone{"all", 1234u, std::nullopt, {"**"}};
  w.api->set_access_policy(
      std::make_shared<mxp::api::access_policy>(std::vector<mxp::config::client_config>{everyone}));
  EXPECT_NE(w.hot("/v1/users/@bob:example.com/token", &me), "");
  EXPECT_TRUE(w.access.every_user);
  // And back to a narrow one: the connection's decision does not outlive the policy.
  w.api->set_access_policy(std::make_shared<mxp::api::access_policy>(
      std::vector<mxp::config::client_config>{only_alice}));
  EXPECT_EQ(w.hot("/v1/users/@bob:example.com/token", &me), "");
}

// --- over the socket ------------------------------------------------------------------------

class socket_world : public world {
 public:
  explicit socket_world(mxp::api::server_options o = {}) {
    char tmpl[] = "/tmp/mxp-hotpath-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    o.socket_path = dir_ + "/api.sock";
    server_ = std::make_unique<mxp::api::unix_server>(io.get_executor(), o, *api);
    asio::co_spawn(io, server_->run(), [](std::exception_ptr) {});
    thread_ = std::thread{[this] { io.run(); }};
  }
  ~socket_world() {
    asio::post(io, [this] {
      server_->stop();
      asio::co_spawn(
          io,
          [this]() -> asio::awaitable<void> {
            co_await server_->drain(std::chrono::steady_clock::now() + 1s);
          },
          [](std::exception_ptr) {});
    });
    thread_.join();
    server_.reset();
    ::rmdir(dir_.c_str());
  }
  // Connections the server holds, asked on its own thread.
  std::size_t connections() {
    std::promise<std::size_t> n;
    asio::post(io, [&] { n.set_value(server_->connections()); });
    return n.get_future().get();
  }
  int connect_client() const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    (dir_ + "/api.sock").copy(a.sun_path, sizeof a.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect";
    return fd;
  }

 private:
  std::string dir_;
  std::unique_ptr<mxp::api::unix_server> server_;
  std::thread thread_;
};

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Reads `count` whole answers (Content-Length framed) within 5 s; their bodies in order.
std::vector<std::string> read_answers(int fd, std::size_t count, std::string* raw = nullptr) {
  std::string got;
  std::vector<std::string> bodies;
  const auto until = std::chrono::steady_clock::now() + 5s;
  std::size_t at = 0;
  while (bodies.size() < count && std::chrono::steady_clock::now() < until) {
    const auto head_end = got.find("\r\n\r\n", at);
    if (head_end != std::string::npos) {
      const auto cl = got.find("Content-Length: ", at);
      const auto len = std::stoul(got.substr(cl + 16));
      if (got.size() >= head_end + 4 + len) {
        bodies.push_back(got.substr(head_end + 4, len));
        at = head_end + 4 + len;
        continue;
      }
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  if (raw) *raw = got;
  return bodies;
}

std::string get(std::string_view user, std::string_view extra_headers = {}) {
  return "GET /v1/users/" + std::string{user} + "/token HTTP/1.1\r\nHost: x\r\n" +
         std::string{extra_headers} + "\r\n";
}

TEST(hot_path_socket, PipelinedSplitAndMixedRequestsAreAnsweredInOrder) {
  socket_world w;
  const int fd = w.connect_client();
  send_all(fd, get("@alice:example.com"));  // logs in
  auto first = read_answers(fd, 1);
  ASSERT_EQ(first.size(), 1u);
  ASSERT_NE(first[0].find("tok-1"), std::string::npos);

  // Three pipelined in one send: three answers, same bytes.
  send_all(fd, get("@alice:example.com") + get("@alice:example.com") + get("@alice:example.com"));
  auto three = read_answers(fd, 3);
  ASSERT_EQ(three.size(), 3u);
  for (const auto& b : three) EXPECT_EQ(b, first[0]);

  // One request cut in three pieces, across the request line and the header.
  const auto req = get("@alice:example.com");
  send_all(fd, req.substr(0, 20));
  std::this_thread::sleep_for(30ms);
  send_all(fd, req.substr(20, 30));
  std::this_thread::sleep_for(30ms);
  send_all(fd, req.substr(50));
  auto cut = read_answers(fd, 1);
  ASSERT_EQ(cut.size(), 1u);
  EXPECT_EQ(cut[0], first[0]);

  // Cached, uncached (a login on the general path), health, cached again, then the start of one
  // more completed later: in order.
  send_all(fd, get("@alice:example.com") + get("@bob:example.com") +
                   "GET /healthz HTTP/1.1\r\n\r\n" + get("@alice:example.com") + req.substr(0, 10));
  auto mixed = read_answers(fd, 4);
  ASSERT_EQ(mixed.size(), 4u);
  EXPECT_EQ(mixed[0], first[0]);
  EXPECT_NE(mixed[1].find("@bob:example.com"), std::string::npos);
  EXPECT_NE(mixed[1].find("tok-2"), std::string::npos);
  EXPECT_EQ(mixed[2], R"({"status":"ok"})");
  EXPECT_EQ(mixed[3], first[0]);
  send_all(fd, req.substr(10));
  auto last = read_answers(fd, 1);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0], first[0]);

  // Connection: close is the general path's: answered, then closed.
  send_all(fd, get("@alice:example.com", "Connection: close\r\n"));
  std::string raw;
  auto closing = read_answers(fd, 1, &raw);
  ASSERT_EQ(closing.size(), 1u);
  EXPECT_EQ(closing[0], first[0]);
  EXPECT_NE(raw.find("Connection: close"), std::string::npos);
  char byte;
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  EXPECT_EQ(::recv(fd, &byte, 1, 0), 0);  // closed by the server
  ::close(fd);
}

// A connection with alice's token cached behind it, the login's answer read.
int logged_in_client(socket_world& w) {
  const int fd = w.connect_client();
  send_all(fd, get("@alice:example.com"));
  EXPECT_EQ(read_answers(fd, 1).size(), 1u);
  return fd;
}

TEST(hot_path_socket, ABurstLargerThanOneReadIsAnsweredWholeAndInOrder) {
  socket_world w;
  const int fd = logged_in_client(w);
  // 600 pipelined requests (about 45 KB, several reads of the hot loop) with an uncached one in
  // the middle, which goes to the general path and back.
  std::string burst;
  for (int i = 0; i < 600; ++i) burst += get(i == 300 ? "@bob:example.com" : "@alice:example.com");
  std::thread sender{[&] { send_all(fd, burst); }};
  auto answers = read_answers(fd, 600);
  sender.join();
  ASSERT_EQ(answers.size(), 600u);
  for (std::size_t i = 0; i < answers.size(); ++i)
    EXPECT_NE(answers[i].find(i == 300 ? "@bob:example.com" : "@alice:example.com"),
              std::string::npos)
        << i;
  ::close(fd);
}

TEST(hot_path_socket, AClientThatNeverReadsCachedAnswersIsCutAtTheWriteDeadline) {
  mxp::api::server_options o;
  o.idle_timeout = 30s, o.header_timeout = 30s, o.write_timeout = 400ms;
  socket_world w{o};
  const int fd = logged_in_client(w);
  int small = 4096;  // a small receive buffer fills sooner
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  // Cached-token requests whose answers are never read: the hot loop's send falls short, the
  // connection goes back to its coroutine, and the write deadline ends it.
  std::string burst;
  for (int i = 0; i < 64; ++i) burst += get("@alice:example.com");
  const bool cut = mxp::test::flood_until_cut(
      fd, burst, [&] { return w.connections(); }, 10s);
  EXPECT_TRUE(cut) << "a client that never reads kept its connection for 10 s";
  ::close(fd);
}

TEST(hot_path_socket, AConnectionBetweenRequestsKeepsItsIdleAndHeaderDeadlines) {
  mxp::api::server_options o;
  o.idle_timeout = 300ms, o.header_timeout = 30s;
  {
    socket_world w{o};
    const int fd = logged_in_client(w);
    send_all(fd, get("@alice:example.com"));  // a cached answer: the hot loop's
    ASSERT_EQ(read_answers(fd, 1).size(), 1u);
    const auto idle_from = std::chrono::steady_clock::now();
    auto rest = read_until_closed(fd, 5s);
    ASSERT_TRUE(rest.has_value()) << "an idle connection outlived its idle timeout";
    EXPECT_EQ(*rest, "");
    EXPECT_GE(std::chrono::steady_clock::now() - idle_from, 250ms);
    ::close(fd);
  }
  o.idle_timeout = 30s, o.header_timeout = 300ms;
  {
    socket_world w{o};
    const int fd = logged_in_client(w);
    send_all(fd, get("@alice:example.com").substr(0, 25));  // and never the rest
    auto rest = read_until_closed(fd, 5s);
    ASSERT_TRUE(rest.has_value()) << "half a request outlived the header timeout";
    EXPECT_EQ(*rest, "");
    ::close(fd);
  }
}

TEST(hot_path_socket, ARequestThePeerCutsShortIsAnswered400) {
  socket_world w;
  const int fd = logged_in_client(w);
  send_all(fd, get("@alice:example.com") + get("@alice:example.com").substr(0, 30));
  ::shutdown(fd, SHUT_WR);
  auto rest = read_until_closed(fd, 5s);
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(rest->find("HTTP/1.1 200 OK"), 0u) << *rest;  // the whole one first
  EXPECT_NE(rest->find("HTTP/1.1 400 Bad Request"), std::string::npos) << *rest;
  ::close(fd);
}

TEST(hot_path_socket, StopClosesConnectionsBetweenRequestsAndLeavesNothingBehind) {
  auto w = std::make_unique<socket_world>();
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) fds.push_back(logged_in_client(*w));
  ASSERT_EQ(w->connections(), 3u);
  // ~socket_world: stop(), a drain of 1 s at most, then the io_context's thread must run dry (no
  // connection, no hot loop, no timer left on it) for the join to return.
  const auto from = std::chrono::steady_clock::now();
  w.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - from, 900ms)
      << "the drain waited for connections that stop() should have closed";
  for (int fd : fds) {
    auto rest = read_until_closed(fd, 1s);
    EXPECT_TRUE(rest.has_value() && rest->empty()) << "closed by stop(), not left open";
    ::close(fd);
  }
}

}  // namespace
