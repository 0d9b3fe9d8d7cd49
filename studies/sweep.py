"""Design-space sweeps (paper Sec. 6, Table 8) into a results store, and their Pareto fronts.

``sweep(workloads, archs)`` evaluates every (workload, datapath) point: the workload is captured
and lowered once per process, every point's timing is simulated on its own iso-depth hardware
(:func:`costmodels.iso_depth_hardware`) and priced, and normalized to the same workload at
8/8/-/-. Each finished point is committed to a SQLite store at once (:mod:`studies.store`): a
killed sweep resumes where it stopped and no point is computed twice. Points run on local
processes (default) or a Dask cluster (``scheduler="tcp://..."`` or a ``distributed.Client``).

``table8_archs()`` is the paper's design space (Table 8): W, A in {3, 4, 6, 8}; ws, as in
{-, 3, 4, 6, 8, 10}; V = 16: 576 datapaths.
"""
from __future__ import annotations

import functools
import itertools
import re

import pandas as pd

from .runner import run_points
from .store import ResultStore

TABLE8_BITS = (3, 4, 6, 8)
TABLE8_SCALES = ("-", "3", "4", "6", "8", "10")


def table8_archs(unsigned_activations: bool = False) -> list[str]:
    """The 576 datapaths of the paper's Table 8 (``4U`` activations with ``unsigned_activations``)."""
    u = "U" if unsigned_activations else ""
    return [f"{w}/{a}{u}/{ws}/{as_}" for w, a, ws, as_ in
            itertools.product(TABLE8_BITS, TABLE8_BITS, TABLE8_SCALES, TABLE8_SCALES)]


def _workload(workload: str, seq: int | None):
    """``get_workload`` with the sequence length passed to the transformer workloads only."""
    from workloads.models import get_workload, workload_options
    opts = {"seq": seq} if seq is not None and "seq" in (workload_options(workload) or ()) else {}
    return get_workload(workload, **opts)


@functools.lru_cache(maxsize=8)
def _lowered(workload: str, seq: int | None):
    from mapping.capture import capture
    from mapping.lower import lower
    model, inputs, _ = _workload(workload, seq)
    return lower(capture(model, inputs))


def _hardware(hw: str, hw_hash: str | None = None):
    """The hardware ``hw`` (a preset or YAML file), checked against the content hash the point was made with."""
    from tlm import load_hardware
    spec = load_hardware(hw)
    if hw_hash is not None and spec.content_hash() != hw_hash:
        raise ValueError(f"hardware {hw!r} changed while the sweep ran (content hash {spec.content_hash()}, "
                           f"the sweep started with {hw_hash}); run the sweep again")
    return spec


@functools.lru_cache(maxsize=64)
def _cost(workload: str, seq: int | None, arch: str | None, hw_name: str, hw_hash: str | None = None):
    """(timing run, cost report, iso-depth hardware) of ``arch`` (None: the 8/8/-/- baseline at the hardware's
    V); cached per hardware content, so an edited YAML file is simulated afresh."""
    from costmodels import evaluate, iso_depth_hardware
    from mapping.network import simulate_timing
    from tlm import baseline_config, datapath_config
    base = _hardware(hw_name, hw_hash)
    cfg = baseline_config(base) if arch is None else datapath_config(arch, base)
    hw = iso_depth_hardware(base, cfg)
    run = simulate_timing(_lowered(workload, seq), cfg, hw)
    return run, evaluate([r for _, r in run.layers], hw, cfg), hw


@functools.lru_cache(maxsize=4)
def _float_model(workload: str, seq: int | None):
    """The workload captured in float64, its float output and the :class:`~workloads.models.Workload`."""
    import torch

    from mapping.backends import float_backend
    from mapping.capture import capture
    from mapping.interpret import QuantInterpreter

    from .pipeline import as_float64, main_output
    wl = _workload(workload, seq)
    with torch.no_grad():
        cap = capture(wl.model.double(), as_float64(wl.inputs))
    return cap, main_output(QuantInterpreter(cap, float_backend).forward()), wl


def point_accuracy(workload: str, seq: int | None, arch: str) -> dict:
    """The workload's accuracy metric at ``arch`` through the fast fake-quant path
    (:func:`mapping.backends.fast_backend`), which computes what the TLM computes bit for bit
    (tests/test_fakequant.py)."""
    from mapping.backends import fast_backend
    from mapping.interpret import QuantInterpreter
    from workloads.metrics import accuracy_metric

    from .pipeline import main_output
    cap, y_float, wl = _float_model(workload, seq)
    y = main_output(QuantInterpreter(cap, fast_backend(arch)).forward())
    return accuracy_metric(wl.metric, wl.info, y, y_float)


