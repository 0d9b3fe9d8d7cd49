"""Price what the TLM counted: energy per operation, area, TOPS/W, TOPS/mm^2, normalization.

``evaluate(runs, hw, cfg, tech=...)`` takes the :class:`tlm.LayerRun` of every layer of a
workload (the same run may appear several times for repeated layers) and returns a
:class:`CostReport`:

- energy = sum over actions of count x energy per action (:mod:`costmodels.energy`), per
  component; an operation is 2 x MAC, so ``fj_per_op`` = total energy / total ops is the
  layer-weighted average energy per operation of the paper (Sec. 6: "averaged over layers of
  the networks, weighted by the number of operations in each layer");
- area = the accelerator's components (:mod:`costmodels.area`) for ``hw`` and ``cfg``;
- ``fj_per_op``, ``tops_per_w``, ``area_mm2`` and ``tops_per_mm2`` cover the **PE array**
  (datapath, scale multiplier, accumulation, PE buffers, PPU): the paper's "energy per
  operation of the PE" and its area. The global buffer, NoC and DRAM are reported separately
  (``*_total`` include them);
- ``breakdown``: a pandas DataFrame per component (energy, fJ/op, area, shares, scope).

``normalized(report, baseline_report)`` gives the paper's normalized energy and area (the
baseline is the same hardware at 8/8/-/-), and ``plot_breakdown`` writes stacked bars (PNG).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the hardware type, for annotations only: costmodels imports vsquant alone
    from tlm.hardware import HardwareSpec

import warnings
from dataclasses import dataclass, field

import pandas as pd

from vsquant import QuantConfig

from .area import area_breakdown_um2
from .energy import COMPONENTS, PE_COMPONENTS, action_energy_pj, component_of
from .technology import DESIGN, Technology, technology

__all__ = ["CostReport", "evaluate", "gating_hardware", "normalized", "plot_breakdown", "price_actions"]


@dataclass
class CostReport:
    """Energy and area of one datapath config on one hardware over one workload."""

    config: str
    hardware: str
    technology: str
    macs: int
    cycles: int
    clock_hz: float
    peak_ops_per_s: float
    energy_pj: dict                      # component -> pJ (whole workload)
    area_um2: dict                       # component -> um^2
    energy_by_action: dict = field(default_factory=dict)   # action -> pJ
    layers: list = field(default_factory=list)             # per-layer dicts
    unpriced: list = field(default_factory=list)           # actions without a price (0 pJ)

    # -- totals ---------------------------------------------------------------------------
    @property
    def ops(self) -> int:
        """Operations: 2 per MAC (a multiply and an add)."""
        return 2 * self.macs

    @property
    def pe_energy_pj(self) -> float:
        return sum(self.energy_pj[c] for c in PE_COMPONENTS)

    @property
    def total_energy_pj(self) -> float:
        return sum(self.energy_pj.values())

    @property
    def fj_per_op(self) -> float:
        """PE energy per operation (fJ), the paper's metric (layer-weighted average)."""
        return 1e3 * self.pe_energy_pj / self.ops if self.ops else float("nan")

    @property
    def fj_per_op_total(self) -> float:
        """Energy per operation including the global buffer, NoC and DRAM (fJ)."""
        return 1e3 * self.total_energy_pj / self.ops if self.ops else float("nan")

    @property
    def tops_per_w(self) -> float:
        return 1e3 / self.fj_per_op

    @property
    def tops_per_w_total(self) -> float:
        return 1e3 / self.fj_per_op_total

    @property
    def area_mm2(self) -> float:
        """Area of the PE array (the paper's area)."""
        return 1e-6 * sum(self.area_um2[c] for c in PE_COMPONENTS)

    @property
    def area_mm2_total(self) -> float:
        """Area including the global buffer and the NoC routers."""
        return 1e-6 * sum(self.area_um2.values())

    @property
    def peak_tops(self) -> float:
        return self.peak_ops_per_s / 1e12

    @property
    def tops_per_mm2(self) -> float:
        """Peak throughput at the preset clock per mm^2 of PE array."""
        return self.peak_tops / self.area_mm2

    @property
    def tops_per_mm2_total(self) -> float:
        return self.peak_tops / self.area_mm2_total

    @property
    def achieved_tops(self) -> float:
        """Operations over the simulated cycles at the preset clock."""
        return self.ops / (self.cycles / self.clock_hz) / 1e12 if self.cycles else float("nan")

    @property
    def breakdown(self) -> pd.DataFrame:
        """Per component: energy (pJ, fJ/op, share of the PE energy), area (mm^2, share of the PE area)."""
        pe_e, pe_a = self.pe_energy_pj, self.area_mm2
        rows = []
        for c in COMPONENTS:
            e, a = self.energy_pj.get(c, 0.0), 1e-6 * self.area_um2.get(c, 0.0)
            in_pe = c in PE_COMPONENTS
            rows.append({"component": c, "in_pe": in_pe, "energy_pj": e,
                         "fj_per_op": 1e3 * e / self.ops if self.ops else float("nan"),
                         "energy_share_of_pe": e / pe_e if in_pe and pe_e else float("nan"),
                         "area_mm2": a, "area_share_of_pe": a / pe_a if in_pe and pe_a else float("nan")})
        return pd.DataFrame(rows).set_index("component")

    def summary(self) -> str:
        return (f"{self.config} on {self.hardware} ({self.technology}): {self.fj_per_op:.1f} fJ/op PE "
                f"({self.tops_per_w:.1f} TOPS/W), {self.fj_per_op_total:.1f} fJ/op with GB/NoC/DRAM; "
                f"PE array {self.area_mm2:.3f} mm^2, {self.tops_per_mm2:.2f} TOPS/mm^2 peak at "
                f"{self.clock_hz / 1e9:g} GHz")

    def to_dict(self) -> dict:
        return {"config": self.config, "hardware": self.hardware, "technology": self.technology,
                "macs": self.macs, "ops": self.ops, "cycles": self.cycles, "fj_per_op": self.fj_per_op,
                "fj_per_op_total": self.fj_per_op_total, "tops_per_w": self.tops_per_w,
                "area_mm2": self.area_mm2, "area_mm2_total": self.area_mm2_total,
                "tops_per_mm2": self.tops_per_mm2, "energy_pj": dict(self.energy_pj),
                "area_um2": dict(self.area_um2), "unpriced": list(self.unpriced)}


