"""Benchmark: the PTQ tables a user waits for, each as one whole command with an empty results store.

Times ``python -m studies.ptq --workload W --table T --store <fresh file>`` as a process (loading the model,
capturing it, every configuration of the table on the bit-exact fake-quant path, printing), one fresh store per
run so nothing is served from an earlier run, and prints the wall time and peak memory of each against issue
#14's target (MiniLM Table 4 ``vector-size`` and Tables 5-7 ``two-level`` each at most 3 min on 2 cores), with
the number of configurations the table stored.

Medians of ``--repeat`` runs (default 1: each table takes minutes). Exits 0 either way: the machine is shared
and noisy, read the figures. Run: ``python benchmarks/bench_ptq.py [--workload minilm] [--table vector-size
--table two-level] [--repeat 1]``
"""
from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 180.0


def run_table(workload: str, table: str) -> tuple[float, int, float]:
    """(wall seconds, configurations stored, peak RSS GB of the child) of one whole command on a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "ptq.sqlite"
        cmd = [sys.executable, "-m", "studies.ptq", "--workload", workload, "--table", table, "--store", str(store)]
        env = {**os.environ, "VSQSIM_NO_CACHE": "1"}
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20
        with sqlite3.connect(store) as db:
            tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
            points = sum(db.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables)
    return wall, points, peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="minilm")
    ap.add_argument("--table", action="append", help="a studies.ptq table (repeatable; default vector-size, two-level)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"python -m studies.ptq --workload {args.workload}: whole command, fresh store, median of {args.repeat}")
    for table in args.table or ["vector-size", "two-level"]:
        runs = [run_table(args.workload, table) for _ in range(args.repeat)]
        wall = statistics.median(r[0] for r in runs)
        points, peak = runs[-1][1], max(r[2] for r in runs)
        verdict = "met" if wall <= TARGET_S else "NOT met"
        print(f"  --table {table:<12} {wall:7.1f} s  ({points} stored rows, peak RSS {peak:.1f} GB)  "
              f"[target <= {TARGET_S:.0f} s: {verdict}]", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