def design_point(point: dict) -> dict:
    """One sweep point ``{"workload", "arch", "hw", "hw_hash", "seq"[, "accuracy"]}`` -> its metrics (picklable).
    ``hw_hash`` (:meth:`tlm.HardwareSpec.content_hash`, optional) is checked against the hardware loaded."""
    from costmodels import normalized
    from tlm import datapath_config
    hw_name, hw_hash = point.get("hw", "magnet16"), point.get("hw_hash")
    cfg = datapath_config(point["arch"], _hardware(hw_name, hw_hash))
    run, report, hw = _cost(point["workload"], point.get("seq"), str(cfg), hw_name, hw_hash)
    _, base, _ = _cost(point["workload"], point.get("seq"), None, hw_name, hw_hash)
    norm = normalized(report, base)
    acc = {}
    if point.get("accuracy"):
        a = point_accuracy(point["workload"], point.get("seq"), str(cfg))
        acc = {"accuracy": a["value"], "accuracy_metric": a["metric"], "accuracy_kind": a["kind"]}
    return {**acc,
        "W": cfg.weight_bits, "A": cfg.act_bits, "ws": str(cfg.weight_scale), "as": str(cfg.act_scale),
        "macs": run.macs, "cycles": run.cycles, "utilization": run.utilization,
        "energy_fj_per_op": report.fj_per_op, "energy_norm": norm["energy"],
        "energy_norm_total": norm["energy_total"], "area_mm2": report.area_mm2, "area_norm": norm["area"],
        "perf_per_area_norm": norm["perf_per_area"], "tops_per_w": report.tops_per_w,
    }


def sweep(workloads, archs, *, hw: str = "magnet16", seq: int | None = None, store: str = "results/sweep.sqlite",
          scheduler="processes", workers: int | None = None, accuracy: bool = False, progress=True) -> pd.DataFrame:
    """Evaluate every (workload, arch) point; finished points come from the store.

    ``accuracy``: also measure each point's accuracy metric with real numerics (slower). ``progress``: True
    (default) shows it on stderr (a bar on a terminal, else a line per stage and every 10 s), False shows
    nothing, a callable is called with ``(done, total)``."""
    from tlm import datapath_config
    from workloads.models import workload_options

    from .cli import Progress
    workloads = [workloads] if isinstance(workloads, str) else list(workloads)
    if seq is not None and not any("seq" in (workload_options(w) or ("seq",)) for w in workloads):
        raise ValueError(f"seq={seq}: none of the workloads {', '.join(workloads)} takes a sequence length (it "
                         "applies to the transformer workloads of a sweep)")
    spec = _hardware(hw)
    archs = [str(datapath_config(a, spec)) for a in archs]   # every arch checked against the hardware up front
    hw_hash = spec.content_hash()    # the store keys a point by the hardware's content, not by its file name
    points = [{"workload": w, "arch": a, "hw": hw, "hw_hash": hw_hash, "seq": seq,
               **({"accuracy": True} if accuracy else {})} for w in workloads for a in archs]
    with ResultStore(store) as st:     # a damaged store is refused before any work
        shown = Progress("sweep", len(points)) if progress is True else None
        report = shown or (progress if callable(progress) else None)
        try:
            if scheduler == "processes":  # capture and the 8/8/-/- baseline once, inherited by the forked workers
                for w in workloads:
                    if shown:
                        shown.stage(f"capture and 8/8/-/- baseline of {w}")
                    _cost(w, seq, None, hw, hw_hash)
            if shown:
                shown.stage(f"{len(points)} point{'' if len(points) == 1 else 's'}")
            results = run_points(design_point, points, st, scheduler=scheduler, workers=workers, progress=report)
        finally:
            if shown:
                shown.close()
    return pd.DataFrame([{**p, **r} for p, r in zip(points, results, strict=True)])


def pareto_front(df: pd.DataFrame, x: str = "energy_norm", y: str = "perf_per_area_norm", *,
                 minimize_x: bool = True, maximize_y: bool = True, by: str | None = None) -> pd.DataFrame:
    """Rows no other row beats on both ``x`` and ``y`` (per group ``by``, e.g. an accuracy band)."""
    if by is not None:
        return pd.concat([pareto_front(g, x, y, minimize_x=minimize_x, maximize_y=maximize_y)
                          for _, g in df.groupby(by)])
    xs = df[x] if minimize_x else -df[x]
    ys = -df[y] if maximize_y else df[y]
    order = sorted(range(len(df)), key=lambda i: (xs.iloc[i], ys.iloc[i]))
    keep, best = [], float("inf")
    for i in order:
        if ys.iloc[i] < best:
            keep.append(i)
            best = ys.iloc[i]
    return df.iloc[sorted(keep)]


