// daemon: assembling the parts from the config, starting them, reloading, shutting down.
#include "app/daemon.hpp"

#include <boost/asio/co_spawn.hpp>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <map>

#include "app/options.hpp"
#include "app/reload.hpp"
#include "core/log_format.hpp"
#include "matrix/homeserver_client.hpp"

namespace mxp::app {

namespace asio = boost::asio;
using std::chrono::steady_clock;

void log_on_failure::operator()(std::exception_ptr ep) const {
  if (!ep) return;
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    spdlog::critical("{} failed: {}", task, e.what());
  }
}

void configure_logging(const config::log_config& log) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("mxpuppetd"));
  if (log.format == config::log_format::json)
    spdlog::set_formatter(std::make_unique<json_log_formatter>());
  else
    spdlog::set_pattern(text_log_pattern);
  spdlog::set_level(spdlog::level::from_str(log.level));
}

daemon::daemon(asio::any_io_executor executor, config::daemon_config config, int adopt_fd)
    : executor_(std::move(executor)),
      config_(std::move(config)),
      backends_(std::make_unique<matrix::rest_backends>(executor_)) {
  std::map<std::string, sessions::homeserver_entry, std::less<>> homeservers;
  for (const auto& [name, hs] : config_.homeservers)
    homeservers.emplace(name, sessions::homeserver_entry{
                                  matrix::make_homeserver_client(executor_, hs, backends_.get()),
                                  hs.max_concurrent_logins});
  // Sessions of the last run come back before the socket opens: a restart adds no login.
  std::vector<store::stored_session> persisted;
  if (!config_.store.path.empty()) {
    const auto started = steady_clock::now();
    store::open_result opened;
    store_ = std::make_unique<store::session_store>(executor_, config_.store.path, &opened);
    for (const auto& w : opened.warnings) spdlog::warn("{}", w);
    persisted = store_->load_all();
    spdlog::info(
        "session store {}: {} sessions read in {} ms", config_.store.path, persisted.size(),
        std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started)
            .count());
  }
  pool_ = std::make_unique<sessions::session_pool>(
      executor_, pool_options_from(config_.sessions, store_.get(), &metrics_),
      std::move(homeservers));
  metrics_.attach(pool_.get());
  if (!persisted.empty()) {
    const auto restored = pool_->restore(std::move(persisted));
    spdlog::info("restored {} sessions ({} skipped: homeserver no longer configured)",
                 restored.restored, restored.skipped);
  }
  api_ = std::make_unique<api::http_api>(*pool_, config_.listen.request_timeout);
  api_->set_metrics(&metrics_);
  api_->set_access_policy(std::make_shared<const api::access_policy>(config_.clients));
  if (config_.clients)
    spdlog::info("access control: {} client entr{}", config_.clients->size(),
                 config_.clients->size() == 1 ? "y" : "ies");
  else
    spdlog::warn(
        "access control: no clients: section, every peer that can open the socket may ask for "
        "any user");
  const auto unix_options = server_options_from(config_.listen, adopt_fd);
  server_ = std::make_unique<api::unix_server>(executor_, unix_options, *api_);
  if (const auto& tcp = config_.listen.tcp)
    tcp_server_ = std::make_unique<api::tcp_server>(
        executor_, tcp_server_options_from(*tcp, unix_options), *api_);
  if (config_.gateway) {
    gateway_ = std::make_unique<gateway::gateway_server>(executor_, config_, *pool_, store_.get(),
                                                         metrics_.registry());
    api_->set_gateway_report([g = gateway_.get()] { return g->bridges_json(); });
  }
}

daemon::~daemon() = default;

void daemon::start() {
  asio::co_spawn(executor_, server_->run(), log_on_failure{"API server"});
  if (tcp_server_) asio::co_spawn(executor_, tcp_server_->run(), log_on_failure{"TCP API server"});
  if (gateway_) gateway_->start();
  asio::co_spawn(executor_, pool_->run_maintenance(), log_on_failure{"session maintenance"});
  api_->set_ready(true);
}

void daemon::reload() {
  running_daemon_target target{executor_, *pool_, *api_, backends_.get(), gateway_.get()};
  reload_config_file(config_.source_file, config_, target);
}

asio::awaitable<void> daemon::shutdown() {
  api_->set_ready(false);
  const auto deadline = steady_clock::now() + config_.shutdown_grace;
  server_->stop();
  if (tcp_server_) tcp_server_->stop();
  if (gateway_) gateway_->stop();
  co_await pool_->shutdown(config_.sessions.revoke_on_shutdown, deadline);
  backends_->stop();  // after the pool: its last logins (cancelled by now) used them
  co_await backends_->drain(deadline);
  co_await server_->drain(deadline);
  if (tcp_server_) co_await tcp_server_->drain(deadline);
  if (gateway_) co_await gateway_->drain(deadline);
}

std::string daemon::status() const {
  const auto s = pool_->stats();
  return fmt::format("{} sessions: {} active, {} logging in, {} revoking", s.total, s.active,
                     s.logging_in, s.revoking);
}

}  // namespace mxp::app
