#pragma once
// Hopper warpgroup matrix multiply (wgmma, sm_90a) and the shared-memory layout it
// reads: the building blocks of the training kernels' next version (docs/training.md,
// plan step 4), proven on the GPU by tests/gpu/test_wgmma.cu before any kernel uses them.
//
// Layout: every operand tile in shared memory is stored in 128-byte-swizzled atoms.
// An atom is 8 rows of 128 bytes (64 bf16), 1024-byte aligned; the 16-byte chunk c of
// row r sits at chunk c ^ (r % 8) (sw128_offset below). A tile wider than 64 elements
// along the contiguous dimension is a sequence of column blocks of 64 elements, each
// holding all the tile's rows (rows 128 bytes apart).
//  - K-major operand (rows = M or N, contiguous = K; Q, K, R tiles for S = Q.K^T):
//    8-row groups are SBO = 1024 bytes apart; LBO is unused; the k-step ks (16
//    elements) of column block kb starts at block base + (ks % 4) * 32 bytes.
//  - MN-major operand (rows = K, contiguous = N; a V tile for O = P.V, rows = keys):
//    8-row (8-key) groups are SBO = 1024 bytes apart, 64-element column blocks LBO
//    bytes apart (rows * 128); k-step ks starts 16 rows = 2048 bytes further.
//
// Accumulators of m64nNk16 (fp32): warp w of the warpgroup holds rows 16w .. 16w + 15;
// with lane = 4 * grp + quad, d[4j + 0], d[4j + 1] = (row 16w + grp, cols 8j + 2quad, +1),
// d[4j + 2], d[4j + 3] = (row 16w + grp + 8, the same cols): the mma.sync C layout,
// one n-tile of 8 columns after another. A register A operand is the warp's 16 x 16
// mma.sync A fragment (rows 16w ..).
//
// Ordering: shared memory written by ordinary stores must be made visible to the
// tensor cores (fence_proxy_async) before the barrier that precedes wgmma; wgmma_fence
// comes before the first wgmma and whenever the accumulator or A registers were
// touched by other instructions; commit + wait<0> before the accumulators are read.

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "element.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LLA_WGMMA_AVAILABLE 1
#endif

namespace lla::gpu::wgmma {

// Reached only by code built without sm_90a (a launch error, never a wrong answer).
__device__ __forceinline__ void wgmma_unavailable() { __trap(); }

// Byte offset of element (row, col) (col < 64) inside a 128-byte-swizzled column block.
__host__ __device__ constexpr int sw128_offset(int row, int col) {
  return row * 128 + (((col / 8) ^ (row % 8)) * 16) + (col % 8) * 2;
}

// Shared-memory matrix descriptor, 128-byte swizzle: start address, LBO and SBO in
// 16-byte units (PTX ISA, "Matrix Descriptor Format"); base offset 0 (atoms 1024-aligned).
__device__ __forceinline__ uint64_t smem_desc_sw128(const void* smem, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  uint64_t d = 0;
  d |= static_cast<uint64_t>((addr >> 4) & 0x3FFF);
  d |= static_cast<uint64_t>((lbo_bytes >> 4) & 0x3FFF) << 16;
  d |= static_cast<uint64_t>((sbo_bytes >> 4) & 0x3FFF) << 32;
  d |= static_cast<uint64_t>(1) << 62;  // 128-byte swizzle
  return d;
}

__device__ __forceinline__ void fence_proxy_async() {
#if defined(LLA_WGMMA_AVAILABLE)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_fence() {
#if defined(LLA_WGMMA_AVAILABLE)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(LLA_WGMMA_AVAILABLE)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if defined(LLA_WGMMA_AVAILABLE)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// The compiler must not move accumulator reads or writes across a wait: pass each
// accumulator through an empty asm that claims to modify it.
template <int R>
__device__ __forceinline__ void fence_accumulators(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// The same for register A operands: they must be final before wgmma_fence, or ptxas
// injects its own warpgroup.arrive between the wgmmas (warning C7519).
template <int R>
__device__ __forceinline__ void fence_operands(uint32_t (&a)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+r"(a[i])::"memory");
}

// d (64 x 32, fp32) {=, +=} A (64 x 16, shared, K-major) . B (16 x 32, shared; kTransB = 0:
// K-major, 1: MN-major), T (bf16 or fp16) inputs. d holds this thread's 16 accumulators (see the layout above).
template <int kTransB, class T = __nv_bfloat16>
__device__ __forceinline__ void wgmma_m64n32k16_ss(float (&d)[16], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
#if defined(LLA_WGMMA_AVAILABLE)
#define LLA_WGMMA_M64N32K16_SS(TYPES) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPES " " \
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, %19;\n}\n" \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]) \
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)), "n"(kTransB))
  if constexpr (kIsFp16<T>) {
    LLA_WGMMA_M64N32K16_SS("f16.f16");
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "bf16 or fp16");
    LLA_WGMMA_M64N32K16_SS("bf16.bf16");
  }
#undef LLA_WGMMA_M64N32K16_SS
#else
  wgmma_unavailable();
#endif
}

// d (64 x 64, fp32) {=, +=} A (64 x 16, shared, K-major) . B (16 x 64, shared; kTransB = 0:
// K-major, 1: MN-major), T (bf16 or fp16) inputs. d holds this thread's 32 accumulators (see the layout above).
template <int kTransB, class T = __nv_bfloat16>
__device__ __forceinline__ void wgmma_m64n64k16_ss(float (&d)[32], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
#if defined(LLA_WGMMA_AVAILABLE)
#define LLA_WGMMA_M64N64K16_SS(TYPES) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPES " " \
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, %35;\n}\n" \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)), "n"(kTransB))
  if constexpr (kIsFp16<T>) {
    LLA_WGMMA_M64N64K16_SS("f16.f16");
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "bf16 or fp16");
    LLA_WGMMA_M64N64K16_SS("bf16.bf16");
  }
