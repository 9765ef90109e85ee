// diagnostics: formatting "FILE:LINE: KEY: message" and ordering errors by line, then walk order.
#include "config/diagnostics.hpp"

#include <algorithm>

namespace mxp::config {

std::string diagnostics::prefix(int line) const {
  return source_ + ":" + std::to_string(line) + ": ";
}

void diagnostics::error(const std::string& path, int line, std::string_view message) {
  error(source_location{path, line, next_++}, message);
}

void diagnostics::error(const source_location& at, std::string_view message) {
  std::string text = prefix(at.line);
  text.append(at.path.empty() ? std::string_view{"(top level)"} : std::string_view{at.path});
  text.append(": ");
  text.append(message);
  errors_.push_back({at.line, at.order, std::move(text)});
}

void diagnostics::error_text(int line, std::string_view text) {
  errors_.push_back({line, next_++, prefix(line) + std::string{text}});
}

void diagnostics::warning(const source_location& at, std::string_view message) {
  warnings_.push_back(name(at) + ": " + std::string{message});
}

std::string diagnostics::name(const source_location& at) const {
  return prefix(at.line) + at.path;
}

std::vector<std::string> diagnostics::take_errors() {
  std::stable_sort(errors_.begin(), errors_.end(), [](const entry& a, const entry& b) {
    return a.line != b.line ? a.line < b.line : a.order < b.order;
  });
  std::vector<std::string> out;
  out.reserve(errors_.size());
  for (auto& e : errors_) out.push_back(std::move(e.text));
  errors_.clear();
  return out;
}

}  // namespace mxp::config