def plot_design_space(df: pd.DataFrame, path, *, color: str | None = None, title: str = "",
                      x: str = "energy_norm", y: str = "perf_per_area_norm", label: bool = True):
    """Fig. 4-6 style: energy/op vs perf/area (both normalized to 8/8/-/-), Pareto points solid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    groups = [(None, df)] if color is None else list(df.groupby(color))
    for name, g in groups:
        front = pareto_front(g, x, y)
        rest = g.drop(front.index)
        sc = ax.scatter(front[x], front[y], s=28, label=None if name is None else str(name))
        ax.scatter(rest[x], rest[y], s=18, facecolors="none", edgecolors=sc.get_facecolor()[0])
        if label:
            for _, r in front.iterrows():
                ax.annotate(r["arch"], (r[x], r[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("energy per op (normalized to 8/8/-/-)")
    ax.set_ylabel("performance per area (normalized to 8/8/-/-)")
    ax.set_title(title)
    if color is not None:
        ax.legend(title=color, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def accuracy_bands(values, edges) -> list[str]:
    """Label each accuracy with the band it falls in, as the paper's Fig. 4-6 legends do
    (e.g. edges (0.74, 0.745, 0.75, 0.755) -> ">74.0%", ...); below the lowest edge: "below"."""
    edges = sorted(edges)
    out = []
    for v in values:
        band = "below"
        for e in edges:
            if v is not None and v >= e:
                band = f">{100 * e:.1f}%"
        out.append(band)
    return out


def main(argv=None) -> int:
    """``python -m studies.sweep``: a sweep from the command line."""
    import argparse
    import sys
    ap = argparse.ArgumentParser(prog="python -m studies.sweep", description="Design-space sweep into a results store.")
    ap.add_argument("--workload", action="append", required=True, help="a workload (repeatable)")
    ap.add_argument("--archs", default="table8", help="'table8' (576 datapaths), 'table8U' (unsigned activations) "
                                                      "or a comma-separated list (4/8/6/10,4/4/4/4,R=4)")
    ap.add_argument("--seq", type=int, help="sequence length of transformer workloads")
    ap.add_argument("--hw", default="magnet16", help="hardware preset or YAML file")
    ap.add_argument("--store", default="results/sweep.sqlite", help="SQLite results store (resumable)")
    ap.add_argument("--scheduler", default="processes", help="processes, serial, or a Dask scheduler address")
    ap.add_argument("--workers", type=int, help="local worker processes")
    ap.add_argument("--accuracy", action="store_true", help="also measure each point's accuracy (real numerics)")
    ap.add_argument("--csv", help="write the points as CSV")
    ap.add_argument("--plot", help="write the energy vs perf/area scatter as PNG")
    args = ap.parse_args(argv)
    from tlm import datapath_config, load_hardware

    from .cli import PLOT_SUFFIXES, check_output_path, one_line, user_errors
    from .runner import SweepInterrupted
    prog = "python -m studies.sweep"
    try:
        spec = load_hardware(args.hw)
    except (ValueError, OSError) as e:
        ap.exit(2, f"{prog}: error: --hw: {str(e).splitlines()[0]}\n")
    if args.archs in ("table8", "table8U"):
        archs = table8_archs(unsigned_activations=args.archs == "table8U")
    else:
        # "4/8/6/10,4/4/4/4,R=4": a comma starts a new arch unless an option (R=, V=) follows it
        archs = [a.strip() for a in re.split(r";|,(?!\s*[A-Za-z]+\s*=)", args.archs) if a.strip()]
        if not archs:
            ap.exit(2, f"{prog}: error: --archs is empty; give 'table8', 'table8U' or datapaths such as "
                       "8/8/-/-,4/8/6/10\n")
    try:
        archs = [str(datapath_config(a, spec)) for a in archs]
    except ValueError as e:
        ap.exit(2, f"{prog}: error: --archs: {e}\n")
    for flag, path, suffixes in (("--csv", args.csv, None), ("--plot", args.plot, PLOT_SUFFIXES)):
        if path is not None and (why := check_output_path(path, flag, suffixes)):
            ap.exit(2, f"{prog}: error: {why}\n")
    try:
        df = sweep(args.workload, archs, hw=args.hw, seq=args.seq, store=args.store, scheduler=args.scheduler,
                   workers=args.workers, accuracy=args.accuracy)
    except SweepInterrupted as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 130
    except user_errors() as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    front = pareto_front(df, by="workload")
    print(front[["workload", "arch", "energy_norm", "perf_per_area_norm", "area_norm"]
                + (["accuracy"] if args.accuracy else [])].to_string(index=False))
    if args.csv:
        df.to_csv(args.csv, index=False)
    if args.plot:
        plot_design_space(df, args.plot, color="workload" if len(args.workload) > 1 else None,
                          title=", ".join(args.workload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
