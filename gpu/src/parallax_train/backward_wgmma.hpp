#pragma once
// Host entry of the wgmma dK/dV kernel (backward_wgmma.cu, built for sm_90a whatever
// LLA_CUDA_ARCHS says; launch.cu validates and calls this).
#include <cuda_runtime.h>

#include "backward_kernel.cuh"

namespace lla::gpu::train {

inline constexpr int kWgmmaDkdvKeys = 64;  // keys per CTA (the grid's x extent unit)

// Launches the wgmma dK/dV kernel for head_dim <= 128, head_dim % 8 == 0 (checked by
// the caller) on the grid (key blocks, KV heads, sequences).
cudaError_t launch_dkdv_wgmma(const BackwardParams& p, dim3 grid, cudaStream_t stream);

}  // namespace lla::gpu::train
