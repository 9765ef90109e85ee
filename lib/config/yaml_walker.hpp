// yaml_walker: reads a YAML tree key by key into typed values, reporting every problem as
// "FILE:LINE: KEY.PATH: message" through `diagnostics`. Unknown and duplicate keys are errors.
// It does no I/O; the section parsers (listen, homeservers, ...) are built on it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "config/diagnostics.hpp"

namespace mxp::config {

using std::chrono::milliseconds;

// One key of a YAML map being looked at: its dotted path, the line of the key, its value.
struct field {
  std::string path;
  int line = 1;
  YAML::Node value;
};

struct key_rule {
  std::string_view key;
  bool required;
  std::function<void(const field&)> handle;
};

// 'value' as echoed in messages, cut after 64 characters.
std::string echoed(std::string_view value);
// "a map", "a list", "a scalar" or "nothing".
const char* kind_of(const YAML::Node& node);
// The 1-based line of `node`, or `fallback` when it has none.
int line_of(const YAML::Node& node, int fallback);
int line_of(const YAML::Mark& mark);
// "parent.key" (just "key" at the top level).
std::string join(const std::string& parent, std::string_view key);

// Parses `text`, which must hold exactly one YAML document; on failure reports why and returns
// nullopt. (Documents are counted with the event parser and a cap, not YAML::LoadAll: yaml-cpp
// 0.7's LoadAll loops forever on inputs like ",", jbeder/yaml-cpp#1040.)
std::optional<YAML::Node> load_single_document(const std::string& text, diagnostics& diag);

class yaml_walker {
 public:
  explicit yaml_walker(diagnostics& diag) : diag_(diag) {}
  // Discovery mode (config::known_keys): every walk_map records the dotted path of each key its
  // rules accept ("clients[0].name" as "clients[].name"), and runs the rules of absent keys on an
  // empty map, so that nested sections are walked too. The loaded values are meaningless then.
  yaml_walker(diagnostics& diag, std::set<std::string>& known) : diag_(diag), known_(&known) {}

  diagnostics& diag() noexcept { return diag_; }
  void error(const field& f, std::string_view message) { diag_.error(f.path, f.line, message); }
  // A place in the walk for `f`, for what the loading step finds out about it later.
  source_location reserve(const field& f) { return diag_.reserve(f.path, f.line); }

  // Visits the entries of a map in document order. Unknown, duplicate and non-string keys are
  // errors; a key whose value is null counts as absent (its default applies) unless required.
  // A null `where.value` is an empty map. The rules are the one list of the keys a section
  // accepts: known_keys() reads them from here.
  void walk_map(const field& where, std::initializer_list<key_rule> rules);

  // Typed readers: each reports its own error and returns nullopt (or leaves `out`) on failure.
  bool expect_scalar(const field& f, std::string_view expected);
  std::optional<std::string> get_string(const field& f);
  std::optional<std::string> get_nonempty_string(const field& f);
  std::optional<std::uint64_t> get_integer(const field& f, std::uint64_t min, std::uint64_t max);
  void read_duration(const field& f, milliseconds& out);
  void read_bool(const field& f, bool& out);
  void read_string(const field& f, std::string& out);
  template <typename T>
  void read_integer(const field& f, T& out, std::uint64_t min = 1,
                    std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) {
    max = std::min<std::uint64_t>(max, std::numeric_limits<T>::max());
    if (auto v = get_integer(f, min, max)) out = static_cast<T>(*v);
  }
  // A list of non-empty strings; a single string may be written without brackets.
  void read_string_list(const field& f, std::vector<std::string>& out);

 private:
  void record(const field& where, std::initializer_list<key_rule> rules);

  diagnostics& diag_;
  std::set<std::string>* known_ = nullptr;
};

}  // namespace mxp::config
