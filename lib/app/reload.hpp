// Reload (SIGHUP): a newly loaded config applied to the running daemon. A config with any
// error, or a homeserver whose client cannot be built, changes nothing. Otherwise homeservers
// are added, changed (new client, sessions kept) or removed (sessions evicted); `clients:`,
// session limits and the log level take effect at once; listen/store/log.format changes need a
// restart and say so. Only what differs (config::plan_reload) is applied.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "api/http_api.hpp"
#include "config/config.hpp"
#include "gateway/gateway_server.hpp"
#include "sessions/session_pool.hpp"

namespace mxp::matrix {
class rest_backends;
}

namespace mxp::app {

// The running parts a reload changes, behind the operations it needs: the daemon's target
// forwards them to the session pool, the API and spdlog; tests record them.
class reload_target {
 public:
  virtual ~reload_target() = default;
  // Builds the client for `hs`; throws std::exception when it cannot (e.g. a key that does not
  // fit its algorithm). Changes nothing in the daemon.
  virtual sessions::homeserver_entry make_homeserver(const config::homeserver_config& hs) = 0;
  virtual void put_homeserver(const std::string& name, sessions::homeserver_entry entry) = 0;
  // Returns how many sessions the homeserver had (they are evicted).
  virtual std::size_t remove_homeserver(const std::string& name) = 0;
  virtual void set_session_limits(const config::sessions_config& sessions) = 0;
  virtual void set_access(const std::optional<std::vector<config::client_config>>& clients) = 0;
  virtual void set_log_level(const std::string& level) = 0;
  // The bridge gateway's bridges, limits and homeserver targets (handles and sessions kept).
  virtual void set_gateway(const config::daemon_config& /*cfg*/) {}
};

// The daemon's target: the session pool (put_homeserver, remove_homeserver, set_limits), the
// API's access policy and spdlog's level.
class running_daemon_target final : public reload_target {
 public:
  // `backends`: the daemon's rest_backend listeners (a new backend_listen binds one).
  running_daemon_target(boost::asio::any_io_executor executor, sessions::session_pool& pool,
                        api::http_api& api, matrix::rest_backends* backends = nullptr,
                        gateway::gateway_server* gateway = nullptr)
      : executor_(std::move(executor)),
        pool_(pool),
        api_(api),
        backends_(backends),
        gateway_(gateway) {}

  sessions::homeserver_entry make_homeserver(const config::homeserver_config& hs) override;
  void put_homeserver(const std::string& name, sessions::homeserver_entry entry) override;
  std::size_t remove_homeserver(const std::string& name) override;
  void set_session_limits(const config::sessions_config& sessions) override;
  void set_access(const std::optional<std::vector<config::client_config>>& clients) override;
  void set_log_level(const std::string& level) override;
  void set_gateway(const config::daemon_config& cfg) override;

 private:
  boost::asio::any_io_executor executor_;
  sessions::session_pool& pool_;
  api::http_api& api_;
  matrix::rest_backends* backends_;
  gateway::gateway_server* gateway_;
};

enum class reload_outcome {
  applied,   // `current` is the new config (as far as it applies while running)
  rejected,  // errors in the new config, or a client that could not be built: nothing changed
};

// Applies `loaded` (a load_config_file() result) over `current` through `target`, logging what
// it does. On `applied`, `current` becomes what is now in force.
reload_outcome apply_reload(config::load_result loaded, config::daemon_config& current,
                            reload_target& target);

// load_config_file(path), then apply_reload.
reload_outcome reload_config_file(const std::string& path, config::daemon_config& current,
                                  reload_target& target);

}  // namespace mxp::app
