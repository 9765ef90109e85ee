// ctl_status: `mxpuppetctl status`: version, uptime, session counts and a table of the
// homeservers with their health.
#pragma once

#include <simdjson.h>

#include "client/ctl_runner.hpp"

namespace mxp::client {

int print_status(command_runner& r, simdjson::dom::element doc);

}  // namespace mxp::client
