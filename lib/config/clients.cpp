// parse_clients and check_client_keys: the `clients:` list.
#include "config/clients.hpp"

#include <algorithm>

#include "config/grammar.hpp"
#include "config/yaml_walker.hpp"

namespace mxp::config {

void read_allow(yaml_walker& yaml, const field& f, std::vector<std::string>& out) {
  if (!f.value.IsSequence()) {
    yaml.error(f,
               std::string{"expected a list of user ID globs such as [\"@*:example.com\"], got "} +
                   kind_of(f.value));
    return;
  }
  if (f.value.size() == 0) yaml.error(f, "must list at least one user ID glob");
  std::size_t index = 0;
  for (const auto& item : f.value) {
    const field g{f.path + "[" + std::to_string(index++) + "]", line_of(item, f.line), item};
    auto s = yaml.get_nonempty_string(g);
    if (!s) continue;
    if (s->front() != '@' && s->front() != '*' && s->front() != '?')
      yaml.error(g, "a user ID glob starts with '@' (or a wildcard), got " + echoed(*s));
    else
      out.push_back(std::move(*s));
  }
}

void parse_clients(yaml_walker& yaml, const field& where, std::vector<client_config>& clients,
                   input_requests& inputs, std::vector<source_location>& entries) {
  const YAML::Node& node = where.value;
  if (!node.IsSequence()) {
    yaml.error(where, std::string{"expected a list of clients, got "} + kind_of(node));
    return;
  }
  std::size_t index = 0;
  for (const auto& item : node) {
    const std::size_t i = index++;
    const field f{where.path + "[" + std::to_string(i) + "]", line_of(item, where.line), item};
    client_config c;
    int identities = 0, keys = 0;
    const auto request = [&](input_kind kind, const field& k) {
      if (auto s = yaml.get_nonempty_string(k))
        inputs.push_back({kind, yaml.reserve(k), std::move(*s), {}, i});
    };
    yaml.walk_map(
        f, {
               {"name", true,
                [&](const field& k) {
                  if (auto s = yaml.get_nonempty_string(k)) c.name = std::move(*s);
                }},
               {"uid", false,
                [&](const field& k) {
                  ++identities;
                  if (auto v = yaml.get_integer(k, 0, 4294967294ULL))
                    c.uid = static_cast<std::uint32_t>(*v);
                }},
               {"gid", false,
                [&](const field& k) {
                  ++identities;
                  if (auto v = yaml.get_integer(k, 0, 4294967294ULL))
                    c.gid = static_cast<std::uint32_t>(*v);
                }},
               {"user", false,
                [&](const field& k) {
                  ++identities;
                  request(input_kind::client_user, k);
                }},
               {"group", false,
                [&](const field& k) {
                  ++identities;
                  request(input_kind::client_group, k);
                }},
               {"allow", true, [&](const field& k) { read_allow(yaml, k, c.allow); }},
               {"api_key_file", false,
                [&](const field& k) {
                  ++keys;
                  request(input_kind::client_api_key, k);
                }},
               {"api_key_sha256", false,
                [&](const field& k) {
                  ++keys;
                  auto s = yaml.get_nonempty_string(k);
                  if (!s) return;
                  if (auto digest = parse_sha256_hex(*s))
                    c.api_key_sha256 = digest;
                  else
                    yaml.error(k,
                               "expected the SHA-256 of the key as 64 hexadecimal digits (printf "
                               "%s KEY | sha256sum), got " +
                                   echoed(*s));
                }},
           });
    if (f.value.IsMap() && identities > 1)
      yaml.error(f, "at most one of uid, gid, user or group may be given");
    if (f.value.IsMap() && keys > 1)
      yaml.error(f, "api_key_file and api_key_sha256 exclude each other");
    if (f.value.IsMap() && identities == 0 && keys == 0)
      yaml.error(f,
                 "one of uid, gid, user or group (Unix socket peers) or of api_key_file or "
                 "api_key_sha256 "
                 "(TCP clients) is required");
    if (!c.name.empty() && std::any_of(clients.begin(), clients.end(),
                                       [&](const client_config& o) { return o.name == c.name; }))
      yaml.error(f, "duplicate client name " + echoed(c.name));
    entries.push_back(yaml.reserve(f));
    clients.push_back(std::move(c));
  }
}

void check_client_keys(const std::vector<client_config>& clients,
                       const std::vector<source_location>& entries, diagnostics& diag) {
  for (std::size_t i = 0; i < clients.size() && i < entries.size(); ++i) {
    const auto& c = clients[i];
    if (!c.api_key_sha256) continue;
    const auto same =
        std::find_if(clients.begin(), clients.begin() + static_cast<long>(i),
                     [&](const client_config& o) { return o.api_key_sha256 == c.api_key_sha256; });
    if (same != clients.begin() + static_cast<long>(i))
      diag.error(entries[i], "has the same API key as client " + echoed(same->name) +
                                 " (each client needs its own)");
  }
}

}  // namespace mxp::config
