// metrics_registry_test: the Prometheus text exposition the registry writes (HELP/TYPE
// lines, label escaping, cumulative histogram buckets with +Inf, _sum, _count) and the
// names and labels it refuses.
#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>

#include "metrics/registry.hpp"

using namespace mxp::metrics;

TEST(MetricsRegistry, CounterWithoutLabelsHasHelpTypeAndOneSample) {
  registry r;
  r.add_counter("mxp_things_total", "Things done.").with({}).inc(3);
  EXPECT_EQ(r.expose(),
            "# HELP mxp_things_total Things done.\n"
            "# TYPE mxp_things_total counter\n"
            "mxp_things_total 3\n");
}

TEST(MetricsRegistry, FamiliesComeInRegistrationOrderAndSeriesInLabelOrder) {
  registry r;
  auto& requests = r.add_counter("mxp_requests_total", "Requests.", {"endpoint", "status"});
  r.add_gauge("mxp_up", "Up.").with({}).set(1);
  requests.with({"token", "200"}).inc(2);
  requests.with({"status", "200"}).inc();
  requests.with({"token", "404"});  // created, never incremented: exposed as 0
  EXPECT_EQ(r.expose(),
            "# HELP mxp_requests_total Requests.\n"
            "# TYPE mxp_requests_total counter\n"
            "mxp_requests_total{endpoint=\"status\",status=\"200\"} 1\n"
            "mxp_requests_total{endpoint=\"token\",status=\"200\"} 2\n"
            "mxp_requests_total{endpoint=\"token\",status=\"404\"} 0\n"
            "# HELP mxp_up Up.\n"
            "# TYPE mxp_up gauge\n"
            "mxp_up 1\n");
}

TEST(MetricsRegistry, LabelValuesAreEscaped) {
  registry r;
  r.add_gauge("mxp_g", "G.", {"v"}).with({"a\\b\"c\nd"}).set(1);
  EXPECT_NE(r.expose().find("mxp_g{v=\"a\\\\b\\\"c\\nd\"} 1\n"), std::string::npos) << r.expose();
  std::string out;
  append_escaped_label_value(out, "plain @user:example.com");
  EXPECT_EQ(out, "plain @user:example.com");
}

TEST(MetricsRegistry, HelpTextEscapesBackslashAndNewlineOnly) {
  registry r;
  r.add_gauge("mxp_g", "a \"quoted\" \\ help\nline").with({}).set(0);
  EXPECT_EQ(r.expose().substr(0, r.expose().find('\n') + 1),
            "# HELP mxp_g a \"quoted\" \\\\ help\\nline\n");
}

TEST(MetricsRegistry, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  registry r;
  auto& h = r.add_histogram("mxp_latency_seconds", "Latency.", {"hs"}, {0.25, 0.5, 1});
  auto& s = h.with({"example.com"});
  for (double v : {0.125, 0.25, 0.375, 0.75, 2.5})
    s.observe(v);  // 0.25 lands in le="0.25": bounds are inclusive
  EXPECT_EQ(r.expose(),
            "# HELP mxp_latency_seconds Latency.\n"
            "# TYPE mxp_latency_seconds histogram\n"
            "mxp_latency_seconds_bucket{hs=\"example.com\",le=\"0.25\"} 2\n"
            "mxp_latency_seconds_bucket{hs=\"example.com\",le=\"0.5\"} 3\n"
            "mxp_latency_seconds_bucket{hs=\"example.com\",le=\"1\"} 4\n"
            "mxp_latency_seconds_bucket{hs=\"example.com\",le=\"+Inf\"} 5\n"
            "mxp_latency_seconds_sum{hs=\"example.com\"} 4\n"
            "mxp_latency_seconds_count{hs=\"example.com\"} 5\n");
}

