#pragma once
// The oracle for softmax attention and Parallax (math contract: docs/math.md).
//
//   s_ij = c q_i.k_j   (masked keys are simply not visited: no sentinel values)
//   t_ij =   r_i.k_j   (Parallax only; unscaled and never masked)
//   p_ij = exp(s_ij - m_i) / d1_i,   tbar_i = sum_j p_ij t_ij
//   softmax : o_i = sum_j p_ij v_j
//   Parallax: o_i = sum_j p_ij (1 + tbar_i - t_ij) v_j
//
// Templated on the scalar type: double is the oracle, long double (and later
// multiprecision types) bound its own rounding error, lower precisions serve as
// baselines. Every entry point validates the Problem and the tensor shapes first.
//
// Softmax and Parallax share one implementation with a runtime flag for the probe
// branch (r, t, P2 = P o t, O2); the "r = 0 equals softmax" property test checks that
// the probe branch degenerates exactly.
//
// Keys outside a row's valid range are never read by any path, so NaN/Inf stored in
// unused cache slots or padding cannot reach the results (tested).

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "lla/oracle/detail/views.hpp"
#include "lla/oracle/types.hpp"

namespace lla::oracle {

// One query row written out key by key: the building block of the plain path and
// the object the tests inspect (weights, row sums, dS/dT invariants).
template <class Scalar>
struct AttentionRow {
  std::vector<int64_t> keys;  // visible keys, on the L axis of k
  std::vector<Scalar> s;      // scaled logits
  std::vector<Scalar> t;      // probe scores r.k (all zero for softmax)
  std::vector<Scalar> p;      // softmax probabilities
  std::vector<Scalar> weights;  // effective weights: o = sum_j weights_j v_j (sum to 1)
  Scalar row_max = -std::numeric_limits<Scalar>::infinity();
  Scalar d1 = 0;    // sum_j exp(s_j - row_max)
  Scalar tbar = 0;  // sum_j p_j t_j
  bool empty() const { return keys.empty(); }
};

// Gradients of the loss with respect to the logits of one row, given g = dL/do_i.
template <class Scalar>
struct AttentionRowGrad {
  std::vector<Scalar> dS;  // dL/ds_ij
  std::vector<Scalar> dT;  // dL/dt_ij (Parallax; zero for softmax)
};

namespace detail {

inline bool has_probe(Variant v) {
  if (v == Variant::lla) {
    throw ProblemError("the softmax/Parallax oracle was called with variant lla; use the LLA oracle");
  }
  return v == Variant::parallax;
}

template <class Scalar>
void check_inputs(const Problem& problem, const AttentionInputs<Scalar>& in, bool probe) {
  problem.validate();
  check_shape(in.q, q_shape(problem), "q", problem);
  check_shape(in.k, kv_shape(problem), "k", problem);
  check_shape(in.v, kv_shape(problem), "v", problem);
  if (probe) check_shape(in.r, q_shape(problem), "r", problem);
}

template <class Scalar>
Scalar dot(const Tensor4<Scalar>& a, int64_t ba, int64_t la, int64_t ha, const Tensor4<Scalar>& b, int64_t bb,
           int64_t lb, int64_t hb) {
  const int64_t D = a.dim(3);
  const Scalar* x = a.data() + a.offset(ba, la, ha, 0);
  const Scalar* y = b.data() + b.offset(bb, lb, hb, 0);
  Scalar acc = 0;
  for (int64_t d = 0; d < D; ++d) acc += x[d] * y[d];
  return acc;
}

template <class Scalar>
ForwardResult<Scalar> allocate_forward(const Problem& p) {
  const Scalar neg_inf = -std::numeric_limits<Scalar>::infinity();
  ForwardResult<Scalar> out;
  out.o = Tensor4<Scalar>(q_shape(p));
  out.vbar = Tensor4<Scalar>(q_shape(p));
  out.stats.row_max = Tensor3<Scalar>(row_shape(p), neg_inf);
  out.stats.d1 = Tensor3<Scalar>(row_shape(p));
  out.stats.lse = Tensor3<Scalar>(row_shape(p), neg_inf);
  out.stats.tbar = Tensor3<Scalar>(row_shape(p));
  return out;
}

// The keys visited by a block of rows: the union of their (contiguous, monotone)
// ranges. Returns an empty range when every row of the block is empty.
inline KeyRange block_key_range(const std::vector<KeyRange>& ranges) {
  KeyRange u{std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()};
  for (const auto& r : ranges) {
    if (r.empty()) continue;
    u.begin = std::min(u.begin, r.begin);
    u.end = std::max(u.end, r.end);
  }
  if (u.end < u.begin) return KeyRange{0, 0};
  return u;
}

// Stores the finished statistics and output of one row.
template <class Scalar, class ORow, class VbarRow>
void store_row(ForwardResult<Scalar>& out, const Sequence& seq, int64_t h, int64_t row, Scalar m, Scalar d1,
               Scalar tbar, const ORow& o, const VbarRow& vbar) {
  using std::log;
  const int64_t l = seq.q_begin + row;
  out.stats.row_max(seq.batch, l, h) = m;
  out.stats.d1(seq.batch, l, h) = d1;
  out.stats.lse(seq.batch, l, h) = m + log(d1);
  out.stats.tbar(seq.batch, l, h) = tbar;
  rows(out.o, seq.batch, h, l, 1) = o;
  rows(out.vbar, seq.batch, h, l, 1) = vbar;
}

// Final combination. Parallax: o = (O1/d1)(1 + d2/d1) - O2/d1; softmax: o = O1/d1.
template <class Scalar, class Row1, class Row2>
RowMatrix<Scalar> combine(bool probe, const Row1& O1, const Row2& O2, Scalar d1, Scalar d2) {
  if (!probe) return O1 / d1;
  return (O1 / d1) * (Scalar(1) + d2 / d1) - O2 / d1;
}

template <class Scalar>
class AttentionOracle {
 public:
  AttentionOracle(const Problem& problem, const AttentionInputs<Scalar>& in, bool probe)
      : p_(problem), in_(in), probe_(probe), c_(static_cast<Scalar>(problem.softmax_scale())) {}

