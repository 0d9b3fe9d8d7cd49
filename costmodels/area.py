"""Area per component instance, as functions of bit widths and buffer sizes (DESIGN.md).

The accelerator of ``hw`` at datapath precision ``cfg`` (VS-Quant Sec. 5, Fig. 2):

``datapath``          per lane (vector MAC unit): V multipliers W x A, the adder tree, the
                      weight collector register (V*W bits) and the dot-product output
                      register; per PE: the broadcast activation register (V*A bits).
``scale_multiplier``  per lane, VS-Quant only: the ws x as scale-product multiplier, its rounding
                      adder, the scale registers (ws + as + R bits), the (W+A+log2 V) x R scale
                      multiplier and the scaled partial-sum register.
``accumulation``      per lane: an adder of the collector's width; per PE: the collector SRAM,
                      ``entries`` x width (partial-sum width + headroom).
``pe_buffers``        the weight and activation SRAMs, ``pe.*_buffer_bits`` each: with
                      :func:`iso_depth_hardware` these are sized for the same number of vectors
                      as the 8/8/-/- reference, each entry V*N + M bits wide (scale storage).
``ppu``               per PE: ``ppu_elements_per_cycle`` x (an fp32 multiplier, an fp32 adder, a 32-bit
                      compare for the vector max / activation and a 32-bit rounding adder): the
                      multiplier does the coarse scaling during the layer and the quantize in the
                      separate requantization pass (the TLM runs them in two passes); with
                      per-vector activation scales a reciprocal unit.
``global_buffer``     the global SRAM; ``noc``: one router per PE (``DESIGN.noc_router_ports`` ports,
                      ``DESIGN.noc_router_regs_per_bit`` flit registers each).

Areas are um^2 for the whole accelerator. ``pe_components`` are what the paper's area covers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the hardware type, for annotations only: costmodels imports vsquant alone
    from tlm.hardware import HardwareSpec

import math

from vsquant import BASELINE, QuantConfig

from .energy import (
    COMPONENTS,
    FP_ACCUMULATOR_BITS,
    PE_COMPONENTS,
    _log2v,
    adder_tree_levels,
    block_scale_product_parts,
    element_product_parts,
)
from .technology import DESIGN, Technology

__all__ = ["area_breakdown_um2", "lane_datapath_um2", "lane_bit_serial_um2", "lane_scale_um2",
           "equal_area_bit_serial_lanes", "iso_depth_hardware", "REFERENCE_CONFIG"]

REFERENCE_CONFIG = BASELINE   # the buffers of a preset are the 8/8/-/- design's


def _adder_tree_um2(tech: Technology, in_bits: int, V: int) -> float:
    return sum(k * tech.int_add_um2(w) for k, w in adder_tree_levels(in_bits, V))


def lane_datapath_um2(tech: Technology, cfg: QuantConfig) -> float:
    """One vector MAC unit without its scale hardware (the baseline datapath of Sec. 5): V element
    multipliers (for fp elements with their exponent adders and alignment shifters,
    :func:`costmodels.energy.element_product_parts`), the adder tree over the product width, registers."""
    V = cfg.vector_size
    reg = tech.register_um2_per_bit()
    prod = cfg.product_bits
    sw, sa, exp_add, stages = element_product_parts(cfg.weight_bits, cfg.act_bits, cfg.weight_format.element.exp_bits,
                                                    cfg.act_format.element.exp_bits)
    element = tech.int_mult_um2(sw, sa) + tech.int_add_um2(exp_add) + tech.shifter_um2(prod, stages)
    return (V * element + _adder_tree_um2(tech, prod, V)
            + (V * cfg.weight_bits + cfg.dot_product_bits) * reg)


def lane_bit_serial_um2(tech: Technology, cfg: QuantConfig) -> float:
    """One bit-serial vector MAC unit without its scale hardware (PrecisionBatching's 1-bit operations, Lam et
    al., arXiv:2003.00822; :mod:`vsquant.bitserial`): V x A AND gates, an adder tree of V A-bit inputs, the
    shift-add adder of the dot-product register's width, the weight collector register (V*W bits: it holds the
    weight vector while its planes are passed over) and the dot-product register. Integer elements only."""
    V, A, D = cfg.vector_size, cfg.act_bits, cfg.dot_product_bits
    reg = tech.register_um2_per_bit()
    return (V * A * tech.and_gate_um2() + _adder_tree_um2(tech, A, V) + tech.int_add_um2(D)
            + (V * cfg.weight_bits + D) * reg)


def equal_area_bit_serial_lanes(hw: HardwareSpec, cfg: QuantConfig | str = REFERENCE_CONFIG,
                                tech: Technology | None = None) -> int:
    """Bit-serial lanes that fit a PE's bit-parallel lanes' datapath area at ``cfg`` (the preset's 8/8/-/-
    design): floor(lanes x :func:`lane_datapath_um2` / :func:`lane_bit_serial_um2`). Scale hardware, collector
    and buffers are left as they are (the presets keep their sizes)."""
    from .technology import technology
    cfg = QuantConfig.parse(cfg).with_(vector_size=hw.vector_size)
    t = technology(hw.technology_nm) if tech is None else tech
    return int(hw.pe.lanes * lane_datapath_um2(t, cfg) // lane_bit_serial_um2(t, cfg))


def _block_scale_um2(tech: Technology, cfg: QuantConfig) -> float:
    """A lane's block-scale hardware (MX E8M0, NVFP4 E4M3): the scale product (an exponent adder, and for E4M3
    a 4 x 4 significand multiplier), the multiply of the dot product by its significand, the normalizer to fp32
    and the registers (as :func:`costmodels.energy.block_scale_product_pj` and ``block_scale_multiply_pj``)."""
    reg = tech.register_um2_per_bit()
    sides = [f.scale.significand_bits for f in (cfg.weight_format, cfg.act_format) if f.scale.is_block]
    exp, sig, mult = block_scale_product_parts(sides)
    a = (exp + sig) * reg
    if len(sides) == 2:
        a += tech.int_add_um2(exp) + (tech.int_mult_um2(*mult) if mult else 0.0)
    width = cfg.dot_product_bits + sig
    return a + tech.int_mult_um2(cfg.dot_product_bits, sig) + tech.shifter_um2(width, _log2v(width)) + 32 * reg


def lane_scale_um2(tech: Technology, cfg: QuantConfig) -> float:
    """One vector MAC unit's per-vector scale hardware (Fig. 2b); 0 for the baseline."""
    if cfg.is_baseline:
        return 0.0
    reg = tech.register_um2_per_bit()
    ws, as_ = cfg.weight_scale.bits, cfg.act_scale.bits
    if cfg.block_formats:
        return _block_scale_um2(tech, cfg)
    if cfg.float_scales:
        bits = max(ws, as_)
        prod = tech.fp_mult_um2(bits) + (ws + as_ + bits) * reg
        return prod + tech.fp_mult_um2(32) + 32 * reg  # dot x fp scale in fp32
    full = cfg.full_scale_product_bits
    R = cfg.rounded_scale_product_bits
    prod = tech.int_mult_um2(cfg.weight_scale.integer_bits, cfg.act_scale.integer_bits)
    if R < full:
        prod += tech.int_add_um2(full)
    prod += (full + R) * reg
    mult = tech.int_mult_um2(cfg.dot_product_bits, R) + (cfg.dot_product_bits + R) * reg
    return prod + mult


