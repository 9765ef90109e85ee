// ctl_format: mxpuppetctl's text output: durations, server names, terminal-safe strings and
// aligned tables. No JSON here (ctl_json.hpp reads the daemon's answers).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace mxp::client {

// Human form of a duration, two units at most: 250ms, 45s, 3m 20s, 2h 5m, 3d 4h.
// Negative values print as 0ms.
std::string human_duration(std::int64_t ms);

// The server name of a Matrix user ID (after the first ':'; it may carry a port), "" if none.
std::string_view server_name_of(std::string_view user_id);

// Replaces control characters so that nothing the daemon says can drive the terminal.
std::string printable(std::string_view s);

// Aligned columns separated by two spaces; the last column is not padded.
void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows,
                 std::string_view indent = {});

}  // namespace mxp::client