  AttentionRow<Scalar> row(const Sequence& seq, int64_t h, int64_t i) const {
    using std::exp;
    AttentionRow<Scalar> out;
    const int64_t g = p_.kv_head(h), b = seq.batch, l = seq.q_begin + i;
    for (int64_t j = 0; j < p_.seqlen_k; ++j) {
      if (p_.key_visible(seq, i, j)) out.keys.push_back(j);
    }
    if (out.empty()) return out;
    for (int64_t j : out.keys) {
      out.s.push_back(c_ * dot(in_.q, b, l, h, in_.k, b, j, g));
      out.t.push_back(probe_ ? dot(in_.r, b, l, h, in_.k, b, j, g) : Scalar(0));
      out.row_max = std::max(out.row_max, out.s.back());
    }
    for (Scalar s : out.s) {
      out.p.push_back(exp(s - out.row_max));
      out.d1 += out.p.back();
    }
    for (size_t n = 0; n < out.keys.size(); ++n) {
      out.p[n] /= out.d1;
      out.tbar += out.p[n] * out.t[n];
    }
    for (size_t n = 0; n < out.keys.size(); ++n) {
      out.weights.push_back(out.p[n] * (Scalar(1) + out.tbar - out.t[n]));
    }
    return out;
  }

  // dS and dT of one row (spec: docs/math.md, "Backward").
  AttentionRowGrad<Scalar> row_grad(const Sequence& seq, int64_t h, int64_t i, const AttentionRow<Scalar>& row,
                                    const Tensor4<Scalar>& dout) const {
    AttentionRowGrad<Scalar> out;
    if (row.empty()) return out;
    const int64_t g = p_.kv_head(h), b = seq.batch, l = seq.q_begin + i;
    const size_t n = row.keys.size();
    std::vector<Scalar> a(n);  // a_j = g.v_j
    for (size_t x = 0; x < n; ++x) a[x] = dot(dout, b, l, h, in_.v, b, row.keys[x], g);
    // T = g.o with o = sum_j weights_j v_j; bterm = g.vbar with vbar = sum_j p_j v_j.
    Scalar T = 0, bterm = 0;
    for (size_t x = 0; x < n; ++x) {
      T += row.weights[x] * a[x];
      bterm += row.p[x] * a[x];
    }
    for (size_t x = 0; x < n; ++x) {
      const Scalar centred_t = row.tbar - row.t[x];
      out.dS.push_back(row.p[x] * ((a[x] - T) + (probe_ ? centred_t * (a[x] - bterm) : Scalar(0))));
      out.dT.push_back(probe_ ? -row.p[x] * (a[x] - bterm) : Scalar(0));
    }
    return out;
  }

