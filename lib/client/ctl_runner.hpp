// ctl_runner: one mxpuppetctl command's conversation with mxpuppetd: requests on one reused
// connection, the exit code for an unreachable daemon or a malformed answer, and the
// daemon's Matrix-style errors on stderr. The commands' printers are given to run().
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "client/ctl.hpp"
#include "client/ctl_options.hpp"
#include "client/unix_http_client.hpp"

namespace mxp::client {

class command_runner {
 public:
  // Prints a 2xx answer's JSON; returns the exit code.
  using printer = int (*)(command_runner&, simdjson::dom::element);

  command_runner(const ctl_context& ctx, const ctl_options& o) : ctx_(ctx), opts_(o) {}

  // One request on this command's connection; nullopt once an answer came (any status),
  // else the exit code, the reason already on stderr.
  std::optional<int> exchange(std::string_view method, const std::string& target,
                              std::string_view body, http_response& resp);

  // One request, then: a daemon error on stderr (exit 1), --json's answer as it came, or `print`.
  int run(std::string_view method, const std::string& target, std::string_view body, printer print);

  // Says the answer is malformed (never echoing the body: it may hold a token); exit 4.
  int bad_answer(std::string_view why);
  // A non-2xx answer: its description on stderr (and the answer on stdout with --json); exit 1.
  int report_error(const http_response& resp, const simdjson::dom::element* doc);
  // "ERRCODE: error (details)", or a note that the answer had no Matrix-style error.
  static std::string describe_error(const http_response& resp, const simdjson::dom::element* doc);

  const ctl_context& ctx() const { return ctx_; }
  const ctl_options& opts() const { return opts_; }
  simdjson::dom::parser& parser() { return parser_; }
  // Wall clock, ms since the Unix epoch (ctl_context::now_ms when set).
  std::int64_t now_ms() const;

 private:
  const ctl_context& ctx_;
  const ctl_options& opts_;
  simdjson::dom::parser parser_;
  std::optional<unix_http_client> client_;  // opened by the first request, reused by the next
};

// "/v1/users/{user, percent-encoded}/{tail}"
std::string user_path(std::string_view user, std::string_view tail);

}  // namespace mxp::client
