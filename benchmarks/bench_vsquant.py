"""Benchmark: the vsquant reference layer vs a float64 GEMM of the same shape (issue: <3x).

BERT-base feed-forward layer: activations 384x768, weights 3072x768, at 4/8/6/10 with
full-width scale products. Prints medians over repeated runs measured in this one process
and their ratio to the float64 GEMM. Two figures:

- ``layer (static weights)``: weights quantized once, offline, as the paper does for weights
  (Sec. 4.3); the timed layer quantizes the activations, runs the integer vector MAC, the PPU
  and the dynamic per-vector requantization of the output. This is the target's figure.
- ``layer (from float weights)``: also quantizes the weights inside the timed call.

Run: ``python benchmarks/bench_vsquant.py [--repeat 15]``
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from vsquant import QuantConfig, linear, quantize_weight

TARGET_RATIO = 3.0


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--arch", default="4/8/6/10")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    M, K, N = 384, 768, 3072
    x = rng.standard_normal((M, K))
    w = rng.standard_normal((N, K)) * 0.05
    b = rng.standard_normal(N) * 0.1
    cfg = QuantConfig.parse(args.arch)
    wq = quantize_weight(w, cfg)

    # interleave the measurements so machine noise hits all of them alike
    t_gemm, t_static, t_float = [], [], []
    for _ in range(args.repeat):
        t_gemm.append(median_time(lambda: x @ w.T, 1))
        t_static.append(median_time(lambda: linear(x, wq, b, cfg), 1))
        t_float.append(median_time(lambda: linear(x, w, b, cfg), 1))
    g, s, f = (statistics.median(t) for t in (t_gemm, t_static, t_float))
    print(f"vsquant linear {M}x{K} @ {K}x{N} at {cfg}, median of {args.repeat}")
    print(f"  float64 GEMM                 {g * 1e3:8.2f} ms")
    print(f"  layer (static weights)       {s * 1e3:8.2f} ms   ratio {s / g:5.2f}x   target < {TARGET_RATIO}x"
          f"   {'PASS' if s / g < TARGET_RATIO else 'FAIL'}")
    print(f"  layer (from float weights)   {f * 1e3:8.2f} ms   ratio {f / g:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
