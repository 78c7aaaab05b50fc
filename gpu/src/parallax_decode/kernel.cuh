#pragma once
// Device body of the Parallax decode kernel and of the split-KV merge.
// Math: docs/math.md sections 3-4 (two score branches sharing one running max):
//   s = c q.k (masked keys excluded), t = r.k (never masked)
//   d1 = sum p1, d2 = sum p1 t, O1 = sum p1 v, O2 = sum p1 t v
//   o  = (O1 / d1)(1 + d2 / d1) - O2 / d1        (empty row: o = 0, lse = -inf)

#include <cuda.h>  // CUtensorMap
#include <cuda_runtime.h>

#include <cfloat>
#include <cstddef>
#include <climits>
#include <cstdint>
#include <type_traits>

#include "../common/element.cuh"
#include "traits.cuh"

namespace lla::gpu::decode {

// Plain parameter struct: pointers, sizes, 64-bit strides. Travels unchanged from
// the launcher into the kernel (a __grid_constant__ parameter: the tensor maps must
// stay in parameter space for the copy engine to read them).
//
// The fields a CTA reads before its first copy come first, in the first two 64-byte
// lines of the constant bank. This was a test of whether constant-cache misses make
// up the ~3000-cycle prologue; the instrumented build says they do not (the prologue's
// steps took as long with the fields spread out, docs/gpu.md), and the order is kept
// because it costs nothing.
struct Params {
  // Read by every CTA before its first copy (the plan, the q/r rows, the copy choice).
  const void* q;
  const void* r;
  const int32_t* seqused_k;
  const int32_t* cache_start;
  long long seqlen_q, seqlen_k, heads_q, heads_kv;
  long long head_dim;
  long long group;       // heads_q / heads_kv
  long long rows;        // group * seqlen_q: query rows per (b, kv head)
  long long row_chunks;  // ceil(rows / kMaxRows)
  long long window;      // > 0: exactly W keys
  int num_splits;
  int tensor_maps;       // the tensor-core body copies K/V with k_map, v_map
  float scale;
  // Read later, or only by some paths.
  const void* k;
  const void* v;
  void* o;
  float* lse;
  float* partials;  // num_splits > 1
  const int32_t* page_table;
  long long max_pages_per_seq, page_size, num_pages;
  long long batch;
  // Tensor maps of the K and V caches as (D, H_kv, L_max, B) boxes of 64 columns x
  // the tile's keys, 128-byte swizzle; read by the copy engine (prefetched at entry).
  CUtensorMap k_map, v_map;
};
static_assert(offsetof(Params, scale) + sizeof(float) <= 128, "the prologue's fields fit two 64-byte lines");

// Loads n contiguous elements (n = 2, 4 or 8 when vectorised) into fp32.
template <class T, int N, bool kVec>
__device__ __forceinline__ void load_floats(const T* src, int valid, float (&dst)[N]) {
  if constexpr (kVec && (N * sizeof(T) == 16 || N * sizeof(T) == 8 || N * sizeof(T) == 4)) {
    if (valid >= N) {
      using Vec = typename std::conditional<N * sizeof(T) == 16, uint4,
                                            typename std::conditional<N * sizeof(T) == 8, uint2, uint32_t>::type>::type;
      const Vec raw = *reinterpret_cast<const Vec*>(src);
      const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int i = 0; i < N; ++i) dst[i] = to_float(e[i]);
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < N; ++i) dst[i] = i < valid ? to_float(src[i]) : 0.0f;
}

// Element offset of the D-vector of key j of KV head g of batch entry b.
__device__ __forceinline__ long long cache_offset(const Params& p, long long b, long long j, long long g) {
  long long slot;
  if (p.page_table != nullptr) {
    const long long page = p.page_table[b * p.max_pages_per_seq + j / p.page_size];
    slot = page * p.page_size + j % p.page_size;
  } else {
    slot = b * p.seqlen_k + j;
  }
  return (slot * p.heads_kv + g) * p.head_dim;
}

template <class T>
__device__ __forceinline__ const T* cache_row(const Params& p, const void* base, long long b, long long j,
                                              long long g) {
  return static_cast<const T*>(base) + cache_offset(p, b, j, g);
}

struct RowRange {
  long long begin, end;
};

// Keys of row `row` of this (b, g): end-aligned causal, window, left padding.
__device__ __forceinline__ RowRange row_range(const Params& p, long long lo, long long hi, long long row) {
  // Rows and groups are below 2^20 (the grid's y holds heads_kv x row chunks of <= 8
  // rows), so 32-bit division is exact; 64-bit division is a long subroutine on the
  // CTA's critical path.
  const long long token = static_cast<unsigned>(row) / static_cast<unsigned>(p.group);
  const long long a = hi - p.seqlen_q + token;  // key position of this query
  RowRange rr{lo, hi};
  if (a + 1 < rr.end) rr.end = a + 1;
  if (p.window > 0 && a - p.window + 1 > rr.begin) rr.begin = a - p.window + 1;
  if (rr.end < rr.begin) rr.end = rr.begin;
  return rr;
}

// o = (O1 / d1)(1 + d2 / d1) - O2 / d1 of one output element; 0 on an empty row (d1 = 0).
__device__ __forceinline__ float parallax_output(float o1, float o2, float d1, float d2) {
  float o = 0.f;
  if (d1 > 0.f) {
    const float inv = 1.f / d1;
    o = o1 * inv * (1.f + d2 * inv) - o2 * inv;
  }
  return o;
}

// Output row (b, token, query head, flattened) of the CTA row `row` of KV head g of
// batch entry b (rows are (token, head in group) pairs, below 2^20: 32-bit division).
__device__ __forceinline__ long long output_row(const Params& p, long long b, long long g, unsigned row) {
  const unsigned group = static_cast<unsigned>(p.group);
  const long long h = g * p.group + row % group, token = row / group;
  return (b * p.seqlen_q + token) * p.heads_q + h;
}

// What a CTA works on: its rows, their key ranges, and its split of the keys.
template <int R>
struct CtaPlan {
  long long b, g, row0;
  int rows, split;
  RowRange ranges[R];
  long long k_begin, k_end;  // this split's keys, a multiple of tile_keys wide
};

// The CTA's batch entry, KV head and rows (from the grid alone: no memory read).
struct CtaRows {
  long long b, g, row0;
  int rows;
};
template <int R>
__device__ __forceinline__ CtaRows cta_rows(const Params& p) {
  CtaRows c;
  c.b = blockIdx.z;
  const unsigned row_chunks = static_cast<unsigned>(p.row_chunks);  // <= 65535 (grid y)
  c.g = blockIdx.y / row_chunks;
  c.row0 = (blockIdx.y % row_chunks) * R;
  c.rows = static_cast<int>(min((long long)R, p.rows - c.row0));
  return c;
}

template <int R>
__device__ __forceinline__ CtaPlan<R> plan_cta(const Params& p, int tile_keys) {
  CtaPlan<R> c;
  const CtaRows cr = cta_rows<R>(p);
  c.b = cr.b;
  c.g = cr.g;
  c.row0 = cr.row0;
  c.rows = cr.rows;
  c.split = blockIdx.x;
  long long hi = p.seqused_k ? p.seqused_k[c.b] : p.seqlen_k;
  hi = max(0LL, min(hi, p.seqlen_k));  // clamp to the real capacity, never to a bucket
  long long lo = p.cache_start ? p.cache_start[c.b] : 0;
  lo = max(0LL, min(lo, hi));
  long long u_begin = LLONG_MAX, u_end = LLONG_MIN;
#pragma unroll
  for (int x = 0; x < R; ++x) {
    c.ranges[x] = RowRange{0, 0};
    if (x < c.rows) {
      c.ranges[x] = row_range(p, lo, hi, c.row0 + x);
      if (c.ranges[x].end > c.ranges[x].begin) {
        u_begin = min(u_begin, c.ranges[x].begin);
        u_end = max(u_end, c.ranges[x].end);
      }
    }
  }
  if (u_end < u_begin) u_begin = u_end = 0;
  // This split's share of the union of the rows' ranges, in whole tiles.
  const long long total = u_end - u_begin;
  const long long share = total < INT_MAX ? static_cast<long long>(static_cast<unsigned>(total + p.num_splits - 1) /
                                                                    static_cast<unsigned>(p.num_splits))
                                          : (total + p.num_splits - 1) / p.num_splits;
  const long long per_split = (share + tile_keys - 1) / tile_keys * tile_keys;
  c.k_begin = min(u_end, u_begin + c.split * per_split);
  c.k_end = min(u_end, c.k_begin + per_split);
  return c;
}

// Stages q and r of the CTA's rows in shared memory as fp32, zero-padded. The
// scale is applied to the finished dot product (s = c (q.k)), as the oracle does.
template <class Traits>
__device__ __forceinline__ void stage_queries(const Params& p, SharedStorage<Traits>& sm,
                                              const CtaPlan<Traits::kMaxRows>& c) {
  using T = typename Traits::T;
  for (int idx = threadIdx.x; idx < Traits::kMaxRows * Traits::kDMax; idx += Traits::kThreads) {
    const int x = idx / Traits::kDMax, d = idx % Traits::kDMax;
    float qv = 0.f, rv = 0.f;
    if (x < c.rows && d < p.head_dim) {
      const long long row = c.row0 + x;
      const long long h = c.g * p.group + row % p.group, token = row / p.group;
      const long long off = ((c.b * p.seqlen_q + token) * p.heads_q + h) * p.head_dim + d;
      qv = to_float(static_cast<const T*>(p.q)[off]);
      rv = to_float(static_cast<const T*>(p.r)[off]);
    }
    sm.q[x][d] = qv;
    sm.r[x][d] = rv;
  }
}

// The end of a CTA: warp sums of the lane partials, the CTA combination in warp
// order (deterministic: no atomics), then the output or the split's partial state.
template <class Traits>
__device__ void finish_cta(const Params& p, SharedStorage<Traits>& sm, int rows, long long row0, long long g,
                           long long b, int split, float (&m)[Traits::kMaxRows], float (&d1_lane)[Traits::kMaxRows],
                           float (&d2_lane)[Traits::kMaxRows], float (&o1)[Traits::kMaxRows][Traits::kDimsPerLane],
                           float (&o2)[Traits::kMaxRows][Traits::kDimsPerLane]) {
  using T = typename Traits::T;
  constexpr int W = Traits::kWarps, R = Traits::kMaxRows, DL = Traits::kDimsPerLane;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int lane_d0 = lane * DL;
  const long long D = p.head_dim;
#pragma unroll
  for (int x = 0; x < R; ++x) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      d1_lane[x] += __shfl_xor_sync(0xffffffffu, d1_lane[x], off);
      d2_lane[x] += __shfl_xor_sync(0xffffffffu, d2_lane[x], off);
    }
    if (lane == 0) {
      sm.warp_m[warp][x] = m[x];
      sm.warp_d1[warp][x] = d1_lane[x];
      sm.warp_d2[warp][x] = d2_lane[x];
    }
  }
  __syncthreads();
  if (threadIdx.x < R) {
    const int x = threadIdx.x;
    float mc = -INFINITY;
    for (int w = 0; w < W; ++w) mc = fmaxf(mc, sm.warp_m[w][x]);
    const float ms = mc == -INFINITY ? 0.f : mc;
    float d1 = 0.f, d2 = 0.f;
    for (int w = 0; w < W; ++w) {
      const float f = expf(sm.warp_m[w][x] - ms);
      d1 += f * sm.warp_d1[w][x];
      d2 += f * sm.warp_d2[w][x];
    }
    sm.cta_m[x] = mc;
    sm.cta_d1[x] = d1;
    sm.cta_d2[x] = d2;
  }
  for (int idx = threadIdx.x; idx < R * Traits::kDMax; idx += Traits::kThreads) {
    sm.acc_o1[idx / Traits::kDMax][idx % Traits::kDMax] = 0.f;
    sm.acc_o2[idx / Traits::kDMax][idx % Traits::kDMax] = 0.f;
  }
  __syncthreads();
  for (int w = 0; w < W; ++w) {
    if (warp == w) {
#pragma unroll
      for (int x = 0; x < R; ++x) {
        if (x >= rows) continue;
        const float ms = sm.cta_m[x] == -INFINITY ? 0.f : sm.cta_m[x];
        const float f = expf(m[x] - ms);
#pragma unroll
        for (int c = 0; c < DL; ++c) {
          sm.acc_o1[x][lane_d0 + c] += f * o1[x][c];
          sm.acc_o2[x][lane_d0 + c] += f * o2[x][c];
        }
      }
    }
    __syncthreads();
  }

  // Output: final combination (one split), or the split's partial state.
  for (int idx = threadIdx.x; idx < rows * D; idx += Traits::kThreads) {
    const int x = static_cast<int>(idx / D), d = static_cast<int>(idx % D);
    const long long row = row0 + x;
    const long long h = g * p.group + row % p.group, token = row / p.group;
    const long long orow = (b * p.seqlen_q + token) * p.heads_q + h;
    const float d1 = sm.cta_d1[x], d2 = sm.cta_d2[x];
    if (p.num_splits == 1) {
      float o = 0.f;
      if (d1 > 0.f) {
        const float inv = 1.f / d1;
        o = sm.acc_o1[x][d] * inv * (1.f + d2 * inv) - sm.acc_o2[x][d] * inv;
      }
      static_cast<T*>(p.o)[orow * D + d] = from_float<T>(o);
      if (d == 0 && p.lse) p.lse[orow] = d1 > 0.f ? sm.cta_m[x] + logf(d1) : -INFINITY;
    } else {
      float* part = p.partials + (orow * p.num_splits + split) * partial_floats(static_cast<int>(D));
      if (d == 0) {
        part[0] = sm.cta_m[x];
        part[1] = d1;
        part[2] = d2;
      }
      part[3 + d] = sm.acc_o1[x][d];
      part[3 + D + d] = sm.acc_o2[x][d];
    }
  }
}

