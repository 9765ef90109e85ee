// The server-name grammar on its own: the shared table of cases, and the IPv4/IPv6 literal
// parsers cross-checked against inet_pton on many generated strings.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <random>
#include <string>

#include "core/server_name.hpp"
#include "server_name_cases.hpp"

namespace {

TEST(ServerName, TableOfCases) {
  int valid = 0;
  int invalid = 0;
  for (const auto& c : mxp::test::server_name_cases()) {
    EXPECT_EQ(mxp::is_valid_server_name(c.name), c.valid) << '"' << c.name << '"';
    (c.valid ? valid : invalid) += 1;
  }
  EXPECT_GT(valid, 20);
  EXPECT_GT(invalid, 50);
}

TEST(ServerName, DnsNameRules) {
  EXPECT_TRUE(mxp::is_valid_dns_name("a-b.c"));
  EXPECT_FALSE(mxp::is_valid_dns_name("-a.c"));
  EXPECT_FALSE(mxp::is_valid_dns_name("a-.c"));
  EXPECT_FALSE(mxp::is_valid_dns_name("a..c"));
  EXPECT_FALSE(mxp::is_valid_dns_name("a.c."));
  EXPECT_FALSE(mxp::is_valid_dns_name("a.c:80"));   // the port is not part of the host
  EXPECT_FALSE(mxp::is_valid_dns_name("1.2.3.4"));  // an address, not a name
  EXPECT_TRUE(mxp::is_valid_ipv4_address("1.2.3.4"));
}

// Strings over the characters that matter to the literal syntaxes, so that many of them are
// near misses of valid addresses.
std::string random_text(std::mt19937& rng, std::string_view alphabet, std::size_t max_len) {
  std::uniform_int_distribution<std::size_t> len(0, max_len);
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  std::string s(len(rng), ' ');
  for (auto& c : s) c = alphabet[pick(rng)];
  return s;
}

TEST(ServerName, Ipv4AgreesWithInetPton) {
  std::mt19937 rng{12345};
  int accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    const auto s = random_text(rng, "0125.", 16);
    in_addr a{};
    const bool expected = ::inet_pton(AF_INET, s.c_str(), &a) == 1;
    ASSERT_EQ(mxp::is_valid_ipv4_address(s), expected) << '"' << s << '"';
    accepted += expected;
  }
  EXPECT_GT(accepted, 100);  // the generator does reach valid addresses
}

TEST(ServerName, Ipv6AgreesWithInetPton) {
  std::mt19937 rng{67890};
  int accepted = 0;
  for (int i = 0; i < 300000; ++i) {
    // Sometimes build from whole groups, so that long valid forms occur as well.
    std::string s;
    if (i % 2 == 0) {
      s = random_text(rng, "0f1:.", 24);
    } else {
      std::uniform_int_distribution<int> groups(0, 9);
      const int n = groups(rng);
      for (int g = 0; g < n; ++g) {
        s += random_text(rng, "0aF9", 5);
        s += (rng() % 7 == 0) ? "::" : ":";
      }
      if (rng() % 3 == 0) s += random_text(rng, "0125.", 16);
      if (rng() % 2 == 0 && !s.empty()) s.pop_back();
    }
    in6_addr a{};
    const bool expected = ::inet_pton(AF_INET6, s.c_str(), &a) == 1;
    ASSERT_EQ(mxp::is_valid_ipv6_address(s), expected) << '"' << s << '"';
    accepted += expected;
  }
  EXPECT_GT(accepted, 1000);
}

}  // namespace
