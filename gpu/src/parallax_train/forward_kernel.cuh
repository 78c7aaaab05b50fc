#pragma once
// Device body of the Parallax training forward (bf16 or fp16 in, mma.sync m16n8k16).
// Math: docs/math.md sections 3-4 and docs/training.md. Per tile of 32 keys, a warp
// computes S = Q K^T and T = R K^T for its 16 rows (two products), updates the
// running max in log2 units, and accumulates
//   O1 += P1 V,  O2 += P2 V  with  P1 = exp2(c log2e S - m),  P2 = P1 (T - kappa)
// where kappa is a per-row constant fixed at the row's first tile with a valid key
// (the weighted mean of t over that tile). The output is invariant to t -> t - kappa
// (spec: "t shift"); the shift keeps P2 near the scale of the spread of t rather
// than of |t|, which is what O2 cancels against in o = O1/d1 (1 + d2/d1) - O2/d1.
// P1 goes to the tensor cores as one word of T (FlashAttention's choice for P), P2 as
// hi + lo words (16 significand bits): the CPU model of this rounding
// (tests/reference/test_kernel_numerics.cpp) meets the baseline-relative rule with
// this split on every input class, and fails it with one word for P2.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/mma.cuh"
#include "traits.cuh"

namespace lla::gpu::train {

// Tensors hold elements of the call's type T (bf16 or fp16), which the kernels
// take from their Traits::Element.
struct ForwardParams {
  const void* q;
  const void* r;
  const void* k;
  const void* v;
  void* o;
  void* vbar;     // may be null
  void* o_lo;     // may be null: o - T(o), the residual the backward needs
  void* vbar_lo;  // may be null: the same for vbar
  float* lse;           // may be null
  float* tbar;          // may be null
  const int32_t* cu_seqlens_q;  // null: dense
  const int32_t* cu_seqlens_k;  // null: same as q (varlen) or dense
  long long seqlen_q, seqlen_k;  // dense: per batch entry
  long long heads_q, heads_kv, group, head_dim;
  float scale_log2;  // c * log2(e)
  bool causal;
  long long window;  // > 0: exactly W keys
};

// x as T in `hi`, and where `lo` is not null the residual x - hi in `lo`: the
// backward's row terms T_i = g.o and b_i = g.vbar need o and vbar to 16 significand
// bits (docs/training.md, "Saved state"; tests/reference/test_kernel_numerics.cpp).
template <class T>
__device__ __forceinline__ void store_two_words(T* hi, T* lo, long long at, float x) {
  const T h = from_float<T>(x);
  hi[at] = h;
  if (lo) lo[at] = from_float<T>(x - to_float(h));
}

// One sequence's place in the packed tensors.
struct SeqView {
  long long q_off, q_len, k_off, k_len;
};

__device__ __forceinline__ SeqView seq_view(const ForwardParams& p, long long s) {
  SeqView v;
  if (p.cu_seqlens_q != nullptr) {
    v.q_off = p.cu_seqlens_q[s];
    v.q_len = p.cu_seqlens_q[s + 1] - v.q_off;
    const int32_t* ck = p.cu_seqlens_k != nullptr ? p.cu_seqlens_k : p.cu_seqlens_q;
    v.k_off = ck[s];
    v.k_len = ck[s + 1] - v.k_off;
  } else {
    v.q_off = s * p.seqlen_q;
    v.q_len = p.seqlen_q;
    v.k_off = s * p.seqlen_k;
    v.k_len = p.seqlen_k;
  }
  return v;
}

// Keys [begin, end) of row `row` of a sequence (end-aligned causal, window).
__device__ __forceinline__ void row_keys(const ForwardParams& p, const SeqView& sv, long long row, long long& begin,
                                         long long& end) {
  begin = 0;
  end = sv.k_len;
  if (p.causal) {
    const long long a = sv.k_len - sv.q_len + row;  // key position of this query
    end = min(end, a + 1);
    if (p.window > 0) begin = max(begin, a - p.window + 1);
  }
  if (end < begin) end = begin;
}

// Copies `rows` rows of D elements (row stride `stride` elements) into shared
// memory rows of Traits::kPitch bytes; rows past `valid` and columns past D are
// zero-filled without reading global memory.
template <class Traits>
__device__ __forceinline__ void load_rows(unsigned char* dst, const typename Traits::Element* src, long long stride,
                                          int rows, int valid, long long D) {
  using T = typename Traits::Element;
  if constexpr (Traits::kVectorised) {
    for (int c = threadIdx.x; c < rows * Traits::kChunksPerRow; c += Traits::kThreads) {
      const int row = c / Traits::kChunksPerRow, chunk = c % Traits::kChunksPerRow;
      const bool fetch = row < valid && chunk * 8 < D;
      const T* g = fetch ? src + row * stride + chunk * 8 : src;
      ptx::cp_async_16(dst + row * Traits::kPitch + chunk * 16, g, fetch);
    }
  } else {
    for (int e = threadIdx.x; e < rows * Traits::kDMax; e += Traits::kThreads) {
      const int row = e / Traits::kDMax, d = e % Traits::kDMax;
      T x = from_float<T>(0.f);
      if (row < valid && d < D) x = src[row * stride + d];
      reinterpret_cast<T*>(dst + row * Traits::kPitch)[d] = x;
    }
  }
}

template <class Traits>
__device__ void forward_cta(const ForwardParams& p, unsigned char* smem) {
  using namespace ptx;
  using T = typename Traits::Element;
  constexpr int KS = Traits::kKSteps, NS = Traits::kScoreTiles, NO = Traits::kOutTiles, PS = Traits::kPvSteps;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, grp = lane / 4, quad = lane % 4;
  const long long head = blockIdx.y, kv_head = head / p.group, D = p.head_dim;
  const SeqView sv = seq_view(p, blockIdx.z);
  // First row of the CTA, and its output columns c0 .. c0 + kOutCols - 1 (traits.cuh).
  const long long m0 = static_cast<long long>(blockIdx.x / Traits::kColSplits) * Traits::kBlockM;
  const int col_split = static_cast<int>(blockIdx.x % Traits::kColSplits);
  const int c0 = col_split * Traits::kOutCols;
  if (m0 >= sv.q_len) return;  // whole CTA past this sequence's rows (varlen)
  const int m_valid = static_cast<int>(min((long long)Traits::kBlockM, sv.q_len - m0));

  // The CTA's keys: the union of its rows' ranges (an interval: begin and end grow with the row).
  long long k_lo, k_hi, unused;
  row_keys(p, sv, m0, k_lo, unused);
  row_keys(p, sv, m0 + m_valid - 1, unused, k_hi);
  if (!p.causal) k_hi = sv.k_len;
  const int tiles = k_hi > k_lo ? static_cast<int>((k_hi - k_lo + Traits::kBlockN - 1) / Traits::kBlockN) : 0;

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
    load_rows<Traits>(k_smem + stage * Traits::kTileBytes, k_base + j0 * kv_stride, kv_stride, Traits::kBlockN, valid,
                      D);
    load_rows<Traits>(v_smem + stage * Traits::kTileBytes, v_base + j0 * kv_stride, kv_stride, Traits::kBlockN, valid,
                      D);
  };
  load_rows<Traits>(q_smem, q_base, q_stride, Traits::kBlockM, m_valid, D);
  load_rows<Traits>(r_smem, r_base, q_stride, Traits::kBlockM, m_valid, D);
  if (tiles > 0) load_kv(0, 0);
  cp_async_commit();

