#pragma once
// Error metrics shared by the tests, the demo and the fixture verifier.

#include <algorithm>
#include <cmath>
#include <limits>

#include "lla/tensor.hpp"

namespace lla {

template <class Scalar, int R>
double max_abs(const Tensor<Scalar, R>& t) {
  double m = 0;
  for (const auto& x : t) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

// max |a - b| over elements; equal infinities count as 0, NaN or a lone infinity as +inf.
template <class A, class B, int R>
double max_abs_diff(const Tensor<A, R>& a, const Tensor<B, R>& b) {
  double m = 0;
  for (int64_t n = 0; n < a.size(); ++n) {
    // In long double, so that two nearby long-double values are not first rounded
    // to doubles one ulp apart.
    const long double x = static_cast<long double>(a.data()[n]), y = static_cast<long double>(b.data()[n]);
    const double d = (std::isfinite(x) && std::isfinite(y)) ? static_cast<double>(std::fabs(x - y))
                     : (x == y)                              ? 0.0
                                                             : std::numeric_limits<double>::infinity();
    m = std::max(m, d);
  }
  return m;
}

// Max-norm relative error: max|a - ref| / max|ref| (the public Parallax metric,
// taken over the whole tensor; 0 when both are all zero).
template <class A, class B, int R>
double max_norm_relative_error(const Tensor<A, R>& a, const Tensor<B, R>& ref) {
  const double diff = max_abs_diff(a, ref);
  const double scale = max_abs(ref);
  if (diff == 0) return 0;
  return scale > 0 ? diff / scale : std::numeric_limits<double>::infinity();
}

}  // namespace lla
