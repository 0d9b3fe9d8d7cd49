"""Energy per action, as functions of the bit widths the TLM counted (DESIGN.md, cost model conventions).

Each action the TLM counts (``tlm.actions.ACTIONS``) is priced by the model class of its component, a method
per action (:data:`COMPONENT_MODELS`, Accelergy's hwcomponents style; :data:`PRICED_ACTIONS` is built from them
at import), from the primitives of
:mod:`costmodels.technology`: a multiplier's energy grows as (a b)^k with the product of its operand
widths (k = 1.27, fitted to synthesized 7-16-bit multipliers; its area in proportion to a b), an adder
and a register in proportion to their width, an SRAM access in proportion to the bits accessed times a
per-bit energy that grows with the bank's number of entries.

The hardware behind each action (VS-Quant Sec. 5, Fig. 2):

``vector_mac.dot``            V multipliers W x A, an adder tree of V-1 adders whose width grows
                              by one bit a level (W+A+1 ... W+A+log2 V) and the dot-product
                              output register (the weight operand sits in the lane's weight
                              collector, the activation operand on the PE's broadcast bus).
                              Bit-serial (``weight_planes`` > 0; PrecisionBatching, Lam et al.,
                              arXiv:2003.00822; :mod:`vsquant.bitserial`): one pass per weight bit plane,
                              each V x A AND gates (the 1-bit x A-bit products), an adder tree of V
                              A-bit inputs and a shift-add into the dot-product register (an adder and
                              the register, W+A+log2 V bits): no multipliers.
``vector_mac.plane_offset``   run-time precision with the dropped planes' mean: a shift-add of the
                              activation sum into the dot-product register (an adder and the register,
                              one fraction bit wider), per dot product.
``vector_mac.activation_sum`` the sum of a broadcast activation vector: an adder tree of V A-bit inputs,
                              once per PE per broadcast (shared by the lanes).
``vector_mac.scale_product``  the integer ws x as multiplier, its rounding to R bits (an adder on
                              the full product when R < ws+as) and the R-bit product register (the
                              operands are latched with their vectors, priced with the buffer reads);
                              a side with '-' has scale 1 and no multiplier: the product is the other
                              scale, rounded and latched only when it changes (per weight-vector load
                              or per activation broadcast); fp scales use an fp16/fp32 multiplier.
``vector_mac.scale_multiply`` the (W+A+log2 V) x R multiplier and its partial-sum register.

Block formats (OCP MX, NVFP4) on the same unit: fp element products are significand multipliers,
an exponent adder and an alignment shifter into a fixed-point adder tree as wide as the two
codes (exact, as the numerics are); the block-scale product is an exponent add (E8M0) or a
4 x 4 significand multiply (E4M3); the scaled partial sum is normalized to fp32 and accumulated
in fp32 like fp per-vector scales.
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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # the hardware type, for annotations only: costmodels imports vsquant alone
    from tlm.hardware import HardwareSpec

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

from .technology import DESIGN, Technology

__all__ = [
    "COMPONENTS",
    "PE_COMPONENTS",
    "component_of",
    "adder_tree_pj",
    "dot_product_pj",
    "bit_serial_pass_pj",
    "element_product_parts",
    "block_scale_product_parts",
    "block_scale_product_pj",
    "block_scale_multiply_pj",
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
    "COMPONENT_MODELS",
    "PRICED_ACTIONS",
    "Pricing",
    "collector_bank_words",
    "weight_bank_words",
    "activation_buffer_words",
]

COMPONENTS = ("datapath", "scale_multiplier", "accumulation", "pe_buffers", "ppu",
              "global_buffer", "noc", "dram")
PE_COMPONENTS = COMPONENTS[:5]

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


def element_product_parts(weight_bits: int, act_bits: int, weight_exp_bits: int = 0,
                          act_exp_bits: int = 0) -> tuple[int, int, int, int]:
    """The hardware of one element product of a fixed-point dot product: (significand multiplier widths
    a x b, exponent-adder width, alignment-shifter stages). Integers (VS-Quant, MX INT8): an N x A multiplier,
    nothing else. Floats (FP8/FP6/FP4, sign-magnitude): the (bits - exp) x (bits - exp) significand
    multiplier (implicit one included, the sign an XOR), an adder of the exponents when both sides have one,
    and a shifter that places the product into the fixed-point word at the exponent sum (one stage per bit of
    the sum's range)."""
    sig_w, sig_a = weight_bits - weight_exp_bits, act_bits - act_exp_bits
    exp_add = max(weight_exp_bits, act_exp_bits) + 1 if weight_exp_bits and act_exp_bits else 0
    span = ((1 << weight_exp_bits) - 1) + ((1 << act_exp_bits) - 1)
    return sig_w, sig_a, exp_add, span.bit_length()


def dot_product_pj(tech: Technology, weight_bits: int, act_bits: int, vector_size: int,
                   out_bits: int | None = None, weight_exp_bits: int = 0, act_exp_bits: int = 0,
                   product_bits: int | None = None) -> float:
    """One V-element fixed-point dot product (Eq. 4) with its operand and output registers: V element
    products (:func:`element_product_parts`), an adder tree over ``product_bits``-wide products (W + A for
    integers; the two codes' widths for fp elements, exact) and the output register."""
    V = vector_size
    prod = product_bits if product_bits is not None else weight_bits + act_bits
    out = out_bits if out_bits is not None else prod + _log2v(V)
    sw, sa, exp_add, stages = element_product_parts(weight_bits, act_bits, weight_exp_bits, act_exp_bits)
    element = tech.int_mult_pj(sw, sa) + tech.int_add_pj(exp_add) + tech.shifter_pj(prod, stages)
    return V * element + adder_tree_pj(tech, prod, V) + out * tech.register_pj_per_bit()


def bit_serial_pass_pj(tech: Technology, act_bits: int, vector_size: int, out_bits: int) -> float:
    """One pass of a bit-serial vector MAC lane over one weight bit plane (:mod:`vsquant.bitserial`): V x A AND
    gates (each activation bit ANDed with its weight bit), an adder tree of V A-bit inputs, and the shift-add of
    its sum into the ``out_bits`` dot-product register (an adder of that width and the register)."""
    V = vector_size
    return (V * act_bits * tech.and_gate_pj() + adder_tree_pj(tech, act_bits, V) + tech.int_add_pj(out_bits)
            + out_bits * tech.register_pj_per_bit())


def block_scale_product_parts(mantissas: list[int]) -> tuple[int, int, tuple[int, int] | None]:
    """The hardware of a block-scale product from the block-scaled sides' mantissa widths (E8M0 0, E4M3 3):
    (exponent width, significand bits of the product, significand multiplier widths or None). E8M0 has an
    8-bit exponent, E4M3 a 4-bit one, one bit more for a sum of two; only two E4M3 sides need a multiplier."""
    exp = max(8 if m == 0 else 4 for m in mantissas) + (1 if len(mantissas) == 2 else 0)
    sig = sum(m + 1 for m in mantissas if m)
    mult = (mantissas[0] + 1, mantissas[1] + 1) if len(mantissas) == 2 and all(mantissas) else None
    return exp, sig, mult


def block_scale_product_pj(tech: Technology, weight_scale_mantissa_bits: int | None,
                           act_scale_mantissa_bits: int | None, updates_per_dot: float = 1.0) -> float:
    """The product of two block scales (OCP MX E8M0, NVFP4 E4M3; None: that side has no block scale) into its
    register: E8M0 x E8M0 is an add of the 8-bit exponents (no multiplier: MX's scales are powers of two),
    E4M3 x E4M3 a 4 x 4 significand multiply and a 5-bit exponent add. With one block-scaled side the product
    is that scale, latched when it changes (``updates_per_dot``, as a one-sided VS-Quant scale product)."""
    sides = [m for m in (weight_scale_mantissa_bits, act_scale_mantissa_bits) if m is not None]
    exp, sig, mult = block_scale_product_parts(sides)
    reg = (exp + sig) * tech.register_pj_per_bit()
    if len(sides) < 2:
        return reg * updates_per_dot
    return tech.int_add_pj(exp) + (tech.int_mult_pj(*mult) if mult else 0.0) + reg


def block_scale_multiply_pj(tech: Technology, dot_bits: int, scale_bits: int) -> float:
    """The fixed-point dot product scaled by a block-scale product and normalized to fp32 for the
    accumulation: a ``dot_bits`` x ``scale_bits`` significand multiply where the product has a significand
    (E4M3; ``scale_bits`` 0 for E8M0, whose exponent only adds), a leading-one normalizing shifter and the fp32
    partial-sum register."""
    width = dot_bits + scale_bits
    return (tech.int_mult_pj(dot_bits, scale_bits) + tech.shifter_pj(width, _log2v(width))
            + 32 * tech.register_pj_per_bit())


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


# -- the component models: one class per component, a method per action (Accelergy's hwcomponents) --------

@dataclass(frozen=True)
class Pricing:
    """What an action's energy depends on besides its counted widths: the hardware, the technology, whether
    the datapath has fp per-vector scales, and the layer's counts (for a one-sided scale product)."""

    hw: HardwareSpec
    tech: Technology
    float_scales: bool = False
    counts: dict | None = None


def breakdown(component: str) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Mark a component model's method as the price of the action of its name, in ``component`` of the
    report's breakdown (:data:`COMPONENTS`)."""
    if component not in COMPONENTS:
        raise ValueError(f"breakdown component {component!r} is not one of {', '.join(COMPONENTS)}")

    def mark(fn: Callable[..., float]) -> Callable[..., float]:
        fn._breakdown = component   # type: ignore[attr-defined]
        return fn
    return mark


class VectorMac:
    """The vector MAC unit (Sec. 5, Fig. 2b): V-wide dot product, scale product, scale multiply."""

    name = "vector_mac"

    @staticmethod
    @breakdown("datapath")
    def dot(p: Pricing, *, weight_bits: int, act_bits: int, vector_size: int | None = None,
            out_bits: int | None = None, weight_exp_bits: int = 0, act_exp_bits: int = 0,
            product_bits: int | None = None, weight_planes: int = 0) -> float:
        """A V-wide dot product: bit-parallel (:func:`dot_product_pj`), or with ``weight_planes`` > 0 that many
        bit-serial passes (:func:`bit_serial_pass_pj`)."""
        V = vector_size or p.hw.vector_size
        if weight_planes:
            out = out_bits if out_bits is not None else weight_bits + act_bits + _log2v(V)
            return weight_planes * bit_serial_pass_pj(p.tech, act_bits, V, out)
        return dot_product_pj(p.tech, weight_bits, act_bits, vector_size or p.hw.vector_size, out_bits,
                              weight_exp_bits, act_exp_bits, product_bits)

    @staticmethod
    @breakdown("datapath")
    def plane_offset(p: Pricing, *, out_bits: int) -> float:
        return p.tech.int_add_pj(out_bits) + out_bits * p.tech.register_pj_per_bit()

    @staticmethod
    @breakdown("datapath")
    def activation_sum(p: Pricing, *, act_bits: int, vector_size: int) -> float:
        return adder_tree_pj(p.tech, act_bits, vector_size)

    @staticmethod
    @breakdown("scale_multiplier")
    def scale_product(p: Pricing, *, weight_scale_bits: int, act_scale_bits: int, rounded_bits: int,
                      float_scales: bool = False, weight_scale_mantissa_bits: int = -1,
                      act_scale_mantissa_bits: int = -1) -> float:
        """VS-Quant's integer or fp scale product; with block scales (a mantissa width >= 0 given for a side:
        E8M0 0, E4M3 3) :func:`block_scale_product_pj`."""
        updates = 1.0
        counts = p.counts
        if counts is not None and counts.get("vector_mac.dot", 0) and not (weight_scale_bits and act_scale_bits):
            loads = counts.get("weight_buffer.read" if weight_scale_bits else "activation_buffer.read", 0)
            updates = min(1.0, loads / counts["vector_mac.dot"])
        if weight_scale_mantissa_bits >= 0 or act_scale_mantissa_bits >= 0:
            return block_scale_product_pj(p.tech, weight_scale_mantissa_bits if weight_scale_mantissa_bits >= 0
                                          else None, act_scale_mantissa_bits if act_scale_mantissa_bits >= 0
                                          else None, updates)
        return scale_product_pj(p.tech, weight_scale_bits, act_scale_bits, rounded_bits, bool(float_scales), updates)

    @staticmethod
    @breakdown("scale_multiplier")
    def scale_multiply(p: Pricing, *, dot_bits: int, scale_bits: int, block_scales: bool = False) -> float:
        if block_scales:
            return block_scale_multiply_pj(p.tech, dot_bits, scale_bits)
        return scale_multiply_pj(p.tech, dot_bits, scale_bits, p.float_scales)


class Accumulator:
    """The accumulation collector: a lane's bank of entries/lanes words of the collector's width."""

    name = "accumulator"

    @staticmethod
    @breakdown("accumulation")
    def add(p: Pricing, *, width: int) -> float:
        return accumulate_pj(p.tech, width, collector_bank_words(p.hw), p.float_scales)

    @staticmethod
    @breakdown("accumulation")
    def gated(p: Pricing, *, width: int) -> float:
        return gated_accumulation_pj(p.tech)

    @staticmethod
    @breakdown("accumulation")
    def read(p: Pricing, *, width: int) -> float:
        return collector_read_pj(p.tech, FP_ACCUMULATOR_BITS if p.float_scales else width, collector_bank_words(p.hw))


class _PEBuffer:
    """A PE buffer of V*N + M-bit entries: :meth:`read` and :meth:`write` price one entry's access in a bank of
    ``_words(hw, entry bits)`` entries; ``read_path`` names what a read feeds (a keyword of
    :func:`buffer_access_pj`)."""

    name: str
    read_path: str

    @staticmethod
    def _words(hw: HardwareSpec, vector_bits: int) -> float:
        raise NotImplementedError

    @classmethod
    def _access(cls, p: Pricing, value_bits: int, scale_bits: int, vector_size: int | None, write: bool) -> float:
        V = vector_size or p.hw.vector_size
        words = cls._words(p.hw, V * value_bits + scale_bits)
        return buffer_access_pj(p.tech, value_bits, scale_bits, V, words, write=write, **{cls.read_path: not write})

    @classmethod
    @breakdown("pe_buffers")
    def read(cls, p: Pricing, *, value_bits: int, scale_bits: int, vector_size: int | None = None) -> float:
        return cls._access(p, value_bits, scale_bits, vector_size, False)

    @classmethod
    @breakdown("pe_buffers")
    def write(cls, p: Pricing, *, value_bits: int, scale_bits: int, vector_size: int | None = None) -> float:
        return cls._access(p, value_bits, scale_bits, vector_size, True)


class WeightBuffer(_PEBuffer):
    """The weight buffer: one SRAM bank per lane; a read fills the lane's weight collector register."""

    name = "weight_buffer"
    read_path = "collector_register"
    _words = staticmethod(weight_bank_words)


class ActivationBuffer(_PEBuffer):
    """The activation buffer: one SRAM bank; a read is latched once and broadcast to the lanes."""

    name = "activation_buffer"
    read_path = "broadcast"
    _words = staticmethod(activation_buffer_words)


def _ppu_op(verb: str) -> Any:
    """The price of a PPU action that takes no widths (:func:`ppu_action_pj` of ``ppu.<verb>``)."""
    return staticmethod(breakdown("ppu")(lambda p: ppu_action_pj(p.tech, f"ppu.{verb}", {})))


class PPU:
    """The post-processing unit (Fig. 2c), per element or per vector (:func:`ppu_action_pj`)."""

    name = "ppu"
    scale = _ppu_op("scale")
    bias = _ppu_op("bias")
    relu = _ppu_op("relu")
    relu6 = _ppu_op("relu6")
    gelu = _ppu_op("gelu")
    gelu_tanh = _ppu_op("gelu_tanh")
    none = _ppu_op("none")
    reciprocal = _ppu_op("reciprocal")

    @staticmethod
    @breakdown("ppu")
    def quantize(p: Pricing, *, out_bits: int = 8) -> float:
        return ppu_action_pj(p.tech, "ppu.quantize", {"out_bits": out_bits})

    @staticmethod
    @breakdown("ppu")
    def vector_max(p: Pricing, *, vector_size: int = 16) -> float:
        return ppu_action_pj(p.tech, "ppu.vector_max", {"vector_size": vector_size})


class GlobalBuffer:
    """The global buffer: per bit, SRAM banks of 64-bit rows."""

    name = "global_buffer"
    read = staticmethod(breakdown("global_buffer")(lambda p: global_buffer_bit_pj(p.tech, p.hw)))
    write = staticmethod(breakdown("global_buffer")(lambda p: global_buffer_bit_pj(p.tech, p.hw, write=True)))


class NoC:
    """The NoC: per bit, sqrt(P) hops for a transfer, one hop per multicast delivery."""

    name = "noc"
    transfer = staticmethod(breakdown("noc")(lambda p: noc_bit_pj(p.tech, p.hw, "noc.transfer")))
    deliver = staticmethod(breakdown("noc")(lambda p: noc_bit_pj(p.tech, p.hw, "noc.deliver")))


class DRAM:
    """DRAM: per bit read (not scaled with the logic node)."""

    name = "dram"
    read = staticmethod(breakdown("dram")(lambda p: p.tech.dram_pj_per_bit()))


COMPONENT_MODELS = (VectorMac, Accumulator, WeightBuffer, ActivationBuffer, PPU, GlobalBuffer, NoC, DRAM)


def _priced_actions() -> dict[str, tuple[str, Callable[..., float], frozenset[str]]]:
    """``{action: (breakdown component, price function, width keys)}`` from the component models' methods
    marked with :func:`breakdown` (inherited ones included); unmarked methods are helpers, not actions."""
    out = {}
    for model in COMPONENT_MODELS:
        for verb in dir(model):
            fn = getattr(model, verb)
            if callable(fn) and hasattr(fn, "_breakdown"):
                params = inspect.signature(fn).parameters
                keys = frozenset(k for k, v in params.items() if v.kind == v.KEYWORD_ONLY)
                out[f"{model.name}.{verb}"] = (fn._breakdown, fn, keys)
    return out


#: every priced action: (breakdown component, price function, the width keys it takes)
PRICED_ACTIONS = _priced_actions()


def component_of(action: str) -> str | None:
    """The breakdown component an action belongs to (None: not priced)."""
    entry = PRICED_ACTIONS.get(action)
    return None if entry is None else entry[0]


def action_energy_pj(action: str, widths: dict, hw: HardwareSpec, tech: Technology, float_scales: bool = False,
                     counts: dict | None = None) -> float | None:
    """Energy (pJ) of one event of ``action`` with its counted ``widths``; None if not priced.

    ``float_scales``: the datapath has fp per-vector scales (fp scale multiply and fp32 accumulation).
    ``counts``: the layer's action counts, for a one-sided scale product (it switches once per
    weight-vector load or activation broadcast, not once per dot product; without: per dot product).
    A width key the action's model does not take raises ``ValueError`` naming the ones it takes.
    """
    entry = PRICED_ACTIONS.get(action)
    if entry is None:
        return None
    _, fn, keys = entry
    w = dict(widths or {})
    if not set(w) <= keys:
        raise ValueError(f"action {action!r} priced with width key(s) {', '.join(sorted(set(w) - keys))}; "
                         f"its model takes {', '.join(sorted(keys)) or 'none'}")
    return float(fn(Pricing(hw, tech, float_scales, counts), **w))