  // Two-pass definition, one row and one key at a time.
  ForwardResult<Scalar> forward_plain() const {
    using std::exp;
    auto out = allocate_forward<Scalar>(p_);
    const int64_t D = p_.head_dim;
    for (const auto& seq : p_.sequences()) {
      for (int64_t h = 0; h < p_.heads_q; ++h) {
        const int64_t g = p_.kv_head(h);
        for (int64_t i = 0; i < seq.q_len; ++i) {
          const int64_t b = seq.batch, l = seq.q_begin + i;
          // Pass 1: the row max over visible keys.
          Scalar m = -std::numeric_limits<Scalar>::infinity();
          bool any = false;
          for (int64_t j = 0; j < p_.seqlen_k; ++j) {
            if (!p_.key_visible(seq, i, j)) continue;
            m = std::max(m, c_ * dot(in_.q, b, l, h, in_.k, b, j, g));
            any = true;
          }
          if (!any) continue;  // empty row: o = 0, lse = -inf (already set)
          // Pass 2: the four sums of the definition.
          Scalar d1 = 0, d2 = 0;
          RowMatrix<Scalar> O1 = RowMatrix<Scalar>::Zero(1, D), O2 = RowMatrix<Scalar>::Zero(1, D);
          for (int64_t j = 0; j < p_.seqlen_k; ++j) {
            if (!p_.key_visible(seq, i, j)) continue;
            const Scalar w = exp(c_ * dot(in_.q, b, l, h, in_.k, b, j, g) - m);
            const auto vj = rows(in_.v, b, g, j, 1);
            d1 += w;
            O1 += w * vj;
            if (probe_) {
              const Scalar t = dot(in_.r, b, l, h, in_.k, b, j, g);
              d2 += w * t;
              O2 += (w * t) * vj;
            }
          }
          store_row(out, seq, h, i, m, d1, d2 / d1, combine<Scalar>(probe_, O1, O2, d1, d2), O1 / d1);
        }
      }
    }
    return out;
  }

