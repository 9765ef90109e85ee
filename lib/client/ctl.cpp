// ctl: mxpuppetctl's commands. Parses answers with simdjson's DOM, prints what
// it finds and tolerates keys it does not know. Never prints an access token
// except as the answer to `token`.
#include "client/ctl.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <simdjson.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <istream>
#include <limits>
#include <optional>
#include <ostream>
#include <system_error>
#include <vector>

#include "client/percent_encoding.hpp"
#include "client/unix_http_client.hpp"
#include "core/duration.hpp"
#include "core/json_writer.hpp"

extern char** environ;

namespace mxp::client {

namespace {

namespace dom = simdjson::dom;

int code(ctl_exit e) {
  return static_cast<int>(e);
}

struct usage_error {
  std::string message;
};

struct options {
  std::string socket;
  bool json = false;
  bool help = false;
  bool version = false;
  std::optional<std::int64_t> min_valid_ms;
  // sessions, revoke --all-idle: only users of this server.
  std::optional<std::string_view> homeserver;
  bool all_idle = false;                    // revoke --all-idle
  std::optional<std::int64_t> idle_for_ms;  // revoke --all-idle --idle-for DURATION
  std::vector<std::string_view> positional;
};

constexpr std::int64_t default_idle_for_ms = 3'600'000;  // revoke --all-idle: 1h
constexpr int sessions_page_limit = 1000;                // the daemon's largest page

// Non-negative decimal integer, no sign, no spaces.
std::optional<std::int64_t> parse_non_negative(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t n = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return n;
}

options parse_options(std::span<const std::string_view> args, const ctl_context& ctx) {
  options o;
  o.socket = ctx.socket_from_env.empty() ? std::string{default_socket_path} : ctx.socket_from_env;
  bool only_positional = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (only_positional || a.size() < 2 || a.front() != '-') {
      o.positional.push_back(a);
      continue;
    }
    // Options may come before or after the command; "--opt=value" and "--opt value" both work.
    std::string_view name = a;
    std::optional<std::string_view> inline_value;
    if (const auto eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
    }
    auto value = [&]() -> std::string_view {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) throw usage_error{fmt::format("option {} needs a value", name)};
      return args[++i];
    };
    auto no_value = [&] {
      if (inline_value) throw usage_error{fmt::format("option {} takes no value", name)};
    };
    if (name == "--") {
      no_value();
      only_positional = true;
    } else if (name == "--socket" || name == "-s") {
      o.socket = std::string{value()};
      if (o.socket.empty()) throw usage_error{"--socket needs a non-empty path"};
    } else if (name == "--json") {
      no_value();
      o.json = true;
    } else if (name == "--help" || name == "-h") {
      no_value();
      o.help = true;
    } else if (name == "--version" || name == "-V") {
      no_value();
      o.version = true;
    } else if (name == "--min-valid-ms") {
      const std::string_view v = value();
      o.min_valid_ms = parse_non_negative(v);
      if (!o.min_valid_ms) {
        throw usage_error{
            fmt::format("--min-valid-ms needs a non-negative number of milliseconds, not '{}'", v)};
      }
    } else if (name == "--homeserver") {
      o.homeserver = value();
      if (o.homeserver->empty())
        throw usage_error{"--homeserver needs a server name such as example.org"};
    } else if (name == "--all-idle") {
      no_value();
      o.all_idle = true;
    } else if (name == "--idle-for") {
      const std::string_view v = value();
      const auto d = parse_duration(v);
      if (!d)
        throw usage_error{
            fmt::format("--idle-for needs a duration such as 30m, 1h or 7d, not '{}'", v)};
      o.idle_for_ms = d->count();
    } else {
      throw usage_error{fmt::format("unknown option '{}'", name)};
    }
  }
  return o;
}

// Replaces control characters so that nothing the daemon says can drive the terminal.
std::string printable(std::string_view s) {
  std::string out{s};
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) c = '?';
  }
  return out;
}

std::optional<std::int64_t> as_int(dom::element e) {
  switch (e.type()) {
    case dom::element_type::INT64:
      return std::int64_t{e.get_int64().value_unsafe()};
    case dom::element_type::UINT64: {
      const std::uint64_t u = e.get_uint64().value_unsafe();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return std::nullopt;
      return static_cast<std::int64_t>(u);
    }
    case dom::element_type::DOUBLE: {
      const double d = e.get_double().value_unsafe();
      if (!std::isfinite(d) || std::fabs(d) > 9.0e18) return std::nullopt;
      return static_cast<std::int64_t>(d);
    }
    default:
      return std::nullopt;
  }
}

