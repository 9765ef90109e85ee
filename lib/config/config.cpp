// load_config_file / load_config_text: YAML -> daemon_config, with every problem reported as
// "FILE:LINE: KEY.PATH: message" and secret files read (never echoed).
#include "config/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <fmt/format.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string_view>
#include <utility>

#include "core/duration.hpp"
#include "core/server_name.hpp"

namespace mxp::config {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t max_secret_file_bytes = 64 * 1024;
constexpr std::size_t max_config_file_bytes = 4 * 1024 * 1024;
constexpr std::size_t max_echoed_value = 64;  // longer values are cut in error messages
// Timers add durations to steady_clock::now() in nanoseconds; keep well clear of overflow.
constexpr milliseconds max_duration{std::chrono::hours{24 * 3650}};
constexpr milliseconds max_shutdown_grace{std::chrono::seconds{25}};

// ---------------------------------------------------------------------------------------------
// Small, pure validators.

bool is_hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Digits only (no sign, no spaces); nullopt on anything else or overflow.
std::optional<std::uint64_t> parse_decimal(std::string_view s) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return value;
}

bool is_valid_port(std::string_view p) {
  if (p.size() > 5) return false;
  const auto v = parse_decimal(p);
  return v && *v >= 1 && *v <= 65535;
}

bool is_valid_device_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

// Checks a homeserver base URL like the HTTP client will parse it; returns the normalised URL
// (lower-case scheme, no trailing '/') or an error message.
std::optional<std::string> normalise_url(std::string_view url, std::string& why) {
  std::string out;
  std::string_view rest;
  auto starts_with_nocase = [&](std::string_view prefix) {
    return url.size() >= prefix.size() &&
           std::equal(prefix.begin(), prefix.end(), url.begin(), [](char a, char b) {
             return a == std::tolower(static_cast<unsigned char>(b));
           });
  };
  if (starts_with_nocase("https://")) {
    out = "https://", rest = url.substr(8);
  } else if (starts_with_nocase("http://")) {
    out = "http://", rest = url.substr(7);
  } else {
    why = "must start with http:// or https://";
    return std::nullopt;
  }
  for (char c : rest) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      why = "must not contain spaces or control characters";
      return std::nullopt;
    }
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    why = "must not contain a query ('?') or fragment ('#')";
    return std::nullopt;
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  const auto authority = rest.substr(0, rest.find('/'));
  if (authority.empty()) {
    why = "has no host name";
    return std::nullopt;
  }
  if (authority.find('@') != std::string_view::npos) {
    why = "must not contain user information ('@')";
    return std::nullopt;
  }
  std::string_view port;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos || close < 2) {
      why = "has a malformed [IPv6] host";
      return std::nullopt;
    }
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        why = "has a malformed [IPv6] host";
        return std::nullopt;
      }
      port = after.substr(1);
      if (port.empty()) port = "x";  // "[::1]:" is malformed
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    if (colon == 0) {
      why = "has no host name";
      return std::nullopt;
    }
    port = authority.substr(colon + 1);
    if (port.empty()) port = "x";
  }
  if (!port.empty() && !is_valid_port(port)) {
    why = "has an invalid port (expected 1-65535)";
    return std::nullopt;
  }
  out.append(rest);
  return out;
}