  // Two-pass definition over blocks of rows with matrix products.
  ForwardResult<Scalar> forward_blocked(int64_t row_block) const {
    using std::exp;
    auto out = allocate_forward<Scalar>(p_);
    for_each_block(row_block, [&](const Sequence& seq, int64_t h, int64_t i0, const std::vector<KeyRange>& ranges,
                                  KeyRange u) {
      const int64_t nr = static_cast<int64_t>(ranges.size()), nk = u.size(), g = p_.kv_head(h), b = seq.batch;
      const auto Q = rows(in_.q, b, h, seq.q_begin + i0, nr);
      const auto K = rows(in_.k, b, g, u.begin, nk);
      const auto V = rows(in_.v, b, g, u.begin, nk);
      const RowMatrix<Scalar> S = c_ * (Q * K.transpose());
      RowMatrix<Scalar> P = RowMatrix<Scalar>::Zero(nr, nk);
      Vector<Scalar> m(nr), d1(nr);
      for (int64_t x = 0; x < nr; ++x) {
        if (ranges[x].empty()) continue;
        const int64_t off = ranges[x].begin - u.begin, len = ranges[x].size();
        m(x) = S.row(x).segment(off, len).maxCoeff();
        P.row(x).segment(off, len) = (S.row(x).segment(off, len).array() - m(x)).exp().matrix();
        d1(x) = P.row(x).sum();
      }
      const RowMatrix<Scalar> O1 = P * V;
      RowMatrix<Scalar> O2 = RowMatrix<Scalar>::Zero(nr, p_.head_dim);
      Vector<Scalar> d2 = Vector<Scalar>::Zero(nr);
      if (probe_) {
        const auto R = rows(in_.r, b, h, seq.q_begin + i0, nr);
        const RowMatrix<Scalar> P2 = P.cwiseProduct(R * K.transpose());
        O2 = P2 * V;
        d2 = P2.rowwise().sum();
      }
      for (int64_t x = 0; x < nr; ++x) {
        if (ranges[x].empty()) continue;
        store_row(out, seq, h, i0 + x, m(x), d1(x), d2(x) / d1(x),
                  combine<Scalar>(probe_, O1.row(x), O2.row(x), d1(x), d2(x)), O1.row(x) / d1(x));
      }
    });
    return out;
  }

  // Streaming form over KV tiles: running max m, rescale alpha = exp(m_old - m_new);
  // m_safe avoids (-inf) - (-inf) while a row has seen no valid key yet.
  ForwardResult<Scalar> forward_online(int64_t row_block, int64_t kv_tile) const {
    using std::exp;
    const Scalar neg_inf = -std::numeric_limits<Scalar>::infinity();
    auto out = allocate_forward<Scalar>(p_);
    const int64_t D = p_.head_dim;
    for_each_block(row_block, [&](const Sequence& seq, int64_t h, int64_t i0, const std::vector<KeyRange>& ranges,
                                  KeyRange u) {
      const int64_t nr = static_cast<int64_t>(ranges.size()), g = p_.kv_head(h), b = seq.batch;
      const auto Q = rows(in_.q, b, h, seq.q_begin + i0, nr);
      Vector<Scalar> m = Vector<Scalar>::Constant(nr, neg_inf), d1 = Vector<Scalar>::Zero(nr),
                     d2 = Vector<Scalar>::Zero(nr);
      RowMatrix<Scalar> O1 = RowMatrix<Scalar>::Zero(nr, D), O2 = RowMatrix<Scalar>::Zero(nr, D);
      for (int64_t t0 = u.begin; t0 < u.end; t0 += kv_tile) {
        const int64_t nt = std::min(kv_tile, u.end - t0);
        const auto K = rows(in_.k, b, g, t0, nt);
        const auto V = rows(in_.v, b, g, t0, nt);
        const RowMatrix<Scalar> S1 = c_ * (Q * K.transpose());
        // Masked logits count as -inf: they leave the max alone and get P1 = 0. The
        // exponential is taken only over each row's valid keys of the tile because
        // Eigen's vectorised exp clamps its argument (exp(-inf) would come out as
        // ~1e-308, not 0).
        RowMatrix<Scalar> P1 = RowMatrix<Scalar>::Zero(nr, nt);
        Vector<Scalar> alpha(nr);
        for (int64_t x = 0; x < nr; ++x) {
          const int64_t lo = std::max(ranges[x].begin, t0), hi = std::min(ranges[x].end, t0 + nt);
          const Scalar tile_max = hi > lo ? S1.row(x).segment(lo - t0, hi - lo).maxCoeff() : neg_inf;
          const Scalar m_new = std::max(m(x), tile_max);
          const Scalar m_safe = (m_new == neg_inf) ? Scalar(0) : m_new;
          alpha(x) = exp(m(x) - m_safe);
          if (hi > lo) {
            P1.row(x).segment(lo - t0, hi - lo) =
                (S1.row(x).segment(lo - t0, hi - lo).array() - m_safe).exp().matrix();
          }
          m(x) = m_new;
        }
        d1 = alpha.cwiseProduct(d1) + P1.rowwise().sum();
        O1 = alpha.asDiagonal() * O1 + P1 * V;
        if (probe_) {
          const auto R = rows(in_.r, b, h, seq.q_begin + i0, nr);
          const RowMatrix<Scalar> P2 = P1.cwiseProduct(R * K.transpose());
          d2 = alpha.cwiseProduct(d2) + P2.rowwise().sum();
          O2 = alpha.asDiagonal() * O2 + P2 * V;
        }
      }
      for (int64_t x = 0; x < nr; ++x) {
        if (d1(x) == Scalar(0)) continue;  // no valid key: the empty-row contract
        store_row(out, seq, h, i0 + x, m(x), d1(x), d2(x) / d1(x),
                  combine<Scalar>(probe_, O1.row(x), O2.row(x), d1(x), d2(x)), O1.row(x) / d1(x));
      }
    });
    return out;
  }

