// Forward properties of the softmax and Parallax oracle (docs/math.md).
#include <numeric>

#include "support/properties.hpp"

namespace lla::test {
namespace {

using oracle::ForwardAlgorithm;

Variant draw_variant() {
  return *rc::gen::element(Variant::parallax, Variant::parallax, Variant::softmax);
}

// The three evaluation orders agree: plain two-pass (predicate masks), blocked
// two-pass (interval masks, matrix products), online (running max over KV tiles,
// any tile size, including 1 and sizes that do not divide the length).
LLA_PROP_FOR_SCALARS(ParallaxForward, AllAlgorithmsAgree) {
  const Case c = draw_case(CaseLimits{}, draw_variant());
  const auto in = make_inputs<Scalar>(c.problem, c.seed, c.magnitude);
  const int64_t row_block = *rc::gen::element<int64_t>(1, 2, 3, 7, 16, 64).as("row_block");
  const int64_t kv_tile = *rc::gen::element<int64_t>(1, 2, 5, 16, 64).as("kv_tile");
  const auto s = scales_of(c.problem, in);
  const auto plain = forward_with(c.problem, in, ForwardAlgorithm::plain);
  const auto blocked = forward_with(c.problem, in, ForwardAlgorithm::blocked, row_block);
  const auto online = forward_with(c.problem, in, ForwardAlgorithm::online, row_block, kv_tile);
  check_forward_consistent("blocked vs plain", blocked, plain, c.problem, s);
  check_forward_consistent("online vs two-pass", online, blocked, c.problem, s);
  RC_CLASSIFY(has_empty_row(c.problem), "has empty rows");
  RC_CLASSIFY(c.problem.seqlen_q != c.problem.seqlen_k, "Lq != Lk");
}

// The fp64 oracle agrees with the same code run in long double within the bound
// its condition estimate predicts: the oracle's own rounding error is small.
RC_GTEST_PROP(ParallaxForward, DoubleAgreesWithLongDouble, ()) {
  const Case c = draw_case(CaseLimits{}, draw_variant());
  const auto in = make_inputs<long double>(c.problem, c.seed, c.magnitude);
  const auto in_d = oracle::cast_inputs<double>(in);
  const auto s = scales_of(c.problem, in);
  const auto precise = forward_with(c.problem, in, ForwardAlgorithm::plain);
  const auto fast = forward_with(c.problem, in_d, ForwardAlgorithm::blocked);
  check_forward_consistent("double vs long double", fast, precise, c.problem, s);
}

// r = 0 reproduces softmax attention exactly (bitwise), on every path.
LLA_PROP_FOR_SCALARS(ParallaxForward, ZeroProbeIsSoftmaxExactly) {
  Case c = draw_case(CaseLimits{}, Variant::parallax);
  auto in = make_inputs<Scalar>(c.problem, c.seed, c.magnitude);
  in.r.fill(Scalar(0));
  Problem softmax = c.problem;
  softmax.variant = Variant::softmax;
  for (auto a : {ForwardAlgorithm::plain, ForwardAlgorithm::blocked, ForwardAlgorithm::online}) {
    const auto px = forward_with(c.problem, in, a, 5, 3);
    const auto sm = forward_with(softmax, in, a, 5, 3);
    check_identical(std::string("o ") + oracle::to_string(a), px.o, sm.o, c.problem);
    check_identical(std::string("lse ") + oracle::to_string(a), px.stats.lse, sm.stats.lse, c.problem);
  }
}

// The effective weights p_ij (1 + tbar_i - t_ij) of every row sum to one, the
// probabilities sum to one, and o_i = sum_j weight_ij v_j.
LLA_PROP_FOR_SCALARS(ParallaxForward, EffectiveWeightsSumToOne) {
  const Case c = draw_case(CaseLimits{}, Variant::parallax);
  const Problem& p = c.problem;
  const auto in = make_inputs<Scalar>(p, c.seed, c.magnitude);
  const auto s = scales_of(p, in);
  const auto fwd = forward_with(p, in, ForwardAlgorithm::plain);
  Tensor4<Scalar> from_weights(fwd.o.shape());
  bool negative_weight = false;
  for (const auto& seq : p.sequences()) {
    for (int64_t h = 0; h < p.heads_q; ++h) {
      for (int64_t i = 0; i < seq.q_len; ++i) {
        const auto row = oracle::attention_row(p, in, seq, h, i);
        RC_ASSERT(static_cast<int64_t>(row.keys.size()) == p.key_range(seq, i).size());
        if (row.empty()) continue;
        const Scalar wsum = std::accumulate(row.weights.begin(), row.weights.end(), Scalar(0));
        const Scalar psum = std::accumulate(row.p.begin(), row.p.end(), Scalar(0));
        const double bound = self_consistency_bound<Scalar>(s.cond, 1.0);
        RC_ASSERT(std::fabs(static_cast<double>(wsum - Scalar(1))) <= bound);
        RC_ASSERT(std::fabs(static_cast<double>(psum - Scalar(1))) <= bound);
        for (size_t x = 0; x < row.keys.size(); ++x) {
          negative_weight |= row.weights[x] < Scalar(0);
          for (int64_t d = 0; d < p.head_dim; ++d) {
            from_weights(seq.batch, seq.q_begin + i, h, d) +=
                row.weights[x] * in.v(seq.batch, row.keys[x], p.kv_head(h), d);
          }
        }
      }
    }
  }
  check_close("o vs sum of weighted values", from_weights, fwd.o, self_consistency_bound<Scalar>(s.cond, s.v), p);
  RC_CLASSIFY(negative_weight, "some weight < 0");
}

// A window of at least the key count changes nothing (bitwise).
LLA_PROP_FOR_SCALARS(ParallaxForward, WindowCoveringAllKeysIsNoWindow) {
  Case c = draw_case(CaseLimits{}, draw_variant());
  c.problem.causal = true;
  c.problem.window = 0;
  const auto in = make_inputs<Scalar>(c.problem, c.seed, c.magnitude);
  Problem windowed = c.problem;
  windowed.window = c.problem.seqlen_k + *rc::gen::inRange<int64_t>(0, 3).as("window - Lk");
  if (windowed.window == 0) windowed.window = 1 + c.problem.seqlen_k;  // W <= 0 means "off"
  for (auto a : {ForwardAlgorithm::plain, ForwardAlgorithm::blocked, ForwardAlgorithm::online}) {
    check_identical(std::string("o ") + oracle::to_string(a), forward_with(windowed, in, a).o,
                    forward_with(c.problem, in, a).o, c.problem);
  }
}

// Grouped-query attention equals multi-head attention on explicitly repeated
// K/V heads; dk and dv of a KV head are the sums over its query heads.
LLA_PROP_FOR_SCALARS(ParallaxForward, GqaEqualsRepeatedKvHeads) {
  const Case c = draw_case(CaseLimits{}, draw_variant());
  const Problem& p = c.problem;
  const auto in = make_inputs<Scalar>(p, c.seed, c.magnitude);
  const auto dout = make_dout<Scalar>(p, c.seed);
  const auto [mha, rep] = repeat_kv_heads(p, in);
  const auto s = scales_of(p, in);
  check_forward_consistent("gqa vs repeated", oracle::attention_forward(p, in), oracle::attention_forward(mha, rep), p,
                           s);
  const auto g = oracle::attention_backward(p, in, dout);
  const auto gm = oracle::attention_backward(mha, rep, dout);
  oracle::Gradients<Scalar> folded{gm.dq, Tensor4<Scalar>(g.dk.shape()), Tensor4<Scalar>(g.dv.shape()), gm.dr};
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t j = 0; j < p.seqlen_k; ++j)
      for (int64_t h = 0; h < p.heads_q; ++h)
        for (int64_t d = 0; d < p.head_dim; ++d) {
          folded.dk(b, j, p.kv_head(h), d) += gm.dk(b, j, h, d);
          folded.dv(b, j, p.kv_head(h), d) += gm.dv(b, j, h, d);
        }
  check_gradients_consistent("gqa vs repeated", g, folded, p, s);
  RC_CLASSIFY(p.group_size() > 1, "GQA");
}

// A packed varlen batch equals running each sequence alone (forward and backward).
LLA_PROP_FOR_SCALARS(ParallaxForward, VarlenEqualsEachSequenceAlone) {
  CaseLimits lim;
  lim.force_layout = 2;
  const Case c = draw_case(lim, draw_variant());
  const Problem& p = c.problem;
  const auto in = make_inputs<Scalar>(p, c.seed, c.magnitude);
  const auto dout = make_dout<Scalar>(p, c.seed);
  const auto s = scales_of(p, in);
  const auto fwd = oracle::attention_forward(p, in);
  const auto grad = oracle::attention_backward(p, in, dout);
  oracle::ForwardResult<Scalar> joined = fwd;
  oracle::Gradients<Scalar> gjoined = grad;
  for (const auto& seq : p.sequences()) {
    const auto [alone, part] = sequence_alone(p, in, seq);
    const auto f = oracle::attention_forward(alone, part);
    const auto g = oracle::attention_backward(alone, part, slice_rows(dout, 0, seq.q_begin, seq.q_len));
    place_rows(joined.o, 0, seq.q_begin, f.o);
    place_rows(joined.vbar, 0, seq.q_begin, f.vbar);
    place_rows(gjoined.dq, 0, seq.q_begin, g.dq);
    if (!g.dr.empty()) place_rows(gjoined.dr, 0, seq.q_begin, g.dr);
    place_rows(gjoined.dk, 0, seq.k_begin, g.dk);
    place_rows(gjoined.dv, 0, seq.k_begin, g.dv);
  }
  check_close("varlen o", fwd.o, joined.o, self_consistency_bound<Scalar>(s.cond, s.v), p);
  check_gradients_consistent("varlen", grad, gjoined, p, s);
}

// Decode rows (Lq new tokens, end-aligned, left padding, per-sequence lengths)
// equal the matching rows of a full causal prefill over the sequence's keys.
LLA_PROP_FOR_SCALARS(ParallaxForward, DecodeRowsEqualPrefillRows) {
  CaseLimits lim;
  lim.force_layout = 1;
  Case c = draw_case(lim, draw_variant());
  c.problem.causal = true;  // decode is end-aligned causal attention against the cache
  const Problem& p = c.problem;
  const auto in = make_inputs<Scalar>(p, c.seed, c.magnitude);
  const auto s = scales_of(p, in);
  const auto fwd = oracle::attention_forward(p, in);
  for (const auto& seq : p.sequences()) {
    const int64_t n = seq.k_end - seq.k_begin;
    Problem prefill = p;
    prefill.batch = 1;
    prefill.seqused_k.clear();
    prefill.cache_start.clear();
    prefill.seqlen_q = prefill.seqlen_k = n;
    // Prefill queries: random, except that the last rows are the decode rows.
    auto pin = make_inputs<Scalar>(prefill, c.seed + 17, c.magnitude);
    pin.k = slice_rows(in.k, seq.batch, seq.k_begin, n);
    pin.v = slice_rows(in.v, seq.batch, seq.k_begin, n);
    for (int64_t i = 0; i < seq.q_len; ++i) {
      const int64_t row = n - seq.q_len + i;  // prefill row of decode row i
      if (row < 0) continue;
      place_rows(pin.q, 0, row, slice_rows(in.q, seq.batch, i, 1));
      place_rows(pin.r, 0, row, slice_rows(in.r, seq.batch, i, 1));
    }
    const auto pf = oracle::attention_forward(prefill, pin);
    for (int64_t i = 0; i < seq.q_len; ++i) {
      const int64_t row = n - seq.q_len + i;
      const auto got = slice_rows(fwd.o, seq.batch, i, 1);
      if (row < 0) {  // before the first cached key: an empty row
        check_identical("decode row before the cache", got, Tensor4<Scalar>(got.shape()), p);
        continue;
      }
      check_close("decode vs prefill row", got, slice_rows(pf.o, 0, row, 1),
                  self_consistency_bound<Scalar>(s.cond, s.v), p);
    }
  }
  RC_CLASSIFY(std::any_of(p.cache_start.begin(), p.cache_start.end(), [](int32_t x) { return x > 0; }),
              "left padding");
}

// Permuting the batch and the heads (KV heads, and query heads within and across
// groups consistently) permutes the outputs the same way.
LLA_PROP_FOR_SCALARS(ParallaxForward, PermutingBatchAndHeadsPermutesOutputs) {
  CaseLimits lim;
  lim.varlen = false;
  const Case c = draw_case(lim, draw_variant());
  const Problem& p = c.problem;
  const auto in = make_inputs<Scalar>(p, c.seed, c.magnitude);
  std::vector<int64_t> bperm(p.batch), gperm(p.heads_kv), sperm(p.group_size());
  std::iota(bperm.begin(), bperm.end(), 0);
  std::iota(gperm.begin(), gperm.end(), 0);
  std::iota(sperm.begin(), sperm.end(), 0);
  Rng rng(c.seed);
  auto shuffle = [&](std::vector<int64_t>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(rng.integer(0, i - 1))]);
  };
  shuffle(bperm);
  shuffle(gperm);
  shuffle(sperm);
  const int64_t G = p.group_size();
  auto qhead = [&](int64_t h) { return gperm[h / G] * G + sperm[h % G]; };
  Problem pp = p;
  for (int64_t b = 0; b < p.batch; ++b) {
    if (!p.seqused_k.empty()) pp.seqused_k[bperm[b]] = p.seqused_k[b];
    if (!p.cache_start.empty()) pp.cache_start[bperm[b]] = p.cache_start[b];
  }
  oracle::AttentionInputs<Scalar> pin{Tensor4<Scalar>(in.q.shape()), Tensor4<Scalar>(in.k.shape()),
                                      Tensor4<Scalar>(in.v.shape()), Tensor4<Scalar>(in.r.shape())};
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t l = 0; l < p.seqlen_q; ++l)
      for (int64_t h = 0; h < p.heads_q; ++h)
        for (int64_t d = 0; d < p.head_dim; ++d) {
          pin.q(bperm[b], l, qhead(h), d) = in.q(b, l, h, d);
          pin.r(bperm[b], l, qhead(h), d) = in.r(b, l, h, d);
        }
    for (int64_t l = 0; l < p.seqlen_k; ++l)
      for (int64_t g = 0; g < p.heads_kv; ++g)
        for (int64_t d = 0; d < p.head_dim; ++d) {
          pin.k(bperm[b], l, gperm[g], d) = in.k(b, l, g, d);
          pin.v(bperm[b], l, gperm[g], d) = in.v(b, l, g, d);
        }
  }
  const auto o = oracle::attention_forward(p, in).o;
  const auto po = oracle::attention_forward(pp, pin).o;
  Tensor4<Scalar> expected(o.shape());
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t l = 0; l < p.seqlen_q; ++l)
      for (int64_t h = 0; h < p.heads_q; ++h)
        for (int64_t d = 0; d < p.head_dim; ++d) expected(bperm[b], l, qhead(h), d) = o(b, l, h, d);
  // Each (sequence, head) slice is computed by the same operations: bitwise equal.
  check_identical("permuted o", po, expected, p);
}

