#!/usr/bin/env python3
"""Read lla-oracle fixtures with h5py/numpy, run a candidate implementation, write
candidate files, and let `lla verify` judge them. No lla-oracle code is imported:
this is what a kernel author in Python (PyTorch, JAX, Triton) does.

usage: parallax_candidate.py FIXTURE_DIR CANDIDATE_DIR [CASE ...]

The candidate here is a tiny numpy Parallax / softmax forward for dense problems
(causal end-aligned or not, sliding window, GQA). Replace `parallax_forward` with
your kernel call.
"""
import os
import sys

import h5py
import numpy as np


def parallax_forward(q, k, v, r, scale, causal, window):
    """q, r: (B, Lq, Hq, D); k, v: (B, Lk, Hkv, D). Returns o: (B, Lq, Hq, D)."""
    B, Lq, Hq, D = q.shape
    Lk, Hkv = k.shape[1], k.shape[2]
    group = Hq // Hkv
    kk = np.repeat(k, group, axis=2)  # (B, Lk, Hq, D)
    vv = np.repeat(v, group, axis=2)
    s = scale * np.einsum("bihd,bjhd->bhij", q, kk)
    # End-aligned positions: query i sits at key position Lk - Lq + i.
    pos = np.arange(Lq)[:, None] + (Lk - Lq)
    j = np.arange(Lk)[None, :]
    visible = np.ones((Lq, Lk), dtype=bool)
    if causal:
        visible &= j <= pos
    if window > 0:
        visible &= j >= pos - window + 1
    s = np.where(visible, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(s - m)
    d1 = p.sum(axis=-1, keepdims=True)
    p = np.divide(p, d1, out=np.zeros_like(p), where=d1 > 0)  # empty rows: p = 0, o = 0
    if r is None:
        weights = p
    else:
        t = np.einsum("bihd,bjhd->bhij", r, kk)  # probe scores: unscaled, never masked
        tbar = (p * t).sum(axis=-1, keepdims=True)
        weights = p * (1.0 + tbar - t)
    return np.einsum("bhij,bjhd->bihd", weights, vv)


def run_case(path, out_dir):
    with h5py.File(path, "r") as f:
        prob = f["problem"].attrs
        variant = prob["variant"].decode() if isinstance(prob["variant"], bytes) else prob["variant"]
        dense = all(n not in f["inputs"] for n in ("cu_seqlens_q", "seqused_k", "cache_start"))
        if variant not in ("softmax", "parallax") or not dense:
            return None
        inputs = {n: f["inputs"][n][...] for n in ("q", "k", "v")}
        r = f["inputs"]["r"][...] if variant == "parallax" else None
        o = parallax_forward(inputs["q"], inputs["k"], inputs["v"], r, float(prob["scale"]),
                             bool(prob["causal"]), int(prob["window"]))
    out = os.path.join(out_dir, os.path.basename(path))
    with h5py.File(out, "w") as c:
        c.create_dataset("o", data=o.astype(np.float32))  # any float dtype is accepted
    return os.path.basename(path)


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    fixture_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    names = sys.argv[3:] or sorted(n for n in os.listdir(fixture_dir) if n.endswith(".h5"))
    done = [run_case(os.path.join(fixture_dir, n if n.endswith(".h5") else n + ".h5"), out_dir) for n in names]
    done = [d for d in done if d]
    print("wrote %d candidate files to %s" % (len(done), out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
