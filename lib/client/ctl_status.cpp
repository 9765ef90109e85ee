// ctl_status: one "label: value" line per key of /v1/status, in the daemon's order; keys it
// does not know are printed as they come.
#include "client/ctl_status.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "client/ctl_format.hpp"
#include "client/ctl_json.hpp"

namespace mxp::client {

namespace {

namespace dom = simdjson::dom;

void print_homeservers(std::ostream& out, dom::array list) {
  out << "homeservers:";
  if (list.size() == 0) {
    out << "  none\n";
    return;
  }
  out << '\n';
  static constexpr std::string_view known[] = {"server_name",      "url",    "method", "login_type",
                                               "logins_in_flight", "healthy"};
  std::vector<std::vector<std::string>> rows{
      {"SERVER", "URL", "METHOD", "LOGIN_TYPE", "IN_FLIGHT", "HEALTH"}};
  bool any_other = false;
  for (dom::element hs : list) {
    std::vector<std::string> row(std::size(known), "-");
    std::string other;
    if (hs.is_object()) {
      for (auto [k, v] : dom::object(hs)) {
        const auto it = std::find(std::begin(known), std::end(known), k);
        if (it == std::end(known)) {
          if (!other.empty()) other += ' ';
          other += printable(k) + "=" + text_of(v);
        } else if (k == "healthy" && v.is_bool()) {
          row[5] = v.get_bool().value_unsafe() ? "healthy" : "UNHEALTHY";
        } else {
          row[static_cast<std::size_t>(it - std::begin(known))] = text_of(v);
        }
      }
    } else {
      other = text_of(hs);
    }
    if (!other.empty()) {
      any_other = true;
      row.push_back(std::move(other));
    }
    rows.push_back(std::move(row));
  }
  if (any_other) rows.front().push_back("OTHER");
  print_table(out, rows, "  ");
}

}  // namespace

int print_status(command_runner& r, dom::element doc) {
  dom::object o;
  if (doc.get_object().get(o) != simdjson::SUCCESS) return r.bad_answer("not a JSON object");
  auto label = [&](std::string_view name) {
    r.ctx().out << fmt::format("{:<13}", fmt::format("{}:", name));
  };
  for (auto [key, value] : o) {
    if (key == "uptime_ms" && as_int(value)) {
      label("uptime");
      r.ctx().out << human_duration(*as_int(value)) << '\n';
    } else if (key == "sessions" && value.is_object()) {
      // "5 total, 4 active, 1 logging in"
      label("sessions");
      std::string line;
      for (auto [k, v] : dom::object(value)) {
        if (!line.empty()) line += ", ";
        std::string name = printable(k);
        std::replace(name.begin(), name.end(), '_', ' ');
        line += text_of(v) + " " + name;
      }
      r.ctx().out << (line.empty() ? "-" : line) << '\n';
    } else if (key == "homeservers" && value.is_array()) {
      print_homeservers(r.ctx().out, dom::array(value));
    } else {
      label(printable(key));
      r.ctx().out << text_of(value) << '\n';
    }
  }
  return exit_code(ctl_exit::ok);
}

}  // namespace mxp::client
