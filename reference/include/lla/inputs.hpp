#pragma once
// Deterministic attention inputs from a 64-bit seed and a magnitude class, shared
// by the tests, the demo, the benchmarks and the fixture generator.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "lla/oracle/types.hpp"
#include "lla/random.hpp"

namespace lla {

enum class Magnitude {
  normal,       // N(0, 1) everywhere
  rms_normed,   // q, r, k rows scaled to RMS 1 (as the models feed them); v ~ N(0, 1)
  large,        // N(0, 1) * 3
  // Adversarial classes:
  large_logits,         // rms-normed q, k scaled so that |scale * q.k| reaches ~1e3
  near_duplicate_keys,  // every key of a head is one vector plus 1e-6 noise (rank-deficient covariance)
  heavy_keys,           // N(0, 1), but every 16th key is 8x longer (a few keys dominate long rows)
  clustered_keys,       // N(0, 1), but the keys of a head sit around 8 centres (spread 0.1): low-rank covariance
};

inline const char* to_string(Magnitude m) {
  switch (m) {
    case Magnitude::normal: return "normal";
    case Magnitude::rms_normed: return "rms_normed";
    case Magnitude::large: return "large";
    case Magnitude::large_logits: return "large_logits";
    case Magnitude::near_duplicate_keys: return "near_duplicate_keys";
    case Magnitude::heavy_keys: return "heavy_keys";
    case Magnitude::clustered_keys: return "clustered_keys";
  }
  return "?";
}

inline constexpr std::array<Magnitude, 7> kAllMagnitudes{
    Magnitude::normal,     Magnitude::rms_normed,          Magnitude::large,
    Magnitude::large_logits, Magnitude::near_duplicate_keys, Magnitude::heavy_keys,
    Magnitude::clustered_keys};

// Parses the names of to_string; throws std::invalid_argument otherwise.
inline Magnitude parse_magnitude(const std::string& s) {
  for (Magnitude m : kAllMagnitudes) {
    if (s == to_string(m)) return m;
  }
  std::string names;
  for (Magnitude m : kAllMagnitudes) names += std::string(names.empty() ? "" : ", ") + to_string(m);
  throw std::invalid_argument("unknown input distribution '" + s + "' (expected one of " + names + ")");
}
inline std::ostream& operator<<(std::ostream& os, Magnitude m) { return os << to_string(m); }

template <class Scalar>
void fill_normal(Tensor4<Scalar>& t, Rng& rng, double sigma) {
  for (auto& x : t) x = static_cast<Scalar>(sigma * rng.normal());
}

template <class Scalar>
void normalise_rows(Tensor4<Scalar>& t) {
  const int64_t D = t.dim(3);
  for (int64_t row = 0; row < t.size() / std::max<int64_t>(D, 1); ++row) {
    Scalar* x = t.data() + row * D;
    Scalar ss = 0;
    for (int64_t d = 0; d < D; ++d) ss += x[d] * x[d];
    using std::sqrt;
    const Scalar rms = sqrt(ss / Scalar(D));
    if (rms > Scalar(0)) {
      for (int64_t d = 0; d < D; ++d) x[d] /= rms;
    }
  }
}

// Inputs for a problem. Each tensor has its own stream derived from the seed.
template <class Scalar>
oracle::AttentionInputs<Scalar> make_inputs(const Problem& p, uint64_t seed, Magnitude mag) {
  const std::array<int64_t, 4> qs{p.batch, p.seqlen_q, p.heads_q, p.head_dim};
  const std::array<int64_t, 4> ks{p.batch, p.seqlen_k, p.heads_kv, p.head_dim};
  oracle::AttentionInputs<Scalar> in{Tensor4<Scalar>(qs), Tensor4<Scalar>(ks), Tensor4<Scalar>(ks),
                                     Tensor4<Scalar>(qs)};
  const double sigma = mag == Magnitude::large ? 3.0 : 1.0;
  Tensor4<Scalar>* tensors[] = {&in.q, &in.k, &in.v, &in.r};
  for (int n = 0; n < 4; ++n) {
    Rng rng(seed * 4 + static_cast<uint64_t>(n) + 1);
    fill_normal(*tensors[n], rng, sigma);
  }
  if (mag == Magnitude::rms_normed || mag == Magnitude::large_logits) {
    normalise_rows(in.q);
    normalise_rows(in.k);
    normalise_rows(in.r);
  }
  if (mag == Magnitude::large_logits) {
    // rms-normed rows give |q.k| <= D; scale q and k so that |scale q.k| can reach 1e3.
    using std::sqrt;
    const Scalar a = static_cast<Scalar>(sqrt(1e3 / (std::fabs(p.softmax_scale()) * double(p.head_dim))));
    for (auto& x : in.q) x *= a;
    for (auto& x : in.k) x *= a;
  }
  if (mag == Magnitude::near_duplicate_keys) {
    Rng rng(seed * 4 + 7);
    for (int64_t b = 0; b < p.batch; ++b)
      for (int64_t g = 0; g < p.heads_kv; ++g)
        for (int64_t j = 0; j < p.seqlen_k; ++j)
          for (int64_t d = 0; d < p.head_dim; ++d)
            in.k(b, j, g, d) = in.k(b, 0, g, d) + static_cast<Scalar>(1e-6 * rng.normal());
  }
  if (mag == Magnitude::heavy_keys) {
    for (int64_t b = 0; b < p.batch; ++b)
      for (int64_t j = 0; j < p.seqlen_k; j += 16)
        for (int64_t g = 0; g < p.heads_kv; ++g)
          for (int64_t d = 0; d < p.head_dim; ++d) in.k(b, j, g, d) *= Scalar(8);
  }
  if (mag == Magnitude::clustered_keys) {
    // Real keys cluster; around a centre the weighted key covariance has small
    // eigenvalues, which is what makes LLA's per-row systems ill-conditioned.
    constexpr int kCentres = 8;
    Rng rng(seed * 4 + 11);
    for (int64_t b = 0; b < p.batch; ++b)
      for (int64_t g = 0; g < p.heads_kv; ++g) {
        std::vector<Scalar> centres(static_cast<size_t>(kCentres * p.head_dim));
        for (auto& c : centres) c = static_cast<Scalar>(rng.normal());
        for (int64_t j = 0; j < p.seqlen_k; ++j) {
          const auto c = static_cast<size_t>(rng.integer(0, kCentres - 1));
          for (int64_t d = 0; d < p.head_dim; ++d)
            in.k(b, j, g, d) = centres[c * static_cast<size_t>(p.head_dim) + static_cast<size_t>(d)] +
                               Scalar(0.1) * in.k(b, j, g, d);
        }
      }
  }
  return in;
}

template <class Scalar>
Tensor4<Scalar> make_dout(const Problem& p, uint64_t seed) {
  Tensor4<Scalar> g({p.batch, p.seqlen_q, p.heads_q, p.head_dim});
  Rng rng(seed ^ 0xD0D0D0D0D0D0D0D0ull);
  fill_normal(g, rng, 1.0);
  return g;
}

}  // namespace lla
