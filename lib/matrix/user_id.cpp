// Matrix user ID grammar (spec: Appendices, "User Identifiers"; historical localparts allowed).
#include "matrix/user_id.hpp"

namespace mxp::matrix {

std::optional<user_id_parts> parse_user_id(std::string_view user_id) {
  if (user_id.size() < 4 || user_id.size() > max_user_id_bytes || user_id.front() != '@')
    return std::nullopt;
  const auto colon = user_id.find(':');
  if (colon == std::string_view::npos || colon == 1) return std::nullopt;
  const auto localpart = user_id.substr(1, colon - 1);
  for (char c : localpart) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) return std::nullopt;  // printable ASCII only, no space
  }
  const auto server_name = user_id.substr(colon + 1);
  if (!is_valid_server_name(server_name)) return std::nullopt;
  return user_id_parts{localpart, server_name};
}

}  // namespace mxp::matrix
