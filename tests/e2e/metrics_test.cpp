// End-to-end: GET /metrics of the real mxpuppetd after it served tokens from the fake
// homeserver. Every scrape goes through a strict parser of the Prometheus text format
// (0.0.4) and, when it is installed, `promtool check metrics` (Debian package prometheus).
#include <gtest/gtest.h>
#include <simdjson.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;

namespace {

constexpr const char* secret = "e2e-metrics-shared-secret";
constexpr const char* promtool = "/usr/bin/promtool";

// What a strict reading of the exposition found: samples keyed by their series as
// `name{label="value",...}` (labels in the order written, values re-escaped), and
// every rule the text broke.
struct exposition {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;  // family name -> counter, gauge, histogram, ...
  std::vector<std::string> errors;

  double value(const std::string& series) const {
    const auto it = samples.find(series);
    return it == samples.end() ? std::nan("") : it->second;
  }
  bool has(const std::string& series) const { return samples.contains(series); }
};

bool metric_name_ok(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool label_name_ok(std::string_view n) {
  return metric_name_ok(n) && n.find(':') == std::string_view::npos;
}

bool parse_value(std::string_view s, double& out) {
  if (s == "+Inf") return out = INFINITY, true;
  if (s == "-Inf") return out = -INFINITY, true;
  if (s == "NaN") return out = NAN, true;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc{} && r.ptr == s.data() + s.size();
}

void append_escaped(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

// The family a sample belongs to: histograms own name_bucket, name_sum and name_count.
std::string family_of(const std::string& name, const std::map<std::string, std::string>& types) {
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (!name.ends_with(suffix)) continue;
    const auto base = name.substr(0, name.size() - suffix.size());
    const auto it = types.find(base);
    if (it != types.end() && it->second == "histogram") return base;
  }
  return name;
}

exposition parse_exposition(std::string_view text) {
  exposition e;
  auto fail = [&](std::size_t line_no, const std::string& why) {
    e.errors.push_back("line " + std::to_string(line_no) + ": " + why);
  };
  if (text.empty() || text.back() != '\n')
    e.errors.push_back("the exposition must end with a newline");
  std::set<std::string> helped, finished_families;
  std::string current_family;
  // Histogram checks, per series without `le`: buckets seen (le, cumulative count).
  std::map<std::string, std::vector<std::pair<double, double>>> buckets;
  std::size_t line_no = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    const auto end = text.find('\n', pos);
    const auto line =
        text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    pos = end == std::string_view::npos ? text.size() : end + 1;
    ++line_no;
    if (line.empty()) {
      fail(line_no, "empty line");
      continue;
    }
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      const bool is_help = line[2] == 'H';
      const auto rest = line.substr(7);
      const auto sp = rest.find(' ');
      const std::string name{rest.substr(0, sp)};
      const auto arg = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
      if (!metric_name_ok(name)) fail(line_no, "bad metric name '" + name + "'");
      if (finished_families.contains(name)) fail(line_no, name + ": family is not contiguous");
      if (name != current_family && !current_family.empty())
        finished_families.insert(current_family);
      current_family = name;
      if (is_help) {
        if (!helped.insert(name).second) fail(line_no, name + ": second HELP");
        if (arg.empty()) fail(line_no, name + ": empty HELP");
        for (std::size_t i = 0; i < arg.size(); ++i)
          if (arg[i] == '\\' && (i + 1 == arg.size() || (arg[i + 1] != '\\' && arg[i + 1] != 'n')))
            fail(line_no, name + ": bad escape in HELP");
          else if (arg[i] == '\\')
            ++i;
      } else {
        static const std::set<std::string_view> kinds{"counter", "gauge", "histogram", "summary",
                                                      "untyped"};
        if (!kinds.contains(arg)) fail(line_no, name + ": unknown TYPE '" + std::string{arg} + "'");
        if (e.types.contains(name)) fail(line_no, name + ": second TYPE");
        e.types[name] = std::string{arg};
      }
      continue;
    }
    if (line.starts_with('#')) {
      fail(line_no, "unexpected comment");
      continue;
    }
    // A sample: name[{labels}] value
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    const std::string name{line.substr(0, i)};
    if (!metric_name_ok(name)) {
      fail(line_no, "bad metric name '" + name + "'");
      continue;
    }
    std::string series = name;
    std::vector<std::pair<std::string, std::string>> labels;
    bool ok = true;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (ok && i < line.size() && line[i] != '}') {
        const auto eq = line.find('=', i);
        if (eq == std::string_view::npos) {
          ok = false;
          break;
        }
        std::string label{line.substr(i, eq - i)};
        if (!label_name_ok(label) || eq + 1 >= line.size() || line[eq + 1] != '"') {
          ok = false;
          break;
        }
        std::string value;
        std::size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] != '\\') {
            value += line[j];
            continue;
          }
          if (++j == line.size()) break;
          if (line[j] == '\\')
            value += '\\';
          else if (line[j] == '"')
            value += '"';
          else if (line[j] == 'n')
            value += '\n';
          else
            ok = false;
        }
        if (j >= line.size()) {
          ok = false;
          break;
        }
        for (const auto& [l, v] : labels)
          if (l == label) ok = false;
        labels.emplace_back(std::move(label), std::move(value));
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (!ok || i >= line.size()) {
        fail(line_no, "malformed labels");
        continue;
      }
      ++i;  // '}'
      series += '{';
      for (std::size_t k = 0; k < labels.size(); ++k) {
        if (k > 0) series += ',';
        series += labels[k].first + "=\"";
        append_escaped(series, labels[k].second);
        series += '"';
      }
      series += '}';
    }
    if (i >= line.size() || line[i] != ' ') {
      fail(line_no, "no value");
      continue;
    }
    const auto value_text = line.substr(i + 1);
    double value = 0;
    if (value_text.find(' ') != std::string_view::npos) {
      fail(line_no, "timestamps are not expected");
      continue;
    }
    if (!parse_value(value_text, value)) {
      fail(line_no, "bad value '" + std::string{value_text} + "'");
      continue;
    }
    const auto family = family_of(name, e.types);
    if (family != current_family)
      fail(line_no, name + ": sample outside its family's block (TYPE first)");
    const auto type = e.types.contains(family) ? e.types[family] : "";
    if (type.empty()) fail(line_no, name + ": no TYPE");
    if (!helped.contains(family)) fail(line_no, name + ": no HELP");
    if (!e.samples.emplace(series, value).second) fail(line_no, series + ": duplicate series");
    if (type == "counter" && (value < 0 || std::isnan(value)))
      fail(line_no, series + ": counter below 0");
    if (type == "histogram") {
      std::string without_le = family;
      std::optional<double> le;
      for (const auto& [l, v] : labels) {
        if (l == "le") {
          double b = 0;
          if (!parse_value(v, b)) fail(line_no, series + ": bad le");
          le = b;
        } else {
          without_le += "," + l + "=" + v;
        }
      }
      if (name == family + "_bucket") {
        if (!le)
          fail(line_no, series + ": bucket without le");
        else
          buckets[without_le].emplace_back(*le, value);
      } else if (le) {
        fail(line_no, series + ": le outside a bucket");
      } else if (name == family + "_count") {
        const auto& b = buckets[without_le];
        if (b.empty() || !std::isinf(b.back().first))
          fail(line_no, series + ": no +Inf bucket before _count");
        else if (b.back().second != value)
          fail(line_no, series + ": _count differs from the +Inf bucket");
      }
    }
  }
  for (const auto& [series, b] : buckets)
    for (std::size_t k = 1; k < b.size(); ++k) {
      if (!(b[k - 1].first < b[k].first))
        e.errors.push_back(series + ": bucket bounds not increasing");
      if (b[k - 1].second > b[k].second) e.errors.push_back(series + ": buckets not cumulative");
    }
  return e;
}

