// mas_login: `method: mas`. Personal sessions minted with matrix-authentication-service's admin
// API for homeservers that delegate auth to MAS: an admin token by client credentials (cached,
// renewed before it runs out, one renewal at a time), the user's MAS id (cached), then
// POST /api/admin/v1/personal-sessions; logging out revokes the personal session.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <memory>

#include "matrix/login_strategy.hpp"

namespace mxp::config {
struct mas_login;
}

namespace mxp::matrix {

std::unique_ptr<login_strategy> make_mas_login(boost::asio::any_io_executor executor,
                                               const config::homeserver_config& hs,
                                               const config::mas_login& method);

}  // namespace mxp::matrix
