// mxpuppetd: parse arguments, load the config, build the pool and the API server,
// run the io_context on one thread, stop cleanly on SIGTERM/SIGINT.
#include <systemd/sd-daemon.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "api/api_metrics.hpp"
#include "api/http_api.hpp"
#include "api/tcp_server.hpp"
#include "api/unix_server.hpp"
#include "config/config.hpp"
#include "config/reload_plan.hpp"
#include "core/log_format.hpp"
#include "matrix/homeserver_client.hpp"
#include "sd_notifier.hpp"
#include "sessions/session_pool.hpp"

namespace asio = boost::asio;
using std::chrono::steady_clock;

namespace {

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: mxpuppetd -c CONFIG [--check-config]\n"
               "  -c, --config FILE   YAML configuration (default /etc/mxpuppetd/config.yaml)\n"
               "      --check-config  validate the configuration and exit (0 valid, 2 invalid)\n"
               "      --version       print the version\n");
}

// Completion handler for top-level coroutines: an escaping exception is logged, never swallowed.
auto log_on_failure(const char* task) {
  return [task](std::exception_ptr ep) {
    if (!ep) return;
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      spdlog::critical("{} failed: {}", task, e.what());
    }
  };
}

// The session pool's options from the `sessions:` section.
mxp::sessions::pool_options pool_options_from(const mxp::config::daemon_config& config,
                                              mxp::store::session_store* store,
                                              mxp::sessions::pool_observer* observer) {
  const auto& s = config.sessions;
  mxp::sessions::pool_options o;
  o.max_sessions = s.max;
  o.idle_timeout = s.idle_timeout;
  o.revoke_on_evict = s.revoke_on_evict;
  o.store = store;
  o.observer = observer;
  o.renewal.refresh_margin_ms = s.refresh_margin.count();
  o.renewal.validate_after_ms = s.validate_after ? s.validate_after->count() : 0;
  o.background_refresh = s.refresh == mxp::config::refresh_policy::background;
  return o;
}

