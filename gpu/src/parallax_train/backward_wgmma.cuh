#pragma once
// Device bodies of the Parallax training backward on Hopper's warpgroup MMA (sm_90a).
// dK/dV first (dQ/dR below): the same formulas, masks and rounding as dkdv_cta in
// backward_kernel.cuh (read that first), with the products moved to wgmma
// (gpu/src/common/wgmma.cuh):
//
//   S^T (64 keys x R rows) = K . Q^T,  T^T = K . R^T,  A^T = V . dO^T     SS, both K-major
//   dV (64 x D) += W^T . dO,  dK += (c dS)^T . Q + dT^T . R               RS, B MN-major
//
// One CTA is one warpgroup owning 64 keys of one (sequence, KV head) (warp w: keys
// 16w .. 16w + 15, the accumulator rows); it walks the query rows that can see them,
// R = kRows at a time, for every query head of the group, so a GQA group's dk and dv
// are summed in fp32 registers (no atomics: deterministic). K and V stay in shared
// memory for the whole CTA; the step's Q, R and dO tiles (and its rows' terms) are
// double-buffered by cp.async. Every tile is in 128-byte-swizzled atoms; a step tile
// is read K-major by the score products and MN-major by the dK/dV products (the
// forward reads its K and V tiles the same two ways).
//
// The score accumulators become dS, dT and W in place, then are packed into 16-bit
// words (W in hi + lo words, c dS and dT in one: see step 3), all row k-steps before
// the first dK/dV product is issued. Packing frees registers or is neutral (each fp32
// pair dies as its words are made), which is what lets dk and dv (2 x D / 2 registers
// a thread) stay resident next to the three score accumulators.
//
// Status (both kernels): the backward TrainKernel::automatic picks on sm_90 (D % 8 == 0,
// D <= 128); the GPU lane checks them against the oracle with the same properties as
// the mma.sync kernels (tests/gpu/test_parallax_train.cpp, ParallaxTrainBackwardWgmma).

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/mma.cuh"
#include "../common/wgmma.cuh"
#include "backward_kernel.cuh"
#include "forward_wgmma.cuh"

namespace lla::gpu::train {

// The backward's three recomputed score products on wgmma (SS, both operands K-major),
// each a 64 x N block summed over the head dim (kKSteps k-steps of 16):
//   acc[i] = A_i . B_i^T,  A_i a 64-row tile, B_i an N-row tile, 64-column blocks of
//   64 * 128 and N * 128 bytes. dK/dV: (K, Q), (K, R), (V, dO); dQ/dR: (Q, K), (R, K), (dO, V).
// Waits for them: the accumulators are ready to read on return.
template <int N, int kKSteps, class T>
__device__ __forceinline__ void three_score_products(float (&acc0)[N / 2], float (&acc1)[N / 2], float (&acc2)[N / 2],
                                                     const unsigned char* const (&a)[3],
                                                     const unsigned char* const (&b)[3]) {
  wgmma::fence_accumulators(acc0);
  wgmma::fence_accumulators(acc1);
  wgmma::fence_accumulators(acc2);
  wgmma::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kKSteps; ++kk) {
    const int block = kk / 4, within = (kk % 4) * 32;
    auto desc_a = [&](int i) { return wgmma::smem_desc_sw128(a[i] + block * 64 * 128 + within, 16, 1024); };
    auto desc_b = [&](int i) { return wgmma::smem_desc_sw128(b[i] + block * N * 128 + within, 16, 1024); };
    wgmma::wgmma_ss<N, 0, T>(acc0, desc_a(0), desc_b(0), kk > 0);
    wgmma::wgmma_ss<N, 0, T>(acc1, desc_a(1), desc_b(1), kk > 0);
    wgmma::wgmma_ss<N, 0, T>(acc2, desc_a(2), desc_b(2), kk > 0);
  }
  wgmma::wgmma_commit();
  wgmma::wgmma_wait<0>();
  wgmma::fence_accumulators(acc0);
  wgmma::fence_accumulators(acc1);
  wgmma::fence_accumulators(acc2);
}

