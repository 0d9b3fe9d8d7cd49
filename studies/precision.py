"""Run-time precision on a bit-serial datapath: accuracy, cycles and energy per number of weight bit planes.

PrecisionBatching (Lam, Yedidia, Banbury, Janapa Reddi, arXiv:2003.00822, 2020) runs the same stored weights
with their top k bitlayers, k chosen at run time, and trades accuracy for speed (its Fig. 1-style curve). Here
the stored weights are W-bit (8/8/-/-: per-channel 8-bit weights, per-layer 8-bit activations), the PE is
bit-serial (``pe.datapath: bit-serial``, the preset's equal-area ``bit_serial_lanes``; :mod:`vsquant.bitserial`)
and each k = 1 .. W is measured:

- accuracy of the top-k-plane weights (:func:`vsquant.bitserial.truncate_weight`, through the fake-quant path,
  equal bit for bit to the bit-serial TLM: tests/test_bitserial.py) against the float model;
- cycles and energy per op of the whole network on the TLM (timing only) with k passes per weight vector.

Truncation drops the low planes and biases every weight by -(2^(W-k) - 1)/2 LSB on average; the ``+ midpoint``
rows add that mean back (one activation sum per PE and a shift-add per dot product, :mod:`vsquant.bitserial`).
Beside them, VS-Quant at the same effective bits (Dai et al., MLSys 2021): weights quantized to k bits with a
6-bit integer per-vector scale (``k/8/6/-``; k >= 2), on the same bit-serial PE (k passes) and on the
bit-parallel PE (magnet16, whose cycles do not fall with k), and the parallel 8/8/-/- baseline every energy is
normalized to.

``python -m studies.precision [--workloads minilm digits-cnn] [--csv PATH]`` prints the table.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pandas as pd

STORED = "8/8/-/-"                   # the stored weights whose top planes run (per-channel, PrecisionBatching-like)
VSQUANT = "{k}/8/6/-"                # VS-Quant at k-bit weights: 6-bit integer per-vector weight scales
DEFAULT_WORKLOADS = ("minilm", "digits-cnn")


def _accuracy(workload: str, arch: str, planes: int | None = None, midpoint: bool = False) -> dict:
    """The workload's metric at ``arch`` (the top ``planes`` weight planes) through the fake-quant path."""
    from mapping.backends import FakeQuantBackend
    from mapping.interpret import QuantInterpreter
    from workloads.metrics import accuracy_metric

    from .pipeline import main_output
    from .sweep import _float_model
    cap, y_float, wl = _float_model(workload, None)
    y = main_output(QuantInterpreter(cap, FakeQuantBackend(arch, planes=planes, midpoint=midpoint)).forward())
    return accuracy_metric(wl.metric, wl.info, y, y_float)


def _cost(workload: str, arch: str, hw_name: str, datapath: str, planes: int | None = None,
          midpoint: bool = False) -> tuple[int, float]:
    """(cycles, PE-array fJ/op) of the network at ``arch`` on ``hw_name`` built ``datapath`` (iso-depth buffers)."""
    from costmodels import evaluate, iso_depth_hardware
    from mapping.timing import simulate_timing
    from tlm import datapath_config, load_hardware

    from .sweep import _lowered
    base = load_hardware(hw_name).with_datapath(datapath)
    cfg = datapath_config(arch, base)
    hw = iso_depth_hardware(base, cfg)
    run = simulate_timing(_lowered(workload, None), cfg, hw, planes=planes, midpoint=midpoint)
    return run.cycles, evaluate([r for _, r in run.layers], hw, cfg).fj_per_op


#: the schemes of the table: (name, arch at k bits, datapath, run-time planes?, midpoint)
SCHEMES = (
    ("bit-serial top-k of 8/8/-/-", STORED, "bit-serial", True, False),
    ("bit-serial top-k of 8/8/-/- + midpoint", STORED, "bit-serial", True, True),
    ("VS-Quant k/8/6/- bit-serial", VSQUANT, "bit-serial", False, False),
    ("VS-Quant k/8/6/- parallel", VSQUANT, "parallel", False, False),
)


