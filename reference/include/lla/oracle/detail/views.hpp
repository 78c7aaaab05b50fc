#pragma once
// Eigen views of (sequence, head) slices of (B, L, H, D) tensors, and shape checks.

#include <Eigen/Dense>
#include <array>
#include <string>

#include "lla/problem.hpp"
#include "lla/tensor.hpp"

namespace lla::oracle::detail {

template <class Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
template <class Scalar>
using ConstRowsMap = Eigen::Map<const RowMatrix<Scalar>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class Scalar>
using RowsMap = Eigen::Map<RowMatrix<Scalar>, Eigen::Unaligned, Eigen::OuterStride<>>;

// Rows [l0, l0 + n) of head h of batch entry b, as an n x D matrix view (row stride H*D).
template <class Scalar>
ConstRowsMap<Scalar> rows(const Tensor4<Scalar>& t, int64_t b, int64_t h, int64_t l0, int64_t n) {
  const int64_t stride = t.dim(2) * t.dim(3);
  const Scalar* base = n > 0 ? t.data() + t.offset(b, l0, h, 0) : t.data();
  return ConstRowsMap<Scalar>(base, n, t.dim(3), Eigen::OuterStride<>(stride));
}
template <class Scalar>
RowsMap<Scalar> rows(Tensor4<Scalar>& t, int64_t b, int64_t h, int64_t l0, int64_t n) {
  const int64_t stride = t.dim(2) * t.dim(3);
  Scalar* base = n > 0 ? t.data() + t.offset(b, l0, h, 0) : t.data();
  return RowsMap<Scalar>(base, n, t.dim(3), Eigen::OuterStride<>(stride));
}

template <class Scalar>
void check_shape(const Tensor4<Scalar>& t, const std::array<int64_t, 4>& expected, const char* name,
                 const Problem& problem) {
  if (t.shape() != expected) {
    throw ProblemError(std::string("tensor ") + name + " has shape " + shape_string(t.shape()) +
                       " but the problem needs " + shape_string(expected) + " (" + problem.describe() + ")");
  }
}

inline std::array<int64_t, 4> q_shape(const Problem& p) { return {p.batch, p.seqlen_q, p.heads_q, p.head_dim}; }
inline std::array<int64_t, 4> kv_shape(const Problem& p) { return {p.batch, p.seqlen_k, p.heads_kv, p.head_dim}; }
inline std::array<int64_t, 3> row_shape(const Problem& p) { return {p.batch, p.seqlen_q, p.heads_q}; }

}  // namespace lla::oracle::detail
