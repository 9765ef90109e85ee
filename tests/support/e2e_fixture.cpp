// e2e_fixture: the shared end-to-end bench (config pieces, daemon start, log checks).
#include "support/e2e_fixture.hpp"

#include "client/percent_encoding.hpp"
#include "support/json_fields.hpp"

namespace mxp::test {

std::string homeserver_entry::yaml() const {
  std::string out = "  ";
  out += name.find(':') == std::string::npos ? name : "\"" + name + "\"";
  out += ":\n";
  if (!url.empty()) out += "    url: " + url + "\n";
  out += "    login:\n" + login + more;
  return out;
}

e2e_fixture::e2e_fixture(std::string secret) : homeserver_secret(std::move(secret)) {}

void e2e_fixture::SetUp() {
  start_homeserver(homeserver_options());
  dir.write("secret", homeserver_secret + "\n");
}

void e2e_fixture::TearDown() {
  if (!daemon) return;
  const auto log = daemon->log();
  for (const auto& s : never_logged) {
    if (s.empty()) continue;
    EXPECT_EQ(log.find(s), std::string::npos)
        << "a token or secret appeared in the daemon log: " << s;
  }
}

fake_homeserver_options e2e_fixture::homeserver_options() const {
  fake_homeserver_options o;
  o.shared_secret = homeserver_secret;
  return o;
}

void e2e_fixture::start_homeserver(fake_homeserver_options options) {
  hs.reset();  // the old one's port is free before the new one binds
  hs = std::make_unique<fake_homeserver>(std::move(options));
}

homeserver_entry e2e_fixture::default_entry() const {
  return {.name = "localhost", .url = hs->url()};
}

std::string e2e_fixture::config_yaml(const config_pieces& p) const {
  std::string out =
      "listen:\n  unix_socket: " + (p.unix_socket.empty() ? socket : p.unix_socket) + "\n";
  out += p.listen;
  out += "homeservers:\n";
  if (p.homeservers.empty())
    out += default_entry().yaml();
  else
    for (const auto& h : p.homeservers) out += h.yaml();
  out += p.sections;
  if (!p.log.empty()) out += "log:\n" + p.log;
  return out;
}

std::string e2e_fixture::write_config(const config_pieces& pieces) {
  config_file = dir.write("config.yaml", config_yaml(pieces));
  return config_file;
}

std::unique_ptr<daemon_process> e2e_fixture::spawn_daemon(const std::string& log_name,
                                                          daemon_options options) {
  return std::make_unique<daemon_process>(config_file, socket, dir.file(log_name),
                                          std::move(options));
}

std::unique_ptr<daemon_process> e2e_fixture::start_daemon(const std::string& log_name) {
  auto d = spawn_daemon(log_name);
  EXPECT_TRUE(d->wait_ready()) << d->log();
  return d;
}

void e2e_fixture::start(const config_pieces& pieces) {
  write_config(pieces);
  daemon = spawn_daemon();
  ASSERT_TRUE(daemon->wait_ready()) << daemon->log();
}

std::string e2e_fixture::token_path(const std::string& user) {
  return "/v1/users/" + mxp::client::percent_encode_path_segment(user) + "/token";
}

mxp::client::http_response e2e_fixture::get_token(mxp::client::unix_http_client& c,
                                                  const std::string& user) {
  auto r = c.request("GET", token_path(user));
  if (r.status == 200) never_logged.insert(token_of(r.body));
  return r;
}

mxp::client::http_response e2e_fixture::get_token(const std::string& user) {
  mxp::client::unix_http_client c{socket};
  return get_token(c, user);
}

run_result e2e_fixture::run_ctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{env_or_throw("MXPUPPETCTL_BIN"), "--socket", socket};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv);
}

run_result e2e_fixture::run_mxpuppetd(const std::vector<std::string>& args,
                                      std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{env_or_throw("MXPUPPETD_BIN")};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv, timeout);
}

}  // namespace mxp::test
