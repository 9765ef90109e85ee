// End-to-end: the bridge gateway (DESIGN.md "Bridge gateway"). The test process plays the
// bridges: bridgev2 (bridge token + ?user_id=) and login-based ones (POST /login with the HMAC
// of the bridge's login secret, then the handle), against the real mxpuppetd in front of the
// fake homeserver, which records what reached it and with which token.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"
#include "support/tcp_http.hpp"

using namespace mxp::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* hs_secret = "gateway-e2e-homeserver-secret";
constexpr const char* bridge_token = "bridge-token-7c1e9a04d2b84f6aa0e3";
constexpr const char* login_secret = "bridge-login-secret-51d0c9e2a7f4";
constexpr const char* as_token = "as-token-of-the-double-puppet-appservice";

using headers = std::vector<std::pair<std::string, std::string>>;
headers bearer(std::string_view token) {
  return {{"Authorization", "Bearer " + std::string{token}}};
}

std::string hmac_hex(std::string_view secret, std::string_view user) {
  return fake_shared_secret_token(secret, user);
}

// A field of a JSON object answer ("" when absent); enough for these flat answers.
std::string field(const std::string& body, const std::string& key) {
  const auto at = body.find("\"" + key + "\":\"");
  if (at == std::string::npos) return {};
  const auto start = at + key.size() + 4;
  return body.substr(start, body.find('"', start) - start);
}

// VmRSS / VmHWM of a process in KiB.
long proc_status_kib(pid_t pid, const std::string& key) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(key + ":")) return std::stol(line.substr(key.size() + 1));
  return -1;
}

// A blocking loopback connection for bodies too large to hold (streamed in and out).
struct raw_connection {
  int fd = -1;
  explicit raw_connection(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{60, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("connect failed");
  }
  ~raw_connection() { ::close(fd); }
  bool send_all(std::string_view data) {
    while (!data.empty()) {
      const auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Reads until the peer closes (or a read times out); `on_data` sees every piece.
  template <typename F>
  void read_all(F&& on_data) {
    char buf[64 * 1024];
    for (;;) {
      const auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      on_data(std::string_view{buf, static_cast<std::size_t>(n)});
    }
  }
};

std::uint64_t fnv1a(std::uint64_t h, unsigned char byte) {
  return (h ^ byte) * 1099511628211ULL;
}
constexpr std::uint64_t fnv_basis = 1469598103934665603ULL;

struct gateway_fixture : e2e_fixture {
  gateway_fixture() : e2e_fixture{hs_secret} {}
  std::uint16_t port = free_loopback_port();

  // request_timeout 3s shows the deadline firing; the 200 MB streams get more room (the
  // sanitizer build moves them several times slower).
  std::string gateway_section(const std::string& more = {},
                              const std::string& request_timeout = "3s") const {
    return "gateway:\n  listen: [\"127.0.0.1:" + std::to_string(port) +
           "\"]\n  request_timeout: " + request_timeout + "\n  max_body_bytes: 300000000\n" + more +
           "  bridges:\n"
           "    - name: telegram\n      token_file: bridge.token\n"
           "      login_secret_file: bridge.login\n"
           "      allow: [\"@alice:localhost\", \"@bob:localhost\", \"@carol:localhost\"]\n"
           "store:\n  path: sessions.db\n";
  }

  void SetUp() override {
    e2e_fixture::SetUp();
    hs->register_users(
        {"@alice:localhost", "@bob:localhost", "@carol:localhost", "@mallory:localhost"});
    dir.write("bridge.token", std::string{bridge_token} + "\n", 0600);
    dir.write("bridge.login", std::string{login_secret} + "\n", 0600);
    never_logged.insert(bridge_token);
    never_logged.insert(login_secret);
  }

  void start_gateway(const std::string& listen = "  idle_timeout: 2s\n  header_timeout: 1s\n",
                     const std::string& request_timeout = "3s") {
    start({.listen = listen, .sections = gateway_section({}, request_timeout)});
  }

  tcp_http_response gw(std::string_view method, std::string_view target, const headers& h = {},
                       std::string_view body = {}) {
    return tcp_request(port, method, target, h, body);
  }

  // POST /login through the gateway as a login-based bridge does; returns the handle.
  std::string login_handle(const std::string& user) {
    const auto r = gw("POST", "/_matrix/client/v3/login", {},
                      R"({"type":"m.login.password","identifier":{"type":"m.id.user","user":")" +
                          user + R"("},"password":")" + hmac_hex(login_secret, user) + R"("})");
    EXPECT_EQ(r.status, 200) << r.body;
    const auto handle = field(r.body, "access_token");
    never_logged.insert(handle);
    return handle;
  }

