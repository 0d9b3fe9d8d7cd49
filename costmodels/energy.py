"""Energy per action, as functions of the bit widths the TLM counted (DESIGN.md, cost model conventions).

Each action the TLM counts (``tlm.actions``) is priced from the primitives of
:mod:`costmodels.technology`: a multiplier costs in proportion to the product of its operand
widths, an adder and a register in proportion to their width, an SRAM access in proportion to
the bits accessed times a per-bit energy that grows with the bank's number of entries.

The hardware behind each action (VS-Quant Sec. 5, Fig. 2):

``vector_mac.dot``            V multipliers W x A, an adder tree of V-1 adders whose width grows
                              by one bit a level (W+A+1 ... W+A+log2 V) and the dot-product
                              output register (the weight operand sits in the lane's weight
                              collector, the activation operand on the PE's broadcast bus).
``vector_mac.scale_product``  the integer ws x as multiplier, its rounding to R bits (an adder on
                              the full product when R < ws+as) and the R-bit product register (the
                              operands are latched with their vectors, priced with the buffer reads);
                              a side with '-' has scale 1 and no multiplier: the product is the other
                              scale, rounded and latched only when it changes (per weight-vector load
                              or per activation broadcast); fp scales use an fp16/fp32 multiplier.
``vector_mac.scale_multiply`` the (W+A+log2 V) x R multiplier and its partial-sum register.
``accumulator.add``           an adder of the collector's width plus a read-modify-write of one
                              entry of the lane's collector bank (entries / lanes words of the
                              collector's width).
``accumulator.gated``         a gated accumulation: only the zero flag's register is clocked; with
                              ``DESIGN.gate_dot_product`` the dot product is gated too. A gated
                              accumulation also gates its scale multiply (its operand is 0). The
                              zero detect is part of the rounding unit (``DESIGN.gate_full_width``):
                              a full-width datapath prices the TLM's zero products as accumulations.
``accumulator.read``          reading an entry out to the PPU.
``*_buffer.read/write``       V*N + M bits of an SRAM bank (the weight buffer is one bank per lane,
                              the activation buffer one bank); a weight read also writes the lane's
                              weight collector register; an activation read is latched once and
                              broadcast to the lanes over a bus spanning the PE (one PE pitch).
``ppu.*``                     fp32 scale multiply, bias add, the activation, vector max (V compares),
                              quantize (fp32 multiply + round), reciprocal (Newton-Raphson passes).
``noc.transfer`` / ``deliver`` per bit: the average route of a mesh (sqrt(P) hops) for a transfer
                              from/to the global buffer, one hop for each multicast delivery.
``global_buffer.*``           per bit, SRAM banks of 64-bit rows delivering its bits per cycle.
``dram.read``                 per bit (not scaled with the logic node).

SRAM per-bit energies depend on a bank's number of entries (words), not its width
(:meth:`Technology.sram_pj_per_bit`): an iso-depth buffer of narrower vectors costs less per
access in proportion to its bits, and the same per bit.

Components (the breakdown of :mod:`costmodels.evaluate`): ``datapath``, ``scale_multiplier``,
``accumulation``, ``pe_buffers``, ``ppu`` (the PE, what the paper's energy per operation covers)
and ``global_buffer``, ``noc``, ``dram`` (reported separately).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the hardware type, for annotations only: costmodels imports vsquant alone
    from tlm.hardware import HardwareSpec

import math

from .technology import DESIGN, Technology

__all__ = [
    "COMPONENTS",
    "PE_COMPONENTS",
    "component_of",
    "adder_tree_pj",
    "dot_product_pj",
    "scale_product_pj",
    "scale_multiply_pj",
    "accumulate_pj",
    "gated_accumulation_pj",
    "collector_read_pj",
    "buffer_access_pj",
    "ppu_action_pj",
    "noc_bit_pj",
    "global_buffer_bit_pj",
    "action_energy_pj",
    "collector_bank_words",
    "weight_bank_words",
    "activation_buffer_words",
]

COMPONENTS = ("datapath", "scale_multiplier", "accumulation", "pe_buffers", "ppu",
              "global_buffer", "noc", "dram")
PE_COMPONENTS = COMPONENTS[:5]

_PREFIX = {
    "vector_mac.dot": "datapath",
    "vector_mac.scale_product": "scale_multiplier",
    "vector_mac.scale_multiply": "scale_multiplier",
    "accumulator.": "accumulation",
    "weight_buffer.": "pe_buffers",
    "activation_buffer.": "pe_buffers",
    "ppu.": "ppu",
    "global_buffer.": "global_buffer",
    "noc.": "noc",
    "dram.": "dram",
}


def component_of(action: str) -> str | None:
    """The breakdown component an action belongs to (None: not priced)."""
    for p, c in _PREFIX.items():
        if action == p or (p.endswith(".") and action.startswith(p)):
            return c
    return None


def _log2v(V: int) -> int:
    return max(0, math.ceil(math.log2(max(V, 1))))


# -- vector MAC unit ------------------------------------------------------------------------

def adder_tree_levels(in_bits: int, V: int) -> list[tuple[int, int]]:
    """The V-1 two-input adders reducing V products of ``in_bits``, as (adders, width) per level:
    level l has about V/2^l adders of in_bits + l bits."""
    levels, n, level = [], V, 0
    while n > 1:
        level += 1
        pairs = n // 2
        levels.append((pairs, in_bits + level))
        n = pairs + (n % 2)
    return levels


def adder_tree_pj(tech: Technology, in_bits: int, V: int) -> float:
    return sum(k * tech.int_add_pj(w) for k, w in adder_tree_levels(in_bits, V))


def dot_product_pj(tech: Technology, weight_bits: int, act_bits: int, vector_size: int,
                   out_bits: int | None = None) -> float:
    """One V-element integer dot product (Eq. 4) with its operand and output registers."""
    V = vector_size
    out = out_bits if out_bits is not None else weight_bits + act_bits + _log2v(V)
    return (V * tech.int_mult_pj(weight_bits, act_bits)
            + adder_tree_pj(tech, weight_bits + act_bits, V)
            + out * tech.register_pj_per_bit())


def scale_product_pj(tech: Technology, weight_scale_bits: int, act_scale_bits: int, rounded_bits: int,
                     float_scales: bool = False, updates_per_dot: float = 1.0) -> float:
    """The per-vector scale product sw x sa (Fig. 2b), rounded to R bits, into its R-bit register.

    The operands need no registers of their own: sw is latched with its vector in the lane's
    weight collector and sa with its vector in the broadcast register (both priced with the buffer
    reads, whose bits include the scale). With only one per-vector scale (a '-' side) there is no
    multiplier: the product is that scale, and its rounding and register switch only when it
    changes, once per weight-vector load (weight scales) or per activation broadcast (activation
    scales, shared by the lanes): ``updates_per_dot`` is those events per dot product.
    """
    reg = tech.register_pj_per_bit()
    if float_scales:
        bits = max(weight_scale_bits, act_scale_bits)
        return tech.fp_mult_pj(bits) + bits * reg
    full = weight_scale_bits + act_scale_bits
    e = rounded_bits * reg
    if rounded_bits < full:
        e += tech.int_add_pj(full)                               # round half up: add 2^(shift-1)
    if weight_scale_bits and act_scale_bits:
        return e + tech.int_mult_pj(weight_scale_bits, act_scale_bits)
    return e * updates_per_dot


def scale_multiply_pj(tech: Technology, dot_bits: int, scale_bits: int, float_scales: bool = False) -> float:
    """The dot product times the (rounded) scale product, and the scaled partial-sum register.

    With fp per-vector scales (``4/8/fp16/fp16``) the integer dot product is multiplied by the fp
    scale product in an fp32 multiplier and the partial sum is fp32.
    """
    if float_scales:
        return tech.fp_mult_pj(32) + 32 * tech.register_pj_per_bit()
    return tech.int_mult_pj(dot_bits, scale_bits) + (dot_bits + scale_bits) * tech.register_pj_per_bit()


# -- accumulation collector -----------------------------------------------------------------

def collector_bank_words(hw: HardwareSpec) -> float:
    """Entries of one lane's bank of the accumulation collector: entries / lanes."""
    return hw.pe.accumulation_collector_entries / hw.pe.lanes


