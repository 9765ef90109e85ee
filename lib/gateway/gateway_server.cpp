// gateway_server: accept loops, one coroutine per client connection, the decision per request
// (gateway_rules), the upstream connection pool per homeserver and the streaming relay.
#include "gateway/gateway_server.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <system_error>

#include "config/config.hpp"
#include "core/errc.hpp"
#include "core/json_writer.hpp"
#include "gateway/gateway_rules.hpp"
#include "matrix/user_id.hpp"
#include "metrics/registry.hpp"
#include "net/http_client.hpp"
#include "sessions/session_pool.hpp"
#include "sessions/wait_queue.hpp"
#include "store/session_store.hpp"

namespace mxp::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t max_kept_body = 64 * 1024;  // kept for one retry; larger bodies stream
constexpr std::uint32_t max_header_bytes = 16 * 1024;
constexpr std::uint32_t max_upstream_header_bytes = 64 * 1024;
constexpr std::size_t relay_chunk = 64 * 1024;

using secure_stream = beast::ssl_stream<beast::tcp_stream>;
using request_t = http::request<http::buffer_body>;

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string error_body(std::string_view errcode, std::string_view error) {
  std::string out;
  json_writer(out).begin_object().member("errcode", errcode).member("error", error).end_object();
  return out;
}

// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded either way; framing is set anew.
void drop_hop_by_hop(http::fields& f) {
  for (const auto name :
       {http::field::connection, http::field::keep_alive, http::field::proxy_connection,
        http::field::te, http::field::trailer, http::field::transfer_encoding, http::field::upgrade,
        http::field::proxy_authorization, http::field::proxy_authenticate, http::field::expect,
        http::field::content_length})
    f.erase(name);
}

// One kept-alive connection to a homeserver.
struct upstream_connection {
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<secure_stream> secure;
  beast::flat_buffer buffer;
  steady::time_point idle_since{};

  beast::tcp_stream& lowest() { return secure ? beast::get_lowest_layer(*secure) : *plain; }
  void close() {
    error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().close();
  }
};

// The connections to one homeserver: its base URL, TLS settings as lib/net/http_client's.
struct upstream {
  net::base_url url;
  std::string ca_file;
  std::optional<asio::ssl::context> tls;
  std::vector<std::unique_ptr<upstream_connection>> idle;
  milliseconds connect_timeout{10s};
  static constexpr std::size_t max_idle = 32;
  static constexpr auto idle_lifetime = 30s;

  std::unique_ptr<upstream_connection> take_idle() {
    const auto now = steady::now();
    while (!idle.empty()) {
      auto c = std::move(idle.back());
      idle.pop_back();
      if (now - c->idle_since < idle_lifetime) return c;
      c->close();
    }
    return nullptr;
  }
  void give_back(std::unique_ptr<upstream_connection> c) {
    if (idle.size() >= max_idle) return c->close();
    c->lowest().expires_never();
    c->idle_since = steady::now();
    idle.push_back(std::move(c));
  }
  ~upstream() {
    for (auto& c : idle) c->close();
  }
};

std::shared_ptr<upstream> make_upstream(const homeserver_target& t) {
  auto parsed = net::parse_base_url(t.url);
  if (!parsed) throw std::invalid_argument(fmt::format("malformed homeserver URL '{}'", t.url));
  auto u = std::make_shared<upstream>();
  u->url = std::move(*parsed);
  u->ca_file = t.ca_file;
  u->connect_timeout = t.connect_timeout;
  if (u->url.tls) {
    auto& ctx = u->tls.emplace(asio::ssl::context::tls_client);
    ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                    asio::ssl::context::no_tlsv1_1);
    ctx.set_verify_mode(asio::ssl::verify_peer);
    error_code ec;
    if (t.ca_file.empty())
      ctx.set_default_verify_paths(ec);
    else
      ctx.load_verify_file(t.ca_file, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot load CA certificates: {}", ec.message()));
  }
  return u;
}

bool is_stale_connection_error(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::ssl::error::stream_truncated;
}

// What one request turned out to be, for the log line and the metrics.
struct decision {
  std::string bridge;                     // "" : none (pass-through)
  std::string user;                       // "" : none
  std::string_view mode = "passthrough";  // session | assert | passthrough | local
  route_class route = route_class::other;
  std::string homeserver;
  int status = 0;
  std::string why;  // for answers the gateway gives itself
};

struct client_connection {
  explicit client_connection(tcp::socket s) : stream(std::move(s)) {}
  beast::tcp_stream stream;
  bool busy = false;
  bool closing = false;
  void close() {
    if (closing) return;
    closing = true;
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
  }
};

}  // namespace

