// pool_observer: what the session pool reports as it works (cache hits, logins,
// logouts, homeserver failures), for metrics. The pool calls it on its own thread;
// a null observer costs one branch. Implemented by api::api_metrics.
#pragma once

#include <chrono>
#include <string_view>

#include "matrix/homeserver_client.hpp"

namespace mxp::sessions {

class pool_observer {
 public:
  virtual ~pool_observer() = default;
  // A token request answered from the cache (hit) or one that had to wait for a login (miss).
  virtual void on_token_lookup(bool hit) noexcept = 0;
  // A login attempt finished; `failure` is null when it succeeded.
  virtual void on_login(std::string_view homeserver, std::string_view method,
                        std::chrono::nanoseconds duration,
                        const matrix::upstream_error* failure) noexcept = 0;
  // A refresh finished; `failure` is null when it succeeded (a failed one falls back to a login).
  virtual void on_refresh(std::string_view /*homeserver*/, std::chrono::nanoseconds /*duration*/,
                          const matrix::upstream_error* /*failure*/) noexcept {}
  // A logout finished; `failure` is null when it succeeded.
  virtual void on_logout(std::string_view homeserver,
                         const matrix::upstream_error* failure) noexcept = 0;
};

}  // namespace mxp::sessions
