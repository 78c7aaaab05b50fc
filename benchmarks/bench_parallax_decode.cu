// Parallax decode throughput on the GPU: CUDA events around a captured graph of
// many launches, median and spread over replays, achieved TB/s and % of a
// device-to-device copy measured in the same binary; warm L2 (same buffers) and
// cold L2 (rotating copies of the cache larger than 3x the L2).
//   usage: bench_parallax_decode [--json FILE] [--quick] [--only SHAPE] [--splits N]
//                                [--copy automatic|cp_async|tensor_map]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gpu_timing.cuh"
#include "lla/gpu/parallax_decode.hpp"

namespace {

using namespace lla::bench;

struct Shape {
  const char* name;
  long long batch, seqlen, heads_q, heads_kv, head_dim;
};

// A streaming copy kernel (16-byte loads and stores, grid-stride): the memory
// ceiling measured in the same binary, in bytes read + written per second. (A
// cudaMemcpyAsync node in a graph runs on the copy engines and reaches less.)
__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) dst[i] = src[i];
}

double copy_bandwidth(cudaStream_t s, int sms) {
  const size_t bytes = size_t(2) << 30;
  uint4 *src, *dst;
  CHECK(cudaMalloc(&src, bytes));
  CHECK(cudaMalloc(&dst, bytes));
  CHECK(cudaMemsetAsync(src, 1, bytes, s));
  const size_t n = bytes / sizeof(uint4);
  const Timing t = time_graph([&](int) { copy_kernel<<<sms * 8, 512, 0, s>>>(src, dst, n); }, 5, 10, s);
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * bytes / (t.median_us * 1e-6);
}

}  // namespace

#ifdef LLA_DECODE_TIMELINE
namespace lla::gpu {
void decode_timeline_report(long long ctas, int num_splits);
}
#endif