std::optional<std::string_view> as_string(dom::element e) {
  if (e.type() != dom::element_type::STRING) return std::nullopt;
  return e.get_string().value_unsafe();
}

// Any JSON value as one line of text: strings unquoted, null as "-".
std::string text_of(dom::element e) {
  switch (e.type()) {
    case dom::element_type::STRING:
      return printable(e.get_string().value_unsafe());
    case dom::element_type::NULL_VALUE:
      return "-";
    case dom::element_type::BOOL:
      return e.get_bool().value_unsafe() ? "true" : "false";
    default:
      return printable(simdjson::minify(e));
  }
}

std::optional<dom::element> member(dom::object o, std::string_view key) {
  dom::element e;
  if (o.at_key(key).get(e) != simdjson::SUCCESS) return std::nullopt;
  return e;
}

// Aligned columns separated by two spaces; the last column is not padded.
void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows,
                 std::string_view indent = {}) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line{indent};
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - row[i].size() + 2, ' ');
    }
    out << line << '\n';
  }
}

std::string user_path(std::string_view user, std::string_view tail) {
  return fmt::format("/v1/users/{}/{}", percent_encode_path_segment(user), tail);
}

class command_runner {
 public:
  command_runner(const ctl_context& ctx, const options& o) : ctx_(ctx), opts_(o) {}

  // One request on this command's connection; nullopt once an answer came (any status),
  // else the exit code, the reason already on stderr.
  std::optional<int> exchange(std::string_view method, const std::string& target,
                              std::string_view body, http_response& resp) {
    if (!client_) client_.emplace(opts_.socket, ctx_.timeout);
    try {
      resp = client_->request(method, target, body);
    } catch (const std::system_error& e) {
      ctx_.err << "mxpuppetctl: cannot reach mxpuppetd: " << e.what() << hint(e.code()) << '\n';
      return code(ctl_exit::unreachable);
    } catch (const http_protocol_error& e) {
      ctx_.err << "mxpuppetctl: mxpuppetd at " << opts_.socket << " sent a " << e.what() << '\n';
      return code(ctl_exit::bad_answer);
    }
    return std::nullopt;
  }

