// ctl_doctor: `mxpuppetctl doctor`: checks a running installation the way an operator would and
// prints one line per check, "ok CHECK: detail" or "FAIL CHECK: detail" and "  fix: ...".
#pragma once

#include <string>
#include <vector>

#include "client/ctl.hpp"
#include "client/ctl_options.hpp"

namespace mxp::client {

inline constexpr std::string_view default_config_path = "/etc/mxpuppetd/config.yaml";

// The login flows (GET /_matrix/client/v3/login "flows[].type") of which a homeserver must offer
// one for `login_type` as /v1/status reports it: "auto" takes either shared-secret flow,
// "synapse_admin" needs none (it uses the admin API); anything else is the flow itself.
std::vector<std::string> flows_needed(const std::string& login_type);

// Exit status 0 when every check passed, 1 otherwise.
int run_doctor(const ctl_context& ctx, const ctl_options& o);

}  // namespace mxp::client
