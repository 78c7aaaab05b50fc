// Launch and dispatch of the Parallax decode kernel: runtime values become
// template arguments here and nowhere else; anything unsupported is refused with
// a message before a launch.
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <algorithm>
#include <atomic>
#include <climits>
#include <type_traits>
#include <sstream>
#include <string>
#ifdef LLA_DECODE_TIMELINE
#include <cstdio>
#include <vector>
#endif

#include "../common/launch.cuh"
#include "kernel.cuh"
#include "kernel_mma.cuh"
#include "kernel_pipelined.cuh"
#include "lla/gpu/parallax_decode.hpp"

namespace lla::gpu {

const char* to_string(DType d) { return d == DType::bf16 ? "bf16" : "fp16"; }

namespace decode {
namespace {

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads) decode_kernel(const Params p) {
  __shared__ SharedStorage<Traits> sm;
  decode_cta<Traits>(p, sm);
}

// Head dims with D % 8 == 0: K/V tiles staged in shared memory by cp.async.
template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads) decode_kernel_pipelined(const Params p) {
  __shared__ SharedStorage<Traits> sm;
  extern __shared__ __align__(16) unsigned char kv_smem[];
  decode_cta_pipelined<Traits>(p, sm, kv_smem);
}

// bf16 with D % 8 == 0: tensor cores, fused split merge (through distributed shared
// memory in a cluster of the splits, or by the last CTA through global memory).
template <class Traits, bool kClusterMerge>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kCtasPerSm)
    decode_kernel_mma(const __grid_constant__ Params p) {
  extern __shared__ __align__(16) unsigned char smem[];
  decode_cta_mma<Traits, kClusterMerge>(p, smem);
}

// One block per output row (the CUDA-core bodies): merge the split partials in split order.
template <class T>
__global__ void __launch_bounds__(128) merge_kernel(const Params p) {
  __shared__ MergeScratch scratch;
  if (threadIdx.x == 0) scratch.orow[0] = blockIdx.x;
  __syncthreads();
  merge_rows<T>(p, 1, scratch);
}


int rows_per_cta(const Problem& pr) {
  const long long rows = pr.group_size() * pr.seqlen_q;
  return rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
}

long long row_chunks_of(const Problem& pr) {
  const long long rows = pr.group_size() * pr.seqlen_q;
  return (rows + rows_per_cta(pr) - 1) / rows_per_cta(pr);
}

template <class T, int kDMax, bool kVec, int kRows>
void launch(const Params& p, cudaStream_t stream) {
  using Traits = DecodeTraits<T, kDMax, kVec, kRows>;
  const dim3 grid(static_cast<unsigned>(p.num_splits), static_cast<unsigned>(p.heads_kv * p.row_chunks),
                  static_cast<unsigned>(p.batch));
  if constexpr (kVec) {
    constexpr size_t smem = PipelinedLayout<Traits>::kKvBytes;
    // Dynamic shared memory above 48 KB needs an opt-in, once per instantiation.
    static const cudaError_t opt_in = opt_in_smem(decode_kernel_pipelined<Traits>, smem);
    (void)opt_in;
    decode_kernel_pipelined<Traits><<<grid, Traits::kThreads, smem, stream>>>(p);
  } else {
    decode_kernel<Traits><<<grid, Traits::kThreads, 0, stream>>>(p);
  }
  if (p.num_splits > 1) {  // CUDA-core bodies: a second kernel merges (the mma body merges in its last CTA)
    const long long rows = p.batch * p.seqlen_q * p.heads_q;
    merge_kernel<T><<<static_cast<unsigned>(rows), 128, 0, stream>>>(p);
  }
}

