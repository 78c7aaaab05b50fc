#pragma once
// The tensor-core decode body (bf16, D % 8 == 0). Profiling the CUDA-core body
// (kernel_pipelined.cuh) on an H200 showed it issue-bound, not memory-bound: half
// of all issue slots busy at 2.25 TB/s, so it could never reach the HBM rate.
// Here every product runs on mma.sync (m16n8k16, bf16 in, fp32 accumulate):
//
//   scores  [S; T] (16 x 16 keys) = [q rows; r rows] (16 x D) . K^T (D x 16 keys)
//           rows 0..7 hold the CTA's query rows, rows 8..15 their probes, so the
//           thread that owns s_xj in the accumulator also owns t_xj (same key).
//   P.V     [O1; O2] (16 x D) += [p1; p1 t] (16 x 16 keys) . V (16 keys x D)
//           the score accumulators are already the A operand layout (no shuffle).
//
// q, r, K and V are bf16 inputs, so the score products are exact. The weights p1
// and p2 = p1 t are fp32 and are split into two bf16 parts (hi + lo, 16 significand
// bits; bf16 has fp32's exponent range), so P.V stays within the baseline rule even
// where O2 cancels against O1 t-bar: the CPU model (tests/reference/
// test_kernel_numerics.cpp) and the H200 agree that a third word (all 24 bits)
// changes no measured error, and one word is not enough. Two words cost a third
// fewer P.V products than three (measured on the H200: equal error, 0-8% faster).
//
// One CTA = 4 warps; a tile is 64 keys, 16 per warp; K/V tiles arrive by cp.async,
// kStages deep, one barrier per tile. Each warp keeps its own running max; warps are
// combined in warp order at the end, and split partials are merged by the last CTA
// of each row group (a counter per group in the workspace), in split order. Both
// are deterministic.

#include <cooperative_groups.h>

#include "kernel.cuh"
#include "../common/mma.cuh"
#include "../common/tma.cuh"
#include "kernel_pipelined.cuh"  // cp.async helpers
#include "merge.cuh"
#include "timeline.cuh"

