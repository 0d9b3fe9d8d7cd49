"""A quantization report on one layer: the reference datapath vs the fp64 layer.

Runs the ``vsquant`` reference (Eq. 1-7, the vector MAC of Sec. 5, the PPU) on a single-layer
workload and reports output fidelity (SQNR, cosine), weight SQNR, data gating and the
datapath widths of Sec. 5. This is ``run.py``'s main job until the full pipeline
(mapper, TLM, cost model) is in place.
"""
from __future__ import annotations

import numpy as np

from vsquant import QuantConfig, conv2d, linear, quantize_weight, sqnr_db
from workloads.layer_specs import LayerWorkload


def _float_layer(wl: LayerWorkload, x, w, b):
    if wl.kind == "linear":
        return x @ w.T + b
    import torch
    import torch.nn.functional as F
    return F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **wl.conv).numpy()


def layer_report(wl: LayerWorkload, cfg: QuantConfig, seed: int = 0) -> dict:
    x, w, b = wl.tensors(seed)
    if wl.kind == "linear":
        res = linear(x, w, b, cfg)
        wq = res.gemms[0].w.dequantize()
    else:
        res = conv2d(x, w, b, cfg, **wl.conv)
        wq = quantize_weight(w.reshape(w.shape[0], -1), cfg).dequantize()  # weight SQNR on the GEMM view
    ref = _float_layer(wl, x, w, b)
    y = res.output
    cos = float(np.sum(y * ref) / (np.linalg.norm(y) * np.linalg.norm(ref)))
    accs = res.accumulations
    nvec = max(m.num_vectors for m in res.macs)
    return {
        "workload": wl.name,
        "kind": wl.kind,
        "arch": str(cfg),
        "seed": seed,
        "macs": res.real_macs,
        "vector_macs": accs,
        "gated": res.gated,
        "gated_fraction": res.gated / accs if accs else 0.0,
        "output_sqnr_db": sqnr_db(ref, y),
        "output_cosine": cos,
        "weight_sqnr_db": sqnr_db(w.reshape(w.shape[0], -1), wq),
        "weight_bits_per_element": cfg.weight_storage_bits,
        "act_bits_per_element": cfg.act_storage_bits,
        "dot_product_bits": cfg.dot_product_bits,
        "scale_product_bits": cfg.rounded_scale_product_bits,
        "partial_sum_bits": cfg.partial_sum_bits,
        "accumulator_bits": cfg.accumulator_bits(nvec),
        "max_abs_accumulator": max(m.max_abs_acc for m in res.macs),
    }


def format_report(r: dict) -> str:
    lines = [f"vsqsim quantization report: {r['workload']} ({r['kind']}) at {r['arch']}, seed {r['seed']}",
             f"  MACs                       {r['macs']:,}",
             f"  vector-MAC partial sums    {r['vector_macs']:,}  (gated {r['gated']:,} = "
             f"{100 * r['gated_fraction']:.2f}%)",
             f"  output SQNR vs fp64        {r['output_sqnr_db']:.2f} dB   cosine {r['output_cosine']:.6f}",
             f"  weight SQNR                {r['weight_sqnr_db']:.2f} dB",
             f"  storage bits/element       weights {r['weight_bits_per_element']:.3f}, "
             f"activations {r['act_bits_per_element']:.3f}",
             f"  datapath widths (Sec. 5)   dot {r['dot_product_bits']} b, scale product "
             f"{r['scale_product_bits']} b, partial sum {r['partial_sum_bits']} b, accumulator "
             f"{r['accumulator_bits']} b (max |acc| needs {int(r['max_abs_accumulator']).bit_length() + 1} b)"]
    return "\n".join(lines)


def layer_point(point: dict) -> dict:
    """A sweep point ``{"workload": "gemm:...", "arch": "...", "seed": 0}`` -> its report (picklable)."""
    from workloads.layer_specs import parse_layer
    return layer_report(parse_layer(point["workload"]), QuantConfig.parse(point["arch"]), point.get("seed", 0))
