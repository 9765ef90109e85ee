// The table of server names that every server-name test feeds to the grammar, the config
// loader and the user-ID parser: one place that says what mxpuppetd accepts.
#pragma once

#include <string>
#include <vector>

namespace mxp::test {

struct server_name_case {
  std::string name;
  bool valid;
};

inline std::vector<server_name_case> server_name_cases() {
  std::vector<server_name_case> cases = {
      // DNS names
      {"example.com", true},
      {"localhost", true},
      {"matrix-1.example.org", true},
      {"EXAMPLE.Com", true},
      {"a", true},
      {"a.b.c.d.e", true},
      {"1password.com", true},  // labels may start with a digit (RFC 1123)
      {"xn--bcher-kva.example", true},
      {"123.example", true},
      {"-foo.example", false},  // leading '-' in a label
      {"foo-.example", false},  // trailing '-' in a label
      {"foo.-bar.example", false},
      {"foo.bar-.example", false},
      {".example.com", false},  // empty labels
      {"example..com", false},
      {"example.com.", false},  // trailing '.': a second spelling of example.com
      {".", false},
      {"..", false},
      {"", false},
      {"exa mple.com", false},
      {"bad_host", false},
      {"@example.com", false},
      {"ex%61mple.com", false},
      {"example.com/", false},
      {"ex\xc3\xa4mple.com", false},  // non-ASCII (IDNs are written as xn--)
      {"example.123", false},         // numeric last label: a number, not a name
      {"123", false},
      {"1.2.3", false},
      // IPv4
      {"1.2.3.4", true},
      {"0.0.0.0", true},
      {"255.255.255.255", true},
      {"127.0.0.1:8448", true},
      {"256.1.1.1", false},
      {"1.2.3.256", false},
      {"1.2.3.4.5", false},
      {"01.2.3.4", false},  // leading zero: octal to inet_aton
      {"1.2.3.04", false},
      {"1.2.3.", false},
      {"1..3.4", false},
      {"1.2.3.4.", false},
      {"1234.1.1.1", false},
      // IPv6
      {"[::1]", true},
      {"[::]", true},
      {"[2001:db8::1]:65535", true},
      {"[2001:DB8:0:0:8:800:200C:417A]", true},
      {"[1:2:3:4:5:6:7:8]", true},
      {"[1:2:3:4:5:6:7::]", true},
      {"[::2:3:4:5:6:7:8]", true},
      {"[::ffff:192.0.2.1]", true},
      {"[1:2:3:4:5:6:1.2.3.4]:8448", true},
      {"[fe80::1:0:0:1]", true},
      {"[::1", false},
      {"::1", false},  // brackets are required
      {"[]", false},
      {"[:]", false},
      {"[:::]", false},
      {"[1:2:3:4:5:6:7]", false},      // seven groups, no "::"
      {"[1:2:3:4:5:6:7:8:9]", false},  // nine groups
      {"[1:2:3:4:5:6:7:8::]", false},  // "::" must stand for at least one group
      {"[::1:2:3:4:5:6:7:8]", false},
      {"[1::2::3]", false},   // two "::"
      {"[:1::2]", false},     // a single leading ':'
      {"[1::2:]", false},     // a single trailing ':'
      {"[12345::1]", false},  // group of five hex digits
      {"[zz::1]", false},
      {"[::1.2.3]", false},
      {"[::1.2.3.4:5]", false},  // the IPv4 part must come last
      {"[1.2.3.4::]", false},
      {"[::01.2.3.4]", false},
      {"[1:2:3:4:5:6:7:1.2.3.4]", false},  // nine groups' worth
      {"[fe80::1%eth0]", false},           // no zone ID
      {"[::1]8448", false},
      {"[::1]]", false},
      {"[[::1]]", false},
      {"[example.com]", false},
      {"[1.2.3.4]", false},
      // ports
      {"localhost:8448", true},
      {"example.com:1", true},
      {"example.com:65535", true},
      {"[::1]:443", true},
      {"example.com:0", false},
      {"example.com:65536", false},
      {"example.com:99999", false},
      {"example.com:123456", false},
      {"example.com:08448", false},  // leading zero: one spelling per port
      {"example.com:", false},
      {"example.com:8a", false},
      {"example.com:+80", false},
      {"example.com:-1", false},
      {"example.com:80:80", false},
      {"[::1]:", false},
      {"[::1]:0", false},
      {":8448", false},
  };
  // Lengths: a label of 63 characters is fine, 64 is not; a DNS name of 253 is fine, 254 is
  // not; a server name (port included) of 255 is fine, 256 is not.
  const std::string l63(63, 'a');
  cases.push_back({l63 + ".example", true});
  cases.push_back({l63 + "a.example", false});
  const std::string n252 = l63 + "." + l63 + "." + l63 + "." + std::string(60, 'b');
  cases.push_back({n252, true});
  cases.push_back({n252 + "b", true});
  cases.push_back({n252 + "bb", false});
  cases.push_back({n252 + "b:1", true});
  cases.push_back({n252 + "b:10", false});
  return cases;
}

}  // namespace mxp::test
