// parse_base_url (Boost.URL underneath): what a homeserver base URL may look like.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "net/http_client.hpp"

namespace {

using mxp::net::parse_base_url;

struct accepted_case {
  const char* url;
  bool tls;
  const char* host;
  const char* port;
  const char* path_prefix;
  const char* host_header;
};

class BaseUrlAccepted : public testing::TestWithParam<accepted_case> {};

TEST_P(BaseUrlAccepted, SplitsIntoItsParts) {
  const auto& c = GetParam();
  const auto u = parse_base_url(c.url);
  ASSERT_TRUE(u) << c.url;
  EXPECT_EQ(u->tls, c.tls) << c.url;
  EXPECT_EQ(u->host, c.host) << c.url;
  EXPECT_EQ(u->port, c.port) << c.url;
  EXPECT_EQ(u->path_prefix, c.path_prefix) << c.url;
  EXPECT_EQ(u->host_header, c.host_header) << c.url;
}

INSTANTIATE_TEST_SUITE_P(
    BaseUrl, BaseUrlAccepted,
    testing::Values(
        accepted_case{"https://matrix.example.com", true, "matrix.example.com", "443", "",
                      "matrix.example.com"},
        accepted_case{"http://localhost:8008", false, "localhost", "8008", "", "localhost:8008"},
        accepted_case{"https://x.org/prefix/", true, "x.org", "443", "/prefix", "x.org"},
        accepted_case{"https://x.org//", true, "x.org", "443", "", "x.org"},
        accepted_case{"http://[::1]:8448/a/b/", false, "::1", "8448", "/a/b", "[::1]:8448"},
        accepted_case{"http://[::1]", false, "::1", "80", "", "[::1]"},
        accepted_case{"http://127.0.0.1:1", false, "127.0.0.1", "1", "", "127.0.0.1:1"},
        accepted_case{"http://host:", false, "host", "80", "", "host:"},
        accepted_case{"http://host:99999", false, "host", "99999", "", "host:99999"},
        accepted_case{"http://x/%41;b=c", false, "x", "80", "/%41;b=c", "x"},
        accepted_case{"http://exa_mple.com", false, "exa_mple.com", "80", "", "exa_mple.com"},
        accepted_case{"https://x.org:443/", true, "x.org", "443", "", "x.org:443"}));

class BaseUrlRejected : public testing::TestWithParam<const char*> {};

TEST_P(BaseUrlRejected, IsNullopt) {
  EXPECT_FALSE(parse_base_url(GetParam())) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(BaseUrl, BaseUrlRejected,
                         testing::Values("", "x", "//x", "HTTPS://x", "ftp://x", "https:/x",
                                         "https:x", "http://", "http:///a", "http://:80",
                                         "http://host:123456", "http://host:8a", "http://u@host",
                                         "http://host?q", "http://host/a?q", "http://host#f",
                                         "http://host/a#f", "http://ho st", "http://host/a b",
                                         "http://[::1", "http://[::1]x"));

}  // namespace
