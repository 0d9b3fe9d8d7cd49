"""The transactions the accelerator runs: tiles of vector-MAC work (DESIGN.md: a tile, not a MAC).

A :class:`GemmTile` is one PE's unit of work on one GEMM of a layer: output rows
``[m0, m1)``, output channels ``[n0, n1)`` and reduction vectors ``[j0, j1)``. ``first`` starts
the accumulation of its output block in the collector; ``last`` sends it to the PPU. A
:class:`LayerTask` is what the mapper hands the accelerator for one MAC layer: its GEMMs
(shapes, and for real numerics the quantized operands), the PPU's bias and activation, and
the per-PE tile lists.
"""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from vsquant.layers import GemmOperands

#: a tile's id in the buffers and the NoC: ("w", gemm, n0, n1, j0, j1) or ("a", gemm, m0, m1, j0, j1)
TileKey = tuple[str, int, int, int, int, int]


@dataclass(frozen=True)
class GemmShape:
    """A MAC layer in GEMM view: M output rows, reduction length K, N output channels."""

    M: int
    K: int
    N: int

    def __post_init__(self) -> None:
        for name in ("M", "K", "N"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"GEMM {name}={v!r} must be a positive integer")

    @property
    def macs(self) -> int:
        return self.M * self.K * self.N

    def vectors(self, V: int) -> int:
        return -(-self.K // V)


@dataclass(frozen=True)
class GemmTile:
    gemm: int
    m0: int
    m1: int
    n0: int
    n1: int
    j0: int
    j1: int
    first: bool
    last: bool

    @property
    def rows(self) -> int:
        return self.m1 - self.m0

    @property
    def cols(self) -> int:
        return self.n1 - self.n0

    @property
    def nvec(self) -> int:
        return self.j1 - self.j0

    @property
    def weight_key(self) -> TileKey:
        return ("w", self.gemm, self.n0, self.n1, self.j0, self.j1)

    @property
    def act_key(self) -> TileKey:
        return ("a", self.gemm, self.m0, self.m1, self.j0, self.j1)


@dataclass(frozen=True)
class Tiling:
    """How one GEMM is spread over the PE array and cut into tiles (chosen by the mapper)."""

    pm: int        # PEs along M (activation rows)
    pn: int        # PEs along N (output channels)
    m_tile: int    # rows per tile
    n_tile: int    # output channels per tile
    j_tile: int    # reduction vectors per tile
    weights_resident: bool  # a PE's weight tile stays in its buffer across its M tiles

    def describe(self) -> str:
        return (f"PEs {self.pm}(M)x{self.pn}(N), tile {self.m_tile}x{self.n_tile} outputs x {self.j_tile} "
                f"vectors, weights {'resident' if self.weights_resident else 'reloaded per M tile'}")


@dataclass(eq=False)
class LayerTask:
    """One MAC layer for the accelerator: GEMMs, PPU work and the per-PE schedule. Fields after the
    first four are keyword-only."""

    name: str
    shapes: list[GemmShape]
    tilings: list[Tiling]
    schedule: list[list[GemmTile]]          # per PE, in execution order
    _: KW_ONLY
    operands: list[GemmOperands] | None = None  # vsquant.layers.GemmOperands per GEMM (None: timing only)
    activation: str | None = None
    out_unsigned: bool = False
    requantize_output: bool = True
    kind: str = "linear"
    has_bias: bool = False                  # for timing-only runs (with operands, the bias says)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.shapes)