struct gateway_server::impl : std::enable_shared_from_this<impl> {
  impl(asio::any_io_executor ex, sessions::session_pool& p, store::session_store* s,
       metrics::registry& r)
      : executor(std::move(ex)),
        pool(p),
        store(s),
        requests(r.add_counter("mxpuppetd_gateway_requests_total",
                               "Requests through the bridge gateway, by bridge, mode (session, "
                               "assert, passthrough, local), route class and status.",
                               {"bridge", "mode", "route", "status"})),
        upstream_seconds(r.add_histogram("mxpuppetd_gateway_upstream_seconds",
                                         "Time from sending a proxied request to the "
                                         "homeserver's answer header, by route class.",
                                         {"route"}, metrics::latency_buckets())),
        handles_gauge(r.add_gauge("mxpuppetd_gateway_handles",
                                  "Gateway handles (login-based bridges' tokens) in force.")) {}

  asio::any_io_executor executor;
  sessions::session_pool& pool;
  store::session_store* store;
  metrics::family<metrics::counter>& requests;
  metrics::family<metrics::histogram>& upstream_seconds;
  metrics::family<metrics::gauge>& handles_gauge;

  std::shared_ptr<const gateway_settings> settings;
  std::map<std::string, std::shared_ptr<upstream>, std::less<>> upstreams;  // by server name
  handle_table handles;
  std::map<std::string, std::int64_t, std::less<>> bridge_last_use;  // any request of a bridge
  // Connection deadlines: the API listeners' (listen.*).
  milliseconds idle_timeout{60s}, header_timeout{10s}, body_timeout{10s}, write_timeout{10s};
  std::size_t max_connections = 1024;

  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::list<std::weak_ptr<client_connection>> live;
  std::size_t tasks = 0;  // accept loops and connections running
  sessions::wait_queue task_ended{sessions::system_session_clock::instance()};
  bool stopping = false;

  // ------------------------------------------------------------------ settings

  void apply(const config::daemon_config& cfg) {
    auto next = std::make_shared<const gateway_settings>(settings_from(cfg));
    std::map<std::string, std::shared_ptr<upstream>, std::less<>> next_upstreams;
    for (const auto& [name, t] : next->homeservers) {
      if (t.url.empty()) {
        spdlog::warn(
            "gateway: homeserver {} has no url: set homeservers.{}.url to reach it through the "
            "gateway",
            name, name);
        continue;
      }
      const auto old = upstreams.find(name);
      if (old != upstreams.end() && old->second->ca_file == t.ca_file &&
          settings->homeserver(name) && settings->homeserver(name)->url == t.url) {
        next_upstreams.emplace(name, old->second);  // same origin: keep its connections
        continue;
      }
      next_upstreams.emplace(name, make_upstream(t));
    }
    settings = std::move(next);
    upstreams = std::move(next_upstreams);
    idle_timeout = cfg.listen.idle_timeout;
    header_timeout = config::effective_phase_timeout(cfg.listen, cfg.listen.header_timeout);
    body_timeout = config::effective_phase_timeout(cfg.listen, cfg.listen.body_timeout);
    write_timeout = cfg.listen.write_timeout;
    max_connections = cfg.listen.max_connections;
  }

  // ------------------------------------------------------------------ accepting

