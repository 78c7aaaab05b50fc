#pragma once
// A small owning, row-major, dense tensor. The project's tensors are
//   Tensor4: (B, L, H, D)  q, k, v, r, o, gradients, v-bar
//   Tensor3: (B, L, H)     per-row statistics (row max, d1, log-sum-exp, t-bar)
// The last dimension is contiguous. 64-bit sizes and offsets throughout.

#include <array>
#include <cstdint>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace lla {

template <class Scalar, int Rank>
class Tensor {
 public:
  using Shape = std::array<int64_t, Rank>;
  using value_type = Scalar;

  Tensor() { shape_.fill(0); }
  explicit Tensor(const Shape& shape, Scalar fill = Scalar(0)) : shape_(shape), data_(count(shape), fill) {}

  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[static_cast<size_t>(i)]; }
  int64_t size() const { return static_cast<int64_t>(data_.size()); }
  bool empty() const { return data_.empty(); }

  Scalar* data() { return data_.data(); }
  const Scalar* data() const { return data_.data(); }
  std::vector<Scalar>& storage() { return data_; }
  const std::vector<Scalar>& storage() const { return data_; }
  auto begin() { return data_.begin(); }
  auto end() { return data_.end(); }
  auto begin() const { return data_.begin(); }
  auto end() const { return data_.end(); }

  template <class... Index>
  int64_t offset(Index... idx) const {
    static_assert(sizeof...(Index) == Rank, "one index per dimension");
    const std::array<int64_t, Rank> i{static_cast<int64_t>(idx)...};
    int64_t off = 0;
    for (int d = 0; d < Rank; ++d) off = off * shape_[static_cast<size_t>(d)] + i[static_cast<size_t>(d)];
    return off;
  }
  template <class... Index>
  Scalar& operator()(Index... idx) { return data_[static_cast<size_t>(offset(idx...))]; }
  template <class... Index>
  const Scalar& operator()(Index... idx) const { return data_[static_cast<size_t>(offset(idx...))]; }

  void fill(Scalar value) { std::fill(data_.begin(), data_.end(), value); }

  static int64_t count(const Shape& shape) {
    return std::accumulate(shape.begin(), shape.end(), int64_t{1}, [](int64_t a, int64_t b) { return a * b; });
  }

 private:
  Shape shape_;
  std::vector<Scalar> data_;
};

template <class Scalar>
using Tensor4 = Tensor<Scalar, 4>;
template <class Scalar>
using Tensor3 = Tensor<Scalar, 3>;

template <size_t Rank>
std::string shape_string(const std::array<int64_t, Rank>& shape) {
  std::ostringstream os;
  os << '(';
  for (size_t i = 0; i < Rank; ++i) os << (i ? ", " : "") << shape[i];
  os << ')';
  return os.str();
}

// Element-wise conversion, e.g. double -> long double for a higher-precision run.
template <class To, class From, int Rank>
Tensor<To, Rank> tensor_cast(const Tensor<From, Rank>& in) {
  Tensor<To, Rank> out(in.shape());
  for (int64_t i = 0; i < in.size(); ++i) out.data()[i] = static_cast<To>(in.data()[i]);
  return out;
}

}  // namespace lla