def gating_hardware(actions, gate_full_width: bool | None = None) -> bool:
    """Whether the datapath that produced ``actions`` has the zero-detect gating hardware: it sits in
    the scale-product rounding unit (``DESIGN.gate_full_width``), so a datapath gates only when it
    rounds its integer scale product (R < ws + as), unless ``gate_full_width``."""
    full = bool(DESIGN["gate_full_width"].value) if gate_full_width is None else bool(gate_full_width)
    sp = actions.widths.get("vector_mac.scale_product", {})
    if not sp or sp.get("float_scales", False):
        return full
    return full or sp.get("rounded_bits", 0) < sp.get("weight_scale_bits", 0) + sp.get("act_scale_bits", 0)


def price_actions(actions, hw: HardwareSpec, tech: Technology, gate_dot_product: bool | None = None,
                  gate_full_width: bool | None = None) -> tuple[dict, dict, list]:
    """Energy (pJ) of one layer's action counts: (per component, per action, unpriced actions).

    A gated accumulation (``accumulator.gated``) also gates one scale multiply (its rounded scale
    product is 0) and, with ``DESIGN.gate_dot_product`` (or ``gate_dot_product``, a sensitivity
    override), one dot product: those are priced for the events that were not gated. A datapath
    without the gating hardware (:func:`gating_hardware`: one that does not round its scale
    product) prices the TLM's gated accumulations as ordinary ones and gates nothing.
    """
    counts = actions.counts
    has_gating = gating_hardware(actions, gate_full_width)
    gated = counts.get("accumulator.gated", 0) if has_gating else 0
    gate_dot = bool(DESIGN["gate_dot_product"].value) if gate_dot_product is None else bool(gate_dot_product)
    by_comp = dict.fromkeys(COMPONENTS, 0.0)
    by_action: dict = {}
    unpriced = []
    float_scales = bool(actions.widths.get("vector_mac.scale_product", {}).get("float_scales", False))
    for action, n in counts.items():
        if not n:
            continue
        comp = component_of(action)
        priced_as = action
        if action == "accumulator.gated" and not has_gating:
            priced_as = "accumulator.add"     # no zero detect: the accumulation happens
        e = action_energy_pj(priced_as, actions.widths.get(action, {}), hw, tech, float_scales,
                             counts=counts)
        if e is None or comp is None:
            unpriced.append(action)
            continue
        if action == "vector_mac.scale_multiply" or (gate_dot and action == "vector_mac.dot"):
            n = max(n - gated, 0)
        by_comp[comp] += n * e
        by_action[priced_as] = by_action.get(priced_as, 0.0) + n * e
    return by_comp, by_action, unpriced