// An accumulator (64 x 16 KS, the forward's P layout) as register A operands for KS
// k-steps, in hi + lo words of T, fenced for wgmma. k-step kk covers n-tiles 2 kk and
// 2 kk + 1; word w of it: (row grp, cols 2q), (grp + 8, 2q), (grp, 8 + 2q), (grp + 8, 8 + 2q).
// Register-neutral: each fp32 pair dies as its two words are made.
template <class T, int KS>
__device__ __forceinline__ void split_to_operands(const float (&acc)[8 * KS], uint32_t (&hi)[KS][4],
                                                  uint32_t (&lo)[KS][4]) {
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
#pragma unroll
    for (int w = 0; w < 4; ++w) ptx::split2<T>(acc[8 * kk + 2 * w], acc[8 * kk + 2 * w + 1], hi[kk][w], lo[kk][w]);
    wgmma::fence_operands(hi[kk]);
    wgmma::fence_operands(lo[kk]);
  }
}

// The same in one word of T per value (the dK/dV products: see dkdv_cta_wgmma, step 3).
template <class T, int KS>
__device__ __forceinline__ void round_to_operands(const float (&acc)[8 * KS], uint32_t (&word)[KS][4]) {
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
#pragma unroll
    for (int w = 0; w < 4; ++w) word[kk][w] = ptx::pack2<T>(acc[8 * kk + 2 * w], acc[8 * kk + 2 * w + 1]);
    wgmma::fence_operands(word[kk]);
  }
}

template <int kDMax_, int kRows_, class Element_ = __nv_bfloat16>
struct WgmmaDkdvTraits {
  using Element = Element_;  // bf16 or fp16
  static constexpr int kThreads = 128;  // one warpgroup
  static constexpr int kKeys = 64;      // keys per CTA (wgmma's M)
  static constexpr int kRows = kRows_;  // query rows per step (the score products' N)
  static constexpr int kDMax = kDMax_;  // head-dim bucket; columns past D are zero
  static_assert(kDMax == 64 || kDMax == 128, "head dim buckets 64 and 128");
  static_assert(kRows == 32 || kRows == 64, "row steps of 32 or 64");
  static constexpr int kStages = 2;
  static constexpr int kKSteps = kDMax / 16;      // k-steps of the score products
  static constexpr int kRowSteps = kRows / 16;    // k-steps of the dK/dV products
  static constexpr int kScoreRegs = kRows / 2;    // fp32 accumulators of one score product per thread
  static constexpr int kOutRegs = kDMax / 2;      // fp32 accumulators of dk (and of dv) per thread
  static constexpr int kChunksPerRow = kDMax / 8;  // 16-byte chunks of a row (load_swizzled)
  static constexpr size_t kKeyTileBytes = size_t(kKeys) * kDMax * 2;
  static constexpr size_t kRowTileBytes = size_t(kRows) * kDMax * 2;
  static constexpr size_t kStageBytes = 3 * kRowTileBytes + size_t(kRows) * sizeof(RowTerms);
  // K, V, the stages (Q, R, dO tiles and the rows' terms), plus 1024 bytes to align the atoms.
  static constexpr size_t kSmemBytes = 2 * kKeyTileBytes + kStages * kStageBytes + 1024;
};

