#pragma once
// Parallax training kernels on the GPU: forward and backward (docs/training.md).
// Host-only header: no CUDA types, so CPU code can include it.
//
//   q, r, o, vbar : (B, Lq, Hq, D)     dense, or (1, total_q, Hq, D) packed varlen
//   k, v          : (B, Lk, Hkv, D)    dense, or (1, total_k, Hkv, D) packed varlen
//   lse, tbar     : (B, Lq, Hq) fp32   (or (1, total_q, Hq))
//
// What the forward saves for the backward (spec: parallax.md, section 5), one set of
// units for all of it:
//   lse  = m + log d1, natural log (m = max_j s_ij, s = c q.k); -inf on empty rows
//   tbar = sum_j p_ij t_ij (t = r.k); 0 on empty rows
//   vbar = sum_j p_ij v_j in the input dtype; 0 on empty rows
// Masks: causal (aligned to the end of the keys) or not, sliding window, GQA/MQA,
// packed varlen batches (cu_seqlens; empty and length-1 sequences allowed).
// bf16 (or fp16: see TrainForwardArgs::dtype) inputs, fp32 accumulation, outputs in the
// input dtype. All pointers 16-byte aligned.

#include <cstddef>
#include <cstdint>

#include "lla/gpu/types.hpp"
#include "lla/problem.hpp"

namespace lla::gpu {

// Which implementation of the training forward runs.
//   automatic: wgmma where it applies (a compute-capability 9.0 device, D % 8 == 0,
//              D <= 128), mma_sync otherwise;
//   mma_sync : mma.sync m16n8k16 (sm_80+ instructions), every D <= 256 (D > 128: the
//              output columns split over two CTAs, correct but not tuned);
//   wgmma    : Hopper's warpgroup MMA (sm_90a code: H100/H200), D <= 128 with D % 8 == 0;
//              refused with a message where D % 8 != 0, a launch error on other devices.
enum class TrainKernel { automatic, mma_sync, wgmma };

struct TrainForwardArgs {
  // Shapes and masks. In varlen mode the host cu_seqlens in the Problem size the
  // grid; the kernel reads the device copies below.
  Problem problem;
  // bf16 or fp16 (the same kernels with fp16 words). fp16 words overflow where
  // |t - kappa| or a gradient weight passes 65504 (docs/training.md).
  DType dtype = DType::bf16;
  const void* q = nullptr;
  const void* r = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  void* vbar = nullptr;   // optional: saved for the backward
  // Optional, saved for the backward (which requires them): the rounding residuals
  // o - T(o) and vbar - T(vbar) in the input dtype T, shaped like q. The backward's row terms g.o and
  // g.vbar need 16 significand bits of o and vbar; with 8 its gradients can break the
  // accuracy rule by 20x (two-key rows; docs/training.md, "Saved state").
  void* o_lo = nullptr;
  void* vbar_lo = nullptr;
  float* lse = nullptr;   // optional
  float* tbar = nullptr;  // optional
  const int32_t* cu_seqlens_q = nullptr;  // device, varlen only
  const int32_t* cu_seqlens_k = nullptr;  // device, varlen only (null = same as q)
  TrainKernel kernel = TrainKernel::automatic;
};

// Validates, then launches on `stream` (a cudaStream_t passed as void*). Refused with
// a message (nothing launched): head_dim > 256, other variants, missing or misaligned
// pointers, an invalid Problem, the wgmma kernel with head_dim % 8 != 0 or > 128.
Status parallax_forward(const TrainForwardArgs& args, void* stream);

// The backward from the forward's saved tensors. Gradients in the input dtype: dq, dr like q;
// dk, dv like k, summed over the query heads of each group in fp32 before rounding.
// Deterministic (no atomics): bitwise equal across runs.
struct TrainBackwardArgs {
  Problem problem;
  DType dtype = DType::bf16;
  const void* q = nullptr;
  const void* r = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* o = nullptr;     // the forward's output
  const void* vbar = nullptr;  // the forward's saved vbar
  const void* o_lo = nullptr;     // the forward's saved residuals (TrainForwardArgs::o_lo)
  const void* vbar_lo = nullptr;  // and vbar_lo
  const float* lse = nullptr;
  const float* tbar = nullptr;
  const void* dout = nullptr;  // dL/do
  void* dq = nullptr;
  void* dr = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  const int32_t* cu_seqlens_q = nullptr;  // device, varlen only
  const int32_t* cu_seqlens_k = nullptr;  // device, varlen only (null = same as q)
  void* workspace = nullptr;              // >= train_backward_workspace_bytes(problem)
  size_t workspace_bytes = 0;
  // The dK/dV and dQ/dR kernels: automatic takes the Hopper (wgmma) ones on compute
  // capability 9.0 where D % 8 == 0 and D <= 128, and the mma.sync ones otherwise; mma_sync and wgmma
  // force one (wgmma refuses D % 8 != 0 and D > 128).
  TrainKernel kernel = TrainKernel::automatic;
};

// Workspace of the backward: two fp32 values (g.o and g.vbar) per query row and head.
size_t train_backward_workspace_bytes(const Problem& problem);

Status parallax_backward(const TrainBackwardArgs& args, void* stream);

}  // namespace lla::gpu
