#pragma once
// The split-KV merge: the partial states (m, d1, d2, O1, O2) of the splits of a row
// combined in split order (deterministic), then o = (O1/d1)(1 + d2/d1) - O2/d1.
//
// Latency matters more than bytes here (at B = 1 the merge is on the critical
// path): the split weights exp(m_s - m) are computed once per row into shared
// memory, and the O sums then issue their independent loads back to back.
// Partials are read through L2 (__ldcg): in the fused merge other CTAs wrote them.

#include "kernel.cuh"

namespace lla::gpu::decode {

inline constexpr int kMaxSplits = 128;  // parallax_decode refuses more
inline constexpr int kMaxMergeRows = 8;

struct MergeScratch {
  float w[kMaxMergeRows][kMaxSplits];  // exp(m_s - m) per row and split
  float m[kMaxMergeRows], d1[kMaxMergeRows], d2[kMaxMergeRows];
  long long orow[kMaxMergeRows];       // output row index (b, token, head flattened)
};

// Merges rows sc.orow[0 .. rows-1] with all threads of the block (blockDim.x).
// The caller fills sc.orow and synchronises before the call.
template <class T>
__device__ void merge_rows(const Params& p, int rows, MergeScratch& sc) {
  const long long D = p.head_dim;
  const int S = p.num_splits;
  const long long stride = partial_floats(static_cast<int>(D));
  if (static_cast<int>(threadIdx.x) < rows) {
    const int x = threadIdx.x;
    const float* part = p.partials + sc.orow[x] * S * stride;
    float m = -INFINITY;
    for (int s = 0; s < S; ++s) m = fmaxf(m, __ldcg(part + s * stride));
    const float ms = m == -INFINITY ? 0.f : m;
    float d1 = 0.f, d2 = 0.f;
    for (int s = 0; s < S; ++s) {
      const float w = expf(__ldcg(part + s * stride) - ms);
      sc.w[x][s] = w;
      d1 += w * __ldcg(part + s * stride + 1);
      d2 += w * __ldcg(part + s * stride + 2);
    }
    sc.m[x] = m;
    sc.d1[x] = d1;
    sc.d2[x] = d2;
  }
  __syncthreads();
  for (long long idx = threadIdx.x; idx < rows * D; idx += blockDim.x) {
    const int x = static_cast<int>(idx / D);
    const long long d = idx % D;
    const float* part = p.partials + sc.orow[x] * S * stride + 3 + d;
    float o1 = 0.f, o2 = 0.f;
#pragma unroll 8
    for (int s = 0; s < S; ++s) {
      o1 += sc.w[x][s] * __ldcg(part + s * stride);
      o2 += sc.w[x][s] * __ldcg(part + s * stride + D);
    }
    const float d1 = sc.d1[x], d2 = sc.d2[x];
    float o = 0.f;
    if (d1 > 0.f) {
      const float inv = 1.f / d1;
      o = o1 * inv * (1.f + d2 * inv) - o2 * inv;
    }
    static_cast<T*>(p.o)[sc.orow[x] * D + d] = from_float<T>(o);
    if (d == 0 && p.lse) p.lse[sc.orow[x]] = d1 > 0.f ? sc.m[x] + logf(d1) : -INFINITY;
  }
}

}  // namespace lla::gpu::decode
