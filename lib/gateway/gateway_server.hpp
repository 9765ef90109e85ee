// gateway_server: the bridge gateway's listeners (loopback TCP, HTTP/1.1 keep-alive) and its
// reverse proxy to the homeservers. A request with a bridge token or a handle is forwarded with
// real credentials (the user's pooled token, or the appservice's as_token with ?user_id=);
// GET/POST /login and /logout with a handle are answered here; anything else passes through
// untouched. Bodies stream both ways; upstream connections are kept alive per homeserver.
// Asio and Beast stay in the .cpp.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mxp::config {
struct daemon_config;
}
namespace mxp::sessions {
class session_pool;
}
namespace mxp::store {
class session_store;
}
namespace mxp::metrics {
class registry;
}

namespace mxp::gateway {

class gateway_server {
 public:
  // Binds every gateway.listen address now (throws std::system_error naming the address) and
  // reads the persisted handles from `store` (nullptr: handles live in memory only). `pool`,
  // `store` and `registry` must outlive the server.
  gateway_server(boost::asio::any_io_executor executor, const config::daemon_config& cfg,
                 sessions::session_pool& pool, store::session_store* store,
                 metrics::registry& registry);
  ~gateway_server();
  gateway_server(const gateway_server&) = delete;
  gateway_server& operator=(const gateway_server&) = delete;

  // Accepts on every listener until stop(); each connection runs as its own coroutine, owned
  // by the server (drain() awaits them).
  void start();
  // Stops accepting and closes idle connections; requests in flight finish.
  void stop();
  // Waits until every connection is gone or the deadline passes, then closes what is left.
  boost::asio::awaitable<void> drain(std::chrono::steady_clock::time_point deadline);
  // Reload: new bridges, limits and homeserver targets; handles and connections in use stay.
  void apply(const config::daemon_config& cfg);

  std::vector<std::uint16_t> ports() const;
  // {"bridges":[{"name","handles","last_used_at_ms"}...],"handles":N} for GET /v1/gateway/bridges.
  std::string bridges_json() const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace mxp::gateway
