#!/usr/bin/env python3
"""Prints the GPU lane's summary table from the JSON results of tools/gpu-check.sh.
usage: gpu_summary.py OUT_DIR"""
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def print_training(out):
    ours = load(os.path.join(out, "train.json"))
    if not ours:
        return
    peer = load(os.path.join(out, "sdpa_train.json")) or {}
    peers = {(r["shape"], r["backend"]): r for r in peer.get("results", []) if "fwd_ms" in r}
    print("\nParallax training (bf16), median of 10 graph replays; TFLOP/s counts 4 (forward) and 15 (forward + "
          "backward) products over visible pairs; dense GEMM ceiling %s TFLOP/s (same run)"
          % ("%.0f" % peer["gemm_TFLOPs"] if "gemm_TFLOPs" in peer else "n/a"))
    def cell(v):
        return "%.3f" % v if v else "n/a"

    def ratio(a, b):
        return "%.2fx" % (a / b) if a and b else "n/a"

    print("%-30s %8s %7s %8s %8s %8s | %9s %7s %9s %9s %8s" % (
        "shape", "fwd ms", "TF/s", "flash", "cuDNN", "vs cuDNN", "f+b ms", "TF/s", "flash", "cuDNN", "vs cuDNN"))
    for r in ours["results"]:
        fl = peers.get((r["shape"], "flash"), {})
        cu = peers.get((r["shape"], "cudnn"), {})
        fb = r.get("fwdbwd_median_ms")
        print("%-30s %8.3f %7.1f %8s %8s %8s | %9s %7s %9s %9s %8s" % (
            r["shape"], r["fwd_median_ms"], r["fwd_TFLOPs"], cell(fl.get("fwd_ms")), cell(cu.get("fwd_ms")),
            ratio(r["fwd_median_ms"], cu.get("fwd_ms")), cell(fb), "%.1f" % r.get("fwdbwd_TFLOPs", 0),
            cell(fl.get("fwdbwd_ms")), cell(cu.get("fwdbwd_ms")), ratio(fb, cu.get("fwdbwd_ms"))))
    print("(ms; vs cuDNN = parallax time / cuDNN SDPA softmax time, forward and forward + backward; "
          "the targets are <= 2.00x)")
    fla = [(r, peers.get((r["shape"], "fla"), {})) for r in ours["results"]]
    if any(f for _, f in fla) or "fla" in peer:
        print("\nagainst the fla Triton Parallax kernel (%s), same run; milestones: forward >= 1.5x, "
              "forward + backward >= 2x faster" % peer.get("fla", "n/a"))
        print("%-30s %8s %8s %8s | %9s %9s %8s" % ("shape", "fla fwd", "ours", "speedup", "fla f+b", "ours",
                                                   "speedup"))
        for r, f in fla:
            fb = r.get("fwdbwd_median_ms")
            print("%-30s %8s %8.3f %8s | %9s %9s %8s" % (
                r["shape"], cell(f.get("fwd_ms")), r["fwd_median_ms"], ratio(f.get("fwd_ms"), r["fwd_median_ms"]),
                cell(f.get("fwdbwd_ms")), cell(fb), ratio(f.get("fwdbwd_ms"), fb)))
    ms = [r for r in ours["results"] if "fwd_mma_sync_median_ms" in r]
    if ms:
        print("\nthe forward above is TrainKernel::automatic (wgmma on this device where D % 8 == 0); the "
              "mma.sync forward it replaced, same run:")
        print("%-30s %8s %7s %8s" % ("shape", "fwd ms", "TF/s", "speedup"))
        for r in ms:
            t = r["fwd_mma_sync_median_ms"]
            print("%-30s %8s %7.1f %8s" % (r["shape"], cell(t) if t > 0 else "FAILED", r["fwd_mma_sync_TFLOPs"],
                                          ratio(t, r["fwd_median_ms"]) if t > 0 else "n/a"))

    mb = [r for r in ours["results"] if "fwdbwd_mma_sync_median_ms" in r]
    if mb:
        print("\nforward + backward above is TrainKernel::automatic (the wgmma backward on this device where "
              "D % 8 == 0); with the mma.sync backward it replaced, same run:")
        print("%-30s %9s %9s %8s %8s" % ("shape", "f+b ms", "cuDNN", "vs cuDNN", "speedup"))
        for r in mb:
            t = r["fwdbwd_mma_sync_median_ms"]
            cu = peers.get((r["shape"], "cudnn"), {}).get("fwdbwd_ms")
            ok = t > 0
            print("%-30s %9s %9s %8s %8s" % (r["shape"], cell(t) if ok else "FAILED", cell(cu),
                                             ratio(t, cu) if ok else "n/a",
                                             ratio(t, r.get("fwdbwd_median_ms")) if ok else "n/a"))


def main():
    out = sys.argv[1]
    status = load(os.path.join(out, "status.json")) or {}
    print("\n=== lla-oracle GPU lane summary ===")
    for k in ("device", "sass", "hgmma", "build", "tests", "memcheck", "racecheck", "initcheck", "synccheck"):
        if k in status:
            print("%-10s %s" % (k, status[k]))
    try:
        with open(os.path.join(out, "tests.log")) as f:
            worst = [l.strip() for l in f if "max-norm relative error" in l and " worst " in l]
        for line in worst:  # one summary line per kernel (decode, training forward)
            print("accuracy   " + line.replace("max-norm relative error", "max-norm rel. error vs fp64"))
    except OSError:
        pass
    ours = load(os.path.join(out, "decode.json"))
    peer = load(os.path.join(out, "sdpa.json"))
    if not ours:
        print("no decode benchmark results")
        print_training(out)
        return 0
    print("\nParallax decode (bf16, Lq = 1), warm L2, median of 30 graph replays of 20 calls; "
          "copy-kernel bandwidth %.2f TB/s (read + write, same binary)"
          % ours["copy_bandwidth_TBps"])
    peers = {}
    for r in (peer or {}).get("results", []):
        if "median_us" in r:
            peers[(r["shape"], r["backend"])] = r["median_us"]
    print("%-26s %8s %10s %8s %7s %10s %10s %11s %11s" % ("shape", "splits", "parallax", "TB/s", "% copy",
                                                          "flash us", "cuDNN us", "vs cuDNN", "cold us"))
    for r in ours["results"]:
        fl = peers.get((r["shape"], "flash"))
        cu = peers.get((r["shape"], "cudnn"))
        ratio = ("%.2fx" % (r["warm_median_us"] / cu)) if cu else "n/a"
        print("%-26s %8d %10.2f %8.2f %7.1f %10s %10s %11s %11.2f" % (
            r["shape"], r["splits"], r["warm_median_us"], r["warm_TBps"],
            100 * r["warm_TBps"] / ours["copy_bandwidth_TBps"],
            "%.2f" % fl if fl else "n/a", "%.2f" % cu if cu else "n/a", ratio, r["cold_median_us"]))
    print("(vs cuDNN = parallax time / cuDNN SDPA softmax time; < 1 means faster)")
    print_training(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
