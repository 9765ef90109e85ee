// Tests of mxpuppetctl: run_ctl in-process against canned answers on a Unix
// socket (output, requests sent, exit codes), and the built binary as a
// subprocess for the exit codes a shell script sees.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "client/ctl.hpp"
#include "support/script_server.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using mxp::client::ctl_exit;
using mxp::client::human_duration;

using connection = mxp::test::script_connection;
using mxp::test::recorded_request;
using mxp::test::script_server;

std::string answer(int status, std::string_view body) {
  return mxp::test::json_answer(status, body);
}

// A daemon stand-in: answers every request with `raw` (a whole HTTP answer).
class canned_daemon {
 public:
  explicit canned_daemon(std::string raw)
      : raw_(std::move(raw)), server_([this](connection& c, int) {
          while (c.read_request()) c.write(raw_);
        }) {}
  canned_daemon(int status, std::string_view body) : canned_daemon(answer(status, body)) {}
  const std::string& path() const { return server_.path(); }
  std::vector<recorded_request> requests() { return server_.requests(); }

 private:
  std::string raw_;
  script_server server_;
};

struct ctl_result {
  int exit_code;
  std::string out, err;
};

constexpr std::int64_t fixed_now = 1'700'000'000'000;

// Where check-config finds mxpuppetd, as mxpuppetctl's main fills it in.
struct daemon_lookup {
  std::string from_env, self_dir, search_path;
};

ctl_result ctl(std::vector<std::string_view> args, std::string env_socket = {},
               std::string stdin_text = {}, std::chrono::milliseconds timeout = 5s,
               daemon_lookup lookup = {}) {
  std::ostringstream out, err;
  std::istringstream in{stdin_text};
  const mxp::client::ctl_context ctx{out,
                                     err,
                                     in,
                                     std::move(env_socket),
                                     [] { return fixed_now; },
                                     timeout,
                                     std::move(lookup.from_env),
                                     std::move(lookup.self_dir),
                                     std::move(lookup.search_path)};
  const int rc = mxp::client::run_ctl(args, ctx);
  return {rc, out.str(), err.str()};
}

constexpr int ok_code = static_cast<int>(ctl_exit::ok);
constexpr int daemon_error = static_cast<int>(ctl_exit::daemon_error);
constexpr int usage = static_cast<int>(ctl_exit::usage);
constexpr int unreachable = static_cast<int>(ctl_exit::unreachable);
constexpr int bad_answer = static_cast<int>(ctl_exit::bad_answer);

constexpr std::string_view token_body =
    R"({"user_id":"@a/b:x.org","access_token":"syt_secret","device_id":"DEV","homeserver_url":"https://x.org","expires_at_ms":null,"method":"shared_secret"})";

TEST(Ctl, TokenPrintsOnlyTheToken) {
  canned_daemon d{200, token_body};
  const auto r = ctl({"--socket", d.path(), "token", "@a/b:x.org"});
  EXPECT_EQ(r.exit_code, ok_code);
  EXPECT_EQ(r.out, "syt_secret\n");
  EXPECT_EQ(r.err, "");
  ASSERT_EQ(d.requests().size(), 1u);
  EXPECT_EQ(d.requests()[0].method, "GET");
  EXPECT_EQ(d.requests()[0].target, "/v1/users/@a%2Fb:x.org/token");
}

TEST(Ctl, TokenWithMinValidityAndJson) {
  canned_daemon d{200, token_body};
  const auto r = ctl({"token", "@a:x.org", "--min-valid-ms", "60000", "--json"}, d.path());
  EXPECT_EQ(r.exit_code, ok_code);
  EXPECT_EQ(r.out, std::string{token_body} + "\n");
  EXPECT_EQ(d.requests().at(0).target, "/v1/users/@a:x.org/token?min_valid_ms=60000");
  const auto r2 = ctl({"--socket=" + d.path(), "token", "--min-valid-ms=0", "@a:x.org"});
  EXPECT_EQ(r2.exit_code, ok_code);
  EXPECT_EQ(d.requests().at(1).target, "/v1/users/@a:x.org/token?min_valid_ms=0");
}

TEST(Ctl, SocketComesFromTheOptionThenTheEnvironment) {
  canned_daemon d{200, token_body};
  EXPECT_EQ(ctl({"token", "@a:x.org"}, d.path()).exit_code, ok_code);
  EXPECT_EQ(ctl({"--socket", d.path(), "token", "@a:x.org"}, "/nonexistent/env.sock").exit_code,
            ok_code);
  const auto r = ctl({"token", "@a:x.org"}, "/nonexistent/env.sock");
  EXPECT_EQ(r.exit_code, unreachable);
  EXPECT_NE(r.err.find("/nonexistent/env.sock"), std::string::npos) << r.err;
  EXPECT_EQ(d.requests().size(), 2u);
}