  void task_done() {
    --tasks;
    task_ended.notify_all();
  }

  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor) {
    auto self = shared_from_this();
    while (!stopping) {
      error_code ec;
      auto socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (stopping || ec == asio::error::operation_aborted) break;
        spdlog::warn("gateway: accept failed: {}", ec.message());
        asio::steady_timer pause{executor, 100ms};
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (live.size() >= max_connections) {
        spdlog::warn("gateway: refused a connection: {} open (listen.max_connections)",
                     live.size());
        continue;  // the socket closes as it goes out of scope
      }
      socket.set_option(tcp::no_delay(true), ec);
      auto c = std::make_shared<client_connection>(std::move(socket));
      live.push_back(c);
      const auto where = std::prev(live.end());
      ++tasks;
      asio::co_spawn(executor, serve(c), [self, c, where](std::exception_ptr ep) {
        c->close();
        self->live.erase(where);
        self->task_done();
        if (!ep) return;
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          spdlog::error("gateway connection failed: {}", e.what());
        }
      });
    }
  }

  // ------------------------------------------------------------------ one connection

  // Writes a small answer of the gateway's own under the write deadline.
  asio::awaitable<error_code> answer(client_connection& c, unsigned version, int status,
                                     std::string body, bool keep_alive) {
    http::response<http::string_body> res{static_cast<http::status>(status), version};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::server, "mxpuppetd-gateway");
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    error_code ec;
    c.stream.expires_after(write_timeout);
    co_await http::async_write(c.stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return ec;
  }

  asio::awaitable<void> serve(std::shared_ptr<client_connection> c) {
    beast::flat_buffer buffer;
    for (;;) {
      error_code ec;
      // Idle until the next request's first byte; then the header deadline from there.
      if (buffer.size() == 0) {
        c->stream.expires_after(idle_timeout);
        const auto n = co_await c->stream.async_read_some(
            buffer.prepare(16 * 1024), asio::redirect_error(asio::use_awaitable, ec));
        buffer.commit(n);
        if (ec || stopping) co_return;
      }
      http::request_parser<http::buffer_body> parser;
      parser.header_limit(max_header_bytes);
      parser.body_limit(settings->max_body_bytes);
      c->stream.expires_after(header_timeout);
      co_await http::async_read_header(c->stream, buffer, parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == beast::error::timeout || c->closing) co_return;
        const bool too_large = ec == http::error::header_limit;
        const int status = too_large ? 431 : 400;
        auto answer_body = too_large ? error_body("M_TOO_LARGE", "request headers too large")
                                     : error_body("M_BAD_REQUEST", "malformed HTTP request");
        co_await answer(*c, 11, status, std::move(answer_body), false);
        co_return;
      }
      c->busy = true;
      const bool keep = co_await handle(c, buffer, parser);
      c->busy = false;
      if (!keep || stopping || c->closing) co_return;
    }
  }

  // Reads the whole (small) request body into `out`, under the body deadline.
  asio::awaitable<error_code> read_kept_body(client_connection& c, beast::flat_buffer& buffer,
                                             http::request_parser<http::buffer_body>& parser,
                                             std::string& out) {
    std::array<char, 16 * 1024> chunk;
    error_code ec;
    c.stream.expires_after(body_timeout);
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      co_await http::async_read(c.stream, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return ec;
      out.append(chunk.data(), chunk.size() - parser.get().body().size);
      if (out.size() > max_kept_body) co_return http::error::body_limit;
    }
    co_return ec;
  }

  // One request: decide, answer or forward, log and count. Returns whether the connection
  // may serve another request.
  asio::awaitable<bool> handle(std::shared_ptr<client_connection> c, beast::flat_buffer& buffer,
                               http::request_parser<http::buffer_body>& parser) {
    const auto started = steady::now();
    const auto settings_now = settings;  // a reload mid-request does not change this one
    const auto& s = *settings_now;
    auto& req = parser.get();
    const unsigned version = req.version();
    bool keep_alive = req.keep_alive();
    decision d;
    error_code ec;

    // Expect: 100-continue (curl's large uploads): say go on before reading the body.
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
      c->stream.expires_after(write_timeout);
      co_await asio::async_write(c->stream, asio::buffer(go_on),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return false;
    }
    // Small bodies are read first and kept (for the login façade and one retry); others stream.
    const auto length = parser.content_length();
    const bool has_body = parser.chunked() || (length && *length > 0);
    const bool kept = !parser.chunked() && (!length || *length <= max_kept_body);
    std::string body;
    if (kept && has_body) {
      ec = co_await read_kept_body(*c, buffer, parser, body);
      if (ec) {
        if (ec == beast::error::timeout || c->closing) co_return false;
        d.status = ec == http::error::body_limit ? 413 : 400;
        co_await answer(*c, version, d.status, error_body("M_BAD_REQUEST", "malformed body"),
                        false);
        co_return false;
      }
    }
    // From here on, an answer of the gateway's own to a request whose body was not read
    // closes the connection.
    const bool body_pending = has_body && !kept;

    const auto local = [&](int status, std::string answer_body,
                           std::string why) -> asio::awaitable<bool> {
      d.status = status;
      d.why = std::move(why);
      if (d.mode == std::string_view{"passthrough"}) d.mode = "local";
      const bool keep = keep_alive && !body_pending && !stopping;
      const auto wec = co_await answer(*c, version, status, std::move(answer_body), keep);
      finish(d, started);
      co_return keep && !wec;
    };

    auto target = split(std::string_view{req.target().data(), req.target().size()});
    if (!target)
      co_return co_await local(400, error_body("M_UNRECOGNIZED", "malformed request target"),
                               "malformed target");
    d.route = classify_route(target->path);
    if (!is_proxied_path(target->path))
      co_return co_await local(404, error_body("M_UNRECOGNIZED", "Unrecognized request"),
                               "outside /_matrix/client and /_matrix/media");

    std::string_view bearer;
    if (const auto auth = req[http::field::authorization];
        auth.size() > 7 && beast::iequals(auth.substr(0, 7), "Bearer "))
      bearer = std::string_view{auth.data() + 7, auth.size() - 7};

    // --- whose request is it? ------------------------------------------------------------
    const bridge_entry* bridge = bearer.empty() ? nullptr : s.bridge_by_token(bearer);
    const handle_entry* by_handle = nullptr;
    if (!bridge && handle_table::looks_like_handle(bearer)) {
      by_handle = handles.find(bearer, wall_ms());
      if (!by_handle)
        co_return co_await local(
            401, error_body("M_UNKNOWN_TOKEN", "Unknown access token (gateway handle)"),
            "unknown handle");
      d.bridge = by_handle->bridge;
      d.user = by_handle->user_id;
      if (is_logout_path(target->path) && req.method() == http::verb::post) {
        const auto hash = handles.forget(bearer);
        handles_gauge.with({}).set(static_cast<double>(handles.size()));
        if (store && !hash.empty()) co_await store->erase_handle(hash);
        co_return co_await local(200, "{}", "handle logged out (session kept)");
      }
      if (!s.bridge_named(d.bridge))
        co_return co_await local(
            401, error_body("M_UNKNOWN_TOKEN", "Unknown access token (bridge removed)"),
            "handle of a removed bridge");
    } else if (bridge) {
      d.bridge = bridge->name;
      if (!target->user_id)
        co_return co_await local(
            403, error_body("M_FORBIDDEN", "a bridge token needs ?user_id=<the user>"),
            "bridge token without user_id");
      d.user = *target->user_id;
      if (!allows(*bridge, d.user))
        co_return co_await local(403,
                                 error_body("M_FORBIDDEN", "this bridge may not act for that user"),
                                 "outside the bridge's allow globs");
    }
    if (!d.bridge.empty()) bridge_last_use[d.bridge] = wall_ms();
    const bool substituted = !d.user.empty();
    if (substituted) {
      const auto parts = matrix::parse_user_id(d.user);
      if (!parts)
        co_return co_await local(400, error_body("M_INVALID_PARAM", "malformed user_id"),
                                 "malformed user ID");
      d.homeserver = std::string{parts->server_name};
      const auto* hs = s.homeserver(d.homeserver);
      if (!hs)
        co_return co_await local(
            403, error_body("M_FORBIDDEN", "no homeserver of this gateway serves that user"),
            "unknown homeserver");
      d.mode = hs->mode == config::gateway_mode::assert_identity ? "assert" : "session";
    } else if (is_login_path(target->path) && req.method() == http::verb::get) {
      co_return co_await local(200, std::string{login_flows_body()}, "login flows");
    } else {
      d.homeserver =
          !target->routed_homeserver.empty() ? target->routed_homeserver : s.default_homeserver;
      // The login façade: a shared-secret login whose HMAC one of the bridges' secrets makes.
      if (is_login_path(target->path) && req.method() == http::verb::post && kept) {
        if (auto login = parse_login_body(body)) {
          std::string user_id = login->user;
          if (!user_id.starts_with('@') && !d.homeserver.empty())
            user_id = "@" + user_id + ":" + d.homeserver;
          if (const auto* b = s.bridge_by_login(user_id, login->credential)) {
            co_return co_await login_facade(*b, user_id, s, d, local);
          }
        }
      }
    }

    // --- forward ---------------------------------------------------------------------------
    const auto up = upstreams.find(d.homeserver);
    if (d.homeserver.empty() || up == upstreams.end()) {
      const int status = d.homeserver.empty() || !s.homeserver(d.homeserver) ? 404 : 502;
      co_return co_await local(
          status, error_body("M_UNRECOGNIZED", "no homeserver to forward this request to"),
          "no upstream");
    }

    const auto deadline = started + s.request_timeout;
    secret_string token;
    const homeserver_target* hs = s.homeserver(d.homeserver);
    const bool asserting = substituted && hs->mode == config::gateway_mode::assert_identity;
    if (asserting) {
      token = hs->as_token;
    } else if (substituted) {
      auto t = co_await pool.get_token(d.user, 0, deadline);
      if (!t) {
        const auto& e = t.error();
        const bool timeout = e.code == errc::upstream_timeout || e.code == errc::deadline_exceeded;
        const int status = timeout ? 504 : e.code == errc::forbidden ? 403 : 502;
        auto answer_body = error_body(timeout ? "M_UNKNOWN" : "M_FORBIDDEN",
                                      "the gateway could not get a session for that user");
        co_return co_await local(status, std::move(answer_body), "no token: " + e.diagnostic);
      }
      token = *t->access_token;
    }
    // The request as it goes upstream: the homeserver's target and Host, the real token.
    const std::string assert_user = d.user;
    std::string new_target =
        up->second->url.path_prefix + join_target(*target, asserting ? &assert_user : nullptr);
    if (!substituted) {  // passed through untouched: only the /_hs/ prefix is taken off
      const std::string_view original{req.target().data(), req.target().size()};
      const auto q = original.find('?');
      new_target = up->second->url.path_prefix + target->path +
                   (q == std::string_view::npos ? std::string{} : std::string{original.substr(q)});
    }
    req.target(new_target);
    req.version(11);
    drop_hop_by_hop(req);
    req.set(http::field::host, up->second->url.host_header);
    if (substituted) req.set(http::field::authorization, "Bearer " + token.reveal());
    if (kept) {
      if (has_body || req.method() == http::verb::post || req.method() == http::verb::put)
        req.content_length(body.size());
    } else if (length) {
      req.content_length(*length);
    } else {
      req.chunked(true);
    }

    const bool may_retry = substituted && !asserting && kept;
    for (int attempt = 0;; ++attempt) {
      auto u = up->second;  // held: a reload may replace the map entry meanwhile
      const auto outcome = co_await exchange(c, *u, buffer, parser, body, kept, deadline, d,
                                             keep_alive, may_retry && attempt == 0);
      if (outcome == exchange_outcome::retry_with_new_token) {
        spdlog::info(
            "gateway: bridge {} user {}: the pooled token was refused "
            "(M_UNKNOWN_TOKEN); retrying once with a fresh one",
            d.bridge, d.user);
        co_await pool.invalidate(d.user, token, deadline);
        auto t = co_await pool.get_token(d.user, 0, deadline);
        if (!t)
          co_return co_await local(502,
                                   error_body("M_UNKNOWN",
                                              "the gateway could not get a new "
                                              "session for that user"),
                                   "no token after invalidation");
        token = *t->access_token;
        req.set(http::field::authorization, "Bearer " + token.reveal());
        continue;
      }
      finish(d, started);
      co_return outcome == exchange_outcome::done_keep && !stopping;
    }
  }

  template <typename Local>
  asio::awaitable<bool> login_facade(const bridge_entry& b, const std::string& user_id,
                                     const gateway_settings& s, decision& d, Local& local) {
    d.bridge = b.name;
    d.user = user_id;
    d.mode = "local";
    const auto parts = matrix::parse_user_id(user_id);
    if (!parts || !s.homeserver(parts->server_name))
      co_return co_await local(403, error_body("M_FORBIDDEN", "Invalid username or password"),
                               "login for a user of no configured homeserver");
    if (!allows(b, user_id))
      co_return co_await local(403, error_body("M_FORBIDDEN", "Invalid username or password"),
                               "login outside the bridge's allow globs");
    auto [handle, hash] = handles.issue(b.name, user_id, wall_ms());
    handles_gauge.with({}).set(static_cast<double>(handles.size()));
    if (store) {
      store::stored_handle row{hash, b.name, user_id, wall_ms()};  // a local: GCC 12
      const auto ec = co_await store->save_handle(std::move(row));
      if (ec) {
        handles.forget(handle.reveal());
        co_return co_await local(503, error_body("M_UNKNOWN", "cannot store the login"),
                                 "store failed: " + ec.message());
      }
    }
    std::string out;
    json_writer(out)
        .begin_object()
        .member("user_id", user_id)
        .member("access_token", handle.reveal())
        .member("device_id", "MXPGATEWAY")
        .member("home_server", std::string{parts->server_name})
        .end_object();
    co_return co_await local(200, std::move(out), "login: handle issued");
  }

  enum class exchange_outcome { done_keep, done_close, retry_with_new_token };

  // Sends the request to `u` (a reused connection, or a new one), relays the answer to the
  // client. A 401 M_UNKNOWN_TOKEN with `check_unknown_token` is not relayed: the caller retries.
  asio::awaitable<exchange_outcome> exchange(std::shared_ptr<client_connection> c, upstream& u,
                                             beast::flat_buffer& client_buffer,
                                             http::request_parser<http::buffer_body>& parser,
                                             const std::string& body, bool kept,
                                             steady::time_point deadline, decision& d,
                                             bool client_keep_alive, bool check_unknown_token) {
    for (int attempt = 0;; ++attempt) {
      auto conn = u.take_idle();
      const bool reused = conn != nullptr;
      if (!conn) {
        auto connected = co_await connect(u, deadline);
        if (!connected.conn) {
          d.why = connected.why;
          d.status = 502;
          const bool keep = client_keep_alive && kept;
          co_await answer(*c, 11, 502, error_body("M_UNKNOWN", "homeserver unreachable"), keep);
          co_return keep ? exchange_outcome::done_keep : exchange_outcome::done_close;
        }
        conn = std::move(connected.conn);
      }
      relay_result r;
      if (conn->secure)
        r = co_await relay(*conn->secure, *conn, c, client_buffer, parser, body, kept, deadline, d,
                           client_keep_alive, check_unknown_token);
      else
        r = co_await relay(*conn->plain, *conn, c, client_buffer, parser, body, kept, deadline, d,
                           client_keep_alive, check_unknown_token);
      if (r.upstream_reusable)
        u.give_back(std::move(conn));
      else
        conn->close();
      if (r.stale && reused && attempt == 0 && kept) continue;  // a closed keep-alive: again
      if (r.outcome == exchange_outcome::done_close && !r.answered) {
        d.status = r.timed_out ? 504 : 502;
        d.why = r.why;
        if (r.client_ok) {
          auto answer_body =
              error_body("M_UNKNOWN", r.timed_out ? "homeserver timed out" : "homeserver failed");
          co_await answer(*c, 11, d.status, std::move(answer_body), false);
        }
      }
      co_return r.outcome;
    }
  }

  struct relay_result {
    exchange_outcome outcome = exchange_outcome::done_close;
    bool upstream_reusable = false;
    bool stale = false;      // a reused connection failed before any answer byte
    bool answered = false;   // the client got (part of) an answer
    bool timed_out = false;  // upstream deadline
    bool client_ok = true;   // the client connection can still take an answer
    std::string why;
  };

  template <typename Stream>
  asio::awaitable<relay_result> relay(Stream& up, upstream_connection& conn,
                                      std::shared_ptr<client_connection> c,
                                      beast::flat_buffer& client_buffer,
                                      http::request_parser<http::buffer_body>& parser,
                                      const std::string& body, bool kept,
                                      steady::time_point deadline, decision& d,
                                      bool client_keep_alive, bool check_unknown_token) {
    relay_result r;
    error_code ec;
    auto& req = parser.get();
    auto& lowest = conn.lowest();
    // --- the request ------------------------------------------------------------------------
    const auto sent_at = steady::now();
    lowest.expires_at(deadline);
    if (kept) {
      req.body().data = body.empty() ? nullptr : const_cast<char*>(body.data());
      req.body().size = body.size();
      req.body().more = false;
      http::request_serializer<http::buffer_body> sr{req};
      co_await http::async_write(up, sr, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        r.stale = is_stale_connection_error(ec);
        r.timed_out = ec == beast::error::timeout;
        r.why = "sending to the homeserver: " + ec.message();
        co_return r;
      }
    } else {
      const auto chunk = std::make_unique_for_overwrite<char[]>(relay_chunk);
      req.body().data = nullptr;
      req.body().size = 0;
      req.body().more = true;
      http::request_serializer<http::buffer_body> sr{req};
      co_await http::async_write_header(up, sr, asio::redirect_error(asio::use_awaitable, ec));
      while (!ec && !parser.is_done()) {
        req.body().data = chunk.get();
        req.body().size = relay_chunk;
        c->stream.expires_at(std::min(deadline, steady::now() + body_timeout));
        co_await http::async_read(c->stream, client_buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        if (ec) {
          r.client_ok = false;
          r.why = "reading the request body: " + ec.message();
          co_return r;
        }
        req.body().size = relay_chunk - req.body().size;
        req.body().data = chunk.get();
        req.body().more = !parser.is_done();
        lowest.expires_at(deadline);
        co_await http::async_write(up, sr, asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
      }
      if (!ec && !sr.is_done()) {  // the final (empty) chunk of a chunked body
        req.body().data = nullptr;
        req.body().size = 0;
        req.body().more = false;
        co_await http::async_write(up, sr, asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
      }
      if (ec) {
        r.timed_out = ec == beast::error::timeout;
        r.why = "sending to the homeserver: " + ec.message();
        r.client_ok = false;  // the rest of the request body is unread
        co_return r;
      }
    }
    // --- the answer header -----------------------------------------------------------------
    http::response_parser<http::buffer_body> rp;
    rp.header_limit(max_upstream_header_bytes);
    rp.body_limit(boost::none);
    if (req.method() == http::verb::head) rp.skip(true);
    lowest.expires_at(deadline);
    co_await http::async_read_header(up, conn.buffer, rp,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      r.stale = is_stale_connection_error(ec) && !rp.got_some() && conn.buffer.size() == 0;
      r.timed_out = ec == beast::error::timeout;
      r.why = "reading the homeserver's answer: " + ec.message();
      co_return r;
    }
    upstream_seconds.with({std::string{to_string(d.route)}})
        .observe(std::chrono::duration<double>(steady::now() - sent_at).count());
    auto& res = rp.get();
    d.status = static_cast<int>(res.result_int());
    const bool upstream_keep = res.keep_alive() && !rp.need_eof();

    // --- a refused pooled token: read the (small) answer and let the caller retry ----------
    std::string small;
    bool have_small = false;
    if (check_unknown_token && d.status == 401) {
      std::array<char, 16 * 1024> chunk;
      while (!rp.is_done() && small.size() <= max_kept_body) {
        res.body().data = chunk.data();
        res.body().size = chunk.size();
        co_await http::async_read(up, conn.buffer, rp,
                                  asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        if (ec) break;
        small.append(chunk.data(), chunk.size() - res.body().size);
      }
      if (!ec && rp.is_done()) {
        have_small = true;
        if (small.find("\"M_UNKNOWN_TOKEN\"") != std::string::npos) {
          r.outcome = exchange_outcome::retry_with_new_token;
          r.upstream_reusable = upstream_keep;
          co_return r;
        }
      } else {
        r.why = "reading the homeserver's answer: " + ec.message();
        r.timed_out = ec == beast::error::timeout;
        co_return r;
      }
    }

    // --- relay the answer ------------------------------------------------------------------
    const auto res_length = rp.content_length();
    const bool res_has_body = !rp.is_done() || have_small;
    drop_hop_by_hop(res);
    if (have_small) {
      res.content_length(small.size());
    } else if (res_length) {
      res.content_length(*res_length);
    } else if (res_has_body && req.method() != http::verb::head) {
      res.chunked(true);
    }
    const bool keep_client = client_keep_alive && !stopping;
    res.keep_alive(keep_client);
    res.version(11);
    r.answered = true;
    http::response_serializer<http::buffer_body> sr{res};
    if (have_small) {
      res.body().data = small.empty() ? nullptr : small.data();
      res.body().size = small.size();
      res.body().more = false;
      c->stream.expires_after(write_timeout);
      co_await http::async_write(c->stream, sr, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      // Not zero-filled: every byte sent was read into it first.
      const auto chunk = std::make_unique_for_overwrite<char[]>(relay_chunk);
      res.body().data = nullptr;
      res.body().size = 0;
      res.body().more = !rp.is_done();
      // The first piece is read before anything is written, so that a small answer leaves in
      // one write with its header (a separate header write costs a syscall and a segment).
      bool first = true;
      while (!ec && (first || !rp.is_done())) {
        if (!rp.is_done()) {
          res.body().data = chunk.get();
          res.body().size = relay_chunk;
          lowest.expires_at(deadline);
          co_await http::async_read(up, conn.buffer, rp,
                                    asio::redirect_error(asio::use_awaitable, ec));
          if (ec == http::error::need_buffer) ec = {};
          if (ec) {
            r.timed_out = ec == beast::error::timeout;
            r.why = "relaying the homeserver's answer: " + ec.message();
            if (!first) co_return r;  // the client sees the answer cut short: it is closed
            r.answered = false;       // nothing sent yet: the caller answers 502 or 504
            co_return r;
          }
          res.body().size = relay_chunk - res.body().size;
          res.body().data = chunk.get();
          res.body().more = !rp.is_done();
        }
        first = false;
        c->stream.expires_after(write_timeout);
        co_await http::async_write(c->stream, sr, asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
      }
      if (!ec && !sr.is_done()) {
        res.body().data = nullptr;
        res.body().size = 0;
        res.body().more = false;
        c->stream.expires_after(write_timeout);
        co_await http::async_write(c->stream, sr, asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
      }
    }
    if (ec) {
      r.why = "writing the answer to the bridge: " + ec.message();
      r.client_ok = false;
      r.upstream_reusable = false;
      co_return r;
    }
    r.upstream_reusable = upstream_keep && rp.is_done();
    r.outcome = keep_client ? exchange_outcome::done_keep : exchange_outcome::done_close;
    co_return r;
  }

  struct connect_result {
    std::unique_ptr<upstream_connection> conn;  // null: failed
    std::string why;
  };

  asio::awaitable<connect_result> connect(upstream& u, steady::time_point deadline) {
    const auto connect_deadline = std::min(deadline, steady::now() + u.connect_timeout);
    error_code ec;
    auto resolver = std::make_shared<tcp::resolver>(executor);
    auto timed_out = std::make_shared<bool>(false);
    asio::steady_timer guard{executor, connect_deadline};
    guard.async_wait([weak = std::weak_ptr<tcp::resolver>(resolver), timed_out](error_code e) {
      if (e) return;
      *timed_out = true;
      if (auto r = weak.lock()) r->cancel();
    });
    auto endpoints = co_await resolver->async_resolve(
        u.url.host, u.url.port, asio::redirect_error(asio::use_awaitable, ec));
    guard.cancel();
    if (*timed_out)
      co_return connect_result{nullptr, fmt::format("resolve {}: timed out", u.url.host)};
    if (ec)
      co_return connect_result{nullptr, fmt::format("resolve {}: {}", u.url.host, ec.message())};
    auto c = std::make_unique<upstream_connection>();
    if (u.url.tls)
      c->secure = std::make_unique<secure_stream>(executor, *u.tls);
    else
      c->plain = std::make_unique<beast::tcp_stream>(executor);
    c->lowest().expires_at(connect_deadline);
    co_await c->lowest().async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
      co_return connect_result{
          nullptr, fmt::format("connect {}:{}: {}", u.url.host, u.url.port, ec.message())};
    c->lowest().socket().set_option(tcp::no_delay{true}, ec);
    if (u.url.tls) {
      SSL* ssl = c->secure->native_handle();
      error_code literal;
      asio::ip::make_address(u.url.host, literal);
      if (!literal) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), u.url.host.c_str());
      } else {
        SSL_set_tlsext_host_name(ssl, u.url.host.c_str());
        SSL_set1_host(ssl, u.url.host.c_str());
      }
      co_await c->secure->async_handshake(asio::ssl::stream_base::client,
                                          asio::redirect_error(asio::use_awaitable, ec));
      if (ec)
        co_return connect_result{
            nullptr, fmt::format("TLS handshake with {}: {}", u.url.host, ec.message())};
    }
    co_return connect_result{std::move(c), {}};
  }

  // One log line and one count per request; never a token.
  void finish(const decision& d, steady::time_point started) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started).count();
    spdlog::info("gateway: bridge={} user={} mode={} route={} homeserver={} status={} {}ms{}{}",
                 d.bridge.empty() ? "-" : d.bridge, d.user.empty() ? "-" : d.user, d.mode,
                 to_string(d.route), d.homeserver.empty() ? "-" : d.homeserver, d.status, ms,
                 d.why.empty() ? "" : ": ", d.why);
    requests
        .with({d.bridge, std::string{d.mode}, std::string{to_string(d.route)},
               std::to_string(d.status)})
        .inc();
  }
};

gateway_server::gateway_server(asio::any_io_executor executor, const config::daemon_config& cfg,
                               sessions::session_pool& pool, store::session_store* store,
                               metrics::registry& registry)
    : impl_(std::make_shared<impl>(std::move(executor), pool, store, registry)) {
  impl_->settings = std::make_shared<const gateway_settings>();
  impl_->apply(cfg);
  if (store) {
    for (auto& h : store->load_handles())
      impl_->handles.adopt(std::move(h.sha256_hex),
                           {std::move(h.bridge), std::move(h.user_id), h.created_at_ms, 0});
  }
  impl_->handles_gauge.with({}).set(static_cast<double>(impl_->handles.size()));
  if (!cfg.gateway) return;
  for (const auto& l : cfg.gateway->listen) {
    const auto where =
        (l.address.find(':') != std::string::npos ? "[" + l.address + "]" : l.address) + ":" +
        std::to_string(l.port);
    error_code ec;
    const auto address = asio::ip::make_address(l.address, ec);
    if (ec) throw std::system_error(ec, "gateway.listen: bad address " + where);
    auto acceptor = std::make_unique<tcp::acceptor>(impl_->executor);
    const tcp::endpoint ep{address, l.port};
    acceptor->open(ep.protocol(), ec);
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor->bind(ep, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::system_error(ec, "cannot listen on " + where + " (gateway.listen)");
    spdlog::info("gateway: listening on {} ({} bridge(s), {} handle(s))", where,
                 impl_->settings->bridges.size(), impl_->handles.size());
    impl_->acceptors.push_back(std::move(acceptor));
  }
}

gateway_server::~gateway_server() {
  impl_->stopping = true;
  error_code ignored;
  for (auto& a : impl_->acceptors) a->close(ignored);
  for (auto& weak : impl_->live)
    if (auto c = weak.lock()) c->close();
}

void gateway_server::start() {
  for (auto& a : impl_->acceptors) {
    ++impl_->tasks;
    asio::co_spawn(impl_->executor, impl_->accept_loop(*a), [self = impl_](std::exception_ptr ep) {
      self->task_done();
      if (!ep) return;
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        spdlog::critical("gateway accept loop failed: {}", e.what());
      }
    });
  }
}

void gateway_server::stop() {
  impl_->stopping = true;
  error_code ignored;
  for (auto& a : impl_->acceptors) a->close(ignored);
  for (auto& weak : impl_->live)
    if (auto c = weak.lock(); c && !c->busy) c->close();
}

asio::awaitable<void> gateway_server::drain(steady::time_point deadline) {
  auto self = impl_;
  const auto deadline_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline.time_since_epoch()).count();
  while (self->tasks > 0)
    if (!co_await self->task_ended.wait(deadline_ms)) break;
  for (auto& weak : self->live)
    if (auto c = weak.lock()) c->close();
  while (self->tasks > 0)  // closed sockets end their coroutines at once
    if (!co_await self->task_ended.wait(deadline_ms + 1000)) break;
}