  // The token the homeserver saw on its last request, without "Bearer ".
  std::string forwarded_token() const {
    const auto h = hs->last_authorization_header();
    return h.starts_with("Bearer ") ? h.substr(7) : h;
  }
  std::string last_target() const {
    const auto log = hs->request_log();
    return log.empty() ? std::string{} : log.back();
  }
};

// --- bridge token + user_id, session mode ---------------------------------------------------

TEST_F(gateway_fixture, BridgeTokenInSessionModeUsesTheUsersPooledToken) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto r = gw("GET", "/_matrix/client/v3/account/whoami?user_id=%40alice%3Alocalhost",
                    bearer(bridge_token));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(field(r.body, "user_id"), "@alice:localhost");
  EXPECT_EQ(last_target(), "GET /_matrix/client/v3/account/whoami") << "user_id stripped";
  const auto token = forwarded_token();
  never_logged.insert(token);
  EXPECT_NE(token, bridge_token);
  EXPECT_EQ(hs->user_of_token(token), "@alice:localhost") << "alice's pooled token";
  EXPECT_EQ(r.body.find(token), std::string::npos) << "the real token never goes back";

  // A send with the MSC3202 device_id: both parameters stripped, the rest of the query kept.
  const auto s = gw("PUT",
                    "/_matrix/client/v3/rooms/!r:localhost/send/m.room.message/t1?"
                    "user_id=%40alice%3Alocalhost&org.matrix.msc3202.device_id=DEV&ts=1234",
                    bearer(bridge_token), R"({"body":"hi","msgtype":"m.text"})");
  EXPECT_EQ(s.status, 200) << s.body;
  EXPECT_EQ(last_target(),
            "PUT /_matrix/client/v3/rooms/!r:localhost/send/m.room.message/t1?ts=1234");
  EXPECT_EQ(forwarded_token(), token) << "the same pooled session: one login";
  EXPECT_EQ(hs->successful_login_count(), 1);
}

TEST_F(gateway_fixture, UserOutsideTheBridgesAllowGlobsGets403AndNothingIsForwarded) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto before = hs->request_log().size();
  const auto r = gw("GET", "/_matrix/client/v3/account/whoami?user_id=%40mallory%3Alocalhost",
                    bearer(bridge_token));
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(field(r.body, "errcode"), "M_FORBIDDEN");
  const auto l = gw("POST", "/_matrix/client/v3/login", {},
                    R"({"type":"com.devture.shared_secret_auth","identifier":{"type":"m.id.user",)"
                    R"("user":"@mallory:localhost"},"token":")" +
                        hmac_hex(login_secret, "@mallory:localhost") + R"("})");
  EXPECT_EQ(l.status, 403) << l.body;
  EXPECT_EQ(hs->request_log().size(), before) << "nothing reached the homeserver";
  EXPECT_EQ(hs->login_count(), 0);
}

// --- the login façade and handles -----------------------------------------------------------

