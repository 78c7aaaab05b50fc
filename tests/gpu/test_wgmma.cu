// The Hopper building blocks of gpu/src/common/wgmma.cuh against a CPU product, before
// any kernel relies on them: the 128-byte-swizzled shared-memory layout, the matrix
// descriptors (K-major and MN-major, one and two 64-element column blocks), the
// register A operand, and the accumulator layout. Each case is one warpgroup
// computing one 64-row tile in the shapes the training kernels use (N = 32 for the
// backward's row steps, 64 and 128):
//   scores  S (64 x N) = Q (64 x 128) . K^T        A and B from shared memory, K-major
//   output  O (64 x N) = P (64 x 64) . V (64 x N)   A from registers, B MN-major
//   output  O (64 x N) = P (64 x 64) . V (64 x N)   A from shared memory, B MN-major
// Inputs are bf16, or fp16 for the .f16 instruction forms (exact in the products);
// the accumulation is fp32, so the error bound is fp32 rounding of the sums: a layout
// error gives O(1) errors instead.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "../../gpu/src/common/wgmma.cuh"
#include "gpu/gpu_gate.hpp"

namespace lla::test {
namespace {

using gpu::wgmma::sw128_offset;

enum class Form { qk_ss, pv_rs, pv_ss };

constexpr int kM = 64;       // rows of the warpgroup's tile
constexpr int kQkDepth = 128;  // K of the score product (head dim)
constexpr int kKeysDepth = 64;  // K of the output product (keys; 32 for the backward's row steps)

// Bytes of a 128-byte-swizzled operand: every row of a 64-column block takes 128 bytes,
// even when fewer columns are used (a 32-deep a still spans kM full rows).
__host__ __device__ constexpr int swizzled_bytes(int rows, int cols) { return rows * 128 * ((cols + 63) / 64); }

// One 128-byte-swizzled operand: `blocks` column blocks of `rows` rows each.
template <class T>
__device__ void store_swizzled(unsigned char* base, const T* src, int rows, int cols, int tid) {
  for (int i = tid; i < rows * cols; i += 128) {
    const int r = i / cols, c = i % cols;
    *reinterpret_cast<T*>(base + (c / 64) * rows * 128 + sw128_offset(r, c % 64)) = src[i];
  }
}

// Host conversions of the two element types.
template <class T>
T to_element(float x) {
  if constexpr (std::is_same_v<T, __half>) return __float2half(x);
  else return __float2bfloat16(x);
}
template <class T>
double from_element(T x) {
  if constexpr (std::is_same_v<T, __half>) return __half2float(x);
  else return __bfloat162float(x);
}

// a (kM x depth, row-major), b: K-major (n x depth, row-major) for qk, else MN-major
// (depth x (n + 64 kSkip), row-major: the product reads the columns after the first
// kSkip 64-column blocks, as the backward's kbar reads its second half). d: kM x n.
template <int N, Form F, int kPvDepth = kKeysDepth, int kSkip = 0, class T = __nv_bfloat16>
__global__ void __launch_bounds__(128) wgmma_probe_kernel(const T* a, const T* b, float* d) {
  extern __shared__ unsigned char raw[];
  // Atoms must be 1024-byte aligned: round the dynamic shared memory base up.
  const uint32_t raw_addr = static_cast<uint32_t>(__cvta_generic_to_shared(raw));
  unsigned char* smem = raw + ((1024 - raw_addr % 1024) % 1024);
  constexpr int kDepth = F == Form::qk_ss ? kQkDepth : kPvDepth;
  unsigned char* sa = smem;
  unsigned char* sb = smem + swizzled_bytes(kM, kDepth);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, grp = lane / 4, quad = lane % 4;
  store_swizzled(sa, a, kM, kDepth, tid);
  if constexpr (F == Form::qk_ss) {
    store_swizzled(sb, b, N, kDepth, tid);
  } else {
    store_swizzled(sb, b, kDepth, N + 64 * kSkip, tid);
  }
  gpu::wgmma::fence_proxy_async();
  __syncthreads();

  float acc[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) acc[i] = 0.f;
  gpu::wgmma::fence_accumulators(acc);
  gpu::wgmma::wgmma_fence();
#pragma unroll
  for (int ks = 0; ks < kDepth / 16; ++ks) {
    if constexpr (F == Form::qk_ss) {
      const int kb = ks / 4, within = (ks % 4) * 32;
      const uint64_t da = gpu::wgmma::smem_desc_sw128(sa + kb * kM * 128 + within, 16, 1024);
      const uint64_t db = gpu::wgmma::smem_desc_sw128(sb + kb * N * 128 + within, 16, 1024);
      gpu::wgmma::wgmma_ss<N, 0, T>(acc, da, db, ks > 0);
    } else {
      const uint64_t db = gpu::wgmma::smem_desc_sw128(sb + kSkip * kPvDepth * 128 + ks * 16 * 128, kPvDepth * 128, 1024);
      if constexpr (F == Form::pv_rs) {
        // This warp's m16k16 fragment of P, rows 16 warp .., keys 16 ks ..
        auto pack = [&](int row, int col) {
          const T lo = a[row * kDepth + col], hi = a[row * kDepth + col + 1];
          return static_cast<uint32_t>(*reinterpret_cast<const uint16_t*>(&lo)) |
                 (static_cast<uint32_t>(*reinterpret_cast<const uint16_t*>(&hi)) << 16);
        };
        const int row = 16 * warp + grp, col = 16 * ks + 2 * quad;
        const uint32_t frag[4] = {pack(row, col), pack(row + 8, col), pack(row, col + 8), pack(row + 8, col + 8)};
        gpu::wgmma::wgmma_rs<N, 1, T>(acc, frag, db, ks > 0);
      } else {
        const uint64_t da = gpu::wgmma::smem_desc_sw128(sa + (ks % 4) * 32, 16, 1024);
        gpu::wgmma::wgmma_ss<N, 1, T>(acc, da, db, ks > 0);
      }
    }
  }
  gpu::wgmma::wgmma_commit();
  gpu::wgmma::wgmma_wait<0>();
  gpu::wgmma::fence_accumulators(acc);
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
    const int row = 16 * warp + grp, col = 8 * j + 2 * quad;
    d[row * N + col] = acc[4 * j];
    d[row * N + col + 1] = acc[4 * j + 1];
    d[(row + 8) * N + col] = acc[4 * j + 2];
    d[(row + 8) * N + col + 1] = acc[4 * j + 3];
  }
}

template <int N, Form F, int kPvDepth = kKeysDepth, int kSkip = 0, class T = __nv_bfloat16>
std::string run_case(unsigned seed) {
  static_assert(kSkip == 0 || F != Form::qk_ss, "column-block offsets are for the MN-major forms");
  constexpr int kWidth = N + 64 * kSkip;  // columns of an MN-major b
  constexpr int kDepth = F == Form::qk_ss ? kQkDepth : kPvDepth;
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<T> a(kM * kDepth), b(static_cast<size_t>(kWidth) * kDepth);
  for (auto& x : a) x = to_element<T>(normal(gen));
  for (auto& x : b) x = to_element<T>(normal(gen));
  std::vector<double> want(kM * N, 0.0), scale(kM * N, 0.0);
  for (int i = 0; i < kM; ++i) {
    for (int j = 0; j < N; ++j) {
      for (int k = 0; k < kDepth; ++k) {
        const double x = from_element(a[i * kDepth + k]);
        const double y = F == Form::qk_ss ? from_element(b[j * kDepth + k]) : from_element(b[k * kWidth + j + 64 * kSkip]);
        want[i * N + j] += x * y;
        scale[i * N + j] += std::fabs(x * y);
      }
    }
  }
  T *da = nullptr, *db = nullptr;
  float* dd = nullptr;
  cudaMalloc(&da, a.size() * sizeof(a[0]));
  cudaMalloc(&db, b.size() * sizeof(b[0]));
  cudaMalloc(&dd, kM * N * sizeof(float));
  cudaMemcpy(da, a.data(), a.size() * sizeof(a[0]), cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * sizeof(b[0]), cudaMemcpyHostToDevice);
  cudaMemset(dd, 0xFF, kM * N * sizeof(float));  // NaN: every element must be written
  const int smem = swizzled_bytes(kM, kDepth) +
                   (F == Form::qk_ss ? swizzled_bytes(N, kDepth) : swizzled_bytes(kDepth, kWidth)) + 1024;
  cudaFuncSetAttribute(wgmma_probe_kernel<N, F, kPvDepth, kSkip, T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                       smem);
  wgmma_probe_kernel<N, F, kPvDepth, kSkip, T><<<1, 128, smem>>>(da, db, dd);
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  std::vector<float> got(kM * N);
  cudaMemcpy(got.data(), dd, got.size() * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dd);
  if (e != cudaSuccess) return std::string("CUDA error: ") + cudaGetErrorString(e);
  int bad = 0;
  std::string first;
  for (int i = 0; i < kM * N; ++i) {
    // fp32 accumulation of kDepth exact products: a few units of 2^-24 of sum |x y|.
    const double bound = 8.0 * kDepth * std::ldexp(1.0, -24) * scale[i] + 1e-30;
    if (!(std::fabs(got[i] - want[i]) <= bound)) {
      if (bad++ == 0) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "first mismatch at (%d, %d): got %.6g, want %.6g", i / N, i % N, got[i],
                      want[i]);
        first = buf;
      }
    }
  }
  if (bad == 0) return "";
  return std::to_string(bad) + " of " + std::to_string(kM * N) + " wrong; " + first;
}

