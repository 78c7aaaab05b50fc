#pragma once
// Thin wrappers over the sm_80+ instructions the tensor-core kernels use:
// cp.async (16-byte global -> shared copies), ldmatrix, and mma.sync m16n8k16
// (bf16 inputs, fp32 accumulators). Fragment layouts are those of the PTX ISA
// ("Matrix Fragments for mma.m16n8k16"): for a thread with lane = 4 * grp + quad,
//   A (16 x 16): a0 = (grp, 2quad..+1), a1 = (grp + 8, ..), a2 = (grp, 8 + 2quad..), a3 = (grp + 8, 8 + ..)
//   B (16 x 8) : b0 = (k = 2quad..+1, n = grp), b1 = (k = 8 + 2quad.., n = grp)
//   C (16 x 8) : c0, c1 = (grp, 2quad..+1), c2, c3 = (grp + 8, 2quad..+1)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "element.cuh"

namespace lla::gpu::ptx {

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool fetch) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = fetch ? 16 : 0;  // 0: zero-fill, global memory is not read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}
// The same copy with an L2 prefetch-size hint (kPrefetchBytes = 128 or 256): the L2
// may fetch the whole aligned 128/256-byte block from DRAM on a miss instead of
// the 32-byte sectors asked for.
template <int kPrefetchBytes>
__device__ __forceinline__ void cp_async_16_prefetch(void* smem, const void* gmem, bool fetch) {
  static_assert(kPrefetchBytes == 0 || kPrefetchBytes == 128 || kPrefetchBytes == 256, "L2 prefetch size");
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = fetch ? 16 : 0;
  if constexpr (kPrefetchBytes == 128) {
    asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
  } else if constexpr (kPrefetchBytes == 256) {
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
  } else {
    cp_async_16(smem, gmem, fetch);
  }
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// Byte offsets of this lane's row address for ldmatrix.x4 in a shared-memory tile of
// rows `pitch` bytes apart (16 columns = 32 bytes per k-step; add kk * 32):
//  A operand, rows row0 .. row0 + 15 (Q or P rows): matrices (rows 0-7, k 0-7),
//    (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0..a3;
//  B operand from rows that index n (K for Q.K^T): matrices (n 0-7, k 0-7), (n 0-7, k 8-15),
//    (n 8-15, k 0-7), (n 8-15, k 8-15) = b0, b1 of n-tile 0, b0, b1 of n-tile 1;
//  B operand from rows that index k, transposed (V for P.V; add n0 * 2 bytes):
//    matrices (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
__device__ __forceinline__ int ldsm_a_offset(int lane, int row0, int pitch) {
  return (row0 + lane % 8 + ((lane / 8) % 2) * 8) * pitch + (lane / 16) * 16;
}
__device__ __forceinline__ int ldsm_b_offset(int lane, int pitch) {
  return (lane % 8 + 8 * (lane / 16)) * pitch + ((lane / 8) % 2) * 16;
}
__device__ __forceinline__ int ldsm_bt_offset(int lane, int pitch) {
  return (lane % 8 + 8 * ((lane / 8) % 2)) * pitch + (lane / 16) * 16;
}

// d += a . b, m16n8k16, T (bf16 or fp16) inputs, fp32 accumulators.
#define LLA_MMA_M16N8K16(TYPES)                                                                                  \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPES ".f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, " \
               "{%0, %1, %2, %3};\n"                                                                            \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                                  \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))
template <class T>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (kIsFp16<T>) {
    LLA_MMA_M16N8K16("f16.f16");
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "bf16 or fp16");
    LLA_MMA_M16N8K16("bf16.bf16");
  }
}
#undef LLA_MMA_M16N8K16
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  mma_m16n8k16<__nv_bfloat16>(d, a, b0, b1);
}

// 2^x on the MUFU alone (ex2.approx.ftz: about 2 ulp, 2^-22 relative; -inf gives +0 and
// results below 2^-126 flush to 0). exp2f without --use_fast_math adds a range check and
// two multiplies around the same instruction to keep subnormal results.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Two fp32 values as one bf16x2 word (the first in the low half, as the fragments expect).
__device__ __forceinline__ uint32_t pack_bf16(float first, float second) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(first, second);
  return *reinterpret_cast<const uint32_t*>(&v);
}
// The same for T (bf16 or fp16).
template <class T>
__device__ __forceinline__ uint32_t pack2(float first, float second) {
  if constexpr (kIsFp16<T>) {
    const __half2 v = __floats2half2_rn(first, second);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "bf16 or fp16");
    return pack_bf16(first, second);
  }
}

// x = hi + lo + O(2^-16 |x|): two bf16x2 words; the rounding residual of hi is
// representable in bf16's exponent range (fp32's), so nothing underflows early.
__device__ __forceinline__ void split2_bf16(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat16 h0 = __float2bfloat16_rn(x0), h1 = __float2bfloat16_rn(x1);
  const __nv_bfloat162 h{h0, h1};
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = pack_bf16(x0 - __bfloat162float(h0), x1 - __bfloat162float(h1));
}
// The same for T (bf16 or fp16). In fp16 the residual of a value below 2^-3 is
// subnormal and keeps fewer bits (x = hi + lo + e, |e| <= 2^-22 |x| + 2^-25); the kernel numerics model
// counts that (KernelNumerics.Fp16SharesTheDesignButNotTheRange).
template <class T>
__device__ __forceinline__ void split2(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  if constexpr (kIsFp16<T>) {
    const __half h0 = __float2half_rn(x0), h1 = __float2half_rn(x1);
    const __half2 h{h0, h1};
    hi = *reinterpret_cast<const uint32_t*>(&h);
    lo = pack2<__half>(x0 - __half2float(h0), x1 - __half2float(h1));
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "bf16 or fp16");
    split2_bf16(x0, x1, hi, lo);
  }
}

// x = hi + mid + lo: the 24 significand bits of fp32 in three bf16x2 words.
__device__ __forceinline__ void split3_bf16(float x0, float x1, uint32_t& hi, uint32_t& mid, uint32_t& lo) {
  const __nv_bfloat16 h0 = __float2bfloat16_rn(x0), h1 = __float2bfloat16_rn(x1);
  const float r0 = x0 - __bfloat162float(h0), r1 = x1 - __bfloat162float(h1);
  const __nv_bfloat16 m0 = __float2bfloat16_rn(r0), m1 = __float2bfloat16_rn(r1);
  const __nv_bfloat162 h{h0, h1}, m{m0, m1};
  hi = *reinterpret_cast<const uint32_t*>(&h);
  mid = *reinterpret_cast<const uint32_t*>(&m);
  lo = pack_bf16(r0 - __bfloat162float(m0), r1 - __bfloat162float(m1));
}

}  // namespace lla::gpu::ptx
