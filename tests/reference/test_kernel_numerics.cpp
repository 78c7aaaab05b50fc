// A CPU model of how the tensor-core Parallax kernels round, judged by the same
// baseline-relative rule as the kernels themselves. It answers, without a GPU, the
// design question of gpu/src/parallax_decode/kernel_mma.cuh and
// gpu/src/parallax_train/forward_kernel.cuh: how many bf16 words must the fp32
// weights P1 and P2 = P1 t be split into before the P.V products, and does the
// per-row t shift (t -> t - kappa, docs/training.md) change that?
//
// The model follows the kernels' arithmetic: bf16 inputs; s and t as fp32 results
// of exact products; the online update per tile in log2 units with fp32 state;
// weights rounded to 1, 2 or 3 bf16 words (the tensor cores multiply those exactly
// and accumulate in fp32); the final combination in fp32, the output in bf16. It
// does not model the order of the tensor cores' fp32 additions (a second-order
// effect next to the weight rounding it is about). Every scheme can also run in fp16
// (inputs, words and outputs, with fp16's range), which answers the same questions
// for fp16 kernels before they are written (Fp16SharesTheDesignButNotTheRange).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "lla/inputs.hpp"
#include "lla/metrics.hpp"
#include "lla/oracle/attention.hpp"
#include "lla/precision.hpp"
#include "support/data.hpp"
#include "support/tolerance.hpp"

