// End-to-end: mxpuppetd under the systemd service protocol, played by the test:
// socket activation (LISTEN_FDS: the daemon adopts fd 3 instead of binding) and
// the notification socket (READY=1, STATUS=, WATCHDOG=1 pings, STOPPING=1).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>

#include "support/e2e_fixture.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;
using namespace std::chrono_literals;

namespace {

constexpr const char* secret = "systemd-e2e-shared-secret";

int unix_socket(int type, const std::string& path) {
  const int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

struct systemd_fixture : e2e_fixture {
  systemd_fixture() : e2e_fixture{secret} {}
  void SetUp() override {
    e2e_fixture::SetUp();
    hs->register_user("@alice:localhost");
  }
  // The config with `socket` as listen.unix_socket.
  std::string config(const std::string& socket) { return write_config({.unix_socket = socket}); }
};

TEST_F(systemd_fixture, AdoptsTheSocketPassedBySocketActivation) {
  const auto activated = dir.file("activated.sock");
  const auto configured = dir.file("configured.sock");
  const int listener = unix_socket(SOCK_STREAM, activated);
  ASSERT_GE(listener, 0);
  ASSERT_EQ(::listen(listener, 16), 0);

  daemon_options opts;
  opts.listen_fd = listener;
  daemon = std::make_unique<daemon_process>(config(configured), activated, dir.file("daemon->log"),
                                            opts);
  ASSERT_TRUE(daemon->wait_ready()) << daemon->log();
  EXPECT_FALSE(std::filesystem::exists(configured))
      << "bound listen.unix_socket despite socket activation";
  EXPECT_NE(daemon->log().find("listening on the socket passed by systemd"), std::string::npos)
      << daemon->log();

  unix_http_client c{activated};
  auto r = c.request("GET", "/v1/users/@alice:localhost/token");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(hs->login_count(), 1);

  EXPECT_EQ(daemon->stop(SIGTERM), 0) << daemon->log();
  // The socket file belongs to systemd (here: the test): the daemon leaves it alone.
  EXPECT_TRUE(std::filesystem::exists(activated));
  ::close(listener);
}

TEST_F(systemd_fixture, RefusesSomethingOtherThanAListeningUnixSocket) {
  const int datagram = unix_socket(SOCK_DGRAM, dir.file("dgram.sock"));
  ASSERT_GE(datagram, 0);
  daemon_options opts;
  opts.listen_fd = datagram;
  daemon =
      std::make_unique<daemon_process>(config(dir.file("configured.sock")),
                                       dir.file("configured.sock"), dir.file("daemon->log"), opts);
  EXPECT_FALSE(daemon->wait_ready(3s));
  EXPECT_EQ(daemon->exited().value_or(-1), 1) << daemon->log();
  EXPECT_NE(daemon->log().find("not a listening AF_UNIX stream socket"), std::string::npos)
      << daemon->log();
  ::close(datagram);
}

TEST_F(systemd_fixture, NotifiesReadyStatusWatchdogAndStopping) {
  const auto notify_path = dir.file("notify.sock");
  const int notify = unix_socket(SOCK_DGRAM, notify_path);
  ASSERT_GE(notify, 0);
  daemon_options opts;
  opts.env = {"NOTIFY_SOCKET=" + notify_path, "WATCHDOG_USEC=200000"};  // pings every 100 ms
  write_config();
  daemon = spawn_daemon("daemon->log", opts);

  std::vector<std::string> messages;
  auto receive_until = [&](const std::string& wanted, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{notify, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      char buf[4096];
      const auto n = ::recv(notify, buf, sizeof buf, 0);
      if (n <= 0) continue;
      messages.emplace_back(buf, static_cast<std::size_t>(n));
      if (messages.back().find(wanted) != std::string::npos) return true;
    }
    return false;
  };
  ASSERT_TRUE(receive_until("READY=1", 15s)) << daemon->log();
  EXPECT_NE(messages.back().find("STATUS=0 sessions"), std::string::npos) << messages.back();
  ASSERT_TRUE(daemon->wait_ready());

  unix_http_client c{socket};
  ASSERT_EQ(c.request("GET", "/v1/users/@alice:localhost/token").status, 200);
  EXPECT_TRUE(receive_until("STATUS=1 sessions: 1 active", 10s));  // status lines follow the pool

  int pings = 0;
  for (int i = 0; i < 5; ++i) pings += receive_until("WATCHDOG=1", 2s) ? 1 : 0;
  EXPECT_EQ(pings, 5);

  daemon->stop(SIGTERM);
  EXPECT_TRUE(receive_until("STOPPING=1", 5s));
  ::close(notify);
}

}  // namespace
