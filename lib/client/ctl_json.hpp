// ctl_json: reading the daemon's answers with simdjson's DOM, tolerant of keys and types it
// does not expect (an unexpected type is "absent", never a crash).
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mxp::client {

// An integer, from any JSON number that holds one (doubles are truncated); nullopt otherwise.
std::optional<std::int64_t> as_int(simdjson::dom::element e);

std::optional<std::string_view> as_string(simdjson::dom::element e);

// Any JSON value as one line of text: strings unquoted, null as "-".
std::string text_of(simdjson::dom::element e);

std::optional<simdjson::dom::element> member(simdjson::dom::object o, std::string_view key);

}  // namespace mxp::client
