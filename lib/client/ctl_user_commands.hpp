// ctl_user_commands: what mxpuppetctl prints for the one-user commands (token, invalidate,
// revoke USER), given to command_runner::run.
#pragma once

#include <simdjson.h>

#include "client/ctl_runner.hpp"

namespace mxp::client {

// token: the access token alone on a line, so that TOKEN=$(mxpuppetctl token USER) works.
int print_token(command_runner& r, simdjson::dom::element doc);
// invalidate: "invalidated" or why not.
int print_invalidated(command_runner& r, simdjson::dom::element doc);
// revoke USER: "revoked" or "no session".
int print_revoked(command_runner& r, simdjson::dom::element doc);

}  // namespace mxp::client
