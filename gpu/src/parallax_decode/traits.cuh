#pragma once
// Compile-time shape of the Parallax decode kernel (one place for every constant).
//
// One CTA owns (batch b, KV head g, a chunk of up to kMaxRows query rows, one
// split of the key range). Rows are the G query heads of g times the Lq new
// tokens, head-fastest, so one chunk of GQA heads shares every K/V byte it reads.
// Each warp walks its own 32-key tiles: lane = key for the q.k / r.k scores, then
// lane = slice of the head dim for the P.V products.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace lla::gpu::decode {

template <class Element, int kDMax_, bool kVectorised_, int kMaxRows_ = 8>
struct DecodeTraits {
  using T = Element;
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kTileKeys = 32;  // keys per warp iteration (one per lane)
  // Query rows per CTA: 1, 2, 4 or 8, the smallest that holds the G * Lq rows of a
  // KV head (so MHA decode does not pay registers for 8 rows).
  static constexpr int kMaxRows = kMaxRows_;
  static_assert(kMaxRows == 1 || kMaxRows == 2 || kMaxRows == 4 || kMaxRows == 8, "rows per CTA");
  static constexpr int kDMax = kDMax_;  // head dim bucket: 64, 128 or 256
  static constexpr int kDimsPerLane = kDMax / 32;
  // D % 8 == 0: 16-byte loads of K rows and (kDimsPerLane * 2)-byte loads of V slices.
  // Otherwise scalar loads, which never touch a byte past the row's D elements
  // (those may belong to an unread, NaN-poisoned slot).
  static constexpr bool kVectorised = kVectorised_;
  static_assert(kDMax == 64 || kDMax == 128 || kDMax == 256, "head dim buckets are 64, 128, 256");
  static_assert(kDMax % 32 == 0, "lanes split the head dim evenly");
};

// Shared memory of one CTA.
template <class Traits>
struct SharedStorage {
  float q[Traits::kMaxRows][Traits::kDMax];  // queries (fp32)
  float r[Traits::kMaxRows][Traits::kDMax];  // probes (fp32)
  float p1[Traits::kWarps][Traits::kMaxRows][Traits::kTileKeys];
  float p2[Traits::kWarps][Traits::kMaxRows][Traits::kTileKeys];
  float warp_m[Traits::kWarps][Traits::kMaxRows];
  float warp_d1[Traits::kWarps][Traits::kMaxRows];
  float warp_d2[Traits::kWarps][Traits::kMaxRows];
  float acc_o1[Traits::kMaxRows][Traits::kDMax];
  float acc_o2[Traits::kMaxRows][Traits::kDMax];
  float cta_m[Traits::kMaxRows];
  float cta_d1[Traits::kMaxRows];
  float cta_d2[Traits::kMaxRows];
};

// Floats per row and split in the workspace: m, d1, d2, then O1[D], O2[D].
__host__ __device__ inline long long partial_floats(int head_dim) { return 3 + 2LL * head_dim; }

}  // namespace lla::gpu::decode
