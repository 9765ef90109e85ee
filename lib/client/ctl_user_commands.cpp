// ctl_user_commands: each printer reads one field of the answer; never prints a token except
// as the answer to `token`.
#include "client/ctl_user_commands.hpp"

#include <fmt/format.h>

#include <ostream>

#include "client/ctl_json.hpp"

namespace mxp::client {

namespace {

namespace dom = simdjson::dom;

int print_flag(command_runner& r, dom::element doc, std::string_view key, std::string_view yes,
               std::string_view no) {
  dom::object o;
  if (doc.get_object().get(o) != simdjson::SUCCESS) return r.bad_answer("not a JSON object");
  const auto v = member(o, key);
  if (!v || !v->is_bool()) return r.bad_answer(fmt::format("no boolean {} in the answer", key));
  r.ctx().out << (v->get_bool().value_unsafe() ? yes : no) << '\n';
  return exit_code(ctl_exit::ok);
}

}  // namespace

int print_token(command_runner& r, dom::element doc) {
  dom::object o;
  if (doc.get_object().get(o) != simdjson::SUCCESS) return r.bad_answer("not a JSON object");
  const auto tok = member(o, "access_token");
  const auto s = tok ? as_string(*tok) : std::nullopt;
  if (!s || s->empty()) return r.bad_answer("no access_token in the answer");
  r.ctx().out << *s << '\n';
  return exit_code(ctl_exit::ok);
}

int print_invalidated(command_runner& r, dom::element doc) {
  return print_flag(r, doc, "invalidated", "invalidated",
                    "not invalidated (token was not the current one)");
}

int print_revoked(command_runner& r, dom::element doc) {
  return print_flag(r, doc, "revoked", "revoked", "no session");
}

}  // namespace mxp::client
