#pragma once
// Shape-first RapidCheck generators: draw the Problem (dependent draws, no
// discards), then a 64-bit seed and a magnitude class that fill the tensors.
// Use inside RC_GTEST_PROP bodies (they draw with operator*).

#include <rapidcheck.h>

#include <cstdint>
#include <vector>

#include "data.hpp"
#include "lla/problem.hpp"

namespace lla::test {

// Bounds on the drawn shapes: tests pick limits that keep one case cheap.
struct CaseLimits {
  int64_t max_len = 70;  // reaches the tile edges 63, 64, 65
  int64_t max_batch = 3;
  int64_t max_kv_heads = 3;
  int64_t max_group = 4;
  int64_t max_dim = 24;
  bool odd_dims = true;   // also draw the odd head dims 60 and 100
  bool decode = true;     // draw decode problems (seqused_k, cache_start)
  bool varlen = true;     // draw packed varlen problems
  int force_layout = -1;  // 0 dense, 1 decode, 2 varlen; -1 draws one
};

struct Case {
  Problem problem;
  uint64_t seed = 0;
  Magnitude magnitude = Magnitude::normal;
};

inline int64_t draw_length(int64_t max_len, const char* name) {
  return *rc::gen::weightedOneOf<int64_t>({{1, rc::gen::element<int64_t>(0, 1, 2, 3)},
                                           {4, rc::gen::inRange<int64_t>(1, max_len + 1)}})
              .as(name);
}

inline Problem draw_problem(const CaseLimits& lim) {
  Problem p;
  p.heads_kv = *rc::gen::inRange<int64_t>(1, lim.max_kv_heads + 1).as("heads_kv");
  p.heads_q = p.heads_kv * *rc::gen::inRange<int64_t>(1, lim.max_group + 1).as("group");
  if (lim.odd_dims) {
    p.head_dim = *rc::gen::weightedOneOf<int64_t>({{1, rc::gen::element<int64_t>(1, 2, 3, 5, 7, 60, 100)},
                                                   {4, rc::gen::inRange<int64_t>(1, lim.max_dim + 1)}})
                      .as("head_dim");
  } else {
    p.head_dim = *rc::gen::inRange<int64_t>(1, lim.max_dim + 1).as("head_dim");
  }
  if (*rc::gen::element(0, 0, 0, 1).as("custom scale")) {
    p.scale = *rc::gen::element(0.5, 0.125, 2.0, -0.25).as("scale");
  }
  p.causal = *rc::gen::element(true, true, false).as("causal");

  const int layout = lim.force_layout >= 0
                         ? lim.force_layout
                         : *rc::gen::element(0, 0, lim.decode ? 1 : 0, lim.varlen ? 2 : 0).as("layout 0=dense 1=decode 2=varlen");
  if (layout == 0) {
    p.batch = *rc::gen::inRange<int64_t>(1, lim.max_batch + 1).as("batch");
    p.seqlen_q = draw_length(lim.max_len, "seqlen_q");
    p.seqlen_k = *rc::gen::element(0, 1).as("Lk == Lq") ? p.seqlen_q : draw_length(lim.max_len, "seqlen_k");
  } else if (layout == 1) {
    p.batch = *rc::gen::inRange<int64_t>(1, lim.max_batch + 1).as("batch");
    p.seqlen_q = *rc::gen::inRange<int64_t>(1, 5).as("new tokens");
    p.seqlen_k = *rc::gen::inRange<int64_t>(1, lim.max_len + 1).as("cache length");
    for (int64_t b = 0; b < p.batch; ++b) {
      const int32_t hi = static_cast<int32_t>(
          *rc::gen::weightedOneOf<int64_t>({{2, rc::gen::just(int64_t{p.seqlen_k})},
                                            {3, rc::gen::inRange<int64_t>(0, p.seqlen_k + 1)}})
               .as("seqused_k[b]"));
      p.seqused_k.push_back(hi);
      p.cache_start.push_back(static_cast<int32_t>(
          *rc::gen::weightedOneOf<int64_t>({{2, rc::gen::just<int64_t>(0)},
                                            {3, rc::gen::inRange<int64_t>(0, int64_t{hi} + 1)}})
               .as("cache_start[b]")));
    }
  } else {
    const int64_t n = *rc::gen::inRange<int64_t>(1, 5).as("sequences");
    const bool separate_k = *rc::gen::element(0, 1).as("separate cu_seqlens_k");
    p.cu_seqlens_q = {0};
    if (separate_k) p.cu_seqlens_k = {0};
    for (int64_t s = 0; s < n; ++s) {
      p.cu_seqlens_q.push_back(p.cu_seqlens_q.back() +
                               static_cast<int32_t>(draw_length(lim.max_len / 2, "q length of sequence")));
      if (separate_k) {
        p.cu_seqlens_k.push_back(p.cu_seqlens_k.back() +
                                 static_cast<int32_t>(draw_length(lim.max_len / 2, "k length of sequence")));
      }
    }
    p.seqlen_q = p.cu_seqlens_q.back();
    p.seqlen_k = separate_k ? p.cu_seqlens_k.back() : p.seqlen_q;
  }
  if (p.causal && *rc::gen::element(0, 0, 1).as("windowed")) {
    p.window = *rc::gen::inRange<int64_t>(1, lim.max_len + 3).as("window");
  }
  return p;
}

// LLA parameters for a drawn problem: lambda over its useful range, both ridge
// conventions, the direct solver (others are chosen by the property).
inline void draw_lla_params(Problem& p) {
  p.lla.lambda = *rc::gen::element(1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0).as("lambda");
  p.lla.ridge = *rc::gen::element(RidgeConvention::lambda_omega, RidgeConvention::lambda_omega,
                                  RidgeConvention::lambda)
                     .as("ridge 0=lambda*omega 1=lambda");
}

inline Case draw_case(const CaseLimits& lim, Variant variant) {
  Case c;
  c.problem = draw_problem(lim);
  c.problem.variant = variant;
  if (variant == Variant::lla) draw_lla_params(c.problem);
  c.seed = *rc::gen::arbitrary<uint64_t>().as("seed");
  c.magnitude = static_cast<Magnitude>(*rc::gen::element(0, 0, 1, 2).as("magnitude 0=normal 1=rms 2=large"));
  RC_LOG() << "case: " << c.problem.describe() << " seed=" << c.seed << " magnitude=" << c.magnitude << "\n";
  return c;
}

}  // namespace lla::test
