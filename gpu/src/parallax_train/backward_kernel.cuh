#pragma once
// Device bodies of the Parallax training backward (bf16 or fp16 in, mma.sync m16n8k16).
// Formulas (spec: parallax.md section 6.1; docs/math.md), per row i and key j, with
// g = dL/do, p_ij = exp(s_ij - lse_i) recomputed from the saved statistics:
//   T_i = g_i . o_i,  b_i = g_i . vbar_i                         (preprocess)
//   a_ij = g_i . v_j
//   dS_ij = p_ij [(a_ij - T_i) + (tbar_i - t_ij)(a_ij - b_i)]      dT_ij = -p_ij (a_ij - b_i)
//   W_ij  = p_ij (1 + tbar_i - t_ij)                               (the forward's effective weights)
//   dq_i = c sum_j dS_ij k_j      dr_i = sum_j dT_ij k_j
//   dk_j = sum_i (c dS_ij q_i + dT_ij r_i)      dv_j = sum_i W_ij g_i
// Organisation (spec 6.3): a preprocess kernel; a dK/dV kernel over key tiles that
// walks the query rows that see them (and, for GQA, every query head of the group, so
// dk and dv are summed in fp32 registers: no atomics, deterministic); a dQ/dR kernel
// over query tiles. dS, dT and W go to the tensor cores as hi + lo words of the element type.

#include "forward_kernel.cuh"

