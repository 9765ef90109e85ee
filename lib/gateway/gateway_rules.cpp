// gateway_rules: routes, targets, the login façade's checks and the handle table.
#include "gateway/gateway_rules.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <simdjson.h>

#include <fmt/format.h>

#include <stdexcept>
#include <variant>

#include "config/config.hpp"
#include "core/glob.hpp"
#include "core/percent_encoding.hpp"
#include "credentials/shared_secret.hpp"

namespace mxp::gateway {
namespace {

std::array<unsigned char, 32> sha256(std::string_view text) {
  std::array<unsigned char, 32> digest{};
  ::SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

std::string hex(const unsigned char* data, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 15];
  }
  return out;
}

// The part of a client path after its version: "/_matrix/client/v3/login" -> "/login".
std::string_view client_rest(std::string_view path) noexcept {
  constexpr std::string_view prefix = "/_matrix/client/";
  if (!path.starts_with(prefix)) return {};
  path.remove_prefix(prefix.size());
  const auto slash = path.find('/');
  if (slash == std::string_view::npos) return {};
  const auto version = path.substr(0, slash);
  if (version != "v3" && version != "r0") return {};
  return path.substr(slash);
}

}  // namespace

std::string_view to_string(route_class c) noexcept {
  switch (c) {
    case route_class::send:
      return "send";
    case route_class::media:
      return "media";
    case route_class::sync:
      return "sync";
    case route_class::other:
      break;
  }
  return "other";
}

route_class classify_route(std::string_view path) noexcept {
  if (path.starts_with("/_matrix/media/") || path.starts_with("/_matrix/client/v1/media/"))
    return route_class::media;
  if (path.ends_with("/sync")) return route_class::sync;
  if (path.find("/rooms/") != std::string_view::npos &&
      (path.find("/send/") != std::string_view::npos ||
       path.find("/state/") != std::string_view::npos ||
       path.find("/redact/") != std::string_view::npos))
    return route_class::send;
  return route_class::other;
}

bool is_proxied_path(std::string_view path) noexcept {
  return path.starts_with("/_matrix/client/") || path.starts_with("/_matrix/media/");
}

bool is_login_path(std::string_view path) noexcept {
  return client_rest(path) == "/login";
}

bool is_logout_path(std::string_view path) noexcept {
  const auto rest = client_rest(path);
  return rest == "/logout" || rest == "/logout/all";
}

bool allows(const bridge_entry& b, std::string_view user_id) noexcept {
  for (const auto& pattern : b.allow)
    if (glob_match(pattern, user_id)) return true;
  return false;
}

const bridge_entry* gateway_settings::bridge_by_token(std::string_view token) const noexcept {
  const auto digest = sha256(token);
  const bridge_entry* found = nullptr;
  for (const auto& b : bridges)  // no early exit: which bridge matched does not show in timing
    if (CRYPTO_memcmp(b.token_sha256.data(), digest.data(), digest.size()) == 0 && !found)
      found = &b;
  return found;
}

const bridge_entry* gateway_settings::bridge_by_login(std::string_view user_id,
                                                      std::string_view hmac_hex) const {
  const bridge_entry* found = nullptr;
  for (const auto& b : bridges) {
    if (b.login_secret.empty()) continue;
    const auto expected = credentials::shared_secret_token(b.login_secret, user_id);
    const auto& e = expected.reveal();
    if (e.size() == hmac_hex.size() && CRYPTO_memcmp(e.data(), hmac_hex.data(), e.size()) == 0 &&
        !found)
      found = &b;
  }
  return found;
}

const bridge_entry* gateway_settings::bridge_named(std::string_view name) const noexcept {
  for (const auto& b : bridges)
    if (b.name == name) return &b;
  return nullptr;
}

const homeserver_target* gateway_settings::homeserver(std::string_view name) const noexcept {
  const auto it = homeservers.find(name);
  return it == homeservers.end() ? nullptr : &it->second;
}

gateway_settings settings_from(const config::daemon_config& cfg) {
  gateway_settings s;
  for (const auto& [name, hs] : cfg.homeservers) {
    homeserver_target t;
    t.server_name = name;
    t.url = hs.url;
    t.ca_file = hs.ca_file;
    t.mode = hs.gateway;
    t.connect_timeout = hs.connect_timeout;
    if (const auto* as = std::get_if<config::appservice_login>(&hs.login))
      t.as_token = as->as_token;
    s.homeservers.emplace(name, std::move(t));
  }
  if (!cfg.gateway) return s;
  const auto& g = *cfg.gateway;
  s.default_homeserver = g.default_homeserver;
  if (s.default_homeserver.empty() && cfg.homeservers.size() == 1)
    s.default_homeserver = cfg.homeservers.begin()->first;
  s.request_timeout = g.request_timeout;
  s.max_body_bytes = g.max_body_bytes;
  for (const auto& b : g.bridges) {
    if (!b.token_sha256) continue;  // the loader refuses such a config
    s.bridges.push_back({b.name, *b.token_sha256, b.login_secret, b.allow});
  }
  return s;
}