template <class Traits>
__device__ void dkdv_cta_wgmma(const BackwardParams& p, unsigned char* smem_raw) {
  using namespace ptx;
  using T = typename Traits::Element;
  constexpr int SR = Traits::kScoreRegs, OR = Traits::kOutRegs, NS = Traits::kRows / 8, NO = Traits::kDMax / 8;
  const ForwardParams& f = p.fwd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, grp = lane / 4, quad = lane % 4;
  const long long g = blockIdx.y, D = f.head_dim;
  const int dim = static_cast<int>(D);
  const SeqView sv = seq_view(f, blockIdx.z);
  const long long j0 = static_cast<long long>(blockIdx.x) * Traits::kKeys;
  if (j0 >= sv.k_len) return;
  const int keys_valid = static_cast<int>(min((long long)Traits::kKeys, sv.k_len - j0));
  // Query rows that can see a key of [j0, j0 + 64) (as dkdv_cta).
  const long long shift = sv.k_len - sv.q_len;
  long long row_lo = 0, row_hi = sv.q_len;
  if (f.causal) {
    row_lo = max(0LL, j0 - shift);
    if (f.window > 0) row_hi = min(sv.q_len, j0 + keys_valid - 1 + f.window - shift);
  }
  const int steps = row_hi > row_lo ? static_cast<int>((row_hi - row_lo + Traits::kRows - 1) / Traits::kRows) : 0;
  const int total_steps = steps * static_cast<int>(f.group);

  const uint32_t raw_addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  unsigned char* smem = smem_raw + ((1024u - raw_addr % 1024u) % 1024u);
  unsigned char* k_smem = smem;
  unsigned char* v_smem = k_smem + Traits::kKeyTileBytes;
  unsigned char* stage_smem = v_smem + Traits::kKeyTileBytes;  // [stage][Q, R, dO tiles, RowTerms[kRows]]
  auto q_tile = [&](int stage) { return stage_smem + stage * Traits::kStageBytes; };
  auto terms = [&](int stage) {
    return reinterpret_cast<RowTerms*>(stage_smem + stage * Traits::kStageBytes + 3 * Traits::kRowTileBytes);
  };
  const long long kv_stride = f.heads_kv * D, q_stride = f.heads_q * D;
  load_swizzled<Traits, Traits::kKeys>(k_smem, static_cast<const T*>(f.k) + ((sv.k_off + j0) * f.heads_kv + g) * D,
                                       kv_stride, keys_valid, dim);
  load_swizzled<Traits, Traits::kKeys>(v_smem, static_cast<const T*>(f.v) + ((sv.k_off + j0) * f.heads_kv + g) * D,
                                       kv_stride, keys_valid, dim);
  // Step n: query head g * group + n / steps, rows row_lo + kRows (n % steps) ...
  auto load_step = [&](int n, int stage) {
    const long long h = g * f.group + n / steps, i0 = row_lo + static_cast<long long>(Traits::kRows) * (n % steps);
    const int valid = static_cast<int>(min(static_cast<long long>(Traits::kRows), row_hi - i0));
    const long long off = ((sv.q_off + i0) * f.heads_q + h) * D;
    unsigned char* dst = q_tile(stage);
    load_swizzled<Traits, Traits::kRows>(dst, static_cast<const T*>(f.q) + off, q_stride, valid, dim);
    load_swizzled<Traits, Traits::kRows>(dst + Traits::kRowTileBytes, static_cast<const T*>(f.r) + off, q_stride,
                                         valid, dim);
    load_swizzled<Traits, Traits::kRows>(dst + 2 * Traits::kRowTileBytes, static_cast<const T*>(p.dout) + off,
                                         q_stride, valid, dim);
    // Rows past row_hi get empty key ranges (row_terms of a row past the sequence, or
    // a row that sees none of these keys: both mask every pair of theirs).
    if (threadIdx.x < Traits::kRows) {
      const long long row = i0 + threadIdx.x;
      terms(stage)[threadIdx.x] = row < row_hi ? row_terms(p, sv, h, row) : RowTerms{0.f, 0.f, 0.f, 0.f, 0, 0};
    }
  };
  if (total_steps > 0) load_step(0, 0);
  cp_async_commit();

  float dk[OR], dv[OR];
#pragma unroll
  for (int i = 0; i < OR; ++i) dk[i] = dv[i] = 0.f;
  // This thread's keys (accumulator rows): grp and grp + 8 of the warp's 16.
  const long long key[2] = {j0 + warp * 16 + grp, j0 + warp * 16 + grp + 8};

  for (int n = 0; n < total_steps; ++n) {
    const int stage = n % Traits::kStages;
    if (n + 1 < total_steps) load_step(n + 1, (n + 1) % Traits::kStages);
    cp_async_commit();
    cp_async_wait<1>();
    wgmma::fence_proxy_async();  // cp.async wrote through the generic proxy; wgmma reads through the async one
    __syncthreads();
    const unsigned char* qs = q_tile(stage);
    const unsigned char* rs = qs + Traits::kRowTileBytes;
    const unsigned char* gs = rs + Traits::kRowTileBytes;
    const RowTerms* rt = terms(stage);

    // 1. S^T, T^T, A^T (64 keys x kRows rows), A = K or V, B = the step's Q, R, dO rows.
    float st[SR], tt[SR], at[SR];
    static_assert(Traits::kKeys == 64, "three_score_products takes 64-row A tiles");
    three_score_products<Traits::kRows, Traits::kKSteps, T>(st, tt, at, {k_smem, k_smem, v_smem}, {qs, rs, gs});

    // 2. Per pair (key grp + 8 h, row 8 n + 2 quad + e of the step): c dS, dT, W in place
    //    of S^T, T^T, A^T (pair_grads, backward_kernel.cuh).
#pragma unroll
    for (int nt = 0; nt < NS; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const RowTerms r = rt[nt * 8 + 2 * quad + e];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int i = 4 * nt + 2 * h + e;
          const bool valid = key[h] >= r.key_begin && key[h] < r.key_end;
          const PairGrads pg = pair_grads(valid, st[i] * f.scale_log2, tt[i], at[i], r);
          st[i] = pg.ds * p.scale;  // dk takes c dS
          tt[i] = pg.dt;
          at[i] = pg.w;
        }
      }

    // 3. dV += W^T dO, dK += (c dS)^T Q + dT^T R: A from the accumulators (keys x rows; row
    //    k-step kk = n-tiles 2 kk, 2 kk + 1, the forward's P layout); B MN-major: 64-column
    //    blocks kRows * 128 bytes apart, k-step kk 16 rows (2048 bytes) on. W in hi + lo
    //    words, c dS and dT in one: dq_i = sum_j dS_ij k_j needs two words (it cancels
    //    across near-duplicate keys), dk_j does not (no such identity over rows: within
    //    the rule, 0.34 of the bound at worst), and dv_j could take one too, but at 1.6x
    //    the max-norm error of the fp32 baseline (4.5e-3 against 2.7e-3 on the accuracy
    //    target's D = 128 causal case; two words match the baseline: kernel numerics
    //    model, "wgmma" schemes).
    uint32_t w_hi[Traits::kRowSteps][4], w_lo[Traits::kRowSteps][4];
    uint32_t s_op[Traits::kRowSteps][4], t_op[Traits::kRowSteps][4];
    split_to_operands<T>(at, w_hi, w_lo);
    round_to_operands<T>(st, s_op);
    round_to_operands<T>(tt, t_op);
    wgmma::fence_accumulators(dk);
    wgmma::fence_accumulators(dv);
    wgmma::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < Traits::kRowSteps; ++kk) {
      const uint32_t lbo = Traits::kRows * 128;
      const uint64_t dqm = wgmma::smem_desc_sw128(qs + kk * 16 * 128, lbo, 1024);
      const uint64_t drm = wgmma::smem_desc_sw128(rs + kk * 16 * 128, lbo, 1024);
      const uint64_t dgm = wgmma::smem_desc_sw128(gs + kk * 16 * 128, lbo, 1024);
      wgmma::wgmma_rs<Traits::kDMax, 1, T>(dv, w_hi[kk], dgm, true);
      wgmma::wgmma_rs<Traits::kDMax, 1, T>(dv, w_lo[kk], dgm, true);
      wgmma::wgmma_rs<Traits::kDMax, 1, T>(dk, s_op[kk], dqm, true);
      wgmma::wgmma_rs<Traits::kDMax, 1, T>(dk, t_op[kk], drm, true);
    }
    wgmma::wgmma_commit();
    wgmma::wgmma_wait<0>();
    wgmma::fence_accumulators(dk);
    wgmma::fence_accumulators(dv);
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  cp_async_wait<0>();

  // 4. Write dk, dv of the keys of this sequence.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (key[h] >= sv.k_len) continue;
    const long long base = ((sv.k_off + key[h]) * f.heads_kv + g) * D;
