// An appservice registration (the bridge's registration.yaml), as the `appservice` login method
// uses it: its as_token, sender_localpart and namespaces.users[].regex. Other keys belong to the
// bridge and are ignored.
#pragma once

#include <string>
#include <vector>

#include "config/login_methods.hpp"

namespace mxp::config {

// Reads the registration `text` (from the file `where` names, e.g. "registration '/x.yaml'")
// into `login`. Returns what is wrong (every bad regex, each message starting with `where`);
// never any secret.
std::vector<std::string> parse_registration(const std::string& text, const std::string& where,
                                            appservice_login& login);

}  // namespace mxp::config
