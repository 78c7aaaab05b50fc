// The wgmma backward kernels (dK/dV, dQ/dR) and their launches (compiled for sm_90a only).
#include "../common/launch.cuh"
#include "backward_wgmma.cuh"
#include "backward_wgmma.hpp"

namespace lla::gpu::train {
namespace {

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads) dkdv_kernel_wgmma(const BackwardParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  dkdv_cta_wgmma<Traits>(p, smem);
}

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads) dqdr_kernel_wgmma(const BackwardParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  dqdr_cta_wgmma<Traits>(p, smem);
}

template <class T, int kDMax, int kKeys>
cudaError_t launch_dqdr_bucket(const BackwardParams& p, dim3 grid, cudaStream_t stream) {
  using Traits = WgmmaDqdrTraits<kDMax, kKeys, T>;
  static_assert(Traits::kRows == kWgmmaDqdrRows, "the host sizes the grid with kWgmmaDqdrRows");
  // Two CTAs per SM (228 KB, 1 KB reserved per CTA) at D = 128, with no slack: growing
  // the layout halves the occupancy (the registers, 253 x 128 x 2, are near the limit too).
  static_assert(kDMax != 128 || 2 * (Traits::kSmemBytes + 1024) <= 228 * 1024, "two dQ/dR CTAs per SM at D = 128");
  static const cudaError_t opt_in = opt_in_smem(dqdr_kernel_wgmma<Traits>, Traits::kSmemBytes);
  return launch_with_smem(dqdr_kernel_wgmma<Traits>, opt_in, Traits::kSmemBytes, grid, Traits::kThreads, p, stream);
}

template <class T, int kDMax, int kRows>
cudaError_t launch_bucket(const BackwardParams& p, dim3 grid, cudaStream_t stream) {
  using Traits = WgmmaDkdvTraits<kDMax, kRows, T>;
  static_assert(Traits::kKeys == kWgmmaDkdvKeys, "the host sizes the grid with kWgmmaDkdvKeys");
  static const cudaError_t opt_in = opt_in_smem(dkdv_kernel_wgmma<Traits>, Traits::kSmemBytes);
  return launch_with_smem(dkdv_kernel_wgmma<Traits>, opt_in, Traits::kSmemBytes, grid, Traits::kThreads, p, stream);
}

// Row steps: 32 at D = 128 (246 registers, no spills; 64 spills: the three
// 64 x 64 score accumulators and dk, dv take 224 of 255), 64 at D = 64 (250 registers,
// no spills).
template <class T>
cudaError_t launch_dkdv_typed(const BackwardParams& p, dim3 grid, cudaStream_t stream) {
  return p.fwd.head_dim <= 64 ? launch_bucket<T, 64, 64>(p, grid, stream) : launch_bucket<T, 128, 32>(p, grid, stream);
}

// Key steps of 32 (253 registers at D = 128, 238 at D = 64, no spills; 64-key steps
// spill 488 and 80 bytes).
template <class T>
cudaError_t launch_dqdr_typed(const BackwardParams& p, dim3 grid, cudaStream_t stream) {
  return p.fwd.head_dim <= 64 ? launch_dqdr_bucket<T, 64, 32>(p, grid, stream)
                              : launch_dqdr_bucket<T, 128, 32>(p, grid, stream);
}

}  // namespace

cudaError_t launch_dkdv_wgmma(const BackwardParams& p, DType dtype, dim3 grid, cudaStream_t stream) {
  return dtype == DType::fp16 ? launch_dkdv_typed<__half>(p, grid, stream)
                              : launch_dkdv_typed<__nv_bfloat16>(p, grid, stream);
}

cudaError_t launch_dqdr_wgmma(const BackwardParams& p, DType dtype, dim3 grid, cudaStream_t stream) {
  return dtype == DType::fp16 ? launch_dqdr_typed<__half>(p, grid, stream)
                              : launch_dqdr_typed<__nv_bfloat16>(p, grid, stream);
}

}  // namespace lla::gpu::train
