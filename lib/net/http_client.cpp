// http_client: Beast over TCP or TLS (OpenSSL), one pool of keep-alive connections per origin.
#include "net/http_client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>
#include <boost/url/parse.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <stdexcept>
#include <vector>

#include "core/errc.hpp"

namespace mxp::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace urls = boost::urls;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using steady = std::chrono::steady_clock;

void throw_exception_from_error(const http_failure& failure,
                                const boost::source_location& location) {
  boost::throw_exception(boost::system::system_error(failure.code, failure.diagnostic), location);
}

std::optional<base_url> parse_base_url(std::string_view url) {
  const auto parsed = urls::parse_absolute_uri(url);
  if (!parsed) return std::nullopt;
  const urls::url_view& u = *parsed;
  // Lower case only, as the config loader writes it; no user info, query or fragment.
  base_url out;
  if (u.scheme() == "https") {
    out.tls = true;
  } else if (u.scheme() != "http") {
    return std::nullopt;
  }
  if (!u.has_authority() || u.has_userinfo() || u.has_query() || u.has_fragment())
    return std::nullopt;
  // Without brackets for IPv6 (the resolver's form); the host as written otherwise.
  const std::string_view host = u.encoded_host_address();
  // A port of up to 5 digits; none (or "host:") means the scheme's.
  const std::string_view port = u.port();
  if (host.empty() || port.size() > 5) return std::nullopt;
  out.host = std::string{host};
  out.port = port.empty() ? (out.tls ? "443" : "80") : std::string{port};
  out.host_header = std::string{u.encoded_authority()};
  std::string_view path = u.encoded_path();
  // Boost.URL 1.81 reads "http://host:8a" as port "8" and path "a": refuse a rootless path.
  if (!path.empty() && path.front() != '/') return std::nullopt;
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  out.path_prefix = std::string{path};
  return out;
}

namespace {

using secure_stream = beast::ssl_stream<beast::tcp_stream>;

struct connection {
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

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// An error that means "the peer closed a connection we thought was alive".
bool is_stale_connection_error(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::ssl::error::stream_truncated;
}

http_failure failure_from(const error_code& ec, std::string_view step, const base_url& url) {
  if (ec == beast::error::timeout)
    return {errc::upstream_timeout, fmt::format("{} {}:{}: timed out", step, url.host, url.port)};
  if (ec == http::error::body_limit)
    return {errc::upstream_bad_response,
            fmt::format("{} {}:{}: answer too large", step, url.host, url.port)};
  if (ec.category() == make_error_code(http::error::end_of_stream).category() &&
      ec != http::error::end_of_stream)
    return {errc::upstream_bad_response, fmt::format("{} {}:{}: malformed HTTP answer: {}", step,
                                                     url.host, url.port, ec.message())};
  return {ec, fmt::format("{} {}:{}: {}", step, url.host, url.port, ec.message())};
}

}  // namespace

struct http_client::impl {
  asio::any_io_executor executor;
  base_url url;
  http_client_options options;
  std::optional<asio::ssl::context> tls_context;
  std::vector<std::unique_ptr<connection>> idle;
  // What requests in flight are waiting on, so that cancel_all() can end them.
  std::vector<connection*> busy;
  std::vector<tcp::resolver*> resolving;
  std::uint64_t cancellations = 0;  // bumped by cancel_all(): a request sees it was cancelled

  // Registers `item` in `list` for the guard's lifetime.
  template <typename T>
  struct registration {
    std::vector<T*>& list;
    T* item;
    registration(std::vector<T*>& l, T* i) : list(l), item(i) { list.push_back(item); }
    ~registration() { std::erase(list, item); }
    registration(const registration&) = delete;
    registration& operator=(const registration&) = delete;
  };

  std::unique_ptr<connection> take_idle() {
    const auto now = steady::now();
    while (!idle.empty()) {
      auto c = std::move(idle.back());
      idle.pop_back();
      if (now - c->idle_since < options.idle_connection_lifetime) return c;
      c->close();
    }
    return nullptr;
  }

