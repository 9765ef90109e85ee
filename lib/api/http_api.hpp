// http_api: the socket API's routes and answers, independent of the transport.
// The server hands it parsed requests; cached tokens are answered without
// suspending (handle_now), everything else through the coroutine handle().
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "api/access_policy.hpp"
#include "api/api_metrics.hpp"
#include "api/api_routes.hpp"
#include "sessions/session_pool.hpp"

namespace mxp::api {

struct api_request {
  std::string_view method;  // "GET", "POST", "DELETE"
  std::string_view target;  // path and query, still percent-encoded
  std::string_view body;
  // Who is asking (SO_PEERCRED of the connection); null: unknown, denied when `clients:` is
  // configured.
  const peer_credentials* peer = nullptr;
  // Requests from the TCP listener: tcp set, the peer's address ("127.0.0.1:54321", for the log)
  // and this request's Authorization header as sent ("" when absent).
  bool tcp = false;
  std::string_view tcp_peer;
  std::string_view authorization;
};

struct api_response {
  int status = 200;
  std::string body;                    // JSON; reused across requests on one connection
  std::string_view content_type;       // empty: application/json
  endpoint route = endpoint::unknown;  // for metrics
  void clear() { status = 200, body.clear(), content_type = {}, route = endpoint::unknown; }
};

// Reason phrase for the status line (Beast's table).
std::string_view reason_phrase(int status) noexcept;
// The HTTP/1.1 answer: status line, Content-Type, Content-Length (and Connection: close), body.
void serialize(const api_response& res, bool keep_alive, std::string& out);

// What the hot path remembers of one connection: its access decision, taken once per connection
// (a peer's credentials never change) and again after a reload replaced the policy.
struct connection_access {
  std::uint64_t policy_generation = 0;  // of the decision below; 0: none taken yet
  bool every_user = false;              // the peer may have any user's token
};

// What handle_now learnt of a request it could not answer at once (its route, the client its API
// key authenticated), carried to handle() so that nothing is routed or authenticated twice.
struct pending_request {
  route target;
  const config::client_config* key_client = nullptr;
  bool user_allowed = false;  // the access policy already allowed this user ID
};

class http_api {
 public:
  http_api(sessions::session_pool& pool, std::chrono::milliseconds request_timeout);

  // The hot path: `GET /v1/users/{userId}/token[?min_valid_ms=N]` whose user segment needs no
  // percent-decoding, for a token that is cached and valid: appends the whole keep-alive answer
  // (rendered once per token, kept with the session) to `out`, counts it and returns true.
  // Anything else (not cached, denied, malformed, other routes) returns false having appended
  // nothing and changed nothing: the request goes through handle_now() as usual.
  bool answer_cached(std::string_view target, const peer_credentials* peer,
                     connection_access& access, std::string& out);
  // Answers without suspending when it can (cached token, health, refusals); otherwise false,
  // with what it found in `pending` for handle().
  bool handle_now(const api_request& req, api_response& res, pending_request& pending);
  // Answers a request handle_now did not, with what it found; may log users in, within the
  // request deadline.
  boost::asio::awaitable<void> handle(api_request req, pending_request pending, api_response& res);

  void set_ready(bool ready) noexcept { ready_ = ready; }
  // Access control (the `clients:` section); null or open: everyone may ask for anything.
  // /healthz is always open; /v1/status, /v1/sessions and /metrics need a peer covered by some
  // entry; user routes need an entry whose globs allow the user. Decisions are logged.
  // TCP requests (every one, /healthz included) must carry `Authorization: Bearer <api key>`
  // of some entry: 401 M_MISSING_TOKEN without it, 401 M_UNKNOWN_TOKEN for a key no entry has;
  // then that entry's globs apply as above, whether or not `clients:` is configured.
  void set_access_policy(std::shared_ptr<const access_policy> policy) noexcept {
    access_ = std::move(policy);
    ++policy_generation_;  // every connection decides again
  }
  // Metrics: GET /metrics answers 404 without them. Must outlive the API.
  void set_metrics(api_metrics* metrics) noexcept { metrics_ = metrics; }
  // GET /v1/gateway/bridges answers what this gives (404 without it): the bridge gateway's
  // bridges, their handles and last use (gateway_server::bridges_json).
  void set_gateway_report(std::function<std::string()> report) {
    gateway_report_ = std::move(report);
  }
  // Counts an answered request (the transport calls it once per answer, malformed ones included).
  void record(const api_response& res) noexcept {
    if (metrics_) metrics_->count_request(res.route, res.status);
  }

 private:
  sessions::session_pool& pool_;
  std::chrono::milliseconds request_timeout_;
  std::chrono::steady_clock::time_point started_;
  bool ready_ = false;
  std::shared_ptr<const access_policy> access_;
  std::uint64_t policy_generation_ = 1;
  api_metrics* metrics_ = nullptr;
  api_response rendering_;      // scratch for rendering a token's answer
  std::string rendered_bytes_;  // likewise
  std::function<std::string()> gateway_report_;

  const std::string& keep_rendering(const sessions::token_view& t, const api_response& res);
  const config::client_config* authenticate(const api_request& req, api_response& res) const;
  bool user_allowed(const api_request& req, const config::client_config* key_client,
                    std::string_view user_id, api_response& res) const;
  bool peer_admitted(const api_request& req, const config::client_config* key_client,
                     std::string_view what, api_response& res) const;
};

}  // namespace mxp::api