template <int kDMax, int kRows, int kDSplit, int kStages>
void launch_mma_config(const Params& p, bool cluster_merge, cudaStream_t stream) {
  using Traits = MmaTraits<kDMax, kRows, kDSplit, kStages>;
  const dim3 grid(static_cast<unsigned>(p.num_splits), static_cast<unsigned>(p.heads_kv * p.row_chunks),
                  static_cast<unsigned>(p.batch));
  cudaLaunchConfig_t config{};  // the cluster launch
  config.gridDim = grid;
  config.blockDim = dim3(Traits::kThreads);
  config.dynamicSmemBytes = Traits::kSmemBytes;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = static_cast<unsigned>(p.num_splits);
  attribute.val.clusterDim.y = 1;
  attribute.val.clusterDim.z = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
  if (cluster_merge) {
    static const cudaError_t cluster_opt_in = [] {
      const cudaError_t e = opt_in_smem(decode_kernel_mma<Traits, true>, Traits::kSmemBytes);
      if (e != cudaSuccess) return e;
      return cudaFuncSetAttribute(decode_kernel_mma<Traits, true>, cudaFuncAttributeNonPortableClusterSizeAllowed,
                                  1);
    }();
    // A cluster of this size must fit on the device (it does on H100/H200 up to 16 at
    // two CTAs per SM); where it would not, the splits merge through global memory.
    // Asked once per cluster size and cached (the query is not a stream operation).
    static std::atomic<int> fits[kMaxClusterSplits + 1];  // 0 unknown, 1 yes, 2 no
    std::atomic<int>& f = fits[p.num_splits];
    if (f.load() == 0) {
      int clusters = 0;
      const bool ok = cluster_opt_in == cudaSuccess &&
                      cudaOccupancyMaxActiveClusters(&clusters, decode_kernel_mma<Traits, true>, &config) ==
                          cudaSuccess &&
                      clusters >= 1;
      (void)cudaGetLastError();  // a failed query is an answer ("no"), not a launch error
      f.store(ok ? 1 : 2);
    }
    cluster_merge = f.load() == 1;
  }
  if (!cluster_merge) {
    static const cudaError_t opt_in = opt_in_smem(decode_kernel_mma<Traits, false>, Traits::kSmemBytes);
    (void)opt_in;
    decode_kernel_mma<Traits, false><<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(p);
    return;
  }
  (void)cudaLaunchKernelEx(&config, decode_kernel_mma<Traits, true>, p);  // errors: cudaGetLastError below
}

// The tensor-core body serves bf16 with D % 8 == 0 (16-byte rows for cp.async and ldmatrix).
bool uses_mma(DType dtype, long long head_dim) { return dtype == DType::bf16 && head_dim % 8 == 0; }

// Measured on an H200 (docs/gpu.md): the defaults of MmaTraits beat (kDSplit 2, 4 stages)
// and (kDSplit 1, 2 stages) at D = 128 on the benchmark shapes.
template <int kDMax, int kRows>
void launch_mma(const Params& p, bool cluster_merge, cudaStream_t stream) {
  launch_mma_config<kDMax, kRows, mma_default_dsplit(kDMax), mma_default_stages(kDMax)>(p, cluster_merge, stream);
}

// What the split heuristic needs of the tensor-core body of a head-dim bucket.
struct MmaShape {
  int ctas_per_sm, tile_keys;
  long long tile_bytes;  // K and V of one tile
};
template <int kDMax>
constexpr MmaShape mma_shape_of() {
  return MmaShape{MmaTraits<kDMax, 8>::kCtasPerSm, MmaTraits<kDMax, 8>::kTileKeys,
                  2LL * MmaTraits<kDMax, 8>::kTileBytes};
}
MmaShape mma_shape(long long head_dim) {
  return head_dim <= 64 ? mma_shape_of<64>() : head_dim <= 128 ? mma_shape_of<128>() : mma_shape_of<256>();
}

template <int kRows>
void dispatch_mma(const Params& p, bool cluster_merge, cudaStream_t stream) {
  if (p.head_dim <= 64) return launch_mma<64, kRows>(p, cluster_merge, stream);
  if (p.head_dim <= 128) return launch_mma<128, kRows>(p, cluster_merge, stream);
  return launch_mma<256, kRows>(p, cluster_merge, stream);
}

