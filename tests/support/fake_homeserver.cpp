// fake_homeserver: the Beast server behind tests/support/fake_homeserver.hpp.
// One io_context on one thread; the homeserver state sits behind a mutex so
// tests can inspect and steer it from any thread.
#include "support/fake_homeserver.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <simdjson.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "core/json_writer.hpp"

namespace mxp::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto read_timeout = std::chrono::seconds{15};  // also the keep-alive idle limit
constexpr auto write_timeout = std::chrono::seconds{15};
constexpr auto handshake_timeout = std::chrono::seconds{10};
constexpr auto tls_shutdown_timeout = std::chrono::seconds{2};
constexpr std::uint32_t header_limit = 16 * 1024;
constexpr std::uint64_t body_limit = 64 * 1024;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Completion handler for co_spawn: reports what escaped a coroutine instead of
// swallowing it as `detached` would.
auto log_exception(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      std::fprintf(stderr, "fake_homeserver: %s: %s\n", what, x.what());
    } catch (...) {
      std::fprintf(stderr, "fake_homeserver: %s: unknown exception\n", what);
    }
  };
}

enum class endpoint {
  login_flows,
  login,
  logout,
  logout_all,
  whoami,
  well_known,
  wrong_method,
  unknown
};

endpoint route(http::verb method, std::string_view target) {
  target = target.substr(0, target.find('?'));
  const auto is = [&](http::verb v, endpoint e) {
    return method == v ? e : endpoint::wrong_method;
  };
  if (target == "/.well-known/matrix/client") return is(http::verb::get, endpoint::well_known);
  for (std::string_view prefix : {"/_matrix/client/v3", "/_matrix/client/r0"}) {
    if (!target.starts_with(prefix)) continue;
    const auto rest = target.substr(prefix.size());
    if (rest == "/login") {
      if (method == http::verb::get) return endpoint::login_flows;
      return is(http::verb::post, endpoint::login);
    }
    if (rest == "/logout") return is(http::verb::post, endpoint::logout);
    if (rest == "/logout/all") return is(http::verb::post, endpoint::logout_all);
    if (rest == "/account/whoami") return is(http::verb::get, endpoint::whoami);
  }
  return endpoint::unknown;
}

struct reply {
  http::status status = http::status::ok;
  std::string body;
  int retry_after_ms = -1;  // >= 0: send a Retry-After header
};

reply json_error(http::status status, std::string_view errcode, std::string_view error) {
  reply r{status, {}};
  json_writer(r.body).begin_object().member("errcode", errcode).member("error", error).end_object();
  return r;
}

reply failure_reply(failure kind, int retry_after_ms) {
  switch (kind) {
    case failure::rate_limited: {
      reply r{http::status::too_many_requests, {}, retry_after_ms};
      json_writer(r.body)
          .begin_object()
          .member("errcode", "M_LIMIT_EXCEEDED")
          .member("error", "Too Many Requests")
          .member("retry_after_ms", retry_after_ms)
          .end_object();
      return r;
    }
    case failure::server_error:
      return json_error(http::status::internal_server_error, "M_UNKNOWN", "Internal server error");
    case failure::garbage:
      return {http::status::ok, "not json{"};
    case failure::wrong_json_shape:
      return {http::status::ok, R"({"foo":1})"};
    default:
      return json_error(http::status::internal_server_error, "M_UNKNOWN",
                        "unexpected failure kind");
  }
}

reply forbidden() {
  return json_error(http::status::forbidden, "M_FORBIDDEN", "Invalid username or password");
}

std::string random_string(std::mt19937_64& rng, std::size_t n, std::string_view alphabet) {
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  std::string s(n, '\0');
  for (auto& c : s) c = alphabet[pick(rng)];
  return s;
}

// Bearer token from an Authorization header value; nullopt when absent or not Bearer.
std::optional<std::string> bearer_token(std::string_view header) {
  constexpr std::string_view prefix = "Bearer ";
  if (!header.starts_with(prefix)) return std::nullopt;
  return std::string(header.substr(prefix.size()));
}

}  // namespace

