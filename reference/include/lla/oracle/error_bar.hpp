#pragma once
// The oracle's own error bar: how far the fp64 oracle is from the same code run in
// multiprecision (MPFR through mpfr::mpreal, 256 bits by default). The answer is a
// measured number for the given problem and inputs, not an a-priori bound.

#include "lla/oracle/types.hpp"

namespace lla::oracle {

struct ErrorBar {
  int bits = 0;      // multiprecision significand bits used
  double o = 0;      // max-norm relative error of the fp64 output: max|o64 - o_mp| / max|o_mp|
  // Gradients (when an upstream gradient was given): max|g64 - g_mp| over each tensor,
  // divided by the largest entry of any gradient tensor.
  double dq = 0, dk = 0, dv = 0, dr = 0;
  double worst() const;
};

// Works for every variant (softmax, parallax, lla; LLA with its configured
// solver). Gradients are measured when `dout` is non-null (not for the
// block-diagonal LLA variant, which has no backward).
ErrorBar oracle_error_bar(const Problem& problem, const AttentionInputs<double>& inputs,
                          const Tensor4<double>* dout = nullptr, int bits = 256);

}  // namespace lla::oracle