  // This thread's two rows: grp and grp + 8 of the warp's 16.
  long long row_begin[2], row_end[2];
  bool row_live[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const long long row = m0 + warp * 16 + grp + 8 * h;
    row_live[h] = row < sv.q_len;
    row_keys(p, sv, row, row_begin[h], row_end[h]);
    if (!row_live[h]) row_begin[h] = row_end[h] = 0;
  }
  float m[2] = {-INFINITY, -INFINITY}, d1[2] = {0.f, 0.f}, d2[2] = {0.f, 0.f}, kappa[2] = {0.f, 0.f};
  bool kappa_set[2] = {false, false};
  float o1[NO][4], o2[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n)
#pragma unroll
    for (int c = 0; c < 4; ++c) o1[n][c] = o2[n][c] = 0.f;

  // ldmatrix lane addresses (see common/mma.cuh for the fragment layouts).
  const int a_off = ldsm_a_offset(lane, warp * 16, Traits::kPitch);
  const int k_off = ldsm_b_offset(lane, Traits::kPitch);
  const int v_off = ldsm_bt_offset(lane, Traits::kPitch);
  // Saving the backward's state (o_lo, vbar_lo) needs o and vbar to 16 bits: P1 in two
  // words then (docs/training.md, "Saved state"); one word is enough for o alone.
  const bool p1_two_words = p.o_lo != nullptr || p.vbar_lo != nullptr;