template <class T, int kRows>
void dispatch_dim(const Params& p, cudaStream_t stream) {
  // bf16 with D % 8 == 0 goes to the tensor-core body: only the scalar-load body is
  // instantiated for bf16 here.
  constexpr bool kHasVectorPath = !std::is_same_v<T, __nv_bfloat16>;
  const bool vec = kHasVectorPath && p.head_dim % 8 == 0;
  if (p.head_dim <= 64) {
    vec ? launch<T, 64, kHasVectorPath, kRows>(p, stream) : launch<T, 64, false, kRows>(p, stream);
  } else if (p.head_dim <= 128) {
    vec ? launch<T, 128, kHasVectorPath, kRows>(p, stream) : launch<T, 128, false, kRows>(p, stream);
  } else {
    vec ? launch<T, 256, kHasVectorPath, kRows>(p, stream) : launch<T, 256, false, kRows>(p, stream);
  }
}

template <class T>
void dispatch_rows(const Params& p, int rows, bool cluster_merge, cudaStream_t stream) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if (uses_mma(DType::bf16, p.head_dim)) {
      switch (rows) {
        case 1: return dispatch_mma<1>(p, cluster_merge, stream);
        case 2: return dispatch_mma<2>(p, cluster_merge, stream);
        case 4: return dispatch_mma<4>(p, cluster_merge, stream);
        default: return dispatch_mma<8>(p, cluster_merge, stream);
      }
    }
  }
  switch (rows) {
    case 1: return dispatch_dim<T, 1>(p, stream);
    case 2: return dispatch_dim<T, 2>(p, stream);
    case 4: return dispatch_dim<T, 4>(p, stream);
    default: return dispatch_dim<T, 8>(p, stream);
  }
}

// --- Tensor-map copies -------------------------------------------------------------

// cuTensorMapEncodeTiled from the driver, looked up once through the runtime (no link
// against libcuda); null where the driver does not have it.
using EncodeTiled = PFN_cuTensorMapEncodeTiled_v12000;
EncodeTiled tensor_map_encoder() {
  static std::atomic<void*> cached{nullptr};  // a failed lookup is asked again next call
  void* f = cached.load();
  if (f == nullptr) {
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    cached.store(f);
  }
  return reinterpret_cast<EncodeTiled>(f);
}

// Compute capability major of the current device, asked once per device.
int device_cc_major() {
  static std::atomic<int> cache[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) {
    (void)cudaGetLastError();
    return 0;
  }
  if (dev >= 64) {
    int major = 0;
    (void)cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    return major;
  }
  int v = cache[dev].load();
  if (v == 0) {
    if (cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      v = 0;
    }
    cache[dev].store(v);
  }
  return v;
}

// Why tensor-map copies cannot serve this call (empty: they can).
std::string tensor_map_obstacle(const DecodeArgs& a) {
  const Problem& pr = a.problem;
  if (a.dtype != DType::bf16) return "they serve bf16 only (fp16 runs on CUDA cores)";
  if (pr.head_dim != 64 && pr.head_dim != 128 && pr.head_dim != 256) return "head_dim must be 64, 128 or 256";
  if (a.paged.page_table != nullptr) return "they need a contiguous cache (a paged cache uses cp.async)";
  if (pr.seqlen_k >= (1LL << 31) || pr.heads_kv >= (1LL << 31) || pr.batch >= (1LL << 31)) {
    return "cache extents must be below 2^31";
  }
  if (pr.batch * pr.seqlen_k * pr.heads_kv * pr.head_dim * 2 >= (1LL << 40)) return "the cache must be below 2^40 bytes";
  if (device_cc_major() < 9) return "they need compute capability 9.0 or newer";
  if (tensor_map_encoder() == nullptr) return "the driver has no cuTensorMapEncodeTiled";
  return {};
}