  Gradients<Scalar> allocate_gradients() const {
    Gradients<Scalar> gr;
    gr.dq = Tensor4<Scalar>(q_shape(p_));
    gr.dk = Tensor4<Scalar>(kv_shape(p_));
    gr.dv = Tensor4<Scalar>(kv_shape(p_));
    if (probe_) gr.dr = Tensor4<Scalar>(q_shape(p_));
    return gr;
  }

  // Per row, per key: dS, dT from row_grad(), then the four outer-product sums.
  Gradients<Scalar> backward_plain(const Tensor4<Scalar>& dout) const {
    auto gr = allocate_gradients();
    for (const auto& seq : p_.sequences()) {
      for (int64_t h = 0; h < p_.heads_q; ++h) {
        const int64_t g = p_.kv_head(h), b = seq.batch;
        for (int64_t i = 0; i < seq.q_len; ++i) {
          const int64_t l = seq.q_begin + i;
          const auto r = row(seq, h, i);
          const auto grad = row_grad(seq, h, i, r, dout);
          auto dq = rows(gr.dq, b, h, l, 1);
          const auto qi = rows(in_.q, b, h, l, 1);
          const auto gi = rows(dout, b, h, l, 1);
          for (size_t x = 0; x < r.keys.size(); ++x) {
            const int64_t j = r.keys[x];
            const auto kj = rows(in_.k, b, g, j, 1);
            dq += (c_ * grad.dS[x]) * kj;
            rows(gr.dk, b, g, j, 1) += (c_ * grad.dS[x]) * qi;
            rows(gr.dv, b, g, j, 1) += r.weights[x] * gi;
            if (probe_) {
              rows(gr.dr, b, h, l, 1) += grad.dT[x] * kj;
              rows(gr.dk, b, g, j, 1) += grad.dT[x] * rows(in_.r, b, h, l, 1);
            }
          }
        }
      }
    }
    return gr;
  }

