#pragma once
// Comparisons that explain themselves: on failure they throw with the worst index
// as (b, l, h, d), both values there, the number of mismatches, the observed ratio
// to the bound and the problem. Throwing (not EXPECT_*) makes them usable inside
// RapidCheck properties, where a throw fails the case and drives shrinking.

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

#include "lla/problem.hpp"
#include "lla/tensor.hpp"

namespace lla::test {

class ComparisonFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <int R>
std::string index_string(const std::array<int64_t, R>& shape, int64_t flat) {
  std::array<int64_t, R> idx{};
  for (int d = R - 1; d >= 0; --d) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return shape_string(idx);
}

// max|a - b| <= bound, element by element, with NaN/Inf treated as failures unless
// both sides hold the same non-finite value (e.g. lse = -inf on empty rows).
template <class A, class B, int R>
void check_close(const std::string& what, const Tensor<A, R>& actual, const Tensor<B, R>& expected, double bound,
                 const Problem& problem) {
  if (actual.shape() != expected.shape()) {
    throw ComparisonFailure(what + ": shape " + shape_string(actual.shape()) + " != expected " +
                            shape_string(expected.shape()));
  }
  double worst = -1;
  int64_t worst_at = -1, mismatches = 0;
  for (int64_t n = 0; n < actual.size(); ++n) {
    // Differences in long double: converting long-double results to double first
    // would round two nearby values to doubles one ulp apart.
    const long double a = static_cast<long double>(actual.data()[n]);
    const long double e = static_cast<long double>(expected.data()[n]);
    double diff;
    if (std::isfinite(a) && std::isfinite(e)) {
      diff = static_cast<double>(std::fabs(a - e));
    } else {
      diff = (a == e) ? 0.0 : INFINITY;  // same infinity passes; NaN never does
    }
    if (!(diff <= bound)) ++mismatches;
    if (!(diff <= worst)) {
      worst = diff;
      worst_at = n;
    }
  }
  if (mismatches == 0) return;
  std::ostringstream os;
  os.precision(17);
  os << what << ": " << mismatches << " of " << actual.size() << " elements differ by more than " << bound
     << "; worst at " << index_string<R>(actual.shape(), worst_at) << ": actual "
     << static_cast<double>(actual.data()[worst_at]) << ", expected "
     << static_cast<double>(expected.data()[worst_at]) << ", |diff| " << worst << " = "
     << (bound > 0 ? worst / bound : INFINITY) << " x bound; " << problem.describe();
  throw ComparisonFailure(os.str());
}

// Bitwise equality (used where the math promises identical operations).
template <class Scalar, int R>
void check_identical(const std::string& what, const Tensor<Scalar, R>& actual, const Tensor<Scalar, R>& expected,
                     const Problem& problem) {
  check_close(what, actual, expected, 0.0, problem);
}

template <class Scalar, int R>
void check_all_finite(const std::string& what, const Tensor<Scalar, R>& t, const Problem& problem) {
  for (int64_t n = 0; n < t.size(); ++n) {
    if (!std::isfinite(static_cast<double>(t.data()[n]))) {
      throw ComparisonFailure(what + ": non-finite value at " + index_string<R>(t.shape(), n) + "; " +
                              problem.describe());
    }
  }
}

}  // namespace lla::test
