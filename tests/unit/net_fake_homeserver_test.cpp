// Tests of the fake homeserver itself (tests/support): Synapse-like login,
// whoami and logout semantics (users must exist, refresh-token rotation,
// rc_login), injected failures, latency and HTTPS. The
// client here is a small Beast client run on its own io_context with deadlines.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <simdjson.h>
#include <stdlib.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "support/fake_homeserver.hpp"
#include "support/test_tls.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using mxp::test::failure;
using mxp::test::fake_homeserver;
using mxp::test::fake_homeserver_options;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr const char* secret = "s3cret-for-tests";

// ------------------------------------------------------------------ client

struct request_spec {
  http::verb method = http::verb::get;
  std::string target;
  std::string body;
  std::string authorization;  // full header value, e.g. "Bearer syt_..."
};

struct response {
  boost::system::error_code ec;  // set when no (complete) answer came
  int status = 0;
  std::string body;
  std::string retry_after;
};

struct client_options {
  std::string ca_file;         // non-empty: HTTPS to "localhost", verified against this file
  std::string source_address;  // non-empty: connect from this loopback address (e.g. 127.0.0.2)
  bool system_ca = false;      // HTTPS verified against the system store instead
  std::chrono::milliseconds timeout = 5s;
};

template <typename Stream>
asio::awaitable<void> exchange(Stream& stream, std::vector<request_spec> reqs,
                               std::chrono::milliseconds timeout, std::vector<response>& out) {
  beast::flat_buffer buffer;
  for (auto& spec : reqs) {
    http::request<http::string_body> req{spec.method, spec.target, 11};
    req.set(http::field::host, "localhost");
    if (!spec.authorization.empty()) req.set(http::field::authorization, spec.authorization);
    if (spec.method == http::verb::post) {
      req.set(http::field::content_type, "application/json");
      req.body() = spec.body;
    }
    req.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(timeout);
    auto [wec, wn] = co_await http::async_write(stream, req, use_tuple);
    response r;
    if (wec) {
      r.ec = wec;
      out.push_back(r);
      co_return;
    }
    http::response<http::string_body> res;
    auto [rec, rn] = co_await http::async_read(stream, buffer, res, use_tuple);
    r.ec = rec;
    if (!rec) {
      r.status = res.result_int();
      r.body = res.body();
      r.retry_after = std::string(res[http::field::retry_after]);
    }
    out.push_back(r);
    if (rec) co_return;
  }
}

asio::awaitable<std::vector<response>> client_session(unsigned short port,
                                                      std::vector<request_spec> reqs,
                                                      client_options opts) {
  std::vector<response> out;
  beast::tcp_stream tcp_stream(co_await asio::this_coro::executor);
  tcp_stream.expires_after(opts.timeout);
  if (!opts.source_address.empty()) {  // all of 127/8 is loopback on Linux
    tcp_stream.socket().open(tcp::v4());
    tcp_stream.socket().bind(tcp::endpoint(asio::ip::make_address_v4(opts.source_address), 0));
  }
  auto [cec] = co_await tcp_stream.async_connect(
      tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port), use_tuple);
  if (cec) {
    out.push_back({cec});
    co_return out;
  }
  if (opts.ca_file.empty() && !opts.system_ca) {
    co_await exchange(tcp_stream, std::move(reqs), opts.timeout, out);
    co_return out;
  }
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  if (opts.system_ca) {
    ctx.set_default_verify_paths();
  } else {
    ctx.load_verify_file(opts.ca_file);
  }
  ctx.set_verify_mode(asio::ssl::verify_peer);
  asio::ssl::stream<beast::tcp_stream> stream(std::move(tcp_stream), ctx);
  SSL_set_tlsext_host_name(stream.native_handle(), "localhost");
  stream.set_verify_callback(asio::ssl::host_name_verification("localhost"));
  auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::client, use_tuple);
  if (hec) {
    out.push_back({hec});
    co_return out;
  }
  co_await exchange(stream, std::move(reqs), opts.timeout, out);
  co_return out;
}

// Sends `reqs` one after the other on one keep-alive connection; stops at the first error.
std::vector<response> run_requests(unsigned short port, std::vector<request_spec> reqs,
                                   client_options opts = {}) {
  asio::io_context ioc;
  std::vector<response> out;
  std::exception_ptr error;
  asio::co_spawn(ioc, client_session(port, std::move(reqs), std::move(opts)),
                 [&](std::exception_ptr e, std::vector<response> r) {
                   error = e;
                   out = std::move(r);
                 });
  ioc.run();
  if (error) std::rethrow_exception(error);
  return out;
}

response call(unsigned short port, request_spec spec, client_options opts = {}) {
  auto v = run_requests(port, {std::move(spec)}, std::move(opts));
  return v.at(0);
}

// ------------------------------------------------------------- matrix bits

