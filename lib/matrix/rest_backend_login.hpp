// rest_backend_login: `method: rest_backend`. m.login.password with a fresh single-use nonce
// that the backend listener (matrix/rest_backend.hpp) confirms to the homeserver's REST module,
// then whoami, so that only a token that works is handed out.
#pragma once

#include <memory>

#include "matrix/login_strategy.hpp"

namespace mxp::config {
struct rest_backend_login;
}

namespace mxp::matrix {

class rest_backends;

// Attaches to the listener of method.backend_listen in `backends` (binding it when new);
// throws std::runtime_error when `backends` is null, std::system_error when it cannot listen.
std::unique_ptr<login_strategy> make_rest_backend_login(const config::homeserver_config& hs,
                                                        const config::rest_backend_login& method,
                                                        rest_backends* backends);

}  // namespace mxp::matrix
