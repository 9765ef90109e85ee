// parse_homeservers: server-name grammar, URL, device and limits of each `homeservers:` entry.
#include "config/homeservers.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <variant>

#include "config/grammar.hpp"
#include "config/yaml_walker.hpp"
#include "core/server_name.hpp"

namespace mxp::config {
namespace {

void parse_homeserver(yaml_walker& yaml, const field& where, homeserver_config& hs,
                      input_requests& inputs) {
  bool concurrency_given = false;
  std::optional<field> mode_at;
  yaml.walk_map(
      where, {
                 {"url", false,
                  [&](const field& f) {
                    auto s = yaml.get_string(f);
                    if (!s) return;
                    std::string why;
                    if (auto url = normalise_url(*s, why))
                      hs.url = std::move(*url);
                    else
                      yaml.error(f, echoed(*s) + " " + why);
                  }},
                 {"ca_file", false,
                  [&](const field& f) {
                    if (auto s = yaml.get_nonempty_string(f))
                      inputs.push_back(
                          {input_kind::ca_file, yaml.reserve(f), std::move(*s), hs.server_name, 0});
                  }},
                 {"login", true,
                  [&](const field& f) { parse_login(yaml, f, hs.server_name, hs.login, inputs); }},
                 {"device_id", false,
                  [&](const field& f) {
                    auto s = yaml.get_string(f);
                    if (!s) return;
                    if (is_valid_device_id(*s))
                      hs.device_id = std::move(*s);
                    else
                      yaml.error(f, "expected 1 to 64 characters from A-Z a-z 0-9 _ . -, got " +
                                        echoed(*s));
                  }},
                 {"device_display_name", false,
                  [&](const field& f) { yaml.read_string(f, hs.device_display_name); }},
                 {"max_concurrent_logins", false,
                  [&](const field& f) {
                    yaml.read_integer(f, hs.max_concurrent_logins, 1, 1000);
                    concurrency_given = true;
                  }},
                 {"request_timeout", false,
                  [&](const field& f) { yaml.read_duration(f, hs.request_timeout); }},
                 {"connect_timeout", false,
                  [&](const field& f) { yaml.read_duration(f, hs.connect_timeout); }},
                 {"max_response_bytes", false,
                  [&](const field& f) { yaml.read_integer(f, hs.max_response_bytes); }},
                 {"gateway_mode", false,
                  [&](const field& f) {
                    auto s = yaml.get_string(f);
                    if (!s) return;
                    if (*s == "session")
                      hs.gateway = gateway_mode::session;
                    else if (*s == "assert")
                      hs.gateway = gateway_mode::assert_identity, mode_at = f;
                    else
                      yaml.error(f, "expected session or assert, got " + echoed(*s));
                  }},
             });
  // The REST module's check runs on Synapse's only reactor thread: its password logins are
  // serialised homeserver-wide anyway, and a second one in flight only waits there.
  if (!concurrency_given && std::holds_alternative<rest_backend_login>(hs.login))
    hs.max_concurrent_logins = 1;
  // MAS takes a device scope only for IDs of [A-Za-z0-9-], at least 10 characters.
  if (const auto* mas = std::get_if<mas_login>(&hs.login); mas && mas->device_scope) {
    const auto& d = hs.device_id;
    const bool fits = d.size() >= 10 && std::all_of(d.begin(), d.end(), [](char c) {
                        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                               (c >= '0' && c <= '9') || c == '-';
                      });
    if (!fits)
      yaml.error({join(where.path, "login.device_scope"), mas->device_scope_line, {}},
                 "MAS needs a device_id of at least 10 characters from A-Z a-z 0-9 - for a "
                 "device scope, got " +
                     echoed(d));
  }
  // Identity assertion sends the appservice's as_token: only an appservice login has one.
  if (mode_at && !std::holds_alternative<appservice_login>(hs.login))
    yaml.error(*mode_at, "assert needs login.method: appservice (the as_token it asserts with)");
}

}  // namespace

void parse_homeservers(yaml_walker& yaml, const field& where,
                       std::map<std::string, homeserver_config>& out, input_requests& inputs) {
  const YAML::Node& node = where.value;
  if (!node.IsMap()) {
    yaml.error(where, std::string{"expected a map of server names to homeserver settings, got "} +
                          kind_of(node));
    return;
  }
  if (node.size() == 0) {
    yaml.error(where, "at least one homeserver is required");
    return;
  }
  for (const auto& kv : node) {
    const YAML::Node key_node = kv.first;
    const int line = line_of(key_node, where.line);
    if (!key_node.IsScalar()) {
      yaml.error({join(where.path, "?"), line, kv.second}, "server names must be plain strings");
      continue;
    }
    const std::string name = key_node.Scalar();
    const field f{join(where.path, name), line, kv.second};
    if (out.contains(name)) {
      yaml.error(f, "duplicate homeserver");
      continue;
    }
    // The same grammar as the user-ID parser (core/server_name.hpp), so that every name
    // accepted here can be asked for, and the other way round.
    if (!is_valid_server_name(name)) {
      yaml.error(f,
                 "invalid server name (expected a host name, IPv4 address or [IPv6] address, "
                 "optionally followed by :port)");
    } else if (name.size() > max_server_name_in_user_id) {
      yaml.error(f, fmt::format("server name too long: a user ID on it would exceed {} bytes",
                                max_user_id_bytes));
    }
    homeserver_config hs;
    hs.server_name = name;
    parse_homeserver(yaml, f, hs, inputs);
    hs.fingerprint = YAML::Dump(kv.second);
    out.emplace(name, std::move(hs));
  }
}

}  // namespace mxp::config