  for (int tile = 0; tile < tiles; ++tile) {
    const int stage = tile % Traits::kStages;
    if (tile + 1 < tiles) load_kv(tile + 1, (tile + 1) % Traits::kStages);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const unsigned char* ks = k_smem + stage * Traits::kTileBytes;
    const unsigned char* vs = v_smem + stage * Traits::kTileBytes;

    // 1. S and T for 16 rows x 32 keys.
    float s[NS][4], t[NS][4];
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) s[n][c] = t[n][c] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      uint32_t aq[4], ar[4];
      ldmatrix_x4(aq, q_smem + a_off + kk * 32);
      ldmatrix_x4(ar, r_smem + a_off + kk * 32);
#pragma unroll
      for (int n = 0; n < NS; n += 2) {
        uint32_t kf[4];  // b0, b1 of keys n*8.., then of keys (n+1)*8..
        ldmatrix_x4(kf, ks + n * 8 * Traits::kPitch + k_off + kk * 32);
        mma_m16n8k16<T>(s[n], aq, kf[0], kf[1]);
        mma_m16n8k16<T>(s[n + 1], aq, kf[2], kf[3]);
        mma_m16n8k16<T>(t[n], ar, kf[0], kf[1]);
        mma_m16n8k16<T>(t[n + 1], ar, kf[2], kf[3]);
      }
    }

    // 2. Masks and the online update, per row h (accumulator elements 2h, 2h + 1).
    const long long j0 = k_lo + static_cast<long long>(tile) * Traits::kBlockN + 2 * quad;
    // In place: s becomes P1, t becomes P2 (registers: the O accumulators take 128).
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const long long j = j0 + n * 8 + e;
          const bool valid = j >= row_begin[h] && j < row_end[h];
          s[n][2 * h + e] = valid ? s[n][2 * h + e] * p.scale_log2 : -INFINITY;
          mx = fmaxf(mx, s[n][2 * h + e]);
        }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[h], mx);
      const float m_safe = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = m_new == m[h] ? 1.f : exp2f(m[h] - m_safe);
      m[h] = m_new;
      float sum_p = 0.f, sum_pt = 0.f;
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float x = s[n][2 * h + e];
          s[n][2 * h + e] = x == -INFINITY ? 0.f : exp2f(x - m_safe);
          sum_p += s[n][2 * h + e];
          sum_pt += s[n][2 * h + e] * t[n][2 * h + e];
        }
      // kappa: fixed at the first tile where the row has a valid key (warp-uniform test).
      if (__any_sync(0xffffffffu, !kappa_set[h] && mx != -INFINITY)) {
        float tp = sum_p, tpt = sum_pt;
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
          t[n][2 * h + e] = s[n][2 * h + e] * (t[n][2 * h + e] - kappa[h]);
          sum_p2 += t[n][2 * h + e];
        }
      d1[h] = d1[h] * alpha + sum_p;
      d2[h] = d2[h] * alpha + sum_p2;
      if (alpha != 1.f) {
#pragma unroll
        for (int n = 0; n < NO; ++n) {
          o1[n][2 * h] *= alpha;
          o1[n][2 * h + 1] *= alpha;
          o2[n][2 * h] *= alpha;
          o2[n][2 * h + 1] *= alpha;
        }
      }
    }

    // 3. O1 += P1 V (one word per weight; two when the backward's state is saved),
    //    O2 += P2 V (hi + lo words).
