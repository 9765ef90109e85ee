// registry: series storage and the Prometheus text exposition format.
#include "metrics/registry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace mxp::metrics {

namespace {

bool name_char(char c, bool first, bool colon_ok) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon_ok && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

bool valid_metric_name(std::string_view name) noexcept {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, true)) return false;
  return true;
}

bool valid_label_name(std::string_view name) noexcept {
  if (name.empty() || name.starts_with("__")) return false;
  for (std::size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, false)) return false;
  return true;
}

void append_escaped_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
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

void append_number(std::string& out, double v) {
  if (std::isnan(v)) return void(out += "NaN");
  if (std::isinf(v)) return void(out += v > 0 ? "+Inf" : "-Inf");
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  out.append(buf, r.ptr);
}

std::vector<double> latency_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}

void histogram::observe(double v) noexcept {
  const auto& b = *bounds_;
  const auto i = static_cast<std::size_t>(std::lower_bound(b.begin(), b.end(), v) -
                                          b.begin());  // le: v <= bound
  ++counts_[i];
  ++count_;
  sum_ += v;
}

family_base::family_base(std::string name, std::string help, std::vector<std::string> label_names,
                         metric_type type)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      type_(type) {
  for (const auto& l : label_names_) {
    if (!valid_label_name(l))
      throw std::invalid_argument("invalid label name '" + l + "' for " + name_);
    if (type_ == metric_type::histogram && l == "le")
      throw std::invalid_argument("histogram " + name_ + " may not have a label named le");
  }
}

void family_base::check_labels(const label_values& values) const {
  if (values.size() != label_names_.size())
    throw std::invalid_argument(name_ + ": expected " + std::to_string(label_names_.size()) +
                                " label values, got " + std::to_string(values.size()));
}

void family_base::write_header(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  for (char c : help_) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  out += "\n# TYPE ";
  out += name_;
  out += type_ == metric_type::counter ? " counter\n"
         : type_ == metric_type::gauge ? " gauge\n"
                                       : " histogram\n";
}

void family_base::write_series_name(std::string& out, std::string_view suffix,
                                    const label_values& values, std::string_view extra_label,
                                    std::string_view extra_value) const {
  out += name_;
  out += suffix;
  if (values.empty() && extra_label.empty()) return;
  out += '{';
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += label_names_[i];
    out += "=\"";
    append_escaped_label_value(out, values[i]);
    out += '"';
  }
  if (!extra_label.empty()) {
    if (!values.empty()) out += ',';
    out += extra_label;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
}

template <>
void family<counter>::write(std::string& out) const {
  write_header(out);
  for (const auto& [values, c] : children_) {
    write_series_name(out, "", values);
    out += ' ';
    append_uint(out, c->value());
    out += '\n';
  }
}

template <>
void family<gauge>::write(std::string& out) const {
  write_header(out);
  for (const auto& [values, g] : children_) {
    write_series_name(out, "", values);
    out += ' ';
    append_number(out, g->value());
    out += '\n';
  }
}

template <>
void family<histogram>::write(std::string& out) const {
  write_header(out);
  for (const auto& [values, h] : children_) {
    std::uint64_t cumulative = 0;
    std::string le;
    for (std::size_t i = 0; i <= bounds.size(); ++i) {
      cumulative += h->bucket(i);
      le.clear();
      if (i < bounds.size())
        append_number(le, bounds[i]);
      else
        le = "+Inf";
      write_series_name(out, "_bucket", values, "le", le);
      out += ' ';
      append_uint(out, cumulative);
      out += '\n';
    }
    write_series_name(out, "_sum", values);
    out += ' ';
    append_number(out, h->sum());
    out += '\n';
    write_series_name(out, "_count", values);
    out += ' ';
    append_uint(out, h->count());
    out += '\n';
  }
}

void registry::check_name(const std::string& name) const {
  if (!valid_metric_name(name)) throw std::invalid_argument("invalid metric name '" + name + "'");
  for (const auto& f : families_)
    if (f->name() == name) throw std::invalid_argument("metric " + name + " registered twice");
}

family<counter>& registry::add_counter(std::string name, std::string help,
                                       std::vector<std::string> label_names) {
  check_name(name);
  auto f = std::make_unique<family<counter>>(std::move(name), std::move(help),
                                             std::move(label_names), metric_type::counter);
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

family<gauge>& registry::add_gauge(std::string name, std::string help,
                                   std::vector<std::string> label_names) {
  check_name(name);
  auto f = std::make_unique<family<gauge>>(std::move(name), std::move(help), std::move(label_names),
                                           metric_type::gauge);
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

family<histogram>& registry::add_histogram(std::string name, std::string help,
                                           std::vector<std::string> label_names,
                                           std::vector<double> bounds) {
  check_name(name);
  if (bounds.empty() || !std::is_sorted(bounds.begin(), bounds.end()) ||
      std::adjacent_find(bounds.begin(), bounds.end()) != bounds.end() ||
      std::any_of(bounds.begin(), bounds.end(), [](double b) { return !std::isfinite(b); }))
    throw std::invalid_argument("histogram " + name +
                                ": bounds must be finite and strictly increasing");
  auto f = std::make_unique<family<histogram>>(std::move(name), std::move(help),
                                               std::move(label_names), metric_type::histogram);
  f->bounds = std::move(bounds);
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

void registry::expose(std::string& out) const {
  for (const auto& collect : collectors_) collect();
  for (const auto& f : families_) f->write(out);
}

}  // namespace mxp::metrics
