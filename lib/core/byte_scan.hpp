// byte_scan: the hot path's byte scanners, 16 bytes at a time with SSE2 (every x86-64 has it),
// 8 at a time (SWAR) elsewhere and for what is left. Each stops at or before the first byte it
// looks for: its callers finish byte by byte, so a scanner need only be fast, never exact at the
// end of the input.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace mxp::core {

namespace detail {
inline constexpr std::uint64_t ones = ~std::uint64_t{0} / 255, highs = ones * 0x80;
}  // namespace detail

// Skips bytes from `low` (0x20 or 0x21) to 0x7e: printable ASCII, with or without the space.
inline const char* skip_printable(const char* p, const char* end, unsigned char low) noexcept {
  using detail::highs;
  using detail::ones;
#if defined(__SSE2__)
  const __m128i below = _mm_set1_epi8(static_cast<char>(low - 1));
  const __m128i above = _mm_set1_epi8(0x7f);
  while (end - p >= 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // Signed compares: bytes from 0x80 up are negative, so below `low` as well.
    const __m128i printable = _mm_and_si128(_mm_cmpgt_epi8(x, below), _mm_cmplt_epi8(x, above));
    const auto mask = static_cast<unsigned>(_mm_movemask_epi8(printable));
    if (mask != 0xffff) return p + std::countr_one(mask);
    p += 16;
  }
#endif
  const std::uint64_t low_bytes = ones * low;
  while (end - p >= 8) {
    std::uint64_t x;
    std::memcpy(&x, p, 8);
    // A byte below `low`, or above 0x7e (its high bit set, or 0x7f): not all printable.
    if ((((x - low_bytes) & ~x) | ((x + ones) | x)) & highs) break;
    p += 8;
  }
  return p;
}

// Skips bytes that are none of `a`, `b` and `c`.
inline const char* skip_none_of(const char* p, const char* end, char a, char b, char c) noexcept {
  using detail::highs;
  using detail::ones;
#if defined(__SSE2__)
  const __m128i va = _mm_set1_epi8(a), vb = _mm_set1_epi8(b), vc = _mm_set1_epi8(c);
  while (end - p >= 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, va), _mm_cmpeq_epi8(x, vb)),
                                     _mm_cmpeq_epi8(x, vc));
    if (const auto mask = static_cast<unsigned>(_mm_movemask_epi8(hit)); mask != 0)
      return p + std::countr_zero(mask);
    p += 16;
  }
#endif
  const auto has_zero = [](std::uint64_t v) { return (v - ones) & ~v & highs; };
  const std::uint64_t xa = ones * static_cast<unsigned char>(a),
                      xb = ones * static_cast<unsigned char>(b),
                      xc = ones * static_cast<unsigned char>(c);
  while (end - p >= 8) {
    std::uint64_t x;
    std::memcpy(&x, p, 8);
    if (has_zero(x ^ xa) | has_zero(x ^ xb) | has_zero(x ^ xc)) break;
    p += 8;
  }
  return p;
}

}  // namespace mxp::core
