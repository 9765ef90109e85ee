// The `listen:` section: the Unix socket (and optional loopback TCP listener) the API is served
// on, its limits and timeouts, and parse_listen() which reads it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "config/external_inputs.hpp"

namespace mxp::config {

class yaml_walker;  // config/yaml_walker.hpp: the parse functions below take it
struct field;

using std::chrono::milliseconds;

struct tcp_listen_config {
  std::string address;  // numeric, without brackets: "127.0.0.1", "::1"
  std::uint16_t port = 0;
  bool operator==(const tcp_listen_config&) const = default;
};

struct listen_config {
  std::string unix_socket = "/run/mxpuppetd/mxpuppetd.sock";
  unsigned socket_mode = 0660;
  // Owner and group set on the socket file (user/group names are resolved at load); unset: left as
  // created.
  std::optional<std::uint32_t> socket_owner;
  std::optional<std::uint32_t> socket_group;
  milliseconds request_timeout{std::chrono::seconds{30}};  // whole API request, retries included
  milliseconds idle_timeout{std::chrono::seconds{60}};     // keep-alive connection idle
  // From a request's first byte to the end of its header, and from there to the end of its body
  // (a client sending a byte at a time cannot hold a connection longer). Unset: the idle timeout,
  // at most 10 s.
  std::optional<milliseconds> header_timeout;
  std::optional<milliseconds> body_timeout;
  milliseconds write_timeout{std::chrono::seconds{10}};  // an answer the client does not read
  std::size_t max_header_bytes = 8 * 1024;
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_connections = 1024;
  // Optional TCP listener (`tcp: 127.0.0.1:PORT` or `[::1]:PORT`), loopback addresses only;
  // every request on it must carry `Authorization: Bearer <api key>` of some client.
  std::optional<tcp_listen_config> tcp;
  bool operator==(const listen_config&) const = default;
};

// listen.header_timeout / body_timeout as they apply (their default follows idle_timeout).
inline milliseconds effective_phase_timeout(const listen_config& l,
                                            const std::optional<milliseconds>& configured) {
  return configured.value_or(std::min<milliseconds>(l.idle_timeout, std::chrono::seconds{10}));
}

// Reads `listen:` into `l`. User and group names are left to the loading step (`inputs`);
// `tcp_at` is where listen.tcp was set, for the check that some client can use it.
void parse_listen(yaml_walker& yaml, const field& where, listen_config& l, input_requests& inputs,
                  std::optional<source_location>& tcp_at);

}  // namespace mxp::config
