// The `sessions:`, `store:` and `log:` sections: how many sessions are kept and for how long,
// how their tokens are renewed, where they persist, and how the daemon logs; their parsers.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>

namespace mxp::config {

class yaml_walker;  // config/yaml_walker.hpp: the parse functions below take it
struct field;

using std::chrono::milliseconds;

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
  bool operator==(const sessions_config&) const = default;
};

struct store_config {
  std::string path;  // SQLite file for sessions; empty: sessions live in memory only
  bool operator==(const store_config&) const = default;
};

// How log lines are written to stderr.
enum class log_format {
  text,  // "2024-05-01T12:00:00.000 info message"
  json,  // one object per line: {"time":"...","level":"info","message":"..."}
};

struct log_config {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
  log_format format = log_format::text;
  bool operator==(const log_config&) const = default;
};

void parse_sessions(yaml_walker& yaml, const field& where, sessions_config& s);
// store.path is made absolute against `base_dir` (the config file's directory).
void parse_store(yaml_walker& yaml, const field& where, store_config& st,
                 const std::filesystem::path& base_dir);
void parse_log(yaml_walker& yaml, const field& where, log_config& l);

}  // namespace mxp::config
