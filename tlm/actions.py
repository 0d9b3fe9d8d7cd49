"""Action counts, Accelergy style: every component counts what it does, by name, with bit widths.

An action is ``"<component>.<verb>"`` (``weight_buffer.read``, ``vector_mac.dot``,
``vector_mac.scale_product``, ``accumulator.add``, ``accumulator.gated``, ``ppu.vector_max``,
``noc.transfer``, ``dram.read`` ...). Counts are numbers of events (vectors, elements or bits,
as each action's unit says); ``widths[action]`` holds the bit widths the cost model prices it
with (DESIGN.md, "Cost model conventions").

Every action is declared once, in :data:`ACTIONS`, with its unit and the width keys it is counted
with; components name their actions through :func:`action` at import (a misspelled name fails when the
module is imported) and :meth:`ActionCounts.add` refuses an undeclared action or width key.
"""
from __future__ import annotations

from dataclasses import dataclass

from vsquant import ACTIVATIONS


@dataclass(frozen=True)
class Action:
    """One action of one component: its unit and the bit-width keys it is counted (and priced) with."""

    component: str
    verb: str
    unit: str
    widths: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return f"{self.component}.{self.verb}"


def _catalogue() -> dict[str, Action]:
    buffer_widths = frozenset({"value_bits", "scale_bits", "vector_size"})
    acc = frozenset({"width"})
    declared = [
        # the vector MAC unit (Sec. 5, Fig. 2b): V-wide dot product, scale product, scale multiply
        # (block formats add their elements' exponent widths, the product width and the block scales' mantissas;
        # a bit-serial datapath the weight bit planes it passes over per dot product)
        Action("vector_mac", "dot", "dot product", frozenset({"weight_bits", "act_bits", "vector_size", "out_bits",
                                                             "weight_exp_bits", "act_exp_bits", "product_bits",
                                                             "weight_planes"})),
        # bit-serial run-time precision with the dropped planes' mean (vsquant.bitserial, midpoint)
        Action("vector_mac", "plane_offset", "dot product", frozenset({"out_bits"})),
        Action("vector_mac", "activation_sum", "vector", frozenset({"act_bits", "vector_size"})),
        Action("vector_mac", "scale_product", "multiply",
               frozenset({"weight_scale_bits", "act_scale_bits", "rounded_bits", "float_scales",
                          "weight_scale_mantissa_bits", "act_scale_mantissa_bits"})),
        Action("vector_mac", "scale_multiply", "multiply", frozenset({"dot_bits", "scale_bits", "block_scales"})),
        # the accumulation collector
        Action("accumulator", "add", "accumulation", acc),
        Action("accumulator", "gated", "accumulation", acc),
        Action("accumulator", "read", "entry", acc),
        # the PE buffers: a vector and its scale per entry
        Action("weight_buffer", "read", "vector", buffer_widths),
        Action("weight_buffer", "write", "vector", buffer_widths),
        Action("activation_buffer", "read", "vector", buffer_widths),
        Action("activation_buffer", "write", "vector", buffer_widths),
        # the PPU (Fig. 2c): coarse scale, bias, activation, dynamic per-vector requantization
        Action("ppu", "scale", "element"),
        Action("ppu", "bias", "element"),
        Action("ppu", "quantize", "element", frozenset({"out_bits"})),
        Action("ppu", "vector_max", "vector", frozenset({"vector_size"})),
        Action("ppu", "reciprocal", "vector"),
        *(Action("ppu", name, "element") for name in ACTIVATIONS if name is not None),
        # the memory system
        Action("global_buffer", "read", "bit"),
        Action("global_buffer", "write", "bit"),
        Action("noc", "transfer", "bit"),
        Action("noc", "deliver", "bit"),
        Action("dram", "read", "bit"),
    ]
    return {a.name: a for a in declared}


#: every action the TLM counts, by name
ACTIONS: dict[str, Action] = _catalogue()


def action(name: str) -> Action:
    """The declared action ``name``; an undeclared name raises ``ValueError`` listing the declared ones."""
    try:
        return ACTIONS[name]
    except KeyError:
        raise ValueError(f"undeclared action {name!r}; declared actions: {', '.join(ACTIONS)}") from None


class ActionCounts:
    """A counter of actions plus the bit widths of each action."""

    __slots__ = ("counts", "widths", "units")

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}   # events may be fractional (e.g. a gated share)
        self.widths: dict[str, dict[str, int]] = {}
        self.units: dict[str, str] = {}

    def add(self, name: str | Action, n: float = 1, **widths: int) -> None:
        """Count ``n`` events of a declared action with its bit widths (the keys :data:`ACTIONS` declares)."""
        declared = name if isinstance(name, Action) else action(name)
        action_name = declared.name
        if not set(widths) <= declared.widths:
            raise ValueError(f"action {action_name!r} counted with width key(s) "
                             f"{', '.join(sorted(set(widths) - declared.widths))}; declared: "
                             f"{', '.join(sorted(declared.widths)) or 'none'}")
        if n:
            self.counts[action_name] = self.counts.get(action_name, 0) + n
        self.units.setdefault(action_name, declared.unit)
        if widths:
            old = self.widths.setdefault(action_name, dict(widths))
            if old != widths:
                raise ValueError(f"action {action_name!r} counted with widths {widths} after {old}")

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