TEST(MetricsRegistry, HistogramWithoutLabelsPutsLeAlone) {
  registry r;
  r.add_histogram("mxp_d_seconds", "D.", {}, {1}).with({}).observe(0.5);
  const auto text = r.expose();
  EXPECT_NE(text.find("mxp_d_seconds_bucket{le=\"1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("mxp_d_seconds_bucket{le=\"+Inf\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("mxp_d_seconds_sum 0.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("mxp_d_seconds_count 1\n"), std::string::npos) << text;
}

TEST(MetricsRegistry, EmptyFamilyStillHasHelpAndType) {
  registry r;
  r.add_counter("mxp_none_total", "None yet.", {"x"});
  EXPECT_EQ(r.expose(), "# HELP mxp_none_total None yet.\n# TYPE mxp_none_total counter\n");
}

TEST(MetricsRegistry, NumbersUseShortestFormAndPrometheusSpecialValues) {
  std::string out;
  for (double v :
       {0.0, 1.0, 0.005, 1e21, -2.5, std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    append_number(out, v);
    out += ' ';
  }
  EXPECT_EQ(out, "0 1 0.005 1e+21 -2.5 +Inf -Inf NaN ");
}

TEST(MetricsRegistry, CollectorsRunBeforeEveryExposition) {
  registry r;
  auto& g = r.add_gauge("mxp_sessions", "Sessions.").with({});
  int scrapes = 0;
  r.add_collector([&] { g.set(++scrapes); });
  EXPECT_NE(r.expose().find("mxp_sessions 1\n"), std::string::npos);
  EXPECT_NE(r.expose().find("mxp_sessions 2\n"), std::string::npos);
}

TEST(MetricsRegistry, SeriesReferencesStayValidAsSeriesAreAdded) {
  registry r;
  auto& f = r.add_counter("mxp_c_total", "C.", {"k"});
  auto& first = f.with({"a"});
  for (int i = 0; i < 1000; ++i) f.with({"k" + std::to_string(i)});
  first.inc();
  EXPECT_EQ(&f.with({"a"}), &first);
  EXPECT_EQ(first.value(), 1u);
}

TEST(MetricsRegistry, RefusesBadNamesDuplicatesAndBadBounds) {
  registry r;
  r.add_counter("mxp_ok_total", "Ok.");
  EXPECT_THROW(r.add_counter("mxp_ok_total", "Again."), std::invalid_argument);
  EXPECT_THROW(r.add_gauge("9lives", "Bad."), std::invalid_argument);
  EXPECT_THROW(r.add_gauge("has-dash", "Bad."), std::invalid_argument);
  EXPECT_THROW(r.add_gauge("mxp_g", "Bad label.", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(r.add_gauge("mxp_g2", "Bad label.", {"a:b"}), std::invalid_argument);
  EXPECT_THROW(r.add_histogram("mxp_h_seconds", "le is reserved.", {"le"}, {1}),
               std::invalid_argument);
  EXPECT_THROW(r.add_histogram("mxp_h2_seconds", "Unsorted.", {}, {1, 0.5}), std::invalid_argument);
  EXPECT_THROW(r.add_histogram("mxp_h3_seconds", "Duplicate.", {}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(r.add_histogram("mxp_h4_seconds", "Empty.", {}, {}), std::invalid_argument);
  EXPECT_THROW(r.add_histogram("mxp_h5_seconds", "Infinite.", {},
                               {1, std::numeric_limits<double>::infinity()}),
               std::invalid_argument);
  auto& f = r.add_counter("mxp_two_total", "Two labels.", {"a", "b"});
  EXPECT_THROW(f.with({"only one"}), std::invalid_argument);
  EXPECT_TRUE(valid_metric_name("mxp:recorded_rule"));
  EXPECT_FALSE(valid_label_name("a:b"));
}

TEST(MetricsRegistry, LatencyBucketsAreStrictlyIncreasingSeconds) {
  const auto b = latency_buckets();
  ASSERT_FALSE(b.empty());
  for (std::size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
  EXPECT_LE(b.front(), 0.01);
  EXPECT_GE(b.back(), 10);
}
