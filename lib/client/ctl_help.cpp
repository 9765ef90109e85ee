// ctl_help: the command table and the help texts built from it.
#include "client/ctl_help.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

#include "client/ctl.hpp"

namespace mxp::client {
namespace {

constexpr ctl_command_help commands[] = {
    {"token", "token USER [--min-valid-ms N]",
     "      Print an access token for USER (logging in if needed), nothing else,\n"
     "      so that TOKEN=$(mxpuppetctl token @bot:example.org) works.\n",
     "      --min-valid-ms N   the token stays valid for at least N more milliseconds\n"},
    {"invalidate", "invalidate USER TOKEN",
     "      Report TOKEN as rejected by the homeserver; the next `token` gets a new\n"
     "      one. TOKEN \"-\" reads it from standard input (keeps it out of ps).\n",
     ""},
    {"revoke", "revoke USER | revoke --all-idle [--idle-for DURATION] [--homeserver SERVER]",
     "      Log USER's session out at the homeserver and forget it. With --all-idle:\n"
     "      revoke every active session unused for DURATION or longer, one at a time.\n",
     "      --all-idle           revoke the idle sessions instead of one USER\n"
     "      --idle-for DURATION  with --all-idle: unused for this long (default 1h;\n"
     "                           e.g. 30m, 12h, 7d)\n"
     "      --homeserver SERVER  with --all-idle: only users on SERVER\n"},
    {"sessions", "sessions [--homeserver SERVER]",
     "      List the sessions (never their tokens).\n",
     "      --homeserver SERVER  only users on SERVER (the part of the user ID after\n"
     "                           the first ':')\n"},
    {"status", "status", "      Version, uptime, session counts and homeserver health.\n", ""},
    {"bridges", "bridges",
     "      The bridge gateway's bridges: how many handles (logins of login-based\n"
     "      bridges) each holds and when one was last used.\n",
     ""},
    {"gateway-token", "gateway-token",
     "      Print a new random bridge token and the `token_sha256: <hex>` line for\n"
     "      gateway.bridges[] (local: no daemon needed). Give the token to the bridge\n"
     "      (double_puppet.secrets: {SERVER: \"as_token:<token>\"}), the line to the config.\n",
     ""},
    {"check-config", "check-config FILE",
     "      Validate a configuration file with `mxpuppetd --check-config` (the\n"
     "      mxpuppetd next to mxpuppetctl, else on PATH; MXPUPPETD_BIN overrides).\n"
     "      Exit status 0 when valid, 1 when not (errors on stderr).\n",
     ""},
    {"doctor", "doctor [--config FILE] [USER...]",
     "      Check a running installation as an operator would: the socket answers\n"
     "      /healthz, the config is valid, each homeserver is reachable and offers\n"
     "      the login flow its method needs, the store's directory is writable, the\n"
     "      clock is sane; for each USER given (e.g. a bridge's bot), the daemon gets a\n"
     "      token, logging in if it holds none: a refused login means a wrong secret.\n"
     "      One line per check, \"ok CHECK: ...\" or \"FAIL CHECK: ...\" followed by\n"
     "      \"  fix: ...\". Exit status 0 only when every check passes.\n",
     "      --config FILE        the daemon's config (default /etc/mxpuppetd/config.yaml)\n"},
    {"help", "help [COMMAND]", "      This help, or the help of COMMAND.\n", ""},
};

constexpr std::string_view global_options =
    R"(Options:
  -s, --socket PATH  daemon socket; default $MXPUPPETD_SOCKET, else
                     {}
      --json         print the daemon's JSON answer unchanged
  -h, --help         print this help (after a command: that command's help)
  -V, --version      print the version
)";

}  // namespace

std::span<const ctl_command_help> ctl_commands() {
  return commands;
}

const ctl_command_help* find_command(std::string_view name) {
  const auto* c = std::find_if(std::begin(commands), std::end(commands),
                               [&](const ctl_command_help& e) { return e.name == name; });
  return c == std::end(commands) ? nullptr : c;
}

std::string ctl_usage() {
  std::string out =
      "Usage: mxpuppetctl [--socket PATH] [--json] COMMAND [ARGS]\n\n"
      "Asks mxpuppetd for Matrix access tokens and shows its sessions.\n\nCommands:\n";
  for (const auto& c : commands) {
    out += fmt::format("  {}\n{}", c.synopsis, c.description);
    out += c.options;
  }
  out += "\n" + fmt::format(fmt::runtime(global_options), default_socket_path);
  out += R"(
Exit status:
  0  success
  1  the daemon answered with an error (errcode and message on stderr);
     doctor: a check failed
  2  usage error
  3  cannot reach the daemon (socket missing, connection refused,
     permission denied, timeout); check-config: mxpuppetd not found
  4  the daemon's answer is malformed

`mxpuppetctl help COMMAND` (or `mxpuppetctl COMMAND --help`) shows one command.
)";
  return out;
}

std::string command_usage(const ctl_command_help& c) {
  std::string out = fmt::format("Usage: mxpuppetctl [--socket PATH] [--json] {}\n\n{}", c.synopsis,
                                c.description);
  if (!c.options.empty()) out += fmt::format("\nOptions of {}:\n{}", c.name, c.options);
  out += "\n" + fmt::format(fmt::runtime(global_options), default_socket_path);
  return out;
}

}  // namespace mxp::client
