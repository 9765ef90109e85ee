// json_writer: appends compact JSON to a std::string without a DOM. Used on the
// hot path (token answers) and for homeserver request bodies.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mxp {

// Appends `s` as a JSON string literal (quotes included), escaping as RFC 8259 requires.
void append_json_string(std::string& out, std::string_view s);

class json_writer {
 public:
  explicit json_writer(std::string& out) : out_(out) {}

  json_writer& begin_object() {
    separate();
    out_ += '{';
    first_ = true;
    return *this;
  }
  json_writer& end_object() {
    out_ += '}';
    first_ = false;
    return *this;
  }
  json_writer& begin_array() {
    separate();
    out_ += '[';
    first_ = true;
    return *this;
  }
  json_writer& end_array() {
    out_ += ']';
    first_ = false;
    return *this;
  }
  // Keys are the program's own literals: plain ASCII that needs no escaping.
  json_writer& key(std::string_view k) {
    separate();
    out_ += '"';
    out_ += k;
    out_ += "\":";
    first_ = true;  // the value that follows needs no comma
    return *this;
  }
  json_writer& value(std::string_view s) {
    separate();
    append_json_string(out_, s);
    return *this;
  }
  json_writer& value(const char* s) { return value(std::string_view{s}); }
  json_writer& value(bool b) {
    separate();
    out_ += b ? "true" : "false";
    return *this;
  }
  json_writer& value(std::int64_t n) {
    separate();
    out_ += std::to_string(n);
    return *this;
  }
  json_writer& value(std::uint64_t n) {
    separate();
    out_ += std::to_string(n);
    return *this;
  }
  json_writer& value(int n) { return value(static_cast<std::int64_t>(n)); }
  json_writer& value(unsigned n) { return value(static_cast<std::uint64_t>(n)); }
  json_writer& null() {
    separate();
    out_ += "null";
    return *this;
  }
  template <typename T>
  json_writer& value(const std::optional<T>& v) {
    return v ? value(*v) : null();
  }
  // Inserts already-serialised JSON.
  json_writer& raw(std::string_view json) {
    separate();
    out_ += json;
    return *this;
  }

  template <typename T>
  json_writer& member(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }

 private:
  void separate() {
    if (!first_) out_ += ',';
    first_ = false;
  }
  std::string& out_;
  bool first_ = true;
};

}  // namespace mxp
