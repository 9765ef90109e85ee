// http_api: routing, access control and the handlers of the socket API.
#include "api/http_api.hpp"

#include <openssl/crypto.h>
#include <simdjson.h>
#include <boost/beast/http/status.hpp>

#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <functional>
#include <optional>

#include "api/api_answers.hpp"
#include "api/api_routes.hpp"
#include "core/byte_scan.hpp"
#include "core/errc.hpp"
#include "matrix/user_id.hpp"

namespace mxp::api {

namespace asio = boost::asio;
using std::chrono::steady_clock;

std::string_view reason_phrase(int status) noexcept {
  return boost::beast::http::obsolete_reason(
      boost::beast::http::int_to_status(static_cast<unsigned>(status)));
}

void serialize(const api_response& res, bool keep_alive, std::string& out) {
  out.clear();
  out += "HTTP/1.1 ";
  out += std::to_string(res.status);
  out += ' ';
  out += reason_phrase(res.status);
  out += "\r\nContent-Type: ";
  out += res.content_type.empty() ? std::string_view{"application/json"} : res.content_type;
  out += "\r\nContent-Length: ";
  out += std::to_string(res.body.size());
  out += keep_alive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n";
  out += res.body;
}

http_api::http_api(sessions::session_pool& pool, std::chrono::milliseconds request_timeout)
    : pool_(pool), request_timeout_(request_timeout), started_(steady_clock::now()) {}

namespace {

std::string_view client_name(const access_decision& d) {
  return d.client ? std::string_view{*d.client} : "-";
}

}  // namespace

// TCP requests: the entry whose API key the request presents; null (and a 401 in `res`) when it
// presents none or one that no entry has. Never logs the key.
const config::client_config* http_api::authenticate(const api_request& req,
                                                    api_response& res) const {
  std::string_view h = req.authorization;
  constexpr std::string_view scheme =
      "bearer";  // auth-scheme names are case-insensitive (RFC 9110)
  const bool bearer = h.size() > scheme.size() && h[scheme.size()] == ' ' &&
                      std::equal(scheme.begin(), scheme.end(), h.begin(),
                                 [](char a, char b) { return a == (b | 0x20); });
  std::string_view key;
  if (bearer) {
    key = h.substr(scheme.size() + 1);
    while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
    while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
  }
  if (key.empty()) {
    spdlog::info(
        "access: refused {} {} to TCP peer {}: {}", req.method, req.target, req.tcp_peer,
        h.empty() ? "no Authorization header" : "Authorization is not \"Bearer <api key>\"");
    write_error(res, 401, "M_MISSING_TOKEN",
                "an API key is required: Authorization: Bearer <api key>");
    return nullptr;
  }
  const auto* client = access_ ? access_->client_with_key(key) : nullptr;
  if (!client) {
    spdlog::info("access: refused {} {} to TCP peer {}: unknown API key", req.method, req.target,
                 req.tcp_peer);
    write_error(res, 401, "M_UNKNOWN_TOKEN", "unknown API key");
  }
  return client;
}

// False (and a 403 in `res`) when the peer may not have this user's token; no login happens then.
bool http_api::user_allowed(const api_request& req, const config::client_config* key_client,
                            std::string_view user_id, api_response& res) const {
  if (key_client) {  // a TCP request, authenticated by the key of this entry
    if (access_->allows(*key_client, user_id).allowed) {
      spdlog::debug("access: allowed {} to TCP peer {} (client {})", user_id, req.tcp_peer,
                    key_client->name);
      return true;
    }
    spdlog::info("access: denied {} to TCP peer {} (client {}: no allow glob matches)", user_id,
                 req.tcp_peer, key_client->name);
    write_error(res, 403, "M_FORBIDDEN", "this client may not request this user");
    return false;
  }
  if (!access_ || access_->open()) return true;
  const auto d = access_->allows(req.peer, user_id);
  const auto uid = req.peer ? static_cast<long long>(req.peer->uid) : -1LL;
  const auto pid = req.peer ? req.peer->pid : 0;
  if (d.allowed) {
    spdlog::debug("access: allowed {} to peer uid={} pid={} (client {})", user_id, uid, pid,
                  client_name(d));
    return true;
  }
  spdlog::info("access: denied {} to peer uid={} pid={} ({})", user_id, uid, pid,
               d.client ? "client " + *d.client + ": no allow glob matches"
                        : std::string{"no client entry covers it"});
  write_error(res, 403, "M_FORBIDDEN", "this client may not request this user");
  return false;
}

// False (and a 403 in `res`) when `clients:` is configured and no entry covers the peer.
bool http_api::peer_admitted(const api_request& req, const config::client_config* key_client,
                             std::string_view what, api_response& res) const {
  if (key_client) {  // every entry with a key is known
    spdlog::debug("access: allowed {} to TCP peer {} (client {})", what, req.tcp_peer,
                  key_client->name);
    return true;
  }
  if (!access_ || access_->open()) return true;
  const auto d = access_->admits(req.peer);
  const auto uid = req.peer ? static_cast<long long>(req.peer->uid) : -1LL;
  const auto pid = req.peer ? req.peer->pid : 0;
  if (d.allowed) {
    spdlog::debug("access: allowed {} to peer uid={} pid={} (client {})", what, uid, pid,
                  client_name(d));
    return true;
  }
  spdlog::info("access: denied {} to peer uid={} pid={} (no client entry covers it)", what, uid,
               pid);
  write_error(res, 403, "M_FORBIDDEN", "this client is not known to mxpuppetd");
  return false;
}

// Keeps `res`, the token answer of `t`, ready with the session for the hot path (keep-alive form).
const std::string& http_api::keep_rendering(const sessions::token_view& t,
                                            const api_response& res) {
  if (const auto* ready = t.ready_rendering()) return *ready;
  serialize(res, /*keep_alive=*/true, rendered_bytes_);
  t.rendered->wipe();                         // the old token's bytes
  t.rendered->bytes.assign(rendered_bytes_);  // capacity as needed: one per session
  t.rendered->key = t.render_key;
  OPENSSL_cleanse(rendered_bytes_.data(), rendered_bytes_.capacity());
  return t.rendered->bytes;
}

bool http_api::answer_cached(std::string_view target, const peer_credentials* peer,
                             connection_access& access, std::string& out) {
  constexpr std::string_view users = "/v1/users/", token = "/token";
  if (target.size() <= users.size() || std::memcmp(target.data(), users.data(), users.size()) != 0)
    return false;
  // One pass over the user segment: an undecoded segment without '%' is the user ID itself.
  const char* p = target.data() + users.size();
  const char* const end = target.data() + target.size();
  const char* const segment = p;
  p = core::skip_none_of(p, end, '/', '%', '?');
  while (p < end && *p != '/' && *p != '%' && *p != '?') ++p;
  if (p == segment || static_cast<std::size_t>(end - p) < token.size() ||
      std::memcmp(p, token.data(), token.size()) != 0)  // constant size: a few loads
    return false;
  const std::string_view user{segment, static_cast<std::size_t>(p - segment)};
  p += token.size();
  std::string_view query;
  if (p < end) {
    if (*p != '?') return false;
    query = {p + 1, static_cast<std::size_t>(end - p - 1)};
  }
  const auto min_valid = query.empty() ? 0 : min_valid_from_query(query);
  if (min_valid < 0) return false;
  if (access_ && !access_->open()) {
    if (access.policy_generation != policy_generation_) {
      access.every_user = access_->allows_every_user(peer);
      access.policy_generation = policy_generation_;
    }
    // Refusals are handle_now's: it logs them and answers 403.
    if (!access.every_user && !access_->allows(peer, user).allowed) return false;
  }
  auto t = pool_.find_ready(user, min_valid);
  if (!t) return false;
  if (access_ && !access_->open() && spdlog::should_log(spdlog::level::debug)) {
    const auto d = access_->allows(peer, user);
    spdlog::debug("access: allowed {} to peer uid={} pid={} (client {})", user,
                  peer ? static_cast<long long>(peer->uid) : -1LL, peer ? peer->pid : 0,
                  client_name(d));
  }
  const std::string* answer = t->ready_rendering();
  if (!answer) {  // the token (or its homeserver) changed since it was last answered
    rendering_.clear();
    write_token(rendering_, *t);
    answer = &keep_rendering(*t, rendering_);
    OPENSSL_cleanse(rendering_.body.data(), rendering_.body.capacity());
  }
  out += *answer;
  if (metrics_) metrics_->count_request(endpoint::token, 200);
  return true;
}

bool http_api::handle_now(const api_request& req, api_response& res, pending_request& pending) {
  const auto r = match(req.target);
  res.route = to_endpoint(r.kind);
  pending.target = r;
  pending.key_client = nullptr;
  pending.user_allowed = false;
  if (req.tcp && !(pending.key_client = authenticate(req, res))) return true;
  if (r.kind == route_kind::token && req.method == "GET") {
    // Fast path: an undecoded segment without '%' is the user ID itself.
    if (r.user_segment.find('%') != std::string_view::npos) return false;
    const auto min_valid = r.query.empty() ? 0 : min_valid_from_query(r.query);
    if (min_valid < 0) return false;
    if (!user_allowed(req, pending.key_client, r.user_segment, res)) return true;
    pending.user_allowed = true;  // the segment has no '%': it is the user ID handle() decodes
    auto t = pool_.find_ready(r.user_segment, min_valid);
    if (!t) return false;
    write_token(res, *t);
    keep_rendering(*t, res);
    return true;
  }
  if (r.kind == route_kind::healthz && req.method == "GET") {
    if (!ready_) {
      write_error(res, 503, "MXP_UNAVAILABLE", "not ready");
      return true;
    }
    res.status = 200;
    res.body = R"({"status":"ok"})";
    return true;
  }
  return false;
}

// Goes on from where handle_now stopped: the request is routed and its API key checked once.
// The client entry is used only before the first co_await, so a reload cannot replace the
// policy under it.
asio::awaitable<void> http_api::handle(api_request req, pending_request pending,
                                       api_response& res) {
  const auto* key_client = pending.key_client;
  const auto& r = pending.target;
  const auto deadline = steady_clock::now() + request_timeout_;
  if (r.kind == route_kind::unknown)
    co_return write_error(res, 404, "M_UNRECOGNIZED", "unrecognized request");
  if (req.method != r.allowed_method)
    co_return write_error(res, 405, "M_UNRECOGNIZED", "method not allowed on this path");

  if ((r.kind == route_kind::status || r.kind == route_kind::sessions ||
       r.kind == route_kind::metrics || r.kind == route_kind::gateway_bridges) &&
      !peer_admitted(req, key_client,
                     r.kind == route_kind::status            ? "/v1/status"
                     : r.kind == route_kind::sessions        ? "/v1/sessions"
                     : r.kind == route_kind::gateway_bridges ? "/v1/gateway/bridges"
                                                             : "/metrics",
                     res))
    co_return;
  if (r.kind == route_kind::gateway_bridges) {
    if (!gateway_report_)
      co_return write_error(res, 404, "M_NOT_FOUND", "the bridge gateway is not configured");
    res.status = 200;
    res.body = gateway_report_();
    co_return;
  }
  if (r.kind == route_kind::metrics) {
    if (!metrics_) co_return write_error(res, 404, "M_UNRECOGNIZED", "metrics are not enabled");
    res.status = 200;
    res.body.clear();
    metrics_->expose(res.body);
    res.content_type = metrics::registry::content_type;
    co_return;
  }
  if (r.kind == route_kind::status) {
    const auto uptime =
        std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started_);
    co_return write_status(res, uptime.count(), pool_, metrics_);
  }
  if (r.kind == route_kind::sessions) {
    const auto limit = sessions_limit(query_param(r.query, "limit"));
    if (!limit)
      co_return write_error(
          res, 400, "M_INVALID_PARAM",
          fmt::format("limit must be an integer from 1 to {}", max_sessions_limit));
    std::string after;
    if (const auto from = query_param(r.query, "from")) {
      const auto decoded = matrix::percent_decode(*from);
      auto user = decoded ? user_id_from_cursor(*decoded) : std::nullopt;
      if (!user)
        co_return write_error(res, 400, "M_INVALID_PARAM",
                              "from must be the next_batch of an earlier answer");
      after = std::move(*user);
    }
    // Only what this client may see; filtered before the page is cut, so pages stay full.
    std::function<bool(std::string_view)> visible;
    if (key_client)
      visible = [&](std::string_view id) { return access_->allows(*key_client, id).allowed; };
    else if (access_)
      visible = [&](std::string_view id) { return access_->allows(req.peer, id).allowed; };
    co_return write_sessions_page(res, pool_.sessions_page(after, *limit, visible));
  }

