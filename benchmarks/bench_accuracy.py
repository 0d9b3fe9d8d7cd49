"""Benchmark: the accuracy path of sweeps, the fake-quant backend against the bit-exact reference.

For a workload's captured graph, times one forward with every MAC layer on
``mapping.backends.fakequant_backend`` (what ``studies.sweep.point_accuracy`` uses) and on
``mapping.backends.reference_backend`` (the ``vsquant`` golden model), checks that the outputs are
identical, and prints medians and their ratio. Target: the fake-quant path is faster than the
reference (it exists to make accuracy sweeps cheap) and equal to it bit for bit.

Run: ``python benchmarks/bench_accuracy.py [--workload bert-base] [--seq 128] [--arch 4/8/6/10] [--repeat 5]``
"""
from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="bert-base")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--arch", action="append", help="datapath (repeatable); default 4/8/6/10 and 8/8/-/-")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    import torch

    from mapping.backends import fakequant_backend, reference_backend
    from mapping.interpret import QuantInterpreter
    from studies.sweep import _float_model
    cap, _, info = _float_model(args.workload, args.seq)
    print(f"{info.get('name', args.workload)} (seq {args.seq}): one forward, median of {args.repeat}")
    for arch in args.arch or ["4/8/6/10", "8/8/-/-"]:
        times, outs = {}, {}
        for name, make in (("fake-quant", fakequant_backend), ("reference", reference_backend)):
            ts = []
            for _ in range(args.repeat):
                interp = QuantInterpreter(cap, make(arch))      # a fresh backend: weights quantized in the run
                t0 = time.perf_counter()
                out = interp.forward()
                ts.append(time.perf_counter() - t0)
            times[name], outs[name] = statistics.median(ts), out
        a, b = outs["fake-quant"], outs["reference"]
        a, b = (a["last_hidden_state"], b["last_hidden_state"]) if isinstance(a, dict) else (a, b)
        same = torch.equal(a, b)
        ratio = times["reference"] / times["fake-quant"]
        print(f"  {arch:<10} fake-quant {times['fake-quant']:.2f} s, reference {times['reference']:.2f} s: "
              f"{ratio:.1f}x faster, outputs {'identical' if same else 'DIFFERENT'} "
              f"[target: faster and identical: {'PASS' if same and ratio > 1 else 'FAIL'}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