struct metrics_fixture : e2e_fixture {
  metrics_fixture() : e2e_fixture{secret} {}
  void SetUp() override {
    e2e_fixture::SetUp();
    start({.listen = "  request_timeout: 5s\n",
           .homeservers = {{.url = hs->url(), .more = "    request_timeout: 2s\n"}}});
  }

  // Scrapes, checks the answer's form (strict parser, promtool) and returns what it said.
  exposition scrape(unix_http_client& c) {
    const auto r = c.request("GET", "/metrics");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    auto e = parse_exposition(r.body);
    for (const auto& err : e.errors) ADD_FAILURE() << err << "\n" << r.body;
    for (const auto& [family, type] : e.types) {
      EXPECT_TRUE(family.starts_with("mxpuppetd_")) << family;
      EXPECT_EQ(family.ends_with("_total"), type == "counter") << family << " is a " << type;
      if (type == "histogram") {
        EXPECT_TRUE(family.ends_with("_seconds")) << family;
      }
    }
    if (::access(promtool, X_OK) == 0) {
      const auto file = dir.write("scrape.prom", r.body);
      const auto check =
          run_program({"/bin/sh", "-c", std::string{promtool} + " check metrics < '" + file + "'"});
      EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << r.body;
      EXPECT_EQ(check.output, "") << r.body;  // lint findings are printed even when it passes
    }
    return e;
  }
};