# source: VS-Quant Table 3 / Tables 5-7 "S=fp32/fp16": with fp per-vector scales the scaled partial sums
# are floating point; the collector holds fp32 (a format, not technology data)
FP_ACCUMULATOR_BITS = 32


def accumulate_pj(tech: Technology, width: int, bank_words: float, float_scales: bool = False) -> float:
    """One accumulation: an adder of the collector's width and a read-modify-write of an entry
    (an fp32 adder and 32-bit entries with fp per-vector scales)."""
    if float_scales:
        width = FP_ACCUMULATOR_BITS
        add = tech.fp_add_pj(32)
    else:
        add = tech.int_add_pj(width)
    return (add + width * tech.sram_pj_per_bit(bank_words)
            + width * tech.sram_pj_per_bit(bank_words, write=True))


def gated_accumulation_pj(tech: Technology) -> float:
    """A gated accumulation: the zero flag of the rounded scale product is all that switches."""
    return tech.register_pj_per_bit()


def collector_read_pj(tech: Technology, width: int, bank_words: float) -> float:
    return width * tech.sram_pj_per_bit(bank_words)


# -- PE buffers -----------------------------------------------------------------------------

def weight_bank_words(hw: HardwareSpec, vector_bits: int) -> float:
    """Entries (vectors) of one lane's bank of the weight buffer (every lane reads its own weight vectors)."""
    return hw.pe.weight_buffer_bits / hw.pe.lanes / vector_bits


