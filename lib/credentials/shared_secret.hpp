// Shared-secret login credentials (devture shared-secret-auth and the legacy
// m.login.password form): lowercase hex HMAC-SHA512(key = secret, msg = user ID).
#pragma once

#include <string>
#include <string_view>

#include "core/secret.hpp"

namespace mxp::credentials {

secret_string shared_secret_token(const secret_string& secret, std::string_view full_user_id);

}  // namespace mxp::credentials
