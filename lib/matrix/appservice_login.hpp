// appservice_login: `method: appservice`. m.login.application_service with the bridge's
// as_token, for users inside the registration's namespaces, registering them first.
#pragma once

#include <memory>
#include <string_view>

#include "matrix/login_strategy.hpp"

namespace mxp::config {
struct appservice_login;
}

namespace mxp::matrix {

std::unique_ptr<login_strategy> make_appservice_login(const config::homeserver_config& hs,
                                                      const config::appservice_login& method);

// Whether `user_id` lies in the appservice's user namespace as the registration defines it:
// a namespaces.users regex matches at the start of the ID (Python's re.match, which is what
// Synapse uses; a regex that should cover whole IDs only must end in '$' or the server
// name), or the ID is the registration's sender. True when no registration was given.
bool appservice_is_interested(const config::appservice_login& method, std::string_view server_name,
                              std::string_view user_id);

}  // namespace mxp::matrix
