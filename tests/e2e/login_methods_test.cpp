// End-to-end: every login method (shared_secret, jwt in both flavors and every algorithm,
// appservice, synapse_admin) driven through the built mxpuppetd against the fake homeserver.
// Each test gets a token over the daemon's socket and checks it on the fake's whoami.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;

namespace {

constexpr const char* shared_secret = "login-methods-shared-secret";
constexpr const char* jwt_secret = "login-methods-jwt-secret-0123456789abcdef0123456789abcdef";
constexpr const char* as_token = "as_token_for_the_login_methods_test";
constexpr const char* admin_token = "syt_admin_token_for_the_login_methods_test";

bool json_is_null(const std::string& body, const char* key) {
  simdjson::dom::parser p;
  auto e = p.parse(body).get_object()[key];
  return e.error() == simdjson::SUCCESS && e.is_null();
}

std::int64_t wall_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// GET /_matrix/client/v3/account/whoami on the fake homeserver over plain HTTP/1.0:
// (status, body). Independent of the daemon's HTTP client.
std::pair<int, std::string> whoami(unsigned short port, const std::string& token) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return {0, {}};
  }
  const std::string req =
      "GET /_matrix/client/v3/account/whoami HTTP/1.0\r\nHost: 127.0.0.1\r\n"
      "Authorization: Bearer " +
      token + "\r\n\r\n";
  (void)!::write(fd, req.data(), req.size());
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
    answer.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  int status = 0;
  if (answer.size() > 12) status = std::stoi(answer.substr(9, 3));
  const auto body_at = answer.find("\r\n\r\n");
  return {status, body_at == std::string::npos ? std::string{} : answer.substr(body_at + 4)};
}

// Test keys, generated once per run with the openssl command line (RSA generation is slow).
struct key_pair {
  std::string private_pem_file, public_pem;
};

