#pragma once
// Deterministic test inputs: a Problem plus a 64-bit seed and a magnitude class
// fill every tensor (generators never draw raw floats).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>

#include "lla/oracle/attention.hpp"
#include "lla/inputs.hpp"
#include "lla/metrics.hpp"
#include "tolerance.hpp"

namespace lla::test {

// Condition estimate (see tolerance.hpp) computed from the plain row view.
template <class Scalar>
AttentionCondition attention_condition(const Problem& p, const oracle::AttentionInputs<Scalar>& in) {
  AttentionCondition c;
  const double scale = std::fabs(p.softmax_scale());
  const bool probe = p.variant == Variant::parallax;
  const int64_t D = p.head_dim;
  for (const auto& seq : p.sequences()) {
    for (int64_t h = 0; h < p.heads_q; ++h) {
      const int64_t g = p.kv_head(h);
      for (int64_t i = 0; i < seq.q_len; ++i) {
        const auto range = p.key_range(seq, i);
        c.max_keys = std::max(c.max_keys, static_cast<double>(range.size()));
        if (range.empty()) continue;
        const int64_t l = seq.q_begin + i;
        double tmin = 1e300, tmax = -1e300;
        for (int64_t j = range.begin; j < range.end; ++j) {
          double sq = 0, sr = 0, t = 0;
          for (int64_t d = 0; d < D; ++d) {
            const double kd = static_cast<double>(in.k(seq.batch, j, g, d));
            sq += std::fabs(static_cast<double>(in.q(seq.batch, l, h, d)) * kd);
            if (probe) {
              sr += std::fabs(static_cast<double>(in.r(seq.batch, l, h, d)) * kd);
              t += static_cast<double>(in.r(seq.batch, l, h, d)) * kd;
            }
          }
          c.logit_abs = std::max(c.logit_abs, scale * sq);
          c.probe_abs = std::max(c.probe_abs, sr);
          tmin = std::min(tmin, t);
          tmax = std::max(tmax, t);
        }
        // |t - tbar| <= max t - min t for any convex average tbar.
        if (probe) c.probe_spread = std::max(c.probe_spread, tmax - tmin);
      }
    }
  }
  return c;
}

}  // namespace lla::test