TEST_F(gateway_fixture, LoginFacadeIssuesHandlesThatCarryTheCurrentPooledToken) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto flows = gw("GET", "/_matrix/client/v3/login");
  EXPECT_EQ(flows.status, 200);
  EXPECT_NE(flows.body.find("com.devture.shared_secret_auth"), std::string::npos);
  EXPECT_NE(flows.body.find("m.login.password"), std::string::npos);
  EXPECT_EQ(hs->login_flows_count(), 0) << "answered by the gateway";

  // m.login.password with a full user ID ...
  const auto handle = login_handle("@alice:localhost");
  ASSERT_TRUE(handle.starts_with("mxpg_")) << handle;
  EXPECT_GE(handle.size(), 5u + 32u) << "at least 128 random bits";
  // ... and devture with a localpart (the homeserver it is routed to completes it).
  const auto d = gw("POST", "/_matrix/client/r0/login", {},
                    R"({"type":"com.devture.shared_secret_auth","identifier":{"type":"m.id.user",)"
                    R"("user":"bob"},"token":")" +
                        hmac_hex(login_secret, "@bob:localhost") + R"("})");
  EXPECT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(field(d.body, "user_id"), "@bob:localhost");
  EXPECT_EQ(field(d.body, "home_server"), "localhost");
  EXPECT_FALSE(field(d.body, "device_id").empty());
  never_logged.insert(field(d.body, "access_token"));
  EXPECT_EQ(hs->login_count(), 0) << "the façade logs nobody in by itself";

  const auto w = gw("GET", "/_matrix/client/v3/account/whoami", bearer(handle));
  EXPECT_EQ(w.status, 200) << w.body;
  EXPECT_EQ(field(w.body, "user_id"), "@alice:localhost");
  const auto token = forwarded_token();
  never_logged.insert(token);
  EXPECT_NE(token, handle);
  EXPECT_EQ(hs->user_of_token(token), "@alice:localhost");

  // Any other login body is passed through untouched (here: a wrong HMAC).
  const auto other = gw("POST", "/_matrix/client/v3/login", {},
                        R"({"type":"m.login.password","identifier":{"type":"m.id.user",)"
                        R"("user":"@alice:localhost"},"password":"not-the-hmac"})");
  EXPECT_EQ(other.status, 403) << "the homeserver's own answer";
  EXPECT_EQ(hs->login_count(), 2) << "one pooled login, one passed through";
}

TEST_F(gateway_fixture, LogoutWithAHandleForgetsTheHandleOnly) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto handle = login_handle("@alice:localhost");
  ASSERT_EQ(gw("GET", "/_matrix/client/v3/account/whoami", bearer(handle)).status, 200);
  const auto token = forwarded_token();
  never_logged.insert(token);
  const auto out = gw("POST", "/_matrix/client/v3/logout", bearer(handle), "{}");
  EXPECT_EQ(out.status, 200);
  EXPECT_EQ(out.body, "{}");
  EXPECT_EQ(hs->logout_count(), 0) << "nothing logged out at the homeserver";
  EXPECT_TRUE(hs->token_is_live(token)) << "the pooled session and its device live on";
  EXPECT_EQ(hs->device_count("@alice:localhost"), 1);
  const auto after = gw("GET", "/_matrix/client/v3/account/whoami", bearer(handle));
  EXPECT_EQ(after.status, 401);
  EXPECT_EQ(field(after.body, "errcode"), "M_UNKNOWN_TOKEN") << "bridges re-login on this";
  // /logout/all likewise.
  const auto second = login_handle("@alice:localhost");
  EXPECT_EQ(gw("POST", "/_matrix/client/v3/logout/all", bearer(second), "{}").status, 200);
  EXPECT_EQ(hs->logout_count(), 0);
  EXPECT_EQ(gw("GET", "/_matrix/client/v3/account/whoami", bearer(second)).status, 401);
}

TEST_F(gateway_fixture, AHandleSurvivesADaemonRestart) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto handle = login_handle("@carol:localhost");
  ASSERT_EQ(gw("GET", "/_matrix/client/v3/account/whoami", bearer(handle)).status, 200);
  ASSERT_EQ(daemon->stop(SIGTERM), 0);
  daemon = start_daemon("daemon2.log");
  const auto w = gw("GET", "/_matrix/client/v3/account/whoami", bearer(handle));
  EXPECT_EQ(w.status, 200) << w.body;
  EXPECT_EQ(field(w.body, "user_id"), "@carol:localhost");
  EXPECT_EQ(hs->successful_login_count(), 1) << "the session came back from the store too";
  // The store holds the handle's hash, never the handle.
  std::ifstream db{dir.file("sessions.db"), std::ios::binary};
  const std::string bytes{std::istreambuf_iterator<char>{db}, {}};
  EXPECT_EQ(bytes.find(handle), std::string::npos);
}

