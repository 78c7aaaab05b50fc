#!/usr/bin/env python3
"""The peer in the same run: PyTorch SDPA (flash and cuDNN backends) softmax decode
on the shapes of bench_parallax_decode, timed the same way (CUDA graph of 20 calls,
median of 30 replays, warm L2). Writes JSON: {"results": [{shape, backend, median_us}]}.
usage: sdpa_decode.py --json FILE [--quick]
"""
import argparse
import json

import torch
from peer_timing import time_graph
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F

SHAPES = [
    ("B1_L512_H8_D128", 1, 512, 8, 8, 128), ("B1_L1024_H8_D128", 1, 1024, 8, 8, 128),
    ("B1_L4096_H8_D128", 1, 4096, 8, 8, 128), ("B1_L16384_H8_D128", 1, 16384, 8, 8, 128),
    ("B32_L512_H8_D128", 32, 512, 8, 8, 128), ("B32_L1024_H8_D128", 32, 1024, 8, 8, 128),
    ("B32_L4096_H8_D128", 32, 4096, 8, 8, 128), ("B32_L16384_H8_D128", 32, 16384, 8, 8, 128),
    ("B1_L16384_GQA32to8_D128", 1, 16384, 32, 8, 128), ("B32_L4096_GQA32to8_D128", 32, 4096, 32, 8, 128),
    ("B32_L4096_H8_D64", 32, 4096, 8, 8, 64), ("B32_L4096_H8_D256", 32, 4096, 8, 8, 256),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    shapes = SHAPES[:2] if args.quick else SHAPES
    results = []
    for name, B, L, Hq, Hkv, D in shapes:
        # Layout (B, L, H, D) as the project's caches, viewed as (B, H, L, D) for SDPA.
        q = torch.randn(B, 1, Hq, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
        k = torch.randn(B, L, Hkv, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
        v = torch.randn(B, L, Hkv, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
        for backend, label in ((SDPBackend.FLASH_ATTENTION, "flash"), (SDPBackend.CUDNN_ATTENTION, "cudnn")):
            try:
                with sdpa_kernel([backend]):
                    fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=Hq != Hkv)
                    fn()
                    med, lo, hi = (1e3 * x for x in time_graph(fn, launches=20, replays=5 if args.quick else 30))
                results.append({"shape": name, "backend": label, "median_us": med, "min_us": lo, "max_us": hi})
                print("%-26s %-6s %10.2f us" % (name, label, med), flush=True)
            except Exception as e:  # an unsupported backend/shape is reported, not fatal
                results.append({"shape": name, "backend": label, "error": str(e)[:200]})
                print("%-26s %-6s unavailable: %s" % (name, label, str(e)[:120]), flush=True)
    with open(args.json, "w") as f:
        json.dump({"torch": torch.__version__, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