TEST(Wgmma, ScoresFromSharedMemoryKMajor) {
  LLA_REQUIRE_DEVICE();
  for (unsigned seed : {1u, 2u}) {
    EXPECT_EQ((run_case<32, Form::qk_ss>(seed)), "") << "S = Q K^T, N = 32, seed " << seed;
    EXPECT_EQ((run_case<64, Form::qk_ss>(seed)), "") << "S = Q K^T, N = 64, seed " << seed;
    EXPECT_EQ((run_case<128, Form::qk_ss>(seed)), "") << "S = Q K^T, N = 128, seed " << seed;
  }
}

TEST(Wgmma, OutputFromRegistersAndMnMajorV) {
  LLA_REQUIRE_DEVICE();
  for (unsigned seed : {3u, 4u}) {
    EXPECT_EQ((run_case<64, Form::pv_rs>(seed)), "") << "O = P V, P in registers, N = 64, seed " << seed;
    EXPECT_EQ((run_case<128, Form::pv_rs>(seed)), "") << "O = P V, P in registers, N = 128, seed " << seed;
    // 32 keys deep: column blocks 4096 bytes apart (the backward's dK/dV and dQ/dR products)
    EXPECT_EQ((run_case<128, Form::pv_rs, 32>(seed)), "") << "O = P V, 32 deep, N = 128, seed " << seed;
    EXPECT_EQ((run_case<64, Form::pv_rs, 32>(seed)), "") << "O = P V, 32 deep, N = 64, seed " << seed;
    // the second 64-column block of a 128-wide tile alone (dQ/dR's kbar, half 1)
    EXPECT_EQ((run_case<64, Form::pv_rs, 32, 1>(seed)), "") << "O = P V, 32 deep, block 1, seed " << seed;
  }
}

