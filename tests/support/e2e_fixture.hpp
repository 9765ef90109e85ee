// e2e_fixture: the bench every end-to-end test shares. A temp dir, a fake homeserver that
// takes a shared secret (its secret file written), a config.yaml written from overridable
// pieces, the real mxpuppetd started on it and reached over its Unix socket, and at the end a
// check that nothing the test put in `never_logged` (tokens, secrets) reached the daemon's log.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "client/unix_http_client.hpp"
#include "support/daemon_process.hpp"
#include "support/fake_homeserver.hpp"

namespace mxp::test {

// The login lines of a homeserver entry (under `login:`, indented six spaces) for a
// shared-secret login with the fixture's secret file.
inline constexpr const char* shared_secret_login =
    "      method: shared_secret\n      secret_file: secret\n";

// One entry under `homeservers:`.
struct homeserver_entry {
  std::string name = "localhost";           // quoted when it holds a ':' ("localhost:8448")
  std::string url;                          // empty: no url line (discovered through .well-known)
  std::string login = shared_secret_login;  // lines under `login:`, indented six spaces
  std::string more;                         // further lines of the entry, indented four spaces
  std::string yaml() const;
};

// The pieces of config.yaml, written in this order:
//   listen:        unix_socket, then `listen` (lines indented two spaces)
//   homeservers:   every entry of `homeservers` (none: one entry for the fixture's homeserver)
//   `sections`     further top-level sections as they are (clients:, store:, sessions:, ...)
//   log:           `log` (lines indented two spaces); an empty `log` leaves the section out
struct config_pieces {
  std::string unix_socket;  // empty: the fixture's socket
  std::string listen;
  std::vector<homeserver_entry> homeservers;
  std::string sections;
  std::string log = "  level: debug\n";
};

class e2e_fixture : public ::testing::Test {
 protected:
  // `secret`: the fake homeserver's shared secret, written to the file "secret" in the temp dir.
  explicit e2e_fixture(std::string secret = "e2e-shared-secret");

  // Starts the fake homeserver (homeserver_options()) and writes the secret file.
  void SetUp() override;
  // When a daemon ran: none of never_logged (empty entries skipped) is in its log.
  void TearDown() override;

  // Options of a fake homeserver that takes the fixture's shared secret.
  fake_homeserver_options homeserver_options() const;
  // Replaces the fake homeserver with one started with `options`.
  void start_homeserver(fake_homeserver_options options);

  // The fixture homeserver's entry: localhost, its url, the shared-secret login.
  homeserver_entry default_entry() const;
  std::string config_yaml(const config_pieces& pieces) const;
  // Writes config.yaml from `pieces`; remembers and returns its path (config_file).
  std::string write_config(const config_pieces& pieces = {});

  // Starts mxpuppetd on config_file, logging to dir/log_name, without waiting for it.
  std::unique_ptr<daemon_process> spawn_daemon(const std::string& log_name = "daemon.log",
                                               daemon_options options = {});
  // spawn_daemon, then expects it ready (a non-fatal failure if it is not).
  std::unique_ptr<daemon_process> start_daemon(const std::string& log_name = "daemon.log");
  // write_config(pieces), then `daemon` started on it; a fatal failure if it is not ready (a
  // test body that must stop there wraps the call in ASSERT_NO_FATAL_FAILURE).
  void start(const config_pieces& pieces = {});

  // "/v1/users/<user, percent-encoded>/token".
  static std::string token_path(const std::string& user);
  // GET token_path(user) on `c` (or on a new connection); a 200's token goes to never_logged.
  mxp::client::http_response get_token(mxp::client::unix_http_client& c, const std::string& user);
  mxp::client::http_response get_token(const std::string& user);

  // $MXPUPPETCTL_BIN --socket <socket> args...
  run_result run_ctl(const std::vector<std::string>& args) const;
  // $MXPUPPETD_BIN args...
  static run_result run_mxpuppetd(const std::vector<std::string>& args,
                                  std::chrono::milliseconds timeout = std::chrono::seconds{30});

  temp_dir dir;
  std::string homeserver_secret;  // the shared secret of homeserver_options()
  std::string socket = dir.file("mxpuppetd.sock");
  std::string config_file = dir.file("config.yaml");
  std::unique_ptr<fake_homeserver> hs;
  std::unique_ptr<daemon_process> daemon;
  std::set<std::string> never_logged;
};

}  // namespace mxp::test