  // The same formulas as matrix products over blocks of rows.
  Gradients<Scalar> backward_blocked(const Tensor4<Scalar>& dout, int64_t row_block) const {
    using std::exp;
    auto gr = allocate_gradients();
    for_each_block(row_block, [&](const Sequence& seq, int64_t h, int64_t i0, const std::vector<KeyRange>& ranges,
                                  KeyRange u) {
      const int64_t nr = static_cast<int64_t>(ranges.size()), nk = u.size(), g = p_.kv_head(h), b = seq.batch;
      const int64_t l0 = seq.q_begin + i0;
      const auto Q = rows(in_.q, b, h, l0, nr);
      const auto K = rows(in_.k, b, g, u.begin, nk);
      const auto V = rows(in_.v, b, g, u.begin, nk);
      const auto G = rows(dout, b, h, l0, nr);
      const RowMatrix<Scalar> S = c_ * (Q * K.transpose());
      RowMatrix<Scalar> P = RowMatrix<Scalar>::Zero(nr, nk);
      for (int64_t x = 0; x < nr; ++x) {
        if (ranges[x].empty()) continue;
        const int64_t off = ranges[x].begin - u.begin, len = ranges[x].size();
        const Scalar m = S.row(x).segment(off, len).maxCoeff();
        P.row(x).segment(off, len) = (S.row(x).segment(off, len).array() - m).exp().matrix();
        P.row(x) /= P.row(x).sum();
      }
      RowMatrix<Scalar> Tm, E = P;  // E: effective weights
      Vector<Scalar> tbar;
      if (probe_) {
        const auto R = rows(in_.r, b, h, l0, nr);
        Tm = R * K.transpose();
        tbar = P.cwiseProduct(Tm).rowwise().sum();
        for (int64_t x = 0; x < nr; ++x) {
          E.row(x) = P.row(x).cwiseProduct(((Scalar(1) + tbar(x)) - Tm.row(x).array()).matrix());
        }
      }
      const RowMatrix<Scalar> O = E * V, A = G * V.transpose();
      const RowMatrix<Scalar> vbar = probe_ ? RowMatrix<Scalar>(P * V) : O;  // softmax: E = P
      const Vector<Scalar> T = G.cwiseProduct(O).rowwise().sum();
      const Vector<Scalar> bterm = G.cwiseProduct(vbar).rowwise().sum();
      RowMatrix<Scalar> dS(nr, nk), dT;
      if (probe_) dT.resize(nr, nk);
      for (int64_t x = 0; x < nr; ++x) {
        const auto a = A.row(x).array();
        if (probe_) {
          const auto centred_t = tbar(x) - Tm.row(x).array();
          dS.row(x) = (P.row(x).array() * ((a - T(x)) + centred_t * (a - bterm(x)))).matrix();
          dT.row(x) = (-P.row(x).array() * (a - bterm(x))).matrix();
        } else {
          dS.row(x) = (P.row(x).array() * (a - T(x))).matrix();
        }
      }
      rows(gr.dq, b, h, l0, nr) = c_ * (dS * K);
      rows(gr.dk, b, g, u.begin, nk) += c_ * (dS.transpose() * Q);
      rows(gr.dv, b, g, u.begin, nk) += E.transpose() * G;
      if (probe_) {
        const auto R = rows(in_.r, b, h, l0, nr);
        rows(gr.dr, b, h, l0, nr) = dT * K;
        rows(gr.dk, b, g, u.begin, nk) += dT.transpose() * R;
      }
    });
    return gr;
  }

 private:
  // Calls fn(seq, head, first_row, ranges_of_rows, union_of_ranges) for every block
  // of up to row_block rows that has at least one visible key.
  template <class Fn>
  void for_each_block(int64_t row_block, Fn&& fn) const {
    if (row_block < 1) throw ProblemError("row_block must be >= 1, got " + std::to_string(row_block));
    for (const auto& seq : p_.sequences()) {
      for (int64_t h = 0; h < p_.heads_q; ++h) {
        for (int64_t i0 = 0; i0 < seq.q_len; i0 += row_block) {
          const int64_t nr = std::min(row_block, seq.q_len - i0);
          std::vector<KeyRange> ranges;
          for (int64_t x = 0; x < nr; ++x) ranges.push_back(p_.key_range(seq, i0 + x));
          const KeyRange u = block_key_range(ranges);
          if (u.empty()) continue;
          fn(seq, h, i0, ranges, u);
        }
      }
    }
  }

