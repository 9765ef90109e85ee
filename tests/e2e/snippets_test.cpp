// End-to-end: the client snippets in examples/ (shell, Python, Go, Node) against the real
// mxpuppetd and the fake homeserver. Each one, run as a bridge would run it, prints the token
// the daemon holds (the user ID percent-encoded), waits out a 429 and a 503 for their
// retry_after_ms and then gets the token, reports a rejected token through invalidate (the
// daemon logs it out at the homeserver, the next fetch logs in again), and exits 1 with the
// errcode for an error answer. go and node must be installed (scripts/install-deps.sh): a
// missing one fails the test rather than skipping it.
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/child_program.hpp"
#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"

using namespace mxp::test;
using namespace std::chrono_literals;
using std::chrono::steady_clock;

namespace {

constexpr const char* secret = "e2e-snippets-shared-secret";

using snippet_run = child_run;

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

struct Snippets : e2e_fixture, ::testing::WithParamInterface<std::string> {
  Snippets() : e2e_fixture{secret} {}

  // The command that runs this language's snippet (the Go one built first); a fatal failure
  // when its toolchain is missing.
  void prepare() {
    const auto examples = env_or_throw("MXP_SOURCE_DIR") + "/examples";
    const auto& lang = GetParam();
    if (lang == "shell") {
      for (const char* tool : {"bash", "curl"})
        ASSERT_FALSE(find_in_path(tool).empty()) << tool << " is not installed";
      command = {find_in_path("bash"), examples + "/token.sh"};
    } else if (lang == "python") {
      const auto python = find_in_path("python3");
      ASSERT_FALSE(python.empty()) << "python3 is not installed";
      command = {python, examples + "/token.py"};
    } else if (lang == "node") {
      const auto node = find_in_path("node");
      ASSERT_FALSE(node.empty()) << "node is not in PATH: install nodejs (scripts/install-deps.sh)";
      command = {node, examples + "/token.mjs"};
    } else if (lang == "go") {
      const auto go = find_in_path("go");
      ASSERT_FALSE(go.empty()) << "go is not in PATH: install golang-go (scripts/install-deps.sh)";
      // Everything go writes stays in the temp dir; the module has no dependencies, so no
      // network is needed (GOPROXY=off makes sure).
      const auto binary = dir.file("mxpuppet-token");
      const auto b = run_child(
          dir, {go, "build", "-o", binary, "."},
          {"GOCACHE=" + dir.file("gocache"), "GOPATH=" + dir.file("gopath"), "HOME=" + dir.path(),
           "GOPROXY=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "CGO_ENABLED=0"},
          "", examples + "/go");
      ASSERT_EQ(b.exit_code, 0) << "go build failed:\n" << b.out << b.err;
      command = {binary};
    } else {
      FAIL() << "unknown language " << lang;
    }
  }

  // The snippet with `args`, the socket from $MXPUPPETD_SOCKET.
  snippet_run snippet(const std::vector<std::string>& args, const std::string& input = "") {
    auto argv = command;
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_child(dir, argv, {"MXPUPPETD_SOCKET=" + socket}, input);
    // The token is the snippet's stdout and nowhere else.
    const auto token = trimmed(r.out);
    if (r.exit_code == 0 && token.size() > 8) {
      never_logged.insert(token);
      EXPECT_EQ(r.err.find(token), std::string::npos) << "the token went to stderr";
    }
    return r;
  }

  // The token the daemon holds for `user` now, through a direct GET.
  std::string daemon_token(const std::string& user) {
    const auto r = get_token(user);
    EXPECT_EQ(r.status, 200) << r.body;
    return token_of(r.body);
  }

  std::vector<std::string> command;
};

TEST_P(Snippets, FetchRetryAndInvalidateAgainstTheDaemon) {
  ASSERT_NO_FATAL_FAILURE(prepare());
  // '/', '?', '#', '%' and '+' in a (historical) localpart only arrive whole if encoded.
  const std::string alice = "@alice:localhost", odd = "@bridge/a?b#c%d+e:localhost",
                    limited = "@limited:localhost", dropped = "@dropped:localhost";
  hs->register_users({alice, odd, limited, dropped});
  // A 2 s deadline: a longer 429 pause or an open circuit is answered at once.
  ASSERT_NO_FATAL_FAILURE(start({.listen = "  request_timeout: 2s\n"}));

  // The token printed is the one the daemon holds; --socket overrides $MXPUPPETD_SOCKET.
  auto r = snippet({"--socket", socket, alice});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto first = trimmed(r.out);
  EXPECT_EQ(r.out, first + "\n");
  EXPECT_EQ(first, daemon_token(alice));
  EXPECT_EQ(hs->user_of_token(first), alice);
  r = snippet({odd});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(hs->user_of_token(trimmed(r.out)), odd);
  EXPECT_EQ(trimmed(r.out), daemon_token(odd));

  // The homeserver said M_UNKNOWN_TOKEN: the snippet reports it (read from stdin), the daemon
  // logs it out, and the next fetch is a new login.
  r = snippet({"--invalidate", alice}, first + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "true\n");
  EXPECT_FALSE(hs->token_is_live(first));
  EXPECT_TRUE(hs->live_tokens(alice).empty());
  r = snippet({alice});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto second = trimmed(r.out);
  EXPECT_NE(second, first);
  EXPECT_EQ(hs->live_tokens(alice), std::vector<std::string>{second});
  r = snippet({"--invalidate", alice}, first + "\n");  // stale: nothing happens
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "false\n");
  EXPECT_TRUE(hs->token_is_live(second));

  // Error answers other than 429/503 are not retried: exit 1, the errcode on stderr.
  const int logins = hs->login_count();
  r = snippet({"@nobody:elsewhere.test"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("404 M_NOT_FOUND"), std::string::npos) << r.err;
  r = snippet({"not-a-user-id"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("400 M_INVALID_PARAM"), std::string::npos) << r.err;
  EXPECT_EQ(hs->login_count(), logins);

  // 429: the homeserver rate-limits the login for 2.5 s, longer than the deadline; the daemon
  // answers 429 M_LIMIT_EXCEEDED with retry_after_ms, the snippet waits that long and asks again.
  hs->fail_next(1, failure::rate_limited, 2500);
  r = snippet({limited});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("429 M_LIMIT_EXCEEDED"), std::string::npos) << r.err;
  EXPECT_GE(r.elapsed, 2300ms) << "the snippet did not wait for retry_after_ms";
  EXPECT_EQ(trimmed(r.out), daemon_token(limited));
  EXPECT_EQ(hs->user_of_token(trimmed(r.out)), limited);

  // 503: every try of the login loses its connection (a reused keep-alive connection is tried
  // twice); the daemon answers 503 MXP_UNAVAILABLE with the circuit's retry_after_ms, and the
  // snippet's next request gets the token.
  hs->fail_next(4, failure::drop_connection);
  r = snippet({dropped});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("503 MXP_UNAVAILABLE"), std::string::npos) << r.err;
  EXPECT_EQ(trimmed(r.out), daemon_token(dropped));
  EXPECT_EQ(hs->user_of_token(trimmed(r.out)), dropped);
}

INSTANTIATE_TEST_SUITE_P(Languages, Snippets, ::testing::Values("shell", "python", "go", "node"),
                         [](const auto& info) { return info.param; });

}  // namespace