namespace lla::gpu::decode {

// Default configurations per head-dim bucket (see kDSplit and kStages below).
constexpr int mma_default_dsplit(int d_max) { return d_max == 256 ? 2 : 1; }
constexpr int mma_default_stages(int) { return 3; }
// bf16 words per P.V weight (see kWeightWords below); a tuning build may override it.
#ifndef LLA_DECODE_WEIGHT_WORDS
#define LLA_DECODE_WEIGHT_WORDS 2
#endif
// L2 prefetch-size hint of the K/V copies (0, 128 or 256 bytes); a tuning build may override it.
#ifndef LLA_DECODE_L2_PREFETCH
#define LLA_DECODE_L2_PREFETCH 128
#endif

template <int kDMax_, int kMaxRows_, int kDSplit_ = mma_default_dsplit(kDMax_),
          int kStages_ = mma_default_stages(kDMax_)>
struct MmaTraits {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kDMax = kDMax_;
  static constexpr int kMaxRows = kMaxRows_;  // query rows per CTA (<= 8: rows 8..15 hold the probes)
  static_assert(kMaxRows >= 1 && kMaxRows <= 8, "at most 8 rows: the other 8 mma rows are their probes");
  static_assert(kDMax == 64 || kDMax == 128 || kDMax == 256, "head dim buckets are 64, 128, 256");
  static constexpr int kKeysPerWarp = 16;  // one mma k-step of P.V
  // kDSplit = 2: two warps share each 16-key block (both compute its scores, each
  // does P.V for half the head dim): half the O registers and half the shared
  // memory per tile, so more CTAs fit on an SM (at D = 256, two instead of one).
  static constexpr int kDSplit = kDSplit_;
  static_assert(kDSplit == 1 || kDSplit == 2, "P.V split over 1 or 2 warps");
  static constexpr int kKeyGroups = kWarps / kDSplit;
  static constexpr int kTileKeys = kKeyGroups * kKeysPerWarp;
  // kStages - 1 tiles in flight per CTA while one is computed on.
  static constexpr int kStages = kStages_;
  static_assert(kStages >= 2 && kStages <= 8, "at least double buffering; an mbarrier per stage (8)");
  // Each fp32 weight enters P.V as 2 (hi + lo: 16 significand bits, the default) or
  // 3 (hi + mid + lo: all 24) bf16 words.
  static constexpr int kWeightWords = LLA_DECODE_WEIGHT_WORDS;
  static_assert(kWeightWords == 2 || kWeightWords == 3, "2 or 3 bf16 words per weight");
  static constexpr int kRowBytes = kDMax * 2;
  // K and V tiles are stored as 128-byte column boxes (64 head-dim columns) of
  // kTileKeys rows each, the 16-byte chunks of a row XOR-swizzled by row % 8: the
  // layout a tensor-map copy writes with 128-byte swizzling (so both copy engines
  // share it), and every ldmatrix phase reads 8 distinct bank groups.
  static constexpr int kBoxCols = 64, kBoxRowBytes = 128;
  static constexpr int kBoxes = kDMax / kBoxCols;
  static constexpr int kBoxBytes = kTileKeys * kBoxRowBytes;
  static constexpr int kTileBytes = kBoxes * kBoxBytes;
  static_assert(kTileBytes == kTileKeys * kRowBytes, "boxes cover the head-dim bucket");
  static constexpr int kChunksPerRow = kRowBytes / 16;
  static constexpr int kKSteps = kDMax / 16;   // k-steps of the score mma
  static constexpr int kNTiles = kDMax / 8 / kDSplit;  // n-tiles of the P.V mma per warp
  // q/r fragments live in registers up to D = 128; at 256 they are re-read from
  // shared memory each tile (the O accumulators already take 128 registers there).
  static constexpr bool kQrInRegisters = kDMax <= 128;
  // q and r rows: padded by 16 bytes so the 8 row addresses of an ldmatrix phase hit 8 bank groups.
  static constexpr int kQrPitch = kRowBytes + 16;
  static constexpr size_t kQrBytes = size_t(16) * kQrPitch;
  static constexpr size_t kKvBytes = size_t(2) * kStages * kTileBytes;
  // After the key loop the K/V stages are reused for the warp combination.
  static constexpr size_t kCombineBytes = size_t(kKeyGroups) * kMaxRows * 2 * kDMax * sizeof(float);
  // The cluster merge keeps the CTA's partial (O1 | O2 per row) after the combination.
  static constexpr size_t kClusterPartialBytes = size_t(kMaxRows) * 2 * kDMax * sizeof(float);
  static_assert(kCombineBytes + kClusterPartialBytes <= kKvBytes, "warp combination and partial fit in the K/V stages");
  // The swizzle repeats every 1024 bytes, so the stages start 1024-byte aligned: the
  // dynamic shared memory is aligned by hand (its base is only 16-byte aligned).
  static constexpr size_t kAlign = 1024;
  static constexpr size_t kSmemBytes = kAlign + kKvBytes + kQrBytes;
  // CTAs that fit on one SM (228 KB shared memory, and at most 3 for the registers:
  // the tensor-core body takes 150-190 a thread): used by the split heuristic and
  // the launch bounds.
  static constexpr int kCtasBySmem = static_cast<int>((227 * 1024) / (kSmemBytes + 1024 + 512));
  static constexpr int kCtasPerSm = kCtasBySmem < 3 ? kCtasBySmem : 3;
  // Byte offset of the 16-byte chunk `chunk` (0 .. kChunksPerRow - 1) of key row `row` in a tile.
  __device__ static __forceinline__ int chunk_offset(int row, int chunk) {
    return (chunk / 8) * kBoxBytes + row * kBoxRowBytes + (((chunk % 8) ^ (row % 8)) * 16);
  }
};

struct MmaSmallState {
  uint64_t tile_full[8];  // tensor-map copies: one mbarrier per K/V stage
  float warp_m[4][8], warp_d1[4][8], warp_d2[4][8];
  float cta_m[8], cta_d1[8], cta_d2[8];
  int is_last;
  MergeScratch merge;
};

using ptx::ldmatrix_x4;
using ptx::ldmatrix_x4_trans;
using ptx::mma_bf16;
using ptx::split2_bf16;
using ptx::split3_bf16;

// The most splits merged through distributed shared memory: a cluster of up to 16 CTAs
// (sizes above 8 are "non-portable", allowed on H100/H200 with an opt-in).
inline constexpr int kMaxClusterSplits = 16;

// Split counters live after the partials in the workspace (one int per CTA row group).
__host__ __device__ inline long long merge_counters_offset_floats(long long out_rows, int num_splits, int head_dim) {
  return out_rows * num_splits * partial_floats(head_dim);
}

// kClusterMerge: the splits of a row group form one thread-block cluster (grid x =
// cluster x = num_splits <= kMaxClusterSplits) and merge through distributed shared
// memory: each CTA keeps its partial in its own shared memory, the cluster
// synchronises, and each CTA merges a slice of the output columns reading its peers'
// partials in split order (deterministic). This replaces the global publish /
// fence / counter / re-read chain of the last-CTA merge, which is most of the time of
// a small decode (B = 1).
template <class Traits, bool kClusterMerge>
__device__ void decode_cta_mma(const Params& p, unsigned char* smem) {
  using T = __nv_bfloat16;
  constexpr int R = Traits::kMaxRows, NT = Traits::kNTiles, KS = Traits::kKSteps;
  __shared__ MmaSmallState st;
#ifdef LLA_DECODE_TIMELINE
  __shared__ long long tl_clk[kTimelinePoints];
  const unsigned long long tl_start_ns = global_timer_ns();
  if (threadIdx.x < kTimelinePoints) tl_clk[threadIdx.x] = 0;
  LLA_TL(0);
#endif
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int grp = lane / 4, quad = lane % 4;  // accumulator row (0..7) and column pair
  const int key_group = warp % Traits::kKeyGroups, d_part = warp / Traits::kKeyGroups;
  const int col0 = d_part * NT * 8;  // first head-dim column of this warp's P.V
  // Tensor-map copies (contiguous cache, D a whole number of boxes; chosen by the
  // launcher): thread 0 issues a tile's boxes, an mbarrier per stage counts its bytes.
  // The barriers are initialised first thing, before thread 0 has loads outstanding
  // for its fence to wait on (after the q and r loads, the instrumented build showed
  // the first copies issued no later or earlier: within 100 cycles either way).
  const bool tma = p.tensor_maps;
  if (tma && threadIdx.x == 0) {
    ptx::prefetch_tensor_map(&p.k_map);
    ptx::prefetch_tensor_map(&p.v_map);
#pragma unroll
    for (int s = 0; s < Traits::kStages; ++s) ptx::mbarrier_init(&st.tile_full[s], 1);
    ptx::mbarrier_init_fence();
  }
  __syncthreads();  // every thread sees the barriers initialised before any is armed
  LLA_TL(8);

  // q rows at mma rows 0..7, r rows at 8..15, bf16 (exact: they are bf16 inputs),
  // zero-padded; 16-byte loads (D % 8 == 0 keeps every row 16-byte aligned). They
  // are issued first, into registers, so that they are not queued behind the K/V
  // stream: issued after the first tiles' copies, the instrumented build saw them
  // arrive 3-4 us late on the large grids, with the first tile waiting in shared memory.
  constexpr int kQrChunks = 16 * Traits::kChunksPerRow;
  constexpr int kQrPerThread = (kQrChunks + Traits::kThreads - 1) / Traits::kThreads;
  uint4 qr_val[kQrPerThread];
  {
    const CtaRows cr = cta_rows<R>(p);
#pragma unroll
    for (int i = 0; i < kQrPerThread; ++i) {
      const int c = threadIdx.x + i * Traits::kThreads;
      const int row = c / Traits::kChunksPerRow, chunk = c % Traits::kChunksPerRow, x = row % 8;
      qr_val[i] = make_uint4(0u, 0u, 0u, 0u);
      if (c < kQrChunks && x < cr.rows && chunk * 8 < p.head_dim) {
        const long long off = output_row(p, cr.b, cr.g, static_cast<unsigned>(cr.row0 + x)) * p.head_dim + chunk * 8;
        qr_val[i] = *reinterpret_cast<const uint4*>(static_cast<const T*>(row < 8 ? p.q : p.r) + off);
      }
    }
  }
  // The fields the end of the CTA reads (o, lse, partials) sit in later constant-bank
  // lines: the last warp touches them now, off the path of the first copies. Measured
  // only together with the field order of Params (B1 L4096 9.96 -> 9.72 us, about the
  // run-to-run noise), so what it saves alone is not known.
  if (warp == Traits::kWarps - 1 && lane == 0) {
    asm volatile("" ::"l"(p.o), "l"(p.lse), "l"(p.partials), "l"(p.batch));
  }
  LLA_TL(9);
  const CtaPlan<R> plan = plan_cta<R>(p, Traits::kTileKeys);
  LLA_TL(10);
  const long long b = plan.b, g = plan.g, k_begin = plan.k_begin, k_end = plan.k_end;
  const int rows = plan.rows;
  const long long D = p.head_dim;
  const int Di = static_cast<int>(D);  // 32-bit index math in the epilogue (D <= 256)
  const int tiles = static_cast<int>((k_end - k_begin + Traits::kTileKeys - 1) / Traits::kTileKeys);

  unsigned char* k_stage = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<uintptr_t>(smem) + Traits::kAlign - 1) & ~uintptr_t(Traits::kAlign - 1));
  unsigned char* v_stage = k_stage + Traits::kStages * Traits::kTileBytes;
  unsigned char* qr_smem = v_stage + Traits::kStages * Traits::kTileBytes;

  // Each thread copies one 16-byte chunk column of every (kThreads / kChunksPerRow)-th
  // key. A contiguous cache steps by a fixed stride from key to key, so the 64-bit
  // address math is done once per CTA; a paged cache looks up every key's page.
  constexpr int kKeyStep = Traits::kThreads / Traits::kChunksPerRow;
  static_assert(Traits::kThreads % Traits::kChunksPerRow == 0 && Traits::kTileKeys % kKeyStep == 0, "copy layout");
  const int copy_chunk = threadIdx.x % Traits::kChunksPerRow, copy_key = threadIdx.x / Traits::kChunksPerRow;
  const bool chunk_in_d = copy_chunk * 8 < D;
  const long long key_stride = p.heads_kv * D;  // elements between consecutive keys (contiguous cache)
  const long long contiguous_base = (b * p.seqlen_k * p.heads_kv + g) * D + copy_chunk * 8;
  auto load_tile = [&](int tile, int stage) {
    const long long key0 = k_begin + static_cast<long long>(tile) * Traits::kTileKeys;
    if (tma) {
      if (threadIdx.x == 0) {
        uint64_t* bar = &st.tile_full[stage];
        ptx::mbarrier_arrive_expect_tx(bar, 2 * Traits::kTileBytes);
        const int j = static_cast<int>(key0);  // < 2^31: the launcher checks seqlen_k
#pragma unroll
        for (int box = 0; box < Traits::kBoxes; ++box) {
          const int off = stage * Traits::kTileBytes + box * Traits::kBoxBytes;
          const int c0 = box * Traits::kBoxCols, c1 = static_cast<int>(g), c3 = static_cast<int>(b);
          ptx::tma_load_4d(k_stage + off, &p.k_map, c0, c1, j, c3, bar);
          ptx::tma_load_4d(v_stage + off, &p.v_map, c0, c1, j, c3, bar);
        }
      }
      return;
    }
    unsigned char* kdst = k_stage + stage * Traits::kTileBytes;
    unsigned char* vdst = v_stage + stage * Traits::kTileBytes;
#pragma unroll
    for (int i = 0; i < Traits::kTileKeys / kKeyStep; ++i) {
      const long long j = key0 + copy_key + i * kKeyStep;
      const bool fetch = j < k_end && chunk_in_d;
      long long off = 0;
      if (fetch) {
        off = p.page_table == nullptr ? contiguous_base + j * key_stride
                                      : cache_offset(p, b, j, g) + copy_chunk * 8;
      }
      const int dst = Traits::chunk_offset(copy_key + i * kKeyStep, copy_chunk);
      ptx::cp_async_16_prefetch<LLA_DECODE_L2_PREFETCH>(kdst + dst, static_cast<const T*>(p.k) + off, fetch);
      ptx::cp_async_16_prefetch<LLA_DECODE_L2_PREFETCH>(vdst + dst, static_cast<const T*>(p.v) + off, fetch);
    }
  };
