// tcp_http: Beast over loopback TCP, run synchronously on a private io_context; a
// beast::tcp_stream's expiry bounds every step by 10 s.
#include "support/tcp_http.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/optional/optional.hpp>

#include <chrono>
#include <stdexcept>
#include <system_error>

namespace mxp::test {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr std::chrono::seconds io_timeout{10};

[[noreturn]] void fail(const error_code& ec, const std::string& what) {
  if (ec.category() == boost::system::system_category() ||
      ec.category() == boost::system::generic_category())
    throw std::system_error(ec.value(), std::system_category(), what);
  throw std::system_error(ec, what);
}

tcp::endpoint endpoint_of(const char* address, std::uint16_t port) {
  error_code ec;
  const auto ip = asio::ip::make_address(address, ec);
  if (ec) throw std::invalid_argument(std::string{"not a numeric address: "} + address);
  return {ip, port};
}

// One connection with its own io_context; each operation runs to completion or to the expiry.
class loopback_connection {
 public:
  loopback_connection(const char* address, std::uint16_t port) {
    const auto ep = endpoint_of(address, port);
    stream_.expires_after(io_timeout);
    const auto ec = run([&](auto handler) { stream_.async_connect(ep, std::move(handler)); });
    if (ec) fail(ec, "connect to " + std::string{address} + ":" + std::to_string(port));
  }

  beast::tcp_stream& stream() { return stream_; }

  // Starts an operation with a completion handler taking (error_code, size_t) and runs it.
  template <typename Start>
  error_code run(Start&& start) {
    error_code result = asio::error::operation_aborted;
    start([&](error_code ec, std::size_t = 0) { result = ec; });
    ioc_.restart();
    ioc_.run();
    return result;
  }

  // Reads until the server closes; a reset after some bytes counts as the close.
  void read_to_end(std::string& out) {
    stream_.expires_after(io_timeout);
    const auto ec = run([&](auto handler) {
      asio::async_read(stream_, asio::dynamic_buffer(out), std::move(handler));
    });
    if (!ec || ec == asio::error::eof) return;
    if (ec == asio::error::connection_reset && !out.empty()) return;
    fail(ec, "recv()");
  }

 private:
  asio::io_context ioc_{1};
  beast::tcp_stream stream_{ioc_};
};

}  // namespace

std::uint16_t free_loopback_port(const char* address) {
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  const auto ep = endpoint_of(address, 0);
  error_code ec;
  acceptor.open(ep.protocol(), ec);
  if (ec) fail(ec, "socket()");
  acceptor.bind(ep, ec);
  if (ec) fail(ec, "bind()");
  const auto bound = acceptor.local_endpoint(ec);
  if (ec) fail(ec, "getsockname()");
  return bound.port();
}

std::string tcp_exchange(std::uint16_t port, std::string_view raw, const char* address) {
  loopback_connection c{address, port};
  c.stream().expires_after(io_timeout);
  auto ec = c.run([&](auto handler) {
    asio::async_write(c.stream(), asio::buffer(raw.data(), raw.size()), std::move(handler));
  });
  if (ec) fail(ec, "send()");
  c.stream().socket().shutdown(tcp::socket::shutdown_send, ec);
  std::string out;
  c.read_to_end(out);
  return out;
}

tcp_http_response tcp_request(std::uint16_t port, std::string_view method, std::string_view target,
                              const std::vector<std::pair<std::string, std::string>>& headers,
                              std::string_view body, const char* address) {
  http::request<http::string_body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(http::field::host, "localhost");
  req.set(http::field::connection, "close");
  for (const auto& [name, value] : headers) req.insert(name, value);
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.content_length(body.size());
    req.body() = std::string{body};
  }

  loopback_connection c{address, port};
  c.stream().expires_after(io_timeout);
  auto ec = c.run([&](auto handler) { http::async_write(c.stream(), req, std::move(handler)); });
  if (ec) fail(ec, "send()");

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  c.stream().expires_after(io_timeout);
  ec = c.run(
      [&](auto handler) { http::async_read(c.stream(), buffer, parser, std::move(handler)); });
  if (ec == beast::error::timeout) fail(ec, "recv()");
  // Anything but exactly one answer before the close is a failure of the test's premise.
  std::string rest{static_cast<const char*>(buffer.data().data()), buffer.size()};
  if (!ec) c.read_to_end(rest);
  if (ec || !rest.empty())
    throw std::runtime_error("not one HTTP answer: " +
                             (ec ? ec.message() : "more after it: " + rest));
  auto& msg = parser.get();
  return {static_cast<int>(msg.result_int()), std::move(msg.body())};
}

std::vector<int> http_statuses(std::string_view raw) {
  // Answer after answer, each parsed by Beast; stops at the first one that is cut short.
  std::vector<int> out;
  while (!raw.empty()) {
    http::response_parser<http::string_body> parser;
    parser.eager(true);
    parser.body_limit(boost::none);
    std::size_t used = 0;
    error_code ec;
    while (!parser.is_done() && used < raw.size()) {
      const auto n = parser.put(asio::buffer(raw.data() + used, raw.size() - used), ec);
      used += n;
      if (ec || n == 0) break;
    }
    if (!parser.is_done() && !ec && parser.is_header_done() && parser.need_eof())
      parser.put_eof(ec);  // a close-delimited body: the rest of the bytes
    if (parser.is_header_done()) out.push_back(static_cast<int>(parser.get().result_int()));
    if (!parser.is_done()) break;
    raw.remove_prefix(used);
  }
  return out;
}

}  // namespace mxp::test
