#pragma once
// Named scenarios shared by the demo, the tests and the docs, so the numbers the
// docs quote are the numbers a test checks.

#include "lla/inputs.hpp"
#include "lla/precision.hpp"
#include "lla/problem.hpp"

namespace lla::scenarios {

// LLA as public bf16 kernels run it, next to the exact problem (docs/lla.md):
// causal prefill, L = 64, D = 32, q/k/v ~ N(0, 1) rounded to bf16, scale 1/sqrt(D).
//   exact:  the direct solve in the oracle's precision
//   kernel: CG with 32 iterations, the uncentred (kernel) matvec with bf16 operands
//           and fp32 state, rho and the weights rounded to bf16 before their products,
//           the public test tolerances (atol = rtol = 1e-6 on squared norms).
struct LlaKernelScenario {
  Problem exact;
  Problem kernel;
  oracle::AttentionInputs<double> inputs;
};

inline LlaKernelScenario lla_bf16_cg(double lambda, int64_t length = 64, int64_t head_dim = 32) {
  LlaKernelScenario s;
  Problem& p = s.exact;
  p.seqlen_q = p.seqlen_k = length;
  p.head_dim = head_dim;
  p.variant = Variant::lla;
  p.lla.lambda = lambda;
  s.kernel = p;
  s.kernel.lla.solver = LlaSolver::cg;
  s.kernel.lla.cg.max_iters = 32;
  s.kernel.lla.cg.form = MatvecForm::uncentred;
  s.kernel.lla.cg.matvec_precision = Precision::bf16;
  s.kernel.lla.output_precision = Precision::bf16;
  s.inputs = make_inputs<double>(p, 1, Magnitude::normal);
  for (auto* t : {&s.inputs.q, &s.inputs.k, &s.inputs.v}) {
    for (auto& x : *t) x = round_to(Precision::bf16, x);
  }
  return s;
}

}  // namespace lla::scenarios
