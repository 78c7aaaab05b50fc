#pragma once
// Low-precision emulation: round a value held in a wide type (double, long double,
// multiprecision) to the nearest value of a narrower IEEE format, ties to even,
// in ONE step. (Going double -> float -> bf16 would round twice.) Used to model
// what a GPU kernel does at the points where it rounds, and to quantise inputs.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

namespace lla {

enum class Precision { fp64, fp32, fp16, bf16 };

const char* to_string(Precision p);
// Parses "fp64", "fp32", "fp16", "bf16" (also "float64", "float32", "float16",
// "bfloat16"); throws std::invalid_argument otherwise.
Precision parse_precision(const std::string& name);

struct FloatFormat {
  int significand_bits;  // including the implicit bit
  int min_exponent;      // exponent of the smallest normal number (2^min_exponent)
  int max_exponent;      // exponent of the largest finite number's leading bit
};

constexpr FloatFormat format_of(Precision p) {
  switch (p) {
    case Precision::fp64: return {53, -1022, 1023};
    case Precision::fp32: return {24, -126, 127};
    case Precision::fp16: return {11, -14, 15};
    case Precision::bf16: return {8, -126, 127};
  }
  return {53, -1022, 1023};
}

// Nearest value of format f to x, ties to even, with gradual underflow and
// overflow to infinity. NaN and infinities pass through. Written for any scalar
// type (long double, multiprecision); round_to_format takes a faster path for double.
template <class Scalar>
Scalar round_to_format_generic(Scalar x, const FloatFormat& f) {
  using std::fabs;
  using std::frexp;
  using std::isfinite;
  using std::ldexp;
  using std::rint;
  if (!isfinite(x) || x == Scalar(0)) return x;
  int e = 0;
  frexp(x, &e);                                  // x = m 2^e with 0.5 <= |m| < 1
  const int exponent = std::max(e - 1, f.min_exponent);  // below the normal range the quantum stays fixed
  const int quantum_exp = exponent - (f.significand_bits - 1);
  // Scaling by a power of two is exact; rint rounds to even in the default mode.
  const Scalar y = ldexp(rint(ldexp(x, -quantum_exp)), quantum_exp);
  const Scalar max_finite =
      ldexp(Scalar(2) - ldexp(Scalar(1), 1 - f.significand_bits), f.max_exponent);
  if (fabs(y) > max_finite) return x > Scalar(0) ? std::numeric_limits<Scalar>::infinity()
                                                 : -std::numeric_limits<Scalar>::infinity();
  return y;
}

// The same rounding for double, bit for bit (tested against the generic form),
// without the library calls frexp / ldexp / rint: the CG emulation of `lla compare`
// rounds ~10^9 values, and this is most of its time.
inline double round_double_to_format(double x, const FloatFormat& f) {
  const auto bits = std::bit_cast<uint64_t>(x);
  const int biased = static_cast<int>((bits >> 52) & 0x7ff);
  // 0, subnormals, inf and NaN, and formats wider than fp32 (the argument below needs
  // at most 24 significand bits) take the generic path.
  if (biased == 0 || biased == 0x7ff || f.significand_bits > 24) return round_to_format_generic(x, f);
  const int e = biased - 1023;  // x = 1.m * 2^e
  if (e > f.max_exponent) return x > 0 ? std::numeric_limits<double>::infinity()
                                       : -std::numeric_limits<double>::infinity();
  const int quantum_exp = std::max(e, f.min_exponent) - (f.significand_bits - 1);
  // c = 1.5 * 2^(quantum_exp + 52) has ulp 2^quantum_exp, and |x| < 2^(quantum_exp + 24) keeps
  // x + c in c's binade: the addition rounds x to a multiple of the quantum, ties to
  // even (c / quantum is even), and the subtraction is exact.
  const double c = std::bit_cast<double>((static_cast<uint64_t>(quantum_exp + 52 + 1023) << 52) | (uint64_t{1} << 51));
  const double y = (x + c) - c;
  if (y == 0) return std::copysign(0.0, x);  // as rint(-tiny) = -0 in the generic form
  const uint64_t max_finite_bits = (static_cast<uint64_t>(f.max_exponent + 1023) << 52) |
                                   (((uint64_t{1} << (f.significand_bits - 1)) - 1) << (53 - f.significand_bits));
  if (std::fabs(y) > std::bit_cast<double>(max_finite_bits)) {
    return x > 0 ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
  }
  return y;
}

template <class Scalar>
Scalar round_to_format(Scalar x, const FloatFormat& f) {
  if constexpr (std::is_same_v<Scalar, double>) {
    return round_double_to_format(x, f);
  } else {
    return round_to_format_generic(x, f);
  }
}

// Emulation helper: fp64 means "the oracle's own precision" and leaves x
// unchanged for every scalar type (so a long-double or multiprecision run is not
// degraded to double); the other precisions round with round_to_format.
template <class Scalar>
Scalar round_to(Precision p, Scalar x) {
  if (p == Precision::fp64) return x;
  return round_to_format(x, format_of(p));
}

// IEEE bit patterns of the 16-bit formats (for fixtures). The value is rounded
// first; NaN becomes the canonical quiet NaN (bf16 0x7FC0, fp16 0x7E00).
uint16_t bf16_bits(double x);
uint16_t fp16_bits(double x);
double bf16_value(uint16_t bits);
double fp16_value(uint16_t bits);

}  // namespace lla
