// http_client: HTTP/1.1 client for one homeserver origin (http:// or https://),
// with reused keep-alive connections, a deadline on every step and size limits.
// Beast stays out of this header: it is compiled in http_client.cpp only.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/secret.hpp"

namespace mxp::net {

struct base_url {
  bool tls = false;
  std::string host;         // without brackets for IPv6
  std::string port;         // "443" / "80" when absent from the URL
  std::string path_prefix;  // "" or "/some/prefix" (no trailing '/')
  std::string host_header;  // host[:port] as it goes in the Host header
};

// Parses "https://matrix.example.com[:port][/prefix]"; nullopt when malformed.
std::optional<base_url> parse_base_url(std::string_view url);

struct http_client_options {
  std::string ca_file;  // empty: the system CA store
  std::chrono::milliseconds request_timeout{std::chrono::seconds{20}};
  std::chrono::milliseconds connect_timeout{std::chrono::seconds{10}};
  std::size_t max_response_bytes = 1024 * 1024;
  std::size_t max_idle_connections = 8;
  std::chrono::milliseconds idle_connection_lifetime{std::chrono::seconds{30}};
};

struct http_request {
  std::string_view method;  // "GET", "POST"
  std::string target;       // path below the base URL's prefix, e.g. "/_matrix/client/v3/login"
  std::string body;         // JSON; empty for none
  const secret_string* bearer = nullptr;  // Authorization: Bearer, when set
  // Safe to send again on a fresh connection when a reused one turned out dead
  // before any answer byte arrived. False for /refresh (it rotates tokens).
  bool replay_safe = true;
  const secret_string* basic = nullptr;  // Authorization: Basic (base64 credentials), when set
  std::string_view content_type = "application/json";  // of a body
};

struct http_response {
  int status = 0;
  std::string body;
  std::optional<std::string> retry_after;  // Retry-After header, if any
};

// Errors: boost::asio::error::* for network failures, mxp::errc::upstream_timeout
// when a deadline passed, mxp::errc::upstream_bad_response for protocol violations
// and oversized answers. `diagnostic` says what happened, without secrets.
struct http_failure {
  boost::system::error_code code;
  std::string diagnostic;
  // False when the request never left (resolve, connect or TLS failed, or cancelled before it
  // was sent): the server cannot have acted on it. True when it may have.
  bool request_sent = true;
};

// What boost::system::result<T, http_failure>::value() throws: system_error(code, diagnostic).
[[noreturn]] void throw_exception_from_error(const http_failure& failure,
                                             const boost::source_location& location);

class http_client {
 public:
  // Throws std::invalid_argument for a malformed URL, std::runtime_error for an unusable CA file.
  http_client(boost::asio::any_io_executor executor, std::string_view url,
              http_client_options options);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  boost::asio::awaitable<boost::system::result<http_response, http_failure>> request(
      http_request req);

  const base_url& url() const noexcept;
  std::size_t idle_connections() const noexcept;
  // Closes every idle connection (shutdown, reload).
  void close_idle();
  // Ends every request in flight: resolves are cancelled and connections closed, so each
  // request fails at once with mxp::errc::shutting_down. Later requests are not affected.
  void cancel_all();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace mxp::net