  int run(std::string_view method, const std::string& target, std::string_view body,
          int (command_runner::*print)(dom::element)) {
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
      return code(ctl_exit::ok);
    }
    return (this->*print)(doc);
  }

  int print_token(dom::element doc) {
    dom::object o;
    if (doc.get_object().get(o) != simdjson::SUCCESS) return bad_answer("not a JSON object");
    const auto tok = member(o, "access_token");
    const auto s = tok ? as_string(*tok) : std::nullopt;
    if (!s || s->empty()) return bad_answer("no access_token in the answer");
    ctx_.out << *s << '\n';
    return code(ctl_exit::ok);
  }

  int print_invalidated(dom::element doc) {
    return print_flag(doc, "invalidated", "invalidated",
                      "not invalidated (token was not the current one)");
  }

  int print_revoked(dom::element doc) {
    return print_flag(doc, "revoked", "revoked", "no session");
  }

  // The object of a /v1/sessions answer and its "sessions" array; otherwise the exit code.
  std::optional<int> sessions_of(dom::element doc, dom::object& o, dom::array& sessions) {
    if (doc.get_object().get(o) != simdjson::SUCCESS) return bad_answer("not a JSON object");
    const auto list = member(o, "sessions");
    if (!list || list->get_array().get(sessions) != simdjson::SUCCESS)
      return bad_answer("no sessions array in the answer");
    return std::nullopt;
  }

  // GET /v1/sessions page after page, following next_batch, until the daemon says there is no
  // more. On success `all` holds one answer {"sessions":[...]} with every page's entries, as if
  // the daemon had sent them at once; otherwise the exit code (the reason is on stderr).
  std::optional<int> fetch_all_sessions(http_response& all) {
    std::string combined = R"({"sessions":[)";
    std::string from;
    for (;;) {
      std::string target = fmt::format("/v1/sessions?limit={}", sessions_page_limit);
      if (!from.empty()) target += "&from=" + percent_encode_path_segment(from);
      http_response resp;
      if (const auto failed = exchange("GET", target, {}, resp)) return failed;
      dom::element doc;
      const auto parse_error = parser_.parse(resp.body).get(doc);
      if (resp.status < 200 || resp.status > 299)
        return report_error(resp, parse_error ? nullptr : &doc);
      if (parse_error)
        return bad_answer(fmt::format("not JSON ({})", simdjson::error_message(parse_error)));
      dom::object o;
      dom::array sessions;
      if (const auto failed = sessions_of(doc, o, sessions)) return failed;
      for (dom::element s : sessions) {
        if (combined.back() != '[') combined += ',';
        combined += simdjson::minify(s);
      }
      const auto next = member(o, "next_batch");
      if (!next) break;
      const auto cursor = as_string(*next);
      // A daemon that named the same page again would keep us here forever.
      if (!cursor || cursor->empty() || *cursor == from)
        return bad_answer("next_batch is not a new cursor");
      from = std::string{*cursor};
    }
    combined += "]}";
    all.status = 200;
    all.body = std::move(combined);
    return std::nullopt;
  }

  // sessions: every page, then the table (or the JSON).
  int run_sessions() {
    http_response all;
    if (const auto failed = fetch_all_sessions(all)) return *failed;
    if (opts_.json && !opts_.homeserver) {
      ctx_.out << all.body << '\n';
      return code(ctl_exit::ok);
    }
    dom::element doc;
    if (parser_.parse(all.body).get(doc) != simdjson::SUCCESS)
      return bad_answer("a session is not valid JSON");
    return print_sessions(doc);
  }

  int print_sessions(dom::element doc) {
    dom::object o;
    dom::array sessions;
    if (doc.get_object().get(o) != simdjson::SUCCESS) return bad_answer("not a JSON object");
    const auto list = member(o, "sessions");
    if (!list || list->get_array().get(sessions) != simdjson::SUCCESS) {
      return bad_answer("no sessions array in the answer");
    }
    const std::int64_t now = now_ms();
    std::vector<std::vector<std::string>> rows{
        {"USER", "DEVICE", "METHOD", "STATE", "LAST_USED", "EXPIRES"}};
    // --json with --homeserver: the matching entries.
    std::string filtered_json = R"({"sessions":[)";
    for (dom::element s : sessions) {
      dom::object so;
      if (s.get_object().get(so) != simdjson::SUCCESS)
        return bad_answer("a session is not a JSON object");
      if (!on_chosen_homeserver(so)) continue;
      if (opts_.json) {
        if (filtered_json.back() != '[') filtered_json += ',';
        filtered_json += simdjson::minify(s);
        continue;
      }
      auto text = [&](std::string_view key) {
        const auto v = member(so, key);
        return v ? text_of(*v) : std::string{"-"};
      };
      std::string last_used = "-";
      if (const auto v = member(so, "last_used_at_ms")) {
        const auto t = as_int(*v);
        last_used = t ? human_duration(now - *t) + " ago" : text_of(*v);
      }
      std::string expires = "-";
      if (const auto v = member(so, "expires_at_ms")) {
        if (v->is_null()) {
          expires = "never";
        } else if (const auto t = as_int(*v)) {
          expires = *t > now ? "in " + human_duration(*t - now) : "expired";
        } else {
          expires = text_of(*v);
        }
      }
      rows.push_back({text("user_id"), text("device_id"), text("method"), text("state"),
                      std::move(last_used), std::move(expires)});
    }
    if (opts_.json) {
      ctx_.out << filtered_json << "]}\n";
    } else if (rows.size() == 1) {
      ctx_.out << "no sessions" << (opts_.homeserver ? " on " + printable(*opts_.homeserver) : "")
               << '\n';
    } else {
      print_table(ctx_.out, rows);
    }
    return code(ctl_exit::ok);
  }

  // revoke --all-idle: DELETE, one by one, every active session unused for idle_for_ms or longer.
  int revoke_idle(std::int64_t idle_for_ms) {
    http_response resp;
    if (const auto failed = fetch_all_sessions(resp)) return *failed;
    dom::element doc;
    if (parser_.parse(resp.body).get(doc) != simdjson::SUCCESS)
      return bad_answer("a session is not valid JSON");
    dom::object o;
    dom::array sessions;
    if (const auto failed = sessions_of(doc, o, sessions)) return *failed;

    const std::int64_t now = now_ms();
    struct idle_session {
      std::string user_id;
      std::int64_t idle_ms;
    };
    std::vector<idle_session> idle;  // copied out: the parser is reused for each answer below
    for (dom::element s : sessions) {
      dom::object so;
      if (s.get_object().get(so) != simdjson::SUCCESS)
        return bad_answer("a session is not a JSON object");
      const auto user = member(so, "user_id");
      const auto state = member(so, "state");
      const auto last_used = member(so, "last_used_at_ms");
      const auto user_id = user ? as_string(*user) : std::nullopt;
      const auto used_at = last_used ? as_int(*last_used) : std::nullopt;
      if (!user_id || user_id->empty() || !used_at) continue;
      if (!state || as_string(*state).value_or("") != "active")
        continue;  // logging in, revoking...: leave it
      if (!on_chosen_homeserver(so) || now - *used_at < idle_for_ms) continue;
      idle.push_back({std::string{*user_id}, now - *used_at});
    }

    const std::string scope =
        fmt::format("idle for {} or longer{}", human_duration(idle_for_ms),
                    opts_.homeserver ? " on " + printable(*opts_.homeserver) : "");
    std::vector<std::string> revoked, gone, failed;
    std::optional<int> transport_failure;
    for (const auto& s : idle) {
      http_response r;
      if ((transport_failure = exchange("DELETE", user_path(s.user_id, "session"), {}, r))) {
        failed.push_back(s.user_id);
        break;  // the daemon went away: the rest would fail the same way
      }
      dom::element answer;
      const bool parsed = parser_.parse(r.body).get(answer) == simdjson::SUCCESS;
      if (r.status < 200 || r.status > 299) {
        ctx_.err << "mxpuppetctl: revoke " << printable(s.user_id) << ": "
                 << describe_error(r, parsed ? &answer : nullptr) << '\n';
        failed.push_back(s.user_id);
        continue;
      }
      dom::object ao;
      const auto flag = parsed && answer.get_object().get(ao) == simdjson::SUCCESS
                            ? member(ao, "revoked")
                            : std::nullopt;
      if (!flag || !flag->is_bool()) {
        ctx_.err << "mxpuppetctl: revoke " << printable(s.user_id)
                 << ": malformed answer from mxpuppetd\n";
        failed.push_back(s.user_id);
      } else if (flag->get_bool().value_unsafe()) {
        revoked.push_back(s.user_id);
        if (!opts_.json)
          ctx_.out << "revoked " << printable(s.user_id) << " (idle " << human_duration(s.idle_ms)
                   << ")\n";
      } else {
        gone.push_back(s.user_id);  // ended between the listing and the DELETE
      }
    }

    if (opts_.json) {
      std::string out;
      json_writer w{out};
      w.begin_object();
      for (const auto& [key, users] : {std::pair{"revoked", &revoked}, std::pair{"gone", &gone},
                                       std::pair{"failed", &failed}}) {
        w.key(key).begin_array();
        for (const auto& u : *users) w.value(u);
        w.end_array();
      }
      w.end_object();
      ctx_.out << out << '\n';
    } else if (idle.empty()) {
      ctx_.out << "no active sessions " << scope << '\n';
    } else {
      ctx_.out << fmt::format("revoked {} of {} sessions {}", revoked.size(), idle.size(), scope);
      if (!failed.empty()) ctx_.out << fmt::format(" ({} failed)", failed.size());
      ctx_.out << '\n';
    }
    if (transport_failure) return *transport_failure;
    return failed.empty() ? code(ctl_exit::ok) : code(ctl_exit::daemon_error);
  }

  int print_status(dom::element doc) {
    dom::object o;
    if (doc.get_object().get(o) != simdjson::SUCCESS) return bad_answer("not a JSON object");
    auto label = [&](std::string_view name) {
      ctx_.out << fmt::format("{:<13}", fmt::format("{}:", name));
    };
    for (auto [key, value] : o) {
      if (key == "uptime_ms" && as_int(value)) {
        label("uptime");
        ctx_.out << human_duration(*as_int(value)) << '\n';
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
        ctx_.out << (line.empty() ? "-" : line) << '\n';
      } else if (key == "homeservers" && value.is_array()) {
        print_homeservers(dom::array(value));
      } else {
        label(printable(key));
        ctx_.out << text_of(value) << '\n';
      }
    }
    return code(ctl_exit::ok);
  }

 private:
  static std::string hint(std::error_code ec) {
    if (ec == std::errc::no_such_file_or_directory || ec == std::errc::connection_refused) {
      return " (is mxpuppetd running? --socket or MXPUPPETD_SOCKET choose another socket)";
    }
    if (ec == std::errc::permission_denied)
      return " (may this user open the socket? see socket.group in the config)";
    return {};
  }

  std::int64_t now_ms() const {
    if (ctx_.now_ms) return ctx_.now_ms();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  bool on_chosen_homeserver(dom::object session) const {
    if (!opts_.homeserver) return true;
    const auto user = member(session, "user_id");
    const auto id = user ? as_string(*user) : std::nullopt;
    return id && server_name_of(*id) == *opts_.homeserver;
  }

  int bad_answer(std::string_view why) {
    // Never echo the body: it may hold a token.
    ctx_.err << "mxpuppetctl: malformed answer from mxpuppetd: " << why << '\n';
    return code(ctl_exit::bad_answer);
  }

  int print_flag(dom::element doc, std::string_view key, std::string_view yes,
                 std::string_view no) {
    dom::object o;
    if (doc.get_object().get(o) != simdjson::SUCCESS) return bad_answer("not a JSON object");
    const auto v = member(o, key);
    if (!v || !v->is_bool()) return bad_answer(fmt::format("no boolean {} in the answer", key));
    ctx_.out << (v->get_bool().value_unsafe() ? yes : no) << '\n';
    return code(ctl_exit::ok);
  }

  void print_homeservers(dom::array list) {
    ctx_.out << "homeservers:";
    if (list.size() == 0) {
      ctx_.out << "  none\n";
      return;
    }
    ctx_.out << '\n';
    static constexpr std::string_view known[] = {
        "server_name", "url", "method", "login_type", "logins_in_flight", "healthy"};
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
    print_table(ctx_.out, rows, "  ");
  }

  static std::optional<std::string_view> errcode_of(const dom::element* doc, dom::object& o) {
    if (!doc || doc->get_object().get(o) != simdjson::SUCCESS) return std::nullopt;
    const auto e = member(o, "errcode");
    return e ? as_string(*e) : std::nullopt;
  }

  // "ERRCODE: error (details)", or a note that the answer had no Matrix-style error.
  static std::string describe_error(const http_response& resp, const dom::element* doc) {
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

  int report_error(const http_response& resp, const dom::element* doc) {
    dom::object o;
    if (opts_.json && errcode_of(doc, o)) {
      ctx_.out << resp.body;
      if (resp.body.back() != '\n') ctx_.out << '\n';
    }
    ctx_.err << "mxpuppetctl: " << describe_error(resp, doc) << '\n';
    return code(ctl_exit::daemon_error);
  }

  const ctl_context& ctx_;
  const options& opts_;
  dom::parser parser_;
  std::optional<unix_http_client> client_;  // opened by the first request, reused by the next
};

void expect_args(const options& o, std::size_t n, std::string_view synopsis) {
  if (o.positional.size() != n + 1) {
    throw usage_error{fmt::format("{} arguments; usage: mxpuppetctl {}",
                                  o.positional.size() < n + 1 ? "missing" : "too many", synopsis)};
  }
}

bool executable(const std::string& path) {
  return !path.empty() && ::access(path.c_str(), X_OK) == 0;
}

// $MXPUPPETD_BIN, else the mxpuppetd installed next to mxpuppetctl, else one on PATH; "" if none.
std::string find_daemon(const ctl_context& ctx) {
  if (!ctx.daemon_bin_from_env.empty()) return ctx.daemon_bin_from_env;
  if (!ctx.self_dir.empty() && executable(ctx.self_dir + "/mxpuppetd"))
    return ctx.self_dir + "/mxpuppetd";
  std::string_view path = ctx.search_path;
  while (!path.empty()) {
    const auto colon = path.find(':');
    const auto dir = path.substr(0, colon);
    path = colon == std::string_view::npos ? std::string_view{} : path.substr(colon + 1);
    if (dir.empty()) continue;  // an empty entry would mean the working directory: not for this
    if (auto candidate = std::string{dir} + "/mxpuppetd"; executable(candidate)) return candidate;
  }
  return {};
}

// check-config FILE: runs `mxpuppetd --check-config -c FILE` and passes its output and verdict on.
int check_config(const ctl_context& ctx, const std::string& file) {
  const auto daemon = find_daemon(ctx);
  if (daemon.empty()) {
    ctx.err << "mxpuppetctl: cannot find mxpuppetd next to mxpuppetctl or on PATH"
               " (MXPUPPETD_BIN names it)\n";
    return code(ctl_exit::unreachable);
  }
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    ctx.err << "mxpuppetctl: pipe: " << std::strerror(errno) << '\n';
    return code(ctl_exit::unreachable);
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ctx.err << "mxpuppetctl: pipe: " << std::strerror(errno) << '\n';
    ::close(out_pipe[0]), ::close(out_pipe[1]);
    return code(ctl_exit::unreachable);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);  // dup2 drops O_CLOEXEC
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
  std::string arg0 = daemon, arg1 = "--check-config", arg2 = "-c", arg3 = file;
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), arg3.data(), nullptr};
  pid_t pid = -1;
  const int spawned = ::posix_spawn(&pid, daemon.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (spawned != 0) {
    ::close(out_pipe[0]), ::close(err_pipe[0]);
    ctx.err << "mxpuppetctl: cannot run " << daemon << ": " << std::strerror(spawned) << '\n';
    return code(ctl_exit::unreachable);
  }

  // Both pipes until EOF, within the deadline (a secret file could be a FIFO nobody writes).
  const auto deadline = std::chrono::steady_clock::now() + ctx.timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::ostream* sinks[2] = {&ctx.out, &ctx.err};
  bool timed_out = false;
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    const int n = ::poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;  // poll ignores negative descriptors
        continue;
      }
      sinks[i]->write(buf, got);
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    ctx.err << "mxpuppetctl: " << daemon << " --check-config did not finish within "
            << human_duration(ctx.timeout.count()) << '\n';
    return code(ctl_exit::unreachable);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return code(ctl_exit::ok);
  // Exit status 2: the configuration is invalid, and mxpuppetd has said why.
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 2)
    ctx.err << "mxpuppetctl: " << daemon << " --check-config failed ("
            << (WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                  : fmt::format("signal {}", WTERMSIG(status)))
            << ")\n";
  return code(ctl_exit::daemon_error);
}

