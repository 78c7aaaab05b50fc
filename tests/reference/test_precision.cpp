// Rounding to bf16 / fp16 / fp32 in one step from double (and wider types).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

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
