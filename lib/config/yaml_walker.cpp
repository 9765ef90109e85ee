// yaml_walker: walk_map, the typed readers, and loading a text that must be one YAML document.
#include "config/yaml_walker.hpp"

#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <sstream>
#include <utility>
#include <vector>

#include "config/grammar.hpp"
#include "core/duration.hpp"

namespace mxp::config {
namespace {

constexpr std::size_t max_echoed_value = 64;  // longer values are cut in error messages
// Timers add durations to steady_clock::now() in nanoseconds; keep well clear of overflow.
constexpr milliseconds max_duration{std::chrono::hours{24 * 3650}};

// How many YAML documents a text holds, and where the second begins.
struct document_count {
  static constexpr int limit = 16;
  int count = 0;
  int second_line = 1;
};

class document_counter final : public YAML::EventHandler {
 public:
  explicit document_counter(document_count& out) : out_(out) {}
  void OnDocumentStart(const YAML::Mark&) override { ++out_.count; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& m) {
    if (out_.count == 2 && !second_seen_) {
      second_seen_ = true;
      out_.second_line = m.line < 0 ? 1 : m.line + 1;
    }
  }
  document_count& out_;
  bool second_seen_ = false;
};

document_count count_documents(const std::string& text) {
  document_count result;
  std::istringstream in{text};
  YAML::Parser parser{in};
  document_counter counter{result};
  while (result.count < document_count::limit && parser.HandleNextDocument(counter)) {
  }
  return result;
}

}  // namespace

std::string echoed(std::string_view value) {
  std::string out = "'";
  if (value.size() > max_echoed_value) {
    out.append(value.substr(0, max_echoed_value));
    out.append("...");
  } else {
    out.append(value);
  }
  out.push_back('\'');
  return out;
}

const char* kind_of(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "nothing";
  }
}

int line_of(const YAML::Node& node, int fallback) {
  if (!node.IsDefined()) return fallback;
  const auto mark = node.Mark();
  return mark.line < 0 ? fallback : mark.line + 1;
}

int line_of(const YAML::Mark& mark) {
  return mark.line < 0 ? 1 : mark.line + 1;
}

std::string join(const std::string& parent, std::string_view key) {
  if (parent.empty()) return std::string{key};
  std::string out = parent;
  out.push_back('.');
  out.append(key);
  return out;
}

std::optional<YAML::Node> load_single_document(const std::string& text, diagnostics& diag) {
  YAML::Node root;
  document_count documents;
  try {
    root = YAML::Load(text);
    documents = count_documents(text);
  } catch (const YAML::ParserException& e) {
    diag.error_text(line_of(e.mark), "syntax error: " + e.msg);
    return std::nullopt;
  }
  if (documents.count > 1)
    diag.error("", documents.second_line,
               "expected a single YAML document, found " + (documents.count >= document_count::limit
                                                                ? std::string{"more than one"}
                                                                : std::to_string(documents.count)));
  return root;
}

namespace {

// "clients[0].allow" -> "clients[].allow": one path for every entry of a list.
std::string key_pattern(std::string_view path) {
  std::string out;
  for (std::size_t i = 0; i < path.size(); ++i) {
    out.push_back(path[i]);
    if (path[i] != '[') continue;
    while (i + 1 < path.size() && path[i + 1] >= '0' && path[i + 1] <= '9') ++i;
  }
  return out;
}

}  // namespace

void yaml_walker::record(const field& where, std::initializer_list<key_rule> rules) {
  const std::string parent = key_pattern(where.path);
  for (const auto& r : rules) known_->insert(join(parent, r.key));
  const YAML::Node& node = where.value;
  for (const auto& r : rules) {
    if (node.IsMap() && node[std::string{r.key}].IsDefined()) continue;  // walked below
    r.handle({join(where.path, r.key), where.line, YAML::Node{YAML::NodeType::Map}});
  }
}