// Empty rows (Lq > Lk, empty cache, fully left-padded sequences, sequences with
// no keys) give o = 0, lse = -inf and no gradient; the generator must hit them.
LLA_PROP_FOR_SCALARS(ParallaxForward, EmptyRowsAreZero) {
  const Case c = draw_case(CaseLimits{}, draw_variant());
  const Problem& p = c.problem;
  const auto in = make_inputs<Scalar>(p, c.seed, c.magnitude);
  const auto dout = make_dout<Scalar>(p, c.seed);
  for (auto a : {ForwardAlgorithm::plain, ForwardAlgorithm::blocked, ForwardAlgorithm::online}) {
    const auto f = forward_with(p, in, a, 4, 3);
    for (const auto& seq : p.sequences()) {
      for (int64_t i = 0; i < seq.q_len; ++i) {
        if (!p.key_range(seq, i).empty()) continue;
        for (int64_t h = 0; h < p.heads_q; ++h) {
          const int64_t l = seq.q_begin + i;
          RC_ASSERT(f.stats.lse(seq.batch, l, h) == -std::numeric_limits<Scalar>::infinity());
          RC_ASSERT(f.stats.tbar(seq.batch, l, h) == Scalar(0));
          for (int64_t d = 0; d < p.head_dim; ++d) RC_ASSERT(f.o(seq.batch, l, h, d) == Scalar(0));
        }
      }
    }
    check_all_finite("o", f.o, p);
  }
  for (auto a : {oracle::BackwardAlgorithm::plain, oracle::BackwardAlgorithm::blocked}) {
    const auto g = backward_with(p, in, dout, a, 4);
    for (const auto& seq : p.sequences())
      for (int64_t i = 0; i < seq.q_len; ++i) {
        if (!p.key_range(seq, i).empty()) continue;
        for (int64_t h = 0; h < p.heads_q; ++h)
          for (int64_t d = 0; d < p.head_dim; ++d) {
            RC_ASSERT(g.dq(seq.batch, seq.q_begin + i, h, d) == Scalar(0));
            if (!g.dr.empty()) RC_ASSERT(g.dr(seq.batch, seq.q_begin + i, h, d) == Scalar(0));
          }
      }
    check_all_finite("dk", g.dk, p);
  }
  RC_CLASSIFY(has_empty_row(p), "has empty rows");
}