TEST(MetricsExpositionParser, RejectsWhatPrometheusWouldNot) {
  EXPECT_TRUE(
      parse_exposition("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\"} 1\n")
          .errors.empty());
  EXPECT_FALSE(parse_exposition("# HELP a_total A.\n# TYPE a_total counter\na_total 1")
                   .errors.empty());                             // no \n
  EXPECT_FALSE(parse_exposition("a_total 1\n").errors.empty());  // no TYPE
  EXPECT_FALSE(parse_exposition("# HELP a A.\n# TYPE a gauge\na{x=\"\\q\"} 1\n")
                   .errors.empty());  // bad escape
  EXPECT_FALSE(
      parse_exposition("# HELP a A.\n# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n").errors.empty());
  EXPECT_FALSE(
      parse_exposition("# HELP a A.\n# TYPE a gauge\na 1\na 2\n").errors.empty());  // duplicate
  EXPECT_FALSE(parse_exposition("# HELP a A.\n# TYPE a gauge\na one\n").errors.empty());
  const std::string histogram_head = "# HELP h_seconds H.\n# TYPE h_seconds histogram\n";
  EXPECT_TRUE(parse_exposition(histogram_head +
                               "h_seconds_bucket{le=\"1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n"
                               "h_seconds_sum 3\nh_seconds_count 2\n")
                  .errors.empty());
  EXPECT_FALSE(parse_exposition(histogram_head +
                                "h_seconds_bucket{le=\"1\"} 3\nh_seconds_bucket{le=\"+Inf\"} 2\n"
                                "h_seconds_sum 3\nh_seconds_count 2\n")
                   .errors.empty());  // not cumulative
  EXPECT_FALSE(
      parse_exposition(histogram_head +
                       "h_seconds_bucket{le=\"1\"} 1\nh_seconds_sum 3\nh_seconds_count 1\n")
          .errors.empty());  // no +Inf
}

