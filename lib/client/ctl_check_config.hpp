// ctl_check_config: `mxpuppetctl check-config FILE` runs `mxpuppetd --check-config -c FILE`
// and passes its output and verdict on.
#pragma once

#include <string>

#include "client/ctl.hpp"

namespace mxp::client {

// Exit status 0 when valid, 1 when not (mxpuppetd's errors on stderr), 3 when mxpuppetd cannot
// be found or run or does not finish within ctx.timeout.
int check_config(const ctl_context& ctx, const std::string& file);

}  // namespace mxp::client
