#pragma once
// The split-KV merge: the partial states (m, d1, d2, O1, O2) of the splits of a row
// combined in a fixed order (deterministic), then o = (O1/d1)(1 + d2/d1) - O2/d1.
//
// Latency matters more than bytes here (at B = 1 the merge is on the critical
// path): the split states are loaded by a warp at once, the weights exp(m_s - m)
// go to shared memory once per row, and the O sums issue their loads back to back.
// Partials are read through L2 (__ldcg): in the fused merge other CTAs wrote them.
// Each phase issues all of its loads before it uses any (one round trip per phase).

#include "kernel.cuh"

namespace lla::gpu::decode {

inline constexpr int kMaxSplits = 128;  // parallax_decode refuses more
inline constexpr int kMaxMergeRows = 8;

struct MergeScratch {
  float w[kMaxMergeRows][kMaxSplits];  // exp(m_s - m) per row and split
  float m[kMaxMergeRows], d1[kMaxMergeRows], d2[kMaxMergeRows];
  long long orow[kMaxMergeRows];       // output row index (b, token, head flattened)
};

// Merges rows sc.orow[0 .. rows-1] with all threads of the block (blockDim.x, a
// multiple of 32). The caller fills sc.orow and synchronises before the call.
//   1. one warp per row: lanes load the splits' (m, d1, d2) side by side, then a
//      fixed shuffle tree takes the max and the weighted sums (deterministic);
//   2. one thread per (row, head dim): the weighted O sums over the splits.
template <class T>
__device__ void merge_rows(const Params& p, int rows, MergeScratch& sc) {
  constexpr int kPerLane = kMaxSplits / 32;
  const long long D = p.head_dim;
  const int S = p.num_splits;
  const long long stride = partial_floats(static_cast<int>(D));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const int Di = static_cast<int>(D);
  // The O loads of a thread's first output (a batch of kBatch splits) are issued before
  // the split states are reduced: they do not depend on the weights, and at B = 1 every
  // round trip to L2 is on the critical path. Splits past S re-read the last one and
  // are not added.
  constexpr int kBatch = 32;
  float pre1[kBatch], pre2[kBatch];
  if (static_cast<int>(threadIdx.x) < rows * Di) {
    const int x = threadIdx.x / Di, d = threadIdx.x % Di;
    const float* part = p.partials + sc.orow[x] * S * stride + 3 + d;
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int s = min(i, S - 1);
      pre1[i] = __ldcg(part + s * stride);
      pre2[i] = __ldcg(part + s * stride + D);
    }
  }
  for (int x = warp; x < rows; x += warps) {
    const float* part = p.partials + sc.orow[x] * S * stride;
    float ms[kPerLane], s1[kPerLane], s2[kPerLane];
    float m = -INFINITY;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int s = lane + 32 * i;
      ms[i] = s < S ? __ldcg(part + s * stride) : -INFINITY;
      s1[i] = s < S ? __ldcg(part + s * stride + 1) : 0.f;
      s2[i] = s < S ? __ldcg(part + s * stride + 2) : 0.f;
      m = fmaxf(m, ms[i]);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    const float m_safe = m == -INFINITY ? 0.f : m;
    float d1 = 0.f, d2 = 0.f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int s = lane + 32 * i;
      const float w = expf(ms[i] - m_safe);  // 0 for missing splits and empty ones
      if (s < S) sc.w[x][s] = w;
      d1 += w * s1[i];
      d2 += w * s2[i];
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      d1 += __shfl_xor_sync(0xffffffffu, d1, off);
      d2 += __shfl_xor_sync(0xffffffffu, d2, off);
    }
    if (lane == 0) {
      sc.m[x] = m;
      sc.d1[x] = d1;
      sc.d2[x] = d2;
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < rows * Di; idx += blockDim.x) {
    const int x = idx / Di, d = idx % Di;
    const float* part = p.partials + sc.orow[x] * S * stride + 3 + d;
    float o1 = 0.f, o2 = 0.f;
    for (int s0 = 0; s0 < S; s0 += kBatch) {
      float v1[kBatch], v2[kBatch];
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        if (s0 == 0 && idx == static_cast<int>(threadIdx.x)) {
          v1[i] = pre1[i];
          v2[i] = pre2[i];
        } else {
          const int s = min(s0 + i, S - 1);
          v1[i] = __ldcg(part + s * stride);
          v2[i] = __ldcg(part + s * stride + D);
        }
      }
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        if (s0 + i < S) {
          o1 += sc.w[x][s0 + i] * v1[i];
          o2 += sc.w[x][s0 + i] * v2[i];
        }
      }
    }
    const float d1 = sc.d1[x], d2 = sc.d2[x];
    static_cast<T*>(p.o)[sc.orow[x] * D + d] = from_float<T>(parallax_output(o1, o2, d1, d2));
    if (d == 0 && p.lse) p.lse[sc.orow[x]] = d1 > 0.f ? sc.m[x] + logf(d1) : -INFINITY;
  }
}

}  // namespace lla::gpu::decode