  const Problem& p_;
  const AttentionInputs<Scalar>& in_;
  bool probe_;
  Scalar c_;
};

template <class Scalar>
ForwardResult<Scalar> forward(Variant variant, const Problem& problem, const AttentionInputs<Scalar>& in,
                              const ForwardOptions& opt) {
  const bool probe = has_probe(variant);
  check_inputs(problem, in, probe);
  const AttentionOracle<Scalar> oracle(problem, in, probe);
  switch (opt.algorithm) {
    case ForwardAlgorithm::plain: return oracle.forward_plain();
    case ForwardAlgorithm::blocked: return oracle.forward_blocked(opt.row_block);
    case ForwardAlgorithm::online:
      if (opt.kv_tile < 1) throw ProblemError("kv_tile must be >= 1, got " + std::to_string(opt.kv_tile));
      return oracle.forward_online(opt.row_block, opt.kv_tile);
  }
  throw ProblemError("unknown forward algorithm");
}

template <class Scalar>
Gradients<Scalar> backward(Variant variant, const Problem& problem, const AttentionInputs<Scalar>& in,
                           const Tensor4<Scalar>& dout, const BackwardOptions& opt) {
  const bool probe = has_probe(variant);
  check_inputs(problem, in, probe);
  check_shape(dout, q_shape(problem), "dout", problem);
  const AttentionOracle<Scalar> oracle(problem, in, probe);
  switch (opt.algorithm) {
    case BackwardAlgorithm::plain: return oracle.backward_plain(dout);
    case BackwardAlgorithm::blocked: return oracle.backward_blocked(dout, opt.row_block);
  }
  throw ProblemError("unknown backward algorithm");
}

}  // namespace detail

// ---------------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------------

template <class Scalar>
ForwardResult<Scalar> softmax_forward(const Problem& problem, const AttentionInputs<Scalar>& in,
                                      const ForwardOptions& opt = {}) {
  return detail::forward(Variant::softmax, problem, in, opt);
}

template <class Scalar>
ForwardResult<Scalar> parallax_forward(const Problem& problem, const AttentionInputs<Scalar>& in,
                                       const ForwardOptions& opt = {}) {
  return detail::forward(Variant::parallax, problem, in, opt);
}

// dout = dL/do, shape of q. Returns dq, dk, dv (and dr for Parallax). Empty rows
// contribute nothing.
template <class Scalar>
Gradients<Scalar> softmax_backward(const Problem& problem, const AttentionInputs<Scalar>& in,
                                   const Tensor4<Scalar>& dout, const BackwardOptions& opt = {}) {
  return detail::backward(Variant::softmax, problem, in, dout, opt);
}

template <class Scalar>
Gradients<Scalar> parallax_backward(const Problem& problem, const AttentionInputs<Scalar>& in,
                                    const Tensor4<Scalar>& dout, const BackwardOptions& opt = {}) {
  return detail::backward(Variant::parallax, problem, in, dout, opt);
}

// Dispatch on problem.variant (softmax or parallax).
template <class Scalar>
ForwardResult<Scalar> attention_forward(const Problem& problem, const AttentionInputs<Scalar>& in,
                                        const ForwardOptions& opt = {}) {
  return detail::forward(problem.variant, problem, in, opt);
}
template <class Scalar>
Gradients<Scalar> attention_backward(const Problem& problem, const AttentionInputs<Scalar>& in,
                                     const Tensor4<Scalar>& dout, const BackwardOptions& opt = {}) {
  return detail::backward(problem.variant, problem, in, dout, opt);
}

// One row of the given sequence and query head, written out key by key.
template <class Scalar>
AttentionRow<Scalar> attention_row(const Problem& problem, const AttentionInputs<Scalar>& in, const Sequence& seq,
                                   int64_t head, int64_t row) {
  const bool probe = detail::has_probe(problem.variant);
  detail::check_inputs(problem, in, probe);
  return detail::AttentionOracle<Scalar>(problem, in, probe).row(seq, head, row);
}

template <class Scalar>
AttentionRowGrad<Scalar> attention_row_grad(const Problem& problem, const AttentionInputs<Scalar>& in,
                                            const Tensor4<Scalar>& dout, const Sequence& seq, int64_t head,
                                            int64_t row) {
  const bool probe = detail::has_probe(problem.variant);
  detail::check_inputs(problem, in, probe);
  detail::check_shape(dout, detail::q_shape(problem), "dout", problem);
  const detail::AttentionOracle<Scalar> oracle(problem, in, probe);
  return oracle.row_grad(seq, head, row, oracle.row(seq, head, row), dout);
}

}  // namespace lla::oracle
