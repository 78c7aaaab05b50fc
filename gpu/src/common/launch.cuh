#pragma once
// Host-side launch helpers shared by the kernel families' launch files.
#include <cuda_runtime.h>

#include <cstddef>

namespace lla::gpu {

// A kernel's opt-in to more than 48 KB of dynamic shared memory. Call it once per
// kernel (keep the result in a function-local static of the caller), not per launch.
template <class Kernel>
cudaError_t opt_in_smem(Kernel kernel, size_t smem) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
}

// Launches `kernel` with `smem` bytes of dynamic shared memory, or returns the error of
// its one-time opt-in (opt_in_smem).
template <class Kernel, class Params>
cudaError_t launch_with_smem(Kernel kernel, cudaError_t opt_in, size_t smem, dim3 grid, int threads,
                             const Params& p, cudaStream_t stream) {
  if (opt_in != cudaSuccess) return opt_in;
  kernel<<<grid, threads, smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace lla::gpu
