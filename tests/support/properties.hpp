#pragma once
// Helpers shared by the property suites.

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "compare.hpp"
#include "data.hpp"
#include "generators.hpp"
#include "lla/oracle/attention.hpp"

// Defines a property template body and registers it once per oracle scalar type:
// double (the oracle) and long double (must compile and pass the same tests).
#define LLA_PROP_FOR_SCALARS(Suite, Name)                              \
  template <class Scalar>                                              \
  void Name##Body();                                                   \
  RC_GTEST_PROP(Suite, Name##Double, ()) { Name##Body<double>(); }     \
  RC_GTEST_PROP(Suite, Name##LongDouble, ()) { Name##Body<long double>(); } \
  template <class Scalar>                                              \
  void Name##Body()

namespace lla::test {

// Rows [l0, l0 + n) of batch entry b as a (1, n, H, D) tensor.
template <class Scalar>
Tensor4<Scalar> slice_rows(const Tensor4<Scalar>& t, int64_t b, int64_t l0, int64_t n) {
  Tensor4<Scalar> out({1, n, t.dim(2), t.dim(3)});
  const int64_t row = t.dim(2) * t.dim(3);
  if (n > 0) std::copy_n(t.data() + t.offset(b, l0, 0, 0), n * row, out.data());
  return out;
}

// Writes a (1, n, H, D) tensor into rows [l0, l0 + n) of batch entry b.
template <class Scalar>
void place_rows(Tensor4<Scalar>& dst, int64_t b, int64_t l0, const Tensor4<Scalar>& src) {
  const int64_t row = dst.dim(2) * dst.dim(3);
  if (src.dim(1) > 0) std::copy_n(src.data(), src.dim(1) * row, dst.data() + dst.offset(b, l0, 0, 0));
}

// The same problem as multi-head attention: K/V heads repeated for every query head.
template <class Scalar>
std::pair<Problem, oracle::AttentionInputs<Scalar>> repeat_kv_heads(const Problem& p,
                                                                    const oracle::AttentionInputs<Scalar>& in) {
  Problem mha = p;
  mha.heads_kv = p.heads_q;
  auto rep = in;
  rep.k = Tensor4<Scalar>({p.batch, p.seqlen_k, p.heads_q, p.head_dim});
  rep.v = rep.k;
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t j = 0; j < p.seqlen_k; ++j)
      for (int64_t h = 0; h < p.heads_q; ++h)
        for (int64_t d = 0; d < p.head_dim; ++d) {
          rep.k(b, j, h, d) = in.k(b, j, p.kv_head(h), d);
          rep.v(b, j, h, d) = in.v(b, j, p.kv_head(h), d);
        }
  return {mha, rep};
}

// One sequence of a packed varlen problem as a dense problem of its own.
template <class Scalar>
std::pair<Problem, oracle::AttentionInputs<Scalar>> sequence_alone(const Problem& p,
                                                                   const oracle::AttentionInputs<Scalar>& in,
                                                                   const Sequence& seq) {
  Problem alone = p;
  alone.cu_seqlens_q.clear();
  alone.cu_seqlens_k.clear();
  alone.seqlen_q = seq.q_len;
  alone.seqlen_k = seq.k_end - seq.k_begin;
  oracle::AttentionInputs<Scalar> part{slice_rows(in.q, 0, seq.q_begin, seq.q_len),
                                       slice_rows(in.k, 0, seq.k_begin, alone.seqlen_k),
                                       slice_rows(in.v, 0, seq.k_begin, alone.seqlen_k),
                                       in.r.dim(0) == 0 ? Tensor4<Scalar>() : slice_rows(in.r, 0, seq.q_begin, seq.q_len)};
  return {alone, part};
}

template <class Scalar>
oracle::ForwardResult<Scalar> forward_with(const Problem& p, const oracle::AttentionInputs<Scalar>& in,
                                           oracle::ForwardAlgorithm a, int64_t row_block = 64,
                                           int64_t kv_tile = 64) {
  return oracle::attention_forward(p, in, oracle::ForwardOptions{a, row_block, kv_tile});
}

template <class Scalar>
oracle::Gradients<Scalar> backward_with(const Problem& p, const oracle::AttentionInputs<Scalar>& in,
                                        const Tensor4<Scalar>& dout, oracle::BackwardAlgorithm a,
                                        int64_t row_block = 64) {
  return oracle::attention_backward(p, in, dout, oracle::BackwardOptions{a, row_block});
}

// The tolerance scales of the quantities of one problem (tolerance.hpp).
struct Scales {
  AttentionCondition cond;
  double v = 0;     // max|v|: the natural size of outputs
  double grad = 0;  // the natural size of gradients for a unit upstream gradient
};

template <class Scalar>
Scales scales_of(const Problem& p, const oracle::AttentionInputs<Scalar>& in) {
  Scales s{attention_condition(p, in), std::max(max_abs(in.v), 1e-300), 0};
  // dq = c sum_j dS_ij k_j with dS ~ p (g.v)(1 + |t - tbar|), and likewise for dk,
  // dr; dv ~ g (1 + |t - tbar|). Per unit of max|g|:
  const double qkr = std::max({max_abs(in.q), max_abs(in.k), in.r.empty() ? 0.0 : max_abs(in.r)});
  const double c = std::max(std::fabs(p.softmax_scale()), 1.0);
  s.grad = 1.0 + static_cast<double>(p.head_dim) * s.v * qkr * c;
  return s;
}

// Compares two forward results of the same problem under the self-consistency rule.
template <class Scalar, class Other>
void check_forward_consistent(const std::string& label, const oracle::ForwardResult<Scalar>& a,
                              const oracle::ForwardResult<Other>& b, const Problem& p, const Scales& s) {
  check_close(label + " o", a.o, b.o, self_consistency_bound<Scalar>(s.cond, s.v), p);
  check_close(label + " vbar", a.vbar, b.vbar, self_consistency_bound<Scalar>(s.cond, s.v), p);
  check_close(label + " lse", a.stats.lse, b.stats.lse, self_consistency_bound<Scalar>(s.cond, 1.0), p);
  check_close(label + " tbar", a.stats.tbar, b.stats.tbar,
              self_consistency_bound<Scalar>(s.cond, 1.0 + s.cond.probe_abs), p);
}

template <class Scalar, class Other>
void check_gradients_consistent(const std::string& label, const oracle::Gradients<Scalar>& a,
                                const oracle::Gradients<Other>& b, const Problem& p, const Scales& s) {
  const double gmax = std::max({max_abs(b.dq), max_abs(b.dk), max_abs(b.dv)});
  auto one = [&](const char* name, const auto& x, const auto& y) {
    // Rounding noise scales with the largest gradient entry, or with the natural
    // size when the reference vanishes (e.g. dk with one key per row is exactly 0).
    const double scale = std::max({max_abs(y), gmax, 1e-300});
    check_close(label + " " + name, x, y, gradient_consistency_bound<Scalar>(s.cond, scale), p);
  };
  one("dq", a.dq, b.dq);
  one("dk", a.dk, b.dk);
  one("dv", a.dv, b.dv);
  if (!b.dr.empty()) one("dr", a.dr, b.dr);
}

inline bool has_empty_row(const Problem& p) {
  for (const auto& seq : p.sequences())
    for (int64_t i = 0; i < seq.q_len; ++i)
      if (p.key_range(seq, i).empty()) return true;
  return false;
}

}  // namespace lla::test
