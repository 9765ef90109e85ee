// api_answers: JSON answers of the socket API.
#include "api/api_answers.hpp"

#include "api/api_routes.hpp"
#include "core/errc.hpp"
#include "core/json_writer.hpp"

namespace mxp::api {

void write_error(api_response& res, int status, std::string_view errcode,
                 std::string_view message) {
  res.status = status;
  res.body.clear();
  json_writer{res.body}
      .begin_object()
      .member("errcode", errcode)
      .member("error", message)
      .end_object();
}

// The one place where pool errors become API answers (DESIGN.md, "Errors"). Homeserver
// failures follow one rule (README, "Socket API", errors), decided by what came back rather than
// by how the pool classified it:
// * 429 M_LIMIT_EXCEEDED: the homeserver rate-limited logins (429 or M_LIMIT_EXCEEDED) for
//   longer than the caller could wait.
// * 504 MXP_TIMEOUT: no answer in time (connect, TLS handshake or request timeout), or the API
//   request's own deadline passed.
// * 502 MXP_UPSTREAM: a complete HTTP answer arrived and it is not one we can use: any 4xx/5xx
//   status, JSON or not (a proxy's plain-text 502/503/504 included), or a 2xx whose body is not
//   what the Matrix API promises. `upstream_status` is always that HTTP status;
//   `upstream_errcode` its Matrix errcode, null when it had none.
// * 503 MXP_UNAVAILABLE: no complete HTTP answer: connection refused or reset, DNS or TLS
//   failure, an answer cut short, bytes that are not HTTP, an answer over max_response_bytes.
//   Also an open circuit, a failed .well-known discovery and shutdown.
// So 502 and only 502 carries an upstream_status.
void write_pool_error(api_response& res, const sessions::pool_error& e) {
  const auto code = static_cast<errc>(e.code.value());
  const bool ours = e.code.category() == mxp_category();
  const bool http_answer = e.http_status >= 100 && e.http_status <= 599;
  int status = 500;
  std::string_view errcode = "M_UNKNOWN";
  switch (ours ? code : errc::upstream_unavailable) {
    case errc::invalid_user_id:
    case errc::invalid_request:
      status = 400, errcode = "M_INVALID_PARAM";
      break;
    case errc::forbidden:
      status = 403, errcode = "M_FORBIDDEN";
      break;
    case errc::unknown_homeserver:
    case errc::not_found:
      status = 404, errcode = "M_NOT_FOUND";
      break;
    case errc::upstream_rate_limited:
      status = 429, errcode = "M_LIMIT_EXCEEDED";
      break;
    case errc::upstream_refused:
    case errc::upstream_bad_response:
    case errc::upstream_unavailable:  // e.g. a proxy's 502/503/504: an answer all the same
      if (http_answer)
        status = 502, errcode = "MXP_UPSTREAM";
      else
        status = 503, errcode = "MXP_UNAVAILABLE";
      break;
    case errc::discovery_failed:
    case errc::shutting_down:
      status = 503, errcode = "MXP_UNAVAILABLE";
      break;
    case errc::upstream_timeout:
    case errc::deadline_exceeded:
      status = 504, errcode = "MXP_TIMEOUT";
      break;
    case errc::ok:
      break;
  }
  // Our own diagnostic only: the homeserver's error text goes to the log, not to API clients.
  std::string message = e.code.message();
  if (!e.diagnostic.empty()) message += ": " + e.diagnostic;
  res.status = status;
  res.body.clear();
  json_writer w{res.body};
  w.begin_object().member("errcode", errcode).member("error", message);
  if (status == 429) w.member("retry_after_ms", e.retry_after_ms.value_or(1000));
  // A homeserver that is failing (backoff, open circuit) says when the next try goes out.
  if (status == 503 && e.retry_after_ms) w.member("retry_after_ms", *e.retry_after_ms);
  if (status == 502) {
    w.member("upstream_status", e.http_status);
    if (e.errcode.empty())
      w.key("upstream_errcode").null();
    else
      w.member("upstream_errcode", e.errcode);
  }
  w.end_object();
}

void write_token(api_response& res, const sessions::token_view& t) {
  res.status = 200;
  res.body.clear();
  json_writer w{res.body};
  w.begin_object()
      .member("user_id", t.user_id)
      .member("access_token", t.access_token->reveal())
      .member("device_id", *t.device_id)
      .member("homeserver_url", t.homeserver->base_url())
      .member("expires_at_ms", t.expires_at_ms)
      .member("method", t.homeserver->method_name())
      .end_object();
}

void write_status(api_response& res, std::int64_t uptime_ms, const sessions::session_pool& pool,
                  const api_metrics* metrics) {
  const auto stats = pool.stats();
  res.status = 200;
  res.body.clear();
  json_writer w{res.body};
  w.begin_object().member("version", MXP_VERSION).member("uptime_ms", uptime_ms);
  w.key("sessions")
      .begin_object()
      .member("total", stats.total)
      .member("active", stats.active)
      .member("logging_in", stats.logging_in)
      .member("refreshing", stats.refreshing)
      .member("validating", stats.validating)
      .member("revoking", stats.revoking)
      .member("absent", stats.absent)
      .end_object();
  w.key("homeservers").begin_array();
  for (const auto& hs : pool.homeservers()) {
    const auto totals = metrics ? metrics->totals_of(hs.server_name) : homeserver_totals{};
    w.begin_object()
        .member("server_name", hs.server_name)
        .member("url", hs.url)
        .member("method", hs.method)
        .member("login_type", hs.login_type)
        .member("logins_in_flight", hs.logins_in_flight)
        .member("logins_ok", totals.logins_ok)
        .member("logins_failed", totals.logins_failed)
        .member("logouts", totals.logouts)
        .member("refreshes_ok", totals.refreshes_ok)
        .member("refreshes_failed", totals.refreshes_failed)
        .member("healthy", hs.healthy)
        .member("circuit", sessions::to_string(hs.circuit))
        .member("consecutive_failures", hs.consecutive_failures)
        .member("rate_limited", hs.rate_limited);
    if (!hs.configuration_error.empty()) w.member("configuration_error", hs.configuration_error);
    w.end_object();
  }
  w.end_array().end_object();
}

void write_sessions_page(api_response& res, const sessions::session_page& page) {
  res.status = 200;
  res.body.clear();
  json_writer w{res.body};
  w.begin_object().key("sessions").begin_array();
  for (const auto& s : page.sessions) {  // never tokens
    w.begin_object()
        .member("user_id", s.user_id)
        .member("device_id", s.device_id)
        .member("method", s.method)
        .member("created_at_ms", s.created_at_ms)
        .member("last_used_at_ms", s.last_used_at_ms)
        .member("expires_at_ms", s.expires_at_ms)
        .member("state", sessions::to_string(s.state))
        .end_object();
  }
  w.end_array();
  if (page.more && !page.sessions.empty())
    w.member("next_batch", sessions_cursor(page.sessions.back().user_id));
  w.end_object();
}

}  // namespace mxp::api
