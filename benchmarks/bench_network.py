"""Benchmark: whole networks through the TLM (issue targets in brackets).

- BERT-base at sequence 384, timing only [< 2 s]   (ZigZag 48 s, SCALE-Sim > 40 min here)
- ResNet50 at 224, timing only [< 2 s]             (ZigZag 250 s, SCALE-Sim 421 s here)
- BERT-base at sequence 128 with real numerics vs the fp32 PyTorch forward of the same model,
  measured in this run [< 5x]. "cold" is the first forward: it quantizes all weights (an offline
  step in the hardware flow) and simulates each distinct layer shape tile by tile; "warm" is a
  later forward with the weights quantized, as inference runs.
- peak memory of BERT-base at sequence 384 with real numerics [< 4 GB], in a child process.

Capture (torch.export + shape propagation) is timed separately: it is done once per model.
Run: ``python benchmarks/bench_network.py [--arch 4/8/6/10] [--skip-memory]``
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch


def _t(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def timing_only(name, arch, hw, **kw):
    from mapping.capture import capture
    from mapping.lower import lower
    from mapping.network import simulate_timing
    from workloads.models import get_workload
    model, inputs, _ = get_workload(name, **kw)
    t_cap, low = _t(lambda: lower(capture(model, inputs)))
    t_sim, run = _t(lambda: simulate_timing(low, arch, hw))
    return t_cap, t_sim, run


def numerics_vs_fp32(arch, hw, seq):
    from mapping.backends import tlm_backend
    from mapping.capture import capture
    from mapping.interpret import QuantInterpreter
    from workloads.models import get_workload
    model, inputs, _ = get_workload("bert-base", seq=seq)
    m32 = model.float()

    def fp32():
        with torch.no_grad():
            return m32(**inputs) if isinstance(inputs, dict) else m32(*inputs)
    fp32()
    cap = capture(model.double(), inputs)
    record = []
    interp = QuantInterpreter(cap, tlm_backend(arch, hw, record))
    t_fp32 = []
    t_tlm = []
    for _i in range(4):
        t_fp32.append(_t(fp32)[0])
        record.clear()
        t_tlm.append(_t(interp.forward)[0])
    return t_fp32, t_tlm


def peak_memory_child(arch, seq):
    code = f"""
import resource, torch
from mapping.capture import capture
from mapping.backends import tlm_backend
from mapping.interpret import QuantInterpreter
from tlm import load_hardware
from workloads.models import get_workload
model, inputs, _ = get_workload("bert-base", seq={seq})
cap = capture(model.double(), inputs)
QuantInterpreter(cap, tlm_backend({arch!r}, load_hardware("magnet16"))).forward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024 / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="4/8/6/10")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    from tlm import load_hardware
    hw = load_hardware("magnet16")
    res = {}
    for name, kw in (("bert-base", dict(seq=384)), ("resnet50", {})):
        arch = "4/4U/4/6" if name == "resnet50" else args.arch
        t_cap, t_sim, run = timing_only(name, arch, hw, **kw)
        res[name] = dict(capture_s=t_cap, timing_s=t_sim, layers=len(run.layers), macs=run.macs, cycles=run.cycles,
                         utilization=run.utilization)
        print(f"{name} {kw or ''} at {arch}, timing only: {t_sim:.2f} s  [target < 2 s: "
              f"{'PASS' if t_sim < 2 else 'FAIL'}]  (capture+lower {t_cap:.1f} s); {len(run.layers)} MAC layers, "
              f"{run.macs / 1e9:.3f} GMAC, {run.cycles:,} cycles = {run.latency_s * 1e3:.2f} ms at "
              f"{hw.clock_hz / 1e9:g} GHz, utilization {run.utilization:.1%}")
    t_fp32, t_tlm = numerics_vs_fp32(args.arch, hw, 128)
    fp32 = sorted(t_fp32)[len(t_fp32) // 2]
    warm = sorted(t_tlm[1:])[len(t_tlm[1:]) // 2]
    print(f"bert-base seq 128 at {args.arch}, real numerics through the TLM: fp32 forward {fp32:.3f} s (median); "
          f"TLM cold {t_tlm[0]:.2f} s = {t_tlm[0] / fp32:.1f}x, warm {warm:.2f} s = {warm / fp32:.1f}x  "
          f"[target < 5x: warm {'PASS' if warm / fp32 < 5 else 'FAIL'}, "
          f"cold {'PASS' if t_tlm[0] / fp32 < 5 else 'FAIL'}]")
    res["bert_numerics"] = dict(fp32_s=fp32, tlm_cold_s=t_tlm[0], tlm_warm_s=warm)
    if not args.skip_memory:
        gb = peak_memory_child(args.arch, 384)
        print(f"bert-base seq 384 real numerics, peak RSS {gb:.2f} GB  [target < 4 GB: {'PASS' if gb < 4 else 'FAIL'}]")
        res["peak_rss_gb_seq384"] = gb
    print(json.dumps(res, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