#pragma unroll
  for (int s = 0; s < Traits::kStages - 1; ++s) {
    if (s < tiles) load_tile(s, s);
    cp_async_commit();
  }
  LLA_TL(1);

#pragma unroll
  for (int i = 0; i < kQrPerThread; ++i) {
    const int c = threadIdx.x + i * Traits::kThreads;
    if (c < kQrChunks) {
      const int row = c / Traits::kChunksPerRow, chunk = c % Traits::kChunksPerRow;
      *reinterpret_cast<uint4*>(qr_smem + row * Traits::kQrPitch + chunk * 16) = qr_val[i];
    }
  }
  __syncthreads();  // q, r staged
  LLA_TL(2);

  // A-operand address of this lane for ldmatrix.x4 (matrix lane / 8: rows +8 for odd, k +8 for >= 2).
  const unsigned char* qr_lane = qr_smem + (lane % 8 + (lane / 8) % 2 * 8) * Traits::kQrPitch + (lane / 16) * 16;
  uint32_t qr_frag[Traits::kQrInRegisters ? KS : 1][4];
  if constexpr (Traits::kQrInRegisters) {
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) ldmatrix_x4(qr_frag[ks], qr_lane + ks * 32);
  }

  const bool row_live = grp < rows;
  // The running max and the exponents are kept in log2 units (exp2 is one MUFU
  // instruction; expf adds a range reduction to every weight on the critical path).
  // The CTA's max is converted back to natural units when it leaves the CTA.
  const float scale_log2 = p.scale * 1.4426950408889634f;
  constexpr float kLn2 = 0.6931471805599453f;
  RowRange range{0, 0};  // plan.ranges[grp], selected without a dynamic index (that would go to local memory)
