// registry: a small Prometheus metrics registry (counters, gauges, histograms with
// labels) and its text exposition format (version 0.0.4). Built for one thread: the
// daemon's io_context. Hot paths keep references to pre-resolved series and pay one
// plain integer increment; label lookups happen once, when a series is first used.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace mxp::metrics {

using label_values = std::vector<std::string>;

class counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { value_ += n; }
  std::uint64_t value() const noexcept { return value_; }

 private:
  std::uint64_t value_ = 0;
};

class gauge {
 public:
  void set(double v) noexcept { value_ = v; }
  void add(double v) noexcept { value_ += v; }
  double value() const noexcept { return value_; }

 private:
  double value_ = 0;
};

class histogram {
 public:
  // `bounds`: the upper bounds of the buckets, strictly increasing, without +Inf.
  explicit histogram(const std::vector<double>& bounds)
      : bounds_(&bounds), counts_(bounds.size() + 1, 0) {}
  void observe(double v) noexcept;
  std::uint64_t count() const noexcept { return count_; }
  double sum() const noexcept { return sum_; }
  // Non-cumulative count of bucket i (i == bounds().size(): above the last bound).
  std::uint64_t bucket(std::size_t i) const noexcept { return counts_[i]; }
  const std::vector<double>& bounds() const noexcept { return *bounds_; }

 private:
  const std::vector<double>* bounds_;
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

enum class metric_type { counter, gauge, histogram };

class family_base {
 public:
  family_base(std::string name, std::string help, std::vector<std::string> label_names,
              metric_type type);
  virtual ~family_base() = default;
  family_base(const family_base&) = delete;
  family_base& operator=(const family_base&) = delete;

  const std::string& name() const noexcept { return name_; }
  metric_type type() const noexcept { return type_; }
  // Appends "# HELP", "# TYPE" and one line per series (several for a histogram).
  virtual void write(std::string& out) const = 0;

 protected:
  void check_labels(const label_values& values) const;
  void write_header(std::string& out) const;
  // name{labels[,extra]} with escaped label values.
  void write_series_name(std::string& out, std::string_view suffix, const label_values& values,
                         std::string_view extra_label = {},
                         std::string_view extra_value = {}) const;

  std::string name_, help_;
  std::vector<std::string> label_names_;
  metric_type type_;
};

template <typename Metric>
class family final : public family_base {
 public:
  using family_base::family_base;
  // The series for these label values, created on first use; the reference stays valid.
  Metric& with(const label_values& values) {
    auto it = children_.find(values);
    if (it != children_.end()) return *it->second;
    check_labels(values);
    return *children_.emplace(values, make()).first->second;
  }
  void remove(const label_values& values) { children_.erase(values); }
  void clear() { children_.clear(); }
  // Calls f(label values, metric) for every series.
  template <typename F>
  void for_each(F&& f) const {
    for (const auto& [labels, metric] : children_) f(labels, *metric);
  }
  void write(std::string& out) const override;

  std::vector<double> bounds;  // histograms only

 private:
  std::unique_ptr<Metric> make() {
    if constexpr (std::is_same_v<Metric, histogram>)
      return std::make_unique<histogram>(bounds);
    else
      return std::make_unique<Metric>();
  }
  std::map<label_values, std::unique_ptr<Metric>> children_;
};

template <>
void family<counter>::write(std::string& out) const;
template <>
void family<gauge>::write(std::string& out) const;
template <>
void family<histogram>::write(std::string& out) const;

class registry {
 public:
  // Names must be valid Prometheus names and unique; throws std::invalid_argument otherwise.
  family<counter>& add_counter(std::string name, std::string help,
                               std::vector<std::string> label_names = {});
  family<gauge>& add_gauge(std::string name, std::string help,
                           std::vector<std::string> label_names = {});
  family<histogram>& add_histogram(std::string name, std::string help,
                                   std::vector<std::string> label_names,
                                   std::vector<double> bounds);
  // Runs before every exposition, to bring gauges up to date from the state they mirror.
  void add_collector(std::function<void()> collect) { collectors_.push_back(std::move(collect)); }

  // The text exposition format, families in registration order.
  void expose(std::string& out) const;
  std::string expose() const {
    std::string out;
    expose(out);
    return out;
  }
  static constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

 private:
  void check_name(const std::string& name) const;
  std::vector<std::unique_ptr<family_base>> families_;
  std::vector<std::function<void()>> collectors_;
};

// Shared helpers, exposed for tests.
bool valid_metric_name(std::string_view name) noexcept;
bool valid_label_name(std::string_view name) noexcept;
void append_escaped_label_value(std::string& out, std::string_view value);
void append_number(std::string& out, double v);

// Buckets from 5 ms to 30 s, for request and login latencies in seconds.
std::vector<double> latency_buckets();

}  // namespace mxp::metrics