std::string fake_shared_secret_token(std::string_view secret, std::string_view full_user_id) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha512(), secret.data(), static_cast<int>(secret.size()),
            reinterpret_cast<const unsigned char*>(full_user_id.data()), full_user_id.size(), mac,
            &len)) {
    throw std::runtime_error("HMAC-SHA512 failed");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[mac[i] >> 4];
    out += hex[mac[i] & 0xf];
  }
  return out;
}

struct fake_homeserver::impl {
  // What was decided when a request arrived (before any latency).
  struct arrival {
    endpoint ep;
    failure fail = failure::none;
    int retry_after_ms = 0;
    std::chrono::milliseconds latency{0};
  };

  struct device {
    std::optional<std::string> display_name;
    std::set<std::string> tokens;
  };
  struct token_owner {
    std::string user_id, device_id;
  };

  explicit impl(fake_homeserver_options o) : opts(std::move(o)), rng(std::random_device{}()) {
    const bool tls = !opts.tls_cert_file.empty() && !opts.tls_key_file.empty();
    if (tls) {
      ssl_ctx.emplace(asio::ssl::context::tls_server);
      ssl_ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                           asio::ssl::context::no_sslv3 | asio::ssl::context::single_dh_use);
      ssl_ctx->use_certificate_chain_file(opts.tls_cert_file);
      ssl_ctx->use_private_key_file(opts.tls_key_file, asio::ssl::context::pem);
    }
    ioc.emplace(1);
    acceptor.emplace(*ioc);
    const tcp::endpoint ep(asio::ip::make_address_v4("127.0.0.1"), opts.port);
    acceptor->open(ep.protocol());
    acceptor->set_option(asio::socket_base::reuse_address(true));
    acceptor->bind(ep);
    acceptor->listen(asio::socket_base::max_listen_connections);
    bound_port = acceptor->local_endpoint().port();
    base_url = (tls ? "https://localhost:" : "http://127.0.0.1:") + std::to_string(bound_port);

