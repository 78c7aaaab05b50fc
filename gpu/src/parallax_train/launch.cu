// Launch and dispatch of the Parallax training forward: validation with messages,
// then runtime values become template arguments here and nowhere else.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "forward_kernel.cuh"
#include "lla/gpu/parallax_train.hpp"

namespace lla::gpu {
namespace train {
namespace {

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads) forward_kernel(const ForwardParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  forward_cta<Traits>(p, smem);
}

template <int kDMax, bool kVec>
cudaError_t launch(const ForwardParams& p, dim3 grid, cudaStream_t stream) {
  using Traits = ForwardTraits<kDMax, kVec>;
  static const cudaError_t opt_in = cudaFuncSetAttribute(
      forward_kernel<Traits>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(Traits::kSmemBytes));
  if (opt_in != cudaSuccess) return opt_in;
  forward_kernel<Traits><<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t dispatch(const ForwardParams& p, dim3 grid, cudaStream_t stream) {
  const bool vec = p.head_dim % 8 == 0;
  if (p.head_dim <= 64) return vec ? launch<64, true>(p, grid, stream) : launch<64, false>(p, grid, stream);
  return vec ? launch<128, true>(p, grid, stream) : launch<128, false>(p, grid, stream);
}

}  // namespace
}  // namespace train

Status parallax_forward(const TrainForwardArgs& a, void* stream) {
  const Problem& pr = a.problem;
  auto refuse = [](const std::string& why) { return Status{false, "parallax_forward: " + why}; };
  if (auto e = pr.check()) return refuse(*e);
  if (pr.variant != Variant::parallax) return refuse("problem.variant must be parallax");
  if (a.dtype != DType::bf16) return refuse("only bf16 is implemented (fp16: not yet)");
  if (pr.head_dim > 128) {
    return refuse("head_dim " + std::to_string(pr.head_dim) + " is not implemented yet (head_dim <= 128 is)");
  }
  if (!pr.seqused_k.empty() || !pr.cache_start.empty()) {
    return refuse("seqused_k / cache_start are decode features (use parallax_decode)");
  }
  if (!a.q || !a.r || !a.k || !a.v || !a.o) return refuse("q, r, k, v and o must all be set");
  for (const void* ptr : {a.q, a.r, a.k, a.v, static_cast<const void*>(a.o), static_cast<const void*>(a.vbar)}) {
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return refuse("tensors must be 16-byte aligned");
  }
  if (pr.is_varlen() && a.cu_seqlens_q == nullptr) return refuse("varlen problem: cu_seqlens_q (device) is missing");
  if (pr.is_varlen() && !pr.cu_seqlens_k.empty() && a.cu_seqlens_k == nullptr) {
    return refuse("varlen problem with cu_seqlens_k: its device copy is missing");
  }
  long long sequences = pr.batch, max_q = pr.seqlen_q;
  if (pr.is_varlen()) {
    sequences = static_cast<long long>(pr.cu_seqlens_q.size()) - 1;
    max_q = 0;
    for (size_t s = 0; s + 1 < pr.cu_seqlens_q.size(); ++s) {
      max_q = std::max<long long>(max_q, pr.cu_seqlens_q[s + 1] - pr.cu_seqlens_q[s]);
    }
  }
  constexpr long long kBlockM = train::ForwardTraits<64, true>::kBlockM;
  const long long m_blocks = (max_q + kBlockM - 1) / kBlockM;
  if (sequences == 0 || m_blocks == 0) return Status{};
  if (m_blocks > INT32_MAX || pr.heads_q > 65535 || sequences > 65535) {
    return refuse("grid too large (sequence length, heads or batch)");
  }
  train::ForwardParams p{};
  p.q = static_cast<const __nv_bfloat16*>(a.q);
  p.r = static_cast<const __nv_bfloat16*>(a.r);
  p.k = static_cast<const __nv_bfloat16*>(a.k);
  p.v = static_cast<const __nv_bfloat16*>(a.v);
  p.o = static_cast<__nv_bfloat16*>(a.o);
  p.vbar = static_cast<__nv_bfloat16*>(a.vbar);
  p.lse = a.lse;
  p.tbar = a.tbar;
  p.cu_seqlens_q = pr.is_varlen() ? a.cu_seqlens_q : nullptr;
  p.cu_seqlens_k = pr.is_varlen() && !pr.cu_seqlens_k.empty() ? a.cu_seqlens_k : nullptr;
  p.seqlen_q = pr.seqlen_q;
  p.seqlen_k = pr.seqlen_k;
  p.heads_q = pr.heads_q;
  p.heads_kv = pr.heads_kv;
  p.group = pr.group_size();
  p.head_dim = pr.head_dim;
  p.scale_log2 = static_cast<float>(pr.softmax_scale() * 1.4426950408889634);
  p.causal = pr.causal;
  p.window = pr.window;
  const dim3 grid(static_cast<unsigned>(m_blocks), static_cast<unsigned>(pr.heads_q),
                  static_cast<unsigned>(sequences));
  const cudaError_t e = train::dispatch(p, grid, static_cast<cudaStream_t>(stream));
  if (e != cudaSuccess) return refuse(std::string("launch failed: ") + cudaGetErrorString(e));
  return Status{};
}

}  // namespace lla::gpu