void yaml_walker::walk_map(const field& where, std::initializer_list<key_rule> rules) {
  if (known_) record(where, rules);
  const YAML::Node& node = where.value;
  if (node.IsDefined() && !node.IsNull() && !node.IsMap()) {
    error(where, std::string{"expected a map, got "} + kind_of(node));
    return;
  }
  std::vector<std::pair<std::string, int>> first_line;  // keys seen so far, and their lines
  if (node.IsDefined() && node.IsMap()) {
    for (const auto& kv : node) {
      const YAML::Node key_node = kv.first;
      const YAML::Node value = kv.second;
      const int line = line_of(key_node, where.line);
      if (!key_node.IsScalar()) {
        error({join(where.path, "?"), line, value}, "keys must be plain strings");
        continue;
      }
      const std::string key = key_node.Scalar();
      const field f{join(where.path, key), line, value};
      const auto rule =
          std::find_if(rules.begin(), rules.end(), [&](const key_rule& r) { return r.key == key; });
      if (rule == rules.end()) {
        // yaml-cpp 0.7 does not implement merge keys; say so rather than "unknown key".
        error(f, key == "<<" ? "merge keys ('<<') are not supported" : "unknown key");
        continue;
      }
      const auto dup = std::find_if(first_line.begin(), first_line.end(),
                                    [&](const auto& p) { return p.first == key; });
      if (dup != first_line.end()) {
        error(f, "duplicate key (first set on line " + std::to_string(dup->second) + ")");
        continue;
      }
      first_line.emplace_back(key, line);
      if (!value.IsDefined() || value.IsNull()) {
        if (rule->required) error(f, "a value is required");
        continue;
      }
      rule->handle(f);
    }
  }
  for (const auto& r : rules) {
    const auto seen = std::find_if(first_line.begin(), first_line.end(),
                                   [&](const auto& p) { return p.first == r.key; });
    if (r.required && seen == first_line.end())
      error({join(where.path, r.key), where.line, {}}, "required key is missing");
  }
}

bool yaml_walker::expect_scalar(const field& f, std::string_view expected) {
  if (f.value.IsScalar()) return true;
  error(f, "expected " + std::string{expected} + ", got " + kind_of(f.value));
  return false;
}

std::optional<std::string> yaml_walker::get_string(const field& f) {
  if (!expect_scalar(f, "a string")) return std::nullopt;
  return f.value.Scalar();
}

std::optional<std::string> yaml_walker::get_nonempty_string(const field& f) {
  auto s = get_string(f);
  if (s && s->empty()) {
    error(f, "must not be empty");
    return std::nullopt;
  }
  return s;
}

std::optional<std::uint64_t> yaml_walker::get_integer(const field& f, std::uint64_t min,
                                                      std::uint64_t max) {
  std::string expected;
  if (max == std::numeric_limits<std::uint64_t>::max() && min == 1)
    expected = "a positive integer";
  else if (max == std::numeric_limits<std::uint64_t>::max())
    expected = "an integer >= " + std::to_string(min);
  else
    expected = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  if (!expect_scalar(f, expected)) return std::nullopt;
  const std::string& text = f.value.Scalar();
  const auto v = parse_decimal(text);
  if (!v || *v < min || *v > max) {
    error(f, "expected " + expected + ", got " + echoed(text));
    return std::nullopt;
  }
  return v;
}

void yaml_walker::read_duration(const field& f, milliseconds& out) {
  static constexpr std::string_view expected = "a duration such as 250ms, 30s, 5m, 24h or 7d";
  if (!expect_scalar(f, expected)) return;
  const std::string& text = f.value.Scalar();
  const auto d = parse_duration(text);
  if (!d) {
    error(f, "expected " + std::string{expected} + ", got " + echoed(text));
  } else if (d->count() == 0) {
    error(f, "must be greater than 0");
  } else if (*d > max_duration) {
    error(f, "must be at most " + format_duration(max_duration));
  } else {
    out = *d;
  }
}

void yaml_walker::read_bool(const field& f, bool& out) {
  static constexpr std::string_view expected = "a boolean (true or false)";
  if (!expect_scalar(f, expected)) return;
  bool b = false;
  if (!YAML::convert<bool>::decode(f.value, b)) {
    error(f, "expected " + std::string{expected} + ", got " + echoed(f.value.Scalar()));
    return;
  }
  out = b;
}

void yaml_walker::read_string(const field& f, std::string& out) {
  if (auto s = get_string(f)) out = std::move(*s);
}

void yaml_walker::read_string_list(const field& f, std::vector<std::string>& out) {
  if (f.value.IsScalar()) {  // a single audience may be written without brackets
    if (auto s = get_nonempty_string(f)) out.push_back(std::move(*s));
    return;
  }
  if (!f.value.IsSequence()) {
    error(f, std::string{"expected a list of strings, got "} + kind_of(f.value));
    return;
  }
  for (std::size_t i = 0; i < f.value.size(); ++i) {
    const field item{f.path + "[" + std::to_string(i) + "]", line_of(f.value[i], f.line),
                     f.value[i]};
    if (auto s = get_nonempty_string(item)) out.push_back(std::move(*s));
  }
}

}  // namespace mxp::config
