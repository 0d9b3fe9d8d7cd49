"""The accumulation collector of a PE (paper Sec. 5, Fig. 2a).

Holds the partial sums of the output block a PE is working on and accumulates, in integers,
the scaled partial sums of successive vectors ("temporally accumulates them across multiple
cycles in an integer format"). Its width is the partial-sum width of Sec. 5 (W+A+log2 V plus
the scale-product width) plus the hardware's headroom bits; a value that does not fit is an
overflow, reported with the layer, never wrapped silently. With fp per-vector scales or a block
format (MX, NVFP4) the scaled partial sums are floats and the collector accumulates in floating
point (the cost model prices an fp32 adder), so there is no integer width to check. Capacity is in entries (outputs).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from vsquant import AccumulatorOverflow, QuantConfig

from .actions import action

# the actions this component counts (tlm.actions.ACTIONS declares them; a misspelling fails at import)
ACCUMULATOR_ADD = action("accumulator.add")
ACCUMULATOR_GATED = action("accumulator.gated")
ACCUMULATOR_READ = action("accumulator.read")


if TYPE_CHECKING:
    import numpy as np

    from .actions import ActionCounts
    from .hardware import PESpec


class AccumulationCollector:
    """``pe.accumulation_collector_entries`` partial sums of ``pe.accumulator_bits(cfg.partial_sum_bits)`` bits
    (the one definition of the collector's width)."""

    def __init__(self, name: str, pe: PESpec, cfg: QuantConfig, actions: ActionCounts) -> None:
        self.name = name
        self.entries = pe.accumulation_collector_entries
        self.cfg = cfg
        self.width = pe.accumulator_bits(cfg.partial_sum_bits)
        self.actions = actions

    def start(self, rows: int, cols: int) -> None:
        """A new output block: its partial sums must fit the collector's entries."""
        if rows * cols > self.entries:
            raise ValueError(f"{self.name}: an output block of {rows}x{cols} = {rows * cols} partial sums "
                             f"exceeds the collector's {self.entries} entries")

    def accumulate(self, n: int) -> None:
        """Count ``n`` accumulations (gating is counted when the numerics are evaluated)."""
        self.actions.add(ACCUMULATOR_ADD, n, width=self.width)

    def settle(self, acc: np.ndarray, gated: int) -> None:
        """Check evaluated partial sums against the collector width; move gated ones from add to gated."""
        self.actions.add(ACCUMULATOR_GATED, gated, width=self.width)
        self.actions.add(ACCUMULATOR_ADD, -gated, width=self.width)
        if self.cfg.float_scales:   # fp per-vector or block scales: the partial sums accumulate in floating point
            return
        peak = max(float(acc.max()), -float(acc.min())) if acc.size else 0.0
        if peak > 2.0 ** (self.width - 1) - 1:
            raise AccumulatorOverflow(
                f"{self.name}: |partial sum| reached {peak:.0f}, beyond the {self.width}-bit collector "
                f"({self.cfg.partial_sum_bits}-bit partial sums of {self.cfg} + headroom)")

    def drain(self, rows: int, cols: int) -> None:
        """A finished block leaves for the PPU: its entries are read once."""
        self.actions.add(ACCUMULATOR_READ, rows * cols, width=self.width)
