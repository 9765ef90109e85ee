// End-to-end: the daemon holds its deadlines against hostile clients and a hanging homeserver.
// Idle and slowloris connections filling max_connections lock a bridge out for about the idle
// timeout at most; SIGTERM answers every waiting caller 503 and exits within shutdown_grace.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <thread>
#include <vector>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

constexpr const char* secret = "deadlines-shared-secret";

struct deadlines_fixture : e2e_fixture {
  deadlines_fixture() : e2e_fixture{secret} {}
  void SetUp() override {
    e2e_fixture::SetUp();
    hs->register_users({"@alice:localhost", "@cached:localhost"});
    for (int i = 0; i < 5; ++i) hs->register_user("@r" + std::to_string(i) + ":localhost");
  }
  void start(const std::string& listen_extra, const std::string& top_extra = "") {
    e2e_fixture::start({.listen = "  request_timeout: 30s\n" + listen_extra,
                        .homeservers = {{.url = hs->url(), .more = "    request_timeout: 20s\n"}},
                        .sections = top_extra,
                        .log = "  level: info\n"});
  }
  int connect_raw() const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    socket.copy(a.sun_path, sizeof a.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }
};

TEST_F(deadlines_fixture, IdleAndSlowlorisConnectionsCannotLockABridgeOut) {
  start("  idle_timeout: 1s\n  max_connections: 20\n");
  // Ten connections that never send, ten that send a header byte every 200 ms: every slot taken.
  std::vector<int> idle, slow;
  for (int i = 0; i < 10; ++i) idle.push_back(connect_raw());
  for (int i = 0; i < 10; ++i) slow.push_back(connect_raw());
  std::atomic<bool> stop{false};
  std::thread trickler{[&] {
    const std::string header =
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + std::string(1000, 'x');
    for (std::size_t i = 0; i < header.size() && !stop; ++i) {
      for (int fd : slow) ::send(fd, &header[i], 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      std::this_thread::sleep_for(200ms);
    }
  }};
  std::this_thread::sleep_for(100ms);
  // A bridge asks for a token until it gets one, as a bridge retrying a 503 would.
  const auto started = steady::now();
  int refused = 0, status = 0;
  while (steady::now() - started < 10s) {
    try {
      unix_http_client bridge{socket, 5s};
      const auto r = bridge.request("GET", token_path("@alice:localhost"));
      status = r.status;
      if (r.status == 200) break;
      EXPECT_EQ(r.status, 503) << r.body;
      EXPECT_EQ(json_string(r.body, "errcode"), "MXP_UNAVAILABLE") << r.body;
      ++refused;
    } catch (const std::exception&) {
      ++refused;
    }
    std::this_thread::sleep_for(100ms);
  }
  const auto waited = steady::now() - started;
  stop = true;
  trickler.join();
  EXPECT_EQ(status, 200) << daemon->log();
  EXPECT_LT(waited, 2500ms) << "locked out for longer than about the idle timeout (1 s)";
  EXPECT_GT(refused, 0) << "the slots were not full: the test proved nothing";
  // The refusals are logged once per 10 s, not once per connection.
  const auto log = daemon->log();
  std::size_t lines = 0;
  for (auto at = log.find("refused "); at != std::string::npos; at = log.find("refused ", at + 1))
    ++lines;
  EXPECT_LE(lines, 2u) << log;
  for (int fd : idle) ::close(fd);
  for (int fd : slow) ::close(fd);
}

TEST_F(deadlines_fixture, SigtermWithAHangingHomeserverAnswersFiftyWaitingCallersWithinTheGrace) {
  start("", "shutdown_grace: 3s\n");
  ASSERT_EQ(unix_http_client{socket}.request("GET", token_path("@cached:localhost")).status, 200);
  hs->fail_all(failure::hang);  // accepts, reads, never answers
  std::mutex m;
  std::vector<int> statuses;
  std::vector<std::string> errcodes;
  std::vector<std::thread> callers;
  for (int i = 0; i < 50; ++i)
    callers.emplace_back([&, i] {
      int status = 0;
      std::string errcode;
      try {
        unix_http_client c{socket, 30s};
        const auto r = c.request("GET", token_path("@waiting" + std::to_string(i) + ":localhost"));
        status = r.status;
        errcode = json_string(r.body, "errcode");
      } catch (const std::exception& e) {
        errcode = e.what();  // a dropped socket: exactly what must not happen
      }
      std::lock_guard lock{m};
      statuses.push_back(status);
      errcodes.push_back(errcode);
    });
  std::this_thread::sleep_for(1s);  // every caller is waiting: 4 logins hang, 46 wait for a slot
  const auto signalled = steady::now();
  const auto code = daemon->stop(SIGTERM, 10s);
  const auto took = steady::now() - signalled;
  for (auto& t : callers) t.join();
  ASSERT_TRUE(code.has_value()) << "still running 10 s after SIGTERM";
  EXPECT_EQ(*code, 0);
  EXPECT_LT(took, 3500ms) << "exited after the 3 s grace";
  ASSERT_EQ(statuses.size(), 50u);
  for (std::size_t i = 0; i < statuses.size(); ++i) {
    EXPECT_EQ(statuses[i], 503) << errcodes[i];
    EXPECT_EQ(errcodes[i], "MXP_UNAVAILABLE");
  }
  hs->fail_all(failure::none);
  if (HasFailure()) ADD_FAILURE() << daemon->log();
}

TEST_F(deadlines_fixture, RevokeOnShutdownWithAHangingHomeserverStillEndsWithinTheGrace) {
  start("", "shutdown_grace: 2s\nsessions:\n  revoke_on_shutdown: true\n");
  unix_http_client c{socket};
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(c.request("GET", token_path("@r" + std::to_string(i) + ":localhost")).status, 200);
  c.close();
  hs->fail_all(failure::hang);  // every logout hangs
  const auto signalled = steady::now();
  const auto code = daemon->stop(SIGTERM, 10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
  EXPECT_LT(steady::now() - signalled, 2500ms);
  hs->fail_all(failure::none);
  EXPECT_NE(daemon->log().find("still running at the deadline"), std::string::npos)
      << daemon->log();
}

}  // namespace
