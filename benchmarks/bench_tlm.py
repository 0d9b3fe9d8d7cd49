"""Benchmark: the transaction-level accelerator on one BERT-base feed-forward GEMM.

384x768 activations by 768x3072 weights at 4/8/6/10 on the default preset (magnet16):

- real numerics through the TLM vs the ``vsquant`` reference of the same layer (target < 5x);
- timing-only mode (no tensors; same cycles and action counts but the data-dependent gating),
  target < 0.2 s. For scale, the issue quotes SCALE-Sim at 56 s / 1.7 GB and ZigZag at 7.9 s
  for this GEMM on this machine.

Both use pre-quantized (static) weights, as the hardware does. Times are medians of
``--repeat`` interleaved runs in this one process; peak RSS is printed at the end.

Run: ``python benchmarks/bench_tlm.py [--repeat 9] [--hw magnet16]``
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np

from mapping.tasks import linear_task, linear_timing_task
from tlm import Accelerator, load_hardware
from vsquant import QuantConfig, linear, quantize_weight

TARGET_NUMERICS_RATIO = 5.0
TARGET_TIMING_S = 0.2


def _time(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--hw", default="magnet16")
    ap.add_argument("--arch", default="4/8/6/10")
    args = ap.parse_args(argv)
    hw = load_hardware(args.hw)
    cfg = QuantConfig.parse(args.arch)
    rng = np.random.default_rng(0)
    M, K, N = 384, 768, 3072
    x = rng.standard_normal((M, K))
    w = rng.standard_normal((N, K)) * 0.05
    b = rng.standard_normal(N) * 0.1
    wq = quantize_weight(w, cfg)

    def tlm():
        return Accelerator(hw, cfg).run_layer(linear_task(x, wq, b, cfg, hw))

    def timing():
        return Accelerator(hw, cfg).run_layer(linear_timing_task(M, K, N, cfg, hw))

    ref_out = linear(x, wq, b, cfg)
    run = tlm()
    assert np.array_equal(run.output, ref_out.output), "TLM output differs from the reference"
    t_ref, t_tlm, t_tim = [], [], []
    for _ in range(args.repeat):
        t_ref.append(_time(lambda: linear(x, wq, b, cfg))[0])
        t_tlm.append(_time(tlm)[0])
        t_tim.append(_time(timing)[0])
    r, n, t = (statistics.median(v) for v in (t_ref, t_tlm, t_tim))
    tim = timing()
    print(f"TLM on {M}x{K} @ {K}x{N} at {cfg}, hardware {hw.name}, median of {args.repeat}")
    print(f"  vsquant reference          {r * 1e3:8.1f} ms")
    print(f"  TLM, real numerics         {n * 1e3:8.1f} ms   ratio {n / r:5.2f}x   target < {TARGET_NUMERICS_RATIO}x"
          f"   {'PASS' if n / r < TARGET_NUMERICS_RATIO else 'FAIL'}")
    print(f"  TLM, timing only           {t * 1e3:8.1f} ms   target < {TARGET_TIMING_S * 1e3:.0f} ms"
          f"   {'PASS' if t < TARGET_TIMING_S else 'FAIL'}")
    print(f"  simulated: {tim.cycles:,} cycles (ideal {tim.ideal_cycles:,}, utilization {tim.utilization:.1%}, "
          f"bottleneck {tim.bottleneck}), {sum(len(s) for s in linear_timing_task(M, K, N, cfg, hw).schedule):,} "
          f"tile transactions")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
