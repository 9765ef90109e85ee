// daemon_config: the validated, typed form of mxpuppetd's YAML configuration,
// and load_config(), which refuses anything it does not understand.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <variant>
#include <vector>

#include "core/secret.hpp"

namespace mxp::config {

using std::chrono::milliseconds;

enum class shared_secret_login_type {
  automatic,  // `auto`: read GET /login flows, prefer com.devture.shared_secret_auth
  devture,    // `com.devture.shared_secret_auth`: HMAC in "token"
  password,   // `m.login.password`: HMAC in "password"
};

struct shared_secret_login {
  secret_string secret;  // contents of secret_file, trailing newline stripped
  std::string secret_file;
  shared_secret_login_type login_type = shared_secret_login_type::automatic;
};

enum class jwt_flavor {
  synapse,  // Synapse's own jwt_config: {"type":"org.matrix.login.jwt","token":JWT}
  famedly,  // synapse-token-authenticator: {"type":"com.famedly.login.token",...}
};

// `method: jwt`: a fresh short-lived JWT is minted for every login.
struct jwt_login {
  jwt_flavor flavor = jwt_flavor::synapse;
  std::string algorithm;  // JOSE name as written: HS256..HS512, RS*, PS*, ES256..ES512, EdDSA
  // HS*: contents of secret_file (trailing newline stripped); others: the PEM text of
  // private_key_file. Whether the key fits the algorithm is checked by the JWT signer
  // when the homeserver client is built; `key_origin` names the key for that error.
  secret_string key;
  std::string key_file;                // resolved path of secret_file / private_key_file
  std::string key_origin;              // "FILE:LINE: homeservers.NAME.login.private_key_file"
  std::string subject_claim = "sub";   // flavor synapse only (jwt_config.subject_claim)
  std::optional<std::string> issuer;   // "iss" claim when set
  std::vector<std::string> audiences;  // "aud" claim: none, one (a string) or several
  milliseconds token_lifetime{std::chrono::seconds{60}};  // exp - iat, whole seconds
};

// `method: appservice`: m.login.application_service with the bridge's as_token.
struct appservice_login {
  secret_string as_token;         // from as_token_file, or the registration's as_token
  std::string as_token_file;      // resolved path, when given
  std::string registration_file;  // resolved path, when given
  // From a registration: namespaces.users[].regex as written, and compiled (ECMAScript).
  // A user ID is inside when a regex matches at its start (Python's re.match, as Synapse
  // does), or when it is the registration's sender. Empty (as_token_file): no local check.
  std::vector<std::string> user_regex_sources;
  std::vector<std::regex> user_regexes;
  std::string sender_localpart;  // the registration's sender_localpart, "" when none
};

// `method: synapse_admin`: POST /_synapse/admin/v1/users/{userId}/login with an admin token.
struct synapse_admin_login {
  secret_string admin_token;  // contents of admin_token_file, trailing newline stripped
  std::string admin_token_file;
  milliseconds token_lifetime{std::chrono::hours{24}};  // valid_until_ms = now + this
};

using login_config =
    std::variant<shared_secret_login, jwt_login, appservice_login, synapse_admin_login>;

struct homeserver_config {
  std::string server_name;  // the map key, e.g. "example.com" or "localhost:8448"
  std::string url;          // base URL without trailing '/'; empty -> .well-known discovery
  std::string ca_file;      // optional PEM bundle; empty -> system CA store
  login_config login;
  std::string device_id = "MXPUPPETD";
  std::string device_display_name = "mxpuppetd double puppet";
  unsigned max_concurrent_logins = 4;
  milliseconds request_timeout{std::chrono::seconds{20}};  // one homeserver request
  milliseconds connect_timeout{std::chrono::seconds{10}};  // TCP connect + TLS handshake
  std::size_t max_response_bytes = 1024 * 1024;            // body limit for answers
  bool request_refresh_token = false;  // copied from sessions.refresh_tokens at load
  std::string fingerprint;             // the YAML of this entry as loaded, for reload comparisons
};

// Would a client built from `a` behave like one built from `b`? (Same settings and same
// secret material: a rotated secret file counts as a change.) Used by reload.
bool same_homeserver(const homeserver_config& a, const homeserver_config& b);

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
};

