// rest_backend: the check_credentials answer and the loopback listeners that serve it (Beast),
// each connection with a read and a write deadline, every task owned by rest_backends.
#include "matrix/rest_backend.hpp"

#include <simdjson.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <map>
#include <system_error>
#include <unordered_map>

#include "core/json_writer.hpp"
#include "credentials/nonce_book.hpp"

namespace mxp::matrix {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view refused = R"({"auth":{"success":false}})";

std::int64_t steady_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

std::string where_of(const std::string& address, std::uint16_t port) {
  return (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" +
         std::to_string(port);
}

// The body in a buffer with simdjson's padding, wiped after each parse: it holds a password.
struct padded_scratch {
  std::string bytes;
  explicit padded_scratch(std::size_t max) { bytes.resize(max + simdjson::SIMDJSON_PADDING); }
  ~padded_scratch() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
};

std::string answer_from(simdjson::dom::parser& parser, credentials::nonce_book& book,
                        const char* data, std::size_t size, std::int64_t now_ms) {
  simdjson::dom::element doc;
  std::string_view id, password;
  if (parser.parse(data, size, false).get(doc) != simdjson::SUCCESS ||
      doc["user"]["id"].get_string().get(id) != simdjson::SUCCESS ||
      doc["user"]["password"].get_string().get(password) != simdjson::SUCCESS ||
      !book.redeem(id, password, now_ms))
    return std::string{refused};
  // v0.1.4 of the module fails the login with a KeyError when "profile" is missing.
  std::string out;
  json_writer w{out};
  w.begin_object().key("auth").begin_object().member("success", true).member("mxid", id);
  w.key("profile").begin_object().end_object().end_object().end_object();
  return out;
}

}  // namespace

std::string check_credentials_answer(credentials::nonce_book& book, std::string_view body,
                                     std::int64_t now_ms) {
  padded_scratch scratch{body.size()};
  std::copy(body.begin(), body.end(), scratch.bytes.begin());
  simdjson::dom::parser parser;
  return answer_from(parser, book, scratch.bytes.data(), body.size(), now_ms);
}

struct rest_backends::impl : std::enable_shared_from_this<impl> {
  impl(asio::any_io_executor ex, rest_backend_limits l)
      : executor(std::move(ex)), limits(l), scratch(l.max_body_bytes), task_ended(executor) {}

  struct listener {
    std::shared_ptr<tcp::acceptor> acceptor;
    std::shared_ptr<credentials::nonce_book> book;
    std::uint16_t bound_port = 0;
  };

  asio::any_io_executor executor;
  rest_backend_limits limits;
  std::map<std::string, listener> listeners;                   // by "address:port" as configured
  std::unordered_map<std::uint64_t, beast::tcp_stream*> open;  // connections, for stop()
  std::uint64_t next_connection = 0;
  std::size_t tasks = 0;
  bool stopped = false;
  simdjson::dom::parser parser;  // one thread: shared by every connection
  padded_scratch scratch;
  asio::steady_timer task_ended;  // drain() waits on it; the end of every task cancels it

  void spawn(asio::awaitable<void> task, const char* what) {
    ++tasks;
    asio::co_spawn(executor, std::move(task),
                   [self = shared_from_this(), what](std::exception_ptr ep) {
                     --self->tasks;
                     self->task_ended.cancel();
                     if (!ep) return;
                     try {
                       std::rethrow_exception(ep);
                     } catch (const std::exception& e) {
                       spdlog::error("rest_backend {} failed: {}", what, e.what());
                     }
                   });
  }

  // Answers from memory; the body (a password, possibly a user's real one) is wiped here.
  std::string answer(credentials::nonce_book& book, std::string& body) {
    std::string out{refused};
    if (body.size() <= limits.max_body_bytes) {
      std::copy(body.begin(), body.end(), scratch.bytes.begin());
      out = answer_from(parser, book, scratch.bytes.data(), body.size(), steady_ms());
      OPENSSL_cleanse(scratch.bytes.data(), body.size());
    }
    OPENSSL_cleanse(body.data(), body.size());
    return out;
  }

  asio::awaitable<void> accept_loop(std::shared_ptr<tcp::acceptor> acceptor,
                                    std::shared_ptr<credentials::nonce_book> book) {
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(use_tuple);
      if (stopped || !acceptor->is_open()) co_return;
      if (ec) {  // e.g. EMFILE: back off a little instead of spinning
        asio::steady_timer pause{executor, std::chrono::milliseconds{10}};
        co_await pause.async_wait(use_tuple);
        continue;
      }
      if (open.size() >= limits.max_connections) {
        error_code ignored;
        socket.close(ignored);
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      spawn(serve(beast::tcp_stream{std::move(socket)}, book), "connection");
    }
  }

