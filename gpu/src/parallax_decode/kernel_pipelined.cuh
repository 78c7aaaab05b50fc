#pragma once
// The pipelined decode body (head dims with D % 8 == 0): K and V tiles of 32 keys
// are copied into shared memory with cp.async, kStages tiles ahead, so many bytes
// are in flight per SM; the scores and the P.V products then read shared memory.
//   scores: 4 threads per key (each a quarter of the head dim, 16-byte chunks
//           interleaved), a 2-step shuffle reduction; each warp owns 8 keys of a tile
//   P.V   : each warp, lanes split the head dim, accumulates its 8 keys
// Each warp keeps its own running max and sums; the warps are combined at the end
// in warp order (deterministic), as in the simple body (kernel.cuh).

#include "../common/mma.cuh"
#include "kernel.cuh"

namespace lla::gpu::decode {

template <class Traits>
struct PipelinedLayout {
  static constexpr int kStages = 3;
  static constexpr int kTileKeys = 32;                    // keys per CTA tile (8 per warp)
  static constexpr int kKeysPerWarp = kTileKeys / Traits::kWarps;
  static constexpr int kRowBytes = Traits::kDMax * 2;     // bf16/fp16
  static constexpr int kPitch = kRowBytes + 64;           // +16 banks between rows: conflict-free LDS.128
  static constexpr int kTileBytes = kTileKeys * kPitch;
  static constexpr int kChunksPerRow = kRowBytes / 16;
  static_assert(Traits::kThreads == 4 * kTileKeys, "4 threads per key in the score phase");
  static constexpr size_t kKvBytes = size_t(2) * kStages * kTileBytes;  // K and V stages
};

using ptx::cp_async_16;
using ptx::cp_async_commit;
using ptx::cp_async_wait;

template <class Traits>
__device__ void decode_cta_pipelined(const Params& p, SharedStorage<Traits>& sm, unsigned char* kv_smem) {
  using T = typename Traits::T;
  using L = PipelinedLayout<Traits>;
  constexpr int R = Traits::kMaxRows, DL = Traits::kDimsPerLane, KW = L::kKeysPerWarp;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const CtaPlan<R> plan = plan_cta<R>(p, L::kTileKeys);
  const long long b = plan.b, g = plan.g, row0 = plan.row0, k_begin = plan.k_begin, k_end = plan.k_end;
  const int rows = plan.rows, split = plan.split;
  const auto& ranges = plan.ranges;
  const long long D = p.head_dim;
  const int tiles = static_cast<int>((k_end - k_begin + L::kTileKeys - 1) / L::kTileKeys);

  unsigned char* k_stage = kv_smem;
  unsigned char* v_stage = kv_smem + L::kStages * L::kTileBytes;
  // Issue the copies of tile `tile` into stage `stage`: 16-byte chunks spread over
  // all threads; keys past k_end and chunks past D are zero-filled, never read.
  auto load_tile = [&](int tile, int stage) {
    const long long key0 = k_begin + static_cast<long long>(tile) * L::kTileKeys;
    for (int c = threadIdx.x; c < L::kTileKeys * L::kChunksPerRow; c += Traits::kThreads) {
      const int kk = c / L::kChunksPerRow, chunk = c % L::kChunksPerRow;
      const long long j = key0 + kk;
      const bool fetch = j < k_end && chunk * 8 < D;
      const T* ksrc = fetch ? cache_row<T>(p, p.k, b, j, g) + chunk * 8 : static_cast<const T*>(p.k);
      const T* vsrc = fetch ? cache_row<T>(p, p.v, b, j, g) + chunk * 8 : static_cast<const T*>(p.v);
      cp_async_16(k_stage + stage * L::kTileBytes + kk * L::kPitch + chunk * 16, ksrc, fetch);
      cp_async_16(v_stage + stage * L::kTileBytes + kk * L::kPitch + chunk * 16, vsrc, fetch);
    }
  };
#pragma unroll
  for (int s = 0; s < L::kStages - 1; ++s) {
    if (s < tiles) load_tile(s, s);
    cp_async_commit();
  }

  stage_queries<Traits>(p, sm, plan);  // visible after the first tile's __syncthreads

  float m[R], d1_lane[R], d2_lane[R], o1[R][DL], o2[R][DL];
#pragma unroll
  for (int x = 0; x < R; ++x) {
    m[x] = -INFINITY;
    d1_lane[x] = d2_lane[x] = 0.f;
#pragma unroll
    for (int c = 0; c < DL; ++c) o1[x][c] = o2[x][c] = 0.f;
  }
  const int lane_d0 = lane * DL;
  const int part = threadIdx.x % 4;           // quarter of the head dim (interleaved 16-byte chunks)
  const int key_in_tile = threadIdx.x / 4;    // 0..31; warp w owns keys 8w..8w+7

  for (int tile = 0; tile < tiles; ++tile) {
    // Keep kStages - 1 tiles in flight: issue tile + kStages - 1, wait for `tile`.
    if (tile + L::kStages - 1 < tiles) load_tile(tile + L::kStages - 1, (tile + L::kStages - 1) % L::kStages);
    cp_async_commit();
    cp_async_wait<L::kStages - 1>();
    __syncthreads();
    const int stage = tile % L::kStages;
    const unsigned char* krow = k_stage + stage * L::kTileBytes + key_in_tile * L::kPitch;
    const long long j = k_begin + static_cast<long long>(tile) * L::kTileKeys + key_in_tile;

    // 1. Scores: this thread's quarter of q.k and r.k, then a 4-lane reduction.
    float s[R], t[R];
#pragma unroll
    for (int x = 0; x < R; ++x) s[x] = t[x] = 0.f;
#pragma unroll
    for (int c = part; c < L::kChunksPerRow; c += 4) {
      const uint4 raw = *reinterpret_cast<const uint4*>(krow + c * 16);
      const T* e = reinterpret_cast<const T*>(&raw);
      float kv[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) kv[i] = to_float(e[i]);
#pragma unroll
      for (int x = 0; x < R; ++x) {
        if (x >= rows) continue;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          s[x] += sm.q[x][c * 8 + i] * kv[i];
          t[x] += sm.r[x][c * 8 + i] * kv[i];
        }
      }
    }
#pragma unroll
    for (int x = 0; x < R; ++x) {
      if (x >= rows) continue;
      s[x] += __shfl_xor_sync(0xffffffffu, s[x], 1);
      s[x] += __shfl_xor_sync(0xffffffffu, s[x], 2);
      t[x] += __shfl_xor_sync(0xffffffffu, t[x], 1);
      t[x] += __shfl_xor_sync(0xffffffffu, t[x], 2);
    }
    // 2. Online update over this warp's 8 keys (max over lanes 4 apart).
#pragma unroll
    for (int x = 0; x < R; ++x) {
      if (x >= rows) continue;
      const bool valid = j < k_end && j >= ranges[x].begin && j < ranges[x].end;
      const float sx = valid ? s[x] * p.scale : -INFINITY;
      float tile_max = sx;
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off));
      const float m_new = fmaxf(m[x], tile_max);
      const float m_safe = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = expf(m[x] - m_safe);
      const float p1 = valid ? expf(sx - m_safe) : 0.f;
      const float p2 = valid ? p1 * t[x] : 0.f;
      // Each key's p is held by its 4 threads: count it once (part 0).
      d1_lane[x] = d1_lane[x] * alpha + (part == 0 ? p1 : 0.f);
      d2_lane[x] = d2_lane[x] * alpha + (part == 0 ? p2 : 0.f);
#pragma unroll
      for (int c = 0; c < DL; ++c) {
        o1[x][c] *= alpha;
        o2[x][c] *= alpha;
      }
      m[x] = m_new;
      if (part == 0) {
        sm.p1[warp][x][key_in_tile % KW] = p1;
        sm.p2[warp][x][key_in_tile % KW] = p2;
      }
    }
    __syncwarp();
    // 3. P.V over the warp's 8 keys from shared memory; lanes split the head dim.
    const unsigned char* vbase = v_stage + stage * L::kTileBytes + (warp * KW) * L::kPitch;
