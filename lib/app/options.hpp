// The running parts' options as the config sets them: the session pool's from `sessions:`, the
// Unix and TCP servers' from `listen:`. Pure mappings.
#pragma once

#include "api/tcp_server.hpp"
#include "api/unix_server.hpp"
#include "config/config.hpp"
#include "sessions/session_pool.hpp"

namespace mxp::app {

// `store` and `observer` must outlive the pool (either may be null).
sessions::pool_options pool_options_from(const config::sessions_config& s,
                                         store::session_store* store,
                                         sessions::pool_observer* observer);

// `adopt_fd`: a listening socket passed by systemd (-1: bind listen.unix_socket).
api::server_options server_options_from(const config::listen_config& listen, int adopt_fd);

api::tcp_server_options tcp_server_options_from(const config::tcp_listen_config& tcp,
                                                const api::server_options& unix_options);

}  // namespace mxp::app
