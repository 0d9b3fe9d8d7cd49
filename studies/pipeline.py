"""The whole pipeline of one design point (DESIGN.md, "How data flows"), as ``run.py`` runs it.

Named stages with typed results, each run once: :func:`datapath` (arch and hardware: :class:`Datapath`),
:func:`load_workload` (a :class:`workloads.models.Workload`), :func:`simulate` (capture, lower once, TLM,
accuracy: :class:`Simulation`), :func:`price` (cost model, absolute and normalized to the same hardware at
8/8/-/-: :class:`Costs`) and :func:`report`, the one owner of the report's schema (see
:data:`SCHEMA_KEYS`): same workload, arch, options and seed give the same report.
:func:`run_design_point` chains them.

Hardware: the preset's buffers are sized per datapath to hold as many vectors as at 8/8/-/-
(:func:`costmodels.iso_depth_hardware`), so lower precision and scale storage show up as area,
as the paper's Fig. 4 compares; the TLM runs on that hardware.

Accuracy: with real numerics the model's output through the TLM is compared with the float64
model: top-1 accuracy where the workload has labels (``digits-cnn``), otherwise fidelity to the
float model (cosine similarity and SQNR of the output; top-1 agreement for classifiers).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from costmodels import CostReport, evaluate, iso_depth_hardware, normalized
from mapping.layers import LoweredModel
from mapping.timing import NetworkRun, simulate_timing
from tlm import baseline_config, datapath_config, load_hardware
from tlm.hardware import HardwareSpec
from vsquant import QuantConfig

from . import cache

if TYPE_CHECKING:
    from workloads.models import Workload

SCHEMA_KEYS = ("workload", "arch", "hardware", "options", "totals", "accuracy", "layers", "ops")


def as_float64(inputs):
    import torch
    if isinstance(inputs, torch.Tensor):
        return inputs.double() if inputs.is_floating_point() else inputs
    if isinstance(inputs, dict):
        return {k: as_float64(v) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(as_float64(v) for v in inputs)
    return inputs


def main_output(out) -> np.ndarray:
    """The tensor a metric looks at: ``last_hidden_state`` of a transformer, else the first output."""
    return _main_output(out)[1]


def _main_output(out) -> tuple[str, np.ndarray]:
    name = "output"
    if isinstance(out, dict) or hasattr(out, "keys"):
        name = "last_hidden_state" if "last_hidden_state" in out else next(iter(out.keys()))
        out = out[name]
    elif isinstance(out, (tuple, list)):
        name, out = "output[0]", out[0]
    return name, out.detach().double().numpy()


def measured_on(info: dict, out) -> str:
    """What an accuracy figure was measured on: the workload's data and the output tensor compared."""
    name, y = _main_output(out)
    data = info.get("data", "the workload's example inputs")
    return f"{data}; {name} {'x'.join(map(str, y.shape))}"