#pragma unroll
    for (int nd = 0; nd < NO; ++nd)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const long long col = nd * 8 + 2 * quad + e;
        if (col >= D) continue;
        static_cast<T*>(p.dk)[base + col] = from_float<T>(dk[4 * nd + 2 * h + e]);
        static_cast<T*>(p.dv)[base + col] = from_float<T>(dv[4 * nd + 2 * h + e]);
      }
  }
}

// --- dQ/dR ------------------------------------------------------------------------
// The dQ/dR kernel on wgmma: dqdr_cta's formulas, masks and centred keys (read its
// comment in backward_kernel.cuh) with
//
//   S (64 rows x N keys) = Q . K^T,  T = R . K^T,  A = dO . V^T      SS, both K-major
//   dQ (64 x D) += dS . K,  dR += dT . K                            RS, K MN-major
//   kbar (64 x D) += p . K                                          RS, one 64-column half at a time
//
// One warpgroup owns 64 query rows of one (sequence, query head) and walks their keys N
// at a time; Q, R and dO stay in shared memory, K and V tiles are double-buffered. At
// D = 128, dq and dr take 128 registers a thread and kbar would take 64 more, so kbar
// lives in shared memory (fp32, each thread owning its accumulator elements, as in
// dqdr_cta): each step's p . K is formed 64 columns at a time in 32 registers and
// added there.