#pragma unroll
  for (int x = 0; x < R; ++x) {
    if (x == grp) range = plan.ranges[x];
  }
  float m = -INFINITY, d1 = 0.f, d2 = 0.f;
  float acc[NT][4];  // [0..1]: O1 of row grp, [2..3]: O2 of row grp; columns nt*8 + 2*quad + {0,1}
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;

  // B-operand lane addresses. K (no transpose): key = lane % 8 + 8 * (lane / 16), chunk
  // 2 ks + (lane / 8) % 2; V (transpose): key = lane % 8 + 8 * ((lane / 8) % 2), chunk
  // c + lane / 16 for an even c. A lane's keys are = lane % 8 (mod 8), so its swizzle
  // is an XOR of the chunk index with a per-lane constant (chunk_offset in MmaTraits).
  const int warp_key0 = key_group * Traits::kKeysPerWarp;
  const int k_row = warp_key0 + lane % 8 + 8 * (lane / 16), v_row = warp_key0 + lane % 8 + 8 * ((lane / 8) % 2);
  const int k_xor = ((lane / 8) % 2) ^ (lane % 8), v_xor = (lane / 16) ^ (lane % 8);
  auto k_frag_off = [&](int ks) {  // chunks 2 ks (+1)
    return (ks / 4) * Traits::kBoxBytes + k_row * Traits::kBoxRowBytes + (((2 * ks) % 8) ^ k_xor) * 16;
  };
  auto v_frag_off = [&](int c) {  // chunks c (+1), c even
    return (c / 8) * Traits::kBoxBytes + v_row * Traits::kBoxRowBytes + ((c % 8) ^ v_xor) * 16;
  };

  for (int tile = 0; tile < tiles; ++tile) {
    const int stage = tile % Traits::kStages;
    if (tma) {
      ptx::mbarrier_wait(&st.tile_full[stage], (tile / Traits::kStages) % 2);
      // A tensor-map copy reads whole tiles: zero the V rows past the split's keys in
      // its last tile (they may hold anything, NaN included, and 0 x NaN is NaN in P.V).
      const long long tile_key0 = k_begin + static_cast<long long>(tile) * Traits::kTileKeys;
      const long long left = k_end - tile_key0;
      const int valid_keys = left < Traits::kTileKeys ? static_cast<int>(left) : Traits::kTileKeys;
      if (valid_keys < Traits::kTileKeys) {
        unsigned char* vt = v_stage + stage * Traits::kTileBytes;
        const int n = (Traits::kTileKeys - valid_keys) * Traits::kChunksPerRow;
        for (int c = threadIdx.x; c < n; c += Traits::kThreads) {
          const int row = valid_keys + c / Traits::kChunksPerRow, chunk = c % Traits::kChunksPerRow;
          *reinterpret_cast<uint4*>(vt + Traits::chunk_offset(row, chunk)) = make_uint4(0u, 0u, 0u, 0u);
        }
      }
    } else {
      cp_async_wait<Traits::kStages - 2>();
    }
    __syncthreads();  // tile's bytes visible; every warp is done with the stage refilled below
    if (tile == 0) LLA_TL(3);
    if (tile + Traits::kStages - 1 < tiles) {
      load_tile(tile + Traits::kStages - 1, (tile + Traits::kStages - 1) % Traits::kStages);
    }
    cp_async_commit();
    const unsigned char* kw = k_stage + stage * Traits::kTileBytes;
    const unsigned char* vw = v_stage + stage * Traits::kTileBytes;

    // 1. s and t for the warp's 16 keys: sc[n][0..1] = s, [2..3] = t of keys n*8 + 2*quad + {0,1}.
    // Two accumulators per key block (even / odd k-steps) halve the dependent mma chain.
    float sc[2][4], sc_odd[2][4];
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int c = 0; c < 4; ++c) sc[n][c] = sc_odd[n][c] = 0.f;
    }
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      uint32_t kf[4];  // b0, b1 of keys 0..7, then of keys 8..15
      ldmatrix_x4(kf, kw + k_frag_off(ks));
      float(&dst)[2][4] = ks % 2 == 0 ? sc : sc_odd;
      if constexpr (Traits::kQrInRegisters) {
        mma_bf16(dst[0], qr_frag[ks], kf[0], kf[1]);
        mma_bf16(dst[1], qr_frag[ks], kf[2], kf[3]);
      } else {
        uint32_t a[4];
        ldmatrix_x4(a, qr_lane + ks * 32);
        mma_bf16(dst[0], a, kf[0], kf[1]);
        mma_bf16(dst[1], a, kf[2], kf[3]);
      }
    }
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int c = 0; c < 4; ++c) sc[n][c] += sc_odd[n][c];
    }

    // 2. Online update of row grp over the 16 keys (its 4 lanes hold 4 keys each).
    const long long key0 = k_begin + static_cast<long long>(tile) * Traits::kTileKeys + warp_key0 + 2 * quad;
    float sx[2][2], tile_max = -INFINITY;
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const long long j = key0 + n * 8 + i;
        const bool valid = row_live && j < k_end && j >= range.begin && j < range.end;
        sx[n][i] = valid ? sc[n][i] * scale_log2 : -INFINITY;
        tile_max = fmaxf(tile_max, sx[n][i]);
      }
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float m_new = fmaxf(m, tile_max);
    const float m_safe = m_new == -INFINITY ? 0.f : m_new;
    // Rescale only when the running max moved (after the first tiles it rarely does).
    const bool rescale = m_new != m;
    const float alpha = rescale ? exp2f(m - m_safe) : 1.f;  // 0 while m = -inf (nothing accumulated yet)
    m = m_new;
    float p1[2][2], p2[2][2];
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        p1[n][i] = sx[n][i] == -INFINITY ? 0.f : exp2f(sx[n][i] - m_safe);
        // Invalid keys get p2 = 0 outright: their t may be NaN (a tensor-map copy reads
        // whole tiles), and p1 t = 0 x NaN would not be 0.
        p2[n][i] = sx[n][i] == -INFINITY ? 0.f : p1[n][i] * sc[n][2 + i];
      }
    }
    d1 = d1 * alpha + ((p1[0][0] + p1[0][1]) + (p1[1][0] + p1[1][1]));
    d2 = d2 * alpha + ((p2[0][0] + p2[0][1]) + (p2[1][0] + p2[1][1]));
    if (rescale) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[nt][c] *= alpha;
      }
    }

    // 3. [O1; O2] += [p1; p2] . V, each weight as kWeightWords bf16 parts.
    uint32_t a_hi[4], a_mid[4], a_lo[4];
    if constexpr (Traits::kWeightWords == 3) {
      split3_bf16(p1[0][0], p1[0][1], a_hi[0], a_mid[0], a_lo[0]);  // row grp,     keys 2q..2q+1
      split3_bf16(p2[0][0], p2[0][1], a_hi[1], a_mid[1], a_lo[1]);  // row grp + 8, keys 2q..2q+1
      split3_bf16(p1[1][0], p1[1][1], a_hi[2], a_mid[2], a_lo[2]);  // row grp,     keys 8+2q..
      split3_bf16(p2[1][0], p2[1][1], a_hi[3], a_mid[3], a_lo[3]);  // row grp + 8, keys 8+2q..
    } else {
      split2_bf16(p1[0][0], p1[0][1], a_hi[0], a_lo[0]);
      split2_bf16(p2[0][0], p2[0][1], a_hi[1], a_lo[1]);
      split2_bf16(p1[1][0], p1[1][1], a_hi[2], a_lo[2]);
      split2_bf16(p2[1][0], p2[1][1], a_hi[3], a_lo[3]);
    }
