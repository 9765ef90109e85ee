// ctl_sessions: pages are joined into one {"sessions":[...]} answer, then filtered by
// homeserver and printed, or walked for idle sessions to revoke.
#include "client/ctl_sessions.hpp"

#include <fmt/format.h>

#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "client/ctl_format.hpp"
#include "client/ctl_json.hpp"
#include "client/percent_encoding.hpp"
#include "core/json_writer.hpp"

namespace mxp::client {

namespace {

namespace dom = simdjson::dom;

constexpr int sessions_page_limit = 1000;  // the daemon's largest page

bool on_chosen_homeserver(const ctl_options& opts, dom::object session) {
  if (!opts.homeserver) return true;
  const auto user = member(session, "user_id");
  const auto id = user ? as_string(*user) : std::nullopt;
  return id && server_name_of(*id) == *opts.homeserver;
}

std::optional<int> sessions_of(command_runner& r, dom::element doc, dom::object& o,
                               dom::array& sessions) {
  if (doc.get_object().get(o) != simdjson::SUCCESS) return r.bad_answer("not a JSON object");
  const auto list = member(o, "sessions");
  if (!list || list->get_array().get(sessions) != simdjson::SUCCESS)
    return r.bad_answer("no sessions array in the answer");
  return std::nullopt;
}

// GET /v1/sessions page after page, following next_batch, until the daemon says there is no
// more. On success `all` holds one answer {"sessions":[...]} with every page's entries, as if
// the daemon had sent them at once; otherwise the exit code (the reason is on stderr).
std::optional<int> fetch_all_sessions(command_runner& r, http_response& all) {
  std::string combined = R"({"sessions":[)";
  std::string from;
  for (;;) {
    std::string target = fmt::format("/v1/sessions?limit={}", sessions_page_limit);
    if (!from.empty()) target += "&from=" + percent_encode_path_segment(from);
    http_response resp;
    if (const auto failed = r.exchange("GET", target, {}, resp)) return failed;
    dom::element doc;
    const auto parse_error = r.parser().parse(resp.body).get(doc);
    if (resp.status < 200 || resp.status > 299)
      return r.report_error(resp, parse_error ? nullptr : &doc);
    if (parse_error)
      return r.bad_answer(fmt::format("not JSON ({})", simdjson::error_message(parse_error)));
    dom::object o;
    dom::array sessions;
    if (const auto failed = sessions_of(r, doc, o, sessions)) return failed;
    for (dom::element s : sessions) {
      if (combined.back() != '[') combined += ',';
      combined += simdjson::minify(s);
    }
    const auto next = member(o, "next_batch");
    if (!next) break;
    const auto cursor = as_string(*next);
    // A daemon that named the same page again would keep us here forever.
    if (!cursor || cursor->empty() || *cursor == from)
      return r.bad_answer("next_batch is not a new cursor");
    from = std::string{*cursor};
  }
  combined += "]}";
  all.status = 200;
  all.body = std::move(combined);
  return std::nullopt;
}

int print_sessions(command_runner& r, dom::element doc) {
  dom::object o;
  dom::array sessions;
  if (doc.get_object().get(o) != simdjson::SUCCESS) return r.bad_answer("not a JSON object");
  const auto list = member(o, "sessions");
  if (!list || list->get_array().get(sessions) != simdjson::SUCCESS) {
    return r.bad_answer("no sessions array in the answer");
  }
  const std::int64_t now = r.now_ms();
  std::vector<std::vector<std::string>> rows{
      {"USER", "DEVICE", "METHOD", "STATE", "LAST_USED", "EXPIRES"}};
  // --json with --homeserver: the matching entries.
  std::string filtered_json = R"({"sessions":[)";
  for (dom::element s : sessions) {
    dom::object so;
    if (s.get_object().get(so) != simdjson::SUCCESS)
      return r.bad_answer("a session is not a JSON object");
    if (!on_chosen_homeserver(r.opts(), so)) continue;
    if (r.opts().json) {
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
  if (r.opts().json) {
    r.ctx().out << filtered_json << "]}\n";
  } else if (rows.size() == 1) {
    r.ctx().out << "no sessions"
                << (r.opts().homeserver ? " on " + printable(*r.opts().homeserver) : "") << '\n';
  } else {
    print_table(r.ctx().out, rows);
  }
  return exit_code(ctl_exit::ok);
}

}  // namespace

int run_sessions(command_runner& r) {
  http_response all;
  if (const auto failed = fetch_all_sessions(r, all)) return *failed;
  if (r.opts().json && !r.opts().homeserver) {
    r.ctx().out << all.body << '\n';
    return exit_code(ctl_exit::ok);
  }
  dom::element doc;
  if (r.parser().parse(all.body).get(doc) != simdjson::SUCCESS)
    return r.bad_answer("a session is not valid JSON");
  return print_sessions(r, doc);
}

int revoke_idle(command_runner& r, std::int64_t idle_for_ms) {
  http_response resp;
  if (const auto failed = fetch_all_sessions(r, resp)) return *failed;
  dom::element doc;
  if (r.parser().parse(resp.body).get(doc) != simdjson::SUCCESS)
    return r.bad_answer("a session is not valid JSON");
  dom::object o;
  dom::array sessions;
  if (const auto failed = sessions_of(r, doc, o, sessions)) return *failed;

  const std::int64_t now = r.now_ms();
  struct idle_session {
    std::string user_id;
    std::int64_t idle_ms;
  };
  std::vector<idle_session> idle;  // copied out: the parser is reused for each answer below
  for (dom::element s : sessions) {
    dom::object so;
    if (s.get_object().get(so) != simdjson::SUCCESS)
      return r.bad_answer("a session is not a JSON object");
    const auto user = member(so, "user_id");
    const auto state = member(so, "state");
    const auto last_used = member(so, "last_used_at_ms");
    // "" when absent or not a string (GCC 12 misreads an optional<string_view> here).
    const std::string_view user_id = user ? as_string(*user).value_or("") : "";
    const auto used_at = last_used ? as_int(*last_used) : std::nullopt;
    if (user_id.empty() || !used_at) continue;
    if (!state || as_string(*state).value_or("") != "active")
      continue;  // logging in, revoking...: leave it
    if (!on_chosen_homeserver(r.opts(), so) || now - *used_at < idle_for_ms) continue;
    idle.push_back({std::string{user_id}, now - *used_at});
  }

  const std::string scope =
      fmt::format("idle for {} or longer{}", human_duration(idle_for_ms),
                  r.opts().homeserver ? " on " + printable(*r.opts().homeserver) : "");
  std::vector<std::string> revoked, gone, failed;
  std::optional<int> transport_failure;
  for (const auto& s : idle) {
    http_response resp;
    if ((transport_failure = r.exchange("DELETE", user_path(s.user_id, "session"), {}, resp))) {
      failed.push_back(s.user_id);
      break;  // the daemon went away: the rest would fail the same way
    }
    dom::element answer;
    const bool parsed = r.parser().parse(resp.body).get(answer) == simdjson::SUCCESS;
    if (resp.status < 200 || resp.status > 299) {
      r.ctx().err << "mxpuppetctl: revoke " << printable(s.user_id) << ": "
                  << command_runner::describe_error(resp, parsed ? &answer : nullptr) << '\n';
      failed.push_back(s.user_id);
      continue;
    }
    dom::object ao;
    const auto flag = parsed && answer.get_object().get(ao) == simdjson::SUCCESS
                          ? member(ao, "revoked")
                          : std::nullopt;
    if (!flag || !flag->is_bool()) {
      r.ctx().err << "mxpuppetctl: revoke " << printable(s.user_id)
                  << ": malformed answer from mxpuppetd\n";
      failed.push_back(s.user_id);
    } else if (flag->get_bool().value_unsafe()) {
      revoked.push_back(s.user_id);
      if (!r.opts().json)
        r.ctx().out << "revoked " << printable(s.user_id) << " (idle " << human_duration(s.idle_ms)
                    << ")\n";
    } else {
      gone.push_back(s.user_id);  // ended between the listing and the DELETE
    }
  }

  if (r.opts().json) {
    std::string out;
    json_writer w{out};
    w.begin_object();
    for (const auto& [key, users] :
         {std::pair{"revoked", &revoked}, std::pair{"gone", &gone}, std::pair{"failed", &failed}}) {
      w.key(key).begin_array();
      for (const auto& u : *users) w.value(u);
      w.end_array();
    }
    w.end_object();
    r.ctx().out << out << '\n';
  } else if (idle.empty()) {
    r.ctx().out << "no active sessions " << scope << '\n';
  } else {
    r.ctx().out << fmt::format("revoked {} of {} sessions {}", revoked.size(), idle.size(), scope);
    if (!failed.empty()) r.ctx().out << fmt::format(" ({} failed)", failed.size());
    r.ctx().out << '\n';
  }
  if (transport_failure) return *transport_failure;
  return failed.empty() ? exit_code(ctl_exit::ok) : exit_code(ctl_exit::daemon_error);
}

}  // namespace mxp::client