def activation_buffer_words(hw: HardwareSpec, vector_bits: int) -> float:
    """Entries (vectors) of the activation buffer (one bank, one broadcast read per cycle)."""
    return hw.pe.activation_buffer_bits / vector_bits


def buffer_access_pj(tech: Technology, value_bits: int, scale_bits: int, vector_size: int,
                     bank_words: float, write: bool = False, collector_register: bool = False,
                     broadcast: bool = False) -> float:
    """One vector (V values + its per-vector scale) read from or written to an SRAM bank.

    ``collector_register``: the vector is latched in a lane's weight collector;
    ``broadcast``: it is latched once and driven to all lanes over a bus one PE pitch long.
    """
    bits = vector_size * value_bits + scale_bits
    e = bits * tech.sram_pj_per_bit(bank_words, write=write)
    if collector_register:
        e += bits * tech.register_pj_per_bit()
    if broadcast:
        e += bits * (tech.register_pj_per_bit() + tech.noc_hop_mm() * tech.wire_pj_per_bit_mm())
    return e


# -- PPU ------------------------------------------------------------------------------------

def ppu_action_pj(tech: Technology, action: str, widths: dict) -> float:
    """Post-processing (Fig. 2c): per element (scale, bias, activation, quantize) or per vector."""
    verb = action.split(".", 1)[1]
    fm, fa, add32 = tech.fp_mult_pj(32), tech.fp_add_pj(32), tech.int_add_pj(32)
    reg = tech.register_pj_per_bit()
    if verb == "scale":
        return fm + 32 * reg
    if verb == "bias":
        return fa + 32 * reg
    if verb in ("relu", "relu6"):
        return add32 * (2 if verb == "relu6" else 1)
    if verb in ("gelu", "gelu_tanh"):
        return DESIGN["gelu_fp_ops"].value * (fm + fa)
    if verb == "quantize":
        return fm + tech.int_add_pj(32) + widths.get("out_bits", 8) * reg
    if verb == "vector_max":
        return widths.get("vector_size", 16) * add32
    if verb == "reciprocal":
        return DESIGN["reciprocal_passes"].value * (fm + fa) + fm   # + the integer scale (Eq. 7e-7g)
    if verb in ("none",):
        return 0.0
    return fm + fa   # any other elementwise activation: one fp multiply-add