int main(int argc, char** argv) {
  std::string json_path;
  bool quick = false;
  std::string only;       // run one shape (by name), e.g. under a profiler
  int forced_splits = 0;  // > 0: override the split heuristic (tuning)
  lla::gpu::DecodeCopy copy_engine = lla::gpu::DecodeCopy::automatic;  // how K/V tiles reach shared memory
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--quick") quick = true;
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--splits" && i + 1 < argc) forced_splits = std::atoi(argv[++i]);
    else if (a == "--copy" && i + 1 < argc && std::string(argv[i + 1]) == "cp_async") copy_engine = lla::gpu::DecodeCopy::cp_async, ++i;
    else if (a == "--copy" && i + 1 < argc && std::string(argv[i + 1]) == "tensor_map") copy_engine = lla::gpu::DecodeCopy::tensor_map, ++i;
    else if (a == "--copy" && i + 1 < argc && std::string(argv[i + 1]) == "automatic") ++i;
    else {
      std::fprintf(stderr, "usage: bench_parallax_decode [--json FILE] [--quick] [--only SHAPE] [--splits N] "
                           "[--copy automatic|cp_async|tensor_map]\n");
      return 2;
    }
  }
  int dev = 0, sms = 0, l2 = 0;
  CHECK(cudaGetDevice(&dev));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, dev));
  cudaStream_t s;
  CHECK(cudaStreamCreate(&s));
  const double copy_bw = copy_bandwidth(s, sms);
  std::vector<Shape> shapes{
      {"B1_L512_H8_D128", 1, 512, 8, 8, 128},       {"B1_L1024_H8_D128", 1, 1024, 8, 8, 128},
      {"B1_L4096_H8_D128", 1, 4096, 8, 8, 128},     {"B1_L16384_H8_D128", 1, 16384, 8, 8, 128},
      {"B32_L512_H8_D128", 32, 512, 8, 8, 128},     {"B32_L1024_H8_D128", 32, 1024, 8, 8, 128},
      {"B32_L4096_H8_D128", 32, 4096, 8, 8, 128},   {"B32_L16384_H8_D128", 32, 16384, 8, 8, 128},
      {"B1_L16384_GQA32to8_D128", 1, 16384, 32, 8, 128}, {"B32_L4096_GQA32to8_D128", 32, 4096, 32, 8, 128},
      {"B32_L4096_H8_D64", 32, 4096, 8, 8, 64},     {"B32_L4096_H8_D256", 32, 4096, 8, 8, 256},
  };
  if (quick) shapes.resize(2);
  if (!only.empty()) {
    std::erase_if(shapes, [&](const Shape& sh) { return only != sh.name; });
    if (shapes.empty()) {
      std::fprintf(stderr, "bench_parallax_decode: no shape named '%s'\n", only.c_str());
      return 2;
    }
  }
  FILE* js = json_path.empty() ? nullptr : std::fopen(json_path.c_str(), "w");
  if (js) std::fprintf(js, "{\"device\": \"%s\", \"sm_count\": %d, \"copy_bandwidth_TBps\": %.4f, \"results\": [", prop.name, sms, copy_bw / 1e12);
  std::printf("device %s, %d SMs, L2 %d MB, copy-kernel bandwidth %.2f TB/s (read + write)\n\n", prop.name, sms, l2 >> 20,
              copy_bw / 1e12);
  std::printf("%-26s %6s %10s %10s %10s %8s %7s %10s %8s\n", "shape", "splits", "warm us", "min us", "max us",
              "TB/s", "% copy", "cold us", "TB/s");
  for (size_t si = 0; si < shapes.size(); ++si) {
    const Shape& sh = shapes[si];
    lla::Problem p;
    p.variant = lla::Variant::parallax;
    p.batch = sh.batch;
    p.seqlen_q = 1;
    p.seqlen_k = sh.seqlen;
    p.heads_q = sh.heads_q;
    p.heads_kv = sh.heads_kv;
    p.head_dim = sh.head_dim;
    const size_t q_elems = size_t(p.q_elements()), kv_elems = size_t(p.kv_elements());
    const double kv_bytes = 2.0 * kv_elems * 2;  // K and V, bf16
    const int copies = static_cast<int>(std::min<double>(64, std::max(1.0, std::ceil(3.0 * l2 / kv_bytes))));
    std::vector<__nv_bfloat16*> k(copies), v(copies);
    __nv_bfloat16 *q, *r, *o;
    CHECK(cudaMalloc(&q, q_elems * 2));
    CHECK(cudaMalloc(&r, q_elems * 2));
    CHECK(cudaMalloc(&o, q_elems * 2));
    fill_bf16<<<256, 256, 0, s>>>(q, q_elems, 1, 1.f);
    fill_bf16<<<256, 256, 0, s>>>(r, q_elems, 2, 0.1f);
    for (int c = 0; c < copies; ++c) {
      CHECK(cudaMalloc(&k[c], kv_elems * 2));
      CHECK(cudaMalloc(&v[c], kv_elems * 2));
      fill_bf16<<<1024, 256, 0, s>>>(k[c], kv_elems, 3 + c, 1.f);
      fill_bf16<<<1024, 256, 0, s>>>(v[c], kv_elems, 100 + c, 1.f);
    }
    const int splits = forced_splits > 0 ? forced_splits : lla::gpu::decode_num_splits(p, sms);
    void* ws = nullptr;
    const size_t ws_bytes = lla::gpu::decode_workspace_bytes(p, splits);
    if (ws_bytes) {
      CHECK(cudaMalloc(&ws, ws_bytes));
      CHECK(cudaMemset(ws, 0, ws_bytes));  // once: the split counters start at zero
    }
    auto enqueue = [&](int copy) {
      lla::gpu::DecodeArgs a;
      a.problem = p;
      a.q = q;
      a.r = r;
      a.k = k[copy];
      a.v = v[copy];
      a.o = o;
      a.num_splits = splits;
      a.copy = copy_engine;
      a.workspace = ws;
      a.workspace_bytes = ws_bytes;
      const auto st = lla::gpu::parallax_decode(a, s, sms);
      if (!st.ok) {
        std::fprintf(stderr, "%s\n", st.message.c_str());
        std::exit(2);
      }
    };
    const int launches = 20, replays = quick ? 5 : 30;
    const Timing warm = time_graph([&](int) { enqueue(0); }, launches, replays, s);
    const Timing cold = time_graph([&](int i) { enqueue(i % copies); }, std::max(launches, copies), replays, s);
    const double tbps = kv_bytes / (warm.median_us * 1e-6) / 1e12, cold_tbps = kv_bytes / (cold.median_us * 1e-6) / 1e12;
    std::printf("%-26s %6d %10.2f %10.2f %10.2f %8.2f %7.1f %10.2f %8.2f\n", sh.name, splits, warm.median_us,
                warm.min_us, warm.max_us, tbps, 100.0 * tbps * 1e12 / copy_bw, cold.median_us, cold_tbps);
    if (js) {
      std::fprintf(js,
                   "%s{\"shape\": \"%s\", \"batch\": %lld, \"seqlen\": %lld, \"heads_q\": %lld, \"heads_kv\": %lld, "
                   "\"head_dim\": %lld, \"splits\": %d, \"warm_median_us\": %.3f, \"warm_min_us\": %.3f, "
                   "\"warm_max_us\": %.3f, \"cold_median_us\": %.3f, \"kv_bytes\": %.0f, \"warm_TBps\": %.4f, "
                   "\"cold_TBps\": %.4f}",
                   si ? ", " : "", sh.name, sh.batch, sh.seqlen, sh.heads_q, sh.heads_kv, sh.head_dim, splits,
                   warm.median_us, warm.min_us, warm.max_us, cold.median_us, kv_bytes, tbps, cold_tbps);
    }
#ifdef LLA_DECODE_TIMELINE
    lla::gpu::decode_timeline_report(static_cast<long long>(splits) * p.heads_kv * p.batch, splits);
#endif
    for (int c = 0; c < copies; ++c) {
      cudaFree(k[c]);
      cudaFree(v[c]);
    }
    cudaFree(q);
    cudaFree(r);
    cudaFree(o);
    if (ws) cudaFree(ws);
  }
  if (js) {
    std::fprintf(js, "]}\n");
    std::fclose(js);
  }
  return 0;
}
