// A tuning probe, not a benchmark of the project's kernels: how fast can a decode CTA
// stream its (batch, KV head) slice of a contiguous (B, L, H_kv, D) bf16 cache, with
// nothing but the copies, a read of every tile from shared memory and an optional
// dependent FMA chain standing in for the math? It answers whether the decode
// kernel's shortfall against cuDNN at large batch (docs/gpu.md) is the copy pipeline
// (tile size, stages, CTAs per SM, cp.async against a tensor-map TMA copy, the L2
// prefetch hint, the order of CTAs) or the work between the copies.
//
//   probe_kv_stream [--reps N] [--clusters]
//       prints how many thread-block clusters of 8 and 16 decode-sized CTAs fit at once,
//       then (without --clusters) one line per variant: median / min / max µs and TB/s
//       of K + V, and the spread of CTA end times
//
// Shape: B = 32, L = 16384, H_kv = 8, D = 128 (the largest decode shape of the benchmark).

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../gpu/src/common/mma.cuh"
#include "gpu_timing.cuh"  // CHECK

namespace {

constexpr int kB = 32, kL = 16384, kH = 8, kD = 128;
constexpr int kRowBytes = kD * 2;

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned smid() {
  unsigned s;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
  return s;
}

// Which (batch, head, key range) a CTA streams. map 0: heads of one batch entry are
// consecutive CTAs (the decode kernel's order); map 1: batch entries are. map 2: the
// keys of every (batch, head) in `splits` parts of falling size (3/4 of the tiles,
// then 1/8, 1/16, ..., the last two equal), part-major in the grid: the big parts of
// every slice start first and the small ones fill the slots the fastest CTAs free,
// which evens out the CTAs' end times if the hardware hands out CTAs in grid order.
struct Slice {
  int b, g;
  long long k0;
  int tiles;
};
__device__ __forceinline__ Slice slice_of(int map, int splits, int tile_keys) {
  Slice s;
  if (map == 2) {
    const int part = blockIdx.x / (kB * kH), rg = blockIdx.x % (kB * kH);
    s.g = rg % kH;
    s.b = rg / kH;
    const int total = kL / tile_keys;
    // Tiles before part k: sizes total >> (j + 2) for parts j = 1 .. splits - 2, the last
    // part repeating the one before it, part 0 the rest.
    auto part_size = [&](int j) { return total >> (j == splits - 1 ? j + 1 : j + 2); };  // j >= 1
    int rest = 0;
    for (int j = 1; j < splits; ++j) rest += part_size(j);
    int begin = 0, size = total - rest;
    if (part > 0) {
      begin = total - rest;
      for (int j = 1; j < part; ++j) begin += part_size(j);
      size = part_size(part);
    }
    s.k0 = static_cast<long long>(begin) * tile_keys;
    s.tiles = size;
    return s;
  }
  const int split = blockIdx.x % splits, rg = blockIdx.x / splits;
  s.g = map == 0 ? rg % kH : rg / kB;
  s.b = map == 0 ? rg / kH : rg % kB;
  const long long keys = kL / splits;
  s.k0 = split * keys;
  s.tiles = static_cast<int>(keys / tile_keys);
  return s;
}

__device__ __forceinline__ void record(unsigned long long* rec, unsigned long long t0) {
  if (threadIdx.x == 0) {
    rec[blockIdx.x * 3 + 0] = t0;
    rec[blockIdx.x * 3 + 1] = global_ns();
    rec[blockIdx.x * 3 + 2] = smid();
  }
}

// Reads every 16-byte chunk of the warp's keys of a tile by ldmatrix (as the decode
// kernel's K and V fragment loads do) and folds them into acc.
template <int kWarps, int kTileKeys, bool kSwizzled>
__device__ __forceinline__ void consume(const unsigned char* tile, int pitch, unsigned& acc) {
  constexpr int kKeysPerWarp = kTileKeys / kWarps;
  constexpr int kRows = kKeysPerWarp < 16 ? kKeysPerWarp : 16;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int kb = 0; kb < (kKeysPerWarp + 15) / 16; ++kb) {
    const int row = warp * kKeysPerWarp + kb * 16 + lane % kRows;
#pragma unroll
    for (int c = 0; c < kRowBytes / 32; ++c) {
      int chunk = 2 * c + lane / 16;
      int off;
      if constexpr (kSwizzled) {
        // Two 128-byte column boxes of kTileKeys rows each, 16-byte chunks XOR-swizzled by row % 8.
        const int box = chunk / 8, in = chunk % 8;
        off = box * kTileKeys * 128 + row * 128 + ((in ^ (row % 8)) * 16);
      } else {
        off = row * pitch + chunk * 16;
      }
      uint32_t r[4];
      lla::gpu::ptx::ldmatrix_x4(r, tile + off);
      acc ^= r[0] ^ r[1] ^ r[2] ^ r[3];
    }
  }
}