def collector_width(hw: HardwareSpec, cfg: QuantConfig) -> int:
    """Bits of a collector entry: partial sum + headroom; fp32 with fp per-vector scales."""
    return FP_ACCUMULATOR_BITS if cfg.float_scales else hw.pe.accumulator_bits(cfg.partial_sum_bits)


def _ppu_um2(tech: Technology, hw: HardwareSpec, cfg: QuantConfig) -> float:
    per_element = tech.fp_mult_um2(32) + tech.fp_add_um2(32) + 2 * tech.int_add_um2(32)
    a = hw.pe.ppu_elements_per_cycle * per_element
    if cfg.act_scale.per_vector:
        a += tech.fp_mult_um2(32) + tech.fp_add_um2(32)   # the reciprocal unit (Newton-Raphson)
    return a


def area_breakdown_um2(hw: HardwareSpec, cfg: QuantConfig | str, tech: Technology) -> dict[str, float]:
    """Area (um^2) of every component of the accelerator, keyed as ``energy.COMPONENTS``."""
    cfg = QuantConfig.parse(cfg)
    P, L = hw.num_pes, hw.pe.lanes
    sram = tech.sram_um2_per_bit()
    width = collector_width(hw, cfg)
    out = dict.fromkeys(COMPONENTS, 0.0)
    reg = tech.register_um2_per_bit()
    lane = lane_bit_serial_um2 if hw.pe.bit_serial else lane_datapath_um2
    out["datapath"] = P * (L * lane(tech, cfg) + hw.vector_size * cfg.act_bits * reg)
    out["scale_multiplier"] = P * L * lane_scale_um2(tech, cfg)
    adder = tech.fp_add_um2(32) if cfg.float_scales else tech.int_add_um2(width)
    out["accumulation"] = P * (L * adder + hw.pe.accumulation_collector_entries * width * sram)
    out["pe_buffers"] = P * (hw.pe.weight_buffer_bits + hw.pe.activation_buffer_bits) * sram
    out["ppu"] = P * _ppu_um2(tech, hw, cfg)
    out["global_buffer"] = hw.global_buffer_bits * sram
    out["noc"] = (P * DESIGN["noc_router_ports"].value * DESIGN["noc_router_regs_per_bit"].value
                  * hw.noc_bits_per_cycle * tech.register_um2_per_bit())
    out["dram"] = 0.0
    return out


