// load_config_text / load_config_file: parse the sections, run the loading step, then the
// checks that need the whole loaded file; every problem as "FILE:LINE: KEY.PATH: message".
#include "config/config.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <exception>
#include <filesystem>

#include "config/yaml_walker.hpp"
#include "core/duration.hpp"
#include "credentials/secret_file.hpp"

namespace mxp::config {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t max_config_file_bytes = 4 * 1024 * 1024;
constexpr milliseconds max_shutdown_grace{std::chrono::seconds{25}};

// What the parse leaves for later: the loading step's requests, and places for late checks.
struct parse_output {
  input_requests inputs;
  std::optional<source_location> tcp_at;                 // listen.tcp, when set
  std::vector<source_location> client_at;                // each clients: entry
  std::vector<source_location> bridge_at;                // each gateway.bridges entry
  std::optional<source_location> default_homeserver_at;  // gateway.default_homeserver
  std::optional<source_location> gateway_at;             // the gateway: section
};

void parse_root(yaml_walker& yaml, const YAML::Node& root, daemon_config& cfg,
                const fs::path& base_dir, parse_output& out) {
  yaml.walk_map(
      {"", 1, root},
      {
          {"listen", false,
           [&](const field& f) { parse_listen(yaml, f, cfg.listen, out.inputs, out.tcp_at); }},
          {"homeservers", true,
           [&](const field& f) { parse_homeservers(yaml, f, cfg.homeservers, out.inputs); }},
          {"sessions", false, [&](const field& f) { parse_sessions(yaml, f, cfg.sessions); }},
          {"store", false, [&](const field& f) { parse_store(yaml, f, cfg.store, base_dir); }},
          {"clients", false,
           [&](const field& f) {
             parse_clients(yaml, f, cfg.clients.emplace(), out.inputs, out.client_at);
           }},
          {"log", false, [&](const field& f) { parse_log(yaml, f, cfg.log); }},
          {"gateway", false,
           [&](const field& f) {
             out.gateway_at = source_location{f.path, f.line, after_everything};
             parse_gateway(yaml, f, cfg.gateway.emplace(), out.inputs, out.bridge_at,
                           out.default_homeserver_at);
           }},
          {"shutdown_grace", false,
           [&](const field& f) {
             yaml.read_duration(f, cfg.shutdown_grace);
             if (cfg.shutdown_grace > max_shutdown_grace)
               yaml.error(f, "must be at most " + format_duration(max_shutdown_grace) +
                                 " (below the unit's TimeoutStopSec=30s)");
           }},
      });
}

// Checks that need the loaded file: API keys are known only once their files are read.
void check_loaded(const daemon_config& cfg, const parse_output& out, diagnostics& diag) {
  if (cfg.clients) check_client_keys(*cfg.clients, out.client_at, diag);
  if (cfg.gateway) {
    check_gateway(cfg, out.bridge_at, out.default_homeserver_at, diag);
    if (cfg.gateway->default_homeserver.empty() && cfg.homeservers.size() > 1 && out.gateway_at)
      diag.error(*out.gateway_at,
                 "default_homeserver is required when there is more than one homeserver (bridges "
                 "that name none are routed there)");
  }
  // No anonymous access over TCP: the listener is useless (and refused) without a client that has
  // a key.
  if (out.tcp_at && (!cfg.clients || std::none_of(cfg.clients->begin(), cfg.clients->end(),
                                                  [](const client_config& c) {
                                                    return c.api_key_sha256.has_value();
                                                  })))
    diag.error(*out.tcp_at,
               "no client can use the TCP listener: give a clients: entry api_key_file or "
               "api_key_sha256");
}

load_result load(const std::string& text, const std::string& source, const fs::path& base_dir) {
  diagnostics diag{source};
  daemon_config cfg;
  cfg.source_file = source;
  try {
    if (auto root = load_single_document(text, diag)) {
      yaml_walker yaml{diag};
      parse_output out;
      parse_root(yaml, *root, cfg, base_dir, out);
      load_external_inputs(out.inputs, cfg, base_dir, diag);
      check_loaded(cfg, out, diag);
    }
  } catch (const YAML::Exception& e) {
    diag.error_text(line_of(e.mark), "error: " + e.msg);
  } catch (const std::exception& e) {
    diag.error_text(1, std::string{"error: "} + e.what());
  }
  load_result result;
  result.errors = diag.take_errors();
  result.warnings = diag.take_warnings();
  // Homeserver clients decide per login whether to ask for a refresh token.
  for (auto& [_, hs] : cfg.homeservers) hs.request_refresh_token = cfg.sessions.refresh_tokens;
  if (result.errors.empty()) result.config = std::move(cfg);
  return result;
}

}  // namespace

std::set<std::string> known_keys() {
  std::set<std::string> keys;
  // The parse walks only what a document holds; the walker in discovery mode walks every section
  // on its own, and this document adds what is not a walk_map: a server name, a clients: entry,
  // and each login method (whose keys depend on `method:`).
  for (const auto method : login_method_names()) {
    YAML::Node root{YAML::NodeType::Map};
    root["homeservers"]["*"]["login"]["method"] = std::string{method};
    root["clients"].push_back(YAML::Node{YAML::NodeType::Map});
    diagnostics diag{"known_keys"};
    yaml_walker yaml{diag, keys};
    daemon_config cfg;
    parse_output out;
    parse_root(yaml, root, cfg, {}, out);
  }
  return keys;
}

load_result load_config_text(const std::string& yaml_text, const std::string& source_name,
                             const std::string& base_dir) {
  try {
    return load(yaml_text, source_name, fs::path{base_dir});
  } catch (const std::exception& e) {  // allocation failure and the like
    load_result r;
    r.errors.push_back(source_name + ":1: error: " + e.what());
    return r;
  }
}

load_result load_config_file(const std::string& path) {
  try {
    std::string why;
    auto text = credentials::read_small_file(fs::path{path}, max_config_file_bytes, why);
    if (!text) {
      load_result r;
      r.errors.push_back(path + ": cannot read config file: " + why);
      return r;
    }
    std::error_code ec;
    fs::path dir = fs::path{path}.parent_path();
    if (dir.empty()) dir = ".";
    auto absolute = fs::absolute(dir, ec);
    if (!ec) dir = std::move(absolute);
    auto result = load_config_text(*text, path, dir.lexically_normal().string());
    OPENSSL_cleanse(text->data(), text->size());  // a config may hold a pasted secret
    return result;
  } catch (const std::exception& e) {
    load_result r;
    r.errors.push_back(path + ": error: " + e.what());
    return r;
  }
}

}  // namespace mxp::config