__device__ __forceinline__ float busy(float x, int delay) {
  for (int i = 0; i < delay; ++i) x = fmaf(x, 1.0001f, 0.5f);
  return x;
}

template <int kWarps, int kTileKeys, int kStages, int kPrefetch>
__global__ void __launch_bounds__(kWarps * 32) stream_cp_async(const __nv_bfloat16* k, const __nv_bfloat16* v,
                                                               int map, int splits, int delay, unsigned* sink,
                                                               unsigned long long* rec) {
  extern __shared__ __align__(128) unsigned char smem[];
  const unsigned long long t0 = global_ns();
  constexpr int kThreads = kWarps * 32, kPitch = kRowBytes + 16, kTileBytes = kTileKeys * kPitch;
  constexpr int kChunks = kRowBytes / 16, kKeyStep = kThreads / kChunks;
  const Slice s = slice_of(map, splits, kTileKeys);
  unsigned char* ks = smem;
  unsigned char* vs = smem + kStages * kTileBytes;
  const int chunk = threadIdx.x % kChunks, key = threadIdx.x / kChunks;
  const long long base = (static_cast<long long>(s.b) * kL * kH + s.g) * kD + chunk * 8;
  auto load = [&](int t, int st) {
#pragma unroll
    for (int i = 0; i < kTileKeys / kKeyStep; ++i) {
      const int kk = key + i * kKeyStep;
      const long long off = base + (s.k0 + static_cast<long long>(t) * kTileKeys + kk) * (kH * kD);
      lla::gpu::ptx::cp_async_16_prefetch<kPrefetch>(ks + st * kTileBytes + kk * kPitch + chunk * 16, k + off, true);
      lla::gpu::ptx::cp_async_16_prefetch<kPrefetch>(vs + st * kTileBytes + kk * kPitch + chunk * 16, v + off, true);
    }
  };
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < s.tiles) load(st, st);
    lla::gpu::ptx::cp_async_commit();
  }
  unsigned acc = 0;
  float x = static_cast<float>(threadIdx.x);
  for (int t = 0; t < s.tiles; ++t) {
    lla::gpu::ptx::cp_async_wait<kStages - 2>();
    __syncthreads();
    if (t + kStages - 1 < s.tiles) load(t + kStages - 1, (t + kStages - 1) % kStages);
    lla::gpu::ptx::cp_async_commit();
    const int st = t % kStages;
    consume<kWarps, kTileKeys, false>(ks + st * kTileBytes, kPitch, acc);
    consume<kWarps, kTileKeys, false>(vs + st * kTileBytes, kPitch, acc);
    x = busy(x, delay);
  }
  sink[blockIdx.x * kThreads + threadIdx.x] = acc ^ __float_as_uint(x);
  record(rec, t0);
}

// The same stream by tensor-map copies: per tile and tensor, two boxes of 64 keys x
// 128 bytes (the two column halves, 128-byte swizzle), one thread issues them, an
// mbarrier per stage counts the bytes.
__device__ __forceinline__ unsigned smem_u32(const void* p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }

