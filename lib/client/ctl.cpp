// ctl: mxpuppetctl's entry point: --help, --version and the dispatch of each command to
// its file (ctl_help, ctl_user_commands, ctl_sessions, ctl_status, ctl_gateway, ctl_check_config,
// ctl_doctor).
#include "client/ctl.hpp"

#include <fmt/format.h>

#include <istream>
#include <ostream>
#include <string>

#include "client/ctl_check_config.hpp"
#include "client/ctl_doctor.hpp"
#include "client/ctl_format.hpp"
#include "client/ctl_gateway.hpp"
#include "client/ctl_help.hpp"
#include "client/ctl_options.hpp"
#include "client/ctl_runner.hpp"
#include "client/ctl_sessions.hpp"
#include "client/ctl_status.hpp"
#include "client/ctl_user_commands.hpp"
#include "core/json_writer.hpp"

namespace mxp::client {

int run_ctl(std::span<const std::string_view> args, const ctl_context& ctx) {
  ctl_options o;
  try {
    o = parse_options(args, ctx);
    // `help COMMAND`, `COMMAND --help`: that command's help; `help`, `--help`: all of them.
    const bool help_command = !o.positional.empty() && o.positional.front() == "help";
    if (o.help || help_command) {
      const std::size_t at = help_command ? 1 : 0;
      if (o.positional.size() > at) {
        const auto* c = find_command(o.positional[at]);
        if (!c) throw usage_error{fmt::format("unknown command '{}'", printable(o.positional[at]))};
        ctx.out << command_usage(*c);
      } else {
        ctx.out << ctl_usage();
      }
      return exit_code(ctl_exit::ok);
    }
    if (o.version) {
      ctx.out << "mxpuppetctl " << MXP_VERSION << '\n';
      return exit_code(ctl_exit::ok);
    }
    if (o.positional.empty()) throw usage_error{"no command given"};
    const std::string_view command = o.positional.front();
    if (o.min_valid_ms && command != "token")
      throw usage_error{"--min-valid-ms only goes with the token command"};
    if (o.all_idle && command != "revoke")
      throw usage_error{"--all-idle only goes with the revoke command"};
    if (o.idle_for_ms && !o.all_idle)
      throw usage_error{"--idle-for only goes with revoke --all-idle"};
    if (o.config && command != "doctor")
      throw usage_error{"--config only goes with the doctor command"};
    if (o.homeserver && command != "sessions" && !o.all_idle)
      throw usage_error{"--homeserver only goes with sessions and revoke --all-idle"};

    command_runner runner{ctx, o};
    if (command == "token") {
      expect_args(o, 1, "token USER [--min-valid-ms N]");
      expect_user(o.positional[1]);
      std::string target = user_path(o.positional[1], "token");
      if (o.min_valid_ms) target += fmt::format("?min_valid_ms={}", *o.min_valid_ms);
      return runner.run("GET", target, {}, print_token);
    }
    if (command == "invalidate") {
      expect_args(o, 2, "invalidate USER TOKEN");
      expect_user(o.positional[1]);
      std::string token{o.positional[2]};
      if (token == "-") {
        std::getline(ctx.in, token);
        if (!token.empty() && token.back() == '\r') token.pop_back();
      }
      if (token.empty()) throw usage_error{"TOKEN must not be empty"};
      std::string body;
      json_writer{body}.begin_object().member("access_token", token).end_object();
      return runner.run("POST", user_path(o.positional[1], "invalidate"), body, print_invalidated);
    }
    if (command == "revoke" && o.all_idle) {
      expect_args(o, 0, "revoke --all-idle [--idle-for DURATION] [--homeserver SERVER]");
      return revoke_idle(runner, o.idle_for_ms.value_or(default_idle_for_ms));
    }
    if (command == "revoke") {
      expect_args(o, 1, "revoke USER  or  revoke --all-idle [--idle-for DURATION]");
      expect_user(o.positional[1]);
      return runner.run("DELETE", user_path(o.positional[1], "session"), {}, print_revoked);
    }
    if (command == "sessions") {
      expect_args(o, 0, "sessions [--homeserver SERVER]");
      return run_sessions(runner);
    }
    if (command == "status") {
      expect_args(o, 0, "status");
      return runner.run("GET", "/v1/status", {}, print_status);
    }
    if (command == "bridges") {
      expect_args(o, 0, "bridges");
      return runner.run("GET", "/v1/gateway/bridges", {}, print_bridges);
    }
    if (command == "gateway-token") {
      expect_args(o, 0, "gateway-token");
      return print_gateway_token(ctx);
    }
    if (command == "check-config") {
      expect_args(o, 1, "check-config FILE");
      if (o.positional[1].empty()) throw usage_error{"FILE must not be empty"};
      return check_config(ctx, std::string{o.positional[1]});
    }
    if (command == "doctor") {
      for (std::size_t i = 1; i < o.positional.size(); ++i) expect_user(o.positional[i]);
      return run_doctor(ctx, o);
    }
    throw usage_error{fmt::format("unknown command '{}'", printable(command))};
  } catch (const usage_error& e) {
    ctx.err << "mxpuppetctl: " << e.message << "\nTry 'mxpuppetctl --help'.\n";
    return exit_code(ctl_exit::usage);
  }
}

}  // namespace mxp::client
