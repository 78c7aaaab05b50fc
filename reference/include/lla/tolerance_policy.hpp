#pragma once
// The rule every kernel result and every fixture candidate is judged by, defined
// once (tests/support/tolerance.hpp and the fixture schema both use it):
//
//   max|candidate - oracle64| <= kBaselineFactor * max|baseline - oracle64|
//                                + kFloorUnits * u(dtype) * max|oracle64|
//
// baseline: the same oracle templated on fp32 on exactly the inputs the candidate
// saw, its output rounded to the candidate's dtype; u(dtype): the unit roundoff of
// the output type (2^-8 bf16, 2^-11 fp16, 2^-24 fp32). kBaselineFactor is
// FlashAttention's factor; raise it per quantity only with a written reason.

#include <cmath>

#include "lla/precision.hpp"

namespace lla::tolerance {

inline constexpr double kBaselineFactor = 2.0;
inline constexpr double kFloorUnits = 2.0;

inline double unit_roundoff(Precision p) { return std::ldexp(1.0, -format_of(p).significand_bits); }

inline double bound(double baseline_error, double reference_max_abs, Precision output_type) {
  return kBaselineFactor * baseline_error + kFloorUnits * unit_roundoff(output_type) * reference_max_abs;
}

}  // namespace lla::tolerance
