// ctl_options: mxpuppetctl's command line: options before or after the command,
// "--opt=value" and "--opt value", and the usage errors (exit status 2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "client/ctl.hpp"

namespace mxp::client {

// A bad command line; run_ctl prints it with a pointer to --help.
struct usage_error {
  std::string message;
};

struct ctl_options {
  std::string socket;
  bool json = false;
  bool help = false;
  bool version = false;
  std::optional<std::int64_t> min_valid_ms;
  // sessions, revoke --all-idle: only users of this server.
  std::optional<std::string_view> homeserver;
  bool all_idle = false;                    // revoke --all-idle
  std::optional<std::int64_t> idle_for_ms;  // revoke --all-idle --idle-for DURATION
  std::optional<std::string_view> config;   // doctor --config FILE
  std::vector<std::string_view> positional;
};

inline constexpr std::int64_t default_idle_for_ms = 3'600'000;  // revoke --all-idle: 1h

// The options and positional arguments of `args`; the socket defaults to $MXPUPPETD_SOCKET,
// else default_socket_path. Throws usage_error.
ctl_options parse_options(std::span<const std::string_view> args, const ctl_context& ctx);

// Throws usage_error unless the command has exactly `n` arguments.
void expect_args(const ctl_options& o, std::size_t n, std::string_view synopsis);

// Throws usage_error for an empty USER.
void expect_user(std::string_view user);

}  // namespace mxp::client