// NaN in every key/value slot that no row may read leaves every result bitwise
// unchanged, and those slots get zero gradient.
LLA_PROP_FOR_SCALARS(ParallaxForward, UnreadSlotsHoldingNaNChangeNothing) {
  CaseLimits lim;
  lim.varlen = false;
  const Case c = draw_case(lim, draw_variant());
  const Problem& p = c.problem;
  const auto in = make_inputs<Scalar>(p, c.seed, c.magnitude);
  const auto dout = make_dout<Scalar>(p, c.seed);
  auto poisoned = in;
  int64_t poisoned_slots = 0;
  for (const auto& seq : p.sequences()) {
    std::vector<bool> read(static_cast<size_t>(p.seqlen_k), false);
    for (int64_t i = 0; i < seq.q_len; ++i) {
      const auto r = p.key_range(seq, i);
      for (int64_t j = r.begin; j < r.end; ++j) read[static_cast<size_t>(j)] = true;
    }
    for (int64_t j = 0; j < p.seqlen_k; ++j) {
      if (read[static_cast<size_t>(j)]) continue;
      ++poisoned_slots;
      for (int64_t g = 0; g < p.heads_kv; ++g)
        for (int64_t d = 0; d < p.head_dim; ++d) {
          poisoned.k(seq.batch, j, g, d) = std::numeric_limits<Scalar>::quiet_NaN();
          poisoned.v(seq.batch, j, g, d) = std::numeric_limits<Scalar>::quiet_NaN();
        }
    }
  }
  for (auto a : {ForwardAlgorithm::plain, ForwardAlgorithm::blocked, ForwardAlgorithm::online}) {
    check_identical(std::string("poisoned o ") + oracle::to_string(a), forward_with(p, poisoned, a, 3, 2).o,
                    forward_with(p, in, a, 3, 2).o, p);
  }
  for (auto a : {oracle::BackwardAlgorithm::plain, oracle::BackwardAlgorithm::blocked}) {
    const auto clean = backward_with(p, in, dout, a, 3);
    const auto dirty = backward_with(p, poisoned, dout, a, 3);
    check_identical("poisoned dq", dirty.dq, clean.dq, p);
    check_identical("poisoned dk", dirty.dk, clean.dk, p);
    check_identical("poisoned dv", dirty.dv, clean.dv, p);
  }
  RC_CLASSIFY(poisoned_slots > 0, "some slots poisoned");
}