template <int kDMax_, int kKeysPerStep_, class Element_ = __nv_bfloat16>
struct WgmmaDqdrTraits {
  using Element = Element_;  // bf16 or fp16
  static constexpr int kThreads = 128;           // one warpgroup
  static constexpr int kRows = 64;               // query rows per CTA (wgmma's M)
  static constexpr int kKeys = kKeysPerStep_;    // keys per step (the score products' N)
  static constexpr int kDMax = kDMax_;
  static_assert(kDMax == 64 || kDMax == 128, "head dim buckets 64 and 128");
  static_assert(kKeys == 32 || kKeys == 64, "key steps of 32 or 64");
  static constexpr int kStages = 2;
  static constexpr int kKSteps = kDMax / 16;       // k-steps of the score products
  static constexpr int kKeySteps = kKeys / 16;     // k-steps of the dQ/dR/kbar products
  static constexpr int kScoreRegs = kKeys / 2;
  static constexpr int kOutRegs = kDMax / 2;       // dq (and dr) accumulators per thread
  static constexpr int kHalves = kDMax / 64;       // 64-column halves of kbar's product
  static constexpr int kChunksPerRow = kDMax / 8;  // (load_swizzled)
  static constexpr size_t kRowTileBytes = size_t(kRows) * kDMax * 2;
  static constexpr size_t kKeyTileBytes = size_t(kKeys) * kDMax * 2;
  static constexpr size_t kKbarBytes = size_t(kThreads) * kOutRegs * sizeof(float);
  // Q, R, dO; the K, V stages; kbar; plus 1024 bytes to align the atoms.
  static constexpr size_t kSmemBytes = 3 * kRowTileBytes + kStages * 2 * kKeyTileBytes + kKbarBytes + 1024;
};

