// ctl: everything mxpuppetctl does except main(): argument parsing, one socket
// API request per command, human or JSON output, and the exit codes. The entry point and
// the context; each concept is its own file pair (ctl_options, ctl_runner, ctl_format,
// ctl_json, ctl_user_commands, ctl_sessions, ctl_status, ctl_check_config).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <span>
#include <string>
#include <string_view>

#include "client/ctl_format.hpp"  // human_duration, server_name_of

namespace mxp::client {

// mxpuppetctl's exit codes (also listed by --help).
enum class ctl_exit : int {
  ok = 0,
  daemon_error = 1,  // the daemon answered with an error (errcode/error on stderr)
  usage = 2,         // bad command line
  unreachable = 3,   // socket missing, connection refused, permission denied, timeout
  bad_answer = 4,    // the daemon's answer is not the HTTP/JSON we expect
};
constexpr int exit_code(ctl_exit e) noexcept {
  return static_cast<int>(e);
}
// check-config uses the same codes: 0 valid, 1 invalid (errors on stderr), 3 mxpuppetd not found or
// not runnable.

inline constexpr std::string_view default_socket_path = "/run/mxpuppetd/mxpuppetd.sock";

struct ctl_context {
  std::ostream& out;
  std::ostream& err;
  std::istream& in;                      // read by `invalidate USER -`
  std::string socket_from_env;           // MXPUPPETD_SOCKET, "" when unset
  std::function<std::int64_t()> now_ms;  // wall clock, ms since the Unix epoch; empty: system_clock
  std::chrono::milliseconds timeout = std::chrono::seconds(35);
  // check-config runs `mxpuppetd --check-config`: $MXPUPPETD_BIN when set, else the
  // mxpuppetd in this program's directory (self_dir; "" if unknown), else one on search_path.
  std::string daemon_bin_from_env;  // MXPUPPETD_BIN, "" when unset
  std::string self_dir;
  std::string search_path;  // PATH
};

// Runs mxpuppetctl with `args` (argv without argv[0]); returns the exit code.
int run_ctl(std::span<const std::string_view> args, const ctl_context& ctx);

std::string ctl_usage();

}  // namespace mxp::client