namespace lla::gpu::train {

struct BackwardParams {
  ForwardParams fwd;  // shapes, masks, q r k v (o, vbar: the forward's outputs, read here)
  const float* lse;
  const float* tbar;
  const void* dout;  // T, as the forward's tensors
  void* dq;
  void* dr;
  void* dk;
  void* dv;
  float* row_terms;  // workspace: (T_i, b_i) per output row
  float scale;       // c
};

template <int kDMax_, bool kVectorised_, class Element_ = __nv_bfloat16>
struct BackwardTraits {
  using Element = Element_;  // bf16 or fp16
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kDMax = kDMax_;
  static_assert(kDMax == 64 || kDMax == 128 || kDMax == 256, "head dim buckets 64, 128 and 256");
  // Output columns per CTA, as the forward's (ForwardTraits): at D = 256 two CTAs split
  // the columns of dk, dv (dq, dr), each recomputing the scores over all of D.
  static constexpr int kOutCols = kDMax > 128 ? 128 : kDMax;
  static constexpr int kColSplits = kDMax / kOutCols;
  static constexpr bool kVectorised = kVectorised_;
  static constexpr int kRowBytes = kDMax * 2;
  static constexpr int kPitch = kRowBytes + 16;
  static constexpr int kChunksPerRow = kRowBytes / 16;
  static constexpr int kKSteps = kDMax / 16;
  static constexpr int kOutTiles = kOutCols / 8;
  // dK/dV: a CTA owns 64 keys (16 per warp) and walks the query rows 16 at a time.
  static constexpr int kKeysPerCta = kWarps * 16;
  static constexpr int kRowsPerStep = 16;
  // dQ/dR: a CTA owns 64 rows (16 per warp) and walks the keys kKeysPerStep at a time.
  static constexpr int kRowsPerCta = kWarps * 16;
  static constexpr int kKeysPerStep = 16;
  static constexpr size_t kTileBytes = size_t(16) * kPitch;                // 16 rows of one tensor
  static constexpr size_t kStepTermsBytes = size_t(2) * kRowsPerStep * 32;  // RowTerms of a step's rows, x2
  static constexpr size_t kDkdvSmem = size_t(2) * kKeysPerCta * kPitch     // K, V of the CTA
                                      + size_t(2) * 3 * kTileBytes         // Q, R, dO steps, double-buffered
                                      + kStepTermsBytes;
  // dQ/dR's centring terms, per thread (see dqdr_cta): kbar's C-fragment elements and
  // the running sums of dS, dT and p of the thread's two rows.
  static constexpr size_t kKbarBytes = size_t(kThreads) * (kOutTiles * 4 + 6) * sizeof(float);
  static constexpr size_t kDqdrSmem = size_t(3) * kRowsPerCta * kPitch     // Q, R, dO of the CTA
                                      + size_t(2) * 2 * kTileBytes         // K, V steps, double-buffered
                                      + kKbarBytes;
};

// One warp per row: T_i = g.o and b_i = g.vbar in fp32 from the stored words
// (o + o_lo, vbar + vbar_lo: one word is not enough, see docs/training.md).
template <class T>
__device__ inline void preprocess_rows(const BackwardParams& p, long long rows) {
  const long long row = static_cast<long long>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const long long D = p.fwd.head_dim;
  const T* g = static_cast<const T*>(p.dout) + row * D;
  const T* o = static_cast<const T*>(p.fwd.o) + row * D;
  const T* vb = static_cast<const T*>(p.fwd.vbar) + row * D;
  const T* o_lo = static_cast<const T*>(p.fwd.o_lo) + row * D;
  const T* vb_lo = static_cast<const T*>(p.fwd.vbar_lo) + row * D;
  float t = 0.f, b = 0.f;
  for (long long d = lane; d < D; d += 32) {
    const float gd = to_float(g[d]);
    t += gd * (to_float(o[d]) + to_float(o_lo[d]));
    b += gd * (to_float(vb[d]) + to_float(vb_lo[d]));
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    t += __shfl_xor_sync(0xffffffffu, t, off);
    b += __shfl_xor_sync(0xffffffffu, b, off);
  }
  if (lane == 0) {
    p.row_terms[2 * row] = t;
    p.row_terms[2 * row + 1] = b;
  }
}

// The per-row quantities the gradient of one (row, key) pair needs (32 bytes).
struct RowTerms {
  float lse2;  // lse * log2(e)
  float tbar, t_dot, b_dot;
  long long key_begin, key_end;  // the row's keys; empty for rows past the sequence
};
static_assert(sizeof(RowTerms) == 32, "BackwardTraits::kStepTermsBytes assumes 32-byte RowTerms");

__device__ __forceinline__ RowTerms row_terms(const BackwardParams& p, const SeqView& sv, long long head,
                                              long long row) {
  RowTerms r{0.f, 0.f, 0.f, 0.f, 0, 0};
  if (row < 0 || row >= sv.q_len) return r;
  row_keys(p.fwd, sv, row, r.key_begin, r.key_end);
  const long long orow = (sv.q_off + row) * p.fwd.heads_q + head;
  r.lse2 = p.lse[orow] * 1.4426950408889634f;
  r.tbar = p.tbar[orow];
  r.t_dot = p.row_terms[2 * orow];
  r.b_dot = p.row_terms[2 * orow + 1];
  return r;
}

struct PairGrads {
  float ds, dt, w, p;
};

// dS, dT and W of one (row, key) pair from its recomputed s (log2 units, scaled),
// t and a = g.v. Masked pairs give zeros (and never evaluate exp2 of an empty row).
__device__ __forceinline__ PairGrads pair_grads(bool valid, float s2, float t, float a, const RowTerms& r) {
  if (!valid) return PairGrads{0.f, 0.f, 0.f, 0.f};
  const float pr = exp2f(s2 - r.lse2);
  const float spread = r.tbar - t;
  return PairGrads{pr * ((a - r.t_dot) + spread * (a - r.b_dot)), -pr * (a - r.b_dot), pr * (1.f + spread), pr};
}

// The three recomputed score products of the backward, each a 16 x 16 block summed
// over the head dim: acc[i] += A_i . B_i^T, where a[i] and b[i] are this lane's
// ldmatrix addresses in shared-memory tiles (A: rows index m; B: rows index n).
// dQ/dR: (Q, K), (R, K), (dO, V); dK/dV, transposed: (K, Q), (K, R), (V, dO).
template <int KS, class T>
__device__ __forceinline__ void three_products(float (&acc)[3][2][4], const unsigned char* const (&a)[3],
                                               const unsigned char* const (&b)[3]) {
  using namespace ptx;
#pragma unroll
  for (int i = 0; i < 3; ++i)
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][n][c] = 0.f;
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
#pragma unroll
    for (int i = 0; i < 3; ++i) {
      uint32_t af[4], bf[4];
      ldmatrix_x4(af, a[i] + kk * 32);
      ldmatrix_x4(bf, b[i] + kk * 32);
      mma_m16n8k16<T>(acc[i][0], af, bf[0], bf[1]);
      mma_m16n8k16<T>(acc[i][1], af, bf[2], bf[3]);
    }
  }
}

