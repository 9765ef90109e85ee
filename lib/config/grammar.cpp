// Value grammars: decimal, port, device ID, file mode, homeserver URL (Boost.URL), listen.tcp.
#include "config/grammar.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/url.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "config/yaml_walker.hpp"

namespace mxp::config {
namespace {

bool is_hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), s.begin(), [](char a, char b) {
           return a == std::tolower(static_cast<unsigned char>(b));
         });
}

// Which message a URL that Boost.URL refused gets: the first of the checks that a URL it
// accepts goes through (see normalise_url) that the authority fails.
std::string why_refused(std::string_view authority) {
  if (authority.empty()) return "has no host name";
  if (authority.find('@') != std::string_view::npos)
    return "must not contain user information ('@')";
  std::string_view port;
  bool has_port = false;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos || close < 2 ||
        (close + 1 < authority.size() && authority[close + 1] != ':'))
      return "has a malformed [IPv6] host";
    has_port = close + 1 < authority.size();
    if (has_port) port = authority.substr(close + 2);
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    if (colon == 0) return "has no host name";
    has_port = true;
    port = authority.substr(colon + 1);
  }
  if (has_port && !is_valid_port(port)) return "has an invalid port (expected 1-65535)";
  if (authority.starts_with('[')) return "has a malformed [IPv6] host";
  return "is not a valid URL (RFC 3986)";
}

}  // namespace

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

std::optional<unsigned> parse_file_mode(std::string_view text, std::string& why) {
  std::string_view digits = text;
  if (digits.starts_with("0o") || digits.starts_with("0O")) digits.remove_prefix(2);
  if (digits.empty() || digits.find_first_not_of("01234567") != std::string_view::npos) {
    why = "expected an octal file mode such as \"0660\", got " + echoed(text);
    return std::nullopt;
  }
  while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
  unsigned mode = 01000;  // anything longer than three octal digits is too large
  if (digits.size() <= 3) std::from_chars(digits.data(), digits.data() + digits.size(), mode, 8);
  if (mode > 0777) {
    why = "file mode " + echoed(text) + " is larger than 0777";
    return std::nullopt;
  }
  return mode;
}

std::optional<std::string> normalise_url(std::string_view url, std::string& why) {
  // What the daemon asks of a URL beyond RFC 3986, checked first so that each gets its message.
  std::string_view scheme;
  if (starts_with_nocase(url, "https://"))
    scheme = "https://";
  else if (starts_with_nocase(url, "http://"))
    scheme = "http://";
  else {
    why = "must start with http:// or https://";
    return std::nullopt;
  }
  std::string_view rest = url.substr(scheme.size());
  if (std::any_of(rest.begin(), rest.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; })) {
    why = "must not contain spaces or control characters";
    return std::nullopt;
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    why = "must not contain a query ('?') or fragment ('#')";
    return std::nullopt;
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  // The structure is Boost.URL's, as for the HTTP client.
  const std::string candidate = std::string{scheme} + std::string{rest};
  const auto parsed = boost::urls::parse_uri(candidate);
  // Boost.URL 1.81 ends the authority where its grammar stops and takes what follows as a path
  // even when that does not begin with '/' ("https://h:8a" has port "8" and path "a"): RFC 3986
  // (path-abempty) refuses such a URL, and so does this check.
  if (!parsed || (!parsed->encoded_path().empty() && !parsed->encoded_path().starts_with('/'))) {
    why = why_refused(rest.substr(0, rest.find('/')));
    return std::nullopt;
  }
  const boost::urls::url_view& u = *parsed;
  if (u.encoded_authority().empty()) {
    why = "has no host name";
  } else if (u.has_userinfo()) {
    why = "must not contain user information ('@')";
  } else if (u.host_type() == boost::urls::host_type::ipvfuture) {
    why = "has a malformed [IPv6] host";
  } else if (u.encoded_host().empty()) {
    why = "has no host name";
  } else if (u.has_port() && !is_valid_port(u.port())) {
    why = "has an invalid port (expected 1-65535)";
  } else {
    std::string out{scheme};
    out.append(u.encoded_authority());
    out.append(u.encoded_path());
    return out;
  }
  return std::nullopt;
}

std::optional<loopback_endpoint> parse_loopback_endpoint(std::string_view text, std::string& why) {
  std::string_view host, port;
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close != std::string_view::npos && close + 1 < text.size() && text[close + 1] == ':')
      host = text.substr(1, close - 1), port = text.substr(close + 2);
  } else if (const auto colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon), port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      why = "write an IPv6 address in brackets, like [::1]:PORT; got " + echoed(text);
      return std::nullopt;
    }
  }
  if (host.empty()) {
    why = "expected ADDRESS:PORT such as 127.0.0.1:8765 or [::1]:8765, got " + echoed(text);
    return std::nullopt;
  }
  if (!is_valid_port(port)) {
    why = "invalid port " + echoed(port) + " (1-65535)";
    return std::nullopt;
  }
  const std::string address{host};
  in_addr v4{};
  in6_addr v6{};
  bool loopback = false;
  if (::inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    loopback = (ntohl(v4.s_addr) >> 24) == 127;
  } else if (::inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
    loopback = IN6_IS_ADDR_LOOPBACK(&v6);
  } else {
    why = echoed(address) +
          " is not a numeric IP address; use a loopback address (127.0.0.0/8 or [::1])";
    return std::nullopt;
  }
  if (!loopback) {
    why = echoed(address) +
          " is not a loopback address; the TCP listener only takes 127.0.0.0/8 or [::1]";
    return std::nullopt;
  }
  return loopback_endpoint{address, static_cast<std::uint16_t>(*parse_decimal(port))};
}

std::optional<std::array<unsigned char, 32>> parse_sha256_hex(std::string_view s) {
  if (s.size() != 64 || !std::all_of(s.begin(), s.end(), is_hex_digit)) return std::nullopt;
  std::array<unsigned char, 32> digest{};
  for (std::size_t i = 0; i < digest.size(); ++i)
    std::from_chars(s.data() + 2 * i, s.data() + 2 * i + 2, digest[i], 16);
  return digest;
}

}  // namespace mxp::config