void expect_user(std::string_view user) {
  if (user.empty())
    throw usage_error{"USER must not be empty (a Matrix user ID like @alice:example.org)"};
}

}  // namespace

std::string_view server_name_of(std::string_view user_id) {
  const auto colon = user_id.find(':');
  return colon == std::string_view::npos ? std::string_view{} : user_id.substr(colon + 1);
}

std::string human_duration(std::int64_t ms) {
  if (ms < 1000) return fmt::format("{}ms", std::max<std::int64_t>(ms, 0));
  const std::int64_t s = ms / 1000;
  if (s < 60) return fmt::format("{}s", s);
  const std::int64_t m = s / 60;
  auto two = [](std::int64_t big, char big_unit, std::int64_t small, char small_unit) {
    return small == 0 ? fmt::format("{}{}", big, big_unit)
                      : fmt::format("{}{} {}{}", big, big_unit, small, small_unit);
  };
  if (m < 60) return two(m, 'm', s % 60, 's');
  const std::int64_t h = m / 60;
  if (h < 24) return two(h, 'h', m % 60, 'm');
  return two(h / 24, 'd', h % 24, 'h');
}

std::string ctl_usage() {
  return fmt::format(
      R"(Usage: mxpuppetctl [--socket PATH] [--json] COMMAND [ARGS]

Asks mxpuppetd for Matrix access tokens and shows its sessions.

Commands:
  token USER [--min-valid-ms N]
      Print an access token for USER (logging in if needed), nothing else,
      so that TOKEN=$(mxpuppetctl token @bot:example.org) works. With
      --min-valid-ms the token stays valid for at least N more milliseconds.
  invalidate USER TOKEN
      Report TOKEN as rejected by the homeserver; the next `token` gets a new
      one. TOKEN "-" reads it from standard input (keeps it out of ps).
  revoke USER
      Log USER's session out at the homeserver and forget it.
  revoke --all-idle [--idle-for DURATION] [--homeserver SERVER]
      Revoke every active session unused for DURATION (default 1h; e.g.
      30m, 12h, 7d) or longer, one at a time.
  sessions [--homeserver SERVER]
      List the sessions (never their tokens), or only those of users on
      SERVER (the part of the user ID after the first ':').
  status
      Version, uptime, session counts and homeserver health.
  check-config FILE
      Validate a configuration file with `mxpuppetd --check-config` (the
      mxpuppetd next to mxpuppetctl, else on PATH; MXPUPPETD_BIN overrides).
      Exit status 0 when valid, 1 when not (errors on stderr).

Options:
  -s, --socket PATH  daemon socket; default $MXPUPPETD_SOCKET, else
                     {}
      --json         print the daemon's JSON answer unchanged
  -h, --help         print this help
  -V, --version      print the version

Exit status:
  0  success
  1  the daemon answered with an error (errcode and message on stderr)
  2  usage error
  3  cannot reach the daemon (socket missing, connection refused,
     permission denied, timeout); check-config: mxpuppetd not found
  4  the daemon's answer is malformed
)",
      default_socket_path);
}

