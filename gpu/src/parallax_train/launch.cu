// Launch and dispatch of the Parallax training kernels: validation with messages,
// then runtime values become template arguments here and nowhere else.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>

#include "../common/launch.cuh"
#include "backward_kernel.cuh"
#include "forward_kernel.cuh"
#include "backward_wgmma.hpp"
#include "forward_wgmma.hpp"
#include "lla/gpu/parallax_train.hpp"

namespace lla::gpu {
namespace train {
namespace {

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads) forward_kernel(const ForwardParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  forward_cta<Traits>(p, smem);
}

template <class T>
__global__ void __launch_bounds__(128) preprocess_kernel(const BackwardParams p, long long rows) {
  preprocess_rows<T>(p, rows);
}

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads) dkdv_kernel(const BackwardParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  dkdv_cta<Traits>(p, smem);
}

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads) dqdr_kernel(const BackwardParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  dqdr_cta<Traits>(p, smem);
}

template <class T, int kDMax, bool kVec>
cudaError_t launch_forward(const ForwardParams& p, dim3 grid, cudaStream_t stream) {
  using Traits = ForwardTraits<kDMax, kVec, T>;
  static const cudaError_t opt_in = opt_in_smem(forward_kernel<Traits>, Traits::kSmemBytes);
  return launch_with_smem(forward_kernel<Traits>, opt_in, Traits::kSmemBytes, grid, Traits::kThreads, p, stream);
}

template <class T, int kDMax, bool kVec>
cudaError_t launch_backward(const BackwardParams& p, dim3 dkdv_grid, dim3 dqdr_grid, bool use_wgmma,
                            cudaStream_t stream) {
  using Traits = BackwardTraits<kDMax, kVec, T>;
  constexpr DType kDType = kIsFp16<T> ? DType::fp16 : DType::bf16;
  static const cudaError_t dkdv_opt_in = opt_in_smem(dkdv_kernel<Traits>, Traits::kDkdvSmem);
  static const cudaError_t dqdr_opt_in = opt_in_smem(dqdr_kernel<Traits>, Traits::kDqdrSmem);
  static_assert(Traits::kKeysPerCta == kWgmmaDkdvKeys, "both dK/dV kernels take 64 keys per CTA");
  static_assert(Traits::kRowsPerCta == kWgmmaDqdrRows, "both dQ/dR kernels take 64 rows per CTA");
  if (use_wgmma) {
    const cudaError_t e = launch_dkdv_wgmma(p, kDType, dkdv_grid, stream);
    return e != cudaSuccess ? e : launch_dqdr_wgmma(p, kDType, dqdr_grid, stream);
  }
  const cudaError_t e = launch_with_smem(dkdv_kernel<Traits>, dkdv_opt_in, Traits::kDkdvSmem, dkdv_grid,
                                         Traits::kThreads, p, stream);
  if (e != cudaSuccess) return e;
  return launch_with_smem(dqdr_kernel<Traits>, dqdr_opt_in, Traits::kDqdrSmem, dqdr_grid, Traits::kThreads, p,
                          stream);
}

// The element type, head-dim bucket and load width as template arguments.
template <template <class, int, bool> class Launch, class T, class... Args>
cudaError_t dispatch_dim(long long head_dim, Args&&... args) {
  const bool vec = head_dim % 8 == 0;
  if (head_dim <= 64) return vec ? Launch<T, 64, true>::run(args...) : Launch<T, 64, false>::run(args...);
  if (head_dim <= 128) return vec ? Launch<T, 128, true>::run(args...) : Launch<T, 128, false>::run(args...);
  return vec ? Launch<T, 256, true>::run(args...) : Launch<T, 256, false>::run(args...);
}
template <template <class, int, bool> class Launch, class... Args>
cudaError_t dispatch(DType dtype, long long head_dim, Args&&... args) {
  return dtype == DType::fp16 ? dispatch_dim<Launch, __half>(head_dim, args...)
                              : dispatch_dim<Launch, __nv_bfloat16>(head_dim, args...);
}
template <class T, int kDMax, bool kVec>
struct ForwardLaunch {
  static cudaError_t run(const ForwardParams& p, dim3 grid, cudaStream_t s) {
    return launch_forward<T, kDMax, kVec>(p, grid, s);
  }
};
template <class T, int kDMax, bool kVec>
struct BackwardLaunch {
  static cudaError_t run(const BackwardParams& p, dim3 a, dim3 b, bool use_wgmma, cudaStream_t s) {
    return launch_backward<T, kDMax, kVec>(p, a, b, use_wgmma, s);
  }
};