#undef LLA_WGMMA_M64N64K16_SS
#else
  wgmma_unavailable();
#endif
}

// d (64 x 128, fp32) {=, +=} A (64 x 16, shared, K-major) . B (16 x 128, shared; kTransB = 0:
// K-major, 1: MN-major), T (bf16 or fp16) inputs. d holds this thread's 64 accumulators (see the layout above).
template <int kTransB, class T = __nv_bfloat16>
__device__ __forceinline__ void wgmma_m64n128k16_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
#if defined(LLA_WGMMA_AVAILABLE)
#define LLA_WGMMA_M64N128K16_SS(TYPES) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPES " " \
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, %67;\n}\n" \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)), "n"(kTransB))
  if constexpr (kIsFp16<T>) {
    LLA_WGMMA_M64N128K16_SS("f16.f16");
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "bf16 or fp16");
    LLA_WGMMA_M64N128K16_SS("bf16.bf16");
  }
#undef LLA_WGMMA_M64N128K16_SS
#else
  wgmma_unavailable();
#endif
}

// d (64 x 64, fp32) {=, +=} A (64 x 16, registers: this warp's m16k16 fragment, the mma.sync
// A layout) . B (16 x 64, shared; kTransB as above), T (bf16 or fp16) inputs.
template <int kTransB, class T = __nv_bfloat16>
__device__ __forceinline__ void wgmma_m64n64k16_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b,
                                                   bool accumulate) {
#if defined(LLA_WGMMA_AVAILABLE)
#define LLA_WGMMA_M64N64K16_RS(TYPES) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPES " " \
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n" \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(static_cast<int>(accumulate)), "n"(kTransB))
  if constexpr (kIsFp16<T>) {
    LLA_WGMMA_M64N64K16_RS("f16.f16");
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "bf16 or fp16");
    LLA_WGMMA_M64N64K16_RS("bf16.bf16");
  }
#undef LLA_WGMMA_M64N64K16_RS
#else
  wgmma_unavailable();
#endif
}

// d (64 x 128, fp32) {=, +=} A (64 x 16, registers: this warp's m16k16 fragment, the mma.sync
// A layout) . B (16 x 128, shared; kTransB as above), T (bf16 or fp16) inputs.
template <int kTransB, class T = __nv_bfloat16>
__device__ __forceinline__ void wgmma_m64n128k16_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b,
                                                   bool accumulate) {
#if defined(LLA_WGMMA_AVAILABLE)
#define LLA_WGMMA_M64N128K16_RS(TYPES) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPES " " \
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n" \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(static_cast<int>(accumulate)), "n"(kTransB))
  if constexpr (kIsFp16<T>) {
    LLA_WGMMA_M64N128K16_RS("f16.f16");
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "bf16 or fp16");
    LLA_WGMMA_M64N128K16_RS("bf16.bf16");
  }
#undef LLA_WGMMA_M64N128K16_RS
#else
  wgmma_unavailable();
#endif
}

// The SS product for N = 32, 64 or 128 columns (d holds N / 2 accumulators).
template <int N, int kTransB, class T = __nv_bfloat16>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  static_assert(N == 32 || N == 64 || N == 128, "wgmma_ss: N = 32, 64 or 128");
  if constexpr (N == 32) wgmma_m64n32k16_ss<kTransB, T>(d, desc_a, desc_b, accumulate);
  else if constexpr (N == 64) wgmma_m64n64k16_ss<kTransB, T>(d, desc_a, desc_b, accumulate);
  else wgmma_m64n128k16_ss<kTransB, T>(d, desc_a, desc_b, accumulate);
}

// The RS product for N = 64 or 128 columns.
template <int N, int kTransB, class T = __nv_bfloat16>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, bool accumulate) {
  static_assert(N == 64 || N == 128, "wgmma_rs: N = 64 or 128");
  if constexpr (N == 64) wgmma_m64n64k16_rs<kTransB, T>(d, a, desc_b, accumulate);
  else wgmma_m64n128k16_rs<kTransB, T>(d, a, desc_b, accumulate);
}

}  // namespace lla::gpu::wgmma
