// parse_listen: the `listen:` section.
#include "config/listen.hpp"

#include <limits>

#include "config/grammar.hpp"
#include "config/yaml_walker.hpp"

namespace mxp::config {
namespace {

// A user (or group) given by number is taken as is; a name is looked up by the loading step.
void read_account(yaml_walker& yaml, const field& f, input_kind kind,
                  std::optional<std::uint32_t>& out, input_requests& inputs) {
  auto s = yaml.get_nonempty_string(f);
  if (!s) return;
  if (auto n = parse_decimal(*s); n && *n < std::numeric_limits<std::uint32_t>::max()) {
    out = static_cast<std::uint32_t>(*n);
    return;
  }
  inputs.push_back({kind, yaml.reserve(f), std::move(*s), {}, 0});
}

}  // namespace

void parse_listen(yaml_walker& yaml, const field& where, listen_config& l, input_requests& inputs,
                  std::optional<source_location>& tcp_at) {
  yaml.walk_map(
      where,
      {
          {"unix_socket", false,
           [&](const field& f) {
             if (auto s = yaml.get_nonempty_string(f)) l.unix_socket = std::move(*s);
           }},
          {"socket_mode", false,
           [&](const field& f) {
             if (!yaml.expect_scalar(f, "an octal file mode such as \"0660\"")) return;
             std::string why;
             if (auto mode = parse_file_mode(f.value.Scalar(), why))
               l.socket_mode = *mode;
             else
               yaml.error(f, why);
           }},
          {"socket_owner", false,
           [&](const field& f) {
             read_account(yaml, f, input_kind::socket_owner, l.socket_owner, inputs);
           }},
          {"socket_group", false,
           [&](const field& f) {
             read_account(yaml, f, input_kind::socket_group, l.socket_group, inputs);
           }},
          {"request_timeout", false,
           [&](const field& f) { yaml.read_duration(f, l.request_timeout); }},
          {"idle_timeout", false, [&](const field& f) { yaml.read_duration(f, l.idle_timeout); }},
          {"header_timeout", false,
           [&](const field& f) { yaml.read_duration(f, l.header_timeout.emplace()); }},
          {"body_timeout", false,
           [&](const field& f) { yaml.read_duration(f, l.body_timeout.emplace()); }},
          {"write_timeout", false, [&](const field& f) { yaml.read_duration(f, l.write_timeout); }},
          {"max_header_bytes", false,
           [&](const field& f) { yaml.read_integer(f, l.max_header_bytes); }},
          {"max_body_bytes", false,
           [&](const field& f) { yaml.read_integer(f, l.max_body_bytes); }},
          {"max_connections", false,
           [&](const field& f) { yaml.read_integer(f, l.max_connections); }},
          // Nothing but loopback: the listener is for bridges in containers on this host.
          {"tcp", false,
           [&](const field& f) {
             auto s = yaml.get_nonempty_string(f);
             if (!s) return;
             std::string why;
             auto endpoint = parse_loopback_endpoint(*s, why);
             if (!endpoint) return yaml.error(f, why);
             l.tcp = tcp_listen_config{std::move(endpoint->address), endpoint->port};
             tcp_at = source_location{f.path, f.line, after_everything};
           }},
      });
}

}  // namespace mxp::config