TEST_F(gateway_fixture, APooledTokenKilledBehindTheBridgesBackCostsOneRetryAndOneLogin) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto handle = login_handle("@alice:localhost");
  ASSERT_EQ(gw("GET", "/_matrix/client/v3/account/whoami", bearer(handle)).status, 200);
  const auto old_token = forwarded_token();
  never_logged.insert(old_token);
  ASSERT_EQ(hs->successful_login_count(), 1);
  hs->kill_token(old_token);
  const auto s = gw("PUT", "/_matrix/client/v3/rooms/!r:localhost/send/m.room.message/t2",
                    bearer(handle), R"({"body":"after churn","msgtype":"m.text"})");
  EXPECT_EQ(s.status, 200) << s.body;
  EXPECT_FALSE(field(s.body, "event_id").empty());
  EXPECT_EQ(hs->successful_login_count(), 2) << "exactly one new login";
  const auto new_token = forwarded_token();
  never_logged.insert(new_token);
  EXPECT_NE(new_token, old_token);
  // The homeserver saw the send twice: refused with the old token, accepted with the new one.
  const auto log = hs->request_log();
  EXPECT_EQ(std::count_if(log.begin(), log.end(),
                          [](const std::string& l) { return l.find("/send/") != l.npos; }),
            2);
  // The same for a bridge token.
  hs->kill_token(new_token);
  EXPECT_EQ(gw("GET", "/_matrix/client/v3/account/whoami?user_id=%40alice%3Alocalhost",
               bearer(bridge_token))
                .status,
            200);
  EXPECT_EQ(hs->successful_login_count(), 3);
  never_logged.insert(forwarded_token());
}

// --- pass-through and what is never reachable ----------------------------------------------

TEST_F(gateway_fixture, OtherBearersAndNoneArePassedThroughUntouched) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto r = gw("GET", "/_matrix/client/v3/account/whoami", bearer("syt_users_own_token"));
  EXPECT_EQ(r.status, 401) << "the homeserver's answer to an unknown token";
  EXPECT_EQ(field(r.body, "errcode"), "M_UNKNOWN_TOKEN");
  EXPECT_EQ(hs->last_authorization_header(), "Bearer syt_users_own_token");
  EXPECT_EQ(last_target(), "GET /_matrix/client/v3/account/whoami");
  const auto none = gw("GET", "/_hs/localhost/_matrix/client/v3/account/whoami?x=1");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(field(none.body, "errcode"), "M_MISSING_TOKEN");
  EXPECT_EQ(last_target(), "GET /_matrix/client/v3/account/whoami?x=1") << "/_hs/ prefix taken off";
  EXPECT_EQ(gw("GET", "/_hs/nowhere.org/_matrix/client/v3/account/whoami").status, 404);
}

TEST_F(gateway_fixture, TheAdminApiAndOtherPathsAreUnreachable) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto before = hs->request_log().size();
  for (const char* path :
       {"/_synapse/admin/v1/users/@alice:localhost/login", "/_hs/localhost/_synapse/admin/v2/users",
        "/.well-known/matrix/client", "/_matrix/federation/v1/version", "/"}) {
    const auto r = gw("POST", path, bearer(bridge_token), "{}");
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(field(r.body, "errcode"), "M_UNRECOGNIZED") << path;
  }
  EXPECT_EQ(hs->request_log().size(), before);
  EXPECT_EQ(hs->admin_login_count(), 0);
}

// --- /sync, streaming, deadlines ------------------------------------------------------------