// dK and dV of 64 keys of one (sequence, KV head), summed over the query heads of the
// group and the query rows that see them.
template <class Traits>
__device__ void dkdv_cta(const BackwardParams& p, unsigned char* smem) {
  using namespace ptx;
  using T = typename Traits::Element;
  constexpr int KS = Traits::kKSteps, NO = Traits::kOutTiles;
  const ForwardParams& f = p.fwd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, grp = lane / 4, quad = lane % 4;
  const long long g = blockIdx.y, D = f.head_dim;
  const SeqView sv = seq_view(f, blockIdx.z);
  // The CTA's keys, and its output columns c0 .. c0 + kOutCols - 1.
  const long long j0 = static_cast<long long>(blockIdx.x / Traits::kColSplits) * Traits::kKeysPerCta;
  const int c0 = static_cast<int>(blockIdx.x % Traits::kColSplits) * Traits::kOutCols;
  if (j0 >= sv.k_len) return;
  const int keys_valid = static_cast<int>(min((long long)Traits::kKeysPerCta, sv.k_len - j0));
  // Query rows that can see a key of [j0, j0 + 64): causal rows from the first whose
  // diagonal reaches j0; with a window, up to the last whose window still reaches j0 + 63.
  const long long shift = sv.k_len - sv.q_len;  // key position of row i is shift + i
  long long row_lo = 0, row_hi = sv.q_len;
  if (f.causal) {
    row_lo = max(0LL, j0 - shift);
    if (f.window > 0) row_hi = min(sv.q_len, j0 + keys_valid - 1 + f.window - shift);
  }
  const int steps = row_hi > row_lo ? static_cast<int>((row_hi - row_lo + 15) / 16) : 0;

  unsigned char* k_smem = smem;
  unsigned char* v_smem = k_smem + Traits::kKeysPerCta * Traits::kPitch;
  unsigned char* step_smem = v_smem + Traits::kKeysPerCta * Traits::kPitch;  // [stage][Q, R, dO][16 rows]
  // The step's rows' terms, read by every warp: loaded once with the step's tiles.
  RowTerms* step_terms = reinterpret_cast<RowTerms*>(step_smem + 2 * 3 * Traits::kTileBytes);  // [stage][16]
  const long long kv_stride = f.heads_kv * D, q_stride = f.heads_q * D;
  load_rows<Traits>(k_smem, static_cast<const T*>(f.k) + ((sv.k_off + j0) * f.heads_kv + g) * D, kv_stride,
                    Traits::kKeysPerCta, keys_valid, D);
  load_rows<Traits>(v_smem, static_cast<const T*>(f.v) + ((sv.k_off + j0) * f.heads_kv + g) * D, kv_stride,
                    Traits::kKeysPerCta, keys_valid, D);
  const int total_steps = steps * static_cast<int>(f.group);
  // Step n: query head g * group + n / steps, rows row_lo + 16 (n % steps) ...
  auto load_step = [&](int n, int stage) {
    const long long h = g * f.group + n / steps, i0 = row_lo + 16LL * (n % steps);
    const int valid = static_cast<int>(min(16LL, row_hi - i0));
    const long long off = ((sv.q_off + i0) * f.heads_q + h) * D;
    unsigned char* dst = step_smem + stage * 3 * Traits::kTileBytes;
    load_rows<Traits>(dst, static_cast<const T*>(f.q) + off, q_stride, 16, valid, D);
    load_rows<Traits>(dst + Traits::kTileBytes, static_cast<const T*>(f.r) + off, q_stride, 16, valid, D);
    load_rows<Traits>(dst + 2 * Traits::kTileBytes, static_cast<const T*>(p.dout) + off, q_stride, 16, valid, D);
    if (threadIdx.x < 16) step_terms[stage * 16 + threadIdx.x] = row_terms(p, sv, h, i0 + threadIdx.x);
  };
  if (total_steps > 0) load_step(0, 0);
  cp_async_commit();

  float dk[NO][4], dv[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n)
#pragma unroll
    for (int c = 0; c < 4; ++c) dk[n][c] = dv[n][c] = 0.f;
  // This thread's keys (accumulator rows): grp and grp + 8 of the warp's 16.
  const long long key[2] = {j0 + warp * 16 + grp, j0 + warp * 16 + grp + 8};
  const int a_off = ldsm_a_offset(lane, warp * 16, Traits::kPitch);
  const int b_off = ldsm_b_offset(lane, Traits::kPitch);    // rows as n
  const int bt_off = ldsm_bt_offset(lane, Traits::kPitch);  // rows as k

  for (int n = 0; n < total_steps; ++n) {
    if (n + 1 < total_steps) load_step(n + 1, (n + 1) % 2);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const unsigned char* qs = step_smem + (n % 2) * 3 * Traits::kTileBytes;
    const unsigned char* rs = qs + Traits::kTileBytes;
    const unsigned char* gs = rs + Traits::kTileBytes;
    const long long i0 = row_lo + 16LL * (n % steps);

    // 1. S^T, T^T, A^T (16 keys x 16 rows): A = K or V rows of the warp, B = Q, R, dO rows.
    float acc[3][2][4];
    three_products<KS, T>(acc, {k_smem + a_off, k_smem + a_off, v_smem + a_off},
                       {qs + b_off, rs + b_off, gs + b_off});
    const auto& st = acc[0];
    const auto& tt = acc[1];
    const auto& at = acc[2];
    // 2. Per pair (key grp + 8 hk, row nt * 8 + 2 quad + e): dS, dT, W.
    float ds[2][4], dt[2][4], w[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const long long row = i0 + nt * 8 + 2 * quad + e;
        const RowTerms& rt = step_terms[(n % 2) * 16 + (row - i0)];
#pragma unroll
        for (int hk = 0; hk < 2; ++hk) {
          const int c = 2 * hk + e;
          const bool valid = key[hk] >= rt.key_begin && key[hk] < rt.key_end;
          const PairGrads pg = pair_grads(valid, st[nt][c] * f.scale_log2, tt[nt][c], at[nt][c], rt);
          ds[nt][c] = pg.ds * p.scale;  // dk takes c dS
          dt[nt][c] = pg.dt;
          w[nt][c] = pg.w;
        }
      }
    // 3. dV += W^T dO, dK += (c dS)^T Q + dT^T R; the accumulators are the A operands
    //    (keys x rows), hi + lo words; B = dO, Q, R rows by ldmatrix.trans.
    uint32_t w_hi[4], w_lo[4], s_hi[4], s_lo[4], t_hi[4], t_lo[4];
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const int nt = x / 2, c = (x % 2) * 2;  // a0: (keys grp, rows 0-7), a1: (keys grp+8, rows 0-7), ...
      split2<T>(w[nt][c], w[nt][c + 1], w_hi[x], w_lo[x]);
      split2<T>(ds[nt][c], ds[nt][c + 1], s_hi[x], s_lo[x]);
      split2<T>(dt[nt][c], dt[nt][c + 1], t_hi[x], t_lo[x]);
    }
#pragma unroll
    for (int nd = 0; nd < NO; nd += 2) {
      uint32_t gf[4], qf[4], rf[4];
      ldmatrix_x4_trans(gf, gs + bt_off + (c0 + nd * 8) * 2);
      ldmatrix_x4_trans(qf, qs + bt_off + (c0 + nd * 8) * 2);
      ldmatrix_x4_trans(rf, rs + bt_off + (c0 + nd * 8) * 2);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const uint32_t* ga = gf + 2 * half;
        const uint32_t* qa = qf + 2 * half;
        const uint32_t* ra = rf + 2 * half;
        mma_m16n8k16<T>(dv[nd + half], w_hi, ga[0], ga[1]);
        mma_m16n8k16<T>(dv[nd + half], w_lo, ga[0], ga[1]);
        mma_m16n8k16<T>(dk[nd + half], s_hi, qa[0], qa[1]);
        mma_m16n8k16<T>(dk[nd + half], s_lo, qa[0], qa[1]);
        mma_m16n8k16<T>(dk[nd + half], t_hi, ra[0], ra[1]);
        mma_m16n8k16<T>(dk[nd + half], t_lo, ra[0], ra[1]);
      }
    }
    __syncthreads();  // every warp is done with this step's buffers before they are refilled
  }
  cp_async_wait<0>();

  // 4. Write dk, dv of the keys of this sequence.
