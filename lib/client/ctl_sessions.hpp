// ctl_sessions: the commands over every session: `sessions` (a table, paging through
// /v1/sessions) and `revoke --all-idle`.
#pragma once

#include <cstdint>

#include "client/ctl_runner.hpp"

namespace mxp::client {

// sessions [--homeserver SERVER]: every page, then the table (or the JSON).
int run_sessions(command_runner& r);

// revoke --all-idle: DELETE, one by one, every active session unused for idle_for_ms or longer.
int revoke_idle(command_runner& r, std::int64_t idle_for_ms);

}  // namespace mxp::client