TEST_F(gateway_fixture, SyncLongPollsAreProxied) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto started = std::chrono::steady_clock::now();
  const auto r = gw("GET", "/_matrix/client/v3/sync?timeout=1500&user_id=%40bob%3Alocalhost",
                    bearer(bridge_token));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(field(r.body, "next_batch"), "s1");
  EXPECT_GE(std::chrono::steady_clock::now() - started, 1500ms);
  EXPECT_EQ(last_target(), "GET /_matrix/client/v3/sync?timeout=1500");
  never_logged.insert(forwarded_token());
}

TEST_F(gateway_fixture, RequestTimeoutAnswers504WhenTheHomeserverIsTooSlow) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());  // gateway.request_timeout: 3s
  const auto started = std::chrono::steady_clock::now();
  const auto r = gw("GET", "/_matrix/client/v3/sync?timeout=10000&user_id=%40bob%3Alocalhost",
                    bearer(bridge_token));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_GE(took, 2900ms);
  EXPECT_LT(took, 6s);
  never_logged.insert(forwarded_token());
}

TEST_F(gateway_fixture, IdleAndHeaderDeadlinesCloseTheConnection) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());  // listen.idle_timeout 2s, header_timeout 1s
  {
    raw_connection idle{port};
    const auto started = std::chrono::steady_clock::now();
    std::string got;
    idle.read_all([&](std::string_view d) { got += d; });
    const auto took = std::chrono::steady_clock::now() - started;
    EXPECT_TRUE(got.empty());
    EXPECT_GE(took, 1900ms);
    EXPECT_LT(took, 5s) << "idle deadline";
  }
  {
    raw_connection slow{port};
    ASSERT_TRUE(slow.send_all("GET /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\n"));
    const auto started = std::chrono::steady_clock::now();
    std::string got;
    slow.read_all([&](std::string_view d) { got += d; });
    const auto took = std::chrono::steady_clock::now() - started;
    EXPECT_GE(took, 900ms);
    EXPECT_LT(took, 1900ms) << "header deadline, shorter than the idle one";
  }
  // Keep-alive: two requests on one connection.
  raw_connection keep{port};
  ASSERT_TRUE(
      keep.send_all("GET /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\n"
                    "Connection: close\r\n\r\n"));
  std::string got;
  keep.read_all([&](std::string_view d) { got += d; });
  EXPECT_EQ(http_statuses(got), (std::vector<int>{200, 200}));
}