TEST(Wgmma, OutputFromSharedMemoryAndMnMajorV) {
  LLA_REQUIRE_DEVICE();
  for (unsigned seed : {5u, 6u}) {
    EXPECT_EQ((run_case<64, Form::pv_ss>(seed)), "") << "O = P V, P in shared memory, N = 64, seed " << seed;
    EXPECT_EQ((run_case<128, Form::pv_ss>(seed)), "") << "O = P V, P in shared memory, N = 128, seed " << seed;
  }
}

// The .f16 forms the fp16 training kernels use, in the same layouts.
TEST(Wgmma, Fp16Forms) {
  LLA_REQUIRE_DEVICE();
  for (unsigned seed : {7u, 8u}) {
    EXPECT_EQ((run_case<32, Form::qk_ss, kKeysDepth, 0, __half>(seed)), "") << "fp16 S = Q K^T, N = 32, seed " << seed;
    EXPECT_EQ((run_case<64, Form::qk_ss, kKeysDepth, 0, __half>(seed)), "") << "fp16 S = Q K^T, N = 64, seed " << seed;
    EXPECT_EQ((run_case<64, Form::pv_rs, kKeysDepth, 0, __half>(seed)), "") << "fp16 O = P V, registers, N = 64";
    EXPECT_EQ((run_case<128, Form::pv_rs, kKeysDepth, 0, __half>(seed)), "") << "fp16 O = P V, registers, N = 128";
    EXPECT_EQ((run_case<128, Form::pv_rs, 32, 0, __half>(seed)), "") << "fp16 O = P V, 32 deep, N = 128";
    EXPECT_EQ((run_case<64, Form::pv_rs, 32, 1, __half>(seed)), "") << "fp16 O = P V, 32 deep, block 1";
    EXPECT_EQ((run_case<64, Form::pv_ss, kKeysDepth, 0, __half>(seed)), "") << "fp16 O = P V, shared, N = 64";
  }
}

}  // namespace
}  // namespace lla::test