std::string login_body(const std::string& type, const std::string& user,
                       const std::string& credential, const std::string& device_id = "",
                       const std::string& display_name = "") {
  const char* field = type == "m.login.password" ? "password" : "token";
  std::string b = R"({"type":")" + type + R"(","identifier":{"type":"m.id.user","user":")" + user +
                  R"("},")" + field + R"(":")" + credential + '"';
  if (!device_id.empty()) b += R"(,"device_id":")" + device_id + '"';
  if (!display_name.empty()) b += R"(,"initial_device_display_name":")" + display_name + '"';
  return b + "}";
}

request_spec login_req(const std::string& body) {
  return {http::verb::post, "/_matrix/client/v3/login", body};
}
request_spec devture_login(const std::string& user_id, const std::string& device_id = "") {
  return login_req(login_body("com.devture.shared_secret_auth", user_id,
                              mxp::test::fake_shared_secret_token(secret, user_id), device_id));
}
request_spec whoami_req(const std::string& token) {
  return {http::verb::get, "/_matrix/client/v3/account/whoami", "", "Bearer " + token};
}
request_spec logout_req(const std::string& token) {
  return {http::verb::post, "/_matrix/client/v3/logout", "{}",
          token.empty() ? "" : "Bearer " + token};
}

// A string or boolean/number field of a JSON object body, rendered as text ("" if absent).
std::string field(const std::string& body, const char* key) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (parser.parse(body).get(obj)) return "<not a JSON object>";
  simdjson::dom::element e;
  if (obj[key].get(e)) return "";
  if (e.is_string()) return std::string(e.get_string().value());
  return simdjson::minify(e);
}

fake_homeserver_options default_options() {
  fake_homeserver_options o;
  o.server_name = "example.org";
  o.shared_secret = secret;
  return o;
}

class FakeHomeserver : public ::testing::Test {
 protected:
  fake_homeserver hs{default_options()};

  std::string login_token(const std::string& user_id, const std::string& device_id = "") {
    const auto r = call(hs.port(), devture_login(user_id, device_id));
    EXPECT_EQ(r.status, 200) << r.body;
    return field(r.body, "access_token");
  }
};

// ------------------------------------------------------------------- tests

TEST(FakeSharedSecretToken, MatchesTheModulesPythonExample) {
  // hmac.new(b"secret", b"@a:example.com", hashlib.sha512).hexdigest()
  EXPECT_EQ(mxp::test::fake_shared_secret_token("secret", "@a:example.com"),
            "3cfd55bac724ab6a667ab55939687d7ecc0cd3e57da15fcaf3077ca43d377737"
            "b2756e3c964c9305b6afa459d31d392d0f4683c46f50391fb782defd27bdbbcd");
}

TEST_F(FakeHomeserver, ListsEnabledLoginFlows) {
  const auto r = call(hs.port(), {http::verb::get, "/_matrix/client/v3/login"});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            R"({"flows":[{"type":"m.login.password"},{"type":"com.devture.shared_secret_auth"}]})");
  EXPECT_EQ(hs.login_flows_count(), 1);
  EXPECT_EQ(hs.login_count(), 0);

  auto o = default_options();
  o.flow_password = false;
  fake_homeserver devture_only(o);
  EXPECT_EQ(call(devture_only.port(), {http::verb::get, "/_matrix/client/v3/login"}).body,
            R"({"flows":[{"type":"com.devture.shared_secret_auth"}]})");
}

TEST_F(FakeHomeserver, DevtureLoginGivesATokenThatWorksOnWhoami) {
  hs.register_user("@alice:example.org");
  const auto body = login_body("com.devture.shared_secret_auth", "@alice:example.org",
                               mxp::test::fake_shared_secret_token(secret, "@alice:example.org"),
                               "BRIDGEDEV", "mautrix-whatsapp");
  const auto r = call(hs.port(), login_req(body));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(field(r.body, "user_id"), "@alice:example.org");
  EXPECT_EQ(field(r.body, "device_id"), "BRIDGEDEV");
  EXPECT_EQ(field(r.body, "home_server"), "example.org");
  const auto token = field(r.body, "access_token");
  EXPECT_TRUE(token.starts_with("syt_")) << token;
  EXPECT_EQ(hs.last_login_body(), body);
  EXPECT_TRUE(hs.token_is_live(token));
  EXPECT_EQ(hs.user_of_token(token), "@alice:example.org");
  EXPECT_EQ(hs.device_of_token(token), "BRIDGEDEV");
  EXPECT_EQ(hs.device_display_name("@alice:example.org", "BRIDGEDEV"), "mautrix-whatsapp");
  EXPECT_EQ(hs.successful_login_count(), 1);
  EXPECT_EQ(hs.last_authorization_header(), "");

  const auto w = call(hs.port(), whoami_req(token));
  EXPECT_EQ(w.status, 200);
  EXPECT_EQ(w.body, R"({"user_id":"@alice:example.org","device_id":"BRIDGEDEV","is_guest":false})");
  EXPECT_EQ(hs.whoami_count(), 1);
  EXPECT_EQ(hs.last_authorization_header(), "Bearer " + token);
  EXPECT_EQ(hs.request_log(), (std::vector<std::string>{"POST /_matrix/client/v3/login",
                                                        "GET /_matrix/client/v3/account/whoami"}));
}

