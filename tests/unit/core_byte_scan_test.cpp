// The hot path's byte scanners against the plain byte-by-byte definition: every length up to
// 48 (the 16-byte, the 8-byte and the byte-wise parts, alone and together), every position of
// the first byte that stops them, every byte value there. A scanner may stop early but never
// skip a byte it should stop at, and it must never read past the end (ASan checks the builds
// that run under it: each input is a heap buffer of exactly its length).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/byte_scan.hpp"

namespace {

bool printable(unsigned char c, unsigned char low) {
  return c >= low && c <= 0x7e;
}

// Runs `check(begin, end, stop)` for every length, every position and every byte value of the
// one unusual byte (or none), in a buffer of exactly that length.
template <typename Check>
void for_every_input(char filler, Check check) {
  for (std::size_t length = 0; length <= 48; ++length) {
    for (std::size_t at = 0; at <= length; ++at) {
      for (int value = 0; value < 256; ++value) {
        if (at == length && value > 0) break;  // at == length: no unusual byte at all
        auto buffer = std::make_unique<char[]>(length);
        for (std::size_t i = 0; i < length; ++i) buffer[i] = filler;
        if (at < length) buffer[at] = static_cast<char>(value);
        check(buffer.get(), buffer.get() + length);
      }
    }
  }
}

TEST(byte_scan, SkipPrintableStopsAtOrBeforeTheFirstOtherByte) {
  for (unsigned char low : {0x20, 0x21}) {
    for_every_input('a', [&](const char* begin, const char* end) {
      const char* first_other = begin;
      while (first_other < end && printable(static_cast<unsigned char>(*first_other), low))
        ++first_other;
      const char* stop = mxp::core::skip_printable(begin, end, low);
      ASSERT_LE(stop, first_other) << "skipped a byte it should have stopped at";
      ASSERT_GE(stop, begin);
      // It stops in the 16-byte block that holds the byte, or in the tail after the blocks.
      if (first_other < end) {
        ASSERT_LT(first_other - stop, 16);
      }
    });
  }
}

TEST(byte_scan, SkipNoneOfStopsAtOrBeforeTheFirstOfItsBytes) {
  for_every_input('x', [&](const char* begin, const char* end) {
    const char* first = begin;
    while (first < end && *first != '/' && *first != '%' && *first != '?') ++first;
    const char* stop = mxp::core::skip_none_of(begin, end, '/', '%', '?');
    ASSERT_LE(stop, first) << "skipped one of its bytes";
    ASSERT_GE(stop, begin);
    if (first < end) {
      ASSERT_LT(first - stop, 16);
    }
  });
}

TEST(byte_scan, AWholeRunOfPlainBytesIsSkippedUpToTheTail) {
  const std::string plain(40, 'a');
  const char* end = plain.data() + plain.size();
  EXPECT_GE(mxp::core::skip_printable(plain.data(), end, 0x21), end - 7);
  EXPECT_GE(mxp::core::skip_none_of(plain.data(), end, '/', '%', '?'), end - 7);
}

}  // namespace
