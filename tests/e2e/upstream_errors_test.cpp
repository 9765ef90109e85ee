// End-to-end: the one rule that maps a homeserver's failures to API statuses (README, "Socket
// API" errors; api/http_api.cpp write_pool_error). Each homeserver of one daemon is a raw TCP
// server that answers every request with the same bytes, so that the answers can be anything:
// a proxy's plain-text 502, JSON errors, bytes that are not HTTP, an answer cut short, nothing.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"
#include "support/tcp_http.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;
using namespace std::chrono_literals;

namespace {

// A loopback "homeserver" that reads each request (headers and Content-Length body) and then
// writes `reply` and closes, or with an empty reply closes at once, or with hang keeps the
// connection open without a word until it is destroyed.
class raw_homeserver {
 public:
  enum class mode { reply, hang };
  explicit raw_homeserver(std::string reply, mode m = mode::reply)
      : reply_(std::move(reply)), mode_(m) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("raw_homeserver: bind/listen failed");
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~raw_homeserver() {
    stopping_ = true;
    thread_.join();
    for (int fd : held_) ::close(fd);
    ::close(listen_fd_);
  }
  raw_homeserver(const raw_homeserver&) = delete;
  raw_homeserver& operator=(const raw_homeserver&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_; }

 private:
  void serve() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      if (!read_request(fd)) {
        ::close(fd);
        continue;
      }
      ++requests_;
      if (mode_ == mode::hang) {
        held_.push_back(fd);
        continue;
      }
      for (std::string_view rest = reply_; !rest.empty();) {
        const ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n <= 0) break;
        rest.remove_prefix(static_cast<std::size_t>(n));
      }
      ::shutdown(fd, SHUT_WR);
      char sink[256];  // let the client close first, so that it reads everything we sent
      for (int i = 0; i < 100 && !stopping_; ++i) {
        pollfd q{fd, POLLIN, 0};
        if (::poll(&q, 1, 10) > 0 && ::recv(fd, sink, sizeof sink, 0) <= 0) break;
      }
      ::close(fd);
    }
  }

  bool read_request(int fd) {
    std::string buf;
    char tmp[4096];
    for (int waited = 0; waited < 500 && !stopping_;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) {
        ++waited;
        continue;
      }
      const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) return false;
      buf.append(tmp, static_cast<std::size_t>(n));
      const auto end = buf.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      std::size_t length = 0;
      for (const char* name : {"Content-Length: ", "content-length: "}) {
        if (const auto at = buf.find(name); at != std::string::npos && at < end)
          length = std::stoul(buf.substr(at + std::strlen(name)));
      }
      if (buf.size() >= end + 4 + length) return true;
    }
    return false;
  }

  std::string reply_;
  mode mode_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> requests_{0};
  std::vector<int> held_;
  std::thread thread_;
};

std::string http_answer(int status, std::string_view content_type, std::string_view body) {
  return "HTTP/1.1 " + std::to_string(status) +
         " Whatever\r\nContent-Type: " + std::string{content_type} +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         std::string{body};
}

struct expectation {
  int status;
  std::string errcode;
  int upstream_status;           // -1: the member must be absent
  std::string upstream_errcode;  // "null": JSON null; "-": absent
};

// The fixture's fake homeserver stays unused: every homeserver here is a raw_homeserver.
struct UpstreamErrors : e2e_fixture {
  UpstreamErrors() : e2e_fixture{"upstream-errors-shared-secret"} {}
};

