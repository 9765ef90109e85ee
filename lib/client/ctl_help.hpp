// ctl_help: mxpuppetctl's commands as one table (name, synopsis, description, options) from
// which --help, `help COMMAND`, `COMMAND --help` and the usage errors' synopses are printed.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace mxp::client {

struct ctl_command_help {
  std::string_view name;
  std::string_view synopsis;     // "token USER [--min-valid-ms N]"
  std::string_view description;  // indented lines, each ending in '\n'
  std::string_view options;      // the command's own options, "" for none
};

// Every command, in the order --help lists them.
std::span<const ctl_command_help> ctl_commands();
// The entry of `name`, or nullptr for an unknown command.
const ctl_command_help* find_command(std::string_view name);

// The whole --help text is ctl_usage() (ctl.hpp), built from this table.
// `mxpuppetctl help COMMAND`: the command's synopsis, description, options and the global ones.
std::string command_usage(const ctl_command_help& c);

}  // namespace mxp::client
