#!/usr/bin/env python3
"""The peer in the same run for the training kernels: PyTorch SDPA (flash and cuDNN
backends) softmax attention forward, and forward + backward, on the shapes of
bench_parallax_train, plus a dense bf16 GEMM (8192^3) as the compute ceiling.
Forward: CUDA graph of 5 calls, median of 10 replays. Forward + backward: CUDA
events around 5 eager iterations, median of 10. Shapes SDPA cannot run (sliding
windows) are reported as unavailable.
Writes JSON: {"gemm_TFLOPs": x, "results": [{shape, backend, fwd_ms, fwdbwd_ms}]}.
usage: sdpa_train.py --json FILE [--quick]
"""
import argparse
import json

import torch
from peer_timing import time_graph
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F

# name, B, L, Hq, Hkv, D, causal, window (as bench_parallax_train.cu)
SHAPES = [
    ("B4_L4096_H16_D128", 4, 4096, 16, 16, 128, True, 0),
    ("B1_L16384_H16_D128", 1, 16384, 16, 16, 128, True, 0),
    ("B8_L2048_H16_D64", 8, 2048, 16, 16, 64, True, 0),
    ("B4_L4096_GQA16to4_D128", 4, 4096, 16, 4, 128, True, 0),
    ("B4_L4096_H16_D128_W1024", 4, 4096, 16, 16, 128, True, 1024),
    ("B4_L4096_H16_D128_noncausal", 4, 4096, 16, 16, 128, False, 0),
]


def median_of(times):
    times.sort()
    return times[len(times) // 2]


def time_eager_ms(fn, iters=5, replays=10):
    for _ in range(2):
        fn()
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / iters)
    return median_of(times)


def gemm_tflops():
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = time_graph(lambda: a @ b, launches=5, replays=10)[0]
    return 2.0 * n ** 3 / (ms * 1e-3) / 1e12


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    shapes = SHAPES[:1] if args.quick else SHAPES
    gemm = gemm_tflops()
    print("dense bf16 GEMM 8192^3: %.1f TFLOP/s" % gemm, flush=True)
    results = []
    for name, B, L, Hq, Hkv, D, causal, window in shapes:
        for backend, label in ((SDPBackend.FLASH_ATTENTION, "flash"), (SDPBackend.CUDNN_ATTENTION, "cudnn")):
            if window:
                results.append({"shape": name, "backend": label, "error": "SDPA has no sliding window"})
                continue
            try:
                q = torch.randn(B, L, Hq, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
                k = torch.randn(B, L, Hkv, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
                v = torch.randn(B, L, Hkv, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
                with sdpa_kernel([backend]):
                    fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=Hq != Hkv)
                    fwd()
                    fwd_ms = time_graph(fwd, launches=5, replays=10, warmup=2)[0]
                    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
                    do = torch.randn_like(q)

                    def fwdbwd():
                        out = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal, enable_gqa=Hq != Hkv)
                        out.backward(do)

                    fwdbwd_ms = time_eager_ms(fwdbwd)
                results.append({"shape": name, "backend": label, "fwd_ms": fwd_ms, "fwdbwd_ms": fwdbwd_ms})
                print("%-30s %-6s fwd %8.3f ms  fwd+bwd %8.3f ms" % (name, label, fwd_ms, fwdbwd_ms), flush=True)
            except Exception as e:  # an unsupported backend/shape is reported, not fatal
                results.append({"shape": name, "backend": label, "error": str(e)[:200]})
                print("%-30s %-6s unavailable: %s" % (name, label, str(e)[:120]), flush=True)
    with open(args.json, "w") as f:
        json.dump({"torch": torch.__version__, "gemm_TFLOPs": gemm, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
