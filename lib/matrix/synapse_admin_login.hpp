// synapse_admin_login: `method: synapse_admin`. Mints a puppet token with Synapse's admin
// API (POST /_synapse/admin/v1/users/{userId}/login) and an admin's access token.
#pragma once

#include <memory>
#include "matrix/login_strategy.hpp"

namespace mxp::config {
struct synapse_admin_login;
}

namespace mxp::matrix {

std::unique_ptr<login_strategy> make_synapse_admin_login(const config::homeserver_config& hs,
                                                         const config::synapse_admin_login& method);

}  // namespace mxp::matrix