TEST(Ctl, DaemonErrorsGoToStderrWithExitCode1) {
  canned_daemon d{
      404, R"({"errcode":"M_NOT_FOUND","error":"no homeserver configured for server name 'x'"})"};
  const auto r = ctl({"--socket", d.path(), "token", "@a:x"});
  EXPECT_EQ(r.exit_code, daemon_error);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "mxpuppetctl: M_NOT_FOUND: no homeserver configured for server name 'x'\n");
}

TEST(Ctl, DaemonErrorDetailsArePrinted) {
  canned_daemon limited{
      429, R"({"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":1500})"};
  auto r = ctl({"--socket", limited.path(), "token", "@a:x"});
  EXPECT_EQ(r.exit_code, daemon_error);
  EXPECT_EQ(r.err, "mxpuppetctl: M_LIMIT_EXCEEDED: slow down (retry_after_ms: 1500)\n");

  canned_daemon upstream{
      502,
      R"({"errcode":"MXP_UPSTREAM","error":"homeserver refused","upstream_status":403,"upstream_errcode":"M_FORBIDDEN"})"};
  r = ctl({"--socket", upstream.path(), "--json", "revoke", "@a:x"});
  EXPECT_EQ(r.exit_code, daemon_error);
  EXPECT_EQ(r.err,
            "mxpuppetctl: MXP_UPSTREAM: homeserver refused (upstream_status: 403, "
            "upstream_errcode: M_FORBIDDEN)\n");
  EXPECT_NE(r.out.find("\"upstream_status\":403"),
            std::string::npos);  // --json: the error body on stdout

  canned_daemon bare{500, "Internal Server Error"};
  r = ctl({"--socket", bare.path(), "sessions"});
  EXPECT_EQ(r.exit_code, daemon_error);
  EXPECT_EQ(r.err, "mxpuppetctl: mxpuppetd answered HTTP 500 without an error description\n");
}

TEST(Ctl, InvalidateSendsTheTokenAsJson) {
  canned_daemon d{200, R"({"invalidated":true})"};
  const auto r = ctl({"--socket", d.path(), "invalidate", "@a:x", "tok\"en\\"});
  EXPECT_EQ(r.exit_code, ok_code);
  EXPECT_EQ(r.out, "invalidated\n");
  const auto req = d.requests().at(0);
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.target, "/v1/users/@a:x/invalidate");
  EXPECT_EQ(req.body, R"({"access_token":"tok\"en\\"})");
  EXPECT_NE(req.head.find("Content-Type: application/json"), std::string::npos);
}

TEST(Ctl, InvalidateReadsTheTokenFromStdin) {
  canned_daemon d{200, R"({"invalidated":false})"};
  const auto r = ctl({"--socket", d.path(), "invalidate", "@a:x", "-"}, {}, "syt_from_stdin\r\n");
  EXPECT_EQ(r.exit_code, ok_code);
  EXPECT_EQ(r.out, "not invalidated (token was not the current one)\n");
  EXPECT_EQ(d.requests().at(0).body, R"({"access_token":"syt_from_stdin"})");
  EXPECT_EQ(ctl({"--socket", d.path(), "invalidate", "@a:x", "-"}).exit_code,
            usage);  // empty stdin
}