def pe_area_um2(breakdown: dict[str, float]) -> float:
    return sum(breakdown[c] for c in PE_COMPONENTS)


def iso_depth_hardware(hw: HardwareSpec, cfg: QuantConfig | str, reference: QuantConfig | str = REFERENCE_CONFIG):
    """``hw`` with its buffers holding as many vectors at ``cfg`` as at ``reference`` (8/8/-/-).

    The paper compares designs of equal throughput generated by MAGNet, whose buffers are
    parameterized by depth (entries): an entry is one vector with its scale, V*N + M bits, so a
    4/8/6/10 weight buffer is (16*4 + 6) / (16*8) = 55% of the 8/8/-/- one and the baseline
    stores no scales. The preset's buffer sizes are taken as the 8/8/-/- design. Returns a new
    ``HardwareSpec`` (run the TLM on it too, so tiling sees the same number of vectors).
    """
    cfg, ref = QuantConfig.parse(cfg), QuantConfig.parse(reference)
    V = hw.vector_size

    def resize(bits, n_ref, m_ref, n, m, which):
        depth = bits // (V * n_ref + m_ref)
        if depth < 2:
            raise ValueError(f"hardware {hw.name}: the {which} buffer ({bits} bits) is too small: it holds {depth} "
                             f"{ref} vector{'s' if depth != 1 else ''} of {V * n_ref + m_ref} bits (V={V}), and "
                             "double buffering needs room for 2")
        return int(depth * (V * n + m))

    w = resize(hw.pe.weight_buffer_bits, ref.weight_bits, ref.weight_scale_vector_bits,
               cfg.weight_bits, cfg.weight_scale_vector_bits, "weight")
    a = resize(hw.pe.activation_buffer_bits, ref.act_bits, ref.act_scale_vector_bits,
               cfg.act_bits, cfg.act_scale_vector_bits, "activation")
    g_ref = max(ref.weight_storage_bits, ref.act_storage_bits)
    g_new = max(cfg.weight_storage_bits, cfg.act_storage_bits)
    gb = int(math.floor(hw.global_buffer_bits * g_new / g_ref))
    return hw.with_(weight_buffer_bits=w, activation_buffer_bits=a, global_buffer_bits=gb,
                    name=f"{hw.name}@{cfg}")
