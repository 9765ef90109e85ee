// ctl_options: the argument loop; values are checked here (durations with core/duration).
#include "client/ctl_options.hpp"

#include <fmt/format.h>

#include "core/duration.hpp"

namespace mxp::client {

namespace {

// Non-negative decimal integer, no sign, no spaces.
std::optional<std::int64_t> parse_non_negative(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t n = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return n;
}

}  // namespace

ctl_options parse_options(std::span<const std::string_view> args, const ctl_context& ctx) {
  ctl_options o;
  o.socket = ctx.socket_from_env.empty() ? std::string{default_socket_path} : ctx.socket_from_env;
  bool only_positional = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (only_positional || a.size() < 2 || a.front() != '-') {
      o.positional.push_back(a);
      continue;
    }
    // Options may come before or after the command; "--opt=value" and "--opt value" both work.
    std::string_view name = a;
    std::optional<std::string_view> inline_value;
    if (const auto eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
    }
    auto value = [&]() -> std::string_view {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) throw usage_error{fmt::format("option {} needs a value", name)};
      return args[++i];
    };
    auto no_value = [&] {
      if (inline_value) throw usage_error{fmt::format("option {} takes no value", name)};
    };
    if (name == "--") {
      no_value();
      only_positional = true;
    } else if (name == "--socket" || name == "-s") {
      o.socket = std::string{value()};
      if (o.socket.empty()) throw usage_error{"--socket needs a non-empty path"};
    } else if (name == "--json") {
      no_value();
      o.json = true;
    } else if (name == "--help" || name == "-h") {
      no_value();
      o.help = true;
    } else if (name == "--version" || name == "-V") {
      no_value();
      o.version = true;
    } else if (name == "--min-valid-ms") {
      const std::string_view v = value();
      o.min_valid_ms = parse_non_negative(v);
      if (!o.min_valid_ms) {
        throw usage_error{
            fmt::format("--min-valid-ms needs a non-negative number of milliseconds, not '{}'", v)};
      }
    } else if (name == "--homeserver") {
      o.homeserver = value();
      if (o.homeserver->empty())
        throw usage_error{"--homeserver needs a server name such as example.org"};
    } else if (name == "--config") {
      o.config = value();
      if (o.config->empty()) throw usage_error{"--config needs a non-empty path"};
    } else if (name == "--all-idle") {
      no_value();
      o.all_idle = true;
    } else if (name == "--idle-for") {
      const std::string_view v = value();
      const auto d = parse_duration(v);
      if (!d)
        throw usage_error{
            fmt::format("--idle-for needs a duration such as 30m, 1h or 7d, not '{}'", v)};
      o.idle_for_ms = d->count();
    } else {
      throw usage_error{fmt::format("unknown option '{}'", name)};
    }
  }
  return o;
}

void expect_args(const ctl_options& o, std::size_t n, std::string_view synopsis) {
  if (o.positional.size() != n + 1) {
    throw usage_error{fmt::format("{} arguments; usage: mxpuppetctl {}",
                                  o.positional.size() < n + 1 ? "missing" : "too many", synopsis)};
  }
}

void expect_user(std::string_view user) {
  if (user.empty())
    throw usage_error{"USER must not be empty (a Matrix user ID like @alice:example.org)"};
}

}  // namespace mxp::client
