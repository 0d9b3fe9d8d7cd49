"""The whole pipeline of one design point (DESIGN.md, "How data flows"), as ``run.py`` runs it.

workload -> capture -> lower -> TLM (timing only, or real numerics) -> cost model (absolute and
normalized to the same hardware at 8/8/-/-) -> accuracy metric -> a report dict with a stable
schema (see :data:`SCHEMA_KEYS`): same workload, arch, options and seed give the same report.

Hardware: the preset's buffers are sized per datapath to hold as many vectors as at 8/8/-/-
(:func:`costmodels.iso_depth_hardware`), so lower precision and scale storage show up as area,
as the paper's Fig. 4 compares; the TLM runs on that hardware.

Accuracy: with real numerics the model's output through the TLM is compared with the float64
model: top-1 accuracy where the workload has labels (``digits-cnn``), otherwise fidelity to the
float model (cosine similarity and SQNR of the output; top-1 agreement for classifiers).
"""
from __future__ import annotations

import numpy as np
import torch

from costmodels import evaluate, iso_depth_hardware, normalized
from mapping.backends import float_backend
from mapping.capture import capture, export_graph
from mapping.interpret import QuantInterpreter
from mapping.lower import lower
from mapping.network import NetworkRun, simulate_numerics, simulate_timing
from tlm import baseline_config, datapath_config, load_hardware
from workloads.metrics import accuracy_metric
from workloads.models import get_workload, workload_options

SCHEMA_KEYS = ("workload", "arch", "hardware", "options", "totals", "accuracy", "layers", "ops")


def as_float64(inputs):
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


def run_design_point(workload: str, arch: str, *, hw: str = "magnet16", seq: int | None = None,
                     batch: int | None = None, scale_product=None, timing_only: bool = False,
                     checkpoint: str | None = None, seed: int = 0, on_unknown: str = "error",
                     progress=None, return_costs: bool = False, graph_path: str | None = None):
    """Run one workload at one datapath; returns the report dict (JSON-serializable), and with
    ``return_costs`` also the two :class:`costmodels.CostReport` (design point, 8/8/-/- baseline)."""
    base_hw = load_hardware(hw)
    cfg = datapath_config(arch, base_hw, scale_product=scale_product)
    baseline = baseline_config(base_hw)
    hw_cfg = iso_depth_hardware(base_hw, cfg)
    hw_ref = iso_depth_hardware(base_hw, baseline)
    opts = {k: v for k, v in dict(seq=seq, batch=batch).items() if v is not None}
    name = f"checkpoint:{checkpoint}" if checkpoint else workload
    takes = workload_options(name) or frozenset()
    if "seed" in takes:
        opts.setdefault("seed", seed)   # the workloads with random weights or inputs take the seed
    if timing_only and "tensors" in takes:
        opts["tensors"] = False         # shapes only: a timing run needs no operand data
    torch.manual_seed(seed)
    wl = get_workload(name, **opts)
    model, inputs, info = wl
    step = progress or (lambda *a: None)

    if timing_only:
        step("capture")
        low = lower(capture(model, inputs), on_unknown=on_unknown)
        step("simulate")
        run = simulate_timing(low, cfg, hw_cfg)
        accuracy = {"metric": info.get("metric"), "kind": "not measured (timing only)", "value": None}
    else:
        step("capture")
        cap = capture(model.double(), as_float64(inputs))
        step("float reference")
        float_run = QuantInterpreter(cap, float_backend, on_unknown=on_unknown)
        y_float = main_output(float_run.forward())
        step("simulate")
        run = simulate_numerics(cap, cfg, hw_cfg, on_unknown=on_unknown, lowered=float_run.lowered)  # lowered once
        accuracy = {**accuracy_metric(wl.metric, info, main_output(run.output), y_float),
                    "measured_on": measured_on(info, run.output)}
        low = run.lowered
    if graph_path:
        export_graph(low.captured, graph_path, extra={r["node"]: {"where": r["where"]} for r in
                                                       low.table.to_dict("records")})
    step("cost")
    if not run.layers:
        raise ValueError(f"workload {info.get('name', workload)!r} has no MAC layer (linear, conv2d or matmul) for "
                         "the accelerator to run; nothing to simulate or price")
    base_run = simulate_timing(low, baseline, hw_ref)
    report = evaluate([r for _, r in run.layers], hw_cfg, cfg)
    base = evaluate([r for _, r in base_run.layers], hw_ref, baseline)
    norm = normalized(report, base)
    where = low.table["where"].value_counts().to_dict() if "where" in low.table else {}
    out = {
        "workload": info.get("name", workload),
        "arch": str(cfg),
        "hardware": {"preset": hw, "name": hw_cfg.name, "num_pes": hw_cfg.num_pes, "lanes": hw_cfg.pe.lanes,
                     "vector_size": hw_cfg.vector_size, "clock_hz": hw_cfg.clock_hz,
                     "technology_nm": hw_cfg.technology_nm, "weight_buffer_bits": hw_cfg.pe.weight_buffer_bits,
                     "activation_buffer_bits": hw_cfg.pe.activation_buffer_bits},
        "options": {"seq": seq, "batch": batch, "seed": seed, "timing_only": timing_only,
                    "scale_product": cfg.scale_product_bits, "checkpoint": checkpoint},
        "totals": {
            "macs": int(run.macs), "cycles": int(run.cycles), "ideal_cycles": int(run.ideal_cycles),
            "latency_s": run.latency_s, "utilization": run.utilization,
            "energy_fj_per_op": report.fj_per_op, "energy_fj_per_op_total": report.fj_per_op_total,
            "energy_norm": norm["energy"], "energy_norm_total": norm["energy_total"],
            "tops_per_w": report.tops_per_w, "area_mm2": report.area_mm2, "area_norm": norm["area"],
            "tops_per_mm2": report.tops_per_mm2, "perf_per_area_norm": norm["perf_per_area"],
            "mac_layers": len(run.layers), "ops_by_unit": {k: int(v) for k, v in sorted(where.items())},
        },
        "accuracy": accuracy,
        "layers": _layers(run, report),
        "ops": [{"node": r["node"], "op": r["op"], "where": r["where"]} for r in low.table.to_dict("records")
                if r["where"] in ("ppu", "host")],
    }
    return (out, report, base) if return_costs else out
