// fake_homeserver: the Beast server behind tests/support/fake_homeserver.hpp.
// One io_context on one thread; the homeserver state sits behind a mutex so
// tests can inspect and steer it from any thread.
#include "support/fake_homeserver.hpp"
#include "support/tcp_http.hpp"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
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
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <array>
#include <charconv>
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
#include "core/percent_encoding.hpp"

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
  register_user,   // POST /register (appservice registration)
  admin_login,     // POST /_synapse/admin/v1/users/{userId}/login
  refresh,         // POST /v1/refresh (and /v3/refresh when enabled)
  refresh_v3,      // POST /v3/refresh
  room_send,       // PUT /rooms/{roomId}/send/{type}/{txnId}
  sync,            // GET /sync (waits ?timeout= ms)
  media_upload,    // POST /_matrix/media/v3/upload (streamed, counted)
  media_download,  // GET /_matrix/media/v3/download/{server}/{id} (streamed)
  wrong_method,
  unknown
};

endpoint route(http::verb method, std::string_view target) {
  target = target.substr(0, target.find('?'));
  const auto is = [&](http::verb v, endpoint e) {
    return method == v ? e : endpoint::wrong_method;
  };
  if (target == "/.well-known/matrix/client") return is(http::verb::get, endpoint::well_known);
  if (constexpr std::string_view admin = "/_synapse/admin/v1/users/";
      target.starts_with(admin) && target.ends_with("/login") &&
      target.size() > admin.size() + std::string_view{"/login"}.size())
    return is(http::verb::post, endpoint::admin_login);
  if (target == "/_matrix/client/v1/refresh") return is(http::verb::post, endpoint::refresh);
  for (std::string_view media : {"/_matrix/media/v3", "/_matrix/media/r0"}) {
    if (!target.starts_with(media)) continue;
    const auto rest = target.substr(media.size());
    if (rest == "/upload") return is(http::verb::post, endpoint::media_upload);
    if (rest.starts_with("/download/")) return is(http::verb::get, endpoint::media_download);
  }
  if (target == "/_matrix/client/v3/refresh") return is(http::verb::post, endpoint::refresh_v3);
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
    if (rest == "/register") return is(http::verb::post, endpoint::register_user);
    if (rest == "/sync") return is(http::verb::get, endpoint::sync);
    if (rest.starts_with("/rooms/") && rest.find("/send/") != std::string_view::npos)
      return is(http::verb::put, endpoint::room_send);
  }
  return endpoint::unknown;
}

struct reply {
  http::status status = http::status::ok;
  std::string body;
  int retry_after_ms = -1;  // >= 0: send a Retry-After header
  bool drop = false;        // done, but the answer is lost: close without writing it
};

reply json_error(http::status status, std::string_view errcode, std::string_view error) {
  reply r{status, {}};
  json_writer(r.body).begin_object().member("errcode", errcode).member("error", error).end_object();
  return r;
}

// Synapse's LimitExceededError: the wait is in the body only (no Retry-After header).
reply limit_exceeded(int retry_after_ms) {
  reply r{http::status::too_many_requests, {}};
  json_writer(r.body)
      .begin_object()
      .member("errcode", "M_LIMIT_EXCEEDED")
      .member("error", "Too Many Requests")
      .member("retry_after_ms", retry_after_ms)
      .end_object();
  return r;
}

reply failure_reply(failure kind, int retry_after_ms) {
  switch (kind) {
    case failure::rate_limited: {  // the injected kind also sends a Retry-After header
      reply r = limit_exceeded(retry_after_ms);
      r.retry_after_ms = retry_after_ms;
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

// The user-ID part of an rc_login.account key: Synapse lowercases it.
std::string lowercase(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
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

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// --- JWT verification, independent of lib/credentials -------------------------------------

std::optional<std::string> base64url_decode(std::string_view in) {
  std::string out;
  unsigned buf = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '-')
      v = 62;
    else if (c == '_')
      v = 63;
    else
      return std::nullopt;  // padding and the standard alphabet are not base64url
    buf = (buf << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buf >> bits) & 0xff);
    }
  }
  if (bits >= 6) return std::nullopt;  // a lone trailing character
  return out;
}

struct jwt_rules {
  std::string algorithm, secret, public_key_pem, subject_claim = "sub", issuer;
  std::vector<std::string> audiences;
  int skew_s = 120;
  bool require_exp = false;
};

const EVP_MD* digest_of(std::string_view alg) {
  if (alg.ends_with("256")) return EVP_sha256();
  if (alg.ends_with("384")) return EVP_sha384();
  if (alg.ends_with("512")) return EVP_sha512();
  return nullptr;
}

// Checks a compact JWS's signature under `rules`; nullopt when it verifies, else why not.
std::optional<std::string> verify_signature(const jwt_rules& rules, std::string_view signing_input,
                                            const std::string& sig) {
  const std::string_view alg = rules.algorithm;
  const EVP_MD* md = digest_of(alg);
  if (alg.starts_with("HS")) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(md, rules.secret.data(), static_cast<int>(rules.secret.size()),
              reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(),
              mac, &len))
      return "HMAC failed";
    if (sig.size() != len || CRYPTO_memcmp(sig.data(), mac, len) != 0)
      return "Signature verification failed";
    return std::nullopt;
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(rules.public_key_pem.data(), static_cast<int>(rules.public_key_pem.size())),
      &BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr, &EVP_PKEY_free);
  if (!key) return "the test gave no usable public key";
  std::string der_sig = sig;
  if (alg.starts_with("ES")) {  // JOSE R||S -> DER ECDSA-Sig-Value
    const std::size_t half = alg == "ES256" ? 32 : alg == "ES384" ? 48 : 66;
    if (sig.size() != 2 * half) return "Signature verification failed";
    ECDSA_SIG* es = ECDSA_SIG_new();
    BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()),
                          static_cast<int>(half), nullptr);
    BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data() + half),
                          static_cast<int>(half), nullptr);
    ECDSA_SIG_set0(es, r, s);
    unsigned char* der = nullptr;
    const int der_len = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    if (der_len <= 0) return "DER conversion failed";
    der_sig.assign(reinterpret_cast<const char*>(der), static_cast<std::size_t>(der_len));
    OPENSSL_free(der);
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestVerifyInit(ctx.get(), &pctx, alg == "EdDSA" ? nullptr : md, nullptr, key.get()) !=
      1)
    return "the key does not fit the algorithm";
  if (alg.starts_with("PS")) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1)
      return "PSS setup failed";
  } else if (alg.starts_with("RS")) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) return "PKCS#1 setup failed";
  }
  const int ok = EVP_DigestVerify(
      ctx.get(), reinterpret_cast<const unsigned char*>(der_sig.data()), der_sig.size(),
      reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size());
  if (ok != 1) return "Signature verification failed";
  return std::nullopt;
}

