"""The GEMM view of a lowered network, without torch: :class:`MacLayer` (one layer of vector-MAC work,
activations M x K times weights K x N; the module docstring of :mod:`mapping.lower` says how each op maps) and
:class:`LoweredModel` (the MAC layers in execution order and where every graph node runs).

Kept apart from :mod:`mapping.lower` so that a timing-only run whose lowering is cached
(:mod:`studies.cache`) simulates and prices a network without importing torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from .capture import CapturedGraph

__all__ = ["MacLayer", "LoweredModel"]


@dataclass(frozen=True)
class MacLayer:
    """One layer of vector-MAC work in GEMM view (activations M x K times weights K x N).

    ``gemms`` lists the GEMMs the layer is made of: one for a linear, ``groups`` of
    (M, K, N/groups) for a grouped conv, one per batch matrix for a matmul. ``macs`` is the
    real (unpadded) multiply-accumulate count, the sum of M*K*N over ``gemms``.
    """

    name: str                    # module path (nn.Linear/nn.Conv2d) or "<module>.<fx node>"
    node: str                    # the fx node it comes from
    kind: str                    # "linear" | "conv2d" | "matmul"
    M: int
    K: int
    N: int
    gemms: tuple[tuple[int, int, int], ...]
    macs: int
    op: str = ""                 # op kind of the node: linear, conv2d, matmul, addmm, baddbmm, sdpa.qk, sdpa.av
    module: str = ""
    in_shape: tuple = ()
    weight_shape: tuple | None = None   # None for matmul (both operands activations)
    out_shape: tuple = ()
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    batch: tuple = ()            # matmul batch shape
    has_bias: bool = False
    activation_fused: str | None = None


@dataclass(eq=False)
class LoweredModel:
    """MAC layers in execution order and, per fx node, where it runs (mac/ppu/host/layout/io)."""

    layers: list[MacLayer]
    table: pd.DataFrame          # one row per node: node, op, where, target, module, shape, dtype, mac_layers, macs
    captured: CapturedGraph | None   # None when the lowering comes from the cache (no graph, no torch)

    @property
    def mac_layer_count(self) -> int:
        return len(self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def layer(self, name: str) -> MacLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no MAC layer named {name!r}; layers: {', '.join(layer.name for layer in self.layers[:8])}...")

    def layer_table(self) -> pd.DataFrame:
        """One row per MAC layer: name, kind, M, K, N, number of GEMMs, MACs, node."""
        return pd.DataFrame([dict(name=x.name, kind=x.kind, M=x.M, K=x.K, N=x.N, gemms=len(x.gemms), macs=x.macs,
                                  node=x.node) for x in self.layers])
