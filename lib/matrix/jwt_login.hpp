// jwt_login: `method: jwt`. Mints a fresh short-lived JWT per login and sends it as
// Synapse's native org.matrix.login.jwt or famedly's com.famedly.login.token.
#pragma once

#include <memory>

#include "matrix/login_strategy.hpp"

namespace mxp::config {
struct jwt_login;
}

namespace mxp::matrix {

// Builds the signer now, so a key that does not fit the algorithm stops the daemon at
// startup: throws std::runtime_error("FILE:LINE: ...private_key_file: why").
std::unique_ptr<login_strategy> make_jwt_login(const config::homeserver_config& hs,
                                               const config::jwt_login& method);

}  // namespace mxp::matrix
