#pragma once
// Device body of the Parallax training forward on Hopper's warpgroup MMA (sm_90a):
// the same math, masks and rounding scheme as forward_kernel.cuh (read that first),
// with the products moved from mma.sync to wgmma (gpu/src/common/wgmma.cuh):
//
//   S (64 x 64 keys) = Q (64 x D) . K^T   and   T = R . K^T    A and B from shared memory
//   O1 (64 x D) += P1 . V,  O2 += P2hi . V + P2lo . V          A (the weights) from registers
//
// One CTA is one warpgroup (4 warps, 64 query rows; warp w owns rows 16w .. 16w + 15,
// the accumulator layout of mma.sync, so the online softmax is the mma.sync kernel's
// code with one flat index). Key tiles are 64 keys (the mma.sync version had to stop
// at 16 at D = 128: its S, T fragments shared registers with Q and R; here Q and R
// stay in shared memory and the tensor cores read them there). Q, R, K and V tiles are
// stored in 128-byte-swizzled atoms, K and V in the same physical layout (K is read
// K-major for S, V MN-major for P.V). cp.async fills them, two K/V stages deep; two
// CTAs fit on an SM at D = 128 (97 KB each).
//
// TrainKernel::automatic selects it on compute-capability 9.0 devices for D % 8 == 0
// (H200: 1.8-2.4x the mma.sync forward, the same errors; docs/training.md).

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/mma.cuh"
#include "../common/wgmma.cuh"
#include "forward_kernel.cuh"