#pragma unroll
    for (int kk = 0; kk < PS; ++kk) {
      uint32_t a1[4], a1_lo[4], a2_hi[4], a2_lo[4];
      split2<T>(s[2 * kk][0], s[2 * kk][1], a1[0], a1_lo[0]);
      split2<T>(s[2 * kk][2], s[2 * kk][3], a1[1], a1_lo[1]);
      split2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1], a1[2], a1_lo[2]);
      split2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3], a1[3], a1_lo[3]);
      split2<T>(t[2 * kk][0], t[2 * kk][1], a2_hi[0], a2_lo[0]);
      split2<T>(t[2 * kk][2], t[2 * kk][3], a2_hi[1], a2_lo[1]);
      split2<T>(t[2 * kk + 1][0], t[2 * kk + 1][1], a2_hi[2], a2_lo[2]);
      split2<T>(t[2 * kk + 1][2], t[2 * kk + 1][3], a2_hi[3], a2_lo[3]);
#pragma unroll
      for (int n = 0; n < NO; n += 2) {
        uint32_t vf[4];  // b0, b1 of dims n*8.., then of dims (n+1)*8..
        ldmatrix_x4_trans(vf, vs + kk * 16 * Traits::kPitch + v_off + (c0 + n * 8) * 2);
        mma_m16n8k16<T>(o1[n], a1, vf[0], vf[1]);
        mma_m16n8k16<T>(o1[n + 1], a1, vf[2], vf[3]);
        if (p1_two_words) {
          mma_m16n8k16<T>(o1[n], a1_lo, vf[0], vf[1]);
          mma_m16n8k16<T>(o1[n + 1], a1_lo, vf[2], vf[3]);
        }
        mma_m16n8k16<T>(o2[n], a2_hi, vf[0], vf[1]);
        mma_m16n8k16<T>(o2[n + 1], a2_hi, vf[2], vf[3]);
        mma_m16n8k16<T>(o2[n], a2_lo, vf[0], vf[1]);
        mma_m16n8k16<T>(o2[n + 1], a2_lo, vf[2], vf[3]);
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  cp_async_wait<0>();

  // 4. o = O1/d1 (1 + d2/d1) - O2/d1; vbar = O1/d1; tbar = d2/d1 + kappa; lse = m ln2 + ln d1.
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
        const long long col = c0 + n * 8 + 2 * quad + e;
        if (col >= D) continue;
        const float vb = o1[n][2 * h + e] * inv;
        store_two_words(static_cast<T*>(p.o), static_cast<T*>(p.o_lo), orow * D + col,
                        vb * (1.f + tb) - o2[n][2 * h + e] * inv);
        if (p.vbar) store_two_words(static_cast<T*>(p.vbar), static_cast<T*>(p.vbar_lo), orow * D + col, vb);
      }
    if (quad == 0 && col_split == 0) {
      if (p.lse) p.lse[orow] = s1 > 0.f ? m[h] * kLn2 + logf(s1) : -INFINITY;
      if (p.tbar) p.tbar[orow] = s1 > 0.f ? tb + kappa[h] : 0.f;
    }
  }
}

}  // namespace lla::gpu::train
