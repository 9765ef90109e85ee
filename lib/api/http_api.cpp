// Routes of the socket API and their JSON answers.
#include "api/http_api.hpp"

#include <simdjson.h>

#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <optional>

#include "core/errc.hpp"
#include "core/json_writer.hpp"
#include "core/server_name.hpp"
#include "matrix/user_id.hpp"

namespace mxp::api {

namespace asio = boost::asio;
using std::chrono::steady_clock;

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
  }
  return "Unknown";
}

namespace {

enum class route_kind { token, invalidate, session, sessions, status, healthz, metrics, unknown };

endpoint to_endpoint(route_kind k) noexcept {
  switch (k) {
    case route_kind::token:
      return endpoint::token;
    case route_kind::invalidate:
      return endpoint::invalidate;
    case route_kind::session:
      return endpoint::session;
    case route_kind::sessions:
      return endpoint::sessions;
    case route_kind::status:
      return endpoint::status;
    case route_kind::healthz:
      return endpoint::healthz;
    case route_kind::metrics:
      return endpoint::metrics;
    case route_kind::unknown:
      break;
  }
  return endpoint::unknown;
}

struct route {
  route_kind kind = route_kind::unknown;
  std::string_view user_segment;  // still percent-encoded
  std::string_view query;
  std::string_view allowed_method;
};

route match(std::string_view target) {
  route r;
  const auto q = target.find('?');
  const auto path = target.substr(0, q);
  if (q != std::string_view::npos) r.query = target.substr(q + 1);
  if (path == "/healthz") return {route_kind::healthz, {}, r.query, "GET"};
  if (path == "/v1/status") return {route_kind::status, {}, r.query, "GET"};
  if (path == "/v1/sessions") return {route_kind::sessions, {}, r.query, "GET"};
  if (path == "/metrics") return {route_kind::metrics, {}, r.query, "GET"};
  constexpr std::string_view users = "/v1/users/";
  if (!path.starts_with(users)) return r;
  const auto rest = path.substr(users.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return r;
  r.user_segment = rest.substr(0, slash);
  const auto action = rest.substr(slash + 1);
  if (action == "token")
    r.kind = route_kind::token, r.allowed_method = "GET";
  else if (action == "invalidate")
    r.kind = route_kind::invalidate, r.allowed_method = "POST";
  else if (action == "session")
    r.kind = route_kind::session, r.allowed_method = "DELETE";
  return r;
}

void write_error(api_response& res, int status, std::string_view errcode,
                 std::string_view message) {
  res.status = status;
  res.body.clear();
  json_writer{res.body}
      .begin_object()
      .member("errcode", errcode)
      .member("error", message)
      .end_object();
}

// The one place where pool errors become API answers (DESIGN.md, "Errors"). Homeserver
// failures follow one rule (README, "Socket API", errors), decided by what came back rather than
// by how the pool classified it:
// * 429 M_LIMIT_EXCEEDED: the homeserver rate-limited logins (429 or M_LIMIT_EXCEEDED) for
//   longer than the caller could wait.
// * 504 MXP_TIMEOUT: no answer in time (connect, TLS handshake or request timeout), or the API
//   request's own deadline passed.
// * 502 MXP_UPSTREAM: a complete HTTP answer arrived and it is not one we can use: any 4xx/5xx
//   status, JSON or not (a proxy's plain-text 502/503/504 included), or a 2xx whose body is not
//   what the Matrix API promises. `upstream_status` is always that HTTP status;
//   `upstream_errcode` its Matrix errcode, null when it had none.
// * 503 MXP_UNAVAILABLE: no complete HTTP answer: connection refused or reset, DNS or TLS
//   failure, an answer cut short, bytes that are not HTTP, an answer over max_response_bytes.
//   Also an open circuit, a failed .well-known discovery and shutdown.
// So 502 and only 502 carries an upstream_status.
void write_pool_error(api_response& res, const sessions::pool_error& e) {
  const auto code = static_cast<errc>(e.code.value());
  const bool ours = e.code.category() == mxp_category();
  const bool http_answer = e.http_status >= 100 && e.http_status <= 599;
  int status = 500;
  std::string_view errcode = "M_UNKNOWN";
  switch (ours ? code : errc::upstream_unavailable) {
    case errc::invalid_user_id:
    case errc::invalid_request:
      status = 400, errcode = "M_INVALID_PARAM";
      break;
    case errc::forbidden:
      status = 403, errcode = "M_FORBIDDEN";
      break;
    case errc::unknown_homeserver:
    case errc::not_found:
      status = 404, errcode = "M_NOT_FOUND";
      break;
    case errc::upstream_rate_limited:
      status = 429, errcode = "M_LIMIT_EXCEEDED";
      break;
    case errc::upstream_refused:
    case errc::upstream_bad_response:
    case errc::upstream_unavailable:  // e.g. a proxy's 502/503/504: an answer all the same
      if (http_answer)
        status = 502, errcode = "MXP_UPSTREAM";
      else
        status = 503, errcode = "MXP_UNAVAILABLE";
      break;
    case errc::discovery_failed:
    case errc::shutting_down:
      status = 503, errcode = "MXP_UNAVAILABLE";
      break;
    case errc::upstream_timeout:
    case errc::deadline_exceeded:
      status = 504, errcode = "MXP_TIMEOUT";
      break;
    case errc::ok:
      break;
  }
  // Our own diagnostic only: the homeserver's error text goes to the log, not to API clients.
  std::string message = e.code.message();
  if (!e.diagnostic.empty()) message += ": " + e.diagnostic;
  res.status = status;
  res.body.clear();
  json_writer w{res.body};
  w.begin_object().member("errcode", errcode).member("error", message);
  if (status == 429) w.member("retry_after_ms", e.retry_after_ms.value_or(1000));
  // A homeserver that is failing (backoff, open circuit) says when the next try goes out.
  if (status == 503 && e.retry_after_ms) w.member("retry_after_ms", *e.retry_after_ms);
  if (status == 502) {
    w.member("upstream_status", e.http_status);
    if (e.errcode.empty())
      w.key("upstream_errcode").null();
    else
      w.member("upstream_errcode", e.errcode);
  }
  w.end_object();
}

void write_token(api_response& res, const sessions::token_view& t) {
  res.status = 200;
  res.body.clear();
  json_writer w{res.body};
  w.begin_object()
      .member("user_id", t.user_id)
      .member("access_token", t.access_token->reveal())
      .member("device_id", *t.device_id)
      .member("homeserver_url", t.homeserver->base_url())
      .member("expires_at_ms", t.expires_at_ms)
      .member("method", t.homeserver->method_name())
      .end_object();
}

// min_valid_ms=N from the query; -1 when malformed. Other parameters are ignored.
std::int64_t min_valid_from_query(std::string_view query) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    constexpr std::string_view key = "min_valid_ms=";
    if (!param.starts_with(key)) continue;
    const auto value = param.substr(key.size());
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    constexpr std::int64_t max_ms = 366LL * 24 * 3600 * 1000;
    if (ec != std::errc{} || end != value.data() + value.size() || n < 0 || n > max_ms) return -1;
    return n;
  }
  return 0;
}