std::optional<split_target> split(std::string_view target) {
  split_target out;
  std::string_view path = target, query;
  if (const auto q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  if (!path.starts_with('/')) return std::nullopt;
  if (constexpr std::string_view hs = "/_hs/"; path.starts_with(hs)) {
    path.remove_prefix(hs.size());
    const auto slash = path.find('/');
    if (slash == 0 || slash == std::string_view::npos) return std::nullopt;
    auto name = percent_decode(path.substr(0, slash));
    if (!name) return std::nullopt;
    out.routed_homeserver = std::move(*name);
    path.remove_prefix(slash);
  }
  out.path = std::string{path};
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = param.find('=');
    const auto key = param.substr(0, eq);
    const auto value = eq == std::string_view::npos ? std::string_view{} : param.substr(eq + 1);
    if (key == "user_id") {
      std::string v{value};
      for (auto& ch : v)
        if (ch == '+') ch = ' ';
      auto decoded = percent_decode(v);
      if (!decoded) return std::nullopt;
      out.user_id = std::move(*decoded);
      continue;
    }
    if (key == "org.matrix.msc3202.device_id") {
      out.had_device_id = true;
      continue;
    }
    if (!out.query.empty()) out.query += '&';
    out.query += param;
  }
  return out;
}

std::string join_target(const split_target& t, const std::string* user_id) {
  std::string out = t.path;
  if (!t.query.empty() || user_id) out += '?';
  out += t.query;
  if (user_id) {
    if (!t.query.empty()) out += '&';
    out += "user_id=";
    out += percent_encode(*user_id);
  }
  return out;
}

std::optional<login_request> parse_login_body(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded{body};
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc) != simdjson::SUCCESS || !doc.is_object()) return std::nullopt;
  login_request r;
  std::string_view v;
  if (doc["type"].get_string().get(v) != simdjson::SUCCESS) return std::nullopt;
  r.type = std::string{v};
  const char* credential_key = nullptr;
  if (r.type == "com.devture.shared_secret_auth")
    credential_key = "token";
  else if (r.type == "m.login.password")
    credential_key = "password";
  else
    return std::nullopt;
  if (doc[credential_key].get_string().get(v) != simdjson::SUCCESS) return std::nullopt;
  r.credential = std::string{v};
  simdjson::dom::element identifier;
  if (doc["identifier"].get(identifier) == simdjson::SUCCESS) {
    std::string_view type;
    if (identifier["type"].get_string().get(type) != simdjson::SUCCESS || type != "m.id.user" ||
        identifier["user"].get_string().get(v) != simdjson::SUCCESS)
      return std::nullopt;
    r.user = std::string{v};
  } else if (doc["user"].get_string().get(v) == simdjson::SUCCESS) {
    r.user = std::string{v};  // the legacy form some bridges still send
  } else {
    return std::nullopt;
  }
  if (doc["device_id"].get_string().get(v) == simdjson::SUCCESS) r.device_id = std::string{v};
  return r;
}

std::string_view login_flows_body() noexcept {
  return R"({"flows":[{"type":"com.devture.shared_secret_auth"},{"type":"m.login.password"}]})";
}

std::string handle_table::hash_hex(std::string_view handle) {
  const auto digest = sha256(handle);
  return hex(digest.data(), digest.size());
}

std::pair<secret_string, std::string> handle_table::issue(std::string bridge, std::string user_id,
                                                          std::int64_t now_ms) {
  std::array<unsigned char, 24> random{};
  if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1)
    throw std::runtime_error("RAND_bytes failed: cannot make a gateway handle");
  secret_string handle{"mxpg_" + hex(random.data(), random.size())};
  OPENSSL_cleanse(random.data(), random.size());
  auto hash = hash_hex(handle.reveal());
  table_[hash] = handle_entry{std::move(bridge), std::move(user_id), now_ms, now_ms};
  return {std::move(handle), std::move(hash)};
}

handle_entry* handle_table::find(std::string_view handle, std::int64_t now_ms) {
  const auto it = table_.find(hash_hex(handle));
  if (it == table_.end()) return nullptr;
  it->second.last_used_at_ms = now_ms;
  return &it->second;
}

std::string handle_table::forget(std::string_view handle) {
  auto hash = hash_hex(handle);
  return table_.erase(hash) ? hash : std::string{};
}

}  // namespace mxp::gateway
