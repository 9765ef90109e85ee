// daemon: the running mxpuppetd assembled from a config — session store, metrics, session pool,
// HTTP API, the Unix (and optional TCP) server — with start, reload and shutdown. main() only
// parses arguments, loads the config, builds this, runs the io_context and handles signals.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <string>

#include "api/api_metrics.hpp"
#include "api/http_api.hpp"
#include "api/tcp_server.hpp"
#include "api/unix_server.hpp"
#include "config/config.hpp"
#include "gateway/gateway_server.hpp"
#include "matrix/rest_backend.hpp"
#include "sessions/session_pool.hpp"
#include "store/session_store.hpp"

namespace mxp::app {

// Completion handler for top-level coroutines: an escaping exception is logged, never swallowed.
struct log_on_failure {
  const char* task;
  void operator()(std::exception_ptr ep) const;
};

// spdlog's default logger on stderr, in the configured format and level.
void configure_logging(const config::log_config& log);

class daemon {
 public:
  // Builds every part on `executor` (one io_context thread runs them all). Sessions of the last
  // run come back from the store before the socket opens. `adopt_fd`: a listening socket from
  // systemd (-1: bind listen.unix_socket). Throws std::exception when a part cannot be built.
  daemon(boost::asio::any_io_executor executor, config::daemon_config config, int adopt_fd = -1);
  ~daemon();
  daemon(const daemon&) = delete;
  daemon& operator=(const daemon&) = delete;

  // Spawns the servers and the pool's maintenance and marks the API ready.
  void start();
  // SIGHUP: re-reads the config file and applies what changed (app/reload.hpp).
  void reload();
  // SIGTERM: within shutdown_grace, no new connections; waiting callers answered 503 at once and
  // homeserver requests in flight cancelled (pool), revoke_on_shutdown logouts in what is left;
  // then the connections, busy ones included, are closed by the deadline.
  boost::asio::awaitable<void> shutdown();

  const config::daemon_config& config() const noexcept { return config_; }
  // "N sessions: A active, L logging in, R revoking", for systemd's STATUS=.
  std::string status() const;

 private:
  boost::asio::any_io_executor executor_;
  config::daemon_config config_;
  std::unique_ptr<store::session_store> store_;
  // Before the pool: the rest_backend clients' nonce books are served by these listeners.
  std::unique_ptr<matrix::rest_backends> backends_;
  // Declared before the pool: the pool reports to it until the pool is gone.
  api::api_metrics metrics_;
  std::unique_ptr<sessions::session_pool> pool_;
  std::unique_ptr<api::http_api> api_;
  std::unique_ptr<api::unix_server> server_;
  std::unique_ptr<api::tcp_server> tcp_server_;       // listen.tcp: loopback, API keys only
  std::unique_ptr<gateway::gateway_server> gateway_;  // gateway: the bridge gateway, when set
};

}  // namespace mxp::app