  void give_back(std::unique_ptr<connection> c) {
    if (idle.size() >= options.max_idle_connections) return c->close();
    c->idle_since = steady::now();
    idle.push_back(std::move(c));
  }

  asio::awaitable<boost::system::result<std::unique_ptr<connection>, http_failure>> connect(
      steady::time_point deadline) {
    const auto connect_deadline = std::min(deadline, steady::now() + options.connect_timeout);
    error_code ec;
    // The resolver has no deadline of its own: a timer cancels it.
    auto resolver = std::make_shared<tcp::resolver>(executor);
    registration<tcp::resolver> resolve_in_flight{resolving, resolver.get()};
    auto timed_out = std::make_shared<bool>(false);
    asio::steady_timer guard{executor, connect_deadline};
    guard.async_wait([weak = std::weak_ptr<tcp::resolver>(resolver), timed_out](error_code e) {
      if (e) return;
      *timed_out = true;
      if (auto r = weak.lock()) r->cancel();
    });
    auto endpoints = co_await resolver->async_resolve(
        url.host, url.port, asio::redirect_error(asio::use_awaitable, ec));
    guard.cancel();
    if (*timed_out) co_return failure_from(beast::error::timeout, "resolve", url);
    if (ec) co_return failure_from(ec, "resolve", url);

    auto c = std::make_unique<connection>();
    if (url.tls) {
      c->secure = std::make_unique<secure_stream>(executor, *tls_context);
    } else {
      c->plain = std::make_unique<beast::tcp_stream>(executor);
    }
    registration<connection> connect_in_flight{busy, c.get()};
    c->lowest().expires_at(connect_deadline);
    co_await c->lowest().async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return failure_from(ec, "connect", url);
    c->lowest().socket().set_option(tcp::no_delay{true}, ec);

    if (url.tls) {
      SSL* ssl = c->secure->native_handle();
      if (is_ip_literal(url.host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url.host.c_str());
      } else {
        SSL_set_tlsext_host_name(ssl, url.host.c_str());  // SNI
        SSL_set1_host(ssl, url.host.c_str());             // hostname verification
      }
      co_await c->secure->async_handshake(asio::ssl::stream_base::client,
                                          asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return failure_from(ec, "TLS handshake with", url);
    }
    co_return c;
  }

  template <typename Stream>
  static asio::awaitable<error_code> exchange(Stream& stream, connection& c,
                                              http::request<http::string_body>& req,
                                              http::response_parser<http::string_body>& parser) {
    error_code ec;
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return ec;
    co_await http::async_read(stream, c.buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    co_return ec;
  }
};

http_client::http_client(asio::any_io_executor executor, std::string_view url,
                         http_client_options options)
    : impl_(std::make_unique<impl>()) {
  auto parsed = parse_base_url(url);
  if (!parsed) throw std::invalid_argument(fmt::format("malformed homeserver URL '{}'", url));
  impl_->executor = std::move(executor);
  impl_->url = std::move(*parsed);
  impl_->options = std::move(options);
  if (impl_->url.tls) {
    auto& ctx = impl_->tls_context.emplace(asio::ssl::context::tls_client);
    ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                    asio::ssl::context::no_tlsv1_1);
    ctx.set_verify_mode(asio::ssl::verify_peer);
    error_code ec;
    if (impl_->options.ca_file.empty()) {
      ctx.set_default_verify_paths(ec);
    } else {
      ctx.load_verify_file(impl_->options.ca_file, ec);
    }
    if (ec)
      throw std::runtime_error(fmt::format("cannot load CA certificates{}{}: {}",
                                           impl_->options.ca_file.empty() ? "" : " from ",
                                           impl_->options.ca_file, ec.message()));
  }
}

http_client::~http_client() {
  close_idle();
}

const base_url& http_client::url() const noexcept {
  return impl_->url;
}
std::size_t http_client::idle_connections() const noexcept {
  return impl_->idle.size();
}

void http_client::close_idle() {
  for (auto& c : impl_->idle) c->close();
  impl_->idle.clear();
}

void http_client::cancel_all() {
  ++impl_->cancellations;
  for (auto* r : impl_->resolving) r->cancel();
  for (auto* c : impl_->busy) c->close();
  close_idle();
}

asio::awaitable<boost::system::result<http_response, http_failure>> http_client::request(
    http_request req) {
  auto& self = *impl_;
  const auto deadline = steady::now() + self.options.request_timeout;

  http::request<http::string_body> message;
  message.method_string(req.method);
  message.target(self.url.path_prefix + req.target);
  message.version(11);
  message.set(http::field::host, self.url.host_header);
  message.set(http::field::user_agent, "mxpuppetd/" MXP_VERSION);
  message.set(http::field::accept, "application/json");
  if (req.bearer) message.set(http::field::authorization, "Bearer " + req.bearer->reveal());
  if (req.basic) message.set(http::field::authorization, "Basic " + req.basic->reveal());
  if (!req.body.empty() || req.method == "POST" || req.method == "PUT") {
    message.set(http::field::content_type, req.content_type);
    message.body() = std::move(req.body);
  }
  message.prepare_payload();

  const auto cancellations = self.cancellations;
  const auto cancelled = [&] {
    return http_failure{errc::shutting_down,
                        fmt::format("{} {} at {}:{}: cancelled (shutting down)", req.method,
                                    req.target, self.url.host, self.url.port)};
  };
  for (int attempt = 0;; ++attempt) {
    auto c = self.take_idle();
    const bool reused = c != nullptr;
    if (!c) {
      spdlog::debug("connecting to {}:{}{}", self.url.host, self.url.port,
                    self.url.tls ? " (TLS)" : "");
      auto connected = co_await self.connect(deadline);
      if (self.cancellations != cancellations || !connected) {
        auto failure = connected ? cancelled() : std::move(connected).error();
        failure.request_sent = false;
        co_return std::move(failure);
      }
      c = std::move(connected.value());
    }
    http::response_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(self.options.max_response_bytes);
    c->buffer.clear();
    c->lowest().expires_at(deadline);
    error_code ec;
    {
      impl::registration<connection> exchange_in_flight{self.busy, c.get()};
      // if/else, not ?: with a co_await in each arm: GCC 12 miscompiles that form.
      if (c->secure)
        ec = co_await impl::exchange(*c->secure, *c, message, parser);
      else
        ec = co_await impl::exchange(*c->plain, *c, message, parser);
    }
    // An answer that arrived whole before the cancellation is kept: it may carry a new token.
    if (ec && self.cancellations != cancellations) co_return cancelled();
    if (ec) {
      c->close();  // a stream that failed or timed out is never reused
      const bool nothing_received = !parser.got_some() && c->buffer.size() == 0;
      if (reused && attempt == 0 && req.replay_safe && nothing_received &&
          is_stale_connection_error(ec)) {
        spdlog::debug("{} {}:{}: reused connection was closed ({}); retrying on a new one",
                      req.target, self.url.host, self.url.port, ec.message());
        continue;  // the server closed an idle keep-alive connection: try a fresh one
      }
      co_return failure_from(ec, fmt::format("{} {} at", req.method, req.target), self.url);
    }
    auto& res = parser.get();
    http_response out;
    out.status = static_cast<int>(res.result_int());
    if (auto it = res.find(http::field::retry_after); it != res.end())
      out.retry_after = std::string{it->value()};
    const bool keep = res.keep_alive() && !res.need_eof();
    out.body = std::move(res.body());
    if (keep) {
      c->lowest().expires_never();
      self.give_back(std::move(c));
    } else {
      c->close();
    }
    co_return out;
  }
}

}  // namespace mxp::net
