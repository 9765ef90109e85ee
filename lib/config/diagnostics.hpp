// diagnostics: the errors and warnings of one config load, each "FILE:LINE: KEY.PATH: message".
// Errors come out sorted by line; within a line, in the order the walk met them, even when the
// loading step (secret files, lookups) found them after the walk was over.
#pragma once

#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mxp::config {

// Where a value was written (its dotted key path and line) and its place in the walk, so that a
// problem found later by the loading step sorts where the walk would have reported it.
struct source_location {
  std::string path;  // "" for the top level
  int line = 1;
  int order = 0;
};

// Sorts after everything else on its line: checks made once the whole file is known.
inline constexpr int after_everything = std::numeric_limits<int>::max();

class diagnostics {
 public:
  explicit diagnostics(std::string source) : source_(std::move(source)) {}

  const std::string& source() const noexcept { return source_; }

  // A place in the walk for `path` at `line`: what is reported there later sorts as if now.
  source_location reserve(std::string path, int line) { return {std::move(path), line, next_++}; }

  // "FILE:LINE: PATH: message" ("(top level)" for an empty path), in walk order.
  void error(const std::string& path, int line, std::string_view message);
  // The same at a reserved place.
  void error(const source_location& at, std::string_view message);
  // "FILE:LINE: text", for problems that are not about one key (YAML syntax).
  void error_text(int line, std::string_view text);
  // "FILE:LINE: PATH: message"; warnings keep the order they are given in.
  void warning(const source_location& at, std::string_view message);

  // "FILE:LINE: PATH", how a setting is named in messages that others print.
  std::string name(const source_location& at) const;

  bool has_errors() const noexcept { return !errors_.empty(); }
  // The errors sorted by line (then walk order), and the warnings; both left empty.
  std::vector<std::string> take_errors();
  std::vector<std::string> take_warnings() { return std::move(warnings_); }

 private:
  struct entry {
    int line;
    int order;
    std::string text;
  };
  std::string prefix(int line) const;

  std::string source_;
  int next_ = 0;
  std::vector<entry> errors_;
  std::vector<std::string> warnings_;
};

}  // namespace mxp::config
