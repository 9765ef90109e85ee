// ctl_runner: requests through unix_http_client, answers parsed with simdjson's DOM.
#include "client/ctl_runner.hpp"

#include <fmt/format.h>

#include <chrono>
#include <ostream>
#include <system_error>

#include "client/ctl_format.hpp"
#include "client/ctl_json.hpp"
#include "client/percent_encoding.hpp"

namespace mxp::client {

namespace {

namespace dom = simdjson::dom;

std::string hint(std::error_code ec) {
  if (ec == std::errc::no_such_file_or_directory || ec == std::errc::connection_refused) {
    return " (is mxpuppetd running? --socket or MXPUPPETD_SOCKET choose another socket)";
  }
  if (ec == std::errc::permission_denied)
    return " (may this user open the socket? see socket.group in the config)";
  return {};
}

std::optional<std::string_view> errcode_of(const dom::element* doc, dom::object& o) {
  if (!doc || doc->get_object().get(o) != simdjson::SUCCESS) return std::nullopt;
  const auto e = member(o, "errcode");
  return e ? as_string(*e) : std::nullopt;
}

}  // namespace

std::string user_path(std::string_view user, std::string_view tail) {
  return fmt::format("/v1/users/{}/{}", percent_encode_path_segment(user), tail);
}

std::optional<int> command_runner::exchange(std::string_view method, const std::string& target,
                                            std::string_view body, http_response& resp) {
  if (!client_) client_.emplace(opts_.socket, ctx_.timeout);
  try {
    resp = client_->request(method, target, body);
  } catch (const std::system_error& e) {
    ctx_.err << "mxpuppetctl: cannot reach mxpuppetd: " << e.what() << hint(e.code()) << '\n';
    return exit_code(ctl_exit::unreachable);
  } catch (const http_protocol_error& e) {
    ctx_.err << "mxpuppetctl: mxpuppetd at " << opts_.socket << " sent a " << e.what() << '\n';
    return exit_code(ctl_exit::bad_answer);
  }
  return std::nullopt;
}

int command_runner::run(std::string_view method, const std::string& target, std::string_view body,
                        printer print) {
  http_response resp;
  if (const auto failed = exchange(method, target, body, resp)) return *failed;

  dom::element doc;
  const auto parse_error = parser_.parse(resp.body).get(doc);
  if (resp.status < 200 || resp.status > 299)
    return report_error(resp, parse_error ? nullptr : &doc);
  if (parse_error) {
    return bad_answer(fmt::format("not JSON ({})", simdjson::error_message(parse_error)));
  }
  if (opts_.json && !opts_.homeserver) {
    ctx_.out << resp.body;
    if (resp.body.empty() || resp.body.back() != '\n') ctx_.out << '\n';
    return exit_code(ctl_exit::ok);
  }
  return print(*this, doc);
}

int command_runner::bad_answer(std::string_view why) {
  // Never echo the body: it may hold a token.
  ctx_.err << "mxpuppetctl: malformed answer from mxpuppetd: " << why << '\n';
  return exit_code(ctl_exit::bad_answer);
}

int command_runner::report_error(const http_response& resp, const dom::element* doc) {
  dom::object o;
  if (opts_.json && errcode_of(doc, o)) {
    ctx_.out << resp.body;
    if (resp.body.back() != '\n') ctx_.out << '\n';
  }
  ctx_.err << "mxpuppetctl: " << describe_error(resp, doc) << '\n';
  return exit_code(ctl_exit::daemon_error);
}

std::string command_runner::describe_error(const http_response& resp, const dom::element* doc) {
  dom::object o;
  const auto errcode = errcode_of(doc, o);
  // Not the Matrix-style error we expect; do not echo the body.
  if (!errcode)
    return fmt::format("mxpuppetd answered HTTP {} without an error description", resp.status);
  std::string line = printable(*errcode);
  if (const auto e = member(o, "error")) line += ": " + text_of(*e);
  std::string details;
  for (const std::string_view k : {"retry_after_ms", "upstream_status", "upstream_errcode"}) {
    if (const auto v = member(o, k); v && !v->is_null()) {
      details += fmt::format("{}{}: {}", details.empty() ? "" : ", ", k, text_of(*v));
    }
  }
  if (!details.empty()) line += " (" + details + ")";
  return line;
}

std::int64_t command_runner::now_ms() const {
  if (ctx_.now_ms) return ctx_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace mxp::client
