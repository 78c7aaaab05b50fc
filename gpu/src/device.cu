#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "lla/gpu/device.hpp"

namespace lla::gpu {
namespace {

// y[i] = 3 i + 1 with 64-bit indices: a pattern that zero-filled or stale memory
// cannot reproduce.
__global__ void self_test_kernel(long long* out, long long n) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 3 * i + 1;
}

std::string describe(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

}  // namespace

DeviceInfo query_device() {
  DeviceInfo info;
  const cudaError_t e = cudaGetDeviceCount(&info.device_count);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || (e == cudaSuccess && info.device_count == 0)) {
    info.state = DeviceState::absent;
    info.message = e == cudaSuccess ? "the CUDA runtime reports 0 devices" : "no CUDA device: " + describe(e);
    return info;
  }
  if (e != cudaSuccess) {
    info.state = DeviceState::error;
    info.message = "cudaGetDeviceCount failed: " + describe(e);
    return info;
  }
  cudaDeviceProp prop{};
  const cudaError_t pe = cudaGetDeviceProperties(&prop, 0);
  if (pe != cudaSuccess) {
    info.state = DeviceState::error;
    info.message = "cudaGetDeviceProperties failed: " + describe(pe);
    return info;
  }
  info.state = DeviceState::available;
  info.name = prop.name;
  info.sm_count = prop.multiProcessorCount;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.global_memory_bytes = prop.totalGlobalMem;
  info.message = info.name + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
                 std::to_string(info.sm_count) + " SMs)";
  return info;
}

std::string launch_self_test(int elements) {
  if (elements <= 0) return "launch_self_test needs a positive element count";
  long long* d = nullptr;
  cudaError_t e = cudaMalloc(&d, sizeof(long long) * static_cast<size_t>(elements));
  if (e != cudaSuccess) return "cudaMalloc: " + describe(e);
  const int threads = 128;
  const int blocks = (elements + threads - 1) / threads;
  self_test_kernel<<<blocks, threads>>>(d, elements);
  e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  std::vector<long long> host(static_cast<size_t>(elements));
  if (e == cudaSuccess) e = cudaMemcpy(host.data(), d, sizeof(long long) * host.size(), cudaMemcpyDeviceToHost);
  cudaFree(d);
  if (e != cudaSuccess) return "self-test kernel: " + describe(e);
  for (size_t i = 0; i < host.size(); ++i) {
    if (host[i] != 3 * static_cast<long long>(i) + 1) {
      return "self-test kernel wrote " + std::to_string(host[i]) + " at " + std::to_string(i);
    }
  }
  return {};
}

}  // namespace lla::gpu
