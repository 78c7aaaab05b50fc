#pragma once
// The 16-bit element types the kernels take (bf16 and fp16) and their conversions to
// and from fp32, in one place for every kernel family.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace lla::gpu {

template <class T>
inline constexpr bool kIsFp16 = std::is_same_v<T, __half>;

template <class T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <>
__device__ __forceinline__ float to_float<__half>(__half x) {
  return __half2float(x);
}
template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}

}  // namespace lla::gpu
