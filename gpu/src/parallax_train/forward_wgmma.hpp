#pragma once
// Host entry of the wgmma training forward (forward_wgmma.cu, built for sm_90a
// whatever LLA_CUDA_ARCHS says; launch.cu validates and calls this).
#include <cuda_runtime.h>

#include "forward_kernel.cuh"
#include "lla/gpu/types.hpp"

namespace lla::gpu::train {

inline constexpr int kWgmmaForwardRows = 64;  // query rows per CTA (the grid's x extent unit)

// Launches the wgmma forward for head_dim <= 128, head_dim % 8 == 0 (checked by the caller).
cudaError_t launch_forward_wgmma(const ForwardParams& p, DType dtype, dim3 grid, cudaStream_t stream);

}  // namespace lla::gpu::train
