"""Action counts, Accelergy style: every component counts what it does, by name, with bit widths.

An action is ``"<component>.<verb>"`` (``weight_buffer.read``, ``vector_mac.dot``,
``vector_mac.scale_product``, ``accumulator.add``, ``accumulator.gated``, ``ppu.vector_max``,
``noc.transfer``, ``dram.read`` ...). Counts are numbers of events (vectors, elements or bits,
as each action's unit says); ``widths[action]`` holds the bit widths the cost model prices it
with (DESIGN.md, "Cost model conventions").
"""
from __future__ import annotations


class ActionCounts:
    """A counter of actions plus the bit widths of each action."""

    __slots__ = ("counts", "widths", "units")

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}   # events may be fractional (e.g. a gated share)
        self.widths: dict[str, dict[str, int]] = {}
        self.units: dict[str, str] = {}

    def add(self, action: str, n: float = 1, unit: str = "event", **widths: int) -> None:
        if n:
            self.counts[action] = self.counts.get(action, 0) + n
        self.units.setdefault(action, unit)
        if widths:
            old = self.widths.setdefault(action, dict(widths))
            if old != widths:
                raise ValueError(f"action {action!r} counted with widths {widths} after {old}")

    def merge(self, other: "ActionCounts") -> "ActionCounts":
        for a, n in other.counts.items():
            self.counts[a] = self.counts.get(a, 0) + n
        for a, w in other.widths.items():
            self.widths.setdefault(a, w)
        for a, u in other.units.items():
            self.units.setdefault(a, u)
        return self

    def __getitem__(self, action: str) -> float:
        return self.counts.get(action, 0)

    def as_dict(self) -> dict[str, dict[str, float | str]]:
        return {a: {"count": self.counts[a], "unit": self.units.get(a, "event"), **self.widths.get(a, {})}
                for a in sorted(self.counts)}

    def __repr__(self) -> str:
        return f"ActionCounts({dict(sorted(self.counts.items()))})"