TEST_F(FakeHomeserver, PasswordLoginWithBareLocalpart) {
  hs.register_user("bob");  // a bare localpart is qualified with the server name
  // The HMAC is over the full user ID even when the request names a bare localpart.
  const auto r =
      call(hs.port(),
           login_req(login_body("m.login.password", "bob",
                                mxp::test::fake_shared_secret_token(secret, "@bob:example.org"))));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(field(r.body, "user_id"), "@bob:example.org");
  const auto device = field(r.body, "device_id");
  EXPECT_EQ(device.size(), 10u);
  EXPECT_TRUE(
      std::all_of(device.begin(), device.end(), [](char c) { return c >= 'A' && c <= 'Z'; }));
  const auto token = field(r.body, "access_token");
  EXPECT_EQ(token.size(), 24u);
  EXPECT_TRUE(std::all_of(token.begin() + 4, token.end(), [](char c) { return std::isalnum(c); }));
  EXPECT_EQ(call(hs.port(), whoami_req(token)).status, 200);
  EXPECT_EQ(hs.device_count("@bob:example.org"), 1);
}

TEST_F(FakeHomeserver, RefusesWhatSynapseRefuses) {
  const auto hmac = [](const std::string& u) {
    return mxp::test::fake_shared_secret_token(secret, u);
  };
  const auto check = [&](const std::string& body, int status, const std::string& errcode,
                         const std::string& error = "") {
    const auto r = call(hs.port(), login_req(body));
    EXPECT_EQ(r.status, status) << body << " -> " << r.body;
    EXPECT_EQ(field(r.body, "errcode"), errcode) << body;
    if (!error.empty()) {
      EXPECT_EQ(field(r.body, "error"), error) << body;
    }
  };
  const std::string dev = "com.devture.shared_secret_auth";
  hs.register_user("@alice:example.org");
  // Wrong secret, with both login types.
  check(login_body(dev, "@alice:example.org",
                   mxp::test::fake_shared_secret_token("other", "@alice:example.org")),
        403, "M_FORBIDDEN", "Invalid username or password");
  check(login_body("m.login.password", "@alice:example.org", "hunter2"), 403, "M_FORBIDDEN",
        "Invalid username or password");
  // A user of another server.
  check(login_body(dev, "@alice:elsewhere.org", hmac("@alice:elsewhere.org")), 403, "M_FORBIDDEN");
  // A user that does not exist: the same answer as a wrong secret.
  check(login_body(dev, "@ghost:example.org", hmac("@ghost:example.org")), 403, "M_FORBIDDEN",
        "Invalid username or password");
  check(login_body(dev, "ghost", hmac("@ghost:example.org")), 403, "M_FORBIDDEN");
  check(login_body("org.matrix.login.jwt", "@alice:example.org", "x"), 400, "M_UNKNOWN",
        "Unknown login type");
  check("not json{", 400, "M_NOT_JSON");
  check(
      R"({"type":"com.devture.shared_secret_auth","identifier":{"type":"m.id.user"},"token":"x"})",
      400, "M_INVALID_PARAM");
  EXPECT_EQ(hs.successful_login_count(), 0);
  EXPECT_EQ(hs.login_count(), 8);
  EXPECT_EQ(hs.device_count(), 0);

  auto o = default_options();
  o.flow_devture = false;
  fake_homeserver password_only(o);
  const auto r = call(password_only.port(), devture_login("@alice:example.org"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(field(r.body, "error"), "Unknown login type");
}

TEST_F(FakeHomeserver, ReloginWithTheSameDeviceKeepsTheOldTokenLive) {
  hs.register_user("@alice:example.org");
  const auto first = login_token("@alice:example.org", "DEV1");
  const auto second = login_token("@alice:example.org", "DEV1");
  EXPECT_NE(first, second);
  EXPECT_TRUE(hs.token_is_live(first));
  EXPECT_TRUE(hs.token_is_live(second));
  EXPECT_EQ(hs.device_count(), 1);
  EXPECT_EQ(hs.device_count("@alice:example.org"), 1);
  EXPECT_EQ(call(hs.port(), whoami_req(first)).status, 200);
  EXPECT_EQ(call(hs.port(), whoami_req(second)).status, 200);
}

TEST_F(FakeHomeserver, LogoutKillsEveryTokenOfTheDevice) {
  hs.register_user("@alice:example.org");
  const auto a1 = login_token("@alice:example.org", "DEV1");
  const auto a2 = login_token("@alice:example.org", "DEV1");
  const auto b = login_token("@alice:example.org", "DEV2");
  ASSERT_EQ(hs.device_count(), 2);

  const auto r = call(hs.port(), logout_req(a1));  // the older token logs the device out
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{}");
  EXPECT_FALSE(hs.token_is_live(a1));
  EXPECT_FALSE(hs.token_is_live(a2));
  EXPECT_TRUE(hs.token_is_live(b));
  EXPECT_EQ(hs.device_count(), 1);
  EXPECT_EQ(hs.logout_count(), 1);

  const auto w = call(hs.port(), whoami_req(a2));
  EXPECT_EQ(w.status, 401);
  EXPECT_EQ(w.body,
            R"({"errcode":"M_UNKNOWN_TOKEN","error":"Unknown access token","soft_logout":false})");
  EXPECT_EQ(call(hs.port(), logout_req(a2)).status, 401);
  const auto missing = call(hs.port(), logout_req(""));
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(field(missing.body, "errcode"), "M_MISSING_TOKEN");
  EXPECT_EQ(call(hs.port(), whoami_req(b)).status, 200);
}

TEST_F(FakeHomeserver, RateLimitedThenSuccess) {
  hs.register_user("@alice:example.org");
  hs.fail_next(2, failure::rate_limited, 1500);
  // fail_next only concerns POST /login.
  EXPECT_EQ(call(hs.port(), {http::verb::get, "/_matrix/client/v3/login"}).status, 200);
  for (int i = 0; i < 2; ++i) {
    const auto r = call(hs.port(), devture_login("@alice:example.org"));
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(field(r.body, "errcode"), "M_LIMIT_EXCEEDED");
    EXPECT_EQ(field(r.body, "retry_after_ms"), "1500");
    EXPECT_EQ(r.retry_after, "2");
  }
  EXPECT_EQ(call(hs.port(), devture_login("@alice:example.org")).status, 200);
  EXPECT_EQ(hs.login_count(), 3);
  EXPECT_EQ(hs.successful_login_count(), 1);
}

TEST_F(FakeHomeserver, GarbageWrongShapeAndServerError) {
  hs.register_user("@alice:example.org");
  hs.fail_next(1, failure::garbage);
  auto r = call(hs.port(), devture_login("@alice:example.org"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "not json{");

  hs.fail_next(1, failure::wrong_json_shape);
  r = call(hs.port(), devture_login("@alice:example.org"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"foo":1})");

  hs.fail_next(1, failure::server_error);
  r = call(hs.port(), devture_login("@alice:example.org"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(field(r.body, "errcode"), "M_UNKNOWN");
  EXPECT_EQ(hs.device_count(), 0);
}

TEST_F(FakeHomeserver, DropConnection) {
  hs.register_user("@alice:example.org");
  hs.fail_next(1, failure::drop_connection);
  const auto r = call(hs.port(), devture_login("@alice:example.org"));
  EXPECT_TRUE(r.ec) << r.status;
  EXPECT_NE(r.ec, beast::error::timeout);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(hs.device_count(), 0);
  EXPECT_EQ(call(hs.port(), devture_login("@alice:example.org")).status, 200);
}

TEST_F(FakeHomeserver, FailAllCoversEveryEndpointUntilCleared) {
  hs.register_user("@alice:example.org");
  const auto token = login_token("@alice:example.org");
  hs.fail_all(failure::server_error);
  EXPECT_EQ(call(hs.port(), whoami_req(token)).status, 500);
  EXPECT_EQ(call(hs.port(), {http::verb::get, "/.well-known/matrix/client"}).status, 500);
  EXPECT_EQ(call(hs.port(), logout_req(token)).status, 500);
  EXPECT_TRUE(hs.token_is_live(token));
  hs.fail_all(failure::none);
  EXPECT_EQ(call(hs.port(), whoami_req(token)).status, 200);
}

TEST(FakeHomeserverLifetime, HangBlocksNoOtherConnectionAndDestructionIsPrompt) {
  auto hs = std::make_unique<fake_homeserver>(default_options());
  hs->register_user("@alice:example.org");
  hs->fail_next(1, failure::hang);
  const auto port = hs->port();
  auto hung = std::async(std::launch::async, [port] {
    return call(port, devture_login("@alice:example.org"), {.timeout = 20s});
  });
  // Wait until the hung request has arrived, then use the server meanwhile.
  for (int i = 0; i < 500 && hs->login_count() == 0; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(hs->login_count(), 1);
  const auto r = call(port, devture_login("@alice:example.org"), {.timeout = 2s});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(hung.wait_for(100ms), std::future_status::timeout);

  const auto start = std::chrono::steady_clock::now();
  hs.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  ASSERT_EQ(hung.wait_for(2s), std::future_status::ready);  // the client saw the socket close
  const auto h = hung.get();
  EXPECT_TRUE(h.ec);
  EXPECT_NE(h.ec, beast::error::timeout);
}

TEST_F(FakeHomeserver, LatencyIsAsynchronousAndLoginsOverlap) {
  hs.set_latency(300ms);
  hs.register_users(
      {"@user0:example.org", "@user1:example.org", "@user2:example.org", "@user3:example.org"});
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::future<response>> logins;
  for (int i = 0; i < 4; ++i) {
    logins.push_back(std::async(std::launch::async, [this, i] {
      return call(hs.port(), devture_login("@user" + std::to_string(i) + ":example.org"));
    }));
  }
  for (auto& f : logins) EXPECT_EQ(f.get().status, 200);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 1100ms);  // not 4 x 300 ms one after the other
  EXPECT_EQ(hs.max_concurrent_logins_seen(), 4);
  EXPECT_EQ(hs.device_count(), 4);
}

TEST_F(FakeHomeserver, KeepAliveServesSeveralRequestsOnOneConnection) {
  hs.register_user("@alice:example.org");
  const auto token = login_token("@alice:example.org");
  const auto rs = run_requests(
      hs.port(),
      {whoami_req(token), {http::verb::get, "/_matrix/client/v3/login"}, whoami_req(token)});
  ASSERT_EQ(rs.size(), 3u);
  for (const auto& r : rs) EXPECT_EQ(r.status, 200) << r.ec.message();
  EXPECT_EQ(hs.whoami_count(), 2);
}

TEST_F(FakeHomeserver, WellKnownUnknownPathsAndLimits) {
  const auto wk = call(hs.port(), {http::verb::get, "/.well-known/matrix/client"});
  EXPECT_EQ(wk.status, 200);
  EXPECT_EQ(wk.body, R"({"m.homeserver":{"base_url":")" + hs.url() + R"("}})");
  EXPECT_EQ(hs.url(), "http://127.0.0.1:" + std::to_string(hs.port()));

  const auto unknown = call(hs.port(), {http::verb::get, "/_matrix/client/v3/capabilities"});
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.body, R"({"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"})");
  EXPECT_EQ(call(hs.port(), {http::verb::get, "/_matrix/client/v3/logout"}).status, 405);

  const auto big = call(hs.port(), login_req(std::string(100 * 1024, ' ')));
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(hs.login_count(), 1);
}

// ------------------------------------------- users must exist (DESIGN.md)

std::string hmac_of(const std::string& user_id) {
  return mxp::test::fake_shared_secret_token(secret, user_id);
}
const std::string devture = "com.devture.shared_secret_auth";

TEST_F(FakeHomeserver, SharedSecretLoginForAUserThatDoesNotExistIsRefusedLikeAWrongSecret) {
  hs.register_user("@alice:example.org");
  const auto wrong = call(
      hs.port(),
      login_req(login_body(devture, "@alice:example.org",
                           mxp::test::fake_shared_secret_token("other", "@alice:example.org"))));
  EXPECT_EQ(wrong.status, 403);
  EXPECT_EQ(wrong.body, R"({"errcode":"M_FORBIDDEN","error":"Invalid username or password"})");
  for (const std::string& type : {devture, std::string{"m.login.password"}}) {
    const auto r =
        call(hs.port(), login_req(login_body(type, "@nobody:example.org",
                                             hmac_of("@nobody:example.org"))));  // a valid HMAC
    EXPECT_EQ(r.status, 403) << type;
    EXPECT_EQ(r.body, wrong.body) << type;
  }
  EXPECT_FALSE(hs.is_registered("@nobody:example.org"));
  EXPECT_EQ(hs.successful_login_count(), 0);
  EXPECT_EQ(hs.device_count(), 0);

  hs.register_user("nobody");  // a bare localpart is qualified with the server name
  EXPECT_TRUE(hs.is_registered("@nobody:example.org"));
  for (const std::string& type : {devture, std::string{"m.login.password"}}) {
    const auto r =
        call(hs.port(),
             login_req(login_body(type, "@nobody:example.org", hmac_of("@nobody:example.org"))));
    EXPECT_EQ(r.status, 200) << type << ": " << r.body;
    EXPECT_EQ(field(r.body, "user_id"), "@nobody:example.org");
  }
  EXPECT_EQ(hs.successful_login_count(), 2);

  // add_nonexistent_user takes a registration back.
  hs.add_nonexistent_user("@nobody:example.org");
  EXPECT_FALSE(hs.is_registered("@nobody:example.org"));
  const auto gone = call(hs.port(), devture_login("@nobody:example.org"));
  EXPECT_EQ(gone.status, 403);
  EXPECT_EQ(gone.body, wrong.body);
}

// An HS256 JWT over `payload`, built here without lib/credentials.
std::string hs256_jwt(const std::string& key, const std::string& payload) {
  const auto b64url = [](const std::string& in) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    unsigned buf = 0;
    int bits = 0;
    for (unsigned char c : in) {
      buf = (buf << 8) | c;
      bits += 8;
      while (bits >= 6) {
        bits -= 6;
        out += alphabet[(buf >> bits) & 63];
      }
    }
    if (bits > 0) out += alphabet[(buf << (6 - bits)) & 63];
    return out;
  };
  const std::string input = b64url(R"({"alg":"HS256","typ":"JWT"})") + "." + b64url(payload);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return input + "." + b64url(std::string(reinterpret_cast<const char*>(mac), len));
}

TEST(FakeHomeserverUsers, AppserviceRegistrationAndJwtLoginsCreateUsers) {
  auto o = default_options();
  o.as_token = "as-token-for-tests";
  o.jwt_algorithm = "HS256";
  o.jwt_secret = "jwt-key-for-tests";
  fake_homeserver hs(o);
  const auto register_req = [](const std::string& localpart) {
    return request_spec{
        http::verb::post, "/_matrix/client/v3/register",
        R"({"type":"m.login.application_service","username":")" + localpart + R"("})",
        "Bearer as-token-for-tests"};
  };
  EXPECT_EQ(call(hs.port(), devture_login("@bridged:example.org")).status, 403);
  EXPECT_EQ(call(hs.port(), register_req("bridged")).status, 200);
  EXPECT_EQ(call(hs.port(), devture_login("@bridged:example.org")).status, 200);
  // One set of users: one the test registered is in use for POST /register too.
  hs.register_user("@known:example.org");
  const auto in_use = call(hs.port(), register_req("known"));
  EXPECT_EQ(in_use.status, 400);
  EXPECT_EQ(field(in_use.body, "errcode"), "M_USER_IN_USE");

  // A native JWT login creates its user; shared-secret logins find it afterwards.
  EXPECT_EQ(call(hs.port(), devture_login("@jay:example.org")).status, 403);
  const auto jwt =
      call(hs.port(), login_req(R"({"type":"org.matrix.login.jwt","token":")" +
                                hs256_jwt("jwt-key-for-tests", R"({"sub":"jay"})") + R"("})"));
  ASSERT_EQ(jwt.status, 200) << jwt.body;
  EXPECT_TRUE(hs.is_registered("@jay:example.org"));
  EXPECT_EQ(call(hs.port(), devture_login("@jay:example.org")).status, 200);
}

TEST(FakeHomeserverUsers, AutoRegisterCreatesUsersWithAValidHmacOnly) {
  auto o = default_options();
  o.auto_register = true;
  fake_homeserver hs(o);
  const auto wrong = call(hs.port(), login_req(login_body(devture, "@new:example.org", "00ff")));
  EXPECT_EQ(wrong.status, 403);
  EXPECT_FALSE(hs.is_registered("@new:example.org"));
  EXPECT_EQ(call(hs.port(), devture_login("@new:example.org")).status, 200);
  EXPECT_TRUE(hs.is_registered("@new:example.org"));
  hs.add_nonexistent_user("@gone:example.org");  // stronger than auto_register
  EXPECT_EQ(call(hs.port(), devture_login("@gone:example.org")).status, 403);
  EXPECT_EQ(hs.successful_login_count(), 1);
}

// ------------------------------------------------ refresh-token rotation

fake_homeserver_options refresh_options() {
  auto o = default_options();
  o.refresh_access_lifetime_ms = 60'000;
  return o;
}

struct token_pair {
  std::string access, refresh;
};

token_pair refreshable_login(fake_homeserver& hs, const std::string& user_id) {
  auto body = login_body(devture, user_id, hmac_of(user_id), "RDEV");
  body.pop_back();
  body += R"(,"refresh_token":true})";
  const auto r = call(hs.port(), login_req(body));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(field(r.body, "expires_in_ms"), "60000");
  return {field(r.body, "access_token"), field(r.body, "refresh_token")};
}

response refresh_call(fake_homeserver& hs, const std::string& refresh_token) {
  return call(hs.port(), {http::verb::post, "/_matrix/client/v1/refresh",
                          R"({"refresh_token":")" + refresh_token + R"("})"});
}

token_pair pair_of(const response& r) {
  EXPECT_EQ(r.status, 200) << r.body;
  return {field(r.body, "access_token"), field(r.body, "refresh_token")};
}

constexpr const char* does_not_exist =
    R"({"errcode":"M_UNKNOWN_TOKEN","error":"refresh token does not exist","soft_logout":false})";
constexpr const char* not_valid_anymore =
    R"({"errcode":"M_FORBIDDEN","error":"refresh token isn't valid anymore"})";

TEST(FakeHomeserverRefresh, AReplacedRefreshTokenIsRefusedOnceTheNewAccessTokenWasUsed) {
  fake_homeserver hs(refresh_options());
  hs.register_user("@alice:example.org");
  const auto t0 = refreshable_login(hs, "@alice:example.org");
  ASSERT_TRUE(t0.refresh.starts_with("syr_")) << t0.refresh;
  const auto t1 = pair_of(refresh_call(hs, t0.refresh));
  EXPECT_NE(t1.access, t0.access);
  EXPECT_NE(t1.refresh, t0.refresh);

  // t1 was never used: Synapse still takes t0's refresh token, and discards t1 (both tokens).
  const auto t2 = pair_of(refresh_call(hs, t0.refresh));
  EXPECT_FALSE(hs.token_is_live(t1.access));
  EXPECT_EQ(refresh_call(hs, t1.refresh).body, does_not_exist);
  EXPECT_TRUE(hs.token_is_live(t0.access));  // an old access token lives until its own expiry

  // t2's access token is used: t0's refresh token is done for good.
  EXPECT_EQ(call(hs.port(), whoami_req(t2.access)).status, 200);
  const auto refused = refresh_call(hs, t0.refresh);
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.body, not_valid_anymore);
  EXPECT_TRUE(hs.token_is_live(t2.access));  // the refusal took nothing away
  const auto t3 = pair_of(refresh_call(hs, t2.refresh));
  EXPECT_EQ(call(hs.port(), whoami_req(t3.access)).status, 200);
  EXPECT_EQ(hs.device_count("@alice:example.org"), 1);

  const auto unknown = refresh_call(hs, "syr_neverissued");
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(unknown.body, does_not_exist);
  // A logout deletes the device with its refresh tokens.
  EXPECT_EQ(call(hs.port(), logout_req(t3.access)).status, 200);
  EXPECT_EQ(refresh_call(hs, t3.refresh).body, does_not_exist);
  EXPECT_EQ(hs.refresh_count(), 7);
}

TEST(FakeHomeserverRefresh, AReplacedRefreshTokenIsRefusedOnceTheNewOneWasRefreshed) {
  fake_homeserver hs(refresh_options());
  hs.register_user("@alice:example.org");
  const auto t0 = refreshable_login(hs, "@alice:example.org");
  const auto t1 = pair_of(refresh_call(hs, t0.refresh));
  const auto t2 = pair_of(refresh_call(hs, t1.refresh));  // t1's access token never used
  const auto refused = refresh_call(hs, t0.refresh);
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.body, not_valid_anymore);
  EXPECT_TRUE(hs.token_is_live(t1.access));
  EXPECT_TRUE(hs.token_is_live(t2.access));
  EXPECT_EQ(refresh_call(hs, t2.refresh).status, 200);
}

