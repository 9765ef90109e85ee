// glob_match: the pattern grammar of every `allow` list (clients[].allow, gateway bridges'
// allow): '*' any run of characters (':' included), '?' exactly one, everything else itself.
#pragma once

#include <string_view>

namespace mxp {

bool glob_match(std::string_view pattern, std::string_view text) noexcept;

}  // namespace mxp