// The first `name=value` of a query string (value still percent-encoded); nullopt when absent.
std::optional<std::string_view> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (param.size() > name.size() && param.starts_with(name) && param[name.size()] == '=')
      return param.substr(name.size() + 1);
  }
  return std::nullopt;
}

// /v1/sessions paging. `next_batch` is opaque to clients: today the hex spelling of the last
// user ID of the page (URL-safe whatever bytes a historical localpart holds); the next page
// starts after it, so paging is stable while sessions come and go.
constexpr std::size_t default_sessions_limit = 100;
constexpr std::size_t max_sessions_limit = 1000;

std::string sessions_cursor(std::string_view user_id) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(user_id.size() * 2);
  for (const unsigned char c : user_id) {
    out += digits[c >> 4];
    out += digits[c & 0xf];
  }
  return out;
}

std::optional<std::string> user_id_from_cursor(std::string_view cursor) {
  const auto nibble = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (cursor.empty() || cursor.size() % 2 != 0 || cursor.size() > 2 * max_user_id_bytes)
    return std::nullopt;
  std::string out;
  out.reserve(cursor.size() / 2);
  for (std::size_t i = 0; i < cursor.size(); i += 2) {
    const int hi = nibble(cursor[i]), lo = nibble(cursor[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

// limit=N (1-1000, default 100); nullopt when malformed or out of range.
std::optional<std::size_t> sessions_limit(std::optional<std::string_view> value) {
  if (!value) return default_sessions_limit;
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), n);
  if (value->empty() || ec != std::errc{} || end != value->data() + value->size() || n < 1 ||
      n > max_sessions_limit)
    return std::nullopt;
  return n;
}

}  // namespace

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

bool http_api::handle_now(const api_request& req, api_response& res) {
  const auto r = match(req.target);
  res.route = to_endpoint(r.kind);
  const config::client_config* key_client = nullptr;
  if (req.tcp && !(key_client = authenticate(req, res))) return true;
  if (r.kind == route_kind::token && req.method == "GET") {
    // Fast path: an undecoded segment without '%' is the user ID itself.
    if (r.user_segment.find('%') != std::string_view::npos) return false;
    const auto min_valid = r.query.empty() ? 0 : min_valid_from_query(r.query);
    if (min_valid < 0) return false;
    if (!user_allowed(req, key_client, r.user_segment, res)) return true;
    auto t = pool_.find_ready(r.user_segment, min_valid);
    if (!t) return false;
    write_token(res, *t);
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

asio::awaitable<void> http_api::handle(api_request req, api_response& res) {
  if (handle_now(req, res)) co_return;
  // handle_now authenticated a TCP request already; this finds the same entry again (a hash of a
  // short key, on the slow path only). The pointer is used only before the first co_await, so a
  // reload cannot replace the policy under it.
  const config::client_config* key_client = nullptr;
  if (req.tcp && !(key_client = authenticate(req, res))) co_return;
  const auto deadline = steady_clock::now() + request_timeout_;
  const auto r = match(req.target);
  if (r.kind == route_kind::unknown)
    co_return write_error(res, 404, "M_UNRECOGNIZED", "unrecognized request");
  if (req.method != r.allowed_method)
    co_return write_error(res, 405, "M_UNRECOGNIZED", "method not allowed on this path");

  if ((r.kind == route_kind::status || r.kind == route_kind::sessions ||
       r.kind == route_kind::metrics) &&
      !peer_admitted(req, key_client,
                     r.kind == route_kind::status     ? "/v1/status"
                     : r.kind == route_kind::sessions ? "/v1/sessions"
                                                      : "/metrics",
                     res))
    co_return;
  if (r.kind == route_kind::metrics) {
    if (!metrics_) co_return write_error(res, 404, "M_UNRECOGNIZED", "metrics are not enabled");
    res.status = 200;
    res.body.clear();
    metrics_->expose(res.body);
    res.content_type = metrics::registry::content_type;
    co_return;
  }
  if (r.kind == route_kind::status) {
    const auto stats = pool_.stats();
    res.status = 200;
    res.body.clear();
    json_writer w{res.body};
    w.begin_object()
        .member("version", MXP_VERSION)
        .member("uptime_ms",
                static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              steady_clock::now() - started_)
                                              .count()));
    w.key("sessions")
        .begin_object()
        .member("total", stats.total)
        .member("active", stats.active)
        .member("logging_in", stats.logging_in)
        .member("refreshing", stats.refreshing)
        .member("validating", stats.validating)
        .member("revoking", stats.revoking)
        .member("absent", stats.absent)
        .end_object();
    w.key("homeservers").begin_array();
    for (const auto& hs : pool_.homeservers()) {
      w.begin_object()
          .member("server_name", hs.server_name)
          .member("url", hs.url)
          .member("method", hs.method)
          .member("login_type", hs.login_type)
          .member("logins_in_flight", hs.logins_in_flight)
          .member("logins_ok", hs.logins_ok)
          .member("logins_failed", hs.logins_failed)
          .member("logouts", hs.logouts)
          .member("refreshes_ok", hs.refreshes_ok)
          .member("refreshes_failed", hs.refreshes_failed)
          .member("healthy", hs.healthy)
          .member("circuit", sessions::to_string(hs.circuit))
          .member("consecutive_failures", hs.consecutive_failures)
          .member("rate_limited", hs.rate_limited)
          .end_object();
    }
    w.end_array().end_object();
    co_return;
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
    const auto page = pool_.sessions_page(after, *limit, visible);
    res.status = 200;
    res.body.clear();
    json_writer w{res.body};
    w.begin_object().key("sessions").begin_array();
    for (const auto& s : page.sessions) {  // never tokens
      w.begin_object()
          .member("user_id", s.user_id)
          .member("device_id", s.device_id)
          .member("method", s.method)
          .member("created_at_ms", s.created_at_ms)
          .member("last_used_at_ms", s.last_used_at_ms)
          .member("expires_at_ms", s.expires_at_ms)
          .member("state", sessions::to_string(s.state))
          .end_object();
    }
    w.end_array();
    if (page.more && !page.sessions.empty())
      w.member("next_batch", sessions_cursor(page.sessions.back().user_id));
    w.end_object();
    co_return;
  }

  auto user_id = matrix::percent_decode(r.user_segment);
  if (!user_id || !matrix::parse_user_id(*user_id))
    co_return write_error(res, 400, "M_INVALID_PARAM", "malformed user ID");
  if (!user_allowed(req, key_client, *user_id, res)) co_return;

  switch (r.kind) {
    case route_kind::token: {
      const auto min_valid = min_valid_from_query(r.query);
      if (min_valid < 0)
        co_return write_error(res, 400, "M_INVALID_PARAM",
                              "min_valid_ms must be an integer of milliseconds");
      auto t = co_await pool_.get_token(std::move(*user_id), min_valid, deadline);
      if (!t) co_return write_pool_error(res, t.error());
      co_return write_token(res, *t);
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