  // Requests until the peer closes (the module sends one per connection), each within
  // read_timeout, each answer within write_timeout.
  asio::awaitable<void> serve(beast::tcp_stream stream,
                              std::shared_ptr<credentials::nonce_book> book) {
    const auto id = next_connection++;
    open.emplace(id, &stream);
    struct forget {
      impl& self;
      std::uint64_t id;
      ~forget() { self.open.erase(id); }
    } forget_on_exit{*this, id};
    beast::flat_buffer buffer{limits.max_body_bytes + 8192};
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(8192);
      parser.body_limit(limits.max_body_bytes);
      stream.expires_after(limits.read_timeout);
      auto [rec, rn] = co_await http::async_read(stream, buffer, parser, use_tuple);
      if (stopped) break;
      const bool too_big = rec == http::error::body_limit;
      if (rec && !too_big) break;  // closed, timed out, or not HTTP
      auto& req = parser.get();
      http::response<http::string_body> res{http::status::ok, req.version()};
      res.set(http::field::content_type, "application/json");
      if (too_big) {
        res.body() = std::string{refused};
        res.keep_alive(false);
      } else if (req.target() != check_credentials_path) {
        res.result(http::status::not_found);
        res.body() = R"({"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"})";
        res.keep_alive(req.keep_alive());
      } else if (req.method() != http::verb::post) {
        res.result(http::status::method_not_allowed);
        res.body() = R"({"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"})";
        res.keep_alive(req.keep_alive());
      } else {
        res.body() = answer(*book, req.body());
        res.keep_alive(req.keep_alive());
      }
      OPENSSL_cleanse(req.body().data(), req.body().size());
      if (buffer.size() == 0) {  // the raw request bytes, password included
        auto spare = buffer.prepare(buffer.capacity());
        OPENSSL_cleanse(spare.data(), spare.size());
      }
      res.prepare_payload();
      stream.expires_after(limits.write_timeout);
      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      if (wec || !res.keep_alive() || stopped) break;
    }
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.close();
  }
};

rest_backends::rest_backends(asio::any_io_executor executor, rest_backend_limits limits)
    : impl_(std::make_shared<impl>(std::move(executor), limits)) {}

rest_backends::~rest_backends() {
  stop();
}

std::shared_ptr<credentials::nonce_book> rest_backends::attach(const std::string& address,
                                                               std::uint16_t port) {
  auto& self = *impl_;
  const auto where = where_of(address, port);
  if (self.stopped)
    throw std::system_error(make_error_code(std::errc::operation_canceled),
                            "rest_backend listener " + where + ": the daemon is stopping");
  if (auto it = self.listeners.find(where); it != self.listeners.end()) return it->second.book;
  error_code ec;
  const auto ip = asio::ip::make_address(address, ec);
  if (ec) throw std::system_error(ec, "backend_listen: bad address " + where);
  auto acceptor = std::make_shared<tcp::acceptor>(self.executor);
  const tcp::endpoint ep{ip, port};
  acceptor->open(ep.protocol(), ec);
  if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor->bind(ep, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::system_error(ec, "cannot listen on " + where + " (backend_listen)");
  impl::listener l{acceptor, std::make_shared<credentials::nonce_book>(),
                   acceptor->local_endpoint(ec).port()};
  spdlog::info("rest_backend: listening on {} for {}", where_of(address, l.bound_port),
               check_credentials_path);
  self.spawn(self.accept_loop(acceptor, l.book), "listener");
  return self.listeners.emplace(where, std::move(l)).first->second.book;
}

std::uint16_t rest_backends::port_of(const std::string& address, std::uint16_t port) const {
  const auto it = impl_->listeners.find(where_of(address, port));
  return it == impl_->listeners.end() ? 0 : it->second.bound_port;
}

void rest_backends::stop() {
  auto& self = *impl_;
  self.stopped = true;
  error_code ignored;
  for (auto& [where, l] : self.listeners) l.acceptor->close(ignored);
  for (auto& [id, stream] : self.open) stream->socket().close(ignored);
}

asio::awaitable<void> rest_backends::drain(std::chrono::steady_clock::time_point deadline) {
  auto self = impl_;
  while (self->tasks > 0 && std::chrono::steady_clock::now() < deadline) {
    self->task_ended.expires_at(deadline);
    co_await self->task_ended.async_wait(use_tuple);
  }
}

std::size_t rest_backends::listeners() const noexcept {
  return impl_->listeners.size();
}
std::size_t rest_backends::connections() const noexcept {
  return impl_->open.size();
}

}  // namespace mxp::matrix