#pragma unroll
  for (int hk = 0; hk < 2; ++hk) {
    if (key[hk] >= sv.k_len) continue;
    const long long base = ((sv.k_off + key[hk]) * f.heads_kv + g) * D;
#pragma unroll
    for (int nd = 0; nd < NO; ++nd)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const long long col = c0 + nd * 8 + 2 * quad + e;
        if (col >= D) continue;
        static_cast<T*>(p.dk)[base + col] = from_float<T>(dk[nd][2 * hk + e]);
        static_cast<T*>(p.dv)[base + col] = from_float<T>(dv[nd][2 * hk + e]);
      }
  }
}

// The value the tensor cores see for x sent as hi + lo words of T (split2).
template <class T>
__device__ __forceinline__ float in_two_words(float x) {
  const float hi = to_float(from_float<T>(x));
  return hi + to_float(from_float<T>(x - hi));
}

// dQ and dR of 64 query rows of one (sequence, query head).
//
// Centred keys: sum_j dS_ij = sum_j dT_ij = 0 in exact arithmetic, so
//   dq_i = c sum_j dS_ij (k_j - kbar_i),  dr_i = sum_j dT_ij (k_j - kbar_i)
// for any kbar_i. The computed dS inherits an error p_ij dT_i from T_i (taken from
// the stored bf16 o, spec 6.3); uncentred, that error reaches dq as dT_i sum_j p_ij k_j,
// which with nearly equal keys is orders of magnitude larger than dq itself. With
// kbar_i = sum_j p_ij k_j / sum_j p_ij it cancels. The kernel accumulates sum_j dS_ij k_j
// and kbar_i on the tensor cores, the sums of dS and dT (as rounded for them) in fp32,
// and subtracts at the end (tests/reference/test_kernel_numerics.cpp models this).
template <class Traits>
__device__ void dqdr_cta(const BackwardParams& p, unsigned char* smem) {
  using namespace ptx;
  using T = typename Traits::Element;
  constexpr int KS = Traits::kKSteps, NO = Traits::kOutTiles;
  const ForwardParams& f = p.fwd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, grp = lane / 4, quad = lane % 4;
  const long long head = blockIdx.y, kv_head = head / f.group, D = f.head_dim;
  const SeqView sv = seq_view(f, blockIdx.z);
  // The CTA's rows, and its output columns c0 .. c0 + kOutCols - 1.
  const long long m0 = static_cast<long long>(blockIdx.x / Traits::kColSplits) * Traits::kRowsPerCta;
  const int c0 = static_cast<int>(blockIdx.x % Traits::kColSplits) * Traits::kOutCols;
  if (m0 >= sv.q_len) return;
  const int m_valid = static_cast<int>(min((long long)Traits::kRowsPerCta, sv.q_len - m0));
  long long k_lo, k_hi, unused;
  row_keys(f, sv, m0, k_lo, unused);
  row_keys(f, sv, m0 + m_valid - 1, unused, k_hi);
  if (!f.causal) k_hi = sv.k_len;
  const int steps = k_hi > k_lo ? static_cast<int>((k_hi - k_lo + 15) / 16) : 0;

  unsigned char* q_smem = smem;
  unsigned char* r_smem = q_smem + Traits::kRowsPerCta * Traits::kPitch;
  unsigned char* g_smem = r_smem + Traits::kRowsPerCta * Traits::kPitch;
  unsigned char* step_smem = g_smem + Traits::kRowsPerCta * Traits::kPitch;  // [stage][K, V][16 keys]
  // kbar accumulators in shared memory (registers are full at D = 128): each thread
  // owns its C-fragment elements, element-major so consecutive threads are adjacent.
  float* kbar = reinterpret_cast<float*>(step_smem + 2 * 2 * Traits::kTileBytes);
  float* sums = kbar + NO * 4 * Traits::kThreads;  // [dS row 0, dS row 1, dT .., p ..][thread]
  for (int e = 0; e < NO * 4 + 6; ++e) kbar[e * Traits::kThreads + threadIdx.x] = 0.f;
  auto sum_at = [&](int which, int h) -> float& { return sums[(2 * which + h) * Traits::kThreads + threadIdx.x]; };
  const long long q_stride = f.heads_q * D, kv_stride = f.heads_kv * D;
  const long long q_off = ((sv.q_off + m0) * f.heads_q + head) * D;
  load_rows<Traits>(q_smem, static_cast<const T*>(f.q) + q_off, q_stride, Traits::kRowsPerCta, m_valid, D);
  load_rows<Traits>(r_smem, static_cast<const T*>(f.r) + q_off, q_stride, Traits::kRowsPerCta, m_valid, D);
  load_rows<Traits>(g_smem, static_cast<const T*>(p.dout) + q_off, q_stride, Traits::kRowsPerCta, m_valid, D);
  auto load_step = [&](int n, int stage) {
    const long long jj = k_lo + 16LL * n;
    const int valid = static_cast<int>(min(16LL, k_hi - jj));
    const long long off = ((sv.k_off + jj) * f.heads_kv + kv_head) * D;
    unsigned char* dst = step_smem + stage * 2 * Traits::kTileBytes;
    load_rows<Traits>(dst, static_cast<const T*>(f.k) + off, kv_stride, 16, valid, D);
    load_rows<Traits>(dst + Traits::kTileBytes, static_cast<const T*>(f.v) + off, kv_stride, 16, valid, D);
  };
  if (steps > 0) load_step(0, 0);
  cp_async_commit();

  RowTerms rt[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) rt[h] = row_terms(p, sv, head, m0 + warp * 16 + grp + 8 * h);
  float dq[NO][4], dr[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n)
#pragma unroll
    for (int c = 0; c < 4; ++c) dq[n][c] = dr[n][c] = 0.f;
  const int a_off = ldsm_a_offset(lane, warp * 16, Traits::kPitch);
  const int b_off = ldsm_b_offset(lane, Traits::kPitch);    // rows as n
  const int bt_off = ldsm_bt_offset(lane, Traits::kPitch);  // rows as k

  for (int n = 0; n < steps; ++n) {
    if (n + 1 < steps) load_step(n + 1, (n + 1) % 2);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const unsigned char* ks = step_smem + (n % 2) * 2 * Traits::kTileBytes;
    const unsigned char* vs = ks + Traits::kTileBytes;
    // 1. S, T, A (16 rows x 16 keys): A operands Q, R, dO rows; B = K, K, V rows.
    float acc[3][2][4];
    three_products<KS, T>(acc, {q_smem + a_off, r_smem + a_off, g_smem + a_off}, {ks + b_off, ks + b_off, vs + b_off});
    const auto& s = acc[0];
    const auto& t = acc[1];
    const auto& a = acc[2];
    // 2. dS, dT per pair (row grp + 8 h, key nt * 8 + 2 quad + e).
    const long long jj = k_lo + 16LL * n + 2 * quad;
    float ds[2][4], dt[2][4], pw[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = 2 * h + e;
          const long long j = jj + nt * 8 + e;
          const bool valid = j >= rt[h].key_begin && j < rt[h].key_end;
          const PairGrads pg = pair_grads(valid, s[nt][c] * f.scale_log2, t[nt][c], a[nt][c], rt[h]);
          ds[nt][c] = pg.ds;
          dt[nt][c] = pg.dt;
          pw[nt][c] = pg.p;
          sum_at(0, h) += in_two_words<T>(pg.ds);
          sum_at(1, h) += in_two_words<T>(pg.dt);
          sum_at(2, h) += pg.p;
        }
    // 3. dQ += dS K, dR += dT K (A from the accumulators, hi + lo; B = K by ldmatrix.trans).
    uint32_t s_hi[4], s_lo[4], t_hi[4], t_lo[4], p_hi[4], p_lo[4];
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const int nt = x / 2, c = (x % 2) * 2;
      split2<T>(ds[nt][c], ds[nt][c + 1], s_hi[x], s_lo[x]);
      split2<T>(dt[nt][c], dt[nt][c + 1], t_hi[x], t_lo[x]);
      split2<T>(pw[nt][c], pw[nt][c + 1], p_hi[x], p_lo[x]);  // one word for kbar is 18x too coarse (model)
    }
#pragma unroll
    for (int nd = 0; nd < NO; nd += 2) {
      uint32_t kf[4];
      ldmatrix_x4_trans(kf, ks + bt_off + (c0 + nd * 8) * 2);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        mma_m16n8k16<T>(dq[nd + half], s_hi, kf[2 * half], kf[2 * half + 1]);
        mma_m16n8k16<T>(dq[nd + half], s_lo, kf[2 * half], kf[2 * half + 1]);
        mma_m16n8k16<T>(dr[nd + half], t_hi, kf[2 * half], kf[2 * half + 1]);
        mma_m16n8k16<T>(dr[nd + half], t_lo, kf[2 * half], kf[2 * half + 1]);
        float kb[4] = {0.f, 0.f, 0.f, 0.f};
        mma_m16n8k16<T>(kb, p_hi, kf[2 * half], kf[2 * half + 1]);
        mma_m16n8k16<T>(kb, p_lo, kf[2 * half], kf[2 * half + 1]);
#pragma unroll
        for (int c = 0; c < 4; ++c) kbar[((nd + half) * 4 + c) * Traits::kThreads + threadIdx.x] += kb[c];
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float sum_ds = sum_at(0, h), sum_dt = sum_at(1, h), sum_p = sum_at(2, h);
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {  // the row's 4 lanes hold its sums
      sum_ds += __shfl_xor_sync(0xffffffffu, sum_ds, off);
      sum_dt += __shfl_xor_sync(0xffffffffu, sum_dt, off);
      sum_p += __shfl_xor_sync(0xffffffffu, sum_p, off);
    }
    const long long row = m0 + warp * 16 + grp + 8 * h;
    if (row >= sv.q_len) continue;
    const long long base = ((sv.q_off + row) * f.heads_q + head) * D;
    const float inv_p = sum_p > 0.f ? 1.f / sum_p : 0.f;
#pragma unroll
    for (int nd = 0; nd < NO; ++nd)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const long long col = c0 + nd * 8 + 2 * quad + e;
        if (col >= D) continue;
        const float kb = kbar[(nd * 4 + 2 * h + e) * Traits::kThreads + threadIdx.x] * inv_p;
        static_cast<T*>(p.dq)[base + col] = from_float<T>(p.scale * (dq[nd][2 * h + e] - sum_ds * kb));
        static_cast<T*>(p.dr)[base + col] = from_float<T>(dr[nd][2 * h + e] - sum_dt * kb);
      }
  }
}

}  // namespace lla::gpu::train