template <class Traits>
__device__ void dqdr_cta_wgmma(const BackwardParams& p, unsigned char* smem_raw) {
  using namespace ptx;
  using T = typename Traits::Element;
  constexpr int SR = Traits::kScoreRegs, OR = Traits::kOutRegs, NS = Traits::kKeys / 8, NO = Traits::kDMax / 8;
  constexpr int KS = Traits::kKeySteps;
  const ForwardParams& f = p.fwd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, grp = lane / 4, quad = lane % 4;
  const long long head = blockIdx.y, kv_head = head / f.group, D = f.head_dim;
  const int dim = static_cast<int>(D);
  const SeqView sv = seq_view(f, blockIdx.z);
  const long long m0 = static_cast<long long>(blockIdx.x) * Traits::kRows;
  if (m0 >= sv.q_len) return;
  const int m_valid = static_cast<int>(min((long long)Traits::kRows, sv.q_len - m0));
  long long k_lo, k_hi, unused;
  row_keys(f, sv, m0, k_lo, unused);
  row_keys(f, sv, m0 + m_valid - 1, unused, k_hi);
  if (!f.causal) k_hi = sv.k_len;
  const int steps = k_hi > k_lo ? static_cast<int>((k_hi - k_lo + Traits::kKeys - 1) / Traits::kKeys) : 0;

  const uint32_t raw_addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  unsigned char* smem = smem_raw + ((1024u - raw_addr % 1024u) % 1024u);
  unsigned char* q_smem = smem;
  unsigned char* r_smem = q_smem + Traits::kRowTileBytes;
  unsigned char* g_smem = r_smem + Traits::kRowTileBytes;
  unsigned char* kv_smem = g_smem + Traits::kRowTileBytes;  // [stage][K, V]
  float* kbar = reinterpret_cast<float*>(kv_smem + Traits::kStages * 2 * Traits::kKeyTileBytes);
  auto kbar_at = [&](int i) -> float& { return kbar[i * Traits::kThreads + threadIdx.x]; };  // element-major
#pragma unroll
  for (int i = 0; i < OR; ++i) kbar_at(i) = 0.f;  // each thread owns its elements: no barrier needed
  const long long q_stride = f.heads_q * D, kv_stride = f.heads_kv * D;
  const long long q_off = ((sv.q_off + m0) * f.heads_q + head) * D;
  load_swizzled<Traits, Traits::kRows>(q_smem, static_cast<const T*>(f.q) + q_off, q_stride, m_valid, dim);
  load_swizzled<Traits, Traits::kRows>(r_smem, static_cast<const T*>(f.r) + q_off, q_stride, m_valid, dim);
  load_swizzled<Traits, Traits::kRows>(g_smem, static_cast<const T*>(p.dout) + q_off, q_stride, m_valid, dim);
  auto load_step = [&](int n, int stage) {
    const long long jj = k_lo + static_cast<long long>(Traits::kKeys) * n;
    const int valid = static_cast<int>(min(static_cast<long long>(Traits::kKeys), k_hi - jj));
    const long long off = ((sv.k_off + jj) * f.heads_kv + kv_head) * D;
    unsigned char* dst = kv_smem + stage * 2 * Traits::kKeyTileBytes;
    load_swizzled<Traits, Traits::kKeys>(dst, static_cast<const T*>(f.k) + off, kv_stride, valid, dim);
    load_swizzled<Traits, Traits::kKeys>(dst + Traits::kKeyTileBytes, static_cast<const T*>(f.v) + off, kv_stride,
                                         valid, dim);
  };
  if (steps > 0) load_step(0, 0);
  cp_async_commit();

  RowTerms rt[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) rt[h] = row_terms(p, sv, head, m0 + warp * 16 + grp + 8 * h);
  float dq[OR], dr[OR];
#pragma unroll
  for (int i = 0; i < OR; ++i) dq[i] = dr[i] = 0.f;
  float sum_ds[2] = {0.f, 0.f}, sum_dt[2] = {0.f, 0.f}, sum_p[2] = {0.f, 0.f};

  for (int n = 0; n < steps; ++n) {
    const int stage = n % Traits::kStages;
    if (n + 1 < steps) load_step(n + 1, (n + 1) % Traits::kStages);
    cp_async_commit();
    cp_async_wait<1>();
    wgmma::fence_proxy_async();
    __syncthreads();
    const unsigned char* ks = kv_smem + stage * 2 * Traits::kKeyTileBytes;
    const unsigned char* vs = ks + Traits::kKeyTileBytes;

    // 1. S, T, A (64 rows x kKeys keys): A = Q, R, dO (stationary), B = the step's K, K, V.
    float s[SR], t[SR], a[SR];
    static_assert(Traits::kRows == 64, "three_score_products takes 64-row A tiles");
    three_score_products<Traits::kKeys, Traits::kKSteps, T>(s, t, a, {q_smem, r_smem, g_smem}, {ks, ks, vs});

    // 2. dS, dT, p per pair (row grp + 8 h, key 8 nt + 2 quad + e of the step) in place of
    //    S, T, A; the row sums of dS and dT as the tensor cores will see them, and of p.
    const long long jj = k_lo + static_cast<long long>(Traits::kKeys) * n + 2 * quad;
#pragma unroll
    for (int nt = 0; nt < NS; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int i = 4 * nt + 2 * h + e;
          const long long j = jj + nt * 8 + e;
          const bool valid = j >= rt[h].key_begin && j < rt[h].key_end;
          const PairGrads pg = pair_grads(valid, s[i] * f.scale_log2, t[i], a[i], rt[h]);
          s[i] = pg.ds;
          t[i] = pg.dt;
          a[i] = pg.p;
          sum_ds[h] += in_two_words<T>(pg.ds);
          sum_dt[h] += in_two_words<T>(pg.dt);
          sum_p[h] += pg.p;
        }

    // 3. dQ += dS K, dR += dT K, then kbar += p K one 64-column half at a time; A from the
    //    accumulators (rows x keys: the forward's P layout), hi + lo words; B = the K tile,
    //    MN-major: 64-column blocks kKeys * 128 bytes apart, k-step kk 16 keys (2048 bytes) on.
    uint32_t s_hi[KS][4], s_lo[KS][4], t_hi[KS][4], t_lo[KS][4], p_hi[KS][4], p_lo[KS][4];
    split_to_operands<T>(s, s_hi, s_lo);
    split_to_operands<T>(t, t_hi, t_lo);
    split_to_operands<T>(a, p_hi, p_lo);  // p in two words: one word for kbar is 18x too coarse (model)
    wgmma::fence_accumulators(dq);
    wgmma::fence_accumulators(dr);
    wgmma::wgmma_fence();
    constexpr uint32_t kLbo = Traits::kKeys * 128;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      const uint64_t dkm = wgmma::smem_desc_sw128(ks + kk * 16 * 128, kLbo, 1024);
      wgmma::wgmma_rs<Traits::kDMax, 1, T>(dq, s_hi[kk], dkm, true);
      wgmma::wgmma_rs<Traits::kDMax, 1, T>(dq, s_lo[kk], dkm, true);
      wgmma::wgmma_rs<Traits::kDMax, 1, T>(dr, t_hi[kk], dkm, true);
      wgmma::wgmma_rs<Traits::kDMax, 1, T>(dr, t_lo[kk], dkm, true);
    }
    wgmma::wgmma_commit();
#pragma unroll
    for (int half = 0; half < Traits::kHalves; ++half) {
      float kb[32];
      wgmma::fence_accumulators(kb);
      wgmma::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        // Column block `half` of the K tile alone: one 64-column block, so LBO is unused.
        const uint64_t dkh = wgmma::smem_desc_sw128(ks + half * Traits::kKeys * 128 + kk * 16 * 128, kLbo, 1024);
        wgmma::wgmma_rs<64, 1, T>(kb, p_hi[kk], dkh, kk > 0);
        wgmma::wgmma_rs<64, 1, T>(kb, p_lo[kk], dkh, true);
      }
      wgmma::wgmma_commit();
      wgmma::wgmma_wait<0>();
      wgmma::fence_accumulators(kb);
#pragma unroll
      for (int i = 0; i < 32; ++i) kbar_at(half * 32 + i) += kb[i];
    }
    wgmma::wgmma_wait<0>();
    wgmma::fence_accumulators(dq);
    wgmma::fence_accumulators(dr);
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  cp_async_wait<0>();

  // 4. dq = c (sum_j dS_ij k_j - (sum_j dS_ij) kbar_i), dr likewise without c (dqdr_cta).
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float sds = sum_ds[h], sdt = sum_dt[h], sp = sum_p[h];
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {  // the row's 4 lanes hold its sums
      sds += __shfl_xor_sync(0xffffffffu, sds, off);
      sdt += __shfl_xor_sync(0xffffffffu, sdt, off);
      sp += __shfl_xor_sync(0xffffffffu, sp, off);
    }
    const long long row = m0 + warp * 16 + grp + 8 * h;
    if (row >= sv.q_len) continue;
    const long long base = ((sv.q_off + row) * f.heads_q + head) * D;
    const float inv_p = sp > 0.f ? 1.f / sp : 0.f;
#pragma unroll
    for (int nd = 0; nd < NO; ++nd)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const long long col = nd * 8 + 2 * quad + e;
        if (col >= D) continue;
        // (row, col) is element i of dq and dr, and element i of kbar too (its half nd / 8
        // holds elements 32 (nd / 8) + 4 (nd % 8) + 2 h + e = i).
        const int i = 4 * nd + 2 * h + e;
        const float kb = kbar_at(i) * inv_p;
        static_cast<T*>(p.dq)[base + col] = from_float<T>(p.scale * (dq[i] - sds * kb));
        static_cast<T*>(p.dr)[base + col] = from_float<T>(dr[i] - sdt * kb);
      }
  }
}

}  // namespace lla::gpu::train