template <class Traits>
__device__ void decode_cta(const Params& p, SharedStorage<Traits>& sm) {
  using T = typename Traits::T;
  constexpr int W = Traits::kWarps, R = Traits::kMaxRows, K = Traits::kTileKeys, DL = Traits::kDimsPerLane;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const CtaPlan<R> plan = plan_cta<R>(p, K);
  const long long b = plan.b, g = plan.g, row0 = plan.row0, k_begin = plan.k_begin, k_end = plan.k_end;
  const int rows = plan.rows, split = plan.split;
  const auto& ranges = plan.ranges;
  const long long D = p.head_dim;
  stage_queries<Traits>(p, sm, plan);
  __syncthreads();

  // Per-warp online state.
  float m[R], d1_lane[R], d2_lane[R], o1[R][DL], o2[R][DL];
#pragma unroll
  for (int x = 0; x < R; ++x) {
    m[x] = -INFINITY;
    d1_lane[x] = d2_lane[x] = 0.f;
#pragma unroll
    for (int c = 0; c < DL; ++c) o1[x][c] = o2[x][c] = 0.f;
  }
  const int lane_d0 = lane * DL;
  const int lane_dims = static_cast<int>(max(0LL, min((long long)DL, D - lane_d0)));

  for (long long tile = k_begin + warp * K; tile < k_end; tile += W * K) {
    // 1. Scores: lane = key.
    const long long j = tile + lane;
    const bool in_split = j < k_end;
    float s[R], t[R];
#pragma unroll
    for (int x = 0; x < R; ++x) s[x] = t[x] = 0.f;
    if (in_split) {
      const T* krow = cache_row<T>(p, p.k, b, j, g);
      constexpr int kChunks = Traits::kDMax / 8, kBatch = 4;
#pragma unroll
      for (int c0 = 0; c0 < kChunks; c0 += kBatch) {
        float kv[kBatch][8];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const int d0 = (c0 + u) * 8;
          if (d0 < D) {
            load_floats<T, 8, Traits::kVectorised>(krow + d0, static_cast<int>(min((long long)8, D - d0)), kv[u]);
          } else {
#pragma unroll
            for (int e = 0; e < 8; ++e) kv[u][e] = 0.f;
          }
        }
#pragma unroll
        for (int x = 0; x < R; ++x) {
          if (x >= rows) continue;
#pragma unroll
          for (int u = 0; u < kBatch; ++u) {
#pragma unroll
            for (int e = 0; e < 8; ++e) {
              s[x] += sm.q[x][(c0 + u) * 8 + e] * kv[u][e];
              t[x] += sm.r[x][(c0 + u) * 8 + e] * kv[u][e];
            }
          }
        }
      }
    }
    // 2. Online update per row (warp-uniform max and rescale).
#pragma unroll
    for (int x = 0; x < R; ++x) {
      if (x >= rows) continue;
      const bool valid = in_split && j >= ranges[x].begin && j < ranges[x].end;
      float sx = valid ? s[x] * p.scale : -INFINITY;
      float tile_max = sx;
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off));
      const float m_new = fmaxf(m[x], tile_max);
      const float m_safe = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = expf(m[x] - m_safe);
      const float p1 = valid ? expf(sx - m_safe) : 0.f;
      const float p2 = valid ? p1 * t[x] : 0.f;
      d1_lane[x] = d1_lane[x] * alpha + p1;
      d2_lane[x] = d2_lane[x] * alpha + p2;