// What the forward and the backward check alike; empty when the call can run.
// A tensor with no elements may be null (as an empty PyTorch tensor's data pointer is):
// q_side tensors have Problem::q_elements() elements, kv_side ones kv_elements().
std::optional<std::string> check_common(const Problem& pr, DType dtype, const int32_t* cu_q, const int32_t* cu_k,
                                        std::initializer_list<const void*> q_side,
                                        std::initializer_list<const void*> kv_side) {
  if (auto e = pr.check()) return *e;
  if (pr.variant != Variant::parallax) return "problem.variant must be parallax";
  if (dtype != DType::bf16 && dtype != DType::fp16) return "dtype must be bf16 or fp16";
  if (pr.head_dim > 256) {
    return "head_dim " + std::to_string(pr.head_dim) + " is not supported (head_dim <= 256 is)";
  }
  if (!pr.seqused_k.empty() || !pr.cache_start.empty()) {
    return "seqused_k / cache_start are decode features (use parallax_decode)";
  }
  auto check_tensors = [](std::initializer_list<const void*> tensors, bool empty) -> std::optional<std::string> {
    for (const void* ptr : tensors) {
      if (ptr == nullptr && !empty) return "a required tensor pointer is null";
      if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return "tensors must be 16-byte aligned";
    }
    return std::nullopt;
  };
  if (auto e = check_tensors(q_side, pr.q_elements() == 0)) return e;
  if (auto e = check_tensors(kv_side, pr.kv_elements() == 0)) return e;
  if (pr.is_varlen() && cu_q == nullptr) return "varlen problem: cu_seqlens_q (device) is missing";
  if (pr.is_varlen() && !pr.cu_seqlens_k.empty() && cu_k == nullptr) {
    return "varlen problem with cu_seqlens_k: its device copy is missing";
  }
  return std::nullopt;
}

// Sequences and the longest query / key length (the grid's extent).
struct Extent {
  long long sequences, max_q, max_k;
};
Extent extent_of(const Problem& pr) {
  if (!pr.is_varlen()) return Extent{pr.batch, pr.seqlen_q, pr.seqlen_k};
  Extent e{static_cast<long long>(pr.cu_seqlens_q.size()) - 1, 0, 0};
  const auto& cu_k = pr.cu_seqlens_k.empty() ? pr.cu_seqlens_q : pr.cu_seqlens_k;
  for (size_t s = 0; s + 1 < pr.cu_seqlens_q.size(); ++s) {
    e.max_q = std::max<long long>(e.max_q, pr.cu_seqlens_q[s + 1] - pr.cu_seqlens_q[s]);
    e.max_k = std::max<long long>(e.max_k, cu_k[s + 1] - cu_k[s]);
  }
  return e;
}

ForwardParams params_of(const Problem& pr, const int32_t* cu_q, const int32_t* cu_k) {
  ForwardParams p{};
  p.cu_seqlens_q = pr.is_varlen() ? cu_q : nullptr;
  p.cu_seqlens_k = pr.is_varlen() && !pr.cu_seqlens_k.empty() ? cu_k : nullptr;
  p.seqlen_q = pr.seqlen_q;
  p.seqlen_k = pr.seqlen_k;
  p.heads_q = pr.heads_q;
  p.heads_kv = pr.heads_kv;
  p.group = pr.group_size();
  p.head_dim = pr.head_dim;
  p.scale_log2 = static_cast<float>(pr.softmax_scale() * 1.4426950408889634);
  p.causal = pr.causal;
  p.window = pr.window;
  return p;
}

// TrainKernel::automatic takes the wgmma kernels (forward, and backward) where they run
// (compute capability 9.0 exactly: sm_90a code loads nowhere else) and apply (D % 8 == 0,
// key counts below the forward's 32-bit limit); the mma.sync ones otherwise. An explicit
// wgmma request is checked by the caller instead, with a message.
bool uses_wgmma(TrainKernel kernel, long long head_dim, long long max_k) {
  if (kernel != TrainKernel::automatic) return kernel == TrainKernel::wgmma;
  if (head_dim % 8 != 0 || head_dim > 128 || max_k > INT32_MAX - 256) return false;
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    return false;
  }
  return major == 9 && minor == 0;
}

