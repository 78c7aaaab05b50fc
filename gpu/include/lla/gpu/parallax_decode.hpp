#pragma once
// Parallax decode on the GPU: Lq >= 1 new query tokens per sequence (end-aligned
// causal, so chunked prefill and speculative verification too) against a KV cache.
// Host-only header: no CUDA types, so CPU code can include it.
//
//   q, r, o : (B, Lq, Hq, D) contiguous, dtype bf16 or fp16
//   cache   : contiguous (B, Lmax, Hkv, D), or paged: (num_pages, page_size, Hkv, D)
//             with a page table (B, max_pages_per_seq) of int32 page indices
//   lse     : optional (B, Lq, Hq) fp32, natural log (-inf on empty rows)
//   q, r, k, v, o 16-byte aligned (as cudaMalloc returns them)
//
// fp32 accumulation, output in the input dtype. Deterministic (bitwise equal across
// runs for a given split count), no host synchronisation and no allocation inside
// the call, so it can be captured in a CUDA graph; split-KV partials go to a
// caller-provided workspace (decode_workspace_bytes) that must be zero-filled once
// after allocation (cudaMemset): it also holds the split counters of the fused merge,
// which every call leaves at zero again.

#include <cstddef>
#include <cstdint>
#include <string>

#include "lla/gpu/types.hpp"
#include "lla/problem.hpp"

namespace lla::gpu {


struct PagedCache {
  const int32_t* page_table = nullptr;  // device, (batch, max_pages_per_seq); null = contiguous cache
  int64_t max_pages_per_seq = 0;
  int64_t page_size = 0;                // keys per page (any value >= 1)
  int64_t num_pages = 0;                // pages in the pool (for bounds checks of the table)
};

// How the bf16 tensor-core body brings K and V tiles into shared memory.
enum class DecodeCopy {
  automatic,   // tensor_map where it applies, else cp_async
  cp_async,    // 16-byte cp.async per thread: every cache layout and head dim
  tensor_map,  // Hopper tensor-map copies (TMA) of whole tiles: compute capability 9.0+,
               // contiguous cache, bf16, head_dim 64, 128 or 256; refused elsewhere
};

struct DecodeArgs {
  // Shapes and masks: batch, seqlen_q (new tokens), seqlen_k (cache capacity Lmax,
  // or max_pages_per_seq * page_size when paged), heads, head_dim, scale, window.
  // causal must be true; no varlen. seqused_k / cache_start in the Problem are
  // ignored here: the device copies below are what the kernel reads.
  Problem problem;
  DType dtype = DType::bf16;
  const void* q = nullptr;
  const void* r = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;                // optional
  const int32_t* seqused_k = nullptr;  // device, (batch); null = seqlen_k for every sequence
  const int32_t* cache_start = nullptr;  // device, (batch); null = 0
  PagedCache paged;
  DecodeCopy copy = DecodeCopy::automatic;
  int num_splits = 0;                  // 0 = heuristic for the device; >= 1 forces
  void* workspace = nullptr;           // >= decode_workspace_bytes(...) when num_splits > 1,
                                       // zero-filled once after allocation (see above)
  size_t workspace_bytes = 0;
};

using DecodeStatus = Status;

// The split count the heuristic picks for this problem on a device with sm_count SMs.
// (bf16 with D % 8 == 0 runs the tensor-core body, fp16 and other D the CUDA-core body.)
int decode_num_splits(const Problem& problem, int sm_count, DType dtype = DType::bf16);
// Workspace needed for a given split count (0 when num_splits == 1).
size_t decode_workspace_bytes(const Problem& problem, int num_splits);

// Validates, then launches on `stream` (a cudaStream_t passed as void*). Unsupported
// combinations (D > 256, non-causal, varlen, missing pointers, too small a
// workspace) return ok = false with a message and launch nothing.
DecodeStatus parallax_decode(const DecodeArgs& args, void* stream, int sm_count);

}  // namespace lla::gpu
