// Rounding to bf16 / fp16 / fp32 in one step from double (and wider types).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "lla/precision.hpp"
#include "lla/random.hpp"

namespace lla {
namespace {

TEST(Precision, Bf16KnownPatterns) {
  EXPECT_EQ(bf16_bits(1.0), 0x3F80);
  EXPECT_EQ(bf16_bits(1.0 + std::ldexp(1.0, -8)), 0x3F80);      // tie -> even
  EXPECT_EQ(bf16_bits(1.0 + 3 * std::ldexp(1.0, -8)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(bf16_bits(-2.0), 0xC000);
  EXPECT_EQ(bf16_bits(INFINITY), 0x7F80);
  EXPECT_EQ(bf16_bits(NAN), 0x7FC0);
  EXPECT_EQ(bf16_bits(std::ldexp(1.0, -133)), 0x0001);  // smallest subnormal
  EXPECT_EQ(bf16_bits(3.3895313892515355e38), 0x7F7F);  // largest finite
  EXPECT_EQ(bf16_bits(3.40e38), 0x7F80);                // rounds to infinity
  EXPECT_EQ(bf16_bits(-0.0), 0x8000);
}

TEST(Precision, Fp16KnownPatterns) {
  EXPECT_EQ(fp16_bits(1.0), 0x3C00);
  EXPECT_EQ(fp16_bits(65504.0), 0x7BFF);
  EXPECT_EQ(fp16_bits(65520.0), 0x7C00);  // halfway to 2^16 rounds to infinity
  EXPECT_EQ(fp16_bits(std::ldexp(1.0, -24)), 0x0001);
  EXPECT_EQ(fp16_bits(1.0 + std::ldexp(1.0, -11)), 0x3C00);  // tie -> even
  EXPECT_EQ(fp16_bits(NAN), 0x7E00);
}

TEST(Precision, DirectRoundingDiffersFromDoubleRoundingThroughFloat) {
  // 1 + 2^-8 + 2^-30: just above a bf16 tie. One-step rounding goes up; rounding
  // to float first lands on the tie 1 + 2^-8 exactly, which then rounds to even (down).
  const double x = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  EXPECT_EQ(bf16_bits(x), 0x3F81);
  EXPECT_EQ(bf16_bits(static_cast<float>(x)), 0x3F80);
}

TEST(Precision, Fp32MatchesTheHardwareConversion) {
  Rng rng(5);
  for (int i = 0; i < 100000; ++i) {
    const double x = rng.normal() * std::ldexp(1.0, static_cast<int>(rng.integer(-140, 120)));
    const double ours = round_to(Precision::fp32, x);
    const double hw = static_cast<double>(static_cast<float>(x));
    ASSERT_EQ(ours, hw) << "x = " << x;
  }
}

// round_to_format has a bit-level fast path for double; it must agree with the
// generic form (frexp / rint / ldexp) bit for bit, sign of zero included, on every
// exponent range: ties, subnormals of the target, overflow, double subnormals.
TEST(Precision, DoubleFastPathMatchesTheGenericForm) {
  const auto same = [](double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0 || (a != a && b != b); };
  Rng rng(11);
  std::vector<double> xs = {0.0, -0.0, INFINITY, -INFINITY, NAN, 1.0, -1.0, 65504.0, 65520.0, 65519.99,
                            3.3895313892515355e38, 3.40e38, -3.40e38, 1e300, -1e300, std::ldexp(1.0, -1074),
                            -std::ldexp(1.0, -1074), std::ldexp(1.0, -1022), std::ldexp(1.0, -133),
                            std::ldexp(1.0, -134), -std::ldexp(1.0, -134), std::ldexp(3.0, -135),
                            std::ldexp(1.0, -25), -std::ldexp(1.0, -25), std::ldexp(3.0, -26)};
  for (int i = 0; i < 200000; ++i) {
    // Random signs, exponents over (and beyond) every target range, and mantissas
    // that are often exact ties (few random low bits).
    const double m = 1.0 + std::ldexp(static_cast<double>(rng.integer(0, 4095)), -12) +
                     (i % 3 == 0 ? 0.0 : std::ldexp(rng.uniform(), -30));
    const double x = (i % 2 ? -m : m) * std::ldexp(1.0, static_cast<int>(rng.integer(-160, 140)));
    xs.push_back(x);
  }
  for (const double x : xs) {
    for (Precision p : {Precision::fp32, Precision::fp16, Precision::bf16}) {
      const double fast = round_to_format(x, format_of(p));
      const double generic = round_to_format_generic(x, format_of(p));
      ASSERT_TRUE(same(fast, generic)) << "x = " << x << " (" << to_string(p) << "): fast " << fast
                                       << ", generic " << generic;
    }
  }
}

// Every 16-bit pattern decodes to a value that encodes back to the same bits
// (NaNs to the canonical NaN), and the value is a fixed point of the rounding.
TEST(Precision, AllSixteenBitPatternsRoundTrip) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto bits = static_cast<uint16_t>(b);
    const double v = bf16_value(bits);
    const double h = fp16_value(bits);
    if (std::isnan(v)) {
      EXPECT_EQ(bf16_bits(v), 0x7FC0);
    } else {
      ASSERT_EQ(bf16_bits(v), bits) << std::hex << b;
      ASSERT_EQ(round_to(Precision::bf16, v), v);
    }
    if (std::isnan(h)) {
      EXPECT_EQ(fp16_bits(h), 0x7E00);
    } else {
      ASSERT_EQ(fp16_bits(h), bits) << std::hex << b;
      ASSERT_EQ(round_to(Precision::fp16, h), h);
    }
  }
}

// Rounding is monotone and lands on one of the two neighbours.
RC_GTEST_PROP(PrecisionProperties, RoundsToANeighbour, (uint64_t seed)) {
  Rng rng(seed);
  const double x = rng.normal() * std::ldexp(1.0, static_cast<int>(rng.integer(-30, 30)));
  for (Precision p : {Precision::bf16, Precision::fp16}) {
    const double y = round_to(p, x);
    const double ulp = std::ldexp(1.0, std::max(std::ilogb(x), format_of(p).min_exponent) -
                                           (format_of(p).significand_bits - 1));
    if (std::isfinite(y)) RC_ASSERT(std::fabs(y - x) <= ulp / 2);
  }
}

}  // namespace
}  // namespace lla