def precision_table(workloads: Sequence[str] = DEFAULT_WORKLOADS, hw: str = "magnet16",
                    ks: Sequence[int] | None = None, progress=None) -> pd.DataFrame:
    """One row per (workload, weight bits k, scheme): accuracy, cycles, fJ/op and both relative to the parallel
    8/8/-/- baseline (the first row of a workload). Schemes (:data:`SCHEMES`): the stored 8/8/-/- weights'
    top k planes on the bit-serial PE (truncated, and with the dropped planes' mean), and VS-Quant's ``k/8/6/-``
    (k-bit weights with 6-bit per-vector scales, k >= 2) on the bit-serial and on the parallel PE. ``ks``: the k
    to run (default W .. 1)."""
    from vsquant import QuantConfig
    W = QuantConfig.parse(STORED).weight_bits
    rows = []
    step = progress or (lambda *a: None)
    for wl in workloads:
        rows.append(_row(wl, W, "parallel 8/8/-/-", STORED, "parallel", _accuracy(wl, STORED),
                         _cost(wl, STORED, hw, "parallel")))
        for k in sorted(ks or range(1, W + 1), reverse=True):
            step(f"{wl}: k={k}")
            vs: dict | None = None
            for scheme, arch, dp, runtime, mid in SCHEMES:
                if runtime:
                    if mid and k == W:
                        continue            # all planes: nothing dropped
                    planes = k if k < W else None
                    rows.append(_row(wl, k, scheme, arch, dp, _accuracy(wl, arch, planes, mid),
                                     _cost(wl, arch, hw, dp, planes, mid)))
                elif k >= 2:                # VS-Quant k-bit weights (2 bits at least)
                    a = arch.format(k=k)
                    vs = vs or _accuracy(wl, a)
                    rows.append(_row(wl, k, scheme, a, dp, vs, _cost(wl, a, hw, dp)))
    df = pd.DataFrame(rows)
    base = df.groupby("workload", sort=False)[["cycles", "fj_per_op"]].transform("first")
    df.insert(df.columns.get_loc("cycles") + 1, "cycles_vs_base", df["cycles"] / base["cycles"])
    df["energy_vs_base"] = df["fj_per_op"] / base["fj_per_op"]
    return df


def _row(wl: str, k: int, scheme: str, arch: str, dp: str, acc: dict, cost: tuple[int, float]) -> dict:
    return {"workload": wl, "k": k, "scheme": scheme, "arch": arch, "datapath": dp, "metric": acc["metric"],
            "accuracy": acc["value"], "float_accuracy": acc.get("float_value"), "sqnr_db": acc.get("sqnr_db"),
            "cycles": int(cost[0]), "fj_per_op": cost[1]}


def format_table(df: pd.DataFrame) -> str:
    """The table as text: per workload, the metric and a row per (k, scheme)."""
    out = []
    for wl, g in df.groupby("workload", sort=False):
        out.append(f"{wl}: {g['metric'].iloc[0]} (float model {g['float_accuracy'].iloc[0]})"
                   if g["float_accuracy"].notna().any() else f"{wl}: {g['metric'].iloc[0]}")
        cols = ["k", "scheme", "arch", "accuracy", "sqnr_db", "cycles", "cycles_vs_base", "fj_per_op",
                "energy_vs_base"]
        out.append(g[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    from .cli import Progress, check_output_path, one_line, user_errors
    ap = argparse.ArgumentParser(prog="python -m studies.precision", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", nargs="+", default=list(DEFAULT_WORKLOADS))
    ap.add_argument("--hw", default="magnet16", help="a preset stating bit_serial_lanes (default magnet16)")
    ap.add_argument("--planes", type=int, nargs="+", metavar="K", help="the k to run (default 8 .. 1)")
    ap.add_argument("--csv", metavar="PATH", help="write the table as CSV")
    args = ap.parse_args(argv)
    if args.csv and (why := check_output_path(args.csv, "--csv", (".csv",))):
        ap.error(why)
    if args.planes and not all(1 <= k <= 8 for k in args.planes):
        ap.error(f"--planes: each k must be in [1, 8] (the stored weights' bits), got {args.planes}")
    bar = Progress("precision", len(args.workloads) * len(args.planes or range(8)), unit="k")
    try:
        df = precision_table(args.workloads, args.hw, args.planes,
                             progress=lambda stage: (bar.stage(stage), bar(bar.done + 1)))
    except user_errors() as e:
        bar.close()
        print(f"studies.precision: error: {one_line(e)}", file=sys.stderr)
        return 2
    bar.close()
    print(format_table(df))
    if args.csv:
        df.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