// Verifies a compact JWT: header alg, signature, exp/nbf/iat with the skew, iss and aud.
// On success `claims` is the payload object (kept alive by `parser`); else the reason.
std::optional<std::string> verify_jwt(const jwt_rules& rules, std::string_view token,
                                      simdjson::dom::parser& parser,
                                      simdjson::dom::object& claims) {
  const auto dot1 = token.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return "Not enough segments";
  const auto header = base64url_decode(token.substr(0, dot1));
  const auto payload = base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  const auto sig = base64url_decode(token.substr(dot2 + 1));
  if (!header || !payload || !sig) return "Invalid base64url";
  {
    simdjson::dom::parser hp;
    std::string_view alg;
    if (hp.parse(*header).get_object()["alg"].get_string().get(alg) != simdjson::SUCCESS)
      return "Invalid header";
    if (alg != rules.algorithm) return "The specified alg value is not allowed";
  }
  if (auto bad = verify_signature(rules, token.substr(0, dot2), *sig)) return bad;
  if (parser.parse(*payload).get_object().get(claims) != simdjson::SUCCESS)
    return "Invalid payload";
  const std::int64_t now = now_ms() / 1000;
  std::int64_t t = 0;
  if (auto exp = claims["exp"]; exp.error() != simdjson::NO_SUCH_FIELD) {
    if (exp.get_int64().get(t) != simdjson::SUCCESS) return "exp is not an integer";
    if (now > t + rules.skew_s) return "Signature has expired";
  } else if (rules.require_exp) {
    return "Token is missing the \"exp\" claim";
  }
  if (auto nbf = claims["nbf"]; nbf.error() != simdjson::NO_SUCH_FIELD) {
    if (nbf.get_int64().get(t) != simdjson::SUCCESS) return "nbf is not an integer";
    if (now + rules.skew_s < t) return "The token is not yet valid (nbf)";
  }
  if (auto iat = claims["iat"]; iat.error() != simdjson::NO_SUCH_FIELD) {
    if (iat.get_int64().get(t) != simdjson::SUCCESS) return "iat is not an integer";
    if (now + rules.skew_s < t) return "The token is not yet valid (iat)";
  }
  if (!rules.issuer.empty()) {
    std::string_view iss;
    if (claims["iss"].get_string().get(iss) != simdjson::SUCCESS)
      return "Token is missing the \"iss\" claim";
    if (iss != rules.issuer) return "Invalid issuer";
  }
  if (!rules.audiences.empty()) {
    std::vector<std::string_view> aud;
    std::string_view one;
    simdjson::dom::array many;
    if (claims["aud"].get_string().get(one) == simdjson::SUCCESS) {
      aud.push_back(one);
    } else if (claims["aud"].get_array().get(many) == simdjson::SUCCESS) {
      for (auto a : many)
        if (a.get_string().get(one) == simdjson::SUCCESS) aud.push_back(one);
    } else {
      return "Token is missing the \"aud\" claim";
    }
    const bool match = std::any_of(aud.begin(), aud.end(), [&](std::string_view a) {
      return std::find(rules.audiences.begin(), rules.audiences.end(), a) != rules.audiences.end();
    });
    if (!match) return "Invalid audience";
  }
  return std::nullopt;
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
    bool used = false;  // an access token: accepted on an authenticated endpoint at least once
  };
  // A refresh token, as Synapse's refresh_tokens table keeps it.
  struct refresh_state {
    token_owner owner;
    std::string access;  // the access token issued with it
    std::string next;    // the refresh token that replaced it ("" while it has not been used)
  };
  // One rc_login bucket of one key, as Synapse's Ratelimiter keeps it.
  struct bucket {
    double actions = 0;  // actions counted since start_s
    double start_s = 0;
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

    boost::system::error_code endpoint_ec;
    const auto peer = tcp_layer.socket().remote_endpoint(endpoint_ec);
    const std::string client_ip = endpoint_ec ? std::string{} : peer.address().to_string();

    beast::flat_buffer buffer;
    bool graceful = true;
    for (;;) {
      http::request_parser<http::empty_body> head;
      head.header_limit(header_limit);
      head.body_limit(boost::none);  // media uploads stream; the rest is checked below
      tcp_layer.expires_after(read_timeout);
      auto [hec, hn] = co_await http::async_read_header(stream, buffer, head, use_tuple);
      if (hec) {
        graceful = hec == http::error::end_of_stream;
        break;
      }
      if (const auto ep = route(head.get().method(), head.get().target());
          ep == endpoint::media_upload || ep == endpoint::media_download) {
        if (!co_await serve_media(stream, buffer, head, ep)) {
          graceful = false;
          break;
        }
        continue;
      }
      http::request_parser<http::string_body> parser{std::move(head)};
      parser.body_limit(body_limit);
      boost::system::error_code rec;
      if (parser.content_length() && *parser.content_length() > body_limit)
        rec = http::error::body_limit;
      if (!rec && !parser.is_done()) {
        if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {  // curl does this
          http::response<http::empty_body> go_on{http::status::continue_, parser.get().version()};
          co_await http::async_write(stream, go_on, use_tuple);
        }
        std::tie(rec, std::ignore) = co_await http::async_read(stream, buffer, parser, use_tuple);
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
      if (a.ep == endpoint::sync) {  // a long-poll: wait ?timeout= ms (as Synapse with no events)
        const auto target = std::string_view{req.target()};
        if (const auto at = target.find("timeout="); at != std::string_view::npos) {
          int ms = 0;
          std::from_chars(target.data() + at + 8, target.data() + target.size(), ms);
          tcp_layer.expires_after(read_timeout + std::chrono::milliseconds{ms});
          asio::steady_timer t(*ioc, std::chrono::milliseconds{ms});
          co_await t.async_wait(use_tuple);
        }
      }
      if (a.fail == failure::drop_connection) {
        boost::system::error_code ignored;
        tcp_layer.socket().shutdown(tcp::socket::shutdown_both, ignored);
        tcp_layer.close();
        co_return;
      }

      const bool keep_alive = req.keep_alive();
      reply r = a.fail != failure::none ? failure_reply(a.fail, a.retry_after_ms)
                                        : answer(a.ep, req, client_ip);
      if (r.drop) {  // the work is done, the answer is lost on the way
        boost::system::error_code ignored;
        tcp_layer.socket().shutdown(tcp::socket::shutdown_both, ignored);
        tcp_layer.close();
        co_return;
      }
      http::response<http::string_body> res;
      res.version(req.version());
      fill_response(res, std::move(r), keep_alive);
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

  // Media: an upload's body is read in pieces and only counted (bytes and FNV-1a), a download
  // of id "big<N>" is N bytes of media_byte(i), written in pieces: neither is ever whole here.
  template <typename Stream>
  asio::awaitable<bool> serve_media(Stream& stream, beast::flat_buffer& buffer,
                                    http::request_parser<http::empty_body>& head, endpoint ep) {
    auto& tcp_layer = beast::get_lowest_layer(stream);
    const auto& h = head.get();
    {
      std::lock_guard lock(mu);
      log.push_back(std::string(h.method_string()) + ' ' + std::string(h.target()));
      last_auth = std::string(h[http::field::authorization]);
      auths.push_back(last_auth);
    }
    const bool keep_alive = h.keep_alive();
    std::array<char, 64 * 1024> chunk;
    const auto respond = [&](reply r, bool keep) -> asio::awaitable<bool> {
      http::response<http::string_body> res;
      fill_response(res, std::move(r), keep);
      tcp_layer.expires_after(write_timeout);
      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      co_return !wec && keep;
    };
    if (ep == endpoint::media_upload) {
      auto who = acting_user(h.target(), h[http::field::authorization]);
      if (!who.user) co_return co_await respond(std::move(who.error), false);  // body unread
      if (beast::iequals(h[http::field::expect], "100-continue")) {
        http::response<http::empty_body> go_on{http::status::continue_, h.version()};
        tcp_layer.expires_after(write_timeout);
        co_await http::async_write(stream, go_on, use_tuple);
      }
      http::request_parser<http::buffer_body> body{std::move(head)};
      body.body_limit(boost::none);
      std::uint64_t bytes = 0, fnv = 1469598103934665603ULL;
      while (!body.is_done()) {
        body.get().body().data = chunk.data();
        body.get().body().size = chunk.size();
        tcp_layer.expires_after(read_timeout);
        auto [ec, n] = co_await http::async_read(stream, buffer, body, use_tuple);
        if (ec && ec != http::error::need_buffer) co_return false;
        const auto got = chunk.size() - body.get().body().size;
        for (std::size_t i = 0; i < got; ++i)
          fnv = (fnv ^ static_cast<unsigned char>(chunk[i])) * 1099511628211ULL;
        bytes += got;
      }
      std::string id;
      {
        std::lock_guard lock(mu);
        id = "up" + std::to_string(++uploads);
        last_upload = {bytes, fnv};
      }
      reply r;
      json_writer(r.body)
          .begin_object()
          .member("content_uri", "mxc://" + opts.server_name + "/" + id)
          .end_object();
      co_return co_await respond(std::move(r), keep_alive);
    }
    // download: nothing to read (GET)
    const auto target = std::string_view{h.target()};
    const auto last = target.substr(0, target.find('?')).rfind('/');
    const auto id = target.substr(last + 1, target.find('?') - last - 1);
    std::uint64_t size = 0;
    if (!id.starts_with("big") ||
        std::from_chars(id.data() + 3, id.data() + id.size(), size).ec != std::errc{})
      co_return co_await respond(json_error(http::status::not_found, "M_NOT_FOUND", "Not found"),
                                 keep_alive);
    http::response<http::buffer_body> res{http::status::ok, h.version()};
    res.set(http::field::server, "mxpuppet-fakehs");
    res.set(http::field::content_type, "application/octet-stream");
    res.content_length(size);
    res.keep_alive(keep_alive);
    res.body().data = nullptr;
    res.body().more = true;
    http::response_serializer<http::buffer_body> sr{res};
    tcp_layer.expires_after(write_timeout);
    auto [hec, hn] = co_await http::async_write_header(stream, sr, use_tuple);
    if (hec) co_return false;
    for (std::uint64_t sent = 0; sent < size;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), size - sent));
      for (std::size_t i = 0; i < n; ++i) chunk[i] = static_cast<char>(media_byte(sent + i));
      sent += n;
      res.body().data = chunk.data();
      res.body().size = n;
      res.body().more = sent < size;
      tcp_layer.expires_after(write_timeout);
      auto [wec, wn] = co_await http::async_write(stream, sr, use_tuple);
      if (wec && wec != http::error::need_buffer) co_return false;
    }
    co_return keep_alive;
  }

  // Who a request acts as: the owner of its access token, or, with the appservice's as_token,
  // the ?user_id= it asserts (Synapse: 403 when not registered or outside the namespace, here
  // the homeserver's own users).
  struct acting {
    std::optional<std::string> user;
    reply error;
  };
  acting acting_user(std::string_view target, std::string_view authorization) {
    const auto token = bearer_token(authorization);
    if (!token)
      return {std::nullopt,
              json_error(http::status::unauthorized, "M_MISSING_TOKEN", "Missing access token")};
    std::lock_guard lock(mu);
    if (!opts.as_token.empty() && *token == opts.as_token) {
      std::string user = "@" + opts.as_token_sender + ":" + opts.server_name;
      if (const auto at = target.find("user_id="); at != std::string_view::npos) {
        auto value = target.substr(at + 8);
        value = value.substr(0, value.find('&'));
        std::string decoded;
        for (std::size_t i = 0; i < value.size(); ++i) {
          unsigned byte = 0;
          if (value[i] == '%' && i + 2 < value.size() &&
              std::from_chars(value.data() + i + 1, value.data() + i + 3, byte, 16).ec ==
                  std::errc{}) {
            decoded += static_cast<char>(byte);
            i += 2;
          } else {
            decoded += value[i];
          }
        }
        user = decoded;
      }
      if (!user.ends_with(":" + opts.server_name) || !registered.contains(user))
        return {std::nullopt, json_error(http::status::forbidden, "M_FORBIDDEN",
                                         "Application service cannot masquerade as this user")};
      return {user, {}};
    }
    const auto t = tokens.find(*token);
    if (t == tokens.end() ||
        (valid_until_ms.contains(*token) && valid_until_ms[*token] <= now_ms()))
      return {std::nullopt,
              json_error(http::status::unauthorized, "M_UNKNOWN_TOKEN", "Unknown access token")};
    return {t->second.user_id, {}};
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
    auths.push_back(last_auth);
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
      case endpoint::register_user:
        ++registers;
        break;
      case endpoint::admin_login:
        ++admin_logins;
        break;
      case endpoint::refresh:
      case endpoint::refresh_v3:
        ++refreshes;
        if (fail_next_refresh_count > 0 && fail_all_kind == failure::none &&
            (a.ep == endpoint::refresh || opts.refresh_on_v3)) {
          --fail_next_refresh_count;
          if (fail_next_refresh_kind == failure::drop_connection)
            lose_next_refresh_answer = true;  // rotated in answer(), then the connection drops
          else
            a.fail = fail_next_refresh_kind;
        }
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

  reply answer(endpoint ep, const http::request<http::string_body>& req,
               const std::string& client_ip) {
    switch (ep) {
      case endpoint::login_flows:
        return login_flows_reply();
      case endpoint::login:
        return login(req.body(), req[http::field::authorization], client_ip);
      case endpoint::register_user:
        return register_appservice_user(req.body(), req[http::field::authorization]);
      case endpoint::admin_login:
        return admin_login(req.target(), req.body(), req[http::field::authorization]);
      case endpoint::refresh_v3:
        if (!opts.refresh_on_v3)
          return json_error(http::status::bad_request, "M_UNRECOGNIZED", "Unrecognized request");
        return refresh(req.body());
      case endpoint::refresh:
        return refresh(req.body());
      case endpoint::room_send:
      case endpoint::sync: {
        auto who = acting_user(req.target(), req[http::field::authorization]);
        if (!who.user) return std::move(who.error);
        reply r;
        if (ep == endpoint::sync) {
          json_writer(r.body).begin_object().member("next_batch", "s1").end_object();
        } else {
          std::lock_guard lock(mu);
          json_writer(r.body)
              .begin_object()
              .member("event_id", "$ev" + std::to_string(++events_sent))
              .end_object();
        }
        return r;
      }
      case endpoint::media_upload:
      case endpoint::media_download:
        break;  // served by serve_media
      case endpoint::whoami:
        if (!opts.as_token.empty() &&
            bearer_token(req[http::field::authorization]) == opts.as_token) {
          auto who = acting_user(req.target(), req[http::field::authorization]);
          if (!who.user) return std::move(who.error);
          reply r;
          json_writer(r.body)
              .begin_object()
              .member("user_id", *who.user)
              .member("is_guest", false)
              .end_object();
          return r;
        }
        [[fallthrough]];
      case endpoint::logout:
      case endpoint::logout_all: {
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
        if (auto r = mas(req)) return *r;
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
    if (!opts.jwt_algorithm.empty())
      w.begin_object().member("type", "org.matrix.login.jwt").end_object();
    if (!opts.famedly_algorithm.empty())
      w.begin_object().member("type", "com.famedly.login.token").end_object();
    if (!opts.as_token.empty())
      w.begin_object().member("type", "m.login.application_service").end_object();
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

  // ------------------------------------------------------------ rc_login

  double rate_clock_s_locked() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch() +
                                         rate_clock_offset)
        .count();
  }

  // Synapse's Ratelimiter.ratelimit for one key: nullopt when allowed (the action is counted),
  // else the wait in ms until the bucket has room (truncated to an integer, as Synapse does).
  std::optional<int> take_locked(std::map<std::string, bucket>& buckets, const rate_limit& limit,
                                 const std::string& key) {
    if (limit.per_second <= 0) return std::nullopt;
    const double now = rate_clock_s_locked();
    bucket& b = buckets.try_emplace(key, bucket{0, now}).first->second;
    double performed = b.actions - (now - b.start_s) * limit.per_second;
    if (performed < 0) {  // all forgiven: start again from now
      performed = 0;
      b = bucket{0, now};
    }
    if (performed > limit.burst_count - 1) {
      const double allowed_at = b.start_s + (b.actions - limit.burst_count + 1) / limit.per_second;
      ++rate_limited;
      return static_cast<int>(1000 * std::max(allowed_at - now, 0.0));
    }
    b.actions += 1;
    return std::nullopt;
  }

  std::optional<reply> address_limited(const std::string& client_ip) {
    std::lock_guard lock(mu);
    if (auto wait = take_locked(address_buckets, opts.rc_login_address, client_ip))
      return limit_exceeded(*wait);
    return std::nullopt;
  }

  std::optional<reply> account_limited_locked(const std::string& user_id) {
    if (auto wait = take_locked(account_buckets, opts.rc_login_account, lowercase(user_id)))
      return limit_exceeded(*wait);
    return std::nullopt;
  }

  // A user that exists from now on (registered, or created by a JWT login).
  void make_exist_locked(const std::string& user_id) {
    nonexistent.erase(user_id);
    registered.insert(user_id);
  }

  // ------------------------------------------------------------ login

  reply login(const std::string& body, std::string_view authorization,
              const std::string& client_ip) {
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
    bool wants_refresh = false;  // Synapse honours only a JSON boolean
    if (doc["refresh_token"].get(wants_refresh)) wants_refresh = false;
    login_wants_refresh = wants_refresh;  // read by issue_login_locked (server thread only)

    // rc_login.address, before any credential is looked at; an appservice is checked after its
    // as_token, and only when it is rate-limited.
    const bool appservice = type == "m.login.application_service" && !opts.as_token.empty();
    if (!appservice) {
      if (auto limited = address_limited(client_ip)) return *limited;
    }
    if (type == "org.matrix.login.jwt" && !opts.jwt_algorithm.empty())
      return jwt_login(doc, std::move(device_id), std::move(display_name));
    if (type == "com.famedly.login.token" && !opts.famedly_algorithm.empty())
      return famedly_login(doc, std::move(device_id), std::move(display_name));
    if (type == "m.login.application_service" && !opts.as_token.empty())
      return appservice_login(doc, authorization, client_ip, std::move(device_id),
                              std::move(display_name));

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

    if (std::string_view{credential_field} == "password" && opts.rest_backend_port != 0) {
      if (auto r = rest_module_login(user, credential, std::move(device_id), display_name))
        return *r;
    }
    const auto user_id = qualify(user);
    if (!user_id) return forbidden();
    const auto expected = fake_shared_secret_token(opts.shared_secret, *user_id);
    if (credential.size() != expected.size() ||
        CRYPTO_memcmp(credential.data(), expected.data(), expected.size()) != 0) {
      return forbidden();
    }

    // The module checks that the user exists after the HMAC: a missing user gets the same
    // answer as a wrong secret.
    std::lock_guard lock(mu);
    if (nonexistent.contains(*user_id)) return forbidden();
    if (!registered.contains(*user_id) && !opts.auto_register) return forbidden();
    if (auto limited = account_limited_locked(*user_id)) return *limited;
    make_exist_locked(*user_id);  // a no-op unless auto_register created it
    return issue_login_locked(*user_id, std::move(device_id), std::move(display_name));
  }

  // ------------------------------------------------------------ MAS

  static reply mas_errors(http::status status, std::string_view title) {
    reply r{status, {}};
    json_writer w(r.body);
    w.begin_object().key("errors").begin_array().begin_object().member("title", title);
    w.end_object().end_array().end_object();
    return r;
  }
  static reply oauth_error(http::status status, std::string_view error) {
    reply r{status, {}};
    json_writer(r.body)
        .begin_object()
        .member("error", error)
        .member("error_description", "fake MAS refused the request")
        .end_object();
    return r;
  }
  static std::string base64(std::string_view in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(in.data()),
                                  static_cast<int>(in.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
  }

  std::optional<reply> mas(const http::request<http::string_body>& req) {
    if (opts.mas_client_id.empty()) return std::nullopt;
    const std::string_view target = req.target();
    if (target == "/oauth2/token" && req.method() == http::verb::post) {
      const std::string expected =
          "Basic " + base64(opts.mas_client_id + ":" + opts.mas_client_secret);
      if (req[http::field::authorization] != expected)
        return oauth_error(http::status::unauthorized, "invalid_client");
      if (req[http::field::content_type] != "application/x-www-form-urlencoded" ||
          req.body().find("grant_type=client_credentials") == std::string::npos ||
          req.body().find("scope=urn%3Amas%3Aadmin") == std::string::npos)
        return oauth_error(http::status::bad_request, "invalid_request");
      std::lock_guard lock(mu);
      ++mas_tokens;
      const auto token = "mat_" + random_string(rng, 24, "abcdefghijklmnopqrstuvwxyz0123456789");
      mas_admin_tokens[token] =
          std::chrono::steady_clock::now() + std::chrono::seconds{opts.mas_admin_token_lifetime_s};
      reply r;
      json_writer(r.body)
          .begin_object()
          .member("access_token", token)
          .member("token_type", "Bearer")
          .member("expires_in", static_cast<std::int64_t>(opts.mas_admin_token_lifetime_s))
          .end_object();
      return r;
    }
    constexpr std::string_view api = "/api/admin/v1/";
    if (!target.starts_with(api)) return std::nullopt;
    const auto bearer = bearer_token(req[http::field::authorization]);
    std::lock_guard lock(mu);
    const auto admin = bearer ? mas_admin_tokens.find(*bearer) : mas_admin_tokens.end();
    if (admin == mas_admin_tokens.end() || admin->second <= std::chrono::steady_clock::now())
      return mas_errors(http::status::unauthorized, "Access token expired");
    constexpr std::string_view by_username = "/api/admin/v1/users/by-username/";
    constexpr std::string_view sessions = "/api/admin/v1/personal-sessions";
    if (target.starts_with(by_username) && req.method() == http::verb::get) {
      const auto localpart = percent_decode(target.substr(by_username.size()));
      const auto user = "@" + localpart.value_or("") + ":" + opts.server_name;
      if (!localpart || !registered.contains(user))
        return mas_errors(http::status::not_found, "User not found");
      reply r;
      json_writer w(r.body);
      w.begin_object().key("data").begin_object().member("type", "user");
      w.member("id", "01FAKEUSER" + *localpart).key("attributes").begin_object();
      w.member("username", *localpart).end_object().end_object().end_object();
      return r;
    }
    if (target == sessions && req.method() == http::verb::post) {
      mas_session_body = req.body();
      simdjson::dom::parser parser;
      simdjson::dom::object doc;
      std::string_view actor, scope;
      std::int64_t expires_in = 0;
      if (parser.parse(req.body()).get(doc) || doc["actor_user_id"].get(actor) ||
          doc["scope"].get(scope) || doc["expires_in"].get(expires_in) ||
          !std::string_view{actor}.starts_with("01FAKEUSER"))
        return mas_errors(http::status::bad_request, "Invalid request");
      const auto user = "@" + std::string{actor.substr(10)} + ":" + opts.server_name;
      if (mas_deactivated.contains(user))
        return mas_errors(http::status::gone, "User is deactivated");
      ++mas_sessions;
      std::string device = "MASPERSONAL" + std::to_string(mas_sessions);
      constexpr std::string_view device_scope = "urn:matrix:client:device:";
      if (const auto at = scope.find(device_scope); at != std::string_view::npos)
        device = std::string{scope.substr(at + device_scope.size())};
      const auto token = "mpt_" + random_string(rng, 30, "abcdefghijklmnopqrstuvwxyz0123456789");
      devices[{user, device}].tokens.insert(token);
      tokens.emplace(token, token_owner{user, device});
      const auto id = "01FAKESESSION" + std::to_string(mas_sessions);
      mas_personal_sessions[id] = token;
      reply r{http::status::created, {}};
      json_writer w(r.body);
      w.begin_object().key("data").begin_object().member("type", "personal-session");
      w.member("id", id).key("attributes").begin_object();
      w.member("access_token", token).member("scope", scope).end_object().end_object();
      w.end_object();
      return r;
    }
    if (target.starts_with(sessions) && target.ends_with("/revoke") &&
        req.method() == http::verb::post) {
      const auto id =
          std::string{target.substr(sessions.size() + 1, target.size() - sessions.size() - 1 - 7)};
      const auto it = mas_personal_sessions.find(id);
      if (it == mas_personal_sessions.end())
        return mas_errors(http::status::not_found, "Personal session not found");
      if (it->second.empty())
        return mas_errors(http::status::conflict, "Personal session already revoked");
      ++mas_revocations;
      drop_access_token_locked(it->second);
      it->second.clear();
      reply r;
      json_writer w(r.body);
      w.begin_object().key("data").begin_object().member("type", "personal-session");
      w.member("id", id).end_object().end_object();
      return r;
    }
    return mas_errors(http::status::not_found, "Not found");
  }

  // The REST module's check (see fake_homeserver_options::rest_backend_port); nullopt: the
  // backend did not confirm, the local check decides.
  std::optional<reply> rest_module_login(std::string_view user, std::string_view password,
                                         std::optional<std::string> device_id,
                                         const std::optional<std::string>& display_name) {
    const std::string full = user.starts_with('@')
                                 ? std::string{user}
                                 : "@" + std::string{user} + ":" + opts.server_name;
    const std::string sent =
        opts.rest_backend_send_user.empty() ? full : opts.rest_backend_send_user;
    std::string body;
    json_writer w{body};
    w.begin_object().key("user").begin_object().member("id", sent).member("password", password);
    w.end_object().end_object();
    {
      std::lock_guard lock(mu);
      ++rest_backend_calls;
    }
    tcp_http_response answer;
    try {
      answer = tcp_request(opts.rest_backend_port, "POST",
                           "/_matrix-internal/identity/v1/check_credentials",
                           {{"Content-Type", "application/json"}}, body);
    } catch (const std::exception&) {
      return std::nullopt;  // backend down: the module's exception, the same 403 in the end
    }
    simdjson::dom::parser parser;
    simdjson::dom::object auth, profile;
    bool success = false;
    std::string_view mxid;
    if (answer.status != 200 || parser.parse(answer.body).get_object()["auth"].get(auth) ||
        auth["success"].get(success) || !success || auth["mxid"].get(mxid) ||
        auth["profile"].get(profile))
      return std::nullopt;
    const auto own = qualify(full);
    std::lock_guard lock(mu);
    if (!own || *own != lowercase(*own)) {
      // Synapse logs in the ID as the backend confirmed it; whoami then knows no such user.
      auto r = issue_login_locked(full, std::move(device_id), display_name);
      simdjson::dom::parser p2;
      std::string_view token;
      if (!p2.parse(r.body).get_object()["access_token"].get(token))
        drop_access_token_locked(std::string{token});
      return r;
    }
    if (auto limited = account_limited_locked(*own)) return *limited;
    make_exist_locked(*own);
    return issue_login_locked(*own, std::move(device_id), display_name);
  }

  std::string new_token_locked() {
    std::string token;
    do {
      token =
          "syt_" +
          random_string(rng, 20, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
    } while (tokens.contains(token));
    return token;
  }

  // A successful /login: the token joins the device (created if new), as Synapse does.
  reply issue_login_locked(const std::string& user_id, std::optional<std::string> device_id,
                           std::optional<std::string> display_name) {
    if (!device_id) device_id = random_string(rng, 10, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    const std::string token = new_token_locked();

    auto [it, created] = devices.try_emplace({user_id, *device_id});
    if (created)
      it->second.display_name = std::move(display_name);  // kept on re-login, as Synapse does
    it->second.tokens.insert(token);
    tokens.emplace(token, token_owner{user_id, *device_id});
    ++successful_logins;

    reply r;
    json_writer w(r.body);
    w.begin_object()
        .member("user_id", user_id)
        .member("access_token", token)
        .member("home_server", opts.server_name)
        .member("device_id", *device_id);
    if (login_wants_refresh && opts.refresh_access_lifetime_ms > 0) {
      valid_until_ms[token] = now_ms() + opts.refresh_access_lifetime_ms;
      const auto refresh_token = new_refresh_token_locked(user_id, *device_id, token);
      w.member("refresh_token", refresh_token)
          .member("expires_in_ms", opts.refresh_access_lifetime_ms);
    }
    w.end_object();
    login_wants_refresh = false;
    return r;
  }

  std::string new_refresh_token_locked(const std::string& user_id, const std::string& device_id,
                                       const std::string& access_token) {
    std::string rt;
    do {
      rt = "syr_" +
           random_string(rng, 20, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
    } while (refresh_tokens.contains(rt));
    refresh_tokens.emplace(rt, refresh_state{token_owner{user_id, device_id}, access_token, ""});
    return rt;
  }

  // One access token dies; its device lives on.
  void drop_access_token_locked(const std::string& token) {
    const auto it = tokens.find(token);
    if (it == tokens.end()) return;
    if (auto d = devices.find({it->second.user_id, it->second.device_id}); d != devices.end())
      d->second.tokens.erase(token);
    tokens.erase(it);
    valid_until_ms.erase(token);
  }

  // POST /refresh {"refresh_token": R}: a new access token on the same device and a new R, as
  // Synapse's AuthHandler.refresh_token does it. An R that was replaced already still works
  // while its successor is untouched (the successor and its access token are discarded); once
  // the successor's access token was used or the successor was refreshed, R is refused.
  reply refresh(const std::string& body) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    std::string_view presented;
    if (parser.parse(body).get(root) || root["refresh_token"].get(presented))
      return json_error(http::status::bad_request, "M_BAD_JSON", "refresh_token missing");
    std::lock_guard lock(mu);
    const auto it = refresh_tokens.find(std::string{presented});
    if (it == refresh_tokens.end()) {
      reply r{http::status::unauthorized, {}};
      json_writer(r.body)
          .begin_object()
          .member("errcode", "M_UNKNOWN_TOKEN")
          .member("error", "refresh token does not exist")
          .member("soft_logout", false)
          .end_object();
      return r;
    }
    if (const auto successor = refresh_tokens.find(it->second.next);
        successor != refresh_tokens.end()) {
      const auto access = tokens.find(successor->second.access);
      const bool access_used = access != tokens.end() && access->second.used;
      if (access_used || !successor->second.next.empty())
        return json_error(http::status::forbidden, "M_FORBIDDEN",
                          "refresh token isn't valid anymore");
      drop_access_token_locked(successor->second.access);
      refresh_tokens.erase(successor);
    }
    const token_owner owner{it->second.owner.user_id, it->second.owner.device_id};
    const std::string token = new_token_locked();
    devices[{owner.user_id, owner.device_id}].tokens.insert(token);
    tokens.emplace(token, owner);
    valid_until_ms[token] = now_ms() + opts.refresh_access_lifetime_ms;
    const auto next = new_refresh_token_locked(owner.user_id, owner.device_id, token);
    refresh_tokens.at(std::string{presented}).next = next;  // `it` may be stale after the emplace
    ++successful_refreshes;
    reply r;
    json_writer(r.body)
        .begin_object()
        .member("access_token", token)
        .member("refresh_token", next)
        .member("expires_in_ms", opts.refresh_access_lifetime_ms)
        .end_object();
    if (lose_next_refresh_answer) {
      lose_next_refresh_answer = false;
      r.drop = true;
    }
    return r;
  }

  // identifier.user (m.id.user), or the legacy top-level "user".
  static std::optional<std::string_view> login_user(simdjson::dom::object doc) {
    std::string_view user;
    simdjson::dom::object identifier;
    if (!doc["identifier"].get(identifier)) {
      std::string_view id_type;
      if (identifier["type"].get(id_type) || id_type != "m.id.user" || identifier["user"].get(user))
        return std::nullopt;
      return user;
    }
    if (doc["user"].get(user)) return std::nullopt;
    return user;
  }

  // org.matrix.login.jwt, as Synapse's jwt_config does it.
  reply jwt_login(simdjson::dom::object doc, std::optional<std::string> device_id,
                  std::optional<std::string> display_name) {
    const auto fail = [](std::string_view why) {
      return json_error(http::status::forbidden, "M_FORBIDDEN",
                        "JWT validation failed: " + std::string(why));
    };
    std::string_view token;
    if (doc["token"].get(token))
      return json_error(http::status::forbidden, "M_FORBIDDEN", "Token field for JWT is missing");
    jwt_rules rules{opts.jwt_algorithm,
                    opts.jwt_secret,
                    opts.jwt_public_key_pem,
                    opts.jwt_subject_claim,
                    opts.jwt_issuer,
                    opts.jwt_audiences,
                    120,
                    false};
    simdjson::dom::parser parser;
    simdjson::dom::object claims;
    if (auto why = verify_jwt(rules, token, parser, claims)) return fail(*why);
    std::string_view subject;
    if (claims[rules.subject_claim].get(subject) || subject.empty())
      return json_error(http::status::forbidden, "M_FORBIDDEN", "Invalid JWT");
    if (subject.find(':') != std::string_view::npos || subject.starts_with('@'))
      return fail("the subject must be a localpart");
    const std::string user_id = "@" + std::string(subject) + ":" + opts.server_name;
    std::lock_guard lock(mu);
    if (auto limited = account_limited_locked(user_id)) return *limited;
    make_exist_locked(user_id);  // Synapse registers users it has not seen
    return issue_login_locked(user_id, std::move(device_id), std::move(display_name));
  }

  // com.famedly.login.token, as synapse-token-authenticator does it (allow_registration on).
  reply famedly_login(simdjson::dom::object doc, std::optional<std::string> device_id,
                      std::optional<std::string> display_name) {
    std::string_view token;
    const auto user = login_user(doc);
    if (!user || doc["token"].get(token)) return forbidden();
    jwt_rules rules{opts.famedly_algorithm,
                    opts.famedly_secret,
                    opts.famedly_public_key_pem,
                    "sub",
                    "",
                    {},
                    60,
                    true};
    simdjson::dom::parser parser;
    simdjson::dom::object claims;
    if (verify_jwt(rules, token, parser, claims)) return forbidden();
    std::string_view subject;
    if (claims["sub"].get(subject)) return forbidden();
    const auto from_token = qualify(subject);
    const auto user_id = qualify(*user);
    if (!from_token || !user_id || *from_token != *user_id) return forbidden();
    std::lock_guard lock(mu);
    if (auto limited = account_limited_locked(*user_id)) return *limited;
    make_exist_locked(*user_id);
    return issue_login_locked(*user_id, std::move(device_id), std::move(display_name));
  }

  // m.login.application_service: the appservice's as_token as Bearer. A user that was never
  // registered gets 200 and a token that is dead at once, as Synapse does.
  reply appservice_login(simdjson::dom::object doc, std::string_view authorization,
                         const std::string& client_ip, std::optional<std::string> device_id,
                         std::optional<std::string> display_name) {
    const auto bearer = bearer_token(authorization);
    if (!bearer)
      return json_error(http::status::unauthorized, "M_MISSING_TOKEN", "Missing access token");
    if (bearer->size() != opts.as_token.size() ||
        CRYPTO_memcmp(bearer->data(), opts.as_token.data(), opts.as_token.size()) != 0)
      return json_error(http::status::unauthorized, "M_UNKNOWN_TOKEN", "Unrecognised access token");
    if (opts.appservice_rate_limited) {
      if (auto limited = address_limited(client_ip)) return *limited;
    }
    const auto user = login_user(doc);
    if (!user)
      return json_error(http::status::bad_request, "M_INVALID_PARAM", "Invalid login submission");
    const auto user_id = qualify(*user);
    if (!user_id) return json_error(http::status::forbidden, "M_FORBIDDEN", "Invalid access_token");
    std::lock_guard lock(mu);
    if (opts.appservice_rate_limited) {
      if (auto limited = account_limited_locked(*user_id)) return *limited;
    }
    if (registered.contains(*user_id))
      return issue_login_locked(*user_id, std::move(device_id), std::move(display_name));
    reply r;  // the quirk: a token nobody will accept
    json_writer(r.body)
        .begin_object()
        .member("user_id", *user_id)
        .member("access_token", new_token_locked())
        .member("home_server", opts.server_name)
        .member("device_id", device_id.value_or("DEADDEVICE"))
        .end_object();
    return r;
  }

  // POST /register {"type":"m.login.application_service","username":...} with the as_token.
  reply register_appservice_user(const std::string& body, std::string_view authorization) {
    if (opts.as_token.empty())
      return json_error(http::status::forbidden, "M_FORBIDDEN", "Registration has been disabled");
    const auto bearer = bearer_token(authorization);
    if (!bearer || *bearer != opts.as_token)
      return json_error(http::status::unauthorized, "M_UNKNOWN_TOKEN", "Unrecognised access token");
    simdjson::dom::parser parser;
    simdjson::dom::object doc;
    if (parser.parse(body).get(doc))
      return json_error(http::status::bad_request, "M_NOT_JSON", "Content not JSON.");
    std::string_view type, username;
    if (doc["type"].get(type) || type != "m.login.application_service")
      return json_error(http::status::bad_request, "M_UNKNOWN", "Unknown registration type");
    if (doc["username"].get(username) || username.empty() ||
        username.find(':') != std::string_view::npos)
      return json_error(http::status::bad_request, "M_INVALID_USERNAME", "Invalid username");
    const std::string user_id = "@" + std::string(username) + ":" + opts.server_name;
    std::lock_guard lock(mu);
    if (registered.contains(user_id))
      return json_error(http::status::bad_request, "M_USER_IN_USE", "User ID already taken.");
    make_exist_locked(user_id);
    reply r;
    json_writer(r.body)
        .begin_object()
        .member("user_id", user_id)
        .member("home_server", opts.server_name)
        .end_object();
    return r;
  }

  // POST /_synapse/admin/v1/users/{userId}/login {"valid_until_ms":N}: a token with no device.
  reply admin_login(std::string_view target, const std::string& body,
                    std::string_view authorization) {
    if (opts.admin_token.empty())
      return json_error(http::status::not_found, "M_UNRECOGNIZED", "Unrecognized request");
    const auto bearer = bearer_token(authorization);
    if (!bearer)
      return json_error(http::status::unauthorized, "M_MISSING_TOKEN", "Missing access token");
    if (*bearer != opts.admin_token) {
      std::lock_guard lock(mu);
      if (tokens.contains(*bearer))
        return json_error(http::status::forbidden, "M_FORBIDDEN", "You are not a server admin");
      return json_error(http::status::unauthorized, "M_UNKNOWN_TOKEN", "Unknown access token");
    }
    target = target.substr(0, target.find('?'));
    constexpr std::string_view prefix = "/_synapse/admin/v1/users/";
    const auto segment = target.substr(
        prefix.size(), target.size() - prefix.size() - std::string_view{"/login"}.size());
    const auto decoded = percent_decode(segment);
    if (!decoded || !decoded->starts_with('@'))
      return json_error(http::status::bad_request, "M_INVALID_PARAM", "Invalid user ID");
    const auto user_id = qualify(*decoded);
    if (!user_id)
      return json_error(http::status::bad_request, "M_UNKNOWN", "Can only login local users");
    const std::string admin =
        opts.admin_user_id.empty() ? "@admin:" + opts.server_name : opts.admin_user_id;
    if (*user_id == admin)
      return json_error(http::status::bad_request, "M_UNKNOWN",
                        "Cannot use admin API to login as self");
    std::optional<std::int64_t> valid_until;
    if (!body.empty()) {
      simdjson::dom::parser parser;
      simdjson::dom::object doc;
      if (parser.parse(body).get(doc))
        return json_error(http::status::bad_request, "M_NOT_JSON", "Content not JSON.");
      if (auto v = doc["valid_until_ms"]; v.error() != simdjson::NO_SUCH_FIELD && !v.is_null()) {
        std::int64_t ms = 0;
        if (v.get(ms))
          return json_error(http::status::bad_request, "M_INVALID_PARAM",
                            "valid_until_ms must be an integer");
        valid_until = ms;
      }
    }
    std::lock_guard lock(mu);
    const std::string token = new_token_locked();
    tokens.emplace(token, token_owner{*user_id, ""});
    if (valid_until) valid_until_ms.emplace(token, *valid_until);
    reply r;
    json_writer(r.body).begin_object().member("access_token", token).end_object();
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
    if (const auto until = valid_until_ms.find(token);
        until != valid_until_ms.end() && until->second <= now_ms()) {
      reply r{http::status::unauthorized, {}};
      json_writer(r.body)
          .begin_object()
          .member("errcode", "M_UNKNOWN_TOKEN")
          .member("error", "Access token has expired")
          .member("soft_logout", true)
          .end_object();
      return r;
    }
    t->second.used = true;  // a refresh token it came with retires its predecessor
    reply r;
    switch (ep) {
      case endpoint::whoami: {
        json_writer w(r.body);
        w.begin_object().member("user_id", owner.user_id);
        if (!owner.device_id.empty()) w.member("device_id", owner.device_id);  // admin-minted: none
        w.member("is_guest", false).end_object();
        return r;
      }
      case endpoint::logout:
        if (owner.device_id.empty()) {  // a token without a device dies alone
          tokens.erase(t);
          valid_until_ms.erase(token);
        } else {
          delete_device_locked(owner.user_id, owner.device_id);
        }
        break;
      default:  // logout_all
        for (auto it2 = tokens.begin(); it2 != tokens.end();) {
          if (it2->second.user_id == owner.user_id && it2->second.device_id.empty())
            it2 = tokens.erase(it2);
          else
            ++it2;
        }
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
    for (const auto& tok : it->second.tokens) {
      tokens.erase(tok);
      valid_until_ms.erase(tok);
    }
    devices.erase(it);
    std::erase_if(refresh_tokens, [&](const auto& kv) {
      return kv.second.owner.user_id == user_id && kv.second.owner.device_id == device_id;
    });
  }

  // ------------------------------------------------------------------ state

  const fake_homeserver_options opts;
  unsigned short bound_port = 0;
  std::string base_url;

  mutable std::mutex mu;  // guards everything below
  std::mt19937_64 rng;
  std::map<std::pair<std::string, std::string>, device> devices;  // (user, device) -> device
  std::unordered_map<std::string, token_owner> tokens;
  std::set<std::string> nonexistent;  // add_nonexistent_user: refused even with auto_register
  std::set<std::string> registered;   // users that exist (register_user, /register, JWT logins)
  std::unordered_map<std::string, std::int64_t> valid_until_ms;  // admin-minted token expiry
  int registers = 0, admin_logins = 0, refreshes = 0, successful_refreshes = 0;
  int rest_backend_calls = 0;
  int mas_tokens = 0, mas_sessions = 0, mas_revocations = 0;
  std::map<std::string, std::chrono::steady_clock::time_point> mas_admin_tokens;
  std::map<std::string, std::string> mas_personal_sessions;  // id -> token ("" once revoked)
  std::set<std::string> mas_deactivated;
  std::string mas_session_body;
  std::unordered_map<std::string, refresh_state> refresh_tokens;
  std::map<std::string, bucket> address_buckets, account_buckets;  // rc_login, by IP / user ID
  std::chrono::milliseconds rate_clock_offset{0};                  // advance_rate_limit_clock
  int rate_limited = 0;                                            // 429s from rc_login
  bool login_wants_refresh = false;
  int fail_next_refresh_count = 0;
  failure fail_next_refresh_kind = failure::none;
  bool lose_next_refresh_answer = false;
  std::chrono::milliseconds latency{0};
  failure fail_next_kind = failure::none;
  int fail_next_count = 0;
  int fail_next_retry_ms = 1000;
  failure fail_all_kind = failure::none;
  int fail_all_retry_ms = 1000;
  int logins = 0, successful_logins = 0, logouts = 0, whoamis = 0, login_flows = 0;
  int logins_in_flight = 0, max_logins_in_flight = 0;
  std::vector<std::string> log;
  std::vector<std::string> auths;  // the Authorization header of each request in `log`
  std::string last_login, last_auth;
  int uploads = 0, events_sent = 0;
  media_upload_record last_upload;

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
  if (full) user_id = std::move(*full);
  std::lock_guard lock(impl_->mu);
  impl_->registered.erase(user_id);
  impl_->nonexistent.insert(std::move(user_id));
}

void fake_homeserver::advance_rate_limit_clock(std::chrono::milliseconds by) {
  std::lock_guard lock(impl_->mu);
  impl_->rate_clock_offset += by;
}

int fake_homeserver::rate_limited_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->rate_limited;
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
int fake_homeserver::register_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->registers;
}
int fake_homeserver::rest_backend_call_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->rest_backend_calls;
}
int fake_homeserver::mas_token_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->mas_tokens;
}
int fake_homeserver::mas_personal_session_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->mas_sessions;
}
int fake_homeserver::mas_revocation_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->mas_revocations;
}
std::string fake_homeserver::mas_last_session_body() const {
  std::lock_guard lock(impl_->mu);
  return impl_->mas_session_body;
}
void fake_homeserver::mas_deactivate_user(std::string user_id) {
  std::lock_guard lock(impl_->mu);
  impl_->mas_deactivated.insert(std::move(user_id));
}
int fake_homeserver::admin_login_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->admin_logins;
}
void fake_homeserver::kill_token(const std::string& token) {
  std::lock_guard lock(impl_->mu);
  impl_->drop_access_token_locked(token);
}
int fake_homeserver::refresh_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->refreshes;
}
void fake_homeserver::fail_next_refresh(int count, failure kind) {
  std::lock_guard lock(impl_->mu);
  impl_->fail_next_refresh_count = kind == failure::none ? 0 : count;
  impl_->fail_next_refresh_kind = kind;
}
void fake_homeserver::register_user(std::string user_id) {
  auto full = impl_->qualify(user_id);
  if (full) user_id = std::move(*full);
  std::lock_guard lock(impl_->mu);
  impl_->make_exist_locked(user_id);
}
void fake_homeserver::register_users(const std::vector<std::string>& user_ids) {
  for (const auto& u : user_ids) register_user(u);
}
bool fake_homeserver::is_registered(const std::string& user_id) const {
  std::lock_guard lock(impl_->mu);
  return impl_->registered.contains(user_id);
}
std::optional<std::int64_t> fake_homeserver::token_valid_until_ms(const std::string& token) const {
  std::lock_guard lock(impl_->mu);
  const auto it = impl_->valid_until_ms.find(token);
  if (it == impl_->valid_until_ms.end()) return std::nullopt;
  return it->second;
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
  if (!impl_->tokens.contains(token)) return false;
  const auto until = impl_->valid_until_ms.find(token);
  return until == impl_->valid_until_ms.end() || until->second > now_ms();  // expired: soft logout
}
std::vector<std::string> fake_homeserver::live_tokens(const std::string& user_id) const {
  std::vector<std::string> out;
  for (const auto& [token, owner] : [&] {
         std::lock_guard lock(impl_->mu);
         return impl_->tokens;
       }())
    if (owner.user_id == user_id && token_is_live(token)) out.push_back(token);
  return out;
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
std::vector<std::string> fake_homeserver::authorization_log() const {
  std::lock_guard lock(impl_->mu);
  return impl_->auths;
}
media_upload_record fake_homeserver::last_upload() const {
  std::lock_guard lock(impl_->mu);
  return impl_->last_upload;
}
std::string fake_homeserver::last_authorization_header() const {
  std::lock_guard lock(impl_->mu);
  return impl_->last_auth;
}

}  // namespace mxp::test