// CTAs that split one row (key) block's output columns: the traits' kColSplits of the
// head-dim bucket dispatch() picks (2 for the 256 bucket), which sizes the grid's x.
long long column_splits(long long head_dim) {
  static_assert(ForwardTraits<256, true>::kColSplits == 2 && BackwardTraits<256, true>::kColSplits == 2 &&
                    ForwardTraits<128, true>::kColSplits == 1 && BackwardTraits<128, true>::kColSplits == 1,
                "the 256 bucket splits its columns over two CTAs, the others do not");
  return head_dim > 128 ? 2 : 1;
}

// Checks what both entry points refuse for the kernel choice; empty when it can run.
std::optional<std::string> check_kernel_choice(const Problem& pr, TrainKernel kernel) {
  if (kernel == TrainKernel::wgmma && (pr.head_dim % 8 != 0 || pr.head_dim > 128)) {
    return "the wgmma kernels need head_dim % 8 == 0 and head_dim <= 128 (head_dim " +
           std::to_string(pr.head_dim) + "): use TrainKernel::automatic or mma_sync";
  }
  return std::nullopt;
}

}  // namespace
}  // namespace train

Status parallax_forward(const TrainForwardArgs& a, void* stream) {
  const Problem& pr = a.problem;
  auto refuse = [](const std::string& why) { return Status{false, "parallax_forward: " + why}; };
  if (auto e = train::check_common(pr, a.dtype, a.cu_seqlens_q, a.cu_seqlens_k, {a.q, a.r, a.o}, {a.k, a.v})) {
    return refuse(*e);
  }
  if (auto e = train::check_kernel_choice(pr, a.kernel)) return refuse(*e);
  for (const void* ptr : {a.vbar, a.o_lo, a.vbar_lo}) {
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return refuse("tensors must be 16-byte aligned");
  }
  if (a.vbar_lo != nullptr && a.vbar == nullptr) return refuse("vbar_lo is written only with vbar");
  for (const float* ptr : std::initializer_list<const float*>{a.lse, a.tbar}) {
    if (reinterpret_cast<uintptr_t>(ptr) % alignof(float) != 0) return refuse("lse and tbar must be float-aligned");
  }
  const train::Extent ext = train::extent_of(pr);
  constexpr long long kBlockM = train::ForwardTraits<64, true>::kBlockM;
  static_assert(kBlockM == train::kWgmmaForwardRows, "both forwards take 64 rows per CTA");
  const long long m_blocks = (ext.max_q + kBlockM - 1) / kBlockM;
  if (ext.sequences == 0 || m_blocks == 0) return Status{};
  if (m_blocks > INT32_MAX / 2 || pr.heads_q > 65535 || ext.sequences > 65535) {
    return refuse("grid too large (sequence length, heads or batch)");
  }
  const bool use_wgmma = train::uses_wgmma(a.kernel, pr.head_dim, ext.max_k);
  if (use_wgmma && ext.max_k > INT32_MAX - 256) {
    return refuse("the wgmma kernel takes at most 2^31 - 257 keys per sequence");
  }
  train::ForwardParams p = train::params_of(pr, a.cu_seqlens_q, a.cu_seqlens_k);
  p.q = a.q;
  p.r = a.r;
  p.k = a.k;
  p.v = a.v;
  p.o = a.o;
  p.vbar = a.vbar;
  p.o_lo = a.o_lo;
  p.vbar_lo = a.vbar_lo;
  p.lse = a.lse;
  p.tbar = a.tbar;
  const long long col_splits = train::column_splits(pr.head_dim);
  const dim3 grid(static_cast<unsigned>(m_blocks * col_splits), static_cast<unsigned>(pr.heads_q),
                  static_cast<unsigned>(ext.sequences));
  const cudaError_t e =
      use_wgmma ? train::launch_forward_wgmma(p, a.dtype, grid, static_cast<cudaStream_t>(stream))
                : train::dispatch<train::ForwardLaunch>(a.dtype, pr.head_dim, p, grid,
                                                        static_cast<cudaStream_t>(stream));
  if (e != cudaSuccess) return refuse(std::string("launch failed: ") + cudaGetErrorString(e));
  return Status{};
}

size_t train_backward_workspace_bytes(const Problem& pr) {
  return static_cast<size_t>(pr.batch * pr.seqlen_q * pr.heads_q) * 2 * sizeof(float);
}