void gateway_server::apply(const config::daemon_config& cfg) {
  impl_->apply(cfg);
}

std::vector<std::uint16_t> gateway_server::ports() const {
  std::vector<std::uint16_t> out;
  for (const auto& a : impl_->acceptors) {
    error_code ec;
    out.push_back(a->local_endpoint(ec).port());
  }
  return out;
}

std::string gateway_server::bridges_json() const {
  struct summary {
    std::size_t handles = 0;
    std::int64_t last_used_at_ms = 0;
  };
  std::map<std::string, summary> by_bridge;
  for (const auto& b : impl_->settings->bridges) by_bridge[b.name];
  for (const auto& [name, at] : impl_->bridge_last_use)
    by_bridge[name].last_used_at_ms = std::max(by_bridge[name].last_used_at_ms, at);
  for (const auto& [_, h] : impl_->handles.entries()) {
    auto& s = by_bridge[h.bridge];
    ++s.handles;
    s.last_used_at_ms = std::max(s.last_used_at_ms, h.last_used_at_ms);
  }
  std::string out;
  json_writer w(out);
  w.begin_object().key("bridges").begin_array();
  for (const auto& [name, s] : by_bridge) {
    w.begin_object()
        .member("name", name)
        .member("configured", impl_->settings->bridge_named(name) != nullptr)
        .member("handles", static_cast<std::int64_t>(s.handles));
    if (s.last_used_at_ms > 0) w.member("last_used_at_ms", s.last_used_at_ms);
    w.end_object();
  }
  w.end_array().member("handles", static_cast<std::int64_t>(impl_->handles.size())).end_object();
  return out;
}

}  // namespace mxp::gateway