def evaluate(runs, hw: HardwareSpec, cfg, tech=None, *, gate_dot_product: bool | None = None,
             gate_full_width: bool | None = None) -> CostReport:
    """Energy and area of a workload's layer runs on ``hw`` at ``cfg`` in technology ``tech``.

    ``runs``: ``tlm.LayerRun`` objects (one per layer; repeat an object for repeated layers).
    ``tech``: a :class:`~costmodels.technology.Technology`, a name (``"16nm"``) or a node in nm;
    default: the hardware's ``technology_nm``. ``gate_dot_product`` overrides
    ``DESIGN.gate_dot_product`` and ``gate_full_width`` ``DESIGN.gate_full_width`` (for sensitivity
    studies; the paper's numbers use the defaults).
    """
    cfg = QuantConfig.parse(cfg)
    tech = technology(hw.technology_nm if tech is None else tech)
    runs = list(runs)
    if not runs:
        raise ValueError("nothing to price: the workload ran no MAC layer (linear, conv2d or matmul) on the "
                         "accelerator (evaluate got no LayerRun)")
    energy = dict.fromkeys(COMPONENTS, 0.0)
    by_action: dict = {}
    unpriced: set = set()
    layers = []
    macs = cycles = 0
    cache: dict = {}
    for r in runs:
        priced = cache.get(id(r))
        if priced is None:
            priced = price_actions(r.actions, hw, tech, gate_dot_product, gate_full_width)
            cache[id(r)] = priced
        comp, act, un = priced
        for c, e in comp.items():
            energy[c] += e
        for a, e in act.items():
            by_action[a] = by_action.get(a, 0.0) + e
        unpriced.update(un)
        macs += r.macs
        cycles += r.cycles
        pe = sum(comp[c] for c in PE_COMPONENTS)
        zeros = (r.actions["accumulator.gated"] / r.actions["vector_mac.dot"]
                 if r.actions["vector_mac.dot"] else 0.0)
        layers.append({"layer": r.name, "macs": r.macs, "cycles": r.cycles,
                       "fj_per_op": 1e3 * pe / (2 * r.macs) if r.macs else float("nan"),
                       "fj_per_op_total": 1e3 * sum(comp.values()) / (2 * r.macs) if r.macs else float("nan"),
                       "zero_fraction": zeros,
                       "gated_fraction": zeros if gating_hardware(r.actions, gate_full_width) else 0.0})
    if unpriced:
        warnings.warn(f"actions without a price (counted as 0 pJ): {sorted(unpriced)}", stacklevel=2)
    # a bit-serial lane passes over the W bit planes of a weight: its peak is 1/W of its weight-bit MAC slots
    peak = hw.peak_ops_per_s / (cfg.weight_bits if hw.pe.bit_serial else 1)
    return CostReport(str(cfg), hw.name, tech.name, int(macs), int(cycles), float(hw.clock_hz),
                      float(peak), energy, area_breakdown_um2(hw, cfg, tech), by_action,
                      layers, sorted(unpriced))


def normalized(report: CostReport, baseline: CostReport) -> dict:
    """The paper's normalized metrics: ``report`` over the same hardware at 8/8/-/- (``baseline``).

    ``energy``: PE energy per op ratio; ``area``: PE-array area ratio; ``perf_per_area``: peak
    throughput per area ratio (all configs share one throughput, so 1/area); ``energy_total`` /
    ``area_total`` include the global buffer, NoC and DRAM; ``components``: each component's
    energy per op over the baseline's PE energy per op (they sum to ``energy``).
    """
    e = report.fj_per_op / baseline.fj_per_op
    a = report.area_mm2 / baseline.area_mm2
    comps = {c: (1e3 * report.energy_pj[c] / report.ops) / baseline.fj_per_op for c in COMPONENTS}
    return {"config": report.config, "energy": e, "area": a,
            "perf_per_area": report.tops_per_mm2 / baseline.tops_per_mm2,
            "energy_total": report.fj_per_op_total / baseline.fj_per_op_total,
            "area_total": report.area_mm2_total / baseline.area_mm2_total,
            "components": comps}


def plot_breakdown(reports, path, *, baseline: CostReport | None = None, metric: str = "energy",
                   labels=None, include_system: bool = False, title: str | None = None) -> str:
    """Stacked bars of the per-component ``metric`` ("energy" per op, or "area") to a PNG at ``path``.

    With ``baseline`` the bars are normalized to its PE total (the paper's normalization).
    ``include_system`` adds the global buffer, NoC and DRAM on top of the PE components.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric not in ("energy", "area"):
        raise ValueError(f"metric must be 'energy' or 'area', got {metric!r}")
    comps = COMPONENTS if include_system else PE_COMPONENTS
    labels = list(labels) if labels is not None else [r.config for r in reports]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(reports) + 2), 4.5))
    bottoms = [0.0] * len(reports)
    for c in comps:
        vals = []
        for r in reports:
            if metric == "energy":
                v = 1e3 * r.energy_pj[c] / r.ops
                v = v / baseline.fj_per_op if baseline is not None else v
            else:
                v = 1e-6 * r.area_um2[c]
                v = v / baseline.area_mm2 if baseline is not None else v
            vals.append(v)
        ax.bar(range(len(reports)), vals, bottom=bottoms, label=c.replace("_", " "))
        bottoms = [b + v for b, v in zip(bottoms, vals, strict=True)]
    ax.set_xticks(range(len(reports)))
    ax.set_xticklabels(labels, rotation=45, ha="right")
    unit = ("normalized " if baseline is not None else "") + ("energy per op" if metric == "energy" else "area")
    if baseline is None:
        unit += " (fJ/op)" if metric == "energy" else " (mm$^2$)"
    ax.set_ylabel(unit)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
