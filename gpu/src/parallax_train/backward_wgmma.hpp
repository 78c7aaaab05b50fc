#pragma once
// Host entries of the wgmma backward kernels (backward_wgmma.cu, built for sm_90a
// whatever LLA_CUDA_ARCHS says; launch.cu validates and calls these).
#include <cuda_runtime.h>

#include "backward_kernel.cuh"
#include "lla/gpu/types.hpp"

namespace lla::gpu::train {

inline constexpr int kWgmmaDkdvKeys = 64;  // keys per CTA of dK/dV (the grid's x extent unit)
inline constexpr int kWgmmaDqdrRows = 64;  // query rows per CTA of dQ/dR (the grid's x extent unit)

// Launches the wgmma dK/dV kernel for head_dim <= 128, head_dim % 8 == 0 (checked by
// the caller) on the grid (key blocks, KV heads, sequences).
cudaError_t launch_dkdv_wgmma(const BackwardParams& p, DType dtype, dim3 grid, cudaStream_t stream);

// Launches the wgmma dQ/dR kernel (same conditions) on the grid (row blocks, query heads,
// sequences).
cudaError_t launch_dqdr_wgmma(const BackwardParams& p, DType dtype, dim3 grid, cudaStream_t stream);

}  // namespace lla::gpu::train