  auto user_id = matrix::percent_decode(r.user_segment);
  if (!user_id || !matrix::parse_user_id(*user_id))
    co_return write_error(res, 400, "M_INVALID_PARAM", "malformed user ID");
  if (!pending.user_allowed && !user_allowed(req, key_client, *user_id, res)) co_return;

  switch (r.kind) {
    case route_kind::token: {
      const auto min_valid = min_valid_from_query(r.query);
      if (min_valid < 0)
        co_return write_error(res, 400, "M_INVALID_PARAM",
                              "min_valid_ms must be an integer of milliseconds");
      auto t = co_await pool_.get_token(std::move(*user_id), min_valid, deadline);
      if (!t) co_return write_pool_error(res, t.error());
      write_token(res, *t);
      keep_rendering(*t, res);  // the next requests for this token take the hot path
      co_return;
    }
    case route_kind::invalidate: {
      simdjson::dom::parser parser;
      simdjson::dom::element doc;
      std::string_view token;
      if (parser.parse(req.body.data(), req.body.size()).get(doc) != simdjson::SUCCESS)
        co_return write_error(res, 400, "M_BAD_JSON", "body is not JSON");
      if (doc["access_token"].get_string().get(token) != simdjson::SUCCESS || token.empty())
        co_return write_error(res, 400, "M_INVALID_PARAM",
                              "body needs {\"access_token\": \"...\"}");
      secret_string presented{
          std::string{token}};  // named: see the note on GCC 12 in homeserver_client.cpp
      auto done = co_await pool_.invalidate(std::move(*user_id), std::move(presented), deadline);
      if (!done) co_return write_pool_error(res, done.error());
      res.status = 200;
      res.body = *done ? R"({"invalidated":true})" : R"({"invalidated":false})";
      co_return;
    }
    case route_kind::session: {
      auto done = co_await pool_.revoke(std::move(*user_id), deadline);
      if (!done) co_return write_pool_error(res, done.error());
      res.status = 200;
      res.body = *done ? R"({"revoked":true})" : R"({"revoked":false})";
      co_return;
    }
    default:
      co_return write_error(res, 404, "M_UNRECOGNIZED", "unrecognized request");
  }
}

}  // namespace mxp::api
