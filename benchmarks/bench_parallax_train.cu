// Parallax training forward and forward + backward on the GPU: CUDA events around a
// captured graph of launches, median and spread over replays, effective TFLOP/s
// counting Parallax's products over the visible (query, key) pairs only: 4 in the
// forward (Q.K^T, R.K^T, P1.V, P2.V) and 11 more in the backward (spec 6.3:
// S, T, dO.V^T recomputed twice, dQ, dR, dK from dS and dT, dV). The peer (PyTorch
// SDPA flash / cuDNN, and a dense GEMM ceiling) runs in the same lane from sdpa_train.py.
//   usage: bench_parallax_train [--json FILE] [--quick] [--only SHAPE]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "gpu_timing.cuh"
#include "lla/gpu/parallax_train.hpp"

namespace {

using namespace lla::bench;

struct TrainShape {
  const char* name;
  long long batch, seqlen, heads_q, heads_kv, head_dim;
  bool causal;
  long long window;  // 0: none
};

// Visible (query, key) pairs of one (batch, head): the work a kernel that skips
// masked tiles must do, and what the FLOP count is based on.
double visible_pairs(const TrainShape& s) {
  double pairs = 0;
  for (long long i = 0; i < s.seqlen; ++i) {
    long long n = s.causal ? i + 1 : s.seqlen;
    if (s.window > 0) n = std::min(n, s.window);
    pairs += static_cast<double>(n);
  }
  return pairs;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path, only;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--quick") quick = true;
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_parallax_train [--json FILE] [--quick] [--only SHAPE]\n");
      return 2;
    }
  }
  std::vector<TrainShape> shapes{
      {"B4_L4096_H16_D128", 4, 4096, 16, 16, 128, true, 0},
      {"B1_L16384_H16_D128", 1, 16384, 16, 16, 128, true, 0},
      {"B8_L2048_H16_D64", 8, 2048, 16, 16, 64, true, 0},
      {"B4_L4096_GQA16to4_D128", 4, 4096, 16, 4, 128, true, 0},
      {"B4_L4096_H16_D128_W1024", 4, 4096, 16, 16, 128, true, 1024},
      {"B4_L4096_H16_D128_noncausal", 4, 4096, 16, 16, 128, false, 0},
  };
  if (quick) shapes.resize(1);
  if (!only.empty()) {
    std::erase_if(shapes, [&](const TrainShape& s) { return only != s.name; });
    if (shapes.empty()) {
      std::fprintf(stderr, "bench_parallax_train: no shape named '%s'\n", only.c_str());
      return 2;
    }
  }
  cudaStream_t st;
  CHECK(cudaStreamCreate(&st));
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  FILE* js = json_path.empty() ? nullptr : std::fopen(json_path.c_str(), "w");
  if (js) std::fprintf(js, "{\"device\": \"%s\", \"results\": [", prop.name);
  std::printf("%-30s %10s %10s %10s %10s %12s %10s %12s %10s %12s\n", "shape", "fwd ms", "min ms", "max ms",
              "TFLOP/s", "fwd+bwd ms", "TFLOP/s", "mma.sync fwd", "TFLOP/s", "f+b mma.sync");
  for (size_t si = 0; si < shapes.size(); ++si) {
    const TrainShape& sh = shapes[si];
    lla::Problem p = lla::Problem::dense(sh.batch, sh.seqlen, sh.seqlen, sh.heads_q, sh.heads_kv, sh.head_dim);
    p.causal = sh.causal;
    p.window = sh.window;
    const size_t q_elems = size_t(p.q_elements()), kv_elems = size_t(p.kv_elements());
    __nv_bfloat16 *q, *r, *k, *v, *o, *vbar, *o_lo, *vbar_lo, *dout, *dq, *dr, *dk, *dv;
    float *lse, *tbar;
    void* ws;
    for (auto* ptr : {&q, &r, &o, &vbar, &o_lo, &vbar_lo, &dout, &dq, &dr}) CHECK(cudaMalloc(ptr, q_elems * 2));
    for (auto* ptr : {&k, &v, &dk, &dv}) CHECK(cudaMalloc(ptr, kv_elems * 2));
    CHECK(cudaMalloc(&ws, std::max<size_t>(16, lla::gpu::train_backward_workspace_bytes(p))));
    const size_t rows = size_t(p.batch * p.seqlen_q * p.heads_q);
    CHECK(cudaMalloc(&lse, rows * 4));
    CHECK(cudaMalloc(&tbar, rows * 4));
    fill_bf16<<<1024, 256, 0, st>>>(q, q_elems, 1, 1.f);
    fill_bf16<<<1024, 256, 0, st>>>(r, q_elems, 2, 0.1f);
    fill_bf16<<<1024, 256, 0, st>>>(k, kv_elems, 3, 1.f);
    fill_bf16<<<1024, 256, 0, st>>>(v, kv_elems, 4, 1.f);
    fill_bf16<<<1024, 256, 0, st>>>(dout, q_elems, 5, 1.f);
    lla::gpu::TrainForwardArgs a;
    a.problem = p;
    a.q = q;
    a.r = r;
    a.k = k;
    a.v = v;
    a.o = o;
    a.vbar = vbar;
    a.o_lo = o_lo;  // the training forward: the backward's state saved (P1 in two words)
    a.vbar_lo = vbar_lo;
    a.lse = lse;
    a.tbar = tbar;
    const auto status = lla::gpu::parallax_forward(a, st);
    if (!status.ok) {
      std::fprintf(stderr, "%s: %s\n", sh.name, status.message.c_str());
      return 2;
    }
    lla::gpu::TrainBackwardArgs b;
    b.problem = p;
    b.q = q;
    b.r = r;
    b.k = k;
    b.v = v;
    b.o = o;
    b.vbar = vbar;
    b.o_lo = o_lo;
    b.vbar_lo = vbar_lo;
    b.lse = lse;
    b.tbar = tbar;
    b.dout = dout;
    b.dq = dq;
    b.dr = dr;
    b.dk = dk;
    b.dv = dv;
    b.workspace = ws;
    b.workspace_bytes = std::max<size_t>(16, lla::gpu::train_backward_workspace_bytes(p));
    const auto bstatus = lla::gpu::parallax_backward(b, st);
    if (!bstatus.ok) {
      std::fprintf(stderr, "%s: %s\n", sh.name, bstatus.message.c_str());
      return 2;
    }
    CHECK(cudaStreamSynchronize(st));
    const Timing t = time_graph([&](int) { lla::gpu::parallax_forward(a, st); }, 5, quick ? 3 : 10, st);
    const Timing tb = time_graph(
        [&](int) {
          lla::gpu::parallax_forward(a, st);
          lla::gpu::parallax_backward(b, st);
        },
        3, quick ? 3 : 10, st);
    // The mma.sync forward (the kernel automatic replaces on Hopper), same inputs, for
    // reference; -1 if it failed.
    lla::gpu::TrainForwardArgs am = a;
    am.kernel = lla::gpu::TrainKernel::mma_sync;
    double mma_sync_ms = -1;
    if (const auto ms_status = lla::gpu::parallax_forward(am, st); !ms_status.ok) {
      std::fprintf(stderr, "%s: mma.sync forward: %s\n", sh.name, ms_status.message.c_str());
    } else {
      CHECK(cudaStreamSynchronize(st));
      mma_sync_ms =
          time_graph([&](int) { lla::gpu::parallax_forward(am, st); }, 5, quick ? 3 : 10, st).median_us / 1e3;
    }
    // Forward + backward with the mma.sync backward kernels (the ones automatic replaces on
    // Hopper), same inputs, for reference; -1 if it failed.
    lla::gpu::TrainBackwardArgs bm = b;
    bm.kernel = lla::gpu::TrainKernel::mma_sync;
    double mma_sync_fb_ms = -1;
    if (const auto bm_status = lla::gpu::parallax_backward(bm, st); !bm_status.ok) {
      std::fprintf(stderr, "%s: mma.sync backward: %s\n", sh.name, bm_status.message.c_str());
    } else if (cudaStreamSynchronize(st) != cudaSuccess) {
      std::fprintf(stderr, "%s: mma.sync backward: %s\n", sh.name, cudaGetErrorString(cudaGetLastError()));
      return 2;
    } else {
      mma_sync_fb_ms = time_graph(
                           [&](int) {
                             lla::gpu::parallax_forward(a, st);
                             lla::gpu::parallax_backward(bm, st);
                           },
                           3, quick ? 3 : 10, st)
                           .median_us /
                       1e3;
    }
    const double pair_flops = 2.0 * visible_pairs(sh) * double(sh.head_dim) * double(sh.batch * sh.heads_q);
    const double tflops = 4.0 * pair_flops / (t.median_us * 1e-6) / 1e12;
    const double tflops_fb = 15.0 * pair_flops / (tb.median_us * 1e-6) / 1e12;
    const double tflops_mma_sync = mma_sync_ms > 0 ? 4.0 * pair_flops / (mma_sync_ms * 1e-3) / 1e12 : 0.0;
    std::printf("%-30s %10.3f %10.3f %10.3f %10.1f %12.3f %10.1f %12.3f %10.1f %12.3f\n", sh.name, t.median_us / 1e3,
                t.min_us / 1e3, t.max_us / 1e3, tflops, tb.median_us / 1e3, tflops_fb, mma_sync_ms, tflops_mma_sync,
                mma_sync_fb_ms);
    if (js) {
      std::fprintf(js,
                   "%s{\"shape\": \"%s\", \"batch\": %lld, \"seqlen\": %lld, \"heads_q\": %lld, \"heads_kv\": %lld, "
                   "\"head_dim\": %lld, \"causal\": %s, \"window\": %lld, \"fwd_median_ms\": %.4f, "
                   "\"fwd_min_ms\": %.4f, \"fwd_max_ms\": %.4f, \"fwd_TFLOPs\": %.2f, \"fwdbwd_median_ms\": %.4f, "
                   "\"fwdbwd_TFLOPs\": %.2f, \"fwd_mma_sync_median_ms\": %.4f, \"fwd_mma_sync_TFLOPs\": %.2f, "
                   "\"fwdbwd_mma_sync_median_ms\": %.4f}",
                   si ? ", " : "", sh.name, sh.batch, sh.seqlen, sh.heads_q, sh.heads_kv, sh.head_dim,
                   sh.causal ? "true" : "false", sh.window, t.median_us / 1e3, t.min_us / 1e3, t.max_us / 1e3, tflops,
                   tb.median_us / 1e3, tflops_fb, mma_sync_ms, tflops_mma_sync, mma_sync_fb_ms);
    }
    for (void* ptr : {static_cast<void*>(q), static_cast<void*>(r), static_cast<void*>(k), static_cast<void*>(v),
                      static_cast<void*>(o), static_cast<void*>(vbar), static_cast<void*>(o_lo),
                      static_cast<void*>(vbar_lo), static_cast<void*>(lse),
                      static_cast<void*>(tbar), static_cast<void*>(dout), static_cast<void*>(dq),
                      static_cast<void*>(dr), static_cast<void*>(dk), static_cast<void*>(dv), ws}) {
      cudaFree(ptr);
    }
  }
  if (js) {
    std::fprintf(js, "]}\n");
    std::fclose(js);
  }
  return 0;
}