class key_store {
 public:
  const key_pair& get(const std::string& algorithm) {
    std::lock_guard lock(mu_);
    const std::string kind =
        algorithm.starts_with("RS") || algorithm.starts_with("PS") ? "rsa" : algorithm;
    if (auto it = keys_.find(kind); it != keys_.end()) return it->second;
    std::vector<std::string> args{"/usr/bin/openssl", "genpkey", "-out", dir_.file(kind + ".pem")};
    if (kind == "rsa") {
      args.insert(args.end(), {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"});
    } else if (kind == "EdDSA") {
      args.insert(args.end(), {"-algorithm", "ED25519"});
    } else {
      const std::string curve = kind == "ES256" ? "P-256" : kind == "ES384" ? "P-384" : "P-521";
      args.insert(args.end(), {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:" + curve});
    }
    const auto gen = run_program(args);
    if (gen.exit_code != 0) throw std::runtime_error("openssl genpkey failed: " + gen.output);
    const auto pub = run_program({"/usr/bin/openssl", "pkey", "-in", dir_.file(kind + ".pem"),
                                  "-pubout", "-out", dir_.file(kind + ".pub")});
    if (pub.exit_code != 0) throw std::runtime_error("openssl pkey -pubout failed: " + pub.output);
    return keys_
        .emplace(kind, key_pair{dir_.file(kind + ".pem"), read_file(dir_.file(kind + ".pub"))})
        .first->second;
  }

 private:
  std::mutex mu_;
  temp_dir dir_;
  std::map<std::string, key_pair> keys_;
};

key_store& keys() {
  static key_store store;
  return store;
}

struct login_methods : e2e_fixture {
  login_methods() : e2e_fixture{shared_secret} {
    never_logged = {shared_secret, jwt_secret, as_token, admin_token};
  }

  // Writes the config with `login_yaml` (the lines under "login:", indented six spaces).
  std::string config(const std::string& login_yaml) {
    return write_config({.listen = "  request_timeout: 10s\n",
                         .homeservers = {{.url = hs->url(),
                                          .login = login_yaml,
                                          .more = "    device_id: MXPMETHODS\n"
                                                  "    request_timeout: 5s\n"}}});
  }
  void start(fake_homeserver_options o, const std::string& login_yaml) {
    start_homeserver(std::move(o));
    config(login_yaml);
    daemon = spawn_daemon();
    ASSERT_TRUE(daemon->wait_ready()) << daemon->log();
  }

  // The daemon hands out a token for `user` that the homeserver accepts on whoami.
  std::string expect_working_token(const std::string& user, const std::string& method) {
    auto r = get_token(user);
    EXPECT_EQ(r.status, 200) << r.body << "\n" << daemon->log();
    EXPECT_EQ(json_string(r.body, "user_id"), user);
    EXPECT_EQ(json_string(r.body, "method"), method);
    const auto token = json_string(r.body, "access_token");
    EXPECT_FALSE(token.empty());
    const auto [status, body] = whoami(hs->port(), token);
    EXPECT_EQ(status, 200) << body;
    EXPECT_EQ(json_string(body, "user_id"), user);
    return token;
  }

  std::string status_body() {
    unix_http_client c{socket};
    return c.request("GET", "/v1/status").body;
  }

  void TearDown() override {
    e2e_fixture::TearDown();
    if (!daemon) return;
    EXPECT_EQ(daemon->log().find("eyJ"), std::string::npos) << "a JWT appeared in the log";
  }
};

// --- shared_secret -------------------------------------------------------------------------

TEST_F(login_methods, SharedSecret) {
  start(homeserver_options(), shared_secret_login);
  // The user exists. (One that does not is refused: daemon_test's ErrorsAreAnsweredAsDesignSays.)
  hs->register_user("@alice:localhost");
  expect_working_token("@alice:localhost", "shared_secret");
  EXPECT_NE(status_body().find(
                R"("method":"shared_secret","login_type":"com.devture.shared_secret_auth")"),
            std::string::npos);
}

// --- jwt, flavor synapse: every algorithm --------------------------------------------------

class jwt_synapse : public login_methods, public ::testing::WithParamInterface<std::string> {};

// Configures the fake and writes the daemon's key for `alg`; returns the key lines of the login.
std::string jwt_key_setup(temp_dir& dir, const std::string& alg, std::string& secret,
                          std::string& public_pem) {
  if (alg.starts_with("HS")) {
    secret = jwt_secret;
    dir.write("jwt.secret", secret + "\n");
    return "      secret_file: jwt.secret\n";
  }
  const auto& k = keys().get(alg);
  public_pem = k.public_pem;
  return "      private_key_file: " + k.private_pem_file + "\n";
}

TEST_P(jwt_synapse, TokenWorks) {
  const auto alg = GetParam();
  fake_homeserver_options o;
  o.jwt_algorithm = alg;
  o.jwt_issuer = "mxpuppetd-test";
  o.jwt_audiences = {"matrix"};
  const auto key_lines = jwt_key_setup(dir, alg, o.jwt_secret, o.jwt_public_key_pem);
  start(o, "      method: jwt\n      flavor: synapse\n      algorithm: " + alg + "\n" + key_lines +
               "      issuer: mxpuppetd-test\n      audiences: [matrix, other]\n      "
               "token_lifetime: 30s\n");
  expect_working_token("@alice:localhost", "jwt");
  EXPECT_EQ(hs->device_of_token(json_string(get_token("@alice:localhost").body, "access_token")),
            "MXPMETHODS");
  // The wire format: native type, the JWT in "token", no identifier, device members.
  const auto body = hs->last_login_body();
  EXPECT_NE(body.find(R"("type":"org.matrix.login.jwt")"), std::string::npos) << body;
  EXPECT_NE(body.find(R"("token":"eyJ)"), std::string::npos);
  EXPECT_EQ(body.find("identifier"), std::string::npos);
  EXPECT_NE(body.find(R"("device_id":"MXPMETHODS")"), std::string::npos);
  EXPECT_NE(status_body().find(R"("method":"jwt","login_type":"org.matrix.login.jwt")"),
            std::string::npos);
  // Synapse creates users it has not seen: another user works as well.
  expect_working_token("@bob_2:localhost", "jwt");
}

INSTANTIATE_TEST_SUITE_P(every_algorithm, jwt_synapse,
                         ::testing::Values("HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                                           "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                                           "EdDSA"),
                         [](const auto& info) { return info.param; });

TEST_F(login_methods, JwtSubjectClaimIsConfigurable) {
  fake_homeserver_options o;
  o.jwt_algorithm = "HS256";
  o.jwt_secret = jwt_secret;
  o.jwt_subject_claim = "username";
  dir.write("jwt.secret", std::string{jwt_secret});
  start(o,
        "      method: jwt\n      algorithm: HS256\n      secret_file: jwt.secret\n      "
        "subject_claim: username\n");
  expect_working_token("@carol:localhost", "jwt");
}

TEST_F(login_methods, JwtRejectedByTheHomeserverIs502AndTheReasonStaysInTheLog) {
  fake_homeserver_options o;
  o.jwt_algorithm = "HS256";
  o.jwt_secret = "the homeserver has another secret";
  o.jwt_issuer = "someone-else";
  dir.write("jwt.secret", std::string{jwt_secret});
  start(o, "      method: jwt\n      algorithm: HS256\n      secret_file: jwt.secret\n");
  auto r = get_token("@alice:localhost");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(json_string(r.body, "errcode"), "MXP_UPSTREAM");
  EXPECT_EQ(json_int(r.body, "upstream_status"), 403);
  EXPECT_EQ(json_string(r.body, "upstream_errcode"), "M_FORBIDDEN");
  EXPECT_EQ(r.body.find("JWT validation failed"), std::string::npos);
  EXPECT_NE(daemon->log().find("JWT validation failed: Signature verification failed"),
            std::string::npos);
}

TEST_F(login_methods, JwtKeyThatDoesNotFitTheAlgorithmStopsTheDaemonNamingTheKeyLine) {
  const auto& rsa = keys().get("RS256");
  const auto file = config("      method: jwt\n      algorithm: ES256\n      private_key_file: " +
                           rsa.private_pem_file + "\n");
  const auto r = run_mxpuppetd({"-c", file});
  EXPECT_NE(r.exit_code, 0);
  // Line 9: listen(1) unix_socket(2) request_timeout(3) homeservers(4) localhost(5) url(6) login(7)
  // method(8).
  EXPECT_NE(r.output.find(file + ":10: homeservers.localhost.login.private_key_file: "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("ES256"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("PRIVATE KEY"), std::string::npos) << r.output;
}

// --- jwt, flavor famedly ---------------------------------------------------------------------

class jwt_famedly : public login_methods, public ::testing::WithParamInterface<std::string> {};

TEST_P(jwt_famedly, TokenWorks) {
  const auto alg = GetParam();
  fake_homeserver_options o;
  o.famedly_algorithm = alg;
  const auto key_lines = jwt_key_setup(dir, alg, o.famedly_secret, o.famedly_public_key_pem);
  start(o, "      method: jwt\n      flavor: famedly\n      algorithm: " + alg + "\n" + key_lines);
  expect_working_token("@dave:localhost", "jwt");
  const auto body = hs->last_login_body();
  EXPECT_NE(body.find(R"("type":"com.famedly.login.token")"), std::string::npos) << body;
  EXPECT_NE(body.find(R"("identifier":{"type":"m.id.user","user":"dave"})"), std::string::npos)
      << body;
  EXPECT_NE(status_body().find(R"("method":"jwt","login_type":"com.famedly.login.token")"),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(some_algorithms, jwt_famedly,
                         ::testing::Values("HS256", "HS512", "RS256", "ES256", "EdDSA"),
                         [](const auto& info) { return info.param; });

TEST_F(login_methods, FamedlyRejectionIsTheGenericForbidden) {
  fake_homeserver_options o;
  o.famedly_algorithm = "HS512";
  o.famedly_secret = "not the daemon's secret";
  dir.write("jwt.secret", std::string{jwt_secret});
  start(o,
        "      method: jwt\n      flavor: famedly\n      algorithm: HS512\n      secret_file: "
        "jwt.secret\n");
  auto r = get_token("@alice:localhost");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(json_int(r.body, "upstream_status"), 403);
  EXPECT_NE(daemon->log().find("Invalid username or password"), std::string::npos);
}

// --- appservice ------------------------------------------------------------------------------

constexpr const char* registration = R"(id: login-methods-bridge
url: http://localhost:29999
as_token: as_token_for_the_login_methods_test
hs_token: hs_token_never_used
sender_localpart: bridgebot
namespaces:
  users:
    - exclusive: true
      regex: '@bridge_.*:localhost'
)";

TEST_F(login_methods, AppserviceWithRegistrationFile) {
  fake_homeserver_options o;
  o.as_token = as_token;
  dir.write("registration.yaml", registration);
  start(o, "      method: appservice\n      registration_file: registration.yaml\n");

  // Inside the namespace: registered first, then logged in with the as_token; the token works.
  ASSERT_EQ(get_token("@bridge_alice:localhost").status, 200);
  EXPECT_EQ(hs->last_authorization_header(), std::string{"Bearer "} + as_token);
  const auto token = expect_working_token("@bridge_alice:localhost", "appservice");
  EXPECT_TRUE(hs->is_registered("@bridge_alice:localhost"));
  EXPECT_EQ(hs->register_count(), 1);
  EXPECT_EQ(hs->device_of_token(token), "MXPMETHODS");
  const auto body = hs->last_login_body();
  EXPECT_NE(body.find(R"("type":"m.login.application_service")"), std::string::npos) << body;
  EXPECT_NE(body.find(R"("user":"@bridge_alice:localhost")"), std::string::npos) << body;
  EXPECT_NE(
      status_body().find(R"("method":"appservice","login_type":"m.login.application_service")"),
      std::string::npos);

  // A user who exists already: /register says M_USER_IN_USE, the login goes on.
  hs->register_user("@bridge_bob:localhost");
  expect_working_token("@bridge_bob:localhost", "appservice");
  // The registration's sender is in the namespace too.
  expect_working_token("@bridgebot:localhost", "appservice");

  // Outside the namespace: refused locally, nothing is sent.
  const auto requests_before = hs->request_log().size();
  auto r = get_token("@alice:localhost");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(json_string(r.body, "errcode"), "M_FORBIDDEN");
  // re.match semantics: anchored at the start only, so a prefix elsewhere does not count.
  r = get_token("@x_bridge_alice:localhost");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(hs->request_log().size(), requests_before);
}

TEST_F(login_methods, AppserviceWithWrongAsTokenIsAnUpstreamError) {
  fake_homeserver_options o;
  o.as_token = "the homeserver knows another as_token";
  dir.write("registration.yaml", registration);
  start(o, "      method: appservice\n      registration_file: registration.yaml\n");
  auto r = get_token("@bridge_alice:localhost");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(json_string(r.body, "errcode"), "MXP_UPSTREAM");
  EXPECT_EQ(json_int(r.body, "upstream_status"), 401);
}

TEST_F(login_methods, AppserviceWithTokenFile) {
  fake_homeserver_options o;
  o.as_token = as_token;
  dir.write("as.token", std::string{as_token} + "\n");
  start(o, "      method: appservice\n      as_token_file: as.token\n");
  expect_working_token("@anyone:localhost", "appservice");
}

// --- synapse_admin ---------------------------------------------------------------------------

TEST_F(login_methods, SynapseAdmin) {
  fake_homeserver_options o;
  o.admin_token = admin_token;
  dir.write("admin.token", std::string{admin_token} + "\n");
  start(o,
        "      method: synapse_admin\n      admin_token_file: admin.token\n      token_lifetime: "
        "2h\n");

  const auto before = wall_ms();
  auto r = get_token("@erin:localhost");
  ASSERT_EQ(r.status, 200) << r.body << daemon->log();
  EXPECT_EQ(hs->last_authorization_header(), std::string{"Bearer "} + admin_token);
  const auto token = json_string(r.body, "access_token");
  EXPECT_EQ(json_string(r.body, "method"), "synapse_admin");
  EXPECT_TRUE(json_is_null(r.body, "device_id")) << r.body;
  const auto [status, who] = whoami(hs->port(), token);
  EXPECT_EQ(status, 200) << who;
  EXPECT_EQ(json_string(who, "user_id"), "@erin:localhost");
  EXPECT_EQ(who.find("device_id"), std::string::npos) << who;  // admin-minted: no device

  // expires_at_ms is the valid_until_ms the daemon asked for (give or take the round trip).
  const auto valid_until = hs->token_valid_until_ms(token);
  ASSERT_TRUE(valid_until);
  EXPECT_GE(*valid_until, before + 2 * 3600 * 1000);
  EXPECT_LE(*valid_until, wall_ms() + 2 * 3600 * 1000);
  EXPECT_NEAR(static_cast<double>(json_int(r.body, "expires_at_ms")),
              static_cast<double>(*valid_until), 50.0);
  const auto log = hs->request_log();
  EXPECT_NE(
      std::find(log.begin(), log.end(), "POST /_synapse/admin/v1/users/%40erin%3Alocalhost/login"),
      log.end());
  EXPECT_NE(status_body().find(R"("method":"synapse_admin","login_type":"synapse_admin")"),
            std::string::npos);

  // Revocation logs out that token alone.
  const auto other = expect_working_token("@frank:localhost", "synapse_admin");
  unix_http_client c{socket};
  EXPECT_EQ(c.request("DELETE", "/v1/users/@erin:localhost/session").body, R"({"revoked":true})");
  EXPECT_FALSE(hs->token_is_live(token));
  EXPECT_TRUE(hs->token_is_live(other));

  // The admin API refuses to log the admin in as itself: an upstream refusal.
  r = get_token("@admin:localhost");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(json_int(r.body, "upstream_status"), 400);
}

TEST_F(login_methods, SynapseAdminWithWrongAdminToken) {
  fake_homeserver_options o;
  o.admin_token = admin_token;
  dir.write("admin.token", "syt_not_the_admin\n");
  start(o, "      method: synapse_admin\n      admin_token_file: admin.token\n");
  auto r = get_token("@erin:localhost");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(json_int(r.body, "upstream_status"), 401);
  EXPECT_EQ(json_string(r.body, "upstream_errcode"), "M_UNKNOWN_TOKEN");
}

}  // namespace