#pragma unroll
    for (int nt = 0; nt < NT; nt += 2) {
      uint32_t vf[4];  // b0, b1 of dims nt*8.., then of dims (nt+1)*8..
      ldmatrix_x4_trans(vf, vw + v_frag_off(col0 / 8 + nt));
      mma_bf16(acc[nt], a_hi, vf[0], vf[1]);
      mma_bf16(acc[nt + 1], a_hi, vf[2], vf[3]);
      if constexpr (Traits::kWeightWords == 3) {
        mma_bf16(acc[nt], a_mid, vf[0], vf[1]);
        mma_bf16(acc[nt + 1], a_mid, vf[2], vf[3]);
      }
      mma_bf16(acc[nt], a_lo, vf[0], vf[1]);
      mma_bf16(acc[nt + 1], a_lo, vf[2], vf[3]);
    }
  }
  cp_async_wait<0>();

  LLA_TL(4);
  // 4. Warps combined in warp order.
  d1 += __shfl_xor_sync(0xffffffffu, d1, 1);
  d1 += __shfl_xor_sync(0xffffffffu, d1, 2);
  d2 += __shfl_xor_sync(0xffffffffu, d2, 1);
  d2 += __shfl_xor_sync(0xffffffffu, d2, 2);
  if (quad == 0 && grp < R && d_part == 0) {  // the other D part holds the same sums
    st.warp_m[warp][grp] = m;
    st.warp_d1[warp][grp] = d1;
    st.warp_d2[warp][grp] = d2;
  }
  __syncthreads();  // also: every warp is done with the K/V stages reused below
  if (tma && threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < Traits::kStages; ++s) ptx::mbarrier_inval(&st.tile_full[s]);
  }
  if (threadIdx.x < R) {
    const int x = threadIdx.x;
    float mc = -INFINITY;
    for (int w = 0; w < Traits::kKeyGroups; ++w) mc = fmaxf(mc, st.warp_m[w][x]);
    const float ms = mc == -INFINITY ? 0.f : mc;
    float s1 = 0.f, s2 = 0.f;
    for (int w = 0; w < Traits::kKeyGroups; ++w) {
      const float f = exp2f(st.warp_m[w][x] - ms);
      s1 += f * st.warp_d1[w][x];
      s2 += f * st.warp_d2[w][x];
    }
    st.cta_m[x] = mc;
    st.cta_d1[x] = s1;
    st.cta_d2[x] = s2;
  }
  __syncthreads();
  float* combine = reinterpret_cast<float*>(k_stage);  // [key group][row][O1 | O2][kDMax]
  if (grp < R) {
    const float ms = st.cta_m[grp] == -INFINITY ? 0.f : st.cta_m[grp];
    const float f = exp2f(m - ms);
    float* o1 = combine + ((key_group * R + grp) * 2) * Traits::kDMax;
    float* o2 = o1 + Traits::kDMax;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int col = col0 + nt * 8 + 2 * quad;
      o1[col] = f * acc[nt][0];
      o1[col + 1] = f * acc[nt][1];
      o2[col] = f * acc[nt][2];
      o2[col + 1] = f * acc[nt][3];
    }
  }
  __syncthreads();

  LLA_TL(5);
  // 5. The output (one split) or this split's partial, then the fused merge.
  const int split = plan.split;
  // The CTA's (O1, O2) of output element (x, d): the key groups' parts in warp order.
  auto combined = [&](int x, int d, float& o1, float& o2) {
    o1 = o2 = 0.f;
#pragma unroll
    for (int w = 0; w < Traits::kKeyGroups; ++w) {
      o1 += combine[((w * R + x) * 2) * Traits::kDMax + d];
      o2 += combine[((w * R + x) * 2 + 1) * Traits::kDMax + d];
    }
  };
  if constexpr (kClusterMerge) {
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    constexpr int kP = Traits::kDMax;
    float* part = combine + Traits::kKeyGroups * R * 2 * kP;  // [row][O1 | O2][kDMax]
    for (int idx = threadIdx.x; idx < rows * D; idx += Traits::kThreads) {
      const int x = idx / Di, d = idx % Di;
      float o1, o2;
      combined(x, d, o1, o2);
      part[(x * 2) * kP + d] = o1;
      part[(x * 2 + 1) * kP + d] = o2;
    }
    cluster.sync();  // every split's partial and (m, d1, d2) are in its shared memory
    LLA_TL(6);
    const int S = p.num_splits;
    // Latency is the cost here (B = 1): every remote load of a phase is issued before
    // any is used, so each phase is one round trip through the cluster.
    // Per row, one warp: lane s reads split s's (m, d1, d2); shuffles give the max and
    // the weighted sums in a fixed order (deterministic); the weights exp2(m_s - m) go
    // to shared memory.
    for (int x = warp; x < rows; x += Traits::kWarps) {
      const int src = min(lane, S - 1);
      const float ms = lane < S ? *cluster.map_shared_rank(&st.cta_m[x], src) : -INFINITY;
      const float s1 = *cluster.map_shared_rank(&st.cta_d1[x], src);
      const float s2 = *cluster.map_shared_rank(&st.cta_d2[x], src);
      float mx = ms;
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float m_safe = mx == -INFINITY ? 0.f : mx;
      const float w = lane < S ? exp2f(ms - m_safe) : 0.f;  // 0 for empty splits
      float w1 = lane < S ? w * s1 : 0.f, w2 = lane < S ? w * s2 : 0.f;
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) {
        w1 += __shfl_xor_sync(0xffffffffu, w1, off);
        w2 += __shfl_xor_sync(0xffffffffu, w2, off);
      }
      if (lane < S) st.merge.w[x][lane] = w;
      if (lane == 0) {
        st.merge.m[x] = mx;
        st.merge.d1[x] = w1;
        st.merge.d2[x] = w2;
      }
    }
    __syncthreads();
    // This CTA's slice of the (row, column) outputs; all 2 x kMaxClusterSplits loads of
    // an output first (splits past S re-read the last one and are not added).
    const int total = rows * Di;
    const int per_cta = (total + S - 1) / S;
    const int rank = static_cast<int>(cluster.block_rank());
    const int first = rank * per_cta, last = min(total, first + per_cta);
    for (int idx = first + threadIdx.x; idx < last; idx += Traits::kThreads) {
      const int x = idx / Di, d = idx % Di;
      float v1[kMaxClusterSplits], v2[kMaxClusterSplits];
#pragma unroll
      for (int s = 0; s < kMaxClusterSplits; ++s) {
        const float* peer = cluster.map_shared_rank(part, min(s, S - 1));
        v1[s] = peer[(x * 2) * kP + d];
        v2[s] = peer[(x * 2 + 1) * kP + d];
      }
      float o1 = 0.f, o2 = 0.f;
#pragma unroll
      for (int s = 0; s < kMaxClusterSplits; ++s) {
        if (s < S) {
          o1 += st.merge.w[x][s] * v1[s];
          o2 += st.merge.w[x][s] * v2[s];
        }
      }
      const long long orow = output_row(p, b, g, static_cast<unsigned>(plan.row0 + x));
      const float s1 = st.merge.d1[x], s2 = st.merge.d2[x];
      static_cast<T*>(p.o)[orow * D + d] = from_float<T>(parallax_output(o1, o2, s1, s2));
      if (d == 0 && p.lse) p.lse[orow] = s1 > 0.f ? st.merge.m[x] * kLn2 + logf(s1) : -INFINITY;
    }
    cluster.sync();  // no CTA leaves while a peer may still read its shared memory
    LLA_TL(7);
    LLA_TL_FLUSH();
  } else {
    for (int idx = threadIdx.x; idx < rows * D; idx += Traits::kThreads) {
      const int x = idx / Di, d = idx % Di;
      float o1, o2;
      combined(x, d, o1, o2);
      const long long orow = output_row(p, b, g, static_cast<unsigned>(plan.row0 + x));
      const float s1 = st.cta_d1[x], s2 = st.cta_d2[x];
      if (p.num_splits == 1) {
        static_cast<T*>(p.o)[orow * D + d] = from_float<T>(parallax_output(o1, o2, s1, s2));
        if (d == 0 && p.lse) p.lse[orow] = s1 > 0.f ? st.cta_m[x] * kLn2 + logf(s1) : -INFINITY;
      } else {
        float* part = p.partials + (orow * p.num_splits + split) * partial_floats(static_cast<int>(D));
        if (d == 0) {
          part[0] = st.cta_m[x] * kLn2;  // natural units, as the merge expects
          part[1] = s1;
          part[2] = s2;
        }
        part[3 + d] = o1;
        part[3 + D + d] = o2;
      }
    }
    if (p.num_splits == 1) {
      LLA_TL(7);
      LLA_TL_FLUSH();
      return;
    }

    // Last CTA of this row group merges (threadFenceReduction pattern): publish the
    // partial, count, and let the CTA that completes the count read all of them.
    __threadfence();
    __syncthreads();
    const long long out_rows = p.batch * p.seqlen_q * p.heads_q;
    int* counters = reinterpret_cast<int*>(p.partials + merge_counters_offset_floats(out_rows, p.num_splits,
                                                                                       static_cast<int>(D)));
    const long long group_id = static_cast<long long>(blockIdx.z) * gridDim.y + blockIdx.y;
    if (threadIdx.x == 0) {
      const int before = atomicAdd(counters + group_id, 1);
      st.is_last = before == p.num_splits - 1;
      if (st.is_last) counters[group_id] = 0;  // every call leaves the counters zero
    }
    __syncthreads();
    LLA_TL(6);
    if (!st.is_last) {
      LLA_TL_FLUSH();
      return;
    }
    __threadfence();
    if (threadIdx.x < rows) {
      st.merge.orow[threadIdx.x] = output_row(p, b, g, static_cast<unsigned>(plan.row0) + threadIdx.x);
    }
    __syncthreads();
    merge_rows<T>(p, rows, st.merge);
#ifdef LLA_DECODE_TIMELINE
    __syncthreads();
#endif
    LLA_TL(7);
    LLA_TL_FLUSH();
  }
}

}  // namespace lla::gpu::decode