// SIGHUP: re-reads the config and applies what can change while running. A config with any
// error changes nothing. Homeservers are added, changed (new client, sessions kept) or removed
// (sessions evicted); `clients:`, session limits and the log level take effect at once;
// listen/store changes need a restart and say so.
void reload(const std::string& path, mxp::config::daemon_config& current,
            mxp::sessions::session_pool& pool, mxp::api::http_api& api,
            const asio::any_io_executor& executor) {
  auto loaded = mxp::config::load_config_file(path);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) spdlog::error("reload: {}", e);
    spdlog::error("reload rejected ({} error(s)): the running configuration stays in force",
                  loaded.errors.size());
    return;
  }
  for (const auto& w : loaded.warnings) spdlog::warn("reload: {}", w);
  auto& next = *loaded.config;
  // Every new client is built before anything changes: a key that does not fit rejects the whole
  // reload.
  std::map<std::string, mxp::sessions::homeserver_entry> replacements;
  try {
    for (const auto& [name, hs] : next.homeservers) {
      const auto old = current.homeservers.find(name);
      if (old != current.homeservers.end() && mxp::config::same_homeserver(old->second, hs))
        continue;
      replacements.emplace(
          name, mxp::sessions::homeserver_entry{mxp::matrix::make_homeserver_client(executor, hs),
                                                hs.max_concurrent_logins});
    }
  } catch (const std::exception& e) {
    spdlog::error("reload rejected: {}: the running configuration stays in force", e.what());
    return;
  }
  for (const auto& [name, _] : current.homeservers) {
    if (next.homeservers.contains(name)) continue;
    const auto n = pool.remove_homeserver(name);
    spdlog::info("reload: homeserver {} removed ({} sessions evicted)", name, n);
  }
  for (auto& [name, entry] : replacements) {
    const bool added = !current.homeservers.contains(name);
    pool.put_homeserver(name, std::move(entry));
    spdlog::info("reload: homeserver {} {}", name,
                 added ? "added" : "changed (its sessions are kept)");
  }
  const auto options = pool_options_from(next, nullptr, nullptr);
  pool.set_limits(options.max_sessions, options.idle_timeout, options.revoke_on_evict,
                  options.renewal, options.background_refresh);
  api.set_access_policy(std::make_shared<const mxp::api::access_policy>(next.clients));
  spdlog::set_level(spdlog::level::from_str(next.log.level));
  if (next.listen.unix_socket != current.listen.unix_socket ||
      next.listen.socket_mode != current.listen.socket_mode ||
      next.listen.tcp != current.listen.tcp || next.store.path != current.store.path ||
      next.log.format != current.log.format)
    spdlog::warn("reload: listen, store and log.format changes take effect at the next restart");
  next.listen = current.listen;  // what is actually in force
  next.store = current.store;
  next.log.format = current.log.format;
  current = std::move(next);
  spdlog::info("reload: configuration {} applied ({} homeserver(s))", path,
               current.homeservers.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "/etc/mxpuppetd/config.yaml";
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "-c" || arg == "--config") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg == "--check-config") {
      check_only = true;
    } else if (arg == "--version") {
      std::printf("mxpuppetd %s\n", MXP_VERSION);
      return 0;
    } else if (arg == "-h" || arg == "--help") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "mxpuppetd: unknown argument '%s'\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }

  auto loaded = mxp::config::load_config_file(config_path);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.c_str());
    std::fprintf(stderr, "mxpuppetd: %zu configuration error(s); not starting\n",
                 loaded.errors.size());
    return 2;
  }
  auto& config = *loaded.config;
  if (check_only) {
    for (const auto& w : loaded.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    std::printf("%s: configuration is valid (%zu homeserver(s))\n", config_path.c_str(),
                config.homeservers.size());
    return 0;
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("mxpuppetd"));
  if (config.log.format == mxp::config::log_format::json)
    spdlog::set_formatter(std::make_unique<mxp::json_log_formatter>());
  else
    spdlog::set_pattern(mxp::text_log_pattern);
  spdlog::set_level(spdlog::level::from_str(config.log.level));
  for (const auto& w : loaded.warnings) spdlog::warn("{}", w);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    // One thread runs everything; the reactor needs no locks (resolver threads only post to the
    // scheduler).
    asio::io_context io{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    std::map<std::string, mxp::sessions::homeserver_entry, std::less<>> homeservers;
    for (const auto& [name, hs] : config.homeservers)
      homeservers.emplace(name, mxp::sessions::homeserver_entry{
                                    mxp::matrix::make_homeserver_client(io.get_executor(), hs),
                                    hs.max_concurrent_logins});
    // Sessions of the last run come back before the socket opens: a restart adds no login.
    std::unique_ptr<mxp::store::session_store> store;
    std::vector<mxp::store::stored_session> persisted;
    if (!config.store.path.empty()) {
      const auto started = steady_clock::now();
      mxp::store::open_result opened;
      store = std::make_unique<mxp::store::session_store>(io.get_executor(), config.store.path,
                                                          &opened);
      for (const auto& w : opened.warnings) spdlog::warn("{}", w);
      persisted = store->load_all();
      spdlog::info(
          "session store {}: {} sessions read in {} ms", config.store.path, persisted.size(),
          std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started)
              .count());
    }
    // Declared before the pool: the pool reports to it until the pool is gone.
    mxp::api::api_metrics metrics;
    auto pool = std::make_unique<mxp::sessions::session_pool>(
        io.get_executor(), pool_options_from(config, store.get(), &metrics),
        std::move(homeservers));
    metrics.attach(pool.get());
    if (!persisted.empty()) {
      const auto restored = pool->restore(std::move(persisted));
      spdlog::info("restored {} sessions ({} skipped: homeserver no longer configured)",
                   restored.restored, restored.skipped);
    }
    mxp::api::http_api api{*pool, config.listen.request_timeout};
    api.set_metrics(&metrics);
    api.set_access_policy(std::make_shared<const mxp::api::access_policy>(config.clients));
    if (config.clients)
      spdlog::info("access control: {} client entr{}", config.clients->size(),
                   config.clients->size() == 1 ? "y" : "ies");
    else
      spdlog::warn(
          "access control: no clients: section, every peer that can open the socket may ask for "
          "any user");
    const auto& listen = config.listen;
    mxp::api::server_options listen_options;
    listen_options.socket_path = listen.unix_socket;
    listen_options.socket_mode = listen.socket_mode;
    listen_options.idle_timeout = listen.idle_timeout;
    listen_options.header_timeout =
        mxp::config::effective_phase_timeout(listen, listen.header_timeout);
    listen_options.body_timeout = mxp::config::effective_phase_timeout(listen, listen.body_timeout);
    listen_options.write_timeout = listen.write_timeout;
    listen_options.max_header_bytes = listen.max_header_bytes;
    listen_options.max_body_bytes = listen.max_body_bytes;
    listen_options.max_connections = listen.max_connections;
    if (auto fd = mxp::daemon::socket_from_systemd())
      listen_options.adopt_fd = *fd;  // mxpuppetd.socket
    if (config.listen.socket_owner) listen_options.socket_uid = *config.listen.socket_owner;
    if (config.listen.socket_group) listen_options.socket_gid = *config.listen.socket_group;
    mxp::api::unix_server server{io.get_executor(), listen_options, api};
    std::unique_ptr<mxp::api::tcp_server> tcp_server;  // listen.tcp: loopback, API keys only
    if (const auto& tcp = config.listen.tcp) {
      mxp::api::tcp_server_options tcp_options{tcp->address, tcp->port};
      tcp_options.idle_timeout = listen_options.idle_timeout;
      tcp_options.header_timeout = listen_options.header_timeout;
      tcp_options.body_timeout = listen_options.body_timeout;
      tcp_options.write_timeout = listen_options.write_timeout;
      tcp_options.max_header_bytes = listen_options.max_header_bytes;
      tcp_options.max_body_bytes = listen_options.max_body_bytes;
      tcp_options.max_connections = listen_options.max_connections;
      tcp_server = std::make_unique<mxp::api::tcp_server>(io.get_executor(), tcp_options, api);
    }
    mxp::daemon::sd_notifier notifier{io.get_executor(), [&pool] {
                                        const auto s = pool->stats();
                                        return fmt::format(
                                            "{} sessions: {} active, {} logging in, {} revoking",
                                            s.total, s.active, s.logging_in, s.revoking);
                                      }};

    asio::co_spawn(io, server.run(), log_on_failure("API server"));
    if (tcp_server) asio::co_spawn(io, tcp_server->run(), log_on_failure("TCP API server"));
    asio::co_spawn(io, pool->run_maintenance(), log_on_failure("session maintenance"));

    asio::signal_set signals{io, SIGINT, SIGTERM, SIGHUP};
    auto on_signals = [&]() -> asio::awaitable<void> {
      for (;;) {
        boost::system::error_code ec;
        const int sig = co_await signals.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
        if (sig == SIGHUP) {
          reload(config_path, config, *pool, api, io.get_executor());
          continue;
        }
        spdlog::info("{}: shutting down (grace {} ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                     config.shutdown_grace.count());
        notifier.stopping();
        api.set_ready(false);
        // Everything within the grace, which the config keeps below the unit's TimeoutStopSec:
        // no new connections; waiting callers answered 503 at once and homeserver requests in
        // flight cancelled (pool), revoke_on_shutdown logouts in what is left; then the
        // connections, busy ones included, are closed by the deadline.
        const auto deadline = steady_clock::now() + config.shutdown_grace;
        server.stop();
        if (tcp_server) tcp_server->stop();
        co_await pool->shutdown(config.sessions.revoke_on_shutdown, deadline);
        co_await server.drain(deadline);
        if (tcp_server) co_await tcp_server->drain(deadline);
        signals.cancel();
        co_return;
      }
    };
    asio::co_spawn(io, on_signals(), log_on_failure("signal handling"));

    api.set_ready(true);
    notifier.ready();
    asio::co_spawn(io, notifier.run(), log_on_failure("systemd notifications"));
    spdlog::info("mxpuppetd {} ready: {} homeserver(s), socket {}", MXP_VERSION,
                 config.homeservers.size(), config.listen.unix_socket);
    io.run();
    spdlog::info("stopped");
  } catch (const std::exception& e) {
    spdlog::critical("mxpuppetd: {}", e.what());
    std::fprintf(stderr, "mxpuppetd: %s\n", e.what());
    return 1;
  }
  return 0;
}