Status parallax_backward(const TrainBackwardArgs& a, void* stream) {
  const Problem& pr = a.problem;
  auto refuse = [](const std::string& why) { return Status{false, "parallax_backward: " + why}; };
  if (pr.q_elements() > 0 && (a.o_lo == nullptr || a.vbar_lo == nullptr)) {
    return refuse("o_lo and vbar_lo saved by the forward are required (TrainForwardArgs::o_lo, vbar_lo)");
  }
  if (auto e = train::check_common(pr, a.dtype, a.cu_seqlens_q, a.cu_seqlens_k,
                                   {a.q, a.r, a.o, a.vbar, a.o_lo, a.vbar_lo, a.dout, a.dq, a.dr},
                                   {a.k, a.v, a.dk, a.dv})) {
    return refuse(*e);
  }
  if (auto e = train::check_kernel_choice(pr, a.kernel)) return refuse(*e);
  if (pr.q_elements() > 0 && (a.lse == nullptr || a.tbar == nullptr)) {
    return refuse("lse and tbar from the forward are required");
  }
  for (const void* ptr : {static_cast<const void*>(a.lse), static_cast<const void*>(a.tbar),
                          static_cast<const void*>(a.workspace)}) {
    if (reinterpret_cast<uintptr_t>(ptr) % alignof(float) != 0) {
      return refuse("lse, tbar and workspace must be float-aligned");
    }
  }
  const size_t need = train_backward_workspace_bytes(pr);
  if (need > 0 && (a.workspace == nullptr || a.workspace_bytes < need)) {
    return refuse("the workspace must hold " + std::to_string(need) + " bytes");
  }
  const train::Extent ext = train::extent_of(pr);
  if (ext.sequences == 0) return Status{};
  const long long m_blocks = (ext.max_q + 63) / 64, n_blocks = (ext.max_k + 63) / 64;
  if (m_blocks > INT32_MAX / 2 || n_blocks > INT32_MAX / 2 || pr.heads_q > 65535 || ext.sequences > 65535 ||
      pr.batch * pr.seqlen_q * pr.heads_q / 4 >= INT32_MAX) {
    return refuse("grid too large (sequence length, heads or batch)");
  }
  train::BackwardParams p{};
  p.fwd = train::params_of(pr, a.cu_seqlens_q, a.cu_seqlens_k);
  p.fwd.q = a.q;
  p.fwd.r = a.r;
  p.fwd.k = a.k;
  p.fwd.v = a.v;
  // The forward's outputs are only read here (ForwardParams names them as outputs).
  p.fwd.o = const_cast<void*>(a.o);
  p.fwd.vbar = const_cast<void*>(a.vbar);
  p.fwd.o_lo = const_cast<void*>(a.o_lo);
  p.fwd.vbar_lo = const_cast<void*>(a.vbar_lo);
  p.lse = a.lse;
  p.tbar = a.tbar;
  p.dout = a.dout;
  p.dq = a.dq;
  p.dr = a.dr;
  p.dk = a.dk;
  p.dv = a.dv;
  p.row_terms = static_cast<float*>(a.workspace);
  p.scale = static_cast<float>(pr.softmax_scale());
  auto s = static_cast<cudaStream_t>(stream);
  const long long rows = pr.batch * pr.seqlen_q * pr.heads_q;
  if (rows > 0) {
    const unsigned blocks = static_cast<unsigned>((rows + 3) / 4);
    if (a.dtype == DType::fp16) {
      train::preprocess_kernel<__half><<<blocks, 128, 0, s>>>(p, rows);
    } else {
      train::preprocess_kernel<__nv_bfloat16><<<blocks, 128, 0, s>>>(p, rows);
    }
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) {
      return refuse(std::string("launch failed: ") + cudaGetErrorString(e));
    }
  }
  if (m_blocks == 0 && n_blocks == 0) return Status{};
  const long long col_splits = train::column_splits(pr.head_dim);
  const dim3 dkdv_grid(static_cast<unsigned>(std::max(1LL, n_blocks) * col_splits),
                       static_cast<unsigned>(pr.heads_kv), static_cast<unsigned>(ext.sequences));
  const dim3 dqdr_grid(static_cast<unsigned>(std::max(1LL, m_blocks) * col_splits),
                       static_cast<unsigned>(pr.heads_q), static_cast<unsigned>(ext.sequences));
  const bool use_wgmma = train::uses_wgmma(a.kernel, pr.head_dim, ext.max_k);
  if (use_wgmma && ext.max_k > INT32_MAX - 256) {
    return refuse("the wgmma kernels take at most 2^31 - 257 keys per sequence");
  }
  const cudaError_t e =
      train::dispatch<train::BackwardLaunch>(a.dtype, pr.head_dim, p, dkdv_grid, dqdr_grid, use_wgmma, s);
  if (e != cudaSuccess) return refuse(std::string("launch failed: ") + cudaGetErrorString(e));
  return Status{};
}

}  // namespace lla::gpu