// Reads a small regular file whole. On failure returns nullopt and the reason (strerror text or
// a short phrase; never any of the contents). The buffer is wiped on every failure path.
std::optional<std::string> read_small_file(const fs::path& path, std::size_t limit,
                                           std::string& why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_on_exit{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    why = "not a regular file";
    return std::nullopt;
  }
  const std::string too_large = "file is larger than " + std::to_string(limit) + " bytes";
  if (st.st_size < 0 || static_cast<std::uintmax_t>(st.st_size) > limit) {
    why = too_large;
    return std::nullopt;
  }
  std::string buf(static_cast<std::size_t>(st.st_size) + 1, '\0');
  std::size_t used = 0;
  for (;;) {
    const auto n = ::read(fd, buf.data() + used, buf.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      why = std::strerror(errno);
      OPENSSL_cleanse(buf.data(), buf.size());
      return std::nullopt;
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
    if (used == buf.size()) {  // the file grew while we read it
      if (buf.size() > limit) {
        why = too_large;
        OPENSSL_cleanse(buf.data(), buf.size());
        return std::nullopt;
      }
      const auto old_size = buf.size();
      std::string bigger(std::min(old_size * 2, limit + 1), '\0');
      std::memcpy(bigger.data(), buf.data(), old_size);
      OPENSSL_cleanse(buf.data(), old_size);
      buf.swap(bigger);
    }
  }
  buf.resize(used);
  return buf;
}

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
    case YAML::NodeType::Null:
      return "nothing";
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

// ---------------------------------------------------------------------------------------------
// The loader: walks the YAML tree once, fills a daemon_config, collects errors.

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

// How many YAML documents a text holds, and where the second begins. Counted with the event
// parser and a cap, not YAML::LoadAll: yaml-cpp 0.7's LoadAll loops forever (allocating) on
// inputs like "," (jbeder/yaml-cpp#1040), which a typo in a config file must not do to us.
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

class loader {
 public:
  loader(std::string source, fs::path base_dir)
      : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  load_result run(const std::string& text) {
    daemon_config cfg;
    cfg.source_file = source_;
    try {
      YAML::Node root;
      document_count documents;
      try {
        root = YAML::Load(text);
        documents = count_documents(text);
      } catch (const YAML::ParserException& e) {
        errors_.push_back(
            {line_of_mark(e.mark), fmt_error(line_of_mark(e.mark), "syntax error: " + e.msg)});
        return finish(std::move(cfg));
      }
      if (documents.count > 1) {
        error({"", documents.second_line, {}},
              "expected a single YAML document, found " + (documents.count >= document_count::limit
                                                               ? std::string{"more than one"}
                                                               : std::to_string(documents.count)));
      }
      load_root(root, cfg);
    } catch (const YAML::Exception& e) {
      const int line = line_of_mark(e.mark);
      errors_.push_back({line, fmt_error(line, "error: " + e.msg)});
    } catch (const std::exception& e) {
      errors_.push_back({1, fmt_error(1, std::string{"error: "} + e.what())});
    }
    return finish(std::move(cfg));
  }

 private:
  struct located_error {
    int line;
    std::string text;
  };

  static int line_of_mark(const YAML::Mark& m) { return m.line < 0 ? 1 : m.line + 1; }

  std::string fmt_error(int line, std::string_view rest) const {
    std::string out = source_;
    out.push_back(':');
    out.append(std::to_string(line));
    out.append(": ");
    out.append(rest);
    return out;
  }

  void error(const field& f, std::string_view message) {
    std::string rest = f.path.empty() ? std::string{"(top level)"} : f.path;
    rest.append(": ");
    rest.append(message);
    errors_.push_back({f.line, fmt_error(f.line, rest)});
  }

  load_result finish(daemon_config cfg) {
    std::stable_sort(
        errors_.begin(), errors_.end(),
        [](const located_error& a, const located_error& b) { return a.line < b.line; });
    load_result result;
    for (auto& e : errors_) result.errors.push_back(std::move(e.text));
    result.warnings = std::move(warnings_);
    // Homeserver clients decide per login whether to ask for a refresh token.
    for (auto& [_, hs] : cfg.homeservers) hs.request_refresh_token = cfg.sessions.refresh_tokens;
    if (result.errors.empty()) result.config = std::move(cfg);
    return result;
  }

  static std::string join(const std::string& parent, std::string_view key) {
    if (parent.empty()) return std::string{key};
    std::string out = parent;
    out.push_back('.');
    out.append(key);
    return out;
  }

  fs::path resolve(const std::string& p) const {
    fs::path path{p};
    if (path.is_relative() && !base_dir_.empty()) path = base_dir_ / path;
    return path.lexically_normal();
  }

  // Visits the entries of a map in document order. Unknown, duplicate and non-string keys are
  // errors; a key whose value is null counts as absent (its default applies) unless required.
  // A null `where.value` is an empty map.
  void walk_map(const field& where, std::initializer_list<key_rule> rules) {
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
        const auto rule = std::find_if(rules.begin(), rules.end(),
                                       [&](const key_rule& r) { return r.key == key; });
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

  // --- typed readers: each reports its own error and returns nullopt on failure -------------

  bool expect_scalar(const field& f, std::string_view expected) {
    if (f.value.IsScalar()) return true;
    error(f, "expected " + std::string{expected} + ", got " + kind_of(f.value));
    return false;
  }

  std::optional<std::string> get_string(const field& f) {
    if (!expect_scalar(f, "a string")) return std::nullopt;
    return f.value.Scalar();
  }

  std::optional<std::string> get_nonempty_string(const field& f) {
    auto s = get_string(f);
    if (s && s->empty()) {
      error(f, "must not be empty");
      return std::nullopt;
    }
    return s;
  }

  std::optional<std::uint64_t> get_integer(const field& f, std::uint64_t min, std::uint64_t max) {
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

  template <typename T>
  void read_integer(const field& f, T& out, std::uint64_t min = 1,
                    std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) {
    max = std::min<std::uint64_t>(max, std::numeric_limits<T>::max());
    if (auto v = get_integer(f, min, max)) out = static_cast<T>(*v);
  }

  void read_duration(const field& f, milliseconds& out) {
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

  void read_bool(const field& f, bool& out) {
    static constexpr std::string_view expected = "a boolean (true or false)";
    if (!expect_scalar(f, expected)) return;
    bool b = false;
    if (!YAML::convert<bool>::decode(f.value, b)) {
      error(f, "expected " + std::string{expected} + ", got " + echoed(f.value.Scalar()));
      return;
    }
    out = b;
  }

  void read_string(const field& f, std::string& out) {
    if (auto s = get_string(f)) out = std::move(*s);
  }

  // --- sections ------------------------------------------------------------------------------

  void load_root(const YAML::Node& root, daemon_config& cfg) {
    walk_map(
        {"", 1, root},
        {
            {"listen", false, [&](const field& f) { load_listen(f, cfg.listen); }},
            {"homeservers", true, [&](const field& f) { load_homeservers(f, cfg.homeservers); }},
            {"sessions", false, [&](const field& f) { load_sessions(f, cfg.sessions); }},
            {"store", false, [&](const field& f) { load_store(f, cfg.store); }},
            {"clients", false, [&](const field& f) { load_clients(f, cfg); }},
            {"log", false, [&](const field& f) { load_log(f, cfg.log); }},
            {"shutdown_grace", false,
             [&](const field& f) {
               read_duration(f, cfg.shutdown_grace);
               if (cfg.shutdown_grace > max_shutdown_grace)
                 error(f, "must be at most " + format_duration(max_shutdown_grace) +
                              " (below the unit's TimeoutStopSec=30s)");
             }},
        });
    // No anonymous access over TCP: the listener is useless (and refused) without a client that has
    // a key.
    if (tcp_field_ && (!cfg.clients || std::none_of(cfg.clients->begin(), cfg.clients->end(),
                                                    [](const client_config& c) {
                                                      return c.api_key_sha256.has_value();
                                                    })))
      error(*tcp_field_,
            "no client can use the TCP listener: give a clients: entry api_key_file or "
            "api_key_sha256");
  }

  void load_listen(const field& where, listen_config& l) {
    walk_map(
        where,
        {
            {"unix_socket", false,
             [&](const field& f) {
               if (auto s = get_nonempty_string(f)) l.unix_socket = std::move(*s);
             }},
            {"socket_mode", false, [&](const field& f) { read_socket_mode(f, l); }},
            {"socket_owner", false,
             [&](const field& f) { l.socket_owner = read_account(f, false); }},
            {"socket_group", false,
             [&](const field& f) { l.socket_group = read_account(f, true); }},
            {"request_timeout", false,
             [&](const field& f) { read_duration(f, l.request_timeout); }},
            {"idle_timeout", false, [&](const field& f) { read_duration(f, l.idle_timeout); }},
            {"header_timeout", false,
             [&](const field& f) { read_duration(f, l.header_timeout.emplace()); }},
            {"body_timeout", false,
             [&](const field& f) { read_duration(f, l.body_timeout.emplace()); }},
            {"write_timeout", false, [&](const field& f) { read_duration(f, l.write_timeout); }},
            {"max_header_bytes", false,
             [&](const field& f) { read_integer(f, l.max_header_bytes); }},
            {"max_body_bytes", false, [&](const field& f) { read_integer(f, l.max_body_bytes); }},
            {"max_connections", false, [&](const field& f) { read_integer(f, l.max_connections); }},
            {"tcp", false, [&](const field& f) { read_tcp_listen(f, l); }},
        });
  }

  // `listen.tcp`: "127.0.0.1:PORT" (any address in 127.0.0.0/8) or "[::1]:PORT". Nothing but
  // loopback: the listener is for bridges in containers on this host, not for the network.
  void read_tcp_listen(const field& f, listen_config& l) {
    auto s = get_nonempty_string(f);
    if (!s) return;
    const std::string_view text = *s;
    std::string_view host, port;
    if (text.starts_with('[')) {
      const auto close = text.find(']');
      if (close != std::string_view::npos && close + 1 < text.size() && text[close + 1] == ':')
        host = text.substr(1, close - 1), port = text.substr(close + 2);
    } else if (const auto colon = text.rfind(':'); colon != std::string_view::npos) {
      host = text.substr(0, colon), port = text.substr(colon + 1);
      if (host.find(':') != std::string_view::npos) {
        error(f, "write an IPv6 address in brackets, like [::1]:PORT; got " + echoed(text));
        return;
      }
    }
    if (host.empty()) {
      error(f, "expected ADDRESS:PORT such as 127.0.0.1:8765 or [::1]:8765, got " + echoed(text));
      return;
    }
    if (!is_valid_port(port)) {
      error(f, "invalid port " + echoed(port) + " (1-65535)");
      return;
    }
    const std::string address{host};
    in_addr v4{};
    in6_addr v6{};
    bool loopback = false;
    if (::inet_pton(AF_INET, address.c_str(), &v4) == 1)
      loopback = (ntohl(v4.s_addr) >> 24) == 127;
    else if (::inet_pton(AF_INET6, address.c_str(), &v6) == 1)
      loopback = IN6_IS_ADDR_LOOPBACK(&v6);
    else {
      error(f, echoed(address) +
                   " is not a numeric IP address; use a loopback address (127.0.0.0/8 or [::1])");
      return;
    }
    if (!loopback) {
      error(f, echoed(address) +
                   " is not a loopback address; the TCP listener only takes 127.0.0.0/8 or [::1]");
      return;
    }
    l.tcp = tcp_listen_config{address, static_cast<std::uint16_t>(*parse_decimal(port))};
    tcp_field_ = f;
  }

  // A user (or group) given by name or number; names are resolved now, through NSS.
  std::optional<std::uint32_t> read_account(const field& f, bool group) {
    auto s = get_nonempty_string(f);
    if (!s) return std::nullopt;
    if (auto n = parse_decimal(*s); n && *n < std::numeric_limits<std::uint32_t>::max())
      return static_cast<std::uint32_t>(*n);
    if (auto id = group ? lookup_group(*s) : lookup_user(*s)) return id;
    error(f, std::string{group ? "unknown group " : "unknown user "} + echoed(*s));
    return std::nullopt;
  }

  static std::optional<std::uint32_t> lookup_user(const std::string& name) {
    std::vector<char> buf(16 * 1024);
    passwd pw{};
    passwd* found = nullptr;
    if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found)
      return std::nullopt;
    return found->pw_uid;
  }

  static std::optional<std::uint32_t> lookup_group(const std::string& name) {
    std::vector<char> buf(64 * 1024);
    group gr{};
    group* found = nullptr;
    if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || !found)
      return std::nullopt;
    return found->gr_gid;
  }

  // clients: [{name, uid | gid | user | group, allow: [globs]}]
  void load_clients(const field& where, daemon_config& cfg) {
    auto& clients = cfg.clients.emplace();
    const YAML::Node& node = where.value;
    if (!node.IsSequence()) {
      error(where, std::string{"expected a list of clients, got "} + kind_of(node));
      return;
    }
    std::size_t index = 0;
    for (const auto& item : node) {
      const field f{where.path + "[" + std::to_string(index++) + "]", line_of(item, where.line),
                    item};
      client_config c;
      int identities = 0, keys = 0;
      walk_map(f, {
                      {"name", true,
                       [&](const field& k) {
                         if (auto s = get_nonempty_string(k)) c.name = std::move(*s);
                       }},
                      {"uid", false,
                       [&](const field& k) {
                         ++identities;
                         if (auto v = get_integer(k, 0, 4294967294ULL))
                           c.uid = static_cast<std::uint32_t>(*v);
                       }},
                      {"gid", false,
                       [&](const field& k) {
                         ++identities;
                         if (auto v = get_integer(k, 0, 4294967294ULL))
                           c.gid = static_cast<std::uint32_t>(*v);
                       }},
                      {"user", false,
                       [&](const field& k) {
                         ++identities;
                         auto s = get_nonempty_string(k);
                         if (!s) return;
                         if (auto id = lookup_user(*s))
                           c.uid = id;
                         else
                           error(k, "unknown user " + echoed(*s));
                       }},
                      {"group", false,
                       [&](const field& k) {
                         ++identities;
                         auto s = get_nonempty_string(k);
                         if (!s) return;
                         if (auto id = lookup_group(*s))
                           c.gid = id;
                         else
                           error(k, "unknown group " + echoed(*s));
                       }},
                      {"allow", true, [&](const field& k) { read_allow(k, c.allow); }},
                      {"api_key_file", false,
                       [&](const field& k) {
                         ++keys;
                         read_api_key_file(k, c);
                       }},
                      {"api_key_sha256", false,
                       [&](const field& k) {
                         ++keys;
                         read_api_key_sha256(k, c);
                       }},
                  });
      if (f.value.IsMap() && identities > 1)
        error(f, "at most one of uid, gid, user or group may be given");
      if (f.value.IsMap() && keys > 1)
        error(f, "api_key_file and api_key_sha256 exclude each other");
      if (f.value.IsMap() && identities == 0 && keys == 0)
        error(f,
              "one of uid, gid, user or group (Unix socket peers) or of api_key_file or "
              "api_key_sha256 "
              "(TCP clients) is required");
      if (!c.name.empty() && std::any_of(clients.begin(), clients.end(),
                                         [&](const client_config& o) { return o.name == c.name; }))
        error(f, "duplicate client name " + echoed(c.name));
      if (c.api_key_sha256)
        if (const auto same = std::find_if(
                clients.begin(), clients.end(),
                [&](const client_config& o) { return o.api_key_sha256 == c.api_key_sha256; });
            same != clients.end())
          error(f, "has the same API key as client " + echoed(same->name) +
                       " (each client needs its own)");
      clients.push_back(std::move(c));
    }
  }

  // `api_key_file`: the key is read like every other secret and only its SHA-256 is kept.
  void read_api_key_file(const field& f, client_config& c) {
    auto key = read_secret(f, c.api_key_file, true, "API key file");
    if (!key) return;
    const std::string& k = key->reveal();
    if (!std::all_of(k.begin(), k.end(), [](char ch) { return ch > ' ' && ch < 127; })) {
      error(f,
            "API key file '" + c.api_key_file +
                "' must hold one line of printable ASCII without spaces (it is sent in a header)");
      return;
    }
    if (k.size() < 16)
      warnings_.push_back(fmt_error(
          f.line, f.path + ": the API key in '" + c.api_key_file +
                      "' is shorter than 16 characters; `openssl rand -hex 32` makes a good one"));
    std::array<unsigned char, 32> digest{};
    ::SHA256(reinterpret_cast<const unsigned char*>(k.data()), k.size(), digest.data());
    c.api_key_sha256 = digest;
  }

  // `api_key_sha256`: 64 hex digits, as `printf %s KEY | sha256sum` prints them.
  void read_api_key_sha256(const field& f, client_config& c) {
    auto s = get_nonempty_string(f);
    if (!s) return;
    if (s->size() != 64 || !std::all_of(s->begin(), s->end(), is_hex_digit)) {
      error(f,
            "expected the SHA-256 of the key as 64 hexadecimal digits (printf %s KEY | sha256sum), "
            "got " +
                echoed(*s));
      return;
    }
    std::array<unsigned char, 32> digest{};
    for (std::size_t i = 0; i < digest.size(); ++i)
      std::from_chars(s->data() + 2 * i, s->data() + 2 * i + 2, digest[i], 16);
    c.api_key_sha256 = digest;
  }

  void read_allow(const field& f, std::vector<std::string>& out) {
    if (!f.value.IsSequence()) {
      error(f, std::string{"expected a list of user ID globs such as [\"@*:example.com\"], got "} +
                   kind_of(f.value));
      return;
    }
    if (f.value.size() == 0) error(f, "must list at least one user ID glob");
    std::size_t index = 0;
    for (const auto& item : f.value) {
      const field g{f.path + "[" + std::to_string(index++) + "]", line_of(item, f.line), item};
      auto s = get_nonempty_string(g);
      if (!s) continue;
      if (s->front() != '@' && s->front() != '*' && s->front() != '?')
        error(g, "a user ID glob starts with '@' (or a wildcard), got " + echoed(*s));
      else
        out.push_back(std::move(*s));
    }
  }

  // "0660", 0660 (YAML 1.1 octal, read as written), "660" and "0o660" all mean rw-rw----.
  void read_socket_mode(const field& f, listen_config& l) {
    static constexpr std::string_view expected = "an octal file mode such as \"0660\"";
    if (!expect_scalar(f, expected)) return;
    std::string_view text = f.value.Scalar();
    std::string_view digits = text;
    if (digits.starts_with("0o") || digits.starts_with("0O")) digits.remove_prefix(2);
    if (digits.empty() || digits.find_first_not_of("01234567") != std::string_view::npos) {
      error(f, "expected " + std::string{expected} + ", got " + echoed(text));
      return;
    }
    while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
    unsigned mode = 01000;  // anything longer than three octal digits is too large
    if (digits.size() <= 3) std::from_chars(digits.data(), digits.data() + digits.size(), mode, 8);
    if (mode > 0777) {
      error(f, "file mode " + echoed(text) + " is larger than 0777");
    } else {
      l.socket_mode = mode;
    }
  }

  void load_homeservers(const field& where, std::map<std::string, homeserver_config>& out) {
    const YAML::Node& node = where.value;
    if (!node.IsMap()) {
      error(where, std::string{"expected a map of server names to homeserver settings, got "} +
                       kind_of(node));
      return;
    }
    if (node.size() == 0) {
      error(where, "at least one homeserver is required");
      return;
    }
    for (const auto& kv : node) {
      const YAML::Node key_node = kv.first;
      const int line = line_of(key_node, where.line);
      if (!key_node.IsScalar()) {
        error({join(where.path, "?"), line, kv.second}, "server names must be plain strings");
        continue;
      }
      const std::string name = key_node.Scalar();
      const field f{join(where.path, name), line, kv.second};
      if (out.contains(name)) {
        error(f, "duplicate homeserver");
        continue;
      }
      // The same grammar as the user-ID parser (core/server_name.hpp), so that every name
      // accepted here can be asked for, and the other way round.
      if (!is_valid_server_name(name)) {
        error(f,
              "invalid server name (expected a host name, IPv4 address or [IPv6] address, "
              "optionally followed by :port)");
      } else if (name.size() > max_server_name_in_user_id) {
        error(f, fmt::format("server name too long: a user ID on it would exceed {} bytes",
                             max_user_id_bytes));
      }
      homeserver_config hs;
      hs.server_name = name;
      load_homeserver(f, hs);
      hs.fingerprint = YAML::Dump(kv.second);
      out.emplace(name, std::move(hs));
    }
  }

  void load_homeserver(const field& where, homeserver_config& hs) {
    walk_map(
        where,
        {
            {"url", false,
             [&](const field& f) {
               auto s = get_string(f);
               if (!s) return;
               std::string why;
               if (auto url = normalise_url(*s, why))
                 hs.url = std::move(*url);
               else
                 error(f, echoed(*s) + " " + why);
             }},
            {"ca_file", false, [&](const field& f) { read_ca_file(f, hs); }},
            {"login", true, [&](const field& f) { load_login(f, hs); }},
            {"device_id", false,
             [&](const field& f) {
               auto s = get_string(f);
               if (!s) return;
               if (is_valid_device_id(*s))
                 hs.device_id = std::move(*s);
               else
                 error(f, "expected 1 to 64 characters from A-Z a-z 0-9 _ . -, got " + echoed(*s));
             }},
            {"device_display_name", false,
             [&](const field& f) { read_string(f, hs.device_display_name); }},
            {"max_concurrent_logins", false,
             [&](const field& f) { read_integer(f, hs.max_concurrent_logins, 1, 1000); }},
            {"request_timeout", false,
             [&](const field& f) { read_duration(f, hs.request_timeout); }},
            {"connect_timeout", false,
             [&](const field& f) { read_duration(f, hs.connect_timeout); }},
            {"max_response_bytes", false,
             [&](const field& f) { read_integer(f, hs.max_response_bytes); }},
        });
  }

  void read_ca_file(const field& f, homeserver_config& hs) {
    auto s = get_nonempty_string(f);
    if (!s) return;
    const auto path = resolve(*s);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
      error(f, "cannot read '" + path.string() + "': " + std::strerror(errno));
      return;
    }
    struct stat st {};
    const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    ::close(fd);
    if (!regular) {
      error(f, "cannot read '" + path.string() + "': not a regular file");
      return;
    }
    hs.ca_file = path.string();
  }

  void load_login(const field& where, homeserver_config& hs) {
    const YAML::Node& node = where.value;
    if (!node.IsMap()) {
      error(where, std::string{"expected a map, got "} + kind_of(node));
      return;
    }
    // The method decides which other keys are valid, so look at it first.
    std::optional<field> method_field;
    for (const auto& kv : node) {
      if (kv.first.IsScalar() && kv.first.Scalar() == "method") {
        method_field = field{join(where.path, "method"), line_of(kv.first, where.line), kv.second};
        break;
      }
    }
    if (!method_field) {
      error({join(where.path, "method"), where.line, {}}, "required key is missing");
      return;
    }
    if (method_field->value.IsNull()) {
      error(*method_field, "a value is required");
      return;
    }
    const auto method = get_string(*method_field);
    if (!method) return;
    if (*method == "shared_secret") {
      load_shared_secret(where, hs);
    } else if (*method == "jwt") {
      load_jwt(where, hs);
    } else if (*method == "appservice") {
      load_appservice(where, hs);
    } else if (*method == "synapse_admin") {
      load_synapse_admin(where, hs);
    } else {
      error(*method_field, "unknown login method " + echoed(*method) +
                               " (expected shared_secret, jwt, appservice or synapse_admin)");
    }
  }

  void load_shared_secret(const field& where, homeserver_config& hs) {
    shared_secret_login login;
    walk_map(where,
             {
                 {"method", true, [](const field&) {}},
                 {"secret_file", true, [&](const field& f) { read_secret_file(f, login); }},
                 {"login_type", false,
                  [&](const field& f) {
                    auto s = get_string(f);
                    if (!s) return;
                    if (*s == "auto")
                      login.login_type = shared_secret_login_type::automatic;
                    else if (*s == "com.devture.shared_secret_auth")
                      login.login_type = shared_secret_login_type::devture;
                    else if (*s == "m.login.password")
                      login.login_type = shared_secret_login_type::password;
                    else
                      error(f,
                            "expected auto, com.devture.shared_secret_auth or m.login.password, "
                            "got " +
                                echoed(*s));
                  }},
             });
    hs.login = std::move(login);
  }

  void read_secret_file(const field& f, shared_secret_login& login) {
    if (auto secret = read_secret(f, login.secret_file, true, "secret file"))
      login.secret = std::move(*secret);
  }

  // Where a secret file named `p` lives: a bare name (no '/') that systemd passed as a
  // credential (LoadCredential=, $CREDENTIALS_DIRECTORY) is taken from there; anything else
  // is relative to the config's directory.
  fs::path resolve_secret(const std::string& p) const {
    if (const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
        creds && *creds && p.find('/') == std::string::npos) {
      const fs::path candidate = fs::path{creds} / p;
      std::error_code ec;
      if (fs::is_regular_file(candidate, ec)) return candidate;
    }
    return resolve(p);
  }

  // Reads a secret file named by `f` (see resolve_secret). With `strip_newline`, one trailing
  // "\n" or "\r\n" goes. Errors name the path, never contents; a file that others may read
  // loads with a warning.
  std::optional<secret_string> read_secret(const field& f, std::string& resolved,
                                           bool strip_newline, std::string_view noun = "file") {
    auto s = get_nonempty_string(f);
    if (!s) return std::nullopt;
    const auto path = resolve_secret(*s);
    resolved = path.string();
    std::string why;
    auto contents = read_small_file(path, max_secret_file_bytes, why);
    if (!contents) {
      error(f, "cannot read '" + resolved + "': " + why);
      return std::nullopt;
    }
    secret_string secret{std::move(*contents)};
    std::string_view v = secret.reveal();
    std::size_t keep = v.size();
    if (strip_newline && v.ends_with("\r\n"))
      keep -= 2;
    else if (strip_newline && v.ends_with('\n'))
      keep -= 1;
    if (keep != v.size()) secret = secret_string{std::string{v.substr(0, keep)}};
    if (secret.empty()) {
      error(f, std::string{noun} + " '" + resolved + "' is empty");
      return std::nullopt;
    }
    if (struct stat st{}; ::stat(resolved.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0)
      warnings_.push_back(fmt_error(
          f.line, f.path + ": secret file '" + resolved + "' is readable by others (mode " +
                      fmt::format("{:04o}", st.st_mode & 07777) + "); chmod o-r it"));
    return secret;
  }

  // --- method: jwt -----------------------------------------------------------------------

  static constexpr std::string_view jwt_algorithms[] = {"HS256", "HS384", "HS512", "RS256", "RS384",
                                                        "RS512", "PS256", "PS384", "PS512", "ES256",
                                                        "ES384", "ES512", "EdDSA"};

  void load_jwt(const field& where, homeserver_config& hs) {
    jwt_login login;
    std::optional<field> algorithm_f, secret_f, private_key_f, subject_claim_f;
    walk_map(
        where,
        {
            {"method", true, [](const field&) {}},
            {"flavor", false,
             [&](const field& f) {
               auto s = get_string(f);
               if (!s) return;
               if (*s == "synapse")
                 login.flavor = jwt_flavor::synapse;
               else if (*s == "famedly")
                 login.flavor = jwt_flavor::famedly;
               else
                 error(f, "unknown flavor " + echoed(*s) + " (expected synapse or famedly)");
             }},
            {"algorithm", true,
             [&](const field& f) {
               auto s = get_string(f);
               if (!s) return;
               if (std::find(std::begin(jwt_algorithms), std::end(jwt_algorithms), *s) ==
                   std::end(jwt_algorithms)) {
                 error(f, "unknown algorithm " + echoed(*s) +
                              " (expected HS256, HS384, HS512, RS256, RS384, RS512, PS256, "
                              "PS384, PS512, ES256, ES384, ES512 or EdDSA)");
                 return;
               }
               login.algorithm = std::move(*s);
               algorithm_f = f;
             }},
            {"secret_file", false, [&](const field& f) { secret_f = f; }},
            {"private_key_file", false, [&](const field& f) { private_key_f = f; }},
            {"subject_claim", false,
             [&](const field& f) {
               if (auto s = get_nonempty_string(f)) {
                 login.subject_claim = std::move(*s);
                 subject_claim_f = f;
               }
             }},
            {"issuer", false,
             [&](const field& f) {
               if (auto s = get_nonempty_string(f)) login.issuer = std::move(*s);
             }},
            {"audiences", false, [&](const field& f) { read_string_list(f, login.audiences); }},
            {"token_lifetime", false,
             [&](const field& f) {
               read_duration(f, login.token_lifetime);
               if (login.token_lifetime < std::chrono::seconds{1}) {
                 error(f, "must be at least 1s (JWT times are whole seconds)");
                 login.token_lifetime = std::chrono::seconds{1};
               }
             }},
        });
    if (subject_claim_f && login.flavor == jwt_flavor::famedly && login.subject_claim != "sub")
      error(*subject_claim_f, "flavor famedly always reads the subject from 'sub'");
    if (algorithm_f) {
      const bool hmac = login.algorithm.starts_with("HS");
      const auto& wanted = hmac ? secret_f : private_key_f;
      const auto& other = hmac ? private_key_f : secret_f;
      const std::string wanted_key = hmac ? "secret_file" : "private_key_file";
      if (other) {
        error(*other, login.algorithm + " takes its key from " + wanted_key + ", not from " +
                          std::string{hmac ? "private_key_file" : "secret_file"});
      } else if (!wanted) {
        error({join(where.path, wanted_key), algorithm_f->line, {}},
              "required key is missing (algorithm " + login.algorithm + ")");
      } else if (auto key = read_secret(*wanted, login.key_file, hmac)) {
        const bool pem = key->reveal().find("-----BEGIN") != std::string::npos;
        if (hmac && pem) {
          error(*wanted, login.algorithm + " needs a shared secret, but '" + login.key_file +
                             "' holds a PEM key or certificate");
        } else if (!hmac && !pem) {
          error(*wanted, login.algorithm + " needs a PEM private key, but '" + login.key_file +
                             "' holds no PEM text");
        } else {
          login.key = std::move(*key);
          login.key_origin = fmt_error(wanted->line, wanted->path);
        }
      }
    }
    hs.login = std::move(login);
  }

  void read_string_list(const field& f, std::vector<std::string>& out) {
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

  // --- method: appservice ----------------------------------------------------------------

  void load_appservice(const field& where, homeserver_config& hs) {
    appservice_login login;
    std::optional<field> token_f, registration_f;
    walk_map(where, {
                        {"method", true, [](const field&) {}},
                        {"as_token_file", false, [&](const field& f) { token_f = f; }},
                        {"registration_file", false, [&](const field& f) { registration_f = f; }},
                    });
    if (token_f && registration_f) {
      error(*registration_f, "give either as_token_file or registration_file, not both");
    } else if (token_f) {
      if (auto t = read_secret(*token_f, login.as_token_file, true)) login.as_token = std::move(*t);
    } else if (registration_f) {
      read_registration(*registration_f, login);
    } else {
      error({join(where.path, "as_token_file"), where.line, {}},
            "required key is missing (or give registration_file)");
    }
    hs.login = std::move(login);
  }

  // The bridge's appservice registration YAML: its as_token, sender_localpart and
  // namespaces.users[].regex. Other keys belong to the bridge and are ignored. Errors name
  // the config line of registration_file and the place inside the registration.
  void read_registration(const field& f, appservice_login& login) {
    auto s = get_nonempty_string(f);
    if (!s) return;
    const auto path = resolve(*s);
    login.registration_file = path.string();
    const std::string where = "registration '" + login.registration_file + "'";
    std::string why;
    auto text = read_small_file(path, max_secret_file_bytes, why);
    if (!text) {
      error(f, "cannot read " + where + ": " + why);
      return;
    }
    secret_string text_secret{std::move(*text)};  // it holds the as_token and hs_token
    YAML::Node root;
    try {
      root = YAML::Load(text_secret.reveal());
    } catch (const YAML::Exception& e) {
      error(f, where + " line " + std::to_string(line_of_mark(e.mark)) + ": not valid YAML");
      return;
    }
    const auto at = [&](const YAML::Node& n) {
      return where + " line " + std::to_string(line_of(n, 1)) + ": ";
    };
    if (!root.IsMap()) {
      error(f, where + ": expected a map, got " + kind_of(root));
      return;
    }
    const YAML::Node token = root["as_token"];
    if (!token.IsDefined() || !token.IsScalar() || token.Scalar().empty()) {
      error(f, where + ": as_token is missing or not a non-empty string");
      return;
    }
    login.as_token = secret_string{token.Scalar()};
    if (const YAML::Node sender = root["sender_localpart"]; sender.IsDefined() && sender.IsScalar())
      login.sender_localpart = sender.Scalar();
    const YAML::Node ns = root["namespaces"];
    const YAML::Node users = ns.IsMap() ? ns["users"] : YAML::Node{};
    if (users.IsDefined() && !users.IsNull() && !users.IsSequence()) {
      error(f, at(users) + "namespaces.users: expected a list, got " + kind_of(users));
      return;
    }
    bool bad_regex = false;
    if (users.IsSequence()) {
      for (std::size_t i = 0; i < users.size(); ++i) {
        const YAML::Node entry = users[i];
        const std::string name = "namespaces.users[" + std::to_string(i) + "].regex: ";
        const YAML::Node regex = entry.IsMap() ? entry["regex"] : YAML::Node{};
        if (!regex.IsDefined() || !regex.IsScalar() || regex.Scalar().empty()) {
          error(f, at(entry) + name + "expected a non-empty string");
          bad_regex = true;
          continue;
        }
        try {
          login.user_regexes.emplace_back(regex.Scalar(), std::regex::ECMAScript);
          login.user_regex_sources.push_back(regex.Scalar());
        } catch (const std::regex_error& e) {
          error(f, at(regex) + name + echoed(regex.Scalar()) +
                       " is not a regular expression std::regex (ECMAScript) accepts: " + e.what());
          bad_regex = true;
        }
      }
    }
    if (!bad_regex && login.user_regexes.empty() && login.sender_localpart.empty())
      error(f, where + ": has no namespaces.users regex, so no user could be logged in");
  }

  // --- method: synapse_admin -------------------------------------------------------------

  void load_synapse_admin(const field& where, homeserver_config& hs) {
    synapse_admin_login login;
    walk_map(where,
             {
                 {"method", true, [](const field&) {}},
                 {"admin_token_file", true,
                  [&](const field& f) {
                    if (auto t = read_secret(f, login.admin_token_file, true))
                      login.admin_token = std::move(*t);
                  }},
                 {"token_lifetime", false,
                  [&](const field& f) {
                    read_duration(f, login.token_lifetime);
                    if (login.token_lifetime < std::chrono::minutes{1}) {
                      error(f, "must be at least 1m (the token is replaced before it runs out)");
                      login.token_lifetime = std::chrono::minutes{1};
                    }
                  }},
             });
    hs.login = std::move(login);
  }

  void load_sessions(const field& where, sessions_config& s) {
    walk_map(
        where,
        {
            {"max", false, [&](const field& f) { read_integer(f, s.max); }},
            {"idle_timeout", false, [&](const field& f) { read_duration(f, s.idle_timeout); }},
            {"revoke_on_evict", false, [&](const field& f) { read_bool(f, s.revoke_on_evict); }},
            {"revoke_on_shutdown", false,
             [&](const field& f) { read_bool(f, s.revoke_on_shutdown); }},
            {"refresh_tokens", false, [&](const field& f) { read_bool(f, s.refresh_tokens); }},
            {"refresh_margin", false, [&](const field& f) { read_duration(f, s.refresh_margin); }},
            {"refresh", false,
             [&](const field& f) {
               auto v = get_string(f);
               if (!v) return;
               if (*v == "on_demand")
                 s.refresh = refresh_policy::on_demand;
               else if (*v == "background")
                 s.refresh = refresh_policy::background;
               else
                 error(f, "expected on_demand or background, got " + echoed(*v));
             }},
            {"validate_after", false,
             [&](const field& f) {
               milliseconds d{};
               read_duration(f, d);
               if (d.count() > 0) s.validate_after = d;
             }},
        });
  }

  void load_store(const field& where, store_config& st) {
    walk_map(where, {
                        {"path", false,
                         [&](const field& f) {
                           auto p = get_string(f);
                           if (!p) return;
                           if (p->empty()) return error(f, "must not be empty");
                           st.path = resolve(*p).string();  // relative to the config file
                         }},
                    });
  }

  void load_log(const field& where, log_config& l) {
    walk_map(where,
             {
                 {"level", false,
                  [&](const field& f) {
                    auto s = get_string(f);
                    if (!s) return;
                    static constexpr std::string_view levels[] = {
                        "trace", "debug", "info", "warn", "error", "critical", "off"};
                    if (std::find(std::begin(levels), std::end(levels), *s) == std::end(levels)) {
                      error(f,
                            "expected one of trace, debug, info, warn, error, critical, "
                            "off, got " +
                                echoed(*s));
                      return;
                    }
                    l.level = std::move(*s);
                  }},
                 {"format", false,
                  [&](const field& f) {
                    auto s = get_string(f);
                    if (!s) return;
                    if (*s == "text")
                      l.format = log_format::text;
                    else if (*s == "json")
                      l.format = log_format::json;
                    else
                      error(f, "expected text or json, got " + echoed(*s));
                  }},
             });
  }

  std::string source_;
  fs::path base_dir_;
  std::vector<located_error> errors_;
  std::vector<std::string> warnings_;
  std::optional<field>
      tcp_field_;  // where listen.tcp was set, for errors found after the whole file
};

}  // namespace

namespace {

// The secret material a login method was loaded with (files are read at load time).
std::vector<const secret_string*> secrets_of(const login_config& login) {
  return std::visit(
      [](const auto& m) -> std::vector<const secret_string*> {
        using method_t = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<method_t, shared_secret_login>)
          return {&m.secret};
        else if constexpr (std::is_same_v<method_t, jwt_login>)
          return {&m.key};
        else if constexpr (std::is_same_v<method_t, appservice_login>)
          return {&m.as_token};
        else
          return {&m.admin_token};
      },
      login);
}

}  // namespace

bool same_homeserver(const homeserver_config& a, const homeserver_config& b) {
  if (a.fingerprint != b.fingerprint || a.request_refresh_token != b.request_refresh_token ||
      a.login.index() != b.login.index())
    return false;
  if (const auto* asa =
          std::get_if<appservice_login>(&a.login)) {  // the registration file may have changed
    const auto& asb = std::get<appservice_login>(b.login);
    if (asa->user_regex_sources != asb.user_regex_sources ||
        asa->sender_localpart != asb.sender_localpart)
      return false;
  }
  const auto sa = secrets_of(a.login), sb = secrets_of(b.login);
  for (std::size_t i = 0; i < sa.size(); ++i)
    if (!(*sa[i] == *sb[i])) return false;
  return true;
}

load_result load_config_text(const std::string& yaml_text, const std::string& source_name,
                             const std::string& base_dir) {
  try {
    return loader{source_name, fs::path{base_dir}}.run(yaml_text);
  } catch (const std::exception& e) {  // allocation failure and the like
    load_result r;
    r.errors.push_back(source_name + ":1: error: " + e.what());
    return r;
  }
}

load_result load_config_file(const std::string& path) {
  try {
    std::string why;
    auto text = read_small_file(fs::path{path}, max_config_file_bytes, why);
    if (!text) {
      load_result r;
      r.errors.push_back(path + ": cannot read config file: " + why);
      return r;
    }
    std::error_code ec;
    fs::path dir = fs::path{path}.parent_path();
    if (dir.empty()) dir = ".";
    auto absolute = fs::absolute(dir, ec);
    if (!ec) dir = std::move(absolute);
    auto result = load_config_text(*text, path, dir.lexically_normal().string());
    OPENSSL_cleanse(text->data(), text->size());  // a config may hold a pasted secret
    return result;
  } catch (const std::exception& e) {
    load_result r;
    r.errors.push_back(path + ": error: " + e.what());
    return r;
  }
}

}  // namespace mxp::config
