// parse_gateway and check_gateway: the `gateway:` section (listeners, limits, bridges).
#include "config/gateway.hpp"

#include <algorithm>
#include <variant>

#include "config/clients.hpp"
#include "config/config.hpp"
#include "config/grammar.hpp"
#include "config/yaml_walker.hpp"

namespace mxp::config {
namespace {

// `listen:` one "127.0.0.1:PORT" / "[::1]:PORT" or a list of them.
void read_listen(yaml_walker& yaml, const field& f, std::vector<tcp_listen_config>& out) {
  std::vector<std::string> items;
  yaml.read_string_list(f, items);
  if (f.value.IsSequence() && f.value.size() == 0)
    yaml.error(f, "must list at least one loopback address such as \"127.0.0.1:8449\"");
  for (const auto& s : items) {
    std::string why;
    auto endpoint = parse_loopback_endpoint(s, why);
    if (!endpoint) {
      yaml.error(f, why);
      continue;
    }
    tcp_listen_config l{std::move(endpoint->address), endpoint->port};
    if (std::find(out.begin(), out.end(), l) != out.end())
      yaml.error(f, "lists " + echoed(s) + " twice");
    else
      out.push_back(std::move(l));
  }
}

void parse_bridge(yaml_walker& yaml, const field& f, std::size_t index, gateway_bridge_config& b,
                  input_requests& inputs) {
  int tokens = 0;
  const auto request = [&](input_kind kind, const field& k) {
    if (auto s = yaml.get_nonempty_string(k))
      inputs.push_back({kind, yaml.reserve(k), std::move(*s), {}, index});
  };
  yaml.walk_map(f, {
                       {"name", true,
                        [&](const field& k) {
                          if (auto s = yaml.get_nonempty_string(k)) b.name = std::move(*s);
                        }},
                       {"token_file", false,
                        [&](const field& k) {
                          ++tokens;
                          request(input_kind::bridge_token, k);
                        }},
                       {"token_sha256", false,
                        [&](const field& k) {
                          ++tokens;
                          auto s = yaml.get_nonempty_string(k);
                          if (!s) return;
                          if (auto digest = parse_sha256_hex(*s))
                            b.token_sha256 = digest;
                          else
                            yaml.error(
                                k,
                                "expected the SHA-256 of the bridge token as 64 hexadecimal digits "
                                "(mxpuppetctl gateway-token prints it), got " +
                                    echoed(*s));
                        }},
                       {"login_secret_file", false,
                        [&](const field& k) { request(input_kind::bridge_login_secret, k); }},
                       {"allow", true, [&](const field& k) { read_allow(yaml, k, b.allow); }},
                   });
  if (!f.value.IsMap()) return;
  if (tokens > 1) yaml.error(f, "token_file and token_sha256 exclude each other");
  if (tokens == 0)
    yaml.error(f,
               "token_file or token_sha256 is required (mxpuppetctl gateway-token makes a token)");
}

}  // namespace

void parse_gateway(yaml_walker& yaml, const field& where, gateway_config& g, input_requests& inputs,
                   std::vector<source_location>& bridge_at,
                   std::optional<source_location>& default_at) {
  yaml.walk_map(
      where,
      {
          {"listen", true, [&](const field& f) { read_listen(yaml, f, g.listen); }},
          {"default_homeserver", false,
           [&](const field& f) {
             if (auto s = yaml.get_nonempty_string(f)) {
               g.default_homeserver = std::move(*s);
               default_at = yaml.reserve(f);
             }
           }},
          {"request_timeout", false,
           [&](const field& f) { yaml.read_duration(f, g.request_timeout); }},
          {"max_body_bytes", false,
           [&](const field& f) { yaml.read_integer(f, g.max_body_bytes); }},
          {"bridges", true,
           [&](const field& f) {
             if (!f.value.IsSequence()) {
               // In discovery mode (known_keys) the walker hands an empty map: walk one entry.
               if (f.value.IsMap() && f.value.size() == 0) {
                 gateway_bridge_config b;
                 parse_bridge(yaml, {f.path + "[0]", f.line, f.value}, 0, b, inputs);
                 return;
               }
               return yaml.error(
                   f, std::string{"expected a list of bridges, got "} + kind_of(f.value));
             }
             if (f.value.size() == 0) yaml.error(f, "must list at least one bridge");
             std::size_t index = 0;
             for (const auto& item : f.value) {
               const std::size_t i = index++;
               const field e{f.path + "[" + std::to_string(i) + "]", line_of(item, f.line), item};
               gateway_bridge_config b;
               parse_bridge(yaml, e, i, b, inputs);
               if (!b.name.empty() &&
                   std::any_of(g.bridges.begin(), g.bridges.end(),
                               [&](const gateway_bridge_config& o) { return o.name == b.name; }))
                 yaml.error(e, "duplicate bridge name " + echoed(b.name));
               bridge_at.push_back(yaml.reserve(e));
               g.bridges.push_back(std::move(b));
             }
           }},
      });
}

void check_gateway(const daemon_config& cfg, const std::vector<source_location>& bridge_at,
                   const std::optional<source_location>& default_at, diagnostics& diag) {
  if (!cfg.gateway) return;
  const auto& g = *cfg.gateway;
  if (default_at && !cfg.homeservers.contains(g.default_homeserver))
    diag.error(*default_at, "names no homeserver of homeservers: " + echoed(g.default_homeserver));
  for (std::size_t i = 0; i < g.bridges.size() && i < bridge_at.size(); ++i) {
    const auto& b = g.bridges[i];
    if (!b.token_sha256) continue;
    const auto same = std::find_if(
        g.bridges.begin(), g.bridges.begin() + static_cast<long>(i),
        [&](const gateway_bridge_config& o) { return o.token_sha256 == b.token_sha256; });
    if (same != g.bridges.begin() + static_cast<long>(i))
      diag.error(bridge_at[i], "has the same token as bridge " + echoed(same->name) +
                                   " (each bridge needs its own)");
    for (std::size_t j = 0; j < i; ++j)
      if (!b.login_secret.empty() && b.login_secret == g.bridges[j].login_secret)
        diag.error(bridge_at[i], "has the same login secret as bridge " +
                                     echoed(g.bridges[j].name) + " (each bridge needs its own)");
  }
}

}  // namespace mxp::config