namespace lla::gpu::train {

template <int kDMax_, int kP1Words_, class Element_ = __nv_bfloat16>
struct WgmmaForwardTraits {
  using Element = Element_;  // bf16 or fp16
  static constexpr int kThreads = 128;  // one warpgroup
  static constexpr int kBlockM = 64;    // query rows per CTA (wgmma's M)
  static constexpr int kBlockN = 64;    // keys per tile
  static constexpr int kDMax = kDMax_;  // head-dim bucket; columns past D are zero
  static_assert(kDMax == 64 || kDMax == 128, "head dim buckets 64 and 128");
  // Words (of T) per P1 weight: 1 for o alone, 2 when the backward's state (o_lo,
  // vbar_lo) is saved: it needs o and vbar to 16 bits (docs/training.md, "Saved state").
  static constexpr int kP1Words = kP1Words_;
  static_assert(kP1Words == 1 || kP1Words == 2, "P1 in one or two words");
  static constexpr int kStages = 2;
  static constexpr int kColBlocks = kDMax / 64;    // 64-element column blocks of every tile
  static constexpr int kKSteps = kDMax / 16;       // k-steps of S and T
  static constexpr int kPvSteps = kBlockN / 16;    // k-steps of P.V
  static constexpr int kScoreRegs = kBlockN / 2;   // fp32 accumulators of S (and of T) per thread
  static constexpr int kOutRegs = kDMax / 2;       // fp32 accumulators of O1 (and of O2) per thread
  static constexpr int kChunksPerRow = kDMax / 8;  // 16-byte chunks of a row
  static constexpr size_t kQBytes = size_t(kBlockM) * kDMax * 2;
  static constexpr size_t kTileBytes = size_t(kBlockN) * kDMax * 2;
  // Q, R, K and V stages, plus up to 1024 bytes to align the atoms.
  static constexpr size_t kSmemBytes = 2 * kQBytes + 2 * kStages * kTileBytes + 1024;
};

// Copies `rows` rows of a tile (row stride `stride` elements) into the swizzled layout:
// chunk c of row r goes to column block c / 8 (blocks `rows` * 128 bytes apart), row r,
// chunk (c % 8) ^ (r % 8). Rows past `valid` and chunks past D are zero-filled without
// reading global memory. Requires D % 8 == 0. A thread always copies the same chunk of
// every (kThreads / kChunksPerRow)-th row, a multiple of 8 rows apart: its swizzle and
// both addresses' increments are loop constants.
template <class Traits, int kRows>
__device__ __forceinline__ void load_swizzled(unsigned char* dst, const typename Traits::Element* src,
                                              long long stride, int valid, int D) {
  using T = typename Traits::Element;
  constexpr int kRowStep = Traits::kThreads / Traits::kChunksPerRow;
  static_assert(Traits::kThreads % Traits::kChunksPerRow == 0 && kRowStep % 8 == 0 && kRows % kRowStep == 0,
                "each thread keeps one chunk and one swizzle phase");
  const int chunk = threadIdx.x % Traits::kChunksPerRow, row0 = threadIdx.x / Traits::kChunksPerRow;
  const bool chunk_in = chunk * 8 < D;
  unsigned char* s = dst + (chunk / 8) * kRows * 128 + wgmma::sw128_offset(row0, (chunk % 8) * 8);
  const T* g = src + row0 * stride + chunk * 8;
#pragma unroll
  for (int it = 0; it < kRows / kRowStep; ++it) {
    const int row = row0 + it * kRowStep;
    const bool fetch = chunk_in && row < valid;
    ptx::cp_async_16(s + it * kRowStep * 128, fetch ? g + it * kRowStep * stride : src, fetch);
  }
}

template <class Traits>
__device__ void forward_cta_wgmma(const ForwardParams& p, unsigned char* smem_raw) {
  using namespace ptx;
  using T = typename Traits::Element;
  constexpr int NS = Traits::kBlockN / 8, NO = Traits::kDMax / 8;
  constexpr int SR = Traits::kScoreRegs, OR = Traits::kOutRegs;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, grp = lane / 4, quad = lane % 4;
  const long long head = blockIdx.y, kv_head = head / p.group, D = p.head_dim;
  const int dim = static_cast<int>(D);
  const SeqView sv = seq_view(p, blockIdx.z);
  const long long m0 = static_cast<long long>(blockIdx.x) * Traits::kBlockM;
  if (m0 >= sv.q_len) return;
  const int m_valid = static_cast<int>(min((long long)Traits::kBlockM, sv.q_len - m0));

  long long k_lo, k_hi, unused;
  row_keys(p, sv, m0, k_lo, unused);
  row_keys(p, sv, m0 + m_valid - 1, unused, k_hi);
  if (!p.causal) k_hi = sv.k_len;
  const int tiles = k_hi > k_lo ? static_cast<int>((k_hi - k_lo + Traits::kBlockN - 1) / Traits::kBlockN) : 0;

  // Atoms are 1024-byte aligned (the descriptors carry no base offset).
  const uint32_t raw_addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  unsigned char* smem = smem_raw + ((1024u - raw_addr % 1024u) % 1024u);
  unsigned char* q_smem = smem;
  unsigned char* r_smem = q_smem + Traits::kQBytes;
  unsigned char* k_smem = r_smem + Traits::kQBytes;
  unsigned char* v_smem = k_smem + Traits::kStages * Traits::kTileBytes;
  const long long q_stride = p.heads_q * D, kv_stride = p.heads_kv * D;
  const T* q_base = static_cast<const T*>(p.q) + ((sv.q_off + m0) * p.heads_q + head) * D;
  const T* r_base = static_cast<const T*>(p.r) + ((sv.q_off + m0) * p.heads_q + head) * D;
  const T* k_base = static_cast<const T*>(p.k) + (sv.k_off * p.heads_kv + kv_head) * D;
  const T* v_base = static_cast<const T*>(p.v) + (sv.k_off * p.heads_kv + kv_head) * D;

  auto load_kv = [&](int tile, int stage) {
    const long long j0 = k_lo + static_cast<long long>(tile) * Traits::kBlockN;
    const int valid = static_cast<int>(min((long long)Traits::kBlockN, k_hi - j0));
    load_swizzled<Traits, Traits::kBlockN>(k_smem + stage * Traits::kTileBytes, k_base + j0 * kv_stride, kv_stride,
                                           valid, dim);
    load_swizzled<Traits, Traits::kBlockN>(v_smem + stage * Traits::kTileBytes, v_base + j0 * kv_stride, kv_stride,
                                           valid, dim);
  };
  load_swizzled<Traits, Traits::kBlockM>(q_smem, q_base, q_stride, m_valid, dim);
  load_swizzled<Traits, Traits::kBlockM>(r_smem, r_base, q_stride, m_valid, dim);
  if (tiles > 0) load_kv(0, 0);
  cp_async_commit();

  // This thread's two rows' key ranges, relative to k_lo (32 bits: registers are scarce here).
  int row_begin[2], row_end[2];
  bool row_live[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const long long row = m0 + warp * 16 + grp + 8 * h;
    long long b, e;
    row_keys(p, sv, row, b, e);
    row_live[h] = row < sv.q_len;
    row_begin[h] = row_live[h] ? static_cast<int>(b - k_lo) : 0;
    row_end[h] = row_live[h] ? static_cast<int>(e - k_lo) : 0;
  }
  float m[2] = {-INFINITY, -INFINITY}, d1[2] = {0.f, 0.f}, d2[2] = {0.f, 0.f}, kappa[2] = {0.f, 0.f};
  bool kappa_set[2] = {false, false};
  // Accumulators in the wgmma layout: element c of n-tile n is [4 n + c]
  // (c = 0, 1: row grp; 2, 3: row grp + 8; columns 8 n + 2 quad + {0, 1}).
  float o1[OR], o2[OR], s[SR], t[SR];
#pragma unroll
  for (int i = 0; i < OR; ++i) o1[i] = o2[i] = 0.f;
#pragma unroll
  for (int i = 0; i < SR; ++i) s[i] = t[i] = 0.f;

  for (int tile = 0; tile < tiles; ++tile) {
    const int stage = tile % Traits::kStages;
    if (tile + 1 < tiles) load_kv(tile + 1, (tile + 1) % Traits::kStages);
    cp_async_commit();
    cp_async_wait<1>();
    wgmma::fence_proxy_async();  // cp.async wrote through the generic proxy; wgmma reads through the async one
    __syncthreads();
    const unsigned char* ks = k_smem + stage * Traits::kTileBytes;
    const unsigned char* vs = v_smem + stage * Traits::kTileBytes;

    // 1. S and T (64 rows x 64 keys), both operands from shared memory, K-major.
    wgmma::fence_accumulators(s);
    wgmma::fence_accumulators(t);
    wgmma::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < Traits::kKSteps; ++kk) {
      const int block = kk / 4, within = (kk % 4) * 32;
      const uint64_t dk = wgmma::smem_desc_sw128(ks + block * Traits::kBlockN * 128 + within, 16, 1024);
      const uint64_t dq = wgmma::smem_desc_sw128(q_smem + block * Traits::kBlockM * 128 + within, 16, 1024);
      wgmma::wgmma_m64n64k16_ss<0, T>(s, dq, dk, kk > 0);
    }
#pragma unroll
    for (int kk = 0; kk < Traits::kKSteps; ++kk) {
      const int block = kk / 4, within = (kk % 4) * 32;
      const uint64_t dk = wgmma::smem_desc_sw128(ks + block * Traits::kBlockN * 128 + within, 16, 1024);
      const uint64_t dr = wgmma::smem_desc_sw128(r_smem + block * Traits::kBlockM * 128 + within, 16, 1024);
      wgmma::wgmma_m64n64k16_ss<0, T>(t, dr, dk, kk > 0);
    }
    wgmma::wgmma_commit();
    wgmma::wgmma_wait<0>();
    wgmma::fence_accumulators(s);
    wgmma::fence_accumulators(t);

    // 2. Masks and the online update (forward_kernel.cuh, step 2, with flat indices).
    //    Instruction count matters here (the tensor cores wait for it): the masks are
    //    applied only where a row of this warp ends or starts inside the tile, exp2 is the
    //    MUFU alone, the t-weighted sum that fixes kappa is formed only until kappa is set,
    //    and the outputs are rescaled only when a row's max moved.
    const int j0 = tile * Traits::kBlockN + 2 * quad;  // relative to k_lo
    const int tile_lo = tile * Traits::kBlockN, tile_hi = tile_lo + Traits::kBlockN;
    const bool tile_full = __all_sync(0xffffffffu, row_begin[0] <= tile_lo && tile_hi <= row_end[0] &&
                                                       row_begin[1] <= tile_lo && tile_hi <= row_end[1]);
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
      if (tile_full) {
#pragma unroll
        for (int n = 0; n < NS; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float& x = s[4 * n + 2 * h + e];
            x *= p.scale_log2;
            mx = fmaxf(mx, x);
          }
      } else {
#pragma unroll
        for (int n = 0; n < NS; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int j = j0 + n * 8 + e;
            const bool valid = j >= row_begin[h] && j < row_end[h];
            float& x = s[4 * n + 2 * h + e];
            x = valid ? x * p.scale_log2 : -INFINITY;
            mx = fmaxf(mx, x);
          }
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[h], mx);
      const float m_safe = m_new == -INFINITY ? 0.f : m_new;
      alpha[h] = m_new == m[h] ? 1.f : exp2_approx(m[h] - m_safe);  // m = -inf: 0 (nothing accumulated)
      m[h] = m_new;
      float sum_p = 0.f;
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = s[4 * n + 2 * h + e];
          x = exp2_approx(x - m_safe);  // masked: exp2(-inf) = 0
          sum_p += x;
        }
      if (__any_sync(0xffffffffu, !kappa_set[h] && mx != -INFINITY)) {
        float tp = sum_p, tpt = 0.f;
#pragma unroll
        for (int n = 0; n < NS; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) tpt += s[4 * n + 2 * h + e] * t[4 * n + 2 * h + e];
        tp += __shfl_xor_sync(0xffffffffu, tp, 1);
        tp += __shfl_xor_sync(0xffffffffu, tp, 2);
        tpt += __shfl_xor_sync(0xffffffffu, tpt, 1);
        tpt += __shfl_xor_sync(0xffffffffu, tpt, 2);
        if (!kappa_set[h] && tp > 0.f) {
          kappa[h] = tpt / tp;
          kappa_set[h] = true;
        }
      }
      float sum_p2 = 0.f;
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int i = 4 * n + 2 * h + e;
          t[i] = s[i] * (t[i] - kappa[h]);
          sum_p2 += t[i];
        }
      d1[h] = d1[h] * alpha[h] + sum_p;
      d2[h] = d2[h] * alpha[h] + sum_p2;
    }
    // The weights as register A operands: k-step kk covers keys 16 kk .. 16 kk + 15,
    // n-tiles 2 kk and 2 kk + 1 of the score accumulators (the mma.sync A layout).
    // (Packing is register-neutral: each pair of fp32 weights dies as its words are made.)
    uint32_t a1[Traits::kPvSteps][4], a1_lo[Traits::kP1Words == 2 ? Traits::kPvSteps : 1][4];
    uint32_t a2_hi[Traits::kPvSteps][4], a2_lo[Traits::kPvSteps][4];