// Logits up to scale*|q.k| ~ 1e4 (and adversarial: the largest logit sits on a
// masked key) stay finite and agree with long double within the bound.
RC_GTEST_PROP(ParallaxForward, LargeLogitsStayFinite, ()) {
  CaseLimits lim;
  lim.max_len = 24;
  lim.odd_dims = false;
  Case c = draw_case(lim, draw_variant());
  const Problem& p = c.problem;
  auto in = make_inputs<long double>(p, c.seed, Magnitude::rms_normed);
  // rms-normed rows have |q.k| <= D; scale so that the largest logit reaches ~target.
  const double target = *rc::gen::element(1e2, 1e3, 1e4).as("max logit");
  const long double a = std::sqrt(target / (std::fabs(p.softmax_scale()) * static_cast<double>(p.head_dim)));
  for (auto& x : in.q) x *= a;
  for (auto& x : in.k) x *= a;
  const auto in_d = oracle::cast_inputs<double>(in);
  const auto s = scales_of(p, in);
  for (auto alg : {ForwardAlgorithm::plain, ForwardAlgorithm::blocked, ForwardAlgorithm::online}) {
    const auto f = forward_with(p, in_d, alg, 5, 3);
    check_all_finite("o", f.o, p);
    check_forward_consistent("large logits vs long double", f, forward_with(p, in, ForwardAlgorithm::plain), p, s);
  }
  const auto g = oracle::attention_backward(p, in_d, make_dout<double>(p, c.seed));
  check_all_finite("dq", g.dq, p);
  check_all_finite("dk", g.dk, p);
  check_all_finite("dv", g.dv, p);
}

