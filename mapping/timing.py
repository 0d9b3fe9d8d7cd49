"""Whole networks through the transaction-level accelerator without tensors (DESIGN.md, "How data flows"):
:func:`simulate_timing` runs every MAC layer of a :class:`~mapping.layers.LoweredModel` on
``tlm.Accelerator.run_layer`` for its cycles and action counts, layers one after another (each starts with
empty buffers; network cycles are the sum of the layers' cycles). Identical MAC layers (same kind, GEMM shapes
and bias) on the same hardware and datapath simulate identically, so each distinct layer is simulated once and
reused (BERT's twelve encoder layers are one simulation per distinct GEMM).

Imports no torch (a cached lowering is simulated and priced without it); :mod:`mapping.network` adds the
numerics path."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from tlm.accelerator import Accelerator, LayerRun
from tlm.actions import ActionCounts
from tlm.hardware import HardwareSpec
from tlm.transactions import GemmShape
from vsquant import QuantConfig

from .layers import LoweredModel, MacLayer
from .tasks import layer_task

__all__ = ["NetworkRun", "timing_task", "simulate_timing", "layer_key"]


@dataclass(eq=False)
class NetworkRun:
    """Per-layer TLM runs of a network and their totals."""

    cfg: QuantConfig
    hw: HardwareSpec
    layers: list[tuple[MacLayer, LayerRun]]
    output: object = None
    layer_outputs: dict = field(default_factory=dict)
    lowered: LoweredModel | None = None

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer, _ in self.layers)

    @property
    def cycles(self) -> int:
        return sum(run.cycles for _, run in self.layers)

    @property
    def ideal_cycles(self) -> int:
        return sum(run.ideal_cycles for _, run in self.layers)

    @property
    def utilization(self) -> float:
        """Useful MACs over the array's MAC slots during the network's cycles (bit-serial: the ideal cycles, a pass
        per weight plane, over the cycles)."""
        if self.hw.pe.bit_serial:
            return self.ideal_cycles / self.cycles if self.cycles else 0.0
        return self.macs / (self.cycles * self.hw.macs_per_cycle) if self.cycles else 0.0

    @property
    def latency_s(self) -> float:
        return self.cycles / self.hw.clock_hz

    def actions(self) -> ActionCounts:
        total = ActionCounts()
        for _, run in self.layers:
            total.merge(run.actions)
        return total

    def layer_table(self) -> pd.DataFrame:
        rows = []
        for layer, run in self.layers:
            rows.append(dict(name=layer.name, kind=layer.kind, M=layer.M, K=layer.K, N=layer.N, gemms=len(layer.gemms),
                             macs=layer.macs, cycles=run.cycles, ideal_cycles=run.ideal_cycles,
                             utilization=(run.utilization if self.hw.pe.bit_serial else
                                          layer.macs / (run.cycles * self.hw.macs_per_cycle)) if run.cycles else 0.0,
                             bottleneck=run.bottleneck, gated=run.gated, tiling="; ".join(sorted(set(
                                 run.extra.get("tilings", []))))))
        return pd.DataFrame(rows)


def layer_key(layer: MacLayer) -> tuple:
    """What a timing-only run of ``layer`` depends on (its name aside): layers with equal keys simulate alike."""
    return (layer.kind, layer.gemms, layer.has_bias, layer.activation_fused)


def timing_task(layer: MacLayer, cfg: QuantConfig, hw: HardwareSpec):
    """A timing-only task for one MAC layer: its GEMMs' shapes and the per-PE schedule."""
    shapes = [GemmShape(*g) for g in layer.gemms]
    return layer_task(layer.name, layer.kind, shapes, cfg, hw, None, layer.activation_fused, False, layer.has_bias, {})


def simulate_timing(lowered: LoweredModel, cfg: QuantConfig | str, hw: HardwareSpec, *, progress=None,
                    planes: int | None = None, midpoint: bool = False) -> NetworkRun:
    """Cycles and action counts of every MAC layer, without tensors (gating counts need numerics); ``planes``: a
    bit-serial datapath's run-time weight precision (the top ``planes`` bit planes, :class:`tlm.Accelerator`; with
    ``midpoint`` their dropped planes' mean)."""
    cfg = QuantConfig.parse(cfg)
    acc = Accelerator(hw, cfg, planes=planes, midpoint=midpoint)
    memo: dict = {}
    out = []
    for i, layer in enumerate(lowered.layers):
        key = layer_key(layer)
        run = memo.get(key)
        if run is None:
            run = memo[key] = acc.run_layer(timing_task(layer, cfg, hw))
        out.append((layer, run))
        if progress:
            progress(i + 1, len(lowered.layers))
    return NetworkRun(cfg, hw, out, lowered=lowered)
