#include "lla/oracle/error_bar.hpp"

#include <mpreal.h>

#include <algorithm>
#include <unsupported/Eigen/MPRealSupport>

#include "lla/metrics.hpp"
#include "lla/oracle/attention.hpp"
#include "lla/oracle/lla.hpp"

namespace lla::oracle {

double ErrorBar::worst() const { return std::max({o, dq, dk, dv, dr}); }

namespace {

using mpfr::mpreal;

// Restores MPFR's default precision when the measurement ends.
class PrecisionScope {
 public:
  explicit PrecisionScope(int bits) : saved_(mpreal::get_default_prec()) { mpreal::set_default_prec(bits); }
  ~PrecisionScope() { mpreal::set_default_prec(saved_); }
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  mpfr_prec_t saved_;
};

template <class Scalar>
Tensor4<Scalar> forward_output(const Problem& p, const AttentionInputs<Scalar>& in) {
  if (p.variant == Variant::lla) return lla_forward(p, in, LlaForwardOptions{false}).o;
  return attention_forward(p, in).o;
}

template <class Scalar>
Gradients<Scalar> gradients(const Problem& p, const AttentionInputs<Scalar>& in, const Tensor4<Scalar>& dout) {
  if (p.variant == Variant::lla) return lla_backward(p, in, dout);
  return attention_backward(p, in, dout);
}

}  // namespace

ErrorBar oracle_error_bar(const Problem& problem, const AttentionInputs<double>& inputs, const Tensor4<double>* dout,
                          int bits) {
  if (bits < 64) throw ProblemError("oracle_error_bar needs at least 64 bits, got " + std::to_string(bits));
  PrecisionScope scope(bits);
  ErrorBar bar;
  bar.bits = bits;
  const auto mp = cast_inputs<mpreal>(inputs);
  bar.o = max_norm_relative_error(forward_output(problem, inputs), forward_output(problem, mp));
  const bool block_diagonal = problem.variant == Variant::lla && problem.lla.block_size > 0 &&
                              problem.lla.block_size != problem.head_dim;
  if (dout != nullptr && !block_diagonal) {
    const auto g64 = gradients(problem, inputs, *dout);
    const auto gmp = gradients(problem, mp, tensor_cast<mpreal>(*dout));
    // Gradient errors are relative to the largest gradient entry of any tensor: a
    // gradient that vanishes in exact arithmetic (dk of a row with one key) would
    // otherwise divide rounding noise by ~1e-77.
    double scale = std::max({max_abs(gmp.dq), max_abs(gmp.dk), max_abs(gmp.dv)});
    if (!gmp.dr.empty()) scale = std::max(scale, max_abs(gmp.dr));
    auto rel = [&](const auto& a, const auto& b) { return scale > 0 ? max_abs_diff(a, b) / scale : max_abs_diff(a, b); };
    bar.dq = rel(g64.dq, gmp.dq);
    bar.dk = rel(g64.dk, gmp.dk);
    bar.dv = rel(g64.dv, gmp.dv);
    if (!g64.dr.empty()) bar.dr = rel(g64.dr, gmp.dr);
  }
  return bar;
}

}  // namespace lla::oracle