namespace lla::test {
namespace {

double f32(double x) { return static_cast<double>(static_cast<float>(x)); }
double bf16(double x) { return round_to(Precision::bf16, x); }

// x as the sum of `words` words of a 16-bit format (bf16 or fp16, with its range:
// overflow to infinity, subnormals), each the rounding of what the previous left.
double in_words(double x, int words, Precision word) {
  double sum = 0, rest = f32(x);
  for (int w = 0; w < words; ++w) {
    const double part = round_to(word, rest);
    sum += part;
    rest = f32(rest - part);
  }
  return sum;
}

struct WeightScheme {
  const char* name;
  bool shift;     // P2 = P1 (t - kappa), kappa = the first tile's weighted mean of t
  int p1_words;   // bf16 words per P1 weight
  int p2_words;   // bf16 words per P2 weight
  Precision word = Precision::bf16;  // the inputs', the weights' words' and the output's format
  // bf16 inputs with fp16 weight words: V converted to fp16 for the P.V products (exact
  // for |v| in fp16's normal range), the weights' words fp16 (11 significand bits, not 8).
  bool fp16_weights = false;
};

constexpr WeightScheme kPublic{"public: P1, P2 one word, no shift", false, 1, 1};
constexpr WeightScheme kShiftOne{"shift, P1 and P2 one word", true, 1, 1};
constexpr WeightScheme kShiftP2Two{"shift, P1 one word, P2 two (training)", true, 1, 2};
constexpr WeightScheme kNoShiftP2Two{"no shift, P1 one word, P2 two", false, 1, 2};
constexpr WeightScheme kShiftTwo{"shift, P1 and P2 two words", true, 2, 2};
constexpr WeightScheme kDecode{"no shift, P1 and P2 two words (decode)", false, 2, 2};
constexpr WeightScheme kNoShiftThree{"no shift, P1 and P2 three words", false, 3, 3};
constexpr WeightScheme kShiftOneFp16{"shift, P1 and P2 one fp16 word, V to fp16", true, 1, 1, Precision::bf16, true};
constexpr WeightScheme kNoShiftOneFp16{"no shift, P1 and P2 one fp16 word, V to fp16", false, 1, 1, Precision::bf16,
                                       true};

// The model's output o (fp32 values before the bf16 output rounding).
// With `vbar_out`, also vbar = O1 / d1 (fp32).
Tensor4<double> model_forward(const Problem& p, const oracle::AttentionInputs<double>& in, const WeightScheme& w,
                              int64_t tile_keys, Tensor4<double>* vbar_out = nullptr) {
  Tensor4<double> o(in.q.shape());
  if (vbar_out) *vbar_out = Tensor4<double>(in.q.shape());
  const int64_t D = p.head_dim;
  const double scale_log2 = f32(p.softmax_scale() * 1.4426950408889634);
  std::vector<double> s, t, o1(static_cast<size_t>(D)), o2(static_cast<size_t>(D));
  for (const Sequence& seq : p.sequences()) {
    for (int64_t h = 0; h < p.heads_q; ++h) {
      const int64_t g = p.kv_head(h);
      for (int64_t i = 0; i < seq.q_len; ++i) {
        const int64_t l = seq.q_begin + i;
        const KeyRange range = p.key_range(seq, i);
        double m = -INFINITY, d1 = 0, d2 = 0, kappa = 0;
        bool kappa_set = false;
        std::fill(o1.begin(), o1.end(), 0.0);
        std::fill(o2.begin(), o2.end(), 0.0);
        for (int64_t j0 = range.begin; j0 < range.end; j0 += tile_keys) {
          const int64_t n = std::min(tile_keys, range.end - j0);
          s.assign(static_cast<size_t>(n), 0.0);
          t.assign(static_cast<size_t>(n), 0.0);
          double mx = -INFINITY;
          for (int64_t e = 0; e < n; ++e) {
            double qk = 0, rk = 0;
            for (int64_t d = 0; d < D; ++d) {
              qk += in.q(seq.batch, l, h, d) * in.k(seq.batch, j0 + e, g, d);
              rk += in.r(seq.batch, l, h, d) * in.k(seq.batch, j0 + e, g, d);
            }
            s[static_cast<size_t>(e)] = f32(f32(qk) * scale_log2);
            t[static_cast<size_t>(e)] = f32(rk);
            mx = std::max(mx, s[static_cast<size_t>(e)]);
          }
          const double m_new = std::max(m, mx);
          const double alpha = m_new == m ? 1.0 : f32(std::exp2(m - m_new));
          m = m_new;
          double sum_p = 0, sum_pt = 0;
          for (auto& x : s) {
            x = f32(std::exp2(f32(x - m)));  // s now holds P1
            sum_p = f32(sum_p + x);
          }
          for (size_t e = 0; e < s.size(); ++e) sum_pt = f32(sum_pt + f32(s[e] * t[e]));
          if (!kappa_set) {
            kappa = w.shift && sum_p > 0 ? f32(sum_pt / sum_p) : 0.0;
            kappa_set = true;
          }
          double sum_p2 = 0;
          for (size_t e = 0; e < t.size(); ++e) {
            t[e] = f32(s[e] * f32(t[e] - kappa));  // t now holds P2
            sum_p2 = f32(sum_p2 + t[e]);
          }
          d1 = f32(f32(d1 * alpha) + sum_p);
          d2 = f32(f32(d2 * alpha) + sum_p2);
          for (int64_t d = 0; d < D; ++d) {
            double a1 = f32(o1[static_cast<size_t>(d)] * alpha), a2 = f32(o2[static_cast<size_t>(d)] * alpha);
            for (int64_t e = 0; e < n; ++e) {
              const Precision ww = w.fp16_weights ? Precision::fp16 : w.word;
              const double vd = w.fp16_weights ? round_to(Precision::fp16, in.v(seq.batch, j0 + e, g, d))
                                               : in.v(seq.batch, j0 + e, g, d);
              a1 = f32(a1 + in_words(s[static_cast<size_t>(e)], w.p1_words, ww) * vd);
              a2 = f32(a2 + in_words(t[static_cast<size_t>(e)], w.p2_words, ww) * vd);
            }
            o1[static_cast<size_t>(d)] = a1;
            o2[static_cast<size_t>(d)] = a2;
          }
        }
        for (int64_t d = 0; d < D; ++d) {
          double out = 0;
          if (d1 > 0) {
            const double inv = f32(1.0 / d1);
            out = f32(f32(f32(o1[static_cast<size_t>(d)] * inv) * f32(1.0 + f32(d2 * inv))) -
                      f32(o2[static_cast<size_t>(d)] * inv));
          }
          o(seq.batch, l, h, d) = out;
          if (vbar_out) {
            (*vbar_out)(seq.batch, l, h, d) = d1 > 0 ? f32(o1[static_cast<size_t>(d)] * f32(1.0 / d1)) : 0.0;
          }
        }
      }
    }
  }
  return o;
}

struct Judged {
  double ratio;    // error / bound of the baseline-relative rule (<= 1 passes)
  double rel_err;  // max-norm relative error
};

Judged judge_model(const Problem& p, const oracle::AttentionInputs<double>& in, const WeightScheme& w,
                   int64_t tile_keys) {
  const auto ref = oracle::parallax_forward(p, in);
  const auto base = oracle::parallax_forward(p, oracle::cast_inputs<float>(in));
  Tensor4<double> got = model_forward(p, in, w, tile_keys);
  for (auto& x : got) x = round_to(w.word, x);
  return Judged{baseline_rule(got, ref.o, base.o, w.word).ratio(), max_norm_relative_error(got, ref.o)};
}

constexpr double kKeyOffset = 2.0;  // per coordinate: |t| grows by about 2 sum|r_d|, o is unchanged

const Magnitude kMagnitudes[] = {Magnitude::rms_normed, Magnitude::normal, Magnitude::large,
                                 Magnitude::heavy_keys, Magnitude::large_logits, Magnitude::near_duplicate_keys};

// The worst ratio and error of a scheme on one input class, over D = 64 and 128
// (causal prefill, L = 160, GQA 2:1, 16-key tiles). `key_offset` adds the same
// vector (key_offset in every coordinate) to every key: the output does not change
// (spec: key shift) but t = r.k gains a large common part, which is what the
// per-row t shift is for.
Judged worst_case(const WeightScheme& w, Magnitude mag, double key_offset = 0) {
  Judged worst{0, 0};
  for (int64_t d : {64, 128}) {
    const Problem p = Problem::dense(1, 160, 160, 2, 1, d);
    auto in = make_inputs<double>(p, static_cast<uint64_t>(d) + 11, mag);
    for (auto& e : in.k) e += key_offset;
    for (auto* tensor : {&in.q, &in.k, &in.v, &in.r})
      for (auto& e : *tensor) e = round_to(w.word, e);
    const Judged j = judge_model(p, in, w, 16);
    worst.ratio = std::max(worst.ratio, j.ratio);
    worst.rel_err = std::max(worst.rel_err, j.rel_err);
  }
  return worst;
}

// Prints the worst ratio and error of every scheme over the inputs, and checks the
// schemes the kernels use: the decode kernel's two words, the training
// forward's shift with one word for P1 and two for P2.
TEST(KernelNumerics, WeightSplittingAgainstTheBaselineRule) {
  const WeightScheme schemes[] = {kPublic,  kShiftOne,     kNoShiftP2Two, kShiftP2Two,   kShiftTwo,
                                  kDecode,  kNoShiftThree, kShiftOneFp16, kNoShiftOneFp16};
  std::printf("%-46s %-20s %12s %12s\n", "weights", "inputs", "err/bound", "max-norm err");
  for (const WeightScheme& w : schemes) {
    double worst_ratio = 0;
    for (Magnitude mag : kMagnitudes) {
      const Judged j = worst_case(w, mag);
      std::printf("%-46s %-20s %12.3f %12.3e\n", w.name, to_string(mag), j.ratio, j.rel_err);
      worst_ratio = std::max(worst_ratio, j.ratio);
    }
    const Judged offset = worst_case(w, Magnitude::rms_normed, kKeyOffset);
    std::printf("%-46s %-20s %12.3f %12.3e\n", w.name, "rms_normed + offset", offset.ratio, offset.rel_err);
    worst_ratio = std::max(worst_ratio, offset.ratio);
    std::printf("%-46s %-20s %12.3f\n", w.name, "worst", worst_ratio);
  }
  for (const WeightScheme* used : {&kDecode, &kShiftP2Two}) {
    for (Magnitude mag : kMagnitudes) {
      EXPECT_LE(worst_case(*used, mag).ratio, 1.0) << used->name << " on " << to_string(mag)
                                                   << ": a kernel relies on this scheme";
    }
    EXPECT_LE(worst_case(*used, Magnitude::rms_normed, kKeyOffset).ratio, 1.0) << used->name << " with offset keys";
  }
}

// --- the backward ---------------------------------------------------------------
// The backward kernels (gpu/src/parallax_train/backward_kernel.cuh) recompute
// p = exp2(s log2e c - lse log2e) from the saved fp32 lse, take T_i = g.o and
// b_i = g.vbar from the o and vbar the forward saved (spec 6.3), form dS, dT and
// W = p (1 + tbar - t) in fp32 and send them to the tensor cores in bf16 words.
// What o and vbar are worth depends on the forward too: its P1 weights in one bf16
// word leave o and vbar with 2^-9-level errors of their own whatever is stored.
struct BackwardScheme {
  const char* name;
  int words;             // bf16 words per dS, dT, W value
  int saved_words;       // o and vbar as stored: 1 (bf16), 2 (bf16 hi + lo, the kernels), 0 (fp32)
  bool centred = false;  // dq, dr against keys centred on kbar = sum_j p_j k_j (see below)
  int fwd_p1_words = 0;  // o, vbar from: 0 the exact forward; 1, 2 the kernels' forward with P1 in so many
                         // words; -1 a forward with P1 and P2 in one fp16 word each (V converted to fp16)
  int dk_words = 0;      // bf16 words per c dS, dT in the dK products (0: `words`)
  int dv_words = 0;      // bf16 words per W in the dV products (0: `words`)
  Precision word = Precision::bf16;  // the format of every word, the inputs and the gradients
};

constexpr BackwardScheme kBwdOneWord{"one word, bf16 o/vbar", 1, 1};
constexpr BackwardScheme kBwdTwoWords{"two words, bf16 o/vbar", 2, 1};
constexpr BackwardScheme kBwdTwoWordsF32{"two words, fp32 o/vbar", 2, 0};
constexpr BackwardScheme kBwdThreeWordsF32{"three words, fp32 o/vbar", 3, 0};
constexpr BackwardScheme kBwdThreeWords{"three words, bf16 o/vbar", 3, 1};
constexpr BackwardScheme kBwdTwoWordsCentred{"two words, bf16 o/vbar, centred", 2, 1, true};
// The kernels before the saved residuals (o, vbar in one bf16 word; forward P1 one word).
constexpr BackwardScheme kBwdKernelsOneWordState{"centred, P1 1w, o/vbar bf16", 2, 1, true, 1};
// The mma.sync kernels: the forward sends P1 in two words and saves o, vbar as hi + lo
// words; every backward product takes its weights in two words.
constexpr BackwardScheme kBwdKernels{"centred, P1 2w, o/vbar hi+lo (kernels)", 2, 2, true, 2};
// The wgmma kernels: the same with c dS and dT in one word in the dK products (dQ, dR,
// kbar and dV keep two). dq_i = sum_j dS_ij k_j cancels across near-duplicate keys
// (sum_j dS_ij = 0), which amplifies its weights' rounding; dk_j sums over rows, where
// no such identity holds, and one word per weight stays within the rule (worst 0.34
// of the bound).
constexpr BackwardScheme kBwdWgmma{"as kernels, dK one word (wgmma)", 2, 2, true, 2, 1, 2};
// W in one word too is also within the rule, but dv's max-norm error grows to 1.6x
// the fp32 baseline's (WgmmaDkdvWordsAgainstTheBaseline).
constexpr BackwardScheme kBwdDkdvOneWord{"as kernels, dK/dV one word", 2, 2, true, 2, 1, 1};
// The wgmma backward behind a forward that sends each weight as one fp16 word (the
// lever for the forward's time target, docs/training.md): o and vbar still saved hi + lo.
constexpr BackwardScheme kBwdWgmmaFp16Forward{"as wgmma, forward one fp16 word", 2, 2, true, -1, 1, 2};

oracle::Gradients<double> model_backward(const Problem& p, const oracle::AttentionInputs<double>& in,
                                         const Tensor4<double>& g, const BackwardScheme& w) {
  auto fwd = oracle::parallax_forward(p, in);
  if (w.fwd_p1_words != 0) {
    WeightScheme f = w.fwd_p1_words == 2 ? kShiftTwo : w.fwd_p1_words == 1 ? kShiftP2Two : kShiftOneFp16;
    f.word = w.word;
    fwd.o = model_forward(p, in, f, 64, &fwd.vbar);
  }
  const int64_t D = p.head_dim;
  const double c = p.softmax_scale(), scale_log2 = f32(c * 1.4426950408889634);
  oracle::Gradients<double> out{Tensor4<double>(in.q.shape()), Tensor4<double>(in.k.shape()),
                                Tensor4<double>(in.k.shape()), Tensor4<double>(in.q.shape())};
  auto words = [&](double x, int n) { return in_words(x, n, w.word); };
  auto saved = [&](double x) { return w.saved_words > 0 ? words(f32(x), w.saved_words) : f32(x); };
  for (const Sequence& seq : p.sequences()) {
    for (int64_t h = 0; h < p.heads_q; ++h) {
      const int64_t kv = p.kv_head(h);
      for (int64_t i = 0; i < seq.q_len; ++i) {
        const int64_t l = seq.q_begin + i;
        const KeyRange range = p.key_range(seq, i);
        if (range.empty()) continue;
        const double lse2 = f32(f32(fwd.stats.lse(seq.batch, l, h)) * 1.4426950408889634);
        const double tbar = f32(fwd.stats.tbar(seq.batch, l, h));
        double t_dot = 0, b_dot = 0;
        for (int64_t d = 0; d < D; ++d) {
          t_dot = f32(t_dot + g(seq.batch, l, h, d) * saved(fwd.o(seq.batch, l, h, d)));
          b_dot = f32(b_dot + g(seq.batch, l, h, d) * saved(fwd.vbar(seq.batch, l, h, d)));
        }
        // Centring: sum_j dS_ij = sum_j dT_ij = 0 in exact arithmetic, so dq and dr may
        // use k_j - kbar for any kbar; with kbar = sum_j p_j k_j the errors every dS_ij
        // inherits from T_i (p_ij dT_i) cancel in dq instead of being multiplied by |k|.
        std::vector<double> kbar(static_cast<size_t>(D), 0.0);
        double sum_ds = 0, sum_dt = 0;
        for (int64_t j = range.begin; j < range.end; ++j) {
          double qk = 0, rk = 0, gv = 0;
          for (int64_t d = 0; d < D; ++d) {
            qk += in.q(seq.batch, l, h, d) * in.k(seq.batch, j, kv, d);
            rk += in.r(seq.batch, l, h, d) * in.k(seq.batch, j, kv, d);
            gv += g(seq.batch, l, h, d) * in.v(seq.batch, j, kv, d);
          }
          const double t = f32(rk), a = f32(gv);
          const double pr = f32(std::exp2(f32(f32(f32(qk) * scale_log2) - lse2)));
          const double spread = f32(tbar - t);
          const int dk_words = w.dk_words > 0 ? w.dk_words : w.words;
          const int dv_words = w.dv_words > 0 ? w.dv_words : w.words;
          const double ds = words(f32(pr * f32(f32(a - t_dot) + f32(spread * f32(a - b_dot)))), w.words);
          const double dt = words(f32(-pr * f32(a - b_dot)), w.words);
          const double dt_kv = words(f32(-pr * f32(a - b_dot)), dk_words);
          const double wt = words(f32(pr * f32(1.0 + spread)), dv_words);
          const double ds_c = words(f32(f32(pr * f32(f32(a - t_dot) + f32(spread * f32(a - b_dot)))) * c), dk_words);
          sum_ds = f32(sum_ds + ds);
          sum_dt = f32(sum_dt + dt);
          for (int64_t d = 0; d < D; ++d) {
            auto& kb = kbar[static_cast<size_t>(d)];
            kb = f32(kb + words(pr, 2) * in.k(seq.batch, j, kv, d));  // two words, as the kernel
            out.dq(seq.batch, l, h, d) += ds * in.k(seq.batch, j, kv, d);
            out.dr(seq.batch, l, h, d) += dt * in.k(seq.batch, j, kv, d);
            out.dk(seq.batch, j, kv, d) += ds_c * in.q(seq.batch, l, h, d) + dt_kv * in.r(seq.batch, l, h, d);
            out.dv(seq.batch, j, kv, d) += wt * g(seq.batch, l, h, d);
          }
        }
        if (w.centred) {
          for (int64_t d = 0; d < D; ++d) {
            out.dq(seq.batch, l, h, d) -= sum_ds * kbar[static_cast<size_t>(d)];
            out.dr(seq.batch, l, h, d) -= sum_dt * kbar[static_cast<size_t>(d)];
          }
        }
      }
    }
  }
  // The tensor cores' fp32 accumulation is not modelled (second order); dq takes c
  // at the end, every gradient is stored in the input format.
  for (auto& x : out.dq) x = round_to(w.word, f32(f32(x) * c));
  for (auto* t : {&out.dr, &out.dk, &out.dv})
    for (auto& x : *t) x = round_to(w.word, f32(x));
  return out;
}

// One backward problem with bf16-rounded inputs and dout, the fp64 oracle's gradients
// and the fp32 oracle's (the baseline of the rule).
struct BackwardCase {
  Problem p;
  oracle::AttentionInputs<double> in;
  Tensor4<double> g;
  oracle::Gradients<double> ref;
  oracle::Gradients<float> base;
};

BackwardCase backward_case(const Problem& p, uint64_t input_seed, uint64_t dout_seed, Magnitude mag,
                           Precision word = Precision::bf16) {
  auto in = make_inputs<double>(p, input_seed, mag);
  for (auto* tensor : {&in.q, &in.k, &in.v, &in.r})
    for (auto& e : *tensor) e = round_to(word, e);
  auto g = make_dout<double>(p, dout_seed);
  for (auto& e : g) e = round_to(word, e);
  auto ref = oracle::parallax_backward(p, in, g);
  Tensor4<float> g32(g.shape());
  for (int64_t n = 0; n < g.size(); ++n) g32.data()[n] = static_cast<float>(g.data()[n]);
  auto base = oracle::parallax_backward(p, oracle::cast_inputs<float>(in), g32);
  return BackwardCase{p, std::move(in), std::move(g), std::move(ref), std::move(base)};
}

// err/bound of the scheme's dq, dr, dk, dv on one case.
std::array<double, 4> backward_ratios(const BackwardCase& c, const BackwardScheme& w) {
  const auto got = model_backward(c.p, c.in, c.g, w);
  auto ratio = [&w](const Tensor4<double>& want, const Tensor4<float>& b32, const Tensor4<double>& have) {
    return baseline_rule(have, want, b32, w.word).ratio();
  };
  return {ratio(c.ref.dq, c.base.dq, got.dq), ratio(c.ref.dr, c.base.dr, got.dr), ratio(c.ref.dk, c.base.dk, got.dk),
          ratio(c.ref.dv, c.base.dv, got.dv)};
}

// The worst err/bound over the four gradients of one input class (D = 64 and 128).
double worst_backward_ratio(const BackwardScheme& w, Magnitude mag) {
  double worst = 0;
  for (int64_t d : {64, 128}) {
    const auto r = backward_ratios(backward_case(Problem::dense(1, 96, 96, 2, 1, d), d + 17, 3, mag, w.word), w);
    if (std::getenv("LLA_NUMERICS_DETAIL")) {
      std::printf("    D=%lld dq %.3g dr %.3g dk %.3g dv %.3g\n", static_cast<long long>(d), r[0], r[1], r[2], r[3]);
    }
    worst = std::max(worst, *std::max_element(r.begin(), r.end()));
  }
  return worst;
}

// The backward's word count, saved precision and centring against the rule; the
// kernels' scheme must pass every input class. Near-duplicate keys are the hard case:
// uncentred, the error dq inherits from the bf16 o in T_i is 600-9000x the bound
// (fp32 o and vbar alone do not fix it either); centred, two words pass, if kbar too
// is accumulated from two-word weights (with one word: 18x the bound).
// LLA_NUMERICS_DETAIL=1 prints every gradient's ratio.
TEST(KernelNumerics, BackwardWeightsAgainstTheBaselineRule) {
  std::printf("%-40s %-20s %12s\n", "backward dS, dT, W", "inputs", "err/bound");
  for (const BackwardScheme* w : {&kBwdOneWord, &kBwdTwoWords, &kBwdThreeWords, &kBwdTwoWordsF32, &kBwdThreeWordsF32,
                                  &kBwdTwoWordsCentred, &kBwdKernelsOneWordState, &kBwdKernels, &kBwdWgmma, &kBwdDkdvOneWord,
                                  &kBwdWgmmaFp16Forward}) {
    for (Magnitude mag : kMagnitudes) {
      const double r = worst_backward_ratio(*w, mag);
      std::printf("%-40s %-20s %12.3f\n", w->name, to_string(mag), r);
      if (w == &kBwdKernels || w == &kBwdWgmma || w == &kBwdWgmmaFp16Forward) {
        EXPECT_LE(r, 1.0) << w->name << " on " << to_string(mag);
      }
    }
  }
}

BackwardCase two_key_rows_case(Precision word) {
  Problem p = Problem::dense(1, 2, 2, 1, 1, 64);
  p.causal = true;
  p.window = 3;
  return backward_case(p, 1, 1, Magnitude::normal, word);
}

// Rows with two keys (found by the GPU lane's backward property: B=1, Lq=Lk=2, D=64,
// causal, W=3, seed 1, normal): a_ij - T_i has no other keys to average over, so T_i
// and b_i must be as exact as the weights. With o and vbar in one bf16 word, or from a
// forward whose P1 weights are one word, dq and dk break the rule (24x, 8x); the
// kernels' scheme (P1 in two words, o and vbar saved as hi + lo) passes.
TEST(KernelNumerics, BackwardTwoKeyRowsNeedTheSavedResiduals) {
  const BackwardCase c = two_key_rows_case(Precision::bf16);
  auto worst = [&](const BackwardScheme& w) {
    const auto r = backward_ratios(c, w);
    const double m = *std::max_element(r.begin(), r.end());
    std::printf("%-40s two-key rows        %12.3f\n", w.name, m);
    return m;
  };
  EXPECT_LE(worst(kBwdKernels), 1.0);
  EXPECT_LE(worst(kBwdWgmma), 1.0);
  EXPECT_LE(worst(kBwdWgmmaFp16Forward), 1.0);  // the planned forward (docs/training.md): 0.77, less margin
  EXPECT_GT(worst(kBwdKernelsOneWordState), 1.0);  // the scheme the lane caught
  EXPECT_GT(worst(kBwdTwoWordsCentred), 1.0);       // exact forward, o and vbar in bf16: still fails
}

// The rule bounds the error against c x the baseline's; the accuracy target is
// a max-norm relative error (median <= 4e-3 over its cases). On the GPU target's cases
// (tests/gpu/test_parallax_train.cpp, backward_max_norm_target: same shapes, seeds and
// inputs; the model reproduces the kernels' printed errors to the digit), the wgmma
// scheme's worst gradient stays within 1.25x the fp32 baseline's (rounded to bf16);
// W in one word as well puts dv at 1.65x (4.5e-3 against 2.7e-3, D = 128 causal),
// which is why the dV products keep two words.
TEST(KernelNumerics, WgmmaDkdvWordsAgainstTheBaseline) {
  auto worst_rel = [](const BackwardCase& c, const auto& g) {
    auto rel = [](const Tensor4<double>& want, const auto& have) {
      Tensor4<double> h(want.shape());
      for (int64_t n = 0; n < h.size(); ++n) h.data()[n] = bf16(static_cast<double>(have.data()[n]));
      return max_norm_relative_error(h, want);
    };
    return std::max({rel(c.ref.dq, g.dq), rel(c.ref.dr, g.dr), rel(c.ref.dk, g.dk), rel(c.ref.dv, g.dv)});
  };
  double one_word_worst = 0;
  for (int64_t d : {64, 128}) {
    for (bool causal : {true, false}) {
      Problem p = Problem::dense(1, 384, 384, 4, 2, d);
      p.causal = causal;
      const uint64_t seed = static_cast<uint64_t>(d * 10 + causal + 3);
      const BackwardCase c = backward_case(p, seed, seed, Magnitude::rms_normed);
      const double base = worst_rel(c, c.base);
      const double wgmma = worst_rel(c, model_backward(c.p, c.in, c.g, kBwdWgmma));
      const double one_word = worst_rel(c, model_backward(c.p, c.in, c.g, kBwdDkdvOneWord));
      std::printf("D=%-4lld %-11s max-norm rel. error, worst gradient: fp32 baseline %.3e, wgmma %.3e (%.2fx), "
                  "dK/dV one word %.3e (%.2fx)\n",
                  static_cast<long long>(d), causal ? "causal" : "non-causal", base, wgmma, wgmma / base, one_word,
                  one_word / base);
      EXPECT_LE(wgmma, 1.25 * base) << p.describe();
      one_word_worst = std::max(one_word_worst, one_word / base);
    }
  }
  EXPECT_GT(one_word_worst, 1.25);  // the comparison can fail: W in one word does
}

// --- fp16 ------------------------------------------------------------------------
// The same schemes with fp16 inputs, words and outputs, judged by the fp16 rule.
// fp16 has three more significand bits than bf16 but five fewer exponent bits: a
// lo word of a small weight is subnormal (its relative precision falls off below
// 2^-14), and a P2 = P1 (t - kappa) weight overflows past 65504.
template <class Scheme>
Scheme in_fp16(Scheme w) {
  w.word = Precision::fp16;
  return w;
}

// The kernels' schemes carry over to fp16 word for word: the forward's (shift, P1 in
// one or two words, P2 in two) and the backward's (both kernels) pass the fp16 rule on
// every input class, rows with two keys included, and so do the saved o and vbar as
// hi + lo fp16 words. The one fp16 hazard is range: the decode scheme sends P2 = P1 t
// unshifted, and once |t| passes 65504 (rms-normed keys offset by 8192 in every
// coordinate: t ~ 1e5, which bf16 and the fp32 baseline carry) its words overflow to
// infinity. An fp16 tensor-core decode must shift t by a per-row kappa as the training
// forward does (the decode's fp16 path today runs on CUDA cores in fp32: no P2 words).
TEST(KernelNumerics, Fp16SharesTheDesignButNotTheRange) {
  constexpr double kFarOffset = 8192;
  std::printf("%-46s %-24s %12s %12s\n", "fp16 weights", "inputs", "err/bound", "max-norm err");
  auto forward = [](const WeightScheme& w, Magnitude mag, double off, const char* what) {
    const Judged j = worst_case(w, mag, off);
    std::printf("%-46s %-24s %12.3f %12.3e\n", w.name, what, j.ratio, j.rel_err);
    return j.ratio;
  };
  for (const WeightScheme* used : {&kShiftP2Two, &kShiftTwo, &kDecode}) {
    const WeightScheme w = in_fp16(*used);
    for (Magnitude mag : kMagnitudes) EXPECT_LE(forward(w, mag, 0, to_string(mag)), 1.0) << w.name;
    EXPECT_LE(forward(w, Magnitude::rms_normed, kKeyOffset, "rms_normed + offset 2"), 1.0) << w.name;
    const double far = forward(w, Magnitude::rms_normed, kFarOffset, "rms_normed + offset 8192");
    if (used == &kDecode) {
      EXPECT_FALSE(far <= 1.0) << "unshifted P2 in fp16 words should overflow at |t| ~ 1e5";
    } else {
      EXPECT_LE(far, 1.0) << w.name;
    }
  }
  for (const BackwardScheme* used : {&kBwdKernels, &kBwdWgmma}) {
    const BackwardScheme w = in_fp16(*used);
    for (Magnitude mag : kMagnitudes) {
      const double r = worst_backward_ratio(w, mag);
      std::printf("%-46s %-24s %12.3f\n", w.name, to_string(mag), r);
      EXPECT_LE(r, 1.0) << w.name << " on " << to_string(mag);
    }
    const auto r = backward_ratios(two_key_rows_case(Precision::fp16), w);
    const double worst = *std::max_element(r.begin(), r.end());
    std::printf("%-46s %-24s %12.3f\n", w.name, "two-key rows", worst);
    EXPECT_LE(worst, 1.0) << w.name << " on two-key rows";
  }
}

// The model can fail: with one bf16 word per weight and no shift (what public
// kernels do), near-duplicate keys break the rule. If this ever passes, the model
// has stopped rounding the weights.
TEST(KernelNumerics, ModelDetectsUnsplitWeights) {
  EXPECT_GT(worst_case(kPublic, Magnitude::near_duplicate_keys).ratio, 1.0);
}

}  // namespace
}  // namespace lla::test