TEST_F(metrics_fixture, ScrapeShowsRequestsCacheLoginsLogoutsAndSessions) {
  hs->register_users({"@alice:localhost", "@bob:localhost"});  // @ghost does not exist
  unix_http_client c{socket};
  auto before = scrape(c);
  EXPECT_EQ(before.value("mxpuppetd_api_requests_total{endpoint=\"token\",status=\"200\"}"), 0);
  EXPECT_EQ(before.value("mxpuppetd_sessions{state=\"active\"}"), 0);
  EXPECT_EQ(before.value("mxpuppetd_homeserver_up{homeserver=\"localhost\"}"), 1);
  EXPECT_EQ(before.value("mxpuppetd_build_info{version=\"" MXP_VERSION "\"}"), 1);

  ASSERT_EQ(get_token(c, "@alice:localhost").status, 200);  // miss: logs in
  ASSERT_EQ(get_token(c, "@alice:localhost").status, 200);  // hits
  ASSERT_EQ(get_token(c, "@alice:localhost").status, 200);
  ASSERT_EQ(get_token(c, "@bob:localhost").status, 200);
  EXPECT_EQ(get_token(c, "@ghost:localhost").status, 502);  // the homeserver refuses the login
  EXPECT_EQ(get_token(c, "@eve:elsewhere.org").status,
            404);  // no such homeserver: no login, no lookup
  EXPECT_EQ(c.request("DELETE", "/v1/users/@bob:localhost/session").status, 200);  // logout

  const auto m = scrape(c);
  EXPECT_EQ(m.value("mxpuppetd_api_requests_total{endpoint=\"token\",status=\"200\"}"), 4);
  EXPECT_EQ(m.value("mxpuppetd_api_requests_total{endpoint=\"token\",status=\"502\"}"), 1);
  EXPECT_EQ(m.value("mxpuppetd_api_requests_total{endpoint=\"token\",status=\"404\"}"), 1);
  EXPECT_EQ(m.value("mxpuppetd_api_requests_total{endpoint=\"session\",status=\"200\"}"), 1);
  EXPECT_EQ(m.value("mxpuppetd_api_requests_total{endpoint=\"metrics\",status=\"200\"}"),
            1);  // the first scrape
  EXPECT_EQ(m.value("mxpuppetd_token_cache_hits_total"), 2);
  EXPECT_EQ(m.value("mxpuppetd_token_cache_misses_total"), 3);  // alice, bob, ghost
  EXPECT_EQ(m.value("mxpuppetd_logins_total{homeserver=\"localhost\",method=\"shared_secret\","
                    "result=\"ok\"}"),
            2);
  EXPECT_EQ(m.value("mxpuppetd_logins_total{homeserver=\"localhost\",method=\"shared_secret\","
                    "result=\"refused\"}"),
            1);
  EXPECT_EQ(m.value("mxpuppetd_logouts_total{homeserver=\"localhost\",method=\"shared_secret\","
                    "result=\"ok\"}"),
            1);
  EXPECT_EQ(m.value("mxpuppetd_upstream_errors_total{homeserver=\"localhost\",kind=\"refused\"}"),
            1);
  EXPECT_EQ(m.value("mxpuppetd_login_duration_seconds_count{homeserver=\"localhost\"}"), 3);
  EXPECT_EQ(
      m.value("mxpuppetd_login_duration_seconds_bucket{homeserver=\"localhost\",le=\"+Inf\"}"), 3);
  EXPECT_GT(m.value("mxpuppetd_login_duration_seconds_sum{homeserver=\"localhost\"}"), 0);
  EXPECT_EQ(m.value("mxpuppetd_sessions{state=\"active\"}"), 1);  // alice; bob was revoked
  EXPECT_EQ(m.value("mxpuppetd_sessions{state=\"logging_in\"}"), 0);
  EXPECT_EQ(m.value("mxpuppetd_logins_in_flight{homeserver=\"localhost\"}"), 0);
  EXPECT_EQ(m.value("mxpuppetd_homeserver_up{homeserver=\"localhost\"}"), 1);
  EXPECT_GT(m.value("mxpuppetd_start_time_seconds"), 1.7e9);
  EXPECT_EQ(hs->successful_login_count(), 2);
}