#pragma unroll
      for (int c = 0; c < DL; ++c) {
        o1[x][c] *= alpha;
        o2[x][c] *= alpha;
      }
      m[x] = m_new;
      sm.p1[warp][x][lane] = p1;
      sm.p2[warp][x][lane] = p2;
    }
    __syncwarp();
    // 3. P.V: lane = slice of the head dim; only keys of this split are read.
    const int keys = static_cast<int>(min((long long)K, k_end - tile));
    constexpr int kUnroll = 4;
    for (int k0 = 0; k0 < keys; k0 += kUnroll) {
      float vv[kUnroll][DL];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (k0 + u < keys) {
          load_floats<T, DL, Traits::kVectorised>(cache_row<T>(p, p.v, b, tile + k0 + u, g) + lane_d0, lane_dims, vv[u]);
        } else {
#pragma unroll
          for (int c = 0; c < DL; ++c) vv[u][c] = 0.f;
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (k0 + u >= keys) continue;
#pragma unroll
        for (int x = 0; x < R; ++x) {
          if (x >= rows) continue;
          const float a1 = sm.p1[warp][x][k0 + u], a2 = sm.p2[warp][x][k0 + u];
#pragma unroll
          for (int c = 0; c < DL; ++c) {
            o1[x][c] += a1 * vv[u][c];
            o2[x][c] += a2 * vv[u][c];
          }
        }
      }
    }
    __syncwarp();
  }

  finish_cta<Traits>(p, sm, rows, row0, g, b, split, m, d1_lane, d2_lane, o1, o2);
}

}  // namespace lla::gpu::decode