// ------------------------------------------------------------- rc_login

// Checks that `r` is rc_login's 429 as Synapse sends it; returns its retry_after_ms (-1 if not).
long limit_exceeded_wait(const response& r) {
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(r.retry_after, "") << "Synapse sends no Retry-After header";
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (parser.parse(r.body).get(obj)) return -1;
  EXPECT_EQ(obj.size(), 3u) << r.body;
  std::string_view errcode, error;
  std::int64_t wait = -1;
  EXPECT_FALSE(obj["errcode"].get(errcode)) << r.body;
  EXPECT_FALSE(obj["error"].get(error)) << r.body;
  EXPECT_FALSE(obj["retry_after_ms"].get(wait)) << r.body;
  EXPECT_EQ(errcode, "M_LIMIT_EXCEEDED");
  EXPECT_EQ(error, "Too Many Requests");
  return static_cast<long>(wait);
}

TEST(FakeHomeserverRcLogin, OffByDefault) {
  fake_homeserver hs(default_options());
  hs.register_users({"@u0:example.org", "@u1:example.org"});
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(call(hs.port(), devture_login("@u" + std::to_string(i % 2) + ":example.org")).status,
              200);
  }
  EXPECT_EQ(hs.rate_limited_count(), 0);
}

TEST(FakeHomeserverRcLogin, PerAddressWithSynapsesDefaultsCountsEveryLoginFromTheAddress) {
  auto o = default_options();
  o.rc_login_address = mxp::test::synapse_rc_login;  // 0.003/s, burst 5
  fake_homeserver hs(o);
  for (int i = 0; i < 6; ++i) hs.register_user("@u" + std::to_string(i) + ":example.org");
  // Five attempts from 127.0.0.1, a refused one among them: each takes from the bucket.
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(call(hs.port(), devture_login("@u" + std::to_string(i) + ":example.org")).status,
              200);
  EXPECT_EQ(call(hs.port(), login_req(login_body(devture, "@u4:example.org", "bad"))).status, 403);
  const auto limited = call(hs.port(), devture_login("@u4:example.org"));
  const long wait = limit_exceeded_wait(limited);
  // The bucket has room again after 1 / 0.003 s = 333,333 ms, less the time the test took.
  EXPECT_LE(wait, 333'334);
  EXPECT_GT(wait, 323'000);
  EXPECT_EQ(hs.rate_limited_count(), 1);
  EXPECT_EQ(hs.successful_login_count(), 4);
  EXPECT_EQ(hs.login_count(), 6);

  // Another address has a bucket of its own; other endpoints are not limited.
  const auto other =
      call(hs.port(), devture_login("@u5:example.org"), {.source_address = "127.0.0.2"});
  EXPECT_EQ(other.status, 200) << other.body;
  EXPECT_EQ(call(hs.port(), {http::verb::get, "/_matrix/client/v3/login"}).status, 200);
  EXPECT_EQ(call(hs.port(), whoami_req(field(other.body, "access_token"))).status, 200);

  hs.advance_rate_limit_clock(std::chrono::milliseconds{wait - 3'000});
  const long rest = limit_exceeded_wait(call(hs.port(), devture_login("@u4:example.org")));
  EXPECT_GT(rest, 0);
  EXPECT_LE(rest, 3'000);
  hs.advance_rate_limit_clock(std::chrono::milliseconds{rest + 1});
  EXPECT_EQ(call(hs.port(), devture_login("@u4:example.org")).status, 200);
  // That was the one token that came back.
  EXPECT_GT(limit_exceeded_wait(call(hs.port(), devture_login("@u4:example.org"))), 300'000);
  EXPECT_EQ(hs.rate_limited_count(), 3);
}

TEST(FakeHomeserverRcLogin, PerAccountCountsOnlyLoginsWhoseCredentialsPassed) {
  auto o = default_options();
  o.rc_login_account = {1.0, 2};
  fake_homeserver hs(o);
  hs.register_users({"@alice:example.org", "@bob:example.org"});
  EXPECT_EQ(call(hs.port(), devture_login("@alice:example.org")).status, 200);
  EXPECT_EQ(call(hs.port(), devture_login("@alice:example.org")).status, 200);
  // The credentials are checked before the account's bucket: a wrong secret is still 403.
  EXPECT_EQ(call(hs.port(), login_req(login_body(devture, "@alice:example.org", "bad"))).status,
            403);
  const long wait = limit_exceeded_wait(call(hs.port(), devture_login("@alice:example.org")));
  EXPECT_GT(wait, 0);
  EXPECT_LE(wait, 1'000);
  EXPECT_EQ(call(hs.port(), devture_login("@bob:example.org")).status, 200);  // his own bucket
  // Synapse keys the bucket by the lowercased user ID.
  hs.register_user("@ALICE:example.org");
  EXPECT_GT(limit_exceeded_wait(call(hs.port(), devture_login("@ALICE:example.org"))), 0);
  hs.advance_rate_limit_clock(std::chrono::milliseconds{wait + 1});
  EXPECT_EQ(call(hs.port(), devture_login("@alice:example.org")).status, 200);
  EXPECT_EQ(hs.successful_login_count(), 4);
  EXPECT_EQ(hs.rate_limited_count(), 2);
}

TEST(FakeHomeserverRcLogin, AppserviceLoginsAreLimitedUnlessTheAppserviceIsNot) {
  for (const bool limited : {true, false}) {
    auto o = default_options();
    o.as_token = "as-token-for-tests";
    o.rc_login_address = {0.003, 2};
    o.appservice_rate_limited = limited;
    fake_homeserver hs(o);
    hs.register_user("@bridged:example.org");
    const request_spec login{
        http::verb::post, "/_matrix/client/v3/login",
        R"({"type":"m.login.application_service","identifier":{"type":"m.id.user","user":"@bridged:example.org"}})",
        "Bearer as-token-for-tests"};
    std::vector<int> statuses;
    for (int i = 0; i < 3; ++i) statuses.push_back(call(hs.port(), login).status);
    const std::vector<int> expected =
        limited ? std::vector<int>{200, 200, 429} : std::vector<int>{200, 200, 200};
    EXPECT_EQ(statuses, expected);
  }
}

TEST(FakeHomeserverTls, ServesHttpsWithTheSelfSignedCert) {
  std::string dir_template =
      (std::filesystem::temp_directory_path() / "mxp-fakehs-tls-XXXXXX").string();
  ASSERT_NE(mkdtemp(dir_template.data()), nullptr);
  const std::string dir = dir_template;
  const auto cert = mxp::test::make_self_signed_cert(dir);
  EXPECT_EQ(cert.ca_file, cert.cert_file);

  auto o = default_options();
  o.tls_cert_file = cert.cert_file;
  o.tls_key_file = cert.key_file;
  {
    fake_homeserver hs(o);
    hs.register_user("@alice:example.org");
    EXPECT_EQ(hs.url(), "https://localhost:" + std::to_string(hs.port()));
    const client_options tls{.ca_file = cert.ca_file};
    const auto login = call(hs.port(), devture_login("@alice:example.org", "TLSDEV"), tls);
    ASSERT_EQ(login.status, 200) << login.ec.message();
    const auto token = field(login.body, "access_token");
    const auto rs = run_requests(hs.port(), {whoami_req(token), logout_req(token)}, tls);
    ASSERT_EQ(rs.size(), 2u);
    EXPECT_EQ(rs[0].status, 200);
    EXPECT_EQ(field(rs[0].body, "device_id"), "TLSDEV");
    EXPECT_EQ(rs[1].status, 200);
    EXPECT_FALSE(hs.token_is_live(token));

    // The certificate is really checked: without it as a trust anchor the handshake fails.
    const auto untrusted = call(hs.port(), whoami_req(token), {.system_ca = true});
    EXPECT_TRUE(untrusted.ec);
    EXPECT_EQ(untrusted.status, 0);
    // And plain HTTP to the HTTPS port gets no answer.
    EXPECT_EQ(call(hs.port(), whoami_req(token), {.timeout = 2s}).status, 0);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