TEST_F(metrics_fixture, UpstreamFailuresCountByKindAndHomeserverUpFollowsReachability) {
  hs->register_users({"@garbage:localhost", "@between:localhost", "@dropped:localhost",
                      "@alice:localhost", "@limited:localhost"});
  unix_http_client c{socket};
  const std::string hs_label = "homeserver=\"localhost\"";
  auto errors_of = [&](const exposition& m, const char* kind) {
    return m.value("mxpuppetd_upstream_errors_total{" + hs_label + ",kind=\"" + kind + "\"}");
  };
  hs->fail_next(3, failure::garbage);  // three tries, each an unusable 200
  EXPECT_EQ(get_token(c, "@garbage:localhost").status, 502);
  auto m = scrape(c);
  EXPECT_EQ(errors_of(m, "bad_response"), 1);
  EXPECT_EQ(m.value("mxpuppetd_logins_total{" + hs_label +
                    ",method=\"shared_secret\",result=\"bad_response\"}"),
            1);
  // Unusable answers count as failures: three in a row and the homeserver is down, its circuit
  // open.
  EXPECT_EQ(m.value("mxpuppetd_homeserver_up{" + hs_label + "}"), 0);
  // Three failures in a row opened the circuit; a caller that can wait gets the probe through.
  EXPECT_EQ(get_token(c, "@between:localhost").status, 200);

  hs->fail_all(failure::drop_connection);  // gone: every attempt (retries included) fails
  EXPECT_EQ(get_token(c, "@dropped:localhost").status, 503);
  m = scrape(c);
  EXPECT_GE(errors_of(m, "unavailable"), 1);
  EXPECT_GE(m.value("mxpuppetd_logins_total{" + hs_label +
                    ",method=\"shared_secret\",result=\"unavailable\"}"),
            1);
  EXPECT_EQ(m.value("mxpuppetd_api_requests_total{endpoint=\"token\",status=\"503\"}"), 1);
  EXPECT_EQ(m.value("mxpuppetd_homeserver_up{" + hs_label + "}"), 0);
  EXPECT_EQ(m.value("mxpuppetd_homeserver_circuit_state{" + hs_label + ",state=\"open\"}"), 1);
  EXPECT_EQ(m.value("mxpuppetd_homeserver_circuit_state{" + hs_label + ",state=\"closed\"}"), 0);

  // Back: within the backoff, the next login goes through and the gauge follows.
  hs->fail_all(failure::none);
  int status = 0;
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds{20};
       status != 200 && std::chrono::steady_clock::now() < until;) {
    status = get_token(c, "@alice:localhost").status;
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds{100});
  }
  ASSERT_EQ(status, 200);
  m = scrape(c);
  EXPECT_EQ(m.value("mxpuppetd_homeserver_up{" + hs_label + "}"), 1);
  EXPECT_EQ(m.value("mxpuppetd_homeserver_circuit_state{" + hs_label + ",state=\"closed\"}"), 1);
  EXPECT_EQ(
      m.value("mxpuppetd_logins_total{" + hs_label + ",method=\"shared_secret\",result=\"ok\"}"),
      2);  // @between and @alice

  // Last, as the homeserver's pause outlasts the test: a 429 past the request deadline. The
  // login itself goes on waiting in the background, so only the answer is counted yet.
  hs->fail_next(1, failure::rate_limited, 60'000);
  EXPECT_EQ(get_token(c, "@limited:localhost").status, 429);
  m = scrape(c);
  EXPECT_EQ(m.value("mxpuppetd_api_requests_total{endpoint=\"token\",status=\"429\"}"), 1);
  EXPECT_EQ(m.value("mxpuppetd_api_requests_total{endpoint=\"metrics\",status=\"200\"}"), 3);
  if (HasFailure()) ADD_FAILURE() << daemon->log();
}

struct MetricsRefresh : e2e_fixture {
  MetricsRefresh() : e2e_fixture{secret} {}
};

TEST_F(MetricsRefresh, RefreshesAreCountedAndTimed) {
  auto o = homeserver_options();
  o.refresh_access_lifetime_ms = 10'000;
  start_homeserver(o);
  hs->register_user("@r:localhost");
  ASSERT_NO_FATAL_FAILURE(start({.sections = "sessions: {refresh_tokens: true}\n", .log = ""}));
  unix_http_client c{socket};
  ASSERT_EQ(c.request("GET", "/v1/users/@r:localhost/token").status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds{20});
  ASSERT_EQ(c.request("GET", "/v1/users/@r:localhost/token?min_valid_ms=9990").status,
            200);  // refreshes
  const auto r = c.request("GET", "/metrics");
  const auto m = parse_exposition(r.body);
  EXPECT_TRUE(m.errors.empty()) << r.body;
  EXPECT_EQ(m.value("mxpuppetd_refreshes_total{homeserver=\"localhost\",result=\"ok\"}"), 1)
      << r.body;
  // The first try went to /v3/refresh, which this (older) homeserver does not know: one
  // refresh for the daemon, two requests for the homeserver.
  EXPECT_EQ(hs->refresh_count(), 2);
  EXPECT_EQ(m.value("mxpuppetd_refresh_duration_seconds_count{homeserver=\"localhost\"}"), 1)
      << r.body;
  EXPECT_EQ(m.value("mxpuppetd_logins_total{homeserver=\"localhost\",method=\"shared_secret\","
                    "result=\"ok\"}"),
            1);
}

}  // namespace
