// nonce_book: single use, exact user, expiry, withdrawal, constant-length random nonces.
#include <gtest/gtest.h>

#include <set>

#include "credentials/nonce_book.hpp"

using mxp::credentials::nonce_book;

TEST(NonceBook, RedeemsOnceForExactlyItsUser) {
  nonce_book book;
  const auto n = book.issue("@alice:hs", 1000, 60'000);
  EXPECT_EQ(n.reveal().size(), nonce_book::nonce_chars);
  EXPECT_FALSE(book.redeem("@bob:hs", n.reveal(), 1001));     // another user
  EXPECT_FALSE(book.redeem("@Alice:hs", n.reveal(), 1001));   // a case variant
  EXPECT_FALSE(book.redeem("@alice:hs2", n.reveal(), 1001));  // another domain
  EXPECT_FALSE(book.redeem("@alice:hs", n.reveal().substr(1), 1001));
  EXPECT_FALSE(book.redeem("@alice:hs", "", 1001));
  EXPECT_TRUE(book.redeem("@alice:hs", n.reveal(), 1001));
  EXPECT_FALSE(book.redeem("@alice:hs", n.reveal(), 1002));  // consumed
  EXPECT_EQ(book.size(), 0u);
}

TEST(NonceBook, ExpiresAfterItsLifetime) {
  nonce_book book;
  const auto n = book.issue("@alice:hs", 1000, 5000);
  EXPECT_FALSE(book.redeem("@alice:hs", n.reveal(), 6000));  // now_ms == expiry: dead
  EXPECT_EQ(book.size(), 0u);
  const auto m = book.issue("@alice:hs", 1000, 5000);
  EXPECT_TRUE(book.redeem("@alice:hs", m.reveal(), 5999));
}

TEST(NonceBook, ANewNonceReplacesTheOldAndWithdrawKillsIt) {
  nonce_book book;
  const auto first = book.issue("@alice:hs", 0, 60'000);
  const auto second = book.issue("@alice:hs", 0, 60'000);
  EXPECT_NE(first.reveal(), second.reveal());
  EXPECT_FALSE(book.redeem("@alice:hs", first.reveal(), 1));
  book.withdraw("@alice:hs");
  EXPECT_FALSE(book.redeem("@alice:hs", second.reveal(), 1));
  book.withdraw("@nobody:hs");  // harmless
}

TEST(NonceBook, NoncesAreRandomBase64url) {
  nonce_book book;
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto n = book.issue("@u" + std::to_string(i) + ":hs", 0, 1000);
    for (char c : n.reveal())
      EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
    seen.insert(n.reveal());
  }
  EXPECT_EQ(seen.size(), 1000u);
  // Past the sweep size, expired nonces go when a new one is issued.
  for (int i = 0; i < 1100; ++i) book.issue("@v" + std::to_string(i) + ":hs", 0, 10);
  book.issue("@late:hs", 100, 1000);
  EXPECT_LT(book.size(), 1100u);
}
