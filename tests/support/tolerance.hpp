#pragma once
// The one place that defines how close two results must be. No test body holds a
// tolerance number; each comparison names a rule from this header.
//
// Oracle self-consistency (two evaluation orders of the same math in the same
// precision, e.g. blocked vs plain, online vs two-pass, double vs long double):
//
//     max|a - b|  <=  kSelfConsistency * u * kappa * scale
//
// u is the unit roundoff of the scalar type, scale the magnitude of the quantity
// (max|v| for outputs, max|reference| for gradients), and kappa the condition
// estimate of attention_condition() below: rounding in a logit s is amplified
// into relative error of exp(s), rounding in t = r.k enters the output directly,
// and the Parallax combination cancels terms of size (1 + |t - tbar|) (spec:
// docs/math.md, "Precision"). Gradients get kappa^2 (they differentiate through
// the same cancellations once more).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "lla/metrics.hpp"
#include "lla/tensor.hpp"
#include "lla/tolerance_policy.hpp"

namespace lla::test {

template <class Scalar>
constexpr double unit_roundoff() {
  return static_cast<double>(std::numeric_limits<Scalar>::epsilon()) / 2.0;
}

// Safety factor over the first-order error estimate. FlashAttention uses 2 for
// kernel-vs-baseline; the oracle's own paths differ only in summation order, and
// the estimate already carries the worst-case term count, so 16 leaves room for
// constant factors without hiding an O(1) bug (which shows as ~1/u times too much).
inline constexpr double kSelfConsistency = 16.0;

// Central finite differences in long double against an analytic gradient:
// |fd - analytic| <= kFiniteDifferenceRtol * ||grad|| * ||direction|| (Cauchy-Schwarz
// scale). With step 1e-6 in long double the truncation error is ~1e-12 relative and
// the rounding error ~1e-13; a dropped term shows as O(1e-1) or more.
inline constexpr double kFiniteDifferenceStep = 1e-6;
inline constexpr double kFiniteDifferenceRtol = 1e-8;
// Plus a floor for gradients that vanish (one key per row): the rounding noise of
// the loss evaluations, kappa * 64 u(long double) * sum|g o|, divided by the step.
inline constexpr double kFiniteDifferenceNoise = 64.0 * unit_roundoff<long double>();

// Condition estimate of an attention problem for the rule above.
struct AttentionCondition {
  double max_keys = 0;        // keys in the longest row (summation length)
  double logit_abs = 0;       // max_ij c * sum_d |q_id k_jd|
  double probe_abs = 0;       // max_ij sum_d |r_id k_jd|
  double probe_spread = 0;    // max_ij |t_ij - tbar_i|
  double kappa() const { return (max_keys + logit_abs + probe_abs + 1.0) * (1.0 + probe_spread); }
};

template <class Scalar>
double self_consistency_bound(const AttentionCondition& c, double scale) {
  return kSelfConsistency * unit_roundoff<Scalar>() * c.kappa() * scale;
}

template <class Scalar>
double gradient_consistency_bound(const AttentionCondition& c, double scale) {
  return kSelfConsistency * unit_roundoff<Scalar>() * c.kappa() * c.kappa() * scale;
}

// Kernels and fixture candidates: the baseline-relative rule of lla/tolerance_policy.hpp.
inline double unit_roundoff_of(Precision p) { return tolerance::unit_roundoff(p); }
inline double kernel_bound(double baseline_error, double reference_max_abs, double u) {
  return tolerance::kBaselineFactor * baseline_error + tolerance::kFloorUnits * u * reference_max_abs;
}

// The rule applied to a candidate stored in `dtype` (a kernel's output): the baseline
// is the fp32 oracle's result on the same inputs, rounded to `dtype`.
struct RuleCheck {
  double error = 0;           // max|candidate - oracle64|
  double baseline_error = 0;  // max|round(baseline32) - oracle64|
  double bound = 0;
  bool ok() const { return std::isfinite(error) && error <= bound; }
  double ratio() const { return bound > 0 ? error / bound : error; }
};

template <class Baseline, int R>
RuleCheck baseline_rule(const Tensor<double, R>& candidate, const Tensor<double, R>& oracle64,
                        const Tensor<Baseline, R>& baseline32, Precision dtype) {
  Tensor<double, R> rounded(oracle64.shape());
  for (int64_t i = 0; i < rounded.size(); ++i) {
    rounded.data()[i] = round_to(dtype, static_cast<double>(baseline32.data()[i]));
  }
  RuleCheck r;
  r.error = max_abs_diff(candidate, oracle64);
  r.baseline_error = max_abs_diff(rounded, oracle64);
  r.bound = kernel_bound(r.baseline_error, max_abs(oracle64), unit_roundoff_of(dtype));
  return r;
}

// Issue 5's accuracy target for bf16 decode: max|o - o64| / max|o64| at most the level
// of the published Parallax decode kernel. A target the kernel must meet on ordinary
// inputs (Gaussian / RMS-normalised), checked next to the baseline-relative rule.
inline constexpr double kDecodeMaxNormTargetBf16 = 4e-3;
// Issue 7's accuracy target for the bf16 training kernels: max-norm relative error
// at most 1e-2 on every case, median at most 4e-3.
inline constexpr double kTrainMaxNormTargetBf16 = 1e-2;
inline constexpr double kTrainMedianTargetBf16 = 4e-3;

// Magnitude for the floor of a log-sum-exp: the larger of max|lse| and the largest
// logit sum c sum_d |q_d k_d| (logit_abs of AttentionCondition), whose fp32
// rounding every LSE inherits.
template <class Tensor>
double lse_floor_magnitude(const Tensor& lse, double logit_abs) {
  double m = logit_abs;
  for (const auto& x : lse)
    if (std::isfinite(static_cast<double>(x))) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

}  // namespace lla::test