template <int kStages>
__global__ void __launch_bounds__(128) stream_tma(const __grid_constant__ CUtensorMap kmap,
                                                  const __grid_constant__ CUtensorMap vmap, int map, int splits,
                                                  int delay, unsigned* sink, unsigned long long* rec) {
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) unsigned long long full[kStages];
  const unsigned long long t0 = global_ns();
  constexpr int kTileKeys = 64, kBoxBytes = kTileKeys * 128, kTileBytes = 2 * kBoxBytes;
  unsigned char* smem = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  unsigned char* ks = smem;
  unsigned char* vs = smem + kStages * kTileBytes;
  const Slice s = slice_of(map, splits, kTileKeys);
  if (threadIdx.x == 0) {
    for (int i = 0; i < kStages; ++i) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(&full[i])));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  auto issue = [&](int t, int st) {
    const unsigned bar = smem_u32(&full[st]);
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(2 * kTileBytes) : "memory");
    const int j = static_cast<int>(s.k0) + t * kTileKeys;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      asm volatile(
          "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];"
          ::"r"(smem_u32(ks + st * kTileBytes + half * kBoxBytes)), "l"(&kmap), "r"(half * 64), "r"(s.g), "r"(j),
          "r"(s.b), "r"(bar)
          : "memory");
      asm volatile(
          "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];"
          ::"r"(smem_u32(vs + st * kTileBytes + half * kBoxBytes)), "l"(&vmap), "r"(half * 64), "r"(s.g), "r"(j),
          "r"(s.b), "r"(bar)
          : "memory");
    }
  };
  if (threadIdx.x == 0) {
    for (int st = 0; st < kStages - 1 && st < s.tiles; ++st) issue(st, st);
  }
  unsigned acc = 0;
  float x = static_cast<float>(threadIdx.x);
  for (int t = 0; t < s.tiles; ++t) {
    const int st = t % kStages;
    const unsigned bar = smem_u32(&full[st]), parity = (t / kStages) & 1;
    asm volatile(
        "{\n .reg .pred p;\n WAIT_%=:\n"
        " mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
        " @!p bra WAIT_%=;\n}\n" ::"r"(bar),
        "r"(parity)
        : "memory");
    __syncthreads();  // every warp is done with the stage refilled below
    if (threadIdx.x == 0 && t + kStages - 1 < s.tiles) issue(t + kStages - 1, (t + kStages - 1) % kStages);
    consume<4, kTileKeys, true>(ks + st * kTileBytes, 0, acc);
    consume<4, kTileKeys, true>(vs + st * kTileBytes, 0, acc);
    x = busy(x, delay);
  }
  sink[blockIdx.x * 128 + threadIdx.x] = acc ^ __float_as_uint(x);
  record(rec, t0);
}

// Four 16-byte non-caching loads, stride apart from index i, folded into acc (an index
// past n re-reads element 0).
__device__ __forceinline__ void xor_four(const uint4* a, long long i, long long stride, long long n, unsigned& acc) {
  uint4 r[4];
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const long long idx = i + u * stride;
    const uint4* src = idx < n ? a + idx : a;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[u].x), "=r"(r[u].y), "=r"(r[u].z), "=r"(r[u].w)
                 : "l"(src));
  }
#pragma unroll
  for (int u = 0; u < 4; ++u) acc ^= r[u].x ^ r[u].y ^ r[u].z ^ r[u].w;
}

// The device's read ceiling: every byte of K and V once, 16-byte non-caching loads,
// four in flight per thread and tensor, a grid of many CTAs.
__global__ void __launch_bounds__(256) read_ceiling(const uint4* a, const uint4* b, long long n, unsigned* sink) {
  unsigned acc = 0;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += 4 * stride) {
    xor_four(a, i, stride, n, acc);
    xor_four(b, i, stride, n, acc);
  }
  sink[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

// Stands in for a decode CTA of a given shared-memory size in the cluster-occupancy query.
__global__ void cluster_stand_in(unsigned* sink) {
  extern __shared__ unsigned char smem_c[];
  if (threadIdx.x == 0) sink[blockIdx.x] = smem_c[0];
}

struct Result {
  double med, lo, hi;
  double end_med, end_max;  // CTA end times from the earliest CTA start, µs
  std::string slow_sms;
};

template <class Launch>
Result time_it(Launch&& launch, int reps, const unsigned long long* d_rec, int ctas) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) launch();
  CHECK(cudaGetLastError());
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CHECK(cudaEventRecord(a));
    launch();
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1e3);
  }
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  Result r{t[t.size() / 2], t.front(), t.back(), 0, 0, ""};
  if (d_rec != nullptr && ctas > 0) {
    std::vector<unsigned long long> h(static_cast<size_t>(ctas) * 3);
    CHECK(cudaMemcpy(h.data(), d_rec, h.size() * 8, cudaMemcpyDeviceToHost));
    unsigned long long start = ~0ull;
    for (int c = 0; c < ctas; ++c) start = std::min(start, h[c * 3]);
    std::vector<std::pair<double, int>> ends;
    for (int c = 0; c < ctas; ++c) ends.push_back({(h[c * 3 + 1] - start) * 1e-3, static_cast<int>(h[c * 3 + 2])});
    std::sort(ends.begin(), ends.end());
    r.end_med = ends[ends.size() / 2].first;
    r.end_max = ends.back().first;
    for (int i = 0; i < 6 && i < ctas; ++i) r.slow_sms += std::to_string(ends[ends.size() - 1 - i].second) + " ";
    r.slow_sms += "| fast: ";
    for (int i = 0; i < 6 && i < ctas; ++i) r.slow_sms += std::to_string(ends[i].second) + " ";
  }
  return r;
}

