// rest_backend: mxpuppetd as the backend of ma1uta's rest_auth_provider (`method: rest_backend`).
// The homeserver's module calls POST /_matrix-internal/identity/v1/check_credentials on a
// loopback listener here for every password check; the answer comes from the nonce book only,
// at once, without I/O. rest_backends owns the listeners (one per distinct backend_listen).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace mxp::credentials {
class nonce_book;
}

namespace mxp::matrix {

inline constexpr std::string_view check_credentials_path =
    "/_matrix-internal/identity/v1/check_credentials";

// The answer to one check_credentials body: {"auth":{"success":true,"mxid":ID,"profile":{}}}
// when body.user.password is the unexpired, unused nonce issued for exactly body.user.id (it
// is consumed), else {"auth":{"success":false}} (bad JSON, missing or mistyped members too).
// Neither the body nor the password is kept or logged.
std::string check_credentials_answer(credentials::nonce_book& book, std::string_view body,
                                     std::int64_t now_ms);

// Deadlines and limits of the backend's connections. The module opens a new connection per
// call and sends a few hundred bytes: anything slower or bigger is not the module.
struct rest_backend_limits {
  std::chrono::milliseconds read_timeout{std::chrono::seconds{5}};   // accept to request end
  std::chrono::milliseconds write_timeout{std::chrono::seconds{5}};  // the answer
  std::size_t max_body_bytes = 4096;
  std::size_t max_connections = 512;  // beyond: closed at once (the module then sees a 403)
};

// The backend listeners of this daemon, one per distinct "address:port". Several homeservers
// naming the same backend_listen share its listener and its nonce book: a user ID names its
// homeserver, so one book keyed by the full user ID answers for each of them without any
// routing table, and one port is all an operator has to open to several homeservers on one
// host (a homeserver wanting its own listener names its own port). A listener lives until
// stop(), also after a reload removed the homeservers that used it.
class rest_backends {
 public:
  explicit rest_backends(boost::asio::any_io_executor executor, rest_backend_limits limits = {});
  ~rest_backends();
  rest_backends(const rest_backends&) = delete;
  rest_backends& operator=(const rest_backends&) = delete;

  // The nonce book answered on address:port; the listener is bound on first use (port 0: an
  // ephemeral port, see port_of) and serves from then on. Throws std::system_error naming the
  // address when it cannot listen.
  std::shared_ptr<credentials::nonce_book> attach(const std::string& address, std::uint16_t port);
  // The bound port of the listener attached as address:port (0 when none).
  std::uint16_t port_of(const std::string& address, std::uint16_t port) const;

  // Closes every listener and connection; attach() afterwards throws.
  void stop();
  // Waits until every listener and connection task has ended, or the deadline passed.
  boost::asio::awaitable<void> drain(std::chrono::steady_clock::time_point deadline);
  std::size_t listeners() const noexcept;
  std::size_t connections() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace mxp::matrix
