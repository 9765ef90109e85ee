// pool_options_from, server_options_from, tcp_server_options_from.
#include "app/options.hpp"

namespace mxp::app {

sessions::pool_options pool_options_from(const config::sessions_config& s,
                                         store::session_store* store,
                                         sessions::pool_observer* observer) {
  sessions::pool_options o;
  o.max_sessions = s.max;
  o.idle_timeout = s.idle_timeout;
  o.revoke_on_evict = s.revoke_on_evict;
  o.store = store;
  o.observer = observer;
  o.renewal.refresh_margin_ms = s.refresh_margin.count();
  o.renewal.validate_after_ms = s.validate_after ? s.validate_after->count() : 0;
  o.background_refresh = s.refresh == config::refresh_policy::background;
  return o;
}

api::server_options server_options_from(const config::listen_config& listen, int adopt_fd) {
  api::server_options o;
  o.socket_path = listen.unix_socket;
  o.socket_mode = listen.socket_mode;
  o.idle_timeout = listen.idle_timeout;
  o.header_timeout = config::effective_phase_timeout(listen, listen.header_timeout);
  o.body_timeout = config::effective_phase_timeout(listen, listen.body_timeout);
  o.write_timeout = listen.write_timeout;
  o.max_header_bytes = listen.max_header_bytes;
  o.max_body_bytes = listen.max_body_bytes;
  o.max_connections = listen.max_connections;
  o.adopt_fd = adopt_fd;
  if (listen.socket_owner) o.socket_uid = *listen.socket_owner;
  if (listen.socket_group) o.socket_gid = *listen.socket_group;
  return o;
}

api::tcp_server_options tcp_server_options_from(const config::tcp_listen_config& tcp,
                                                const api::server_options& unix_options) {
  api::tcp_server_options o{tcp.address, tcp.port};
  o.idle_timeout = unix_options.idle_timeout;
  o.header_timeout = unix_options.header_timeout;
  o.body_timeout = unix_options.body_timeout;
  o.write_timeout = unix_options.write_timeout;
  o.max_header_bytes = unix_options.max_header_bytes;
  o.max_body_bytes = unix_options.max_body_bytes;
  o.max_connections = unix_options.max_connections;
  return o;
}

}  // namespace mxp::app