void print(const char* name, const Result& r, double bytes) {
  std::printf("%-44s %8.1f %8.1f %8.1f  %5.2f TB/s", name, r.med, r.lo, r.hi, bytes / (r.med * 1e-6) / 1e12);
  if (r.end_max > 0) std::printf("   CTA end median %6.1f max %6.1f  slow SMs %s", r.end_med, r.end_max, r.slow_sms.c_str());
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  bool clusters_only = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--clusters")) clusters_only = true;
  }
  const size_t elems = size_t(kB) * kL * kH * kD, bytes = elems * 2;
  __nv_bfloat16 *k = nullptr, *v = nullptr;
  CHECK(cudaMalloc(&k, bytes));
  CHECK(cudaMalloc(&v, bytes));
  CHECK(cudaMemset(k, 0x3c, bytes));
  CHECK(cudaMemset(v, 0x3d, bytes));
  unsigned* sink = nullptr;
  unsigned long long* rec = nullptr;
  CHECK(cudaMalloc(&sink, size_t(1) << 24));
  CHECK(cudaMalloc(&rec, size_t(1) << 20));
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const double total = 2.0 * bytes;
  std::printf("probe_kv_stream: B%d L%d H%d D%d, K + V = %.3f GB, %d SMs; µs median / min / max of %d\n", kB, kL, kH,
              kD, total / 1e9, sms, reps);

  // How many clusters of 8 and 16 CTAs of 128 threads fit at once, at the shared memory of
  // the decode kernel's stages: 3 (two CTAs per SM) and 6 (one per SM). Sizes above 8
  // need the non-portable opt-in; a 16-CTA cluster of one-per-SM CTAs needs a GPC with
  // 16 free SMs.
  CHECK(cudaFuncSetAttribute(cluster_stand_in, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  for (int stages : {3, 4, 6}) {
    const int smem = stages * 32768 + 1024 + 4352;
    CHECK(cudaFuncSetAttribute(cluster_stand_in, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    for (int size : {8, 16}) {
      cudaLaunchConfig_t config{};
      config.gridDim = dim3(size * 64);
      config.blockDim = dim3(128);
      config.dynamicSmemBytes = smem;
      cudaLaunchAttribute attribute{};
      attribute.id = cudaLaunchAttributeClusterDimension;
      attribute.val.clusterDim.x = size;
      attribute.val.clusterDim.y = attribute.val.clusterDim.z = 1;
      config.attrs = &attribute;
      config.numAttrs = 1;
      int clusters = -1;
      const cudaError_t e = cudaOccupancyMaxActiveClusters(&clusters, cluster_stand_in, &config);
      std::printf("clusters of %2d CTAs with %3d KB shared memory each: %d fit at once%s\n", size, smem / 1024, clusters,
                  e == cudaSuccess ? "" : cudaGetErrorString(e));
      (void)cudaGetLastError();
    }
  }
  if (clusters_only) return 0;
  {
    const int grid = sms * 8;
    auto r = time_it([&] { read_ceiling<<<grid, 256>>>(reinterpret_cast<const uint4*>(k), reinterpret_cast<const uint4*>(v),
                                                    static_cast<long long>(bytes / 16), sink); },
                     reps, nullptr, 0);
    print("read ceiling (ld.global.nc, 8 CTAs/SM)", r, total);
  }

  auto run_cp = [&](const char* name, auto kernel, int threads, size_t smem, int map, int splits, int delay) {
    CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    const int grid = kB * kH * splits;
    auto r = time_it([&] { kernel<<<grid, threads, smem>>>(k, v, map, splits, delay, sink, rec); }, reps, rec, grid);
    print(name, r, total);
  };
  // The decode kernel's configuration: 4 warps, 64-key tiles, 3 stages, 109 KB of shared memory (2 CTAs/SM).
  constexpr size_t kDecodeSmem = 16 * 272 + 2 * 3 * 64 * 272;
  run_cp("cp.async 4w t64 s3 pf128 (decode)", stream_cp_async<4, 64, 3, 128>, 128, kDecodeSmem, 0, 1, 0);
  run_cp("  + delay 100", stream_cp_async<4, 64, 3, 128>, 128, kDecodeSmem, 0, 1, 100);
  run_cp("  + delay 300", stream_cp_async<4, 64, 3, 128>, 128, kDecodeSmem, 0, 1, 300);
  run_cp("  prefetch none", stream_cp_async<4, 64, 3, 0>, 128, kDecodeSmem, 0, 1, 0);
  run_cp("  map 1 (batch fastest)", stream_cp_async<4, 64, 3, 128>, 128, kDecodeSmem, 1, 1, 0);
  run_cp("  splits 2", stream_cp_async<4, 64, 3, 128>, 128, kDecodeSmem, 0, 2, 0);
  run_cp("cp.async 4w t32 s6 (same smem)", stream_cp_async<4, 32, 6, 128>, 128, kDecodeSmem, 0, 1, 0);
  run_cp("cp.async 4w t64 s2 (3 CTAs/SM)", stream_cp_async<4, 64, 2, 128>, 128, 2 * 2 * 64 * 272 + 4352, 0, 1, 0);
  run_cp("cp.async 8w t64 s6 (1 CTA/SM)", stream_cp_async<8, 64, 6, 128>, 256, 2 * 6 * 64 * 272, 0, 1, 0);
  run_cp("cp.async 8w t128 s3 (1 CTA/SM)", stream_cp_async<8, 128, 3, 128>, 256, 2 * 3 * 128 * 272, 0, 1, 0);
  run_cp("cp.async 4w t64 s4 splits 2 (1 CTA/SM..)", stream_cp_async<4, 64, 4, 128>, 128, 2 * 4 * 64 * 272, 0, 2, 0);

  // Tensor-map copies.
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult q{};
  CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q));
  if (fn == nullptr) {
    std::printf("cuTensorMapEncodeTiled not available\n");
    return 0;
  }
  auto encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  auto make_map = [&](void* base, CUtensorMapL2promotion promo) {
    CUtensorMap m;
    cuuint64_t dims[4] = {kD, kH, kL, kB};
    cuuint64_t strides[3] = {kD * 2, cuuint64_t(kH) * kD * 2, cuuint64_t(kL) * kH * kD * 2};
    cuuint32_t box[4] = {64, 1, 64, 1}, es[4] = {1, 1, 1, 1};
    CUresult res = encode(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, base, dims, strides, box, es,
                          CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, promo,
                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (res != CUDA_SUCCESS) {
      std::printf("cuTensorMapEncodeTiled failed: %d\n", static_cast<int>(res));
      std::exit(1);
    }
    return m;
  };
  auto run_tma = [&](const char* name, auto kernel, int stages, CUtensorMapL2promotion promo, int map, int splits,
                     int delay) {
    const CUtensorMap km = make_map(k, promo), vm = make_map(v, promo);
    const size_t smem = size_t(stages) * 2 * 16384 + 1024;
    CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    const int grid = kB * kH * splits;
    auto r = time_it([&] { kernel<<<grid, 128, smem>>>(km, vm, map, splits, delay, sink, rec); }, reps, rec, grid);
    print(name, r, total);
  };
  run_tma("tma 4w t64 s3 L2:128 (2 CTAs/SM)", stream_tma<3>, 3, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 0, 1, 0);
  run_tma("  + delay 300", stream_tma<3>, 3, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 0, 1, 300);
  run_tma("  L2:256", stream_tma<3>, 3, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, 0, 1, 0);
  run_tma("  parts 3/4, 1/8, 1/8 (part-major)", stream_tma<3>, 3, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 2, 3, 0);
  run_tma("  parts 3/4, 1/8, 1/16, 1/16", stream_tma<3>, 3, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 2, 4, 0);
  run_tma("  parts 3/4, 1/8, 1/16, 1/32, 1/32", stream_tma<3>, 3, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 2, 5, 0);
  run_tma("  + delay 300, 4 parts", stream_tma<3>, 3, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 2, 4, 300);
  run_tma("  + delay 300, 1 part", stream_tma<3>, 3, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 0, 1, 300);
  run_tma("tma 4w t64 s4 (1 CTA/SM by smem)", stream_tma<4>, 4, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 0, 1, 0);
  run_tma("tma 4w t64 s2 (3 CTAs/SM)", stream_tma<2>, 2, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 0, 1, 0);
  run_tma("tma 4w t64 s2 splits 2 (3 CTAs/SM)", stream_tma<2>, 2, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 0, 2, 0);
  CHECK(cudaDeviceSynchronize());
  return 0;
}
