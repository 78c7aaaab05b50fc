#include "lla/precision.hpp"

#include <cstring>
#include <stdexcept>

namespace lla {

const char* to_string(Precision p) {
  switch (p) {
    case Precision::fp64: return "fp64";
    case Precision::fp32: return "fp32";
    case Precision::fp16: return "fp16";
    case Precision::bf16: return "bf16";
  }
  return "unknown";
}

Precision parse_precision(const std::string& name) {
  if (name == "fp64" || name == "float64") return Precision::fp64;
  if (name == "fp32" || name == "float32") return Precision::fp32;
  if (name == "fp16" || name == "float16") return Precision::fp16;
  if (name == "bf16" || name == "bfloat16") return Precision::bf16;
  throw std::invalid_argument("unknown precision '" + name + "' (expected fp64, fp32, fp16 or bf16)");
}

namespace {

// Encodes a value that is already exactly representable in a binary format with
// `mant` stored fraction bits and exponent bias `bias` (total 16 bits).
uint16_t encode16(double y, int mant, int bias, uint16_t nan_bits) {
  if (std::isnan(y)) return nan_bits;
  const uint16_t sign = std::signbit(y) ? 0x8000 : 0;
  const int exp_bits = 15 - mant;
  const uint16_t exp_all_ones = static_cast<uint16_t>(((1 << exp_bits) - 1) << mant);
  if (std::isinf(y)) return sign | exp_all_ones;
  const double a = std::fabs(y);
  if (a == 0) return sign;
  int e = 0;
  std::frexp(a, &e);
  int exponent = e - 1;
  const int min_exp = 1 - bias;
  if (exponent < min_exp) {  // subnormal: fraction = a / 2^(min_exp - mant)
    const auto frac = static_cast<uint16_t>(std::ldexp(a, mant - min_exp));
    return sign | frac;
  }
  const double significand = std::ldexp(a, -exponent) - 1.0;  // in [0, 1)
  const auto frac = static_cast<uint16_t>(std::ldexp(significand, mant));
  return sign | static_cast<uint16_t>((exponent + bias) << mant) | frac;
}

double decode16(uint16_t bits, int mant, int bias) {
  const bool negative = bits & 0x8000;
  const int exp_bits = 15 - mant;
  const int exp_field = (bits >> mant) & ((1 << exp_bits) - 1);
  const int frac = bits & ((1 << mant) - 1);
  double v;
  if (exp_field == (1 << exp_bits) - 1) {
    v = frac ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (exp_field == 0) {
    v = std::ldexp(static_cast<double>(frac), 1 - bias - mant);
  } else {
    v = std::ldexp(1.0 + std::ldexp(static_cast<double>(frac), -mant), exp_field - bias);
  }
  return negative ? -v : v;
}

}  // namespace

uint16_t bf16_bits(double x) { return encode16(round_to(Precision::bf16, x), 7, 127, 0x7FC0); }
uint16_t fp16_bits(double x) { return encode16(round_to(Precision::fp16, x), 10, 15, 0x7E00); }
double bf16_value(uint16_t bits) { return decode16(bits, 7, 127); }
double fp16_value(uint16_t bits) { return decode16(bits, 10, 15); }

}  // namespace lla