#pragma unroll
    for (int kk = 0; kk < KW; ++kk) {
      float vv[DL];
      const T* vrow = reinterpret_cast<const T*>(vbase + kk * L::kPitch) + lane_d0;
      if constexpr (DL * sizeof(T) == 16) {
        const uint4 raw = *reinterpret_cast<const uint4*>(vrow);
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int c = 0; c < DL; ++c) vv[c] = to_float(e[c]);
      } else if constexpr (DL * sizeof(T) == 8) {
        const uint2 raw = *reinterpret_cast<const uint2*>(vrow);
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int c = 0; c < DL; ++c) vv[c] = to_float(e[c]);
      } else {
        const uint32_t raw = *reinterpret_cast<const uint32_t*>(vrow);
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int c = 0; c < DL; ++c) vv[c] = to_float(e[c]);
      }
#pragma unroll
      for (int x = 0; x < R; ++x) {
        if (x >= rows) continue;
        const float a1 = sm.p1[warp][x][kk], a2 = sm.p2[warp][x][kk];
#pragma unroll
        for (int c = 0; c < DL; ++c) {
          o1[x][c] += a1 * vv[c];
          o2[x][c] += a2 * vv[c];
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  cp_async_wait<0>();

  finish_cta<Traits>(p, sm, rows, row0, g, b, split, m, d1_lane, d2_lane, o1, o2);
}

}  // namespace lla::gpu::decode
