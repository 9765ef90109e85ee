// ctl_gateway: the bridge gateway's commands. `mxpuppetctl bridges` (each configured bridge,
// its handles and their last use, from GET /v1/gateway/bridges) and `mxpuppetctl
// gateway-token` (a new random bridge token and the `token_sha256:` line for the config; local,
// no daemon needed).
#pragma once

#include <simdjson.h>

#include "client/ctl.hpp"
#include "client/ctl_runner.hpp"

namespace mxp::client {

int print_bridges(command_runner& r, simdjson::dom::element doc);
int print_gateway_token(const ctl_context& ctx);

}  // namespace mxp::client
