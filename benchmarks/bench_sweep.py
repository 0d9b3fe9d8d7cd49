"""Benchmark: the paper's full Table 8 design space (576 datapaths) costed for BERT-base [< 60 s].

Every point: timing simulated on its iso-depth hardware, priced, normalized to 8/8/-/-; two local
worker processes on this 2-core machine; a fresh results store (so nothing is reused). Prints
the wall time and the Pareto front (energy vs perf/area).

Run: ``python benchmarks/bench_sweep.py [--seq 128] [--workers 2]``
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

TARGET_S = 60.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workload", default="bert-base")
    args = ap.parse_args(argv)
    from studies.sweep import pareto_front, sweep, table8_archs
    archs = table8_archs()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        df = sweep([args.workload], archs, seq=args.seq, store=str(Path(d) / "s.sqlite"), workers=args.workers)
        t = time.perf_counter() - t0
    print(f"{args.workload} seq {args.seq}: {len(df)} design points in {t:.1f} s with {args.workers} workers "
          f"[target < {TARGET_S:.0f} s: {'PASS' if t < TARGET_S else 'FAIL'}]")
    front = pareto_front(df)
    print("Pareto front (energy/op vs perf/area, normalized to 8/8/-/-):")
    print(front[["arch", "energy_norm", "perf_per_area_norm", "area_norm"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