# -- global buffer, NoC, DRAM ---------------------------------------------------------------

def global_buffer_bank_words(hw: HardwareSpec) -> float:
    """The global buffer as 64-bit-wide banks that together deliver its bits per cycle."""
    banks = max(1, hw.global_buffer_bits_per_cycle // 64)
    return hw.global_buffer_bits / banks / 64


def global_buffer_bit_pj(tech: Technology, hw: HardwareSpec, write: bool = False) -> float:
    return tech.sram_pj_per_bit(global_buffer_bank_words(hw), write=write)


def noc_hop_bit_pj(tech: Technology) -> float:
    """One bit over one hop: the link (PE pitch) and the router's registers."""
    return (tech.noc_hop_mm() * tech.wire_pj_per_bit_mm()
            + DESIGN["noc_router_regs_per_bit"].value * tech.register_pj_per_bit())


def noc_bit_pj(tech: Technology, hw: HardwareSpec, action: str) -> float:
    if action == "noc.deliver":
        return noc_hop_bit_pj(tech)
    return math.sqrt(hw.num_pes) * noc_hop_bit_pj(tech)


# -- dispatch -------------------------------------------------------------------------------

def action_energy_pj(action: str, widths: dict, hw: HardwareSpec, tech: Technology, float_scales: bool = False,
                     counts: dict | None = None) -> float | None:
    """Energy (pJ) of one event of ``action`` with its counted ``widths``; None if not priced.

    ``float_scales``: the datapath has fp per-vector scales (fp scale multiply and fp32 accumulation).
    ``counts``: the layer's action counts, for a one-sided scale product (it switches once per
    weight-vector load or activation broadcast, not once per dot product; without: per dot product).
    """
    w = widths or {}
    V = w.get("vector_size", hw.vector_size)
    if action == "vector_mac.dot":
        return dot_product_pj(tech, w["weight_bits"], w["act_bits"], V, w.get("out_bits"))
    if action == "vector_mac.scale_product":
        ws, as_ = w["weight_scale_bits"], w["act_scale_bits"]
        updates = 1.0
        if counts is not None and counts.get("vector_mac.dot", 0) and not (ws and as_):
            loads = counts.get("weight_buffer.read" if ws else "activation_buffer.read", 0)
            updates = min(1.0, loads / counts["vector_mac.dot"])
        return scale_product_pj(tech, ws, as_, w["rounded_bits"], bool(w.get("float_scales", False)), updates)
    if action == "vector_mac.scale_multiply":
        return scale_multiply_pj(tech, w["dot_bits"], w["scale_bits"], float_scales)
    if action == "accumulator.add":
        return accumulate_pj(tech, w["width"], collector_bank_words(hw), float_scales)
    if action == "accumulator.gated":
        return gated_accumulation_pj(tech)
    if action == "accumulator.read":
        width = FP_ACCUMULATOR_BITS if float_scales else w["width"]
        return collector_read_pj(tech, width, collector_bank_words(hw))
    if action in ("weight_buffer.read", "weight_buffer.write"):
        write = action.endswith("write")
        vbits = V * w["value_bits"] + w["scale_bits"]
        return buffer_access_pj(tech, w["value_bits"], w["scale_bits"], V, weight_bank_words(hw, vbits),
                                write=write, collector_register=not write)
    if action in ("activation_buffer.read", "activation_buffer.write"):
        write = action.endswith("write")
        vbits = V * w["value_bits"] + w["scale_bits"]
        return buffer_access_pj(tech, w["value_bits"], w["scale_bits"], V, activation_buffer_words(hw, vbits),
                                write=write, broadcast=not write)
    if action.startswith("ppu."):
        return ppu_action_pj(tech, action, w)
    if action in ("noc.transfer", "noc.deliver"):
        return noc_bit_pj(tech, hw, action)
    if action in ("global_buffer.read", "global_buffer.write"):
        return global_buffer_bit_pj(tech, hw, write=action.endswith("write"))
    if action == "dram.read":
        return tech.dram_pj_per_bit()
    return None
