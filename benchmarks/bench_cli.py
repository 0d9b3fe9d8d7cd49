"""Benchmark: the whole command a user waits for, as processes, against ``python -c "import torch"`` measured in the
same run on the same machine (issue #14's targets in brackets):

- ``run.py --workload bert-base --seq 384 --timing-only``, first call (an empty ``$VSQSIM_CACHE``) [<= 4x]
- the same command repeated (lowering and layer runs from the cache) [<= 1.5x]
- ``run.py --workload resnet50 --timing-only`` repeated [<= 1.5x]
- a new datapath on a cached workload (``--arch 4/4/4/6``: its layers simulated, the lowering and the 8/8/-/-
  baseline from the cache) (no target)

Medians of ``--repeat`` runs each (the first call: one run per fresh cache directory). Prints the figures and
the targets; exits 0 either way (the machine is shared and noisy: read the ratios, not a pass/fail).
Run: ``python benchmarks/bench_cli.py [--repeat 5]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure (default 5)")
    args = ap.parse_args(argv)
    py = sys.executable
    run = [py, "run.py", "--timing-only"]
    bert = [*run, "--workload", "bert-base", "--seq", "384"]
    resnet = [*run, "--workload", "resnet50"]
    env = {k: v for k, v in os.environ.items() if k != "VSQSIM_NO_CACHE"}
    with tempfile.TemporaryDirectory() as tmp:
        first, torch_import = [], []
        for i in range(args.repeat):
            torch_import.append(wall([py, "-c", "import torch"], env))
            first.append(wall(bert, {**env, "VSQSIM_CACHE": f"{tmp}/first{i}"}))
        warm = {**env, "VSQSIM_CACHE": f"{tmp}/warm"}
        wall(bert, warm)
        wall(resnet, warm)
        repeated = [wall(bert, warm) for _ in range(args.repeat)]
        resnet_repeated = [wall(resnet, warm) for _ in range(args.repeat)]
        new_arch = []
        for i in range(min(args.repeat, 3)):
            fresh = {**env, "VSQSIM_CACHE": f"{tmp}/arch{i}"}
            wall(bert, fresh)                                   # fills the lowering and the baseline
            new_arch.append(wall([*bert, "--arch", "4/4/4/6"], fresh))
    t = statistics.median(torch_import)
    rows = [("bert-base seq 384 timing-only, first call", first, 4.0),
            ("bert-base seq 384 timing-only, repeated", repeated, 1.5),
            ("resnet50 timing-only, repeated", resnet_repeated, 1.5),
            ("bert-base seq 384, new datapath on a cached workload", new_arch, None)]
    print(f"python -c 'import torch': median {t:.2f} s over {len(torch_import)} runs")
    for name, times, target in rows:
        m = statistics.median(times)
        goal = f"[target <= {target:g}x]" if target else "[no target]"
        print(f"{name:<55} median {m:6.2f} s = {m / t:5.2f}x import torch {goal}  "
              f"(runs: {', '.join(f'{x:.2f}' for x in times)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