TEST(Ctl, ErrorsNeverShowTheToken) {
  canned_daemon d{403, R"({"errcode":"M_FORBIDDEN","error":"not yours"})"};
  auto r = ctl({"--socket", d.path(), "invalidate", "@a:x", "syt_secret_token"});
  EXPECT_EQ(r.exit_code, daemon_error);
  EXPECT_EQ(r.err.find("syt_secret_token"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("syt_secret_token"), std::string::npos) << r.out;
  r = ctl({"--socket", "/nonexistent/s.sock", "invalidate", "@a:x", "syt_secret_token"});
  EXPECT_EQ(r.exit_code, unreachable);
  EXPECT_EQ(r.err.find("syt_secret_token"), std::string::npos) << r.err;
  r = ctl({"--socket", "/nonexistent/s.sock", "invalidate", "@a:x", "syt_secret_token", "extra"});
  EXPECT_EQ(r.exit_code, usage);
  EXPECT_EQ(r.err.find("syt_secret_token"), std::string::npos) << r.err;
  // A malformed answer is not echoed either (it might carry a token).
  canned_daemon odd{200, R"({"access_token":42,"debug":"syt_leak"})"};
  r = ctl({"--socket", odd.path(), "token", "@a:x"});
  EXPECT_EQ(r.exit_code, bad_answer);
  EXPECT_EQ(r.err.find("syt_leak"), std::string::npos) << r.err;
}

TEST(Ctl, Revoke) {
  canned_daemon yes{200, R"({"revoked":true})"};
  auto r = ctl({"--socket", yes.path(), "revoke", "@a#b:x"});
  EXPECT_EQ(r.exit_code, ok_code);
  EXPECT_EQ(r.out, "revoked\n");
  EXPECT_EQ(yes.requests().at(0).method, "DELETE");
  EXPECT_EQ(yes.requests().at(0).target, "/v1/users/@a%23b:x/session");
  canned_daemon no{200, R"({"revoked":false})"};
  r = ctl({"--socket", no.path(), "revoke", "@a:x"});
  EXPECT_EQ(r.out, "no session\n");
}

TEST(Ctl, SessionsTable) {
  const std::string body =
      R"({"sessions":[)"
      R"({"user_id":"@alice:example.org","device_id":"ABCDEF","method":"shared_secret",)"
      R"("created_at_ms":1699990000000,"last_used_at_ms":)" +
      std::to_string(fixed_now - 5000) +
      R"(,"expires_at_ms":null,"state":"active"},)"
      R"({"user_id":"@b:example.org","device_id":null,"method":"password","created_at_ms":1,)"
      R"("last_used_at_ms":)" +
      std::to_string(fixed_now - 3'720'000) + R"(,"expires_at_ms":)" +
      std::to_string(fixed_now + 7'200'000) +
      R"(,"state":"logging_in"},)"
      R"({"user_id":"@c:example.org","expires_at_ms":1,"future_field":[1]}]})";
  canned_daemon d{200, body};
  const auto r = ctl({"--socket", d.path(), "sessions"});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(r.out,
            "USER                DEVICE  METHOD         STATE       LAST_USED  EXPIRES\n"
            "@alice:example.org  ABCDEF  shared_secret  active      5s ago     never\n"
            "@b:example.org      -       password       logging_in  1h 2m ago  in 2h\n"
            "@c:example.org      -       -              -           -          expired\n");
  EXPECT_EQ(d.requests().at(0).target, "/v1/sessions?limit=1000");

  canned_daemon empty{200, R"({"sessions":[]})"};
  EXPECT_EQ(ctl({"--socket", empty.path(), "sessions"}).out, "no sessions\n");
  canned_daemon wrong{200, R"({"sessions":{}})"};
  EXPECT_EQ(ctl({"--socket", wrong.path(), "sessions"}).exit_code, bad_answer);
}

TEST(Ctl, StatusPrintsWhatItFinds) {
  canned_daemon d{
      200,
      R"({"version":"0.1.0","uptime_ms":3723000,"sessions":{"total":5,"active":4,"logging_in":1},)"
      R"("homeservers":[{"server_name":"example.org","url":"https://matrix.example.org",)"
      R"("method":"shared_secret","login_type":"com.devture.shared_secret_auth","logins_in_flight":0,)"
      R"("healthy":true},{"server_name":"other.org","healthy":false,"new_key":"v"}],"build":{"x":1}})"};
  const auto r = ctl({"--socket", d.path(), "status"});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(
      r.out,
      "version:     0.1.0\n"
      "uptime:      1h 2m\n"
      "sessions:    5 total, 4 active, 1 logging in\n"
      "homeservers:\n"
      "  SERVER       URL                         METHOD         LOGIN_TYPE                      "
      "IN_FLIGHT  HEALTH     OTHER\n"
      "  example.org  https://matrix.example.org  shared_secret  com.devture.shared_secret_auth  "
      "0          healthy\n"
      "  other.org    -                           -              -                               "
      "-          UNHEALTHY  new_key=v\n"
      "build:       {\"x\":1}\n");
}

TEST(Ctl, StatusToleratesOddShapes) {
  for (const char* body :
       {R"({})", R"({"uptime_ms":"soon","sessions":[],"homeservers":[]})",
        R"({"homeservers":[1,"x",null,{}],"sessions":{}})", R"({"version":null})"}) {
    canned_daemon d{200, body};
    const auto r = ctl({"--socket", d.path(), "status"});
    EXPECT_EQ(r.exit_code, ok_code) << body << "\n" << r.err;
  }
  canned_daemon not_object{200, "[1,2]"};
  EXPECT_EQ(ctl({"--socket", not_object.path(), "status"}).exit_code, bad_answer);
}

TEST(Ctl, MalformedAnswersExit4) {
  canned_daemon not_json{200, "this is not json"};
  auto r = ctl({"--socket", not_json.path(), "status"});
  EXPECT_EQ(r.exit_code, bad_answer);
  EXPECT_NE(r.err.find("malformed answer"), std::string::npos) << r.err;
  EXPECT_EQ(ctl({"--socket", not_json.path(), "--json", "status"}).exit_code, bad_answer);

  canned_daemon no_flag{200, R"({"invalidated":"yes"})"};
  EXPECT_EQ(ctl({"--socket", no_flag.path(), "invalidate", "@a:x", "t"}).exit_code, bad_answer);

  canned_daemon bad_http{"HTTP/1.1 OK\r\n\r\n"};
  r = ctl({"--socket", bad_http.path(), "token", "@a:x"});
  EXPECT_EQ(r.exit_code, bad_answer);
  EXPECT_NE(r.err.find("malformed HTTP answer"), std::string::npos) << r.err;
}

TEST(Ctl, UnreachableDaemonExits3) {
  const auto r = ctl({"--socket", "/nonexistent/mxpuppetd.sock", "status"});
  EXPECT_EQ(r.exit_code, unreachable);
  EXPECT_NE(r.err.find("cannot reach mxpuppetd"), std::string::npos) << r.err;

  script_server silent{[](connection& c, int) {
    c.read_request();
    c.wait_for_shutdown();
  }};
  const auto t = ctl({"--socket", silent.path(), "status"}, {}, {}, 200ms);
  EXPECT_EQ(t.exit_code, unreachable);
  silent.stopping = true;
}

TEST(Ctl, UsageErrorsExit2) {
  const std::vector<std::vector<std::string_view>> cases = {
      {},
      {"frobnicate"},
      {"--bogus", "status"},
      {"token"},
      {"token", ""},
      {"token", "@a:x", "extra"},
      {"token", "@a:x", "--min-valid-ms"},
      {"token", "@a:x", "--min-valid-ms", "-5"},
      {"token", "@a:x", "--min-valid-ms", "5s"},
      {"sessions", "--min-valid-ms", "5"},
      {"invalidate", "@a:x"},
      {"revoke"},
      {"sessions", "x"},
      {"--socket"},
      {"--socket", "", "status"},
      {"--json=yes", "status"},
      {"sessions", "--homeserver"},
      {"sessions", "--homeserver", ""},
      {"token", "@a:x", "--homeserver", "x"},
      {"revoke", "@a:x", "--homeserver", "x"},
      {"status", "--all-idle"},
      {"revoke", "--all-idle", "@a:x"},
      {"revoke", "--idle-for", "1h", "@a:x"},
      {"revoke", "--all-idle", "--idle-for", "soon"},
      {"revoke", "--all-idle", "--idle-for", "-1h"},
      {"check-config"},
      {"check-config", ""},
      {"check-config", "a.yaml", "b.yaml"},
  };
  for (const auto& args : cases) {
    const auto r = ctl(args, "/nonexistent/never-contacted.sock");
    EXPECT_EQ(r.exit_code, usage) << testing::PrintToString(args) << "\n" << r.err;
    EXPECT_NE(r.err.find("--help"), std::string::npos);
    EXPECT_EQ(r.out, "");
  }
}

TEST(Ctl, HelpAndVersion) {
  auto r = ctl({"--help"});
  EXPECT_EQ(r.exit_code, ok_code);
  EXPECT_NE(r.out.find("Usage: mxpuppetctl"), std::string::npos);
  EXPECT_NE(r.out.find("Exit status"), std::string::npos);
  EXPECT_NE(r.out.find("/run/mxpuppetd/mxpuppetd.sock"), std::string::npos);
  EXPECT_EQ(ctl({"token", "-h"}).exit_code, ok_code);
  r = ctl({"--version"});
  EXPECT_EQ(r.exit_code, ok_code);
  EXPECT_EQ(r.out, std::string{"mxpuppetctl "} + MXP_VERSION + "\n");
}

TEST(Ctl, HumanDuration) {
  EXPECT_EQ(human_duration(-5), "0ms");
  EXPECT_EQ(human_duration(250), "250ms");
  EXPECT_EQ(human_duration(5'000), "5s");
  EXPECT_EQ(human_duration(59'999), "59s");
  EXPECT_EQ(human_duration(60'000), "1m");
  EXPECT_EQ(human_duration(200'000), "3m 20s");
  EXPECT_EQ(human_duration(7'500'000), "2h 5m");
  EXPECT_EQ(human_duration(86'400'000), "1d");
  EXPECT_EQ(human_duration(3 * 86'400'000 + 4 * 3'600'000 + 59'000), "3d 4h");
}

const std::string three_servers_sessions =
    R"({"sessions":[)"
    R"({"user_id":"@alice:example.org","device_id":"A","method":"shared_secret","last_used_at_ms":)" +
    std::to_string(fixed_now - 2 * 3'600'000) +
    R"(,"expires_at_ms":null,"state":"active"},)"
    R"({"user_id":"@bob:other.org","device_id":"B","method":"jwt","last_used_at_ms":)" +
    std::to_string(fixed_now - 3 * 3'600'000) +
    R"(,"expires_at_ms":null,"state":"active"},)"
    R"({"user_id":"@carol:example.org:8448","device_id":"C","method":"jwt","last_used_at_ms":)" +
    std::to_string(fixed_now - 60'000) + R"(,"expires_at_ms":null,"state":"active"}]})";

TEST(Ctl, SessionsOfOneHomeserver) {
  canned_daemon d{200, three_servers_sessions};
  auto r = ctl({"--socket", d.path(), "sessions", "--homeserver", "example.org"});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(r.out,
            "USER                DEVICE  METHOD         STATE   LAST_USED  EXPIRES\n"
            "@alice:example.org  A       shared_secret  active  2h ago     never\n");
  r = ctl({"--socket", d.path(), "sessions", "--homeserver=example.org:8448", "--json"});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(
      r.out,
      R"({"sessions":[{"user_id":"@carol:example.org:8448","device_id":"C","method":"jwt","last_used_at_ms":)" +
          std::to_string(fixed_now - 60'000) + R"(,"expires_at_ms":null,"state":"active"}]})" +
          "\n");
  r = ctl({"--socket", d.path(), "sessions", "--homeserver", "nowhere.org"});
  EXPECT_EQ(r.out, "no sessions on nowhere.org\n");
  r = ctl({"--socket", d.path(), "sessions", "--homeserver", "nowhere.org", "--json"});
  EXPECT_EQ(r.out, "{\"sessions\":[]}\n");
  EXPECT_EQ(mxp::client::server_name_of("@a:b.org:8448"), "b.org:8448");
  EXPECT_EQ(mxp::client::server_name_of("no-colon"), "");
}

// A daemon stand-in for revoke --all-idle: lists `sessions`, answers each DELETE per its user.
class revoking_daemon {
 public:
  explicit revoking_daemon(std::string sessions)
      : sessions_(std::move(sessions)), server_([this](connection& c, int) {
          while (auto req = c.read_request()) {
            if (req->method == "GET")
              c.write(answer(200, sessions_));
            else if (req->target.find("@broken") != std::string::npos)
              c.write(answer(
                  502,
                  R"({"errcode":"MXP_UPSTREAM","error":"homeserver refused","upstream_status":500})"));
            else if (req->target.find("@gone") != std::string::npos)
              c.write(answer(200, R"({"revoked":false})"));
            else
              c.write(answer(200, R"({"revoked":true})"));
          }
        }) {}
  const std::string& path() const { return server_.path(); }
  std::vector<std::string> deletes() {
    std::vector<std::string> out;
    for (const auto& r : server_.requests())
      if (r.method == "DELETE") out.push_back(r.target);
    return out;
  }
  int connections() const { return server_.accepted(); }

 private:
  std::string sessions_;
  script_server server_;
};

std::string session_json(const std::string& user, std::int64_t idle_ms,
                         const char* state = "active") {
  return R"({"user_id":")" + user + R"(","device_id":"D","method":"jwt","last_used_at_ms":)" +
         std::to_string(fixed_now - idle_ms) + R"(,"expires_at_ms":null,"state":")" + state + "\"}";
}

TEST(Ctl, RevokeAllIdleDeletesActiveSessionsIdleLongEnough) {
  revoking_daemon d{R"({"sessions":[)" + session_json("@old:x.org", 2 * 3'600'000) + "," +
                    session_json("@fresh:x.org", 30 * 60'000) + "," +
                    session_json("@busy:x.org", 5 * 3'600'000, "logging_in") + "," +
                    session_json("@exactly/1h:x.org", 3'600'000) + "," +
                    R"({"user_id":"@odd:x.org","state":"active"}]})"};
  const auto r = ctl({"--socket", d.path(), "revoke", "--all-idle"});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(r.out,
            "revoked @old:x.org (idle 2h)\n"
            "revoked @exactly/1h:x.org (idle 1h)\n"
            "revoked 2 of 2 sessions idle for 1h or longer\n");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(d.deletes(), (std::vector<std::string>{"/v1/users/@old:x.org/session",
                                                   "/v1/users/@exactly%2F1h:x.org/session"}));
  EXPECT_EQ(d.connections(), 1);  // one connection for the listing and every DELETE
}

TEST(Ctl, RevokeAllIdleWithDurationHomeserverAndJson) {
  revoking_daemon d{R"({"sessions":[)" + session_json("@a:x.org", 20 * 60'000) + "," +
                    session_json("@b:y.org", 20 * 60'000) + "," +
                    session_json("@gone:x.org", 40 * 60'000) + "," +
                    session_json("@c:x.org", 5 * 60'000) + "]}"};
  auto r = ctl({"--socket", d.path(), "revoke", "--all-idle", "--idle-for", "15m", "--homeserver",
                "x.org", "--json"});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(r.out, R"({"revoked":["@a:x.org"],"gone":["@gone:x.org"],"failed":[]})"
                   "\n");
  EXPECT_EQ(d.deletes().size(), 2u);

  r = ctl({"--socket", d.path(), "revoke", "--all-idle", "--idle-for=7d"});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(r.out, "no active sessions idle for 7d or longer\n");
  EXPECT_EQ(d.deletes().size(), 2u);
}

TEST(Ctl, RevokeAllIdleGoesOnAfterAFailureAndExits1) {
  revoking_daemon d{R"({"sessions":[)" + session_json("@broken:x.org", 2 * 3'600'000) + "," +
                    session_json("@fine:x.org", 2 * 3'600'000) + "]}"};
  const auto r = ctl({"--socket", d.path(), "revoke", "--all-idle"});
  EXPECT_EQ(r.exit_code, daemon_error);
  EXPECT_EQ(r.err,
            "mxpuppetctl: revoke @broken:x.org: MXP_UPSTREAM: homeserver refused (upstream_status: "
            "500)\n");
  EXPECT_EQ(
      r.out,
      "revoked @fine:x.org (idle 2h)\nrevoked 1 of 2 sessions idle for 1h or longer (1 failed)\n");

  canned_daemon refusing{403, R"({"errcode":"M_FORBIDDEN","error":"not for you"})"};
  const auto denied = ctl({"--socket", refusing.path(), "revoke", "--all-idle"});
  EXPECT_EQ(denied.exit_code, daemon_error);
  EXPECT_EQ(denied.err, "mxpuppetctl: M_FORBIDDEN: not for you\n");
  EXPECT_EQ(ctl({"--socket", "/nonexistent/x.sock", "revoke", "--all-idle"}).exit_code,
            unreachable);
}

// A daemon stand-in that serves `pages` in turn: the answer to the page asked for with
// from=<cursor> is the one after the page whose next_batch was <cursor>.
class paging_daemon {
 public:
  explicit paging_daemon(std::map<std::string, std::string> page_by_from)
      : pages_(std::move(page_by_from)), server_([this](connection& c, int) {
          while (auto req = c.read_request()) {
            if (req->method != "GET") {
              c.write(answer(200, R"({"revoked":true})"));
              continue;
            }
            const auto at = req->target.find("&from=");
            const std::string from = at == std::string::npos ? "" : req->target.substr(at + 6);
            const auto page = pages_.find(from);
            c.write(page == pages_.end()
                        ? answer(400, R"({"errcode":"M_INVALID_PARAM","error":"bad from"})")
                        : answer(200, page->second));
          }
        }) {}
  const std::string& path() const { return server_.path(); }
  std::vector<std::string> targets() {
    std::vector<std::string> out;
    for (const auto& r : server_.requests()) out.push_back(r.method + " " + r.target);
    return out;
  }

 private:
  std::map<std::string, std::string> pages_;
  script_server server_;
};

TEST(Ctl, SessionsFollowsNextBatchToTheLastPage) {
  paging_daemon d{{
      {"", R"({"sessions":[)" + session_json("@a:x.org", 2 * 3'600'000) + "," +
               session_json("@b:y.org", 60'000) + R"(],"next_batch":"c1"})"},
      {"c1",
       R"({"sessions":[)" + session_json("@c:x.org", 2 * 3'600'000) + R"(],"next_batch":"c2"})"},
      {"c2", R"({"sessions":[]})"},  // a last page may be empty
  }};
  auto r = ctl({"--socket", d.path(), "sessions"});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(r.out,
            "USER      DEVICE  METHOD  STATE   LAST_USED  EXPIRES\n"
            "@a:x.org  D       jwt     active  2h ago     never\n"
            "@b:y.org  D       jwt     active  1m ago     never\n"
            "@c:x.org  D       jwt     active  2h ago     never\n");
  EXPECT_EQ(d.targets(), (std::vector<std::string>{"GET /v1/sessions?limit=1000",
                                                   "GET /v1/sessions?limit=1000&from=c1",
                                                   "GET /v1/sessions?limit=1000&from=c2"}));

  // --json: one answer with every page's sessions; --homeserver filters across pages.
  r = ctl({"--socket", d.path(), "--json", "sessions"});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(r.out, R"({"sessions":[)" + session_json("@a:x.org", 2 * 3'600'000) + "," +
                       session_json("@b:y.org", 60'000) + "," +
                       session_json("@c:x.org", 2 * 3'600'000) + "]}\n");
  r = ctl({"--socket", d.path(), "sessions", "--homeserver", "x.org"});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(r.out,
            "USER      DEVICE  METHOD  STATE   LAST_USED  EXPIRES\n"
            "@a:x.org  D       jwt     active  2h ago     never\n"
            "@c:x.org  D       jwt     active  2h ago     never\n");

  // revoke --all-idle sees the sessions of every page.
  r = ctl({"--socket", d.path(), "revoke", "--all-idle"});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(r.out,
            "revoked @a:x.org (idle 2h)\nrevoked @c:x.org (idle 2h)\n"
            "revoked 2 of 2 sessions idle for 1h or longer\n");
}

TEST(Ctl, SessionsPagingFailures) {
  // An error on a later page is reported like any error answer.
  paging_daemon broken{{{"", R"({"sessions":[],"next_batch":"gone"})"}}};
  auto r = ctl({"--socket", broken.path(), "sessions"});
  EXPECT_EQ(r.exit_code, daemon_error);
  EXPECT_EQ(r.err, "mxpuppetctl: M_INVALID_PARAM: bad from\n");
  EXPECT_EQ(r.out, "");
  // A daemon that names the same page again is not followed forever.
  paging_daemon looping{
      {{"", R"({"sessions":[],"next_batch":"x"})"}, {"x", R"({"sessions":[],"next_batch":"x"})"}}};
  r = ctl({"--socket", looping.path(), "sessions"});
  EXPECT_EQ(r.exit_code, bad_answer);
  EXPECT_EQ(r.err,
            "mxpuppetctl: malformed answer from mxpuppetd: next_batch is not a new cursor\n");
  EXPECT_EQ(looping.targets().size(), 2u);
  paging_daemon odd{{{"", R"({"sessions":[],"next_batch":7})"}}};
  EXPECT_EQ(ctl({"--socket", odd.path(), "sessions"}).exit_code, bad_answer);
}

// --- check-config: runs the built mxpuppetd -------------------------------------------

class config_files {
 public:
  config_files() {
    char dir_template[] = "/tmp/mxp-ctl-config-XXXXXX";
    if (!::mkdtemp(dir_template)) throw std::system_error(errno, std::system_category(), "mkdtemp");
    dir_ = dir_template;
    write("hs.secret", "s3cret\n");
  }
  ~config_files() {
    for (const auto& f : files_) ::unlink(f.c_str());
    ::rmdir(dir_.c_str());
  }
  std::string write(const std::string& name, const std::string& text) {
    const auto path = dir_ + "/" + name;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      throw std::system_error(errno, std::system_category(), "write " + path);
    ::close(fd);
    files_.push_back(path);
    return path;
  }

 private:
  std::string dir_;
  std::vector<std::string> files_;
};

constexpr const char* valid_config =
    "homeservers:\n  example.com:\n    login: {method: shared_secret, secret_file: hs.secret}\n";

std::optional<std::string> daemon_binary() {
  const char* bin = std::getenv("MXPUPPETD_BIN");
  if (!bin || ::access(bin, X_OK) != 0) return std::nullopt;
  return std::string{bin};
}

std::string dir_of(const std::string& path) {
  return path.substr(0, path.rfind('/'));
}

TEST(Ctl, CheckConfigReportsValidAndInvalidFiles) {
  const auto bin = daemon_binary();
  if (!bin) GTEST_SKIP() << "MXPUPPETD_BIN not set or not built (run through ctest)";
  config_files files;
  const auto good = files.write("good.yaml", valid_config);
  auto r = ctl({"check-config", good}, {}, {}, 10s, {*bin, {}, {}});
  EXPECT_EQ(r.exit_code, ok_code) << r.err;
  EXPECT_EQ(r.out, good + ": configuration is valid (1 homeserver(s))\n");
  EXPECT_EQ(r.err, "");

  const auto bad = files.write("bad.yaml", std::string{valid_config} + "log:\n  format: logfmt\n");
  r = ctl({"check-config", bad}, {}, {}, 10s, {*bin, {}, {}});
  EXPECT_EQ(r.exit_code, daemon_error);
  EXPECT_NE(r.err.find(bad + ":5: log.format: expected text or json, got 'logfmt'"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out, "");

  r = ctl({"check-config", files.write("missing-secret.yaml",
                                       "homeservers:\n  example.com:\n    login: "
                                       "{method: shared_secret, secret_file: none}\n")},
          {}, {}, 10s, {*bin, {}, {}});
  EXPECT_EQ(r.exit_code, daemon_error);
  EXPECT_NE(r.err.find(":3: homeservers.example.com.login.secret_file: cannot read"),
            std::string::npos)
      << r.err;
}

TEST(Ctl, CheckConfigFindsMxpuppetdNextToItselfThenOnPath) {
  const auto bin = daemon_binary();
  if (!bin) GTEST_SKIP() << "MXPUPPETD_BIN not set or not built (run through ctest)";
  config_files files;
  const auto good = files.write("good.yaml", valid_config);
  EXPECT_EQ(ctl({"check-config", good}, {}, {}, 10s, {{}, dir_of(*bin), "/nonexistent"}).exit_code,
            ok_code);
  EXPECT_EQ(ctl({"check-config", good}, {}, {}, 10s,
                {{}, "/nonexistent", "/nonexistent::" + dir_of(*bin)})
                .exit_code,
            ok_code);
  auto r = ctl({"check-config", good}, {}, {}, 10s, {{}, "/nonexistent", "/nonexistent"});
  EXPECT_EQ(r.exit_code, unreachable);
  EXPECT_NE(r.err.find("cannot find mxpuppetd"), std::string::npos) << r.err;
  r = ctl({"check-config", good}, {}, {}, 10s, {"/nonexistent/mxpuppetd", dir_of(*bin), {}});
  EXPECT_EQ(r.exit_code, unreachable);  // MXPUPPETD_BIN wins, even when it is wrong
  EXPECT_NE(r.err.find("cannot run /nonexistent/mxpuppetd"), std::string::npos) << r.err;
}

TEST(Ctl, CheckConfigGivesUpOnAHangingCheck) {
  config_files files;
  const auto fake = files.write("mxpuppetd", "#!/bin/sh\nexec sleep 30\n");
  ::chmod(fake.c_str(), 0700);
  const auto started = std::chrono::steady_clock::now();
  const auto r = ctl({"check-config", "x.yaml"}, {}, {}, 300ms, {fake, {}, {}});
  EXPECT_EQ(r.exit_code, unreachable);
  EXPECT_NE(r.err.find("did not finish within 300ms"), std::string::npos) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

// --- the built binary, as a shell script would run it ---------------------------------

struct process_result {
  int exit_code;
  std::string err;
};

std::optional<process_result> run_binary(const std::vector<std::string>& args,
                                         const std::map<std::string, std::string>& env = {}) {
  const char* bin = std::getenv("MXPUPPETCTL_BIN");
  if (!bin || ::access(bin, X_OK) != 0) return std::nullopt;
  std::vector<std::string> argv_s{bin};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    // Only what the test passes: the socket, and check-config's MXPUPPETD_BIN.
    if (std::strncmp(*e, "MXPUPPETD_SOCKET=", 17) != 0 &&
        std::strncmp(*e, "MXPUPPETD_BIN=", 14) != 0)
      env_s.emplace_back(*e);
  }
  for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return std::nullopt;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, bin, &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (rc != 0) {
    ::close(pipe_fds[0]);
    return std::nullopt;
  }
  process_result result{-1, {}};
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof buf)) > 0)
    result.err.append(buf, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

TEST(CtlBinary, MissingSocketExits3) {
  const auto r = run_binary({"--socket", "/nonexistent/mxpuppetd.sock", "status"});
  if (!r) GTEST_SKIP() << "MXPUPPETCTL_BIN not set or not built (run through ctest)";
  EXPECT_EQ(r->exit_code, 3) << r->err;
  EXPECT_NE(r->err.find("/nonexistent/mxpuppetd.sock"), std::string::npos) << r->err;
  const auto env = run_binary({"token", "@a:x"}, {{"MXPUPPETD_SOCKET", "/nonexistent/env.sock"}});
  ASSERT_TRUE(env);
  EXPECT_EQ(env->exit_code, 3);
  EXPECT_NE(env->err.find("/nonexistent/env.sock"), std::string::npos) << env->err;
}

TEST(CtlBinary, UsageErrorsExit2) {
  const auto r = run_binary({});
  if (!r) GTEST_SKIP() << "MXPUPPETCTL_BIN not set or not built (run through ctest)";
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_EQ(run_binary({"frobnicate"})->exit_code, 2);
  EXPECT_EQ(run_binary({"token"})->exit_code, 2);
  EXPECT_EQ(run_binary({"--no-such-option"})->exit_code, 2);
  EXPECT_EQ(run_binary({"--help"})->exit_code, 0);
}

TEST(CtlBinary, CheckConfigUsesTheMxpuppetdBesideIt) {
  config_files files;
  const auto good = files.write("good.yaml", valid_config);
  const auto r = run_binary({"check-config", good});
  if (!r) GTEST_SKIP() << "MXPUPPETCTL_BIN not set or not built (run through ctest)";
  EXPECT_EQ(r->exit_code, 0) << r->err;  // the build puts mxpuppetd beside mxpuppetctl
  const auto bad = run_binary({"check-config", files.write("bad.yaml", "homeservers: {}\n")});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->exit_code, 1);
  EXPECT_NE(bad->err.find("bad.yaml:1: homeservers: at least one homeserver is required"),
            std::string::npos)
      << bad->err;
}

}  // namespace