int run_ctl(std::span<const std::string_view> args, const ctl_context& ctx) {
  options o;
  try {
    o = parse_options(args, ctx);
    if (o.help || (!o.positional.empty() && o.positional.front() == "help")) {
      ctx.out << ctl_usage();
      return code(ctl_exit::ok);
    }
    if (o.version) {
      ctx.out << "mxpuppetctl " << MXP_VERSION << '\n';
      return code(ctl_exit::ok);
    }
    if (o.positional.empty()) throw usage_error{"no command given"};
    const std::string_view command = o.positional.front();
    if (o.min_valid_ms && command != "token")
      throw usage_error{"--min-valid-ms only goes with the token command"};
    if (o.all_idle && command != "revoke")
      throw usage_error{"--all-idle only goes with the revoke command"};
    if (o.idle_for_ms && !o.all_idle)
      throw usage_error{"--idle-for only goes with revoke --all-idle"};
    if (o.homeserver && command != "sessions" && !o.all_idle)
      throw usage_error{"--homeserver only goes with sessions and revoke --all-idle"};

    command_runner runner{ctx, o};
    if (command == "token") {
      expect_args(o, 1, "token USER [--min-valid-ms N]");
      expect_user(o.positional[1]);
      std::string target = user_path(o.positional[1], "token");
      if (o.min_valid_ms) target += fmt::format("?min_valid_ms={}", *o.min_valid_ms);
      return runner.run("GET", target, {}, &command_runner::print_token);
    }
    if (command == "invalidate") {
      expect_args(o, 2, "invalidate USER TOKEN");
      expect_user(o.positional[1]);
      std::string token{o.positional[2]};
      if (token == "-") {
        std::getline(ctx.in, token);
        if (!token.empty() && token.back() == '\r') token.pop_back();
      }
      if (token.empty()) throw usage_error{"TOKEN must not be empty"};
      std::string body;
      json_writer{body}.begin_object().member("access_token", token).end_object();
      return runner.run("POST", user_path(o.positional[1], "invalidate"), body,
                        &command_runner::print_invalidated);
    }
    if (command == "revoke" && o.all_idle) {
      expect_args(o, 0, "revoke --all-idle [--idle-for DURATION] [--homeserver SERVER]");
      return runner.revoke_idle(o.idle_for_ms.value_or(default_idle_for_ms));
    }
    if (command == "revoke") {
      expect_args(o, 1, "revoke USER  or  revoke --all-idle [--idle-for DURATION]");
      expect_user(o.positional[1]);
      return runner.run("DELETE", user_path(o.positional[1], "session"), {},
                        &command_runner::print_revoked);
    }
    if (command == "sessions") {
      expect_args(o, 0, "sessions [--homeserver SERVER]");
      return runner.run_sessions();
    }
    if (command == "status") {
      expect_args(o, 0, "status");
      return runner.run("GET", "/v1/status", {}, &command_runner::print_status);
    }
    if (command == "check-config") {
      expect_args(o, 1, "check-config FILE");
      if (o.positional[1].empty()) throw usage_error{"FILE must not be empty"};
      return check_config(ctx, std::string{o.positional[1]});
    }
    throw usage_error{fmt::format("unknown command '{}'", printable(command))};
  } catch (const usage_error& e) {
    ctx.err << "mxpuppetctl: " << e.message << "\nTry 'mxpuppetctl --help'.\n";
    return code(ctl_exit::usage);
  }
}

}  // namespace mxp::client
