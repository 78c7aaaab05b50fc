// The wgmma training forward's kernels and launch (compiled for sm_90a only).
#include "../common/launch.cuh"
#include "forward_wgmma.cuh"
#include "forward_wgmma.hpp"

namespace lla::gpu::train {
namespace {

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads) forward_kernel_wgmma(const ForwardParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  forward_cta_wgmma<Traits>(p, smem);
}

template <class T, int kDMax, int kP1Words>
cudaError_t launch_bucket(const ForwardParams& p, dim3 grid, cudaStream_t stream) {
  using Traits = WgmmaForwardTraits<kDMax, kP1Words, T>;
  static_assert(Traits::kBlockM == kWgmmaForwardRows, "the host sizes the grid with kWgmmaForwardRows");
  static const cudaError_t opt_in = opt_in_smem(forward_kernel_wgmma<Traits>, Traits::kSmemBytes);
  return launch_with_smem(forward_kernel_wgmma<Traits>, opt_in, Traits::kSmemBytes, grid, Traits::kThreads, p,
                          stream);
}

template <class T>
cudaError_t launch_typed(const ForwardParams& p, dim3 grid, cudaStream_t stream) {
  // The backward's saved state (o_lo, vbar_lo) needs P1 in two words.
  if (p.o_lo != nullptr || p.vbar_lo != nullptr) {
    return p.head_dim <= 64 ? launch_bucket<T, 64, 2>(p, grid, stream) : launch_bucket<T, 128, 2>(p, grid, stream);
  }
  return p.head_dim <= 64 ? launch_bucket<T, 64, 1>(p, grid, stream) : launch_bucket<T, 128, 1>(p, grid, stream);
}

}  // namespace

cudaError_t launch_forward_wgmma(const ForwardParams& p, DType dtype, dim3 grid, cudaStream_t stream) {
  return dtype == DType::fp16 ? launch_typed<__half>(p, grid, stream) : launch_typed<__nv_bfloat16>(p, grid, stream);
}

}  // namespace lla::gpu::train
