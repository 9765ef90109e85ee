// User ID grammar and percent-decoding.
#include <gtest/gtest.h>

#include "matrix/user_id.hpp"

using namespace mxp::matrix;

TEST(UserId, ValidIds) {
  auto p = parse_user_id("@alice:example.com");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->localpart, "alice");
  EXPECT_EQ(p->server_name, "example.com");
  EXPECT_TRUE(parse_user_id("@a.b_c=d-e/f+g:matrix.org"));
  EXPECT_TRUE(parse_user_id("@Historical!User:example.com"));  // historical localparts
  p = parse_user_id("@bob:localhost:8448");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->server_name, "localhost:8448");
  EXPECT_TRUE(parse_user_id("@bob:127.0.0.1"));
  EXPECT_TRUE(parse_user_id("@bob:[::1]:8448"));
}

TEST(UserId, InvalidIds) {
  for (const char* bad :
       {"", "@", "alice:example.com", "@:example.com", "@alice", "@alice:", "@al ice:example.com",
        "@alice:exa mple.com", "@alice:example.com:0", "@alice:example.com:99999",
        "@alice:example.com:80x", "@alice:[::1", "@alice:-bad.com",
        "@ali\x01"
        "ce:example.com",
        "#room:example.com", "@alice:exa_mple.com"}) {
    EXPECT_FALSE(parse_user_id(bad)) << bad;
  }
  EXPECT_FALSE(parse_user_id("@" + std::string(250, 'a') + ":example.com"));  // over 255 bytes
}

TEST(UserId, PercentDecoding) {
  EXPECT_EQ(percent_decode("%40alice%3Aexample.com"), "@alice:example.com");
  EXPECT_EQ(percent_decode("@a%2Fb:x.org"), "@a/b:x.org");
  EXPECT_EQ(percent_decode("a+b"), "a+b");
  EXPECT_FALSE(percent_decode("%4"));
  EXPECT_FALSE(percent_decode("%"));
  EXPECT_FALSE(percent_decode("%zz"));
  EXPECT_FALSE(percent_decode("abc%4"));
}