// When tokens that expire are renewed.
enum class refresh_policy {
  on_demand,   // when a request finds less than refresh_margin left (that request waits)
  background,  // a timer renews sessions in use before they get within the margin
};

struct sessions_config {
  std::size_t max = 100'000;
  milliseconds idle_timeout{std::chrono::hours{24 * 7}};
  bool revoke_on_evict = true;
  bool revoke_on_shutdown = false;
  // Logins ask for a refresh token (Matrix v1.3, "refresh_token": true in the body).
  bool refresh_tokens = false;
  // A token with less than this left is renewed before it is handed out.
  milliseconds refresh_margin{std::chrono::seconds{60}};
  refresh_policy refresh = refresh_policy::on_demand;
  // A session unused for longer than this is checked with whoami before it is handed out; unset:
  // never.
  std::optional<milliseconds> validate_after;
};

struct store_config {
  std::string path;  // SQLite file for sessions; empty: sessions live in memory only
};

// How log lines are written to stderr.
enum class log_format {
  text,  // "2024-05-01T12:00:00.000 info message"
  json,  // one object per line: {"time":"...","level":"info","message":"..."}
};

struct log_config {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
  log_format format = log_format::text;
};

// One `clients:` entry: which peers it covers (at most one of uid, gid, user, group; names
// are resolved when the config is loaded), the API key it presents over TCP (api_key_file or
// api_key_sha256; at least one way of identifying it), and which user IDs it may ask for.
struct client_config {
  std::string name;
  std::optional<std::uint32_t> uid;  // from `uid:` or `user:`
  std::optional<std::uint32_t>
      gid;  // from `gid:` or `group:`; matches primary and supplementary groups
  std::vector<std::string> allow;  // globs on the full user ID: '*' any run, '?' one character
  // SHA-256 of the client's API key: given as `api_key_sha256`, or computed from the contents of
  // `api_key_file` (one trailing newline stripped). The key itself is not kept.
  std::optional<std::array<unsigned char, 32>> api_key_sha256;
  std::string api_key_file;  // resolved path, when given
};

struct daemon_config {
  std::string source_file;  // path the config was loaded from
  listen_config listen;
  std::map<std::string, homeserver_config> homeservers;  // keyed by server name
  sessions_config sessions;
  store_config store;
  // Access control of the socket API; nullopt (no `clients:` section): every peer may ask for
  // anything.
  std::optional<std::vector<client_config>> clients;
  log_config log;
  // SIGTERM: callers answered, revoke_on_shutdown logouts done, the process gone within this.
  // Capped below the unit's TimeoutStopSec=30s, so systemd never has to SIGKILL.
  milliseconds shutdown_grace{std::chrono::seconds{10}};
};

// listen.header_timeout / body_timeout as they apply (their default follows idle_timeout).
inline milliseconds effective_phase_timeout(const listen_config& l,
                                            const std::optional<milliseconds>& configured) {
  return configured.value_or(std::min<milliseconds>(l.idle_timeout, std::chrono::seconds{10}));
}

struct load_result {
  std::optional<daemon_config> config;  // set only when errors is empty
  std::vector<std::string> errors;      // "FILE:LINE: KEY: what is wrong", one per problem
  std::vector<std::string>
      warnings;  // same form; loading still succeeds (e.g. a secret file readable by others)
};

// Loads and validates a YAML config file, including reading every secret file
// it names (paths relative to the config file's directory). Never throws.
load_result load_config_file(const std::string& path);

// Same, from YAML text; `source_name` is used in error messages and `base_dir`
// resolves relative secret paths.
load_result load_config_text(const std::string& yaml_text, const std::string& source_name,
                             const std::string& base_dir);

}  // namespace mxp::config
