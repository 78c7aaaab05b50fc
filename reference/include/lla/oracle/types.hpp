#pragma once
// Inputs, outputs and options of the oracle's attention entry points.

#include <cstdint>
#include <string>

#include "lla/problem.hpp"
#include "lla/tensor.hpp"

namespace lla::oracle {

template <class Scalar>
struct AttentionInputs {
  Tensor4<Scalar> q;  // (B, Lq, Hq,  D)
  Tensor4<Scalar> k;  // (B, Lk, Hkv, D)
  Tensor4<Scalar> v;  // (B, Lk, Hkv, D)
  Tensor4<Scalar> r;  // (B, Lq, Hq,  D) Parallax probe; ignored (may be empty) for softmax and LLA
  Tensor3<Scalar> lambda{};  // (B, Lq, Hq) LLA per-row ridge; empty = Problem::lla.lambda for every row
};

// Element-wise conversion of all inputs, e.g. double -> long double or multiprecision.
template <class To, class From>
AttentionInputs<To> cast_inputs(const AttentionInputs<From>& in) {
  return {tensor_cast<To>(in.q), tensor_cast<To>(in.k), tensor_cast<To>(in.v), tensor_cast<To>(in.r),
          tensor_cast<To>(in.lambda)};
}

// Saved per-row statistics, all (B, Lq, Hq), in NATURAL-log units. The logit s
// includes the scale c. Empty rows: row_max = lse = -inf, d1 = 0, tbar = 0.
template <class Scalar>
struct RowStats {
  Tensor3<Scalar> row_max;  // m_i = max_j s_ij
  Tensor3<Scalar> d1;       // sum_j exp(s_ij - m_i)
  Tensor3<Scalar> lse;      // m_i + log d1_i
  Tensor3<Scalar> tbar;     // Parallax: sum_j p_ij t_ij (0 for softmax)
};

template <class Scalar>
struct ForwardResult {
  Tensor4<Scalar> o;     // (B, Lq, Hq, D); 0 on empty rows
  Tensor4<Scalar> vbar;  // (B, Lq, Hq, D) softmax average sum_j p_ij v_j (equals o for softmax)
  RowStats<Scalar> stats;
};

template <class Scalar>
struct Gradients {
  Tensor4<Scalar> dq;  // (B, Lq, Hq, D)
  Tensor4<Scalar> dk;  // (B, Lk, Hkv, D), summed over the query heads of each group
  Tensor4<Scalar> dv;  // (B, Lk, Hkv, D), summed over the query heads of each group
  Tensor4<Scalar> dr;  // (B, Lq, Hq, D) Parallax only (empty for softmax)
};

// How the forward is evaluated. All give the same answer up to rounding, and the
// tests cross-check them:
//  plain   - per row, per key, with the mask as a predicate: written to be obviously right
//  blocked - blocks of query rows against their key range with Eigen matrix products (default)
//  online  - the streaming (flash) form: running max and rescaling over KV tiles
enum class ForwardAlgorithm { plain, blocked, online };
enum class BackwardAlgorithm { plain, blocked };

const char* to_string(ForwardAlgorithm a);
const char* to_string(BackwardAlgorithm a);

struct ForwardOptions {
  ForwardAlgorithm algorithm = ForwardAlgorithm::blocked;
  int64_t row_block = 64;  // query rows per block (blocked, online)
  int64_t kv_tile = 64;    // keys per tile (online)
};

struct BackwardOptions {
  BackwardAlgorithm algorithm = BackwardAlgorithm::blocked;
  int64_t row_block = 64;
};

}  // namespace lla::oracle
