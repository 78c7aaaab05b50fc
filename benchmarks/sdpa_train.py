#!/usr/bin/env python3
"""The peers in the same run for the training kernels: PyTorch SDPA (flash and cuDNN
backends) softmax attention forward, and forward + backward, on the shapes of
bench_parallax_train, plus a dense bf16 GEMM (8192^3) as the compute ceiling; and,
where its wheel is importable (tools/fetch-gpu-deps.sh carries fla-core), the fla
Triton Parallax kernel (`fla.ops.parallax.parallel_parallax`: causal only) on the
same shapes, inputs and timing: backend "fla".
Forward: CUDA graph of 5 calls, median of 10 replays. Forward + backward: CUDA
events around 5 eager iterations, median of 10. Shapes a peer cannot run (sliding
windows for SDPA, non-causal for fla) are reported as unavailable, with the reason.
Writes JSON: {"gemm_TFLOPs": x, "fla": version or reason, "results": [{shape, backend, fwd_ms, fwdbwd_ms}]}.
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


def load_fla():
    """fla's parallel_parallax and its version, or None and the reason."""
    try:
        import fla
        from fla.ops.parallax import parallel_parallax
        return parallel_parallax, getattr(fla, "__version__", "unknown")
    except Exception as e:  # not carried, or it does not import here: reported, not fatal
        return None, "not available: %s" % str(e)[:160]


def time_fla(parallel_parallax, B, L, Hq, Hkv, D, window):
    """fla's Parallax forward and forward + backward (ms) on inputs like bench_parallax_train's."""
    q = torch.randn(B, L, Hq, D, device="cuda", dtype=torch.bfloat16)
    r = 0.1 * torch.randn(B, L, Hq, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, L, Hkv, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, L, Hkv, D, device="cuda", dtype=torch.bfloat16)
    w = window if window else None
    fwd = lambda: parallel_parallax(q, r, k, v, window_size=w)
    fwd()  # Triton autotuning happens outside the graph
    fwd_ms = time_graph(fwd, launches=5, replays=10, warmup=2)[0]
    qg, rg, kg, vg = (t.detach().requires_grad_() for t in (q, r, k, v))
    do = torch.randn_like(q)

    def fwdbwd():
        parallel_parallax(qg, rg, kg, vg, window_size=w).backward(do)

    return fwd_ms, time_eager_ms(fwdbwd)


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
    parallel_parallax, fla_version = load_fla()
    print("fla: %s" % fla_version, flush=True)
    for name, B, L, Hq, Hkv, D, causal, window in shapes:
        if parallel_parallax is None:
            results.append({"shape": name, "backend": "fla", "error": fla_version})
            continue
        if not causal:
            results.append({"shape": name, "backend": "fla", "error": "fla's parallel_parallax is causal only"})
            continue
        try:
            fwd_ms, fwdbwd_ms = time_fla(parallel_parallax, B, L, Hq, Hkv, D, window)
            results.append({"shape": name, "backend": "fla", "fwd_ms": fwd_ms, "fwdbwd_ms": fwdbwd_ms})
            print("%-30s %-6s fwd %8.3f ms  fwd+bwd %8.3f ms" % (name, "fla", fwd_ms, fwdbwd_ms), flush=True)
        except Exception as e:
            results.append({"shape": name, "backend": "fla", "error": str(e)[:200]})
            print("%-30s %-6s unavailable: %s" % (name, "fla", str(e)[:120]), flush=True)
    with open(args.json, "w") as f:
        json.dump({"torch": torch.__version__, "gemm_TFLOPs": gemm, "fla": fla_version, "results": results}, f,
                  indent=1)


if __name__ == "__main__":
    main()
