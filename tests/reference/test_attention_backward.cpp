// Backward properties of the softmax and Parallax oracle (docs/math.md, "Backward").
#include <numeric>

#include "support/properties.hpp"

namespace lla::test {
namespace {

using oracle::BackwardAlgorithm;

Variant draw_variant() {
  return *rc::gen::element(Variant::parallax, Variant::parallax, Variant::softmax);
}

CaseLimits small_limits() {
  CaseLimits lim;
  lim.max_len = 7;
  lim.max_batch = 2;
  lim.max_kv_heads = 2;
  lim.max_group = 2;
  lim.max_dim = 5;
  lim.odd_dims = false;
  return lim;
}

template <class Scalar>
long double loss(const Problem& p, const oracle::AttentionInputs<long double>& in, const Tensor4<long double>& g) {
  const auto o = oracle::attention_forward(p, in, oracle::ForwardOptions{oracle::ForwardAlgorithm::plain}).o;
  long double acc = 0;
  for (int64_t n = 0; n < o.size(); ++n) acc += o.data()[n] * g.data()[n];
  return acc;
}

// The analytic gradient (in Scalar) equals central finite differences of the
// long-double forward along a random direction, separately for q, k, v and r.
LLA_PROP_FOR_SCALARS(ParallaxBackward, GradientsMatchFiniteDifferences) {
  const Case c = draw_case(small_limits(), draw_variant());
  const Problem& p = c.problem;
  const auto in = make_inputs<Scalar>(p, c.seed, c.magnitude);
  const auto dout = make_dout<Scalar>(p, c.seed);
  // Both backward paths are checked against the finite differences.
  const auto algorithm = *rc::gen::element(BackwardAlgorithm::blocked, BackwardAlgorithm::plain).as("algorithm");
  const auto grads = backward_with(p, in, dout, algorithm, *rc::gen::element<int64_t>(1, 4, 64).as("row_block"));
  const auto s = scales_of(p, in);

  const auto base = oracle::cast_inputs<long double>(in);
  const auto g_ld = tensor_cast<long double>(dout);
  const long double h = kFiniteDifferenceStep;
  struct Target {
    const char* name;
    Tensor4<long double> oracle::AttentionInputs<long double>::*input;
    const Tensor4<Scalar>* grad;
  };
  std::vector<Target> targets{{"q", &oracle::AttentionInputs<long double>::q, &grads.dq},
                              {"k", &oracle::AttentionInputs<long double>::k, &grads.dk},
                              {"v", &oracle::AttentionInputs<long double>::v, &grads.dv}};
  if (p.variant == Variant::parallax) targets.push_back({"r", &oracle::AttentionInputs<long double>::r, &grads.dr});
  for (size_t n = 0; n < targets.size(); ++n) {
    const auto& t = targets[n];
    Rng rng(c.seed + 1000 + n);
    Tensor4<long double> dir((base.*t.input).shape());
    for (auto& x : dir) x = rng.normal();
    auto plus = base, minus = base;
    for (int64_t e = 0; e < dir.size(); ++e) {
      (plus.*t.input).data()[e] += h * dir.data()[e];
      (minus.*t.input).data()[e] -= h * dir.data()[e];
    }
    const long double fd = (loss<Scalar>(p, plus, g_ld) - loss<Scalar>(p, minus, g_ld)) / (2 * h);
    long double analytic = 0, gnorm = 0, dnorm = 0;
    for (int64_t e = 0; e < dir.size(); ++e) {
      const long double ge = static_cast<long double>(t.grad->data()[e]);
      analytic += ge * dir.data()[e];
      gnorm += ge * ge;
      dnorm += dir.data()[e] * dir.data()[e];
    }
    const double scale = static_cast<double>(std::sqrt(gnorm * dnorm));
    const double err = static_cast<double>(std::fabs(fd - analytic));
    RC_LOG() << "d" << t.name << ": finite difference " << static_cast<double>(fd) << ", analytic "
             << static_cast<double>(analytic) << ", |diff| / scale = " << (scale > 0 ? err / scale : err) << "\n";
    // Floor: the rounding noise of the two long-double loss evaluations, divided by 2h.
    long double loss_terms = 0;
    const auto o = oracle::attention_forward(p, base).o;
    for (int64_t e = 0; e < o.size(); ++e) loss_terms += std::fabs(o.data()[e] * g_ld.data()[e]);
    const double floor = static_cast<double>(kFiniteDifferenceNoise * (1 + loss_terms) / h) * s.cond.kappa();
    RC_ASSERT(err <= kFiniteDifferenceRtol * scale + floor);
  }
}

// Blocked (matrix products) and plain (per row, per key) backward agree.
LLA_PROP_FOR_SCALARS(ParallaxBackward, BlockedEqualsPlain) {
  const Case c = draw_case(CaseLimits{}, draw_variant());
  const auto in = make_inputs<Scalar>(c.problem, c.seed, c.magnitude);
  const auto dout = make_dout<Scalar>(c.problem, c.seed);
  const int64_t row_block = *rc::gen::element<int64_t>(1, 3, 16, 64).as("row_block");
  const auto s = scales_of(c.problem, in);
  check_gradients_consistent("blocked vs plain", backward_with(c.problem, in, dout, BackwardAlgorithm::blocked, row_block),
                             backward_with(c.problem, in, dout, BackwardAlgorithm::plain), c.problem, s);
}

// r = 0: every gradient equals softmax's bitwise, yet dr stays nonzero (the probe
// still has a gradient; a kernel that skips the r branch for small r is wrong).
LLA_PROP_FOR_SCALARS(ParallaxBackward, ZeroProbeIsSoftmaxExactly) {
  const Case c = draw_case(CaseLimits{}, Variant::parallax);
  auto in = make_inputs<Scalar>(c.problem, c.seed, c.magnitude);
  in.r.fill(Scalar(0));
  const auto dout = make_dout<Scalar>(c.problem, c.seed);
  Problem softmax = c.problem;
  softmax.variant = Variant::softmax;
  // dr_i = -Sigma_KV,i^T g_i is nonzero as soon as a row sees two different keys
  // with different values (rms-normed keys with D = 1 are all +-1, so they can coincide).
  bool has_two_keys = false;
  const int64_t D = c.problem.head_dim;
  for (const auto& seq : c.problem.sequences())
    for (int64_t i = 0; i < seq.q_len; ++i) {
      const auto r = c.problem.key_range(seq, i);
      for (int64_t g = 0; g < c.problem.heads_kv; ++g)
        for (int64_t j = r.begin + 1; j < r.end; ++j)
          for (int64_t d = 0; d < D; ++d)
            for (int64_t e = 0; e < D; ++e)
              has_two_keys |= in.k(seq.batch, j, g, d) != in.k(seq.batch, r.begin, g, d) &&
                              in.v(seq.batch, j, g, e) != in.v(seq.batch, r.begin, g, e);
    }
  for (auto a : {BackwardAlgorithm::plain, BackwardAlgorithm::blocked}) {
    const auto px = backward_with(c.problem, in, dout, a, 5);
    const auto sm = backward_with(softmax, in, dout, a, 5);
    check_identical("dq", px.dq, sm.dq, c.problem);
    check_identical("dk", px.dk, sm.dk, c.problem);
    check_identical("dv", px.dv, sm.dv, c.problem);
    if (has_two_keys) RC_ASSERT(max_abs(px.dr) > 0.0);
  }
}

// Per row: sum_j dS_ij = 0 and sum_j dT_ij = 0; dr_i = -Sigma_KV,i^T g_i.
LLA_PROP_FOR_SCALARS(ParallaxBackward, RowInvariants) {
  const Case c = draw_case(CaseLimits{}, Variant::parallax);
  const Problem& p = c.problem;
  const auto in = make_inputs<Scalar>(p, c.seed, c.magnitude);
  const auto dout = make_dout<Scalar>(p, c.seed);
  const auto s = scales_of(p, in);
  const auto grads = backward_with(p, in, dout, BackwardAlgorithm::blocked);
  const double gmax = max_abs(dout);
  Tensor4<Scalar> dr_cov(grads.dr.shape());
  for (const auto& seq : p.sequences()) {
    for (int64_t h = 0; h < p.heads_q; ++h) {
      const int64_t g = p.kv_head(h);
      for (int64_t i = 0; i < seq.q_len; ++i) {
        const auto row = oracle::attention_row(p, in, seq, h, i);
        if (row.empty()) continue;
        const auto rg = oracle::attention_row_grad(p, in, dout, seq, h, i);
        const Scalar sum_ds = std::accumulate(rg.dS.begin(), rg.dS.end(), Scalar(0));
        const Scalar sum_dt = std::accumulate(rg.dT.begin(), rg.dT.end(), Scalar(0));
        const double bound = gradient_consistency_bound<Scalar>(s.cond, gmax * s.grad);
        RC_ASSERT(std::fabs(static_cast<double>(sum_ds)) <= bound);
        RC_ASSERT(std::fabs(static_cast<double>(sum_dt)) <= bound);
        // Sigma_KV^T g = sum_j p_j (k_j - kbar) ((v_j - vbar) . g)
        const int64_t b = seq.batch, l = seq.q_begin + i, D = p.head_dim;
        std::vector<Scalar> kbar(D, 0), vbar(D, 0);
        for (size_t x = 0; x < row.keys.size(); ++x)
          for (int64_t d = 0; d < D; ++d) {
            kbar[d] += row.p[x] * in.k(b, row.keys[x], g, d);
            vbar[d] += row.p[x] * in.v(b, row.keys[x], g, d);
          }
        for (size_t x = 0; x < row.keys.size(); ++x) {
          Scalar vg = 0;
          for (int64_t d = 0; d < D; ++d) vg += (in.v(b, row.keys[x], g, d) - vbar[d]) * dout(b, l, h, d);
          for (int64_t d = 0; d < D; ++d) dr_cov(b, l, h, d) -= row.p[x] * (in.k(b, row.keys[x], g, d) - kbar[d]) * vg;
        }
      }
    }
  }
  check_close("dr vs -Sigma_KV^T g", grads.dr, dr_cov, gradient_consistency_bound<Scalar>(s.cond, gmax * s.grad), p);
}

// The effective weights of each row sum to one, so sum_j dv_j over the keys of a
// (sequence, KV head) equals the sum of g_i over its non-empty rows and query heads.
LLA_PROP_FOR_SCALARS(ParallaxBackward, ValueGradientSumsToUpstreamSum) {
  const Case c = draw_case(CaseLimits{}, draw_variant());
  const Problem& p = c.problem;
  const auto in = make_inputs<Scalar>(p, c.seed, c.magnitude);
  const auto dout = make_dout<Scalar>(p, c.seed);
  const auto s = scales_of(p, in);
  const auto grads = oracle::attention_backward(p, in, dout);
  for (const auto& seq : p.sequences()) {
    for (int64_t g = 0; g < p.heads_kv; ++g) {
      for (int64_t d = 0; d < p.head_dim; ++d) {
        Scalar sum_dv = 0, sum_g = 0;
        for (int64_t j = seq.k_begin; j < seq.k_end; ++j) sum_dv += grads.dv(seq.batch, j, g, d);
        for (int64_t h = g * p.group_size(); h < (g + 1) * p.group_size(); ++h)
          for (int64_t i = 0; i < seq.q_len; ++i)
            if (!p.key_range(seq, i).empty()) sum_g += dout(seq.batch, seq.q_begin + i, h, d);
        const double n = static_cast<double>(seq.q_len * p.group_size() + 1);
        RC_ASSERT(std::fabs(static_cast<double>(sum_dv - sum_g)) <=
                  n * self_consistency_bound<Scalar>(s.cond, max_abs(dout)));
      }
    }
  }
}

// Fixed regression: the t-bar term of dS matters. On a problem with a nonzero
// probe, zeroing the probe spread changes dq (guards against a backward that
// silently reduces to softmax's).
TEST(ParallaxBackwardFixed, ProbeChangesQueryGradient) {
  Problem p;
  p.seqlen_q = p.seqlen_k = 9;
  p.head_dim = 4;
  p.heads_q = 2;
  const auto in = make_inputs<double>(p, 3, Magnitude::normal);
  auto zero_r = in;
  zero_r.r.fill(0.0);
  const auto dout = make_dout<double>(p, 3);
  const auto a = oracle::parallax_backward(p, in, dout);
  const auto b = oracle::parallax_backward(p, zero_r, dout);
  double diff = 0;
  for (int64_t n = 0; n < a.dq.size(); ++n) diff = std::max(diff, std::fabs(a.dq.data()[n] - b.dq.data()[n]));
  EXPECT_GT(diff, 1e-3 * max_abs(a.dq));
}

}  // namespace
}  // namespace lla::test
