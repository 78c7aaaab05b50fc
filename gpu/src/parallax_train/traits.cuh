#pragma once
// Compile-time shape of the Parallax training forward (one place for every constant).
//
// One CTA owns 64 query rows of one (sequence, query head); each of its 4 warps owns
// 16 rows (one mma m16 block) and walks the CTA's key range in tiles of 32 keys.
// K and V tiles arrive in shared memory by cp.async, double-buffered.

#include <cuda_bf16.h>

#include <cstddef>

namespace lla::gpu::train {

template <int kDMax_, bool kVectorised_, class Element_ = __nv_bfloat16>
struct ForwardTraits {
  using Element = Element_;  // bf16 or fp16: inputs, outputs and the tensor cores' words
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockM = kWarps * 16;  // query rows per CTA
  static constexpr int kDMax = kDMax_;         // head-dim bucket; columns past D are zero
  // Keys per tile: at D = 128 the two O accumulators take 128 registers a thread,
  // so the score blocks stay at 16 keys (32 at D = 64) to avoid spills.
  static constexpr int kBlockN = kDMax >= 128 ? 16 : 32;
  static constexpr int kStages = 2;
  static_assert(kDMax == 64 || kDMax == 128 || kDMax == 256, "head dim buckets 64, 128 and 256");
  // Output columns per CTA: at D = 256 two CTAs split o's columns (blockIdx.x = 2 m_block
  // + split), each recomputing the scores over all of D, so the O accumulators stay at
  // the D = 128 size. Correct, not fast: the 256 bucket is the fallback for D > 128.
  static constexpr int kOutCols = kDMax > 128 ? 128 : kDMax;
  static constexpr int kColSplits = kDMax / kOutCols;
  // D % 8 == 0: rows copied by 16-byte cp.async; otherwise element by element
  // (never a byte past D: it may belong to a row the kernel must not read).
  static constexpr bool kVectorised = kVectorised_;
  static constexpr int kRowBytes = kDMax * 2;
  static constexpr int kPitch = kRowBytes + 16;  // conflict-free ldmatrix phases
  static constexpr int kChunksPerRow = kRowBytes / 16;
  static constexpr int kKSteps = kDMax / 16;      // k-steps of Q.K^T and R.K^T
  static constexpr int kScoreTiles = kBlockN / 8; // n-tiles of a score block (16 x kBlockN)
  static constexpr int kPvSteps = kBlockN / 16;   // k-steps of P.V
  static constexpr int kOutTiles = kOutCols / 8;  // n-tiles of O (16 x kOutCols)
  static constexpr size_t kQBytes = size_t(kBlockM) * kPitch;
  static constexpr size_t kTileBytes = size_t(kBlockN) * kPitch;
  static constexpr size_t kSmemBytes = 2 * kQBytes + 2 * kStages * kTileBytes;  // Q, R, K and V stages
};

}  // namespace lla::gpu::train