TEST_F(gateway_fixture, UploadsAndDownloadsOf200MBStreamWithBoundedMemory) {
  ASSERT_NO_FATAL_FAILURE(start_gateway("  idle_timeout: 2s\n  header_timeout: 1s\n", "300s"));
  constexpr std::uint64_t size = 200ull * 1024 * 1024;
  const pid_t pid = daemon->pid();
  // Warm up (one login, one small upload) so the baseline holds the session and a connection.
  ASSERT_EQ(gw("POST", "/_matrix/media/v3/upload?user_id=%40alice%3Alocalhost",
               bearer(bridge_token), "small")
                .status,
            200);
  never_logged.insert(forwarded_token());
  const long rss_before = proc_status_kib(pid, "VmRSS");
  const auto t0 = std::chrono::steady_clock::now();
  {
    raw_connection up{port};
    ASSERT_TRUE(up.send_all(
        "POST /_matrix/media/v3/upload?user_id=%40alice%3Alocalhost "
        "HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
        std::string{bridge_token} +
        "\r\nContent-Type: application/octet-stream\r\nContent-Length: " + std::to_string(size) +
        "\r\nConnection: close\r\n\r\n"));
    std::string chunk(1024 * 1024, '\0');
    std::uint64_t h = fnv_basis;
    for (std::uint64_t sent = 0; sent < size; sent += chunk.size()) {
      for (std::size_t i = 0; i < chunk.size(); ++i) {
        chunk[i] = static_cast<char>(media_byte(sent + i));
        h = fnv1a(h, static_cast<unsigned char>(chunk[i]));
      }
      ASSERT_TRUE(up.send_all(chunk)) << "at " << sent;
    }
    std::string answer;
    up.read_all([&](std::string_view d) { answer += d; });
    EXPECT_EQ(http_statuses(answer), std::vector<int>{200}) << answer.substr(0, 300);
    EXPECT_EQ(hs->last_upload().bytes, size);
    EXPECT_EQ(hs->last_upload().fnv1a, h) << "every byte arrived, in order";
  }
  const auto t1 = std::chrono::steady_clock::now();
  {
    raw_connection down{port};
    ASSERT_TRUE(down.send_all("GET /_matrix/media/v3/download/localhost/big" +
                              std::to_string(size) +
                              " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    std::string head;
    bool in_body = false;
    std::uint64_t got = 0, h = fnv_basis, expected = fnv_basis;
    down.read_all([&](std::string_view d) {
      if (!in_body) {
        head += d;
        const auto end = head.find("\r\n\r\n");
        if (end == std::string::npos) return;
        in_body = true;
        d = std::string_view{head}.substr(end + 4);
      }
      for (unsigned char b : d) {
        h = fnv1a(h, b);
        expected = fnv1a(expected, media_byte(got++));
      }
    });
    EXPECT_TRUE(head.starts_with("HTTP/1.1 200")) << head.substr(0, 200);
    EXPECT_EQ(got, size);
    EXPECT_EQ(h, expected);
  }
  const auto t2 = std::chrono::steady_clock::now();
  const long rss_after = proc_status_kib(pid, "VmRSS");
  const long hwm = proc_status_kib(pid, "VmHWM");
  std::printf(
      "[ figures  ] 200 MiB upload %.2f s, download %.2f s; daemon VmRSS %ld -> %ld KiB "
      "(growth %ld KiB), VmHWM %ld KiB\n",
      std::chrono::duration<double>(t1 - t0).count(),
      std::chrono::duration<double>(t2 - t1).count(), rss_before, rss_after, rss_after - rss_before,
      hwm);
#ifndef __SANITIZE_ADDRESS__
  // Under AddressSanitizer freed memory sits in its quarantine and every byte has shadow: the
  // bound is the release build's (the content checks above hold in both).
  EXPECT_LT(rss_after - rss_before, 16 * 1024) << "RSS growth under 16 MB";
  EXPECT_LT(hwm - rss_before, 16 * 1024) << "peak RSS growth under 16 MB";
#endif
}

TEST_F(gateway_fixture, BridgesAreListedByMxpuppetctl) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  login_handle("@alice:localhost");
  login_handle("@bob:localhost");
  const auto r = run_ctl({"--json", "bridges"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"name\":\"telegram\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"handles\":2"), std::string::npos) << r.output;
  const auto table = run_ctl({"bridges"});
  EXPECT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find("telegram"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find(" ago"), std::string::npos) << table.output;

  // gateway-token: a token and the line for the config, whose hash is the token's.
  const auto t = run_ctl({"gateway-token"});
  EXPECT_EQ(t.exit_code, 0);
  const auto newline = t.output.find('\n');
  ASSERT_NE(newline, std::string::npos);
  const auto token = t.output.substr(0, newline);
  EXPECT_GE(token.size(), 40u);
  unsigned char d[SHA256_DIGEST_LENGTH];
  ::SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), d);
  std::string hex;
  char two[3];
  for (unsigned char b : d) std::snprintf(two, sizeof two, "%02x", b), hex += two;
  EXPECT_EQ(t.output.substr(newline + 1), "token_sha256: " + hex + "\n");
}

TEST_F(gateway_fixture, MetricsCountRequestsByBridgeModeRouteAndStatus) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  ASSERT_EQ(gw("GET", "/_matrix/client/v3/account/whoami?user_id=%40alice%3Alocalhost",
               bearer(bridge_token))
                .status,
            200);
  never_logged.insert(forwarded_token());
  gw("GET", "/_synapse/admin/v1/server_version");
  mxp::client::unix_http_client c{socket};
  const auto m = c.request("GET", "/metrics");
  EXPECT_NE(m.body.find("mxpuppetd_gateway_requests_total{bridge=\"telegram\",mode=\"session\","
                        "route=\"other\",status=\"200\"} 1"),
            std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("mxpuppetd_gateway_requests_total{bridge=\"\",mode=\"local\","
                        "route=\"other\",status=\"404\"} 1"),
            std::string::npos);
  EXPECT_NE(m.body.find("mxpuppetd_gateway_upstream_seconds_count{route=\"other\"} 1"),
            std::string::npos);
  EXPECT_NE(m.body.find("mxpuppetd_gateway_handles 0"), std::string::npos);
  // One log line per decision, without the token.
  const auto log = daemon->log();
  EXPECT_NE(log.find("gateway: bridge=telegram user=@alice:localhost mode=session route=other "
                     "homeserver=localhost status=200"),
            std::string::npos);
}