def json_safe(obj):
    """The report as standard JSON values: NaN and infinities become ``null`` (a report says why beside them)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(report: dict, path) -> None:
    """Write a report (the schema of :data:`SCHEMA_KEYS`) as standard JSON: no NaN/Infinity tokens."""
    import json
    with open(path, "w") as f:
        json.dump(json_safe(report), f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")


def _layers(run: NetworkRun, report) -> list[dict]:
    rows = []
    table = run.layer_table()
    for row, cost in zip(table.to_dict("records"), report.layers, strict=True):
        rows.append({
            "name": row["name"], "kind": row["kind"], "M": int(row["M"]), "K": int(row["K"]), "N": int(row["N"]),
            "gemms": int(row["gemms"]), "macs": int(row["macs"]), "cycles": int(row["cycles"]),
            "ideal_cycles": int(row["ideal_cycles"]), "utilization": float(row["utilization"]),
            "bottleneck": row["bottleneck"], "tiling": row["tiling"],
            "gated": None if row["gated"] is None or row["gated"] != row["gated"] else int(row["gated"]),
            "energy_pj": cost["fj_per_op"] * 2 * cost["macs"] / 1e3,
            "energy_pj_total": cost["fj_per_op_total"] * 2 * cost["macs"] / 1e3,
        })
    return rows


@dataclass(frozen=True)
class Datapath:
    """Stage 1, the design point's hardware: the datapath ``cfg`` and its 8/8/-/- ``baseline`` on the preset
    ``preset`` (``base``), each on hardware whose buffers hold as many vectors as at 8/8/-/-."""

    preset: str
    base: HardwareSpec
    cfg: QuantConfig
    baseline: QuantConfig
    hw: HardwareSpec          # the iso-depth hardware of cfg (the TLM runs on it)
    hw_ref: HardwareSpec      # the iso-depth hardware of the baseline
    planes: int | None = None  # a bit-serial datapath's run-time precision: the weights' top planes (None: all)
    midpoint: bool = False     # ... with the dropped planes' mean (vsquant.bitserial)


@dataclass(eq=False)
class Simulation:
    """Stage 2, what the hardware did: the lowering (once), the TLM run of the design point, and the accuracy
    measured on its real outputs (or why not)."""

    lowered: LoweredModel
    run: NetworkRun
    accuracy: dict


@dataclass(frozen=True)
class Costs:
    """Stage 3, the price: cost reports of the design point and of its 8/8/-/- baseline (simulated for timing on
    the same lowering), and their ratios."""

    base_run: NetworkRun
    cost: CostReport
    base: CostReport
    norm: dict


def datapath(arch: str, hw: str | HardwareSpec = "magnet16", *, scale_product=None,
             preset: str | None = None, planes: int | None = None, midpoint: bool = False) -> Datapath:
    """Stage 1: ``arch`` on the hardware ``hw`` (a preset name, a YAML path or a loaded spec; ``preset``: the
    name reports give it, by default ``hw`` itself or the spec's name); on a bit-serial ``hw``, ``planes`` and
    ``midpoint`` set the weights' run-time precision (checked here, as the accelerator checks them)."""
    from tlm import Accelerator
    base_hw = load_hardware(hw)
    cfg = datapath_config(arch, base_hw, scale_product=scale_product)
    baseline = baseline_config(base_hw)
    preset = preset or (hw if isinstance(hw, str) else base_hw.name)
    if midpoint and planes is None:
        raise ValueError("midpoint adds the dropped planes' mean: it needs planes (fewer than the weights' bits)")
    Accelerator(base_hw, cfg, planes=planes, midpoint=midpoint)
    return Datapath(preset, base_hw, cfg, baseline, iso_depth_hardware(base_hw, cfg),
                    iso_depth_hardware(base_hw, baseline), planes, midpoint)


def load_workload(workload: str, *, seq: int | None = None, batch: int | None = None, seed: int = 0,
                  timing_only: bool = False, checkpoint: str | None = None) -> Workload:
    """The workload with the options it takes (the seed where it has random weights or inputs; shapes only,
    no operand data, for a timing run of a single layer)."""
    import torch

    from workloads.models import get_workload, workload_options
    opts: dict = {k: v for k, v in dict(seq=seq, batch=batch).items() if v is not None}
    name = f"checkpoint:{checkpoint}" if checkpoint else workload
    takes = workload_options(name) or frozenset()
    if "seed" in takes:
        opts.setdefault("seed", seed)
    if timing_only and "tensors" in takes:
        opts["tensors"] = False
    torch.manual_seed(seed)
    return get_workload(name, **opts)


def simulate(wl: Workload, dp: Datapath, *, timing_only: bool = False, on_unknown: str = "error",
             progress=None, timing=simulate_timing) -> Simulation:
    """Stage 2: capture and lower the workload once, run it on the TLM (timing only, or with real tensors and
    the float64 model beside it for the accuracy). ``timing``: how a lowering is simulated without tensors
    (:func:`mapping.timing.simulate_timing`, or :func:`cached_timing`'s)."""
    from mapping.capture import capture
    from mapping.lower import lower
    step = progress or (lambda *a: None)
    model, inputs, info = wl
    if timing_only:
        step("capture")
        cap = capture(model, inputs)
        step("lower")
        low = lower(cap, on_unknown=on_unknown)
        step("simulate")
        run = timing(low, dp.cfg, dp.hw, planes=dp.planes, midpoint=dp.midpoint)
        return Simulation(low, run, _not_measured(info))
    from mapping.backends import float_backend
    from mapping.interpret import QuantInterpreter
    from mapping.network import simulate_numerics
    from workloads.metrics import accuracy_metric
    step("capture")
    cap = capture(model.double(), as_float64(inputs))
    step("float reference")
    float_run = QuantInterpreter(cap, float_backend, on_unknown=on_unknown)
    y_float = main_output(float_run.forward())
    step("simulate")
    run = simulate_numerics(cap, dp.cfg, dp.hw, on_unknown=on_unknown, lowered=float_run.lowered, planes=dp.planes,
                            midpoint=dp.midpoint)
    step("accuracy")
    accuracy = {**accuracy_metric(wl.metric, info, main_output(run.output), y_float),
                "measured_on": measured_on(info, run.output)}
    return Simulation(run.lowered, run, accuracy)


def _not_measured(info: dict) -> dict:
    return {"metric": info.get("metric"), "kind": "not measured (timing only)", "value": None}


# -- the persistent cache of timing-only runs (studies.cache) ----------------------------------------

@dataclass(frozen=True)
class WorkloadShapes:
    """What a timing-only run needs of a workload once it is lowered: its name, its info (plain values: name,
    metric, what it is measured on) and the lowering without the graph (:mod:`studies.cache` stores it)."""

    name: str
    info: dict
    lowered: LoweredModel


def timing_key(workload: str, *, seq: int | None = None, batch: int | None = None, seed: int = 0,
               checkpoint: str | None = None, on_unknown: str = "error") -> tuple | None:
    """The cache key of a workload's lowering: its name and the options that shape it (the seed only where the
    workload is user code: a named workload's shapes do not depend on its random weights), a ``module:`` file's
    and a checkpoint's ``config.json``'s contents; None where there is nothing to key on (a missing file: the
    run itself reports it)."""
    parts: list = ["lowered", workload, seq, batch, on_unknown]
    files = []
    if workload.startswith("module:"):
        files.append(Path(workload[len("module:"):].rsplit(":", 1)[0]))
        parts.append(seed)
    if checkpoint:
        files.append(Path(checkpoint) / "config.json")
        parts += [str(Path(checkpoint).resolve()), seed]
    for f in files:
        try:
            parts.append(hashlib.sha256(f.read_bytes()).hexdigest())
        except OSError:
            return None
    return tuple(parts)


def shapes_of(wl: Workload, lowered: LoweredModel) -> WorkloadShapes:
    """A lowering as the cache keeps it: MAC layers and the node table (plain columns), no graph, no tensors."""
    table = lowered.table.copy()
    for col in table.columns:
        if table[col].dtype == object:
            table[col] = [v if v is None or isinstance(v, (str, int, float, bool)) else str(v) for v in table[col]]
    info = {k: v for k, v in wl.info.items() if v is None or isinstance(v, (str, int, float, bool))}
    return WorkloadShapes(wl.name, info, LoweredModel(list(lowered.layers), table, None))


def cached_timing(key: tuple, stats: dict | None = None):
    """:func:`mapping.timing.simulate_timing` through the cache: the layer runs of the lowering ``key`` at a
    datapath on a hardware are loaded when stored, else simulated and stored (``stats`` records hit or miss per
    datapath)."""
    def timing(low: LoweredModel, cfg: QuantConfig, hw: HardwareSpec, planes: int | None = None,
               midpoint: bool = False) -> NetworkRun:
        k = ("timing", key, repr(QuantConfig.parse(cfg)), repr(hw)) + ((planes, midpoint) if planes else ())
        runs = cache.load(k, list)
        hit = runs is not None and len(runs) == len(low.layers)
        if not hit:
            runs = [r for _, r in simulate_timing(low, cfg, hw, planes=planes, midpoint=midpoint).layers]
            cache.store(k, runs)
        if stats is not None:
            stats[str(cfg)] = "hit" if hit else "miss"
        assert runs is not None
        return NetworkRun(QuantConfig.parse(cfg), hw, list(zip(low.layers, runs, strict=True)), lowered=low)
    return timing


def price(wl: Workload | WorkloadShapes, dp: Datapath, sim: Simulation, *, timing=simulate_timing,
          progress=None) -> Costs:
    """Stage 3: energy and area of the design point and of its 8/8/-/- baseline (costmodels.evaluate; the
    baseline simulated for timing on the same lowering, with ``timing``), normalized."""
    step = progress or (lambda *a: None)
    if not sim.run.layers:
        raise ValueError(f"workload {wl.info.get('name', wl.name)!r} has no MAC layer (linear, conv2d or matmul) "
                         "for the accelerator to run; nothing to simulate or price")
    step("simulate 8/8/-/-")
    base_run = timing(sim.lowered, dp.baseline, dp.hw_ref)
    step("cost")
    cost = evaluate([r for _, r in sim.run.layers], dp.hw, dp.cfg)
    base = evaluate([r for _, r in base_run.layers], dp.hw_ref, dp.baseline)
    return Costs(base_run, cost, base, normalized(cost, base))


def report(wl: Workload | WorkloadShapes, dp: Datapath, sim: Simulation, costs: Costs, *, seq: int | None = None,
           batch: int | None = None, seed: int = 0, timing_only: bool = False,
           checkpoint: str | None = None) -> dict:
    """The report of one design point: the one owner of the JSON schema (:data:`SCHEMA_KEYS`)."""
    run, low, hw_cfg, cfg = sim.run, sim.lowered, dp.hw, dp.cfg
    cost, norm = costs.cost, costs.norm
    where = low.table["where"].value_counts().to_dict() if "where" in low.table else {}
    return {
        "workload": wl.info.get("name", wl.name),
        "arch": str(cfg),
        "hardware": {"preset": dp.preset, "name": hw_cfg.name, "num_pes": hw_cfg.num_pes, "lanes": hw_cfg.pe.lanes,
                     "datapath": hw_cfg.pe.datapath,
                     "vector_size": hw_cfg.vector_size, "clock_hz": hw_cfg.clock_hz,
                     "technology_nm": hw_cfg.technology_nm, "weight_buffer_bits": hw_cfg.pe.weight_buffer_bits,
                     "activation_buffer_bits": hw_cfg.pe.activation_buffer_bits},
        "options": {"seq": seq, "batch": batch, "seed": seed, "timing_only": timing_only,
                    "scale_product": cfg.scale_product_bits, "checkpoint": checkpoint,
                    "planes": dp.planes, "midpoint": dp.midpoint},
        "totals": {
            "macs": int(run.macs), "cycles": int(run.cycles), "ideal_cycles": int(run.ideal_cycles),
            "latency_s": run.latency_s, "utilization": run.utilization,
            "energy_fj_per_op": cost.fj_per_op, "energy_fj_per_op_total": cost.fj_per_op_total,
            "energy_norm": norm["energy"], "energy_norm_total": norm["energy_total"],
            "tops_per_w": cost.tops_per_w, "area_mm2": cost.area_mm2, "area_norm": norm["area"],
            "tops_per_mm2": cost.tops_per_mm2, "perf_per_area_norm": norm["perf_per_area"],
            "mac_layers": len(run.layers), "ops_by_unit": {k: int(v) for k, v in sorted(where.items())},
        },
        "accuracy": sim.accuracy,
        "layers": _layers(run, cost),
        "ops": [{"node": r["node"], "op": r["op"], "where": r["where"]} for r in low.table.to_dict("records")
                if r["where"] in ("ppu", "host")],
    }


def run_design_point(workload: str, arch: str, *, hw: str = "magnet16", seq: int | None = None,
                     batch: int | None = None, scale_product=None, timing_only: bool = False,
                     checkpoint: str | None = None, seed: int = 0, on_unknown: str = "error",
                     progress=None, return_costs: bool = False, graph_path: str | None = None,
                     dp: Datapath | None = None, use_cache: bool = False, stats: dict | None = None):
    """Run one workload at one datapath through the stages (:func:`datapath`, :func:`load_workload`,
    :func:`simulate`, :func:`price`, :func:`report`); returns the report dict (JSON-serializable), and with
    ``return_costs`` also the two :class:`costmodels.CostReport` (design point, 8/8/-/- baseline). ``dp``: the
    stage-1 result when the caller has it already (run.py validates the arch with it).

    ``use_cache`` (timing-only runs without ``graph_path``): the lowering and the layer runs of the design point
    and of its baseline come from :mod:`studies.cache` when stored there (the same report, without torch, capture
    or simulation), and are stored when not; ``stats`` receives ``cache`` (``lowering``: hit, miss or off, and
    hit or miss per datapath)."""
    step = progress or (lambda *a: None)
    dp = dp or datapath(arch, hw, scale_product=scale_product)
    key = (timing_key(workload, seq=seq, batch=batch, seed=seed, checkpoint=checkpoint, on_unknown=on_unknown)
           if use_cache and timing_only and not graph_path and cache.enabled() else None)
    runs: dict = {}
    timing = cached_timing(key, runs) if key else simulate_timing
    shapes = cache.load(key, WorkloadShapes) if key else None
    if shapes is not None:
        step("lowering (cached)")
        wl: Workload | WorkloadShapes = shapes
        step("simulate")
        sim = Simulation(shapes.lowered, timing(shapes.lowered, dp.cfg, dp.hw, planes=dp.planes, midpoint=dp.midpoint),
                         _not_measured(shapes.info))
    else:
        step("load workload")
        wl = load_workload(workload, seq=seq, batch=batch, seed=seed, timing_only=timing_only, checkpoint=checkpoint)
        sim = simulate(wl, dp, timing_only=timing_only, on_unknown=on_unknown, progress=progress, timing=timing)
        if key:
            cache.store(key, shapes_of(wl, sim.lowered))
    if graph_path:
        from mapping.capture import export_graph
        low = sim.lowered
        export_graph(low.captured, graph_path, extra={r["node"]: {"where": r["where"]} for r in
                                                       low.table.to_dict("records")})
    costs = price(wl, dp, sim, timing=timing, progress=progress)
    if stats is not None:
        stats["cache"] = {"lowering": "off" if not key else "hit" if shapes is not None else "miss", **runs}
    out = report(wl, dp, sim, costs, seq=seq, batch=batch, seed=seed, timing_only=timing_only, checkpoint=checkpoint)
    return (out, costs.cost, costs.base) if return_costs else out