TEST_F(UpstreamErrors, OneRuleFromHomeserverFailuresToApiStatuses) {
  std::map<std::string, std::unique_ptr<raw_homeserver>> servers;
  const auto add = [&](const std::string& name, std::string reply,
                       raw_homeserver::mode m = raw_homeserver::mode::reply) {
    servers[name] = std::make_unique<raw_homeserver>(std::move(reply), m);
  };
  add("plain502.test", http_answer(502, "text/plain", "Bad Gateway"));
  add("html503.test", http_answer(503, "text/html", "<html><h1>503</h1></html>"));
  add("proxy504.test", http_answer(504, "text/plain", "Gateway Timeout"));
  add("json500.test", http_answer(500, "application/json",
                                  R"({"errcode":"M_UNKNOWN","error":"Internal server error"})"));
  add("json403.test", http_answer(403, "application/json",
                                  R"({"errcode":"M_FORBIDDEN","error":"Invalid password"})"));
  add("plain404.test", http_answer(404, "text/plain", "no such thing"));
  add("notjson200.test", http_answer(200, "application/json", "not json{"));
  add("garbage.test", "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\r\nthis is not HTTP at all\r\n");
  add("truncated.test",
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n"
      "Connection: close\r\n\r\n{\"access_token\":\"syt_cut");
  add("silent.test", "");  // reads the request, closes without a byte
  add("huge.test", http_answer(200, "application/json",
                               R"({"access_token":")" + std::string(4000, 'a') + "\"}"));
  add("hang.test", "", raw_homeserver::mode::hang);

  const auto homeserver = [](const std::string& name, const std::string& url,
                             const std::string& more = "") {
    return homeserver_entry{.name = name,
                            .url = url,
                            .login = std::string{shared_secret_login} +
                                     "      login_type: com.devture.shared_secret_auth\n",
                            .more = "    request_timeout: 1s\n    connect_timeout: 1s\n" + more};
  };
  config_pieces cfg{.listen = "  request_timeout: 20s\n"};
  for (const auto& [name, server] : servers)
    cfg.homeservers.push_back(homeserver(
        name, server->url(), name == "huge.test" ? "    max_response_bytes: 1024\n" : ""));
  cfg.homeservers.push_back(
      homeserver("refused.test", "http://127.0.0.1:" + std::to_string(free_loopback_port())));
  ASSERT_NO_FATAL_FAILURE(start(cfg));

  const std::map<std::string, expectation> expected = {
      // An HTTP answer with an error status, JSON or not: 502 with that status.
      {"plain502.test", {502, "MXP_UPSTREAM", 502, "null"}},
      {"html503.test", {502, "MXP_UPSTREAM", 503, "null"}},
      {"proxy504.test", {502, "MXP_UPSTREAM", 504, "null"}},
      {"json500.test", {502, "MXP_UPSTREAM", 500, "M_UNKNOWN"}},
      {"json403.test", {502, "MXP_UPSTREAM", 403, "M_FORBIDDEN"}},
      {"plain404.test", {502, "MXP_UPSTREAM", 404, "null"}},
      // A complete HTTP answer that is not what Matrix promises: 502 too.
      {"notjson200.test", {502, "MXP_UPSTREAM", 200, "null"}},
      // No complete HTTP answer: 503, and no upstream_status.
      {"garbage.test", {503, "MXP_UNAVAILABLE", -1, "-"}},
      {"truncated.test", {503, "MXP_UNAVAILABLE", -1, "-"}},
      {"silent.test", {503, "MXP_UNAVAILABLE", -1, "-"}},
      {"huge.test", {503, "MXP_UNAVAILABLE", -1, "-"}},
      {"refused.test", {503, "MXP_UNAVAILABLE", -1, "-"}},
      // No answer in time: 504.
      {"hang.test", {504, "MXP_TIMEOUT", -1, "-"}},
  };
  // All at once: each homeserver fails on its own, within the 20 s request deadline.
  std::map<std::string, mxp::client::http_response> answers;
  std::vector<std::thread> callers;
  std::mutex mutex;
  for (const auto& [name, _] : expected) {
    callers.emplace_back([&, name = name] {
      unix_http_client c{socket};
      auto r = c.request("GET", "/v1/users/@alice:" + name + "/token");
      std::lock_guard lock{mutex};
      answers[name] = std::move(r);
    });
  }
  for (auto& t : callers) t.join();

  for (const auto& [name, e] : expected) {
    SCOPED_TRACE(name);
    const auto& r = answers.at(name);
    EXPECT_EQ(r.status, e.status) << r.body;
    EXPECT_EQ(json_string(r.body, "errcode"), e.errcode) << r.body;
    EXPECT_EQ(json_int(r.body, "upstream_status"), e.upstream_status) << r.body;
    if (e.upstream_errcode == "-")
      EXPECT_EQ(r.body.find("upstream_errcode"), std::string::npos) << r.body;
    else if (e.upstream_errcode == "null")
      EXPECT_NE(r.body.find(R"("upstream_errcode":null)"), std::string::npos) << r.body;
    else
      EXPECT_EQ(json_string(r.body, "upstream_errcode"), e.upstream_errcode) << r.body;
    // What the homeserver said stays out of the answer.
    for (const char* text : {"Bad Gateway", "Internal server error", "Invalid password",
                             "no such thing", "OpenSSH", "<html>"})
      EXPECT_EQ(r.body.find(text), std::string::npos) << r.body;
  }
  // Failures without an answer, 5xx answers and unusable 2xx answers are retried (3 tries per
  // login, each after a backoff); a refusal (4xx) is not.
  for (const char* name : {"plain502.test", "json500.test", "garbage.test", "truncated.test",
                           "huge.test", "notjson200.test"})
    EXPECT_GE(servers.at(name)->requests(), 3) << name;
  for (const char* name : {"json403.test", "plain404.test"})
    EXPECT_EQ(servers.at(name)->requests(), 1) << name;
  if (HasFailure()) ADD_FAILURE() << daemon->log();
}

}  // namespace