TEST_F(gateway_fixture, ReloadAppliesNewAllowGlobsAndKeepsHandles) {
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto handle = login_handle("@alice:localhost");
  EXPECT_EQ(gw("GET", "/_matrix/client/v3/account/whoami?user_id=%40mallory%3Alocalhost",
               bearer(bridge_token))
                .status,
            403);
  auto text = gateway_section();
  text.replace(text.find("\"@carol:localhost\""), 18, "\"@mallory:localhost\"");
  write_config({.listen = "  idle_timeout: 2s\n  header_timeout: 1s\n", .sections = text});
  const auto seen = daemon->log().size();
  ::kill(daemon->pid(), SIGHUP);
  for (int i = 0;
       i < 200 && daemon->log().find("gateway settings applied", seen) == std::string::npos; ++i)
    std::this_thread::sleep_for(20ms);
  EXPECT_EQ(gw("GET", "/_matrix/client/v3/account/whoami?user_id=%40mallory%3Alocalhost",
               bearer(bridge_token))
                .status,
            200);
  never_logged.insert(forwarded_token());
  EXPECT_EQ(gw("GET", "/_matrix/client/v3/account/whoami", bearer(handle)).status, 200)
      << "the handle outlived the reload";
}

// --- assert mode ----------------------------------------------------------------------------

struct assert_fixture : gateway_fixture {
  fake_homeserver_options homeserver_options() const {
    auto o = e2e_fixture::homeserver_options();
    o.as_token = as_token;
    return o;
  }
  void SetUp() override {
    gateway_fixture::SetUp();
    start_homeserver(homeserver_options());
    hs->register_users({"@alice:localhost", "@bob:localhost"});
    dir.write("as.token", std::string{as_token} + "\n", 0600);
    never_logged.insert(as_token);
    auto entry = default_entry();
    entry.login = "      method: appservice\n      as_token_file: as.token\n";
    entry.more = "    gateway_mode: assert\n";
    start({.homeservers = {entry}, .sections = gateway_section()});
  }
};

TEST_F(assert_fixture, BridgeTokenInAssertModeUsesTheAsTokenAndKeepsUserId) {
  const auto r = gw("GET", "/_matrix/client/v3/account/whoami?user_id=%40alice%3Alocalhost",
                    bearer(bridge_token));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(field(r.body, "user_id"), "@alice:localhost");
  EXPECT_EQ(forwarded_token(), as_token);
  EXPECT_EQ(last_target(), "GET /_matrix/client/v3/account/whoami?user_id=%40alice%3Alocalhost");
  EXPECT_EQ(hs->login_count(), 0) << "no login, no device";
  EXPECT_EQ(hs->device_count(), 0);
  // A handle in assert mode asserts its user too.
  const auto handle = login_handle("@bob:localhost");
  const auto w = gw("GET", "/_matrix/client/v3/account/whoami", bearer(handle));
  EXPECT_EQ(field(w.body, "user_id"), "@bob:localhost") << w.body;
  EXPECT_EQ(forwarded_token(), as_token);
  // A user the homeserver does not know: its 403 is passed on.
  const auto c = gw("GET", "/_matrix/client/v3/account/whoami?user_id=%40carol%3Alocalhost",
                    bearer(bridge_token));
  EXPECT_EQ(c.status, 403);
  EXPECT_EQ(hs->login_count(), 0);
}

}  // namespace