    asio::co_spawn(*ioc, accept_loop(), log_exception("accept loop"));
    thread = std::thread([this] {
      try {
        ioc->run();
      } catch (const std::exception& x) {
        std::fprintf(stderr, "fake_homeserver: io thread: %s\n", x.what());
      }
    });
  }

  ~impl() {
    // stop() makes run() return at once, hung connections or not; destroying
    // the io_context then destroys every suspended coroutine, which closes its
    // socket. The io_context goes before the state those coroutines touch.
    ioc->stop();
    if (thread.joinable()) thread.join();
    acceptor.reset();
    ioc.reset();
  }

  // ---------------------------------------------------------------- network

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(use_tuple);
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      if (ec) {  // e.g. EMFILE: back off a little instead of spinning
        asio::steady_timer t(*ioc, std::chrono::milliseconds{10});
        co_await t.async_wait(use_tuple);
        continue;
      }
      socket.set_option(tcp::no_delay(true));
      if (ssl_ctx) {
        asio::ssl::stream<beast::tcp_stream> s(beast::tcp_stream(std::move(socket)), *ssl_ctx);
        asio::co_spawn(*ioc, serve(std::move(s)), log_exception("https connection"));
      } else {
        asio::co_spawn(*ioc, serve(beast::tcp_stream(std::move(socket))),
                       log_exception("http connection"));
      }
    }
  }

  // Counts a POST /login as in progress for its lifetime.
  struct login_in_flight {
    impl* self;
    explicit login_in_flight(impl* s) : self(s) {
      std::lock_guard lock(self->mu);
      self->max_logins_in_flight = std::max(self->max_logins_in_flight, ++self->logins_in_flight);
    }
    ~login_in_flight() {
      std::lock_guard lock(self->mu);
      --self->logins_in_flight;
    }
    login_in_flight(const login_in_flight&) = delete;
    login_in_flight& operator=(const login_in_flight&) = delete;
  };

  template <typename Stream>
  asio::awaitable<void> serve(Stream stream) {
    constexpr bool tls = !std::is_same_v<Stream, beast::tcp_stream>;
    auto& tcp_layer = beast::get_lowest_layer(stream);
    if constexpr (tls) {
      tcp_layer.expires_after(handshake_timeout);
      auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, use_tuple);
      if (ec) co_return;
    }

    beast::flat_buffer buffer;
    bool graceful = true;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(header_limit);
      parser.body_limit(body_limit);
      tcp_layer.expires_after(read_timeout);
      auto [rec, rn] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
      if (!rec && !parser.is_done()) {
        if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {  // curl does this
          http::response<http::empty_body> go_on{http::status::continue_, parser.get().version()};
          co_await http::async_write(stream, go_on, use_tuple);
        }
        std::tie(rec, rn) = co_await http::async_read(stream, buffer, parser, use_tuple);
      }
      if (rec == http::error::body_limit) {
        record_arrival(parser.get());
        http::response<http::string_body> res;
        fill_response(
            res,
            json_error(http::status::payload_too_large, "M_TOO_LARGE", "Request body too large"),
            false);
        tcp_layer.expires_after(write_timeout);
        co_await http::async_write(stream, res, use_tuple);
        break;
      }
      if (rec) {
        graceful = rec == http::error::end_of_stream;
        break;
      }

      auto req = parser.release();
      const arrival a = record_arrival(req);
      std::optional<login_in_flight> in_flight;
      if (a.ep == endpoint::login) in_flight.emplace(this);

      if (a.fail == failure::hang) {
        tcp_layer.expires_never();
        asio::steady_timer forever(*ioc, asio::steady_timer::time_point::max());
        co_await forever.async_wait(use_tuple);
        co_return;
      }
      if (a.latency.count() > 0) {
        asio::steady_timer t(*ioc, a.latency);
        co_await t.async_wait(use_tuple);
      }
      if (a.fail == failure::drop_connection) {
        boost::system::error_code ignored;
        tcp_layer.socket().shutdown(tcp::socket::shutdown_both, ignored);
        tcp_layer.close();
        co_return;
      }

      const bool keep_alive = req.keep_alive();
      http::response<http::string_body> res;
      res.version(req.version());
      fill_response(
          res,
          a.fail != failure::none ? failure_reply(a.fail, a.retry_after_ms) : answer(a.ep, req),
          keep_alive);
      tcp_layer.expires_after(write_timeout);
      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      in_flight.reset();
      if (wec) {
        graceful = false;
        break;
      }
      if (!keep_alive) break;
    }

    if (!graceful) co_return;  // the stream is dead or timed out: just let it close
    if constexpr (tls) {
      tcp_layer.expires_after(tls_shutdown_timeout);
      co_await stream.async_shutdown(use_tuple);
    } else {
      boost::system::error_code ignored;
      tcp_layer.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

  static void fill_response(http::response<http::string_body>& res, reply r, bool keep_alive) {
    res.result(r.status);
    res.set(http::field::server, "mxpuppet-fakehs");
    res.set(http::field::content_type, "application/json");
    if (r.retry_after_ms >= 0) {
      res.set(http::field::retry_after, std::to_string((r.retry_after_ms + 999) / 1000));
    }
    res.keep_alive(keep_alive);
    res.body() = std::move(r.body);
    res.prepare_payload();
  }

  // ------------------------------------------------------- homeserver logic

  arrival record_arrival(const http::request<http::string_body>& req) {
    arrival a{route(req.method(), req.target())};
    std::lock_guard lock(mu);
    log.push_back(std::string(req.method_string()) + ' ' + std::string(req.target()));
    last_auth = std::string(req[http::field::authorization]);
    switch (a.ep) {
      case endpoint::login:
        ++logins;
        last_login = req.body();
        break;
      case endpoint::login_flows:
        ++login_flows;
        break;
      case endpoint::logout:
      case endpoint::logout_all:
        ++logouts;
        break;
      case endpoint::whoami:
        ++whoamis;
        break;
      default:
        break;
    }
    if (fail_all_kind != failure::none) {
      a.fail = fail_all_kind;
      a.retry_after_ms = fail_all_retry_ms;
    } else if (a.ep == endpoint::login && fail_next_count > 0) {
      --fail_next_count;
      a.fail = fail_next_kind;
      a.retry_after_ms = fail_next_retry_ms;
    }
    a.latency = latency;
    return a;
  }

  reply answer(endpoint ep, const http::request<http::string_body>& req) {
    switch (ep) {
      case endpoint::login_flows:
        return login_flows_reply();
      case endpoint::login:
        return login(req.body());
      case endpoint::logout:
      case endpoint::logout_all:
      case endpoint::whoami: {
        const auto token = bearer_token(req[http::field::authorization]);
        if (!token)
          return json_error(http::status::unauthorized, "M_MISSING_TOKEN", "Missing access token");
        return authenticated(ep, *token);
      }
      case endpoint::well_known: {
        reply r;
        json_writer(r.body)
            .begin_object()
            .key("m.homeserver")
            .begin_object()
            .member("base_url", base_url)
            .end_object()
            .end_object();
        return r;
      }
      case endpoint::wrong_method:
        return json_error(http::status::method_not_allowed, "M_UNRECOGNIZED",
                          "Unrecognized request");
      case endpoint::unknown:
        break;
    }
    return json_error(http::status::not_found, "M_UNRECOGNIZED", "Unrecognized request");
  }

  reply login_flows_reply() const {
    reply r;
    json_writer w(r.body);
    w.begin_object().key("flows").begin_array();
    if (opts.flow_password) w.begin_object().member("type", "m.login.password").end_object();
    if (opts.flow_devture) {
      w.begin_object().member("type", "com.devture.shared_secret_auth").end_object();
    }
    w.end_array().end_object();
    return r;
  }

  // "@local:server" or "local" -> "@local:server_name"; nullopt for another server.
  std::optional<std::string> qualify(std::string_view user) const {
    if (!user.starts_with('@')) return "@" + std::string(user) + ":" + opts.server_name;
    const auto colon = user.find(':');
    if (colon == std::string_view::npos || colon == 1) return std::nullopt;
    if (user.substr(colon + 1) != opts.server_name) return std::nullopt;
    return std::string(user);
  }

  reply login(const std::string& body) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (parser.parse(body).get(root)) {
      return json_error(http::status::bad_request, "M_NOT_JSON", "Content not JSON.");
    }
    simdjson::dom::object doc;
    if (root.get(doc)) {
      return json_error(http::status::bad_request, "M_BAD_JSON", "Content must be a JSON object.");
    }
    std::string_view type;
    if (doc["type"].get(type)) type = {};
    const char* credential_field = nullptr;
    if (type == "com.devture.shared_secret_auth" && opts.flow_devture) credential_field = "token";
    if (type == "m.login.password" && opts.flow_password) credential_field = "password";
    if (!credential_field) {
      return json_error(http::status::bad_request, "M_UNKNOWN", "Unknown login type");
    }

    std::string_view user;
    simdjson::dom::object identifier;
    if (!doc["identifier"].get(identifier)) {
      std::string_view id_type;
      if (identifier["type"].get(id_type) || id_type != "m.id.user") {
        return json_error(http::status::bad_request, "M_UNKNOWN", "Unknown login identifier type");
      }
      if (identifier["user"].get(user)) {
        return json_error(http::status::bad_request, "M_INVALID_PARAM", "Invalid login submission");
      }
    } else if (doc["user"].get(user)) {  // the legacy top-level "user"
      return json_error(http::status::bad_request, "M_INVALID_PARAM", "Invalid login submission");
    }

    std::string_view credential;
    if (doc[credential_field].get(credential)) {
      return json_error(http::status::bad_request, "M_MISSING_PARAM",
                        std::string("Missing parameter: ") + credential_field);
    }

    std::optional<std::string> device_id;
    if (auto d = doc["device_id"]; d.error() != simdjson::NO_SUCH_FIELD && !d.is_null()) {
      std::string_view v;
      if (d.get(v)) {
        return json_error(http::status::bad_request, "M_INVALID_PARAM",
                          "device_id must be a string");
      }
      if (!v.empty()) device_id = std::string(v);
    }
    std::optional<std::string> display_name;
    if (std::string_view v; !doc["initial_device_display_name"].get(v))
      display_name = std::string(v);

    const auto user_id = qualify(user);
    if (!user_id) return forbidden();
    const auto expected = fake_shared_secret_token(opts.shared_secret, *user_id);
    if (credential.size() != expected.size() ||
        CRYPTO_memcmp(credential.data(), expected.data(), expected.size()) != 0) {
      return forbidden();
    }

    std::lock_guard lock(mu);
    if (nonexistent.contains(*user_id)) return forbidden();
    if (!device_id) device_id = random_string(rng, 10, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    std::string token;
    do {
      token =
          "syt_" +
          random_string(rng, 20, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
    } while (tokens.contains(token));

    auto [it, created] = devices.try_emplace({*user_id, *device_id});
    if (created)
      it->second.display_name = std::move(display_name);  // kept on re-login, as Synapse does
    it->second.tokens.insert(token);
    tokens.emplace(token, token_owner{*user_id, *device_id});
    ++successful_logins;

    reply r;
    json_writer(r.body)
        .begin_object()
        .member("user_id", *user_id)
        .member("access_token", token)
        .member("home_server", opts.server_name)
        .member("device_id", *device_id)
        .end_object();
    return r;
  }

  reply authenticated(endpoint ep, const std::string& token) {
    std::lock_guard lock(mu);
    const auto t = tokens.find(token);
    if (t == tokens.end()) {
      reply r{http::status::unauthorized, {}};
      json_writer(r.body)
          .begin_object()
          .member("errcode", "M_UNKNOWN_TOKEN")
          .member("error", "Unknown access token")
          .member("soft_logout", false)
          .end_object();
      return r;
    }
    const token_owner owner = t->second;
    reply r;
    switch (ep) {
      case endpoint::whoami:
        json_writer(r.body)
            .begin_object()
            .member("user_id", owner.user_id)
            .member("device_id", owner.device_id)
            .member("is_guest", false)
            .end_object();
        return r;
      case endpoint::logout:
        delete_device_locked(owner.user_id, owner.device_id);
        break;
      default:  // logout_all
        for (auto it = devices.lower_bound({owner.user_id, ""});
             it != devices.end() && it->first.first == owner.user_id;) {
          for (const auto& tok : it->second.tokens) tokens.erase(tok);
          it = devices.erase(it);
        }
        break;
    }
    r.body = "{}";
    return r;
  }

  void delete_device_locked(const std::string& user_id, const std::string& device_id) {
    const auto it = devices.find({user_id, device_id});
    if (it == devices.end()) return;
    for (const auto& tok : it->second.tokens) tokens.erase(tok);
    devices.erase(it);
  }

  // ------------------------------------------------------------------ state

  const fake_homeserver_options opts;
  unsigned short bound_port = 0;
  std::string base_url;

  mutable std::mutex mu;  // guards everything below
  std::mt19937_64 rng;
  std::map<std::pair<std::string, std::string>, device> devices;  // (user, device) -> device
  std::unordered_map<std::string, token_owner> tokens;
  std::set<std::string> nonexistent;
  std::chrono::milliseconds latency{0};
  failure fail_next_kind = failure::none;
  int fail_next_count = 0;
  int fail_next_retry_ms = 1000;
  failure fail_all_kind = failure::none;
  int fail_all_retry_ms = 1000;
  int logins = 0, successful_logins = 0, logouts = 0, whoamis = 0, login_flows = 0;
  int logins_in_flight = 0, max_logins_in_flight = 0;
  std::vector<std::string> log;
  std::string last_login, last_auth;

  // Asio objects last: the destructor tears them down explicitly, before the state.
  std::optional<asio::ssl::context> ssl_ctx;
  std::optional<asio::io_context> ioc;
  std::optional<tcp::acceptor> acceptor;
  std::thread thread;
};

fake_homeserver::fake_homeserver(fake_homeserver_options options)
    : impl_(std::make_unique<impl>(std::move(options))) {}

fake_homeserver::~fake_homeserver() = default;

unsigned short fake_homeserver::port() const {
  return impl_->bound_port;
}
std::string fake_homeserver::url() const {
  return impl_->base_url;
}
const std::string& fake_homeserver::server_name() const {
  return impl_->opts.server_name;
}

void fake_homeserver::set_latency(std::chrono::milliseconds latency) {
  std::lock_guard lock(impl_->mu);
  impl_->latency = latency;
}

void fake_homeserver::fail_next(int count, failure kind, int retry_after_ms) {
  std::lock_guard lock(impl_->mu);
  impl_->fail_next_count = kind == failure::none ? 0 : std::max(count, 0);
  impl_->fail_next_kind = kind;
  impl_->fail_next_retry_ms = retry_after_ms;
}

void fake_homeserver::fail_all(failure kind, int retry_after_ms) {
  std::lock_guard lock(impl_->mu);
  impl_->fail_all_kind = kind;
  impl_->fail_all_retry_ms = retry_after_ms;
}

void fake_homeserver::add_nonexistent_user(std::string user_id) {
  auto full = impl_->qualify(user_id);
  std::lock_guard lock(impl_->mu);
  impl_->nonexistent.insert(full ? std::move(*full) : std::move(user_id));
}

int fake_homeserver::login_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->logins;
}
int fake_homeserver::successful_login_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->successful_logins;
}
int fake_homeserver::logout_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->logouts;
}
int fake_homeserver::whoami_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->whoamis;
}
int fake_homeserver::login_flows_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->login_flows;
}
int fake_homeserver::device_count() const {
  std::lock_guard lock(impl_->mu);
  return static_cast<int>(impl_->devices.size());
}
int fake_homeserver::device_count(const std::string& user_id) const {
  std::lock_guard lock(impl_->mu);
  int n = 0;
  for (auto it = impl_->devices.lower_bound({user_id, ""});
       it != impl_->devices.end() && it->first.first == user_id; ++it) {
    ++n;
  }
  return n;
}
bool fake_homeserver::token_is_live(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  return impl_->tokens.contains(token);
}
std::optional<std::string> fake_homeserver::user_of_token(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  const auto it = impl_->tokens.find(token);
  if (it == impl_->tokens.end()) return std::nullopt;
  return it->second.user_id;
}
std::optional<std::string> fake_homeserver::device_of_token(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  const auto it = impl_->tokens.find(token);
  if (it == impl_->tokens.end()) return std::nullopt;
  return it->second.device_id;
}
std::optional<std::string> fake_homeserver::device_display_name(
    const std::string& user_id, const std::string& device_id) const {
  std::lock_guard lock(impl_->mu);
  const auto it = impl_->devices.find({user_id, device_id});
  if (it == impl_->devices.end()) return std::nullopt;
  return it->second.display_name;
}
int fake_homeserver::max_concurrent_logins_seen() const {
  std::lock_guard lock(impl_->mu);
  return impl_->max_logins_in_flight;
}
std::vector<std::string> fake_homeserver::request_log() const {
  std::lock_guard lock(impl_->mu);
  return impl_->log;
}
std::string fake_homeserver::last_login_body() const {
  std::lock_guard lock(impl_->mu);
  return impl_->last_login;
}
std::string fake_homeserver::last_authorization_header() const {
  std::lock_guard lock(impl_->mu);
  return impl_->last_auth;
}

}  // namespace mxp::test