#pragma unroll
    for (int kk = 0; kk < Traits::kPvSteps; ++kk) {
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const int i = 8 * kk + 2 * w;  // w: (row grp, keys 2q), (grp + 8, 2q), (grp, 8 + 2q), (grp + 8, 8 + 2q)
        if constexpr (Traits::kP1Words == 2) {
          split2<T>(s[i], s[i + 1], a1[kk][w], a1_lo[kk][w]);
        } else {
          a1[kk][w] = pack2<T>(s[i], s[i + 1]);
        }
        split2<T>(t[i], t[i + 1], a2_hi[kk][w], a2_lo[kk][w]);
      }
    }
    if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
      for (int n = 0; n < NO; ++n)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            o1[4 * n + 2 * h + e] *= alpha[h];
            o2[4 * n + 2 * h + e] *= alpha[h];
          }
    }

    // 3. O1 += P1 V (kP1Words words per weight), O2 += P2 V (hi + lo); V is MN-major:
    //    64-column blocks kBlockN * 128 bytes apart, k-step kk 16 keys (2048 bytes) on.
#pragma unroll
    for (int kk = 0; kk < Traits::kPvSteps; ++kk) {
      wgmma::fence_operands(a1[kk]);
      if constexpr (Traits::kP1Words == 2) wgmma::fence_operands(a1_lo[kk]);
      wgmma::fence_operands(a2_hi[kk]);
      wgmma::fence_operands(a2_lo[kk]);
    }
    wgmma::fence_accumulators(o1);
    wgmma::fence_accumulators(o2);
    wgmma::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < Traits::kPvSteps; ++kk) {
      const uint64_t dv = wgmma::smem_desc_sw128(vs + kk * 16 * 128, Traits::kBlockN * 128, 1024);
      if constexpr (Traits::kDMax == 64) {
        wgmma::wgmma_m64n64k16_rs<1, T>(o1, a1[kk], dv, true);
        if constexpr (Traits::kP1Words == 2) wgmma::wgmma_m64n64k16_rs<1, T>(o1, a1_lo[kk], dv, true);
        wgmma::wgmma_m64n64k16_rs<1, T>(o2, a2_hi[kk], dv, true);
        wgmma::wgmma_m64n64k16_rs<1, T>(o2, a2_lo[kk], dv, true);
      } else {
        wgmma::wgmma_m64n128k16_rs<1, T>(o1, a1[kk], dv, true);
        if constexpr (Traits::kP1Words == 2) wgmma::wgmma_m64n128k16_rs<1, T>(o1, a1_lo[kk], dv, true);
        wgmma::wgmma_m64n128k16_rs<1, T>(o2, a2_hi[kk], dv, true);
        wgmma::wgmma_m64n128k16_rs<1, T>(o2, a2_lo[kk], dv, true);
      }
    }
    wgmma::wgmma_commit();
    wgmma::wgmma_wait<0>();
    wgmma::fence_accumulators(o1);
    wgmma::fence_accumulators(o2);
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  cp_async_wait<0>();

  // 4. As forward_kernel.cuh step 4.
  constexpr float kLn2 = 0.6931471805599453f;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float s1 = d1[h], s2 = d2[h];
    s1 += __shfl_xor_sync(0xffffffffu, s1, 1);
    s1 += __shfl_xor_sync(0xffffffffu, s1, 2);
    s2 += __shfl_xor_sync(0xffffffffu, s2, 1);
    s2 += __shfl_xor_sync(0xffffffffu, s2, 2);
    if (!row_live[h]) continue;
    const long long row = m0 + warp * 16 + grp + 8 * h;
    const long long orow = (sv.q_off + row) * p.heads_q + head;
    const float inv = s1 > 0.f ? 1.f / s1 : 0.f;
    const float tb = s2 * inv;
#pragma unroll
    for (int n = 0; n < NO; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const long long col = n * 8 + 2 * quad + e;
        if (col >= D) continue;
        const float vb = o1[4 * n + 2 * h + e] * inv;
        store_two_words(static_cast<T*>(p.o), static_cast<T*>(p.o_lo), orow * D + col,
                        vb * (1.f + tb) - o2[4 * n + 2 * h + e] * inv);
        if (p.vbar) store_two_words(static_cast<T*>(p.vbar), static_cast<T*>(p.vbar_lo), orow * D + col, vb);
      }
    if (quad == 0) {
      if (p.lse) p.lse[orow] = s1 > 0.f ? m[h] * kLn2 + logf(s1) : -INFINITY;
      if (p.tbar) p.tbar[orow] = s1 > 0.f ? tb + kappa[h] : 0.f;
    }
  }
}

}  // namespace lla::gpu::train