// The map of a (B, L_max, H_kv, D) cache as a 4-d tensor, innermost first; boxes of 64
// columns x tile_keys keys of one head and batch entry, 128-byte swizzle (the layout
// MmaTraits::chunk_offset reads), keys past L_max read as zeros.
bool encode_cache_map(CUtensorMap* map, const void* base, const Problem& pr, int tile_keys) {
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(pr.head_dim), static_cast<cuuint64_t>(pr.heads_kv),
                              static_cast<cuuint64_t>(pr.seqlen_k), static_cast<cuuint64_t>(pr.batch)};
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(pr.head_dim) * 2,
                                 static_cast<cuuint64_t>(pr.heads_kv * pr.head_dim) * 2,
                                 static_cast<cuuint64_t>(pr.seqlen_k * pr.heads_kv * pr.head_dim) * 2};
  const cuuint32_t box[4] = {64, 1, static_cast<cuuint32_t>(tile_keys), 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  return tensor_map_encoder()(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, const_cast<void*>(base), dims, strides, box,
                              element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace
}  // namespace decode

#ifdef LLA_DECODE_TIMELINE
// Tuning build (timeline.cuh): prints the phase times of the last launch of the
// instrumented kernel, the median and the maximum over its CTAs.
void decode_timeline_report(long long ctas, int num_splits) {
  using decode::kTimelinePoints;
  static unsigned long long h[decode::kTimelineCtas][kTimelinePoints + 3];
  ctas = std::min<long long>(ctas, decode::kTimelineCtas);
  cudaMemcpyFromSymbol(h, decode::g_decode_timeline, sizeof(h));
  unsigned long long t_min = ~0ull, t_max = 0;
  for (long long c = 0; c < ctas; ++c) {
    t_min = std::min(t_min, h[c][kTimelinePoints]);
    t_max = std::max(t_max, h[c][kTimelinePoints + 1]);
  }
  std::vector<double> starts, ends;
  std::vector<std::vector<double>> phase(kTimelinePoints);
  for (long long c = 0; c < ctas; ++c) {
    starts.push_back(double(h[c][kTimelinePoints] - t_min));
    ends.push_back(double(h[c][kTimelinePoints + 1] - t_min));
    for (int i = 1; i < kTimelinePoints; ++i) {
      if (h[c][i] != 0) phase[i].push_back(double(h[c][i] - h[c][0]));
    }
  }
  auto med = [](std::vector<double> v) {
    if (v.empty()) return -1.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto mx = [](const std::vector<double>& v) { return v.empty() ? -1.0 : *std::max_element(v.begin(), v.end()); };
  std::printf("  timeline (%lld CTAs, %d splits): span %.0f ns; CTA start median %.0f max %.0f ns; end median %.0f max %.0f ns\n",
              ctas, num_splits, double(t_max - t_min), med(starts), mx(starts), med(ends), mx(ends));
  std::printf("  cycles since entry (median / max):");
  const char* names[] = {"", "loads issued", "q,r staged", "tile 0 ready", "key loop done", "combined",
                         "merge sync/counter", "end", "barriers init", "q,r loads issued", "planned"};
  for (int i = 1; i < kTimelinePoints; ++i) std::printf(" | %s %.0f / %.0f", names[i], med(phase[i]), mx(phase[i]));
  std::vector<unsigned long long> sms;
  for (long long c = 0; c < ctas; ++c) sms.push_back(h[c][kTimelinePoints + 2]);
  std::sort(sms.begin(), sms.end());
  std::printf("\n  SMs used: %ld\n", static_cast<long>(std::unique(sms.begin(), sms.end()) - sms.begin()));
}
#endif

namespace decode {
// The tensor-core body merges up to kMaxClusterSplits splits in a thread-block cluster
// (distributed shared memory) when the whole grid fits on the device at once: that is
// the latency-bound case (B = 1) the cluster merge is for. A grid of several waves
// merges through global memory in the last CTA of each row group: clusters constrain
// where CTAs may start (measured: B32 L4096 D64, 768 CTAs in clusters of 3, 77 -> 96 us).
bool uses_cluster_merge(const Problem& pr, DType dtype, int splits, int sm_count) {
  if (!uses_mma(dtype, pr.head_dim) || splits <= 1 || splits > kMaxClusterSplits || sm_count <= 0) return false;
  const long long ctas = pr.batch * pr.heads_kv * row_chunks_of(pr) * splits;
  return ctas <= static_cast<long long>(sm_count) * mma_shape(pr.head_dim).ctas_per_sm;
}
}  // namespace decode

int decode_num_splits(const Problem& pr, int sm_count, DType dtype) {
  const long long ctas = pr.batch * pr.heads_kv * decode::row_chunks_of(pr);
  if (ctas <= 0 || sm_count <= 0) return 1;
  if (decode::uses_mma(dtype, pr.head_dim)) {
    // Model: a CTA costs its tiles plus ~2 tiles of pipeline fill and epilogue; CTAs
    // run in waves of (SMs x CTAs per SM). A tile takes a CTA the longer of its latency
    // (~1 us with two tiles in flight) and its share of the device's bandwidth with c
    // CTAs streaming at once (c x tile bytes / 4.4 TB/s): more splits only help while
    // the concurrent CTAs are too few to fill the bandwidth. Both constants are the
    // H200's (measured 2026-12-02: B1 L16384 with 16 splits, 128 CTAs, ~1.1 us a tile;
    // 256 CTAs stream 4.44 TB/s; at B32 L4096 D64 one split took 62.7 us where the
    // wave model alone chose 3, 73.4 us). Take the split count with the least modelled
    // time (ties: fewer splits, less merge work).
    const decode::MmaShape shape = decode::mma_shape(pr.head_dim);
    constexpr double kTileLatencyNs = 1000.0, kBytesPerNs = 4400.0;
    const long long slots = static_cast<long long>(sm_count) * shape.ctas_per_sm;
    const long long tile_keys = shape.tile_keys;
    const long long tiles = std::max<long long>(1, (pr.seqlen_k + tile_keys - 1) / tile_keys);
    // Where 16 splits still fit in one wave, at most 16: those merge in a cluster
    // (measured on an H200, 2026-12-02: B1 L4096 16 splits 11.1 us against 11.6 for 32
    // through the last CTA; with 4 rows a CTA, GQA 32:8 at L16384, 26.9 against 32.3 us:
    // the last CTA's merge grows with rows x splits; equal at L16384 with one row).
    const long long max_splits = ctas * decode::kMaxClusterSplits <= slots ? decode::kMaxClusterSplits : 64;
    long long best = 1;
    double best_cost = 0;
    for (long long s = 1; s <= std::min<long long>(max_splits, tiles); ++s) {
      const long long waves = (ctas * s + slots - 1) / slots;
      const long long concurrent = std::min(ctas * s, slots);
      const double tile_ns = std::max(kTileLatencyNs, static_cast<double>(concurrent * shape.tile_bytes) / kBytesPerNs);
      const double cost = static_cast<double>(waves * ((tiles + s - 1) / s + 2)) * tile_ns;
      if (s == 1 || cost < best_cost) best = s, best_cost = cost;
    }
    return static_cast<int>(best);
  }
  // Enough CTAs for two waves; each split keeps at least 256 keys of work.
  const long long want = (2LL * sm_count + ctas - 1) / ctas;
  const long long by_length = std::max<long long>(1, pr.seqlen_k / 256);
  return static_cast<int>(std::clamp<long long>(std::min(want, by_length), 1, 64));
}

size_t decode_workspace_bytes(const Problem& pr, int num_splits) {
  if (num_splits <= 1) return 0;
  const long long out_rows = pr.batch * pr.seqlen_q * pr.heads_q;
  const long long counters = pr.batch * pr.heads_kv * decode::row_chunks_of(pr);
  return static_cast<size_t>(decode::merge_counters_offset_floats(out_rows, num_splits,
                                                                 static_cast<int>(pr.head_dim))) * sizeof(float) +
         static_cast<size_t>(counters) * sizeof(int32_t);
}

DecodeStatus parallax_decode(const DecodeArgs& a, void* stream, int sm_count) {
  const Problem& pr = a.problem;
  auto refuse = [](const std::string& why) { return DecodeStatus{false, "parallax_decode: " + why}; };
  if (auto e = pr.check()) return refuse(*e);
  if (pr.variant != Variant::parallax) return refuse("problem.variant must be parallax");
  if (!pr.causal) return refuse("decode is end-aligned causal attention: problem.causal must be true");
  if (pr.is_varlen()) return refuse("varlen (cu_seqlens) is not supported by the decode kernel");
  if (pr.head_dim > 256) {
    return refuse("head_dim " + std::to_string(pr.head_dim) + " is not supported (any head_dim <= 256 is)");
  }
  if (!a.q || !a.r || !a.k || !a.v || !a.o) return refuse("q, r, k, v and o must all be set");
  for (const void* ptr : {a.q, a.r, a.k, a.v, static_cast<const void*>(a.o)}) {
    // 16-byte vector loads and cp.async of whole rows (cudaMalloc gives 256-byte alignment).
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return refuse("q, r, k, v and o must be 16-byte aligned");
  }
  if (a.paged.page_table != nullptr) {
    if (a.paged.page_size < 1 || a.paged.max_pages_per_seq < 1 || a.paged.num_pages < 1) {
      return refuse("paged cache needs page_size, max_pages_per_seq and num_pages >= 1");
    }
    if (pr.seqlen_k > a.paged.page_size * a.paged.max_pages_per_seq) {
      return refuse("seqlen_k exceeds max_pages_per_seq * page_size");
    }
  }
  const int splits = a.num_splits > 0 ? a.num_splits : decode_num_splits(pr, sm_count, a.dtype);
  if (splits > decode::kMaxSplits) {
    return refuse("num_splits = " + std::to_string(splits) + " is more than the " +
                  std::to_string(decode::kMaxSplits) + " the merge supports");
  }
  if (splits > 1 && (a.workspace == nullptr || a.workspace_bytes < decode_workspace_bytes(pr, splits))) {
    return refuse("num_splits = " + std::to_string(splits) + " needs a workspace of " +
                  std::to_string(decode_workspace_bytes(pr, splits)) + " bytes");
  }
  const long long row_chunks = decode::row_chunks_of(pr);
  if (pr.heads_kv * row_chunks > 65535 || pr.batch > 65535) return refuse("grid too large (batch or heads)");
  decode::Params p{};
  p.q = a.q;
  p.r = a.r;
  p.k = a.k;
  p.v = a.v;
  p.o = a.o;
  p.lse = a.lse;
  p.partials = static_cast<float*>(a.workspace);
  p.seqused_k = a.seqused_k;
  p.cache_start = a.cache_start;
  p.page_table = a.paged.page_table;
  p.max_pages_per_seq = a.paged.max_pages_per_seq;
  p.page_size = a.paged.page_size > 0 ? a.paged.page_size : 1;
  p.num_pages = a.paged.num_pages;
  p.batch = pr.batch;
  p.seqlen_q = pr.seqlen_q;
  p.seqlen_k = pr.seqlen_k;
  p.heads_q = pr.heads_q;
  p.heads_kv = pr.heads_kv;
  p.head_dim = pr.head_dim;
  p.group = pr.group_size();
  p.rows = p.group * pr.seqlen_q;
  p.row_chunks = row_chunks;
  p.scale = static_cast<float>(pr.softmax_scale());
  p.window = pr.window;
  p.num_splits = splits;
  // Tensor-map copies (measured on an H200 with a copy-only probe, benchmarks/
  // probe_kv_stream.cu: they stream a B32 L16384 cache at the device's read ceiling,
  // 4.56 TB/s, where the 16-byte cp.async pattern peaks at 4.37).
  const std::string obstacle = a.copy == DecodeCopy::cp_async ? std::string("not asked for")
                                                                : decode::tensor_map_obstacle(a);
  if (a.copy == DecodeCopy::tensor_map && !obstacle.empty()) return refuse("copy = tensor_map: " + obstacle);
  if (pr.batch == 0 || pr.seqlen_q == 0) return DecodeStatus{};
  if (obstacle.empty() && pr.seqlen_k > 0) {
    {
      const int tile_keys = decode::mma_shape(pr.head_dim).tile_keys;
      if (!decode::encode_cache_map(&p.k_map, a.k, pr, tile_keys) ||
          !decode::encode_cache_map(&p.v_map, a.v, pr, tile_keys)) {
        return refuse("cuTensorMapEncodeTiled refused the cache layout");
      }
      p.tensor_maps = 1;
    }
  }
  auto s = static_cast<cudaStream_t>(stream);
  const int rows = decode::rows_per_cta(pr);
  const bool cluster_merge = decode::uses_cluster_merge(pr, a.dtype, splits, sm_count);
  if (a.dtype == DType::bf16) {
    decode::dispatch_rows<__nv_bfloat16>(p, rows, cluster_merge, s);
  } else {
    decode::dispatch_rows<__half>(p, rows, false, s);
  }
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return refuse(std::string("launch failed: ") + cudaGetErrorString(e));
  return DecodeStatus{};
}

}  // namespace lla::gpu