// Fixed odd shapes the property sizes do not reach: D in {1, 60, 100}, L in
// {1, 63, 111, 1000}, Lq != Lk both ways, windows off the power-of-two grid.
struct OddShape {
  int64_t lq, lk, d, window;
  bool causal;
};

class OddShapes : public ::testing::TestWithParam<OddShape> {};

TEST_P(OddShapes, AlgorithmsAgreeAndMatchLongDouble) {
  const auto sh = GetParam();
  Problem p;
  p.batch = 1;
  p.heads_q = 2;
  p.heads_kv = 1;
  p.seqlen_q = sh.lq;
  p.seqlen_k = sh.lk;
  p.head_dim = sh.d;
  p.causal = sh.causal;
  p.window = sh.window;
  const auto in = make_inputs<double>(p, 42 + static_cast<uint64_t>(sh.lq * 7 + sh.d), Magnitude::rms_normed);
  const auto s = scales_of(p, in);
  const auto blocked = forward_with(p, in, ForwardAlgorithm::blocked);
  const auto online = forward_with(p, in, ForwardAlgorithm::online, 64, 48);
  const auto plain = forward_with(p, in, ForwardAlgorithm::plain);
  EXPECT_NO_THROW(check_forward_consistent("blocked vs plain", blocked, plain, p, s));
  EXPECT_NO_THROW(check_forward_consistent("online vs blocked", online, blocked, p, s));
  const auto dout = make_dout<double>(p, 7);
  const auto gb = backward_with(p, in, dout, oracle::BackwardAlgorithm::blocked);
  const auto gp = backward_with(p, in, dout, oracle::BackwardAlgorithm::plain);
  EXPECT_NO_THROW(check_gradients_consistent("blocked vs plain", gb, gp, p, s));
  EXPECT_GT(max_abs(blocked.o), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Oracle, OddShapes,
                         ::testing::Values(OddShape{1, 1, 1, 0, true}, OddShape{63, 63, 60, 0, true},
                                           OddShape{111, 111, 100, 0, true}, OddShape{111, 1000, 60, 0, true},
                                           OddShape{1000, 1000, 100, 100, true}, OddShape{111, 63, 1, 0, true},
                                           OddShape{63, 111, 100, 0, false}, OddShape{1, 1000, 60, 96, true}),
                         [](const ::testing::TestParamInfo<OddShape>& info) {
                           const auto& s = info.param;
                           return "Lq" + std::to_string(s.lq) + "_Lk" + std::to_string(s.lk) + "_D" +
                                  std::to_string(s.d) + (s.window > 0 ? "_W" + std::to_string(s.window) : "") +
                                  (s.causal ? "_causal" : "_noncausal");
                         });

}  // namespace
}  // namespace lla::test
