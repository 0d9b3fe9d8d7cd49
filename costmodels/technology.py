"""Technology tables: energy and area of the primitives the cost model is built from.

Every number is a :class:`Constant` with its unit, the technology node it was published
for, and a ``source`` string (introspected by the tests). The primitives are priced at the
node they were published for and scaled to the target node with the Stillmaker & Baas
(Integration 2017) fits: energy with the per-node polynomials in Vdd, area with the
per-node area factors. Nothing here is fitted to the VS-Quant paper's results.

Tables
------
``HOROWITZ_45NM``   Horowitz, "Computing's energy problem (and what we can do about it)",
                    ISSCC 2014, Fig. 1.1.9 (45 nm, 0.9 V): integer add/multiply, fp16/fp32
                    add/multiply energy and area, 64-bit cache (SRAM) reads by capacity, DRAM.
``ALADDIN_40NM``    Shao et al., "Aladdin", ISCA 2014, TSMC 40 nm characterization of a 1-bit
                    register (flip-flop) at 1 GHz: energy per access and area.
``SRAM_16NM``       Wu et al., "A 16nm FinFET CMOS technology for mobile SoC and computing
                    applications", IEDM 2013: the 0.07 um^2 high-density 6T bitcell.
``WIRE_45NM``       Park, Qazi, Peh, Chandrakasan, DATE 2013: 40.4 fJ/bit/mm on-chip links
                    in a 45 nm mesh NoC.
``EVOAPPROX_45NM``  Mrazek et al., EvoApprox8b (DATE 2017) and its library EvoApproxLib: the power of
                    the exact 7x7 ... 16x16 unsigned multipliers synthesized to the 45 nm PDK, the
                    growth of a multiplier's energy with its widths (:func:`multiplier_energy_exponent`).
``STILLMAKER_BAAS`` Stillmaker & Baas, "Scaling equations for the accurate prediction of CMOS
                    device performance from 180 nm to 7 nm", Integration 58 (2017) 74-81:
                    energy = a*Vdd^2 + b*Vdd + c per node (HP/PTM and ITRS models) and the
                    area scaling factors between nodes.
``DESIGN``          modelling choices that are not technology data (labelled ``choice:``).

Use::

    tech = technology(16)              # or "16nm", 45, 7, or a Technology
    tech.int_mult_pj(8, 8)             # one 8x8-bit integer multiply at 16 nm, pJ
    tech.sram_pj_per_bit(1024)         # one bit read from a bank of 1 K entries, pJ
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

__all__ = [
    "Constant",
    "HOROWITZ_45NM",
    "ALADDIN_40NM",
    "SRAM_16NM",
    "WIRE_45NM",
    "EVOAPPROX_45NM",
    "multiplier_energy_exponent",
    "STILLMAKER_BAAS",
    "DESIGN",
    "ALL_TABLES",
    "all_constants",
    "Technology",
    "technology",
    "TECHNOLOGIES",
]


@dataclass(frozen=True)
class Constant:
    """A published number: value, unit, the node it was measured at (None: node-free), source."""

    value: float
    unit: str
    source: str
    node_nm: float | None = None
    vdd: float | None = None

    def __float__(self) -> float:
        return float(self.value)


_H = ("Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
      "Fig. 1.1.9, 45 nm 0.9 V")


def _h(value, unit, what):
    return Constant(value, unit, f"{_H}: {what}", 45.0, 0.9)


#: Horowitz ISSCC 2014 (45 nm, 0.9 V). Energies in pJ per operation, areas in um^2.
HOROWITZ_45NM: dict[str, Constant] = {
    "int_add_8b_pj": _h(0.03, "pJ", "8-bit integer add"),
    "int_add_16b_pj": _h(0.05, "pJ", "16-bit integer add"),
    "int_add_32b_pj": _h(0.1, "pJ", "32-bit integer add"),
    "int_mult_8b_pj": _h(0.2, "pJ", "8-bit integer multiply"),
    "int_mult_32b_pj": _h(3.1, "pJ", "32-bit integer multiply"),
    "fp16_add_pj": _h(0.4, "pJ", "16-bit floating-point add"),
    "fp32_add_pj": _h(0.9, "pJ", "32-bit floating-point add"),
    "fp16_mult_pj": _h(1.1, "pJ", "16-bit floating-point multiply"),
    "fp32_mult_pj": _h(3.7, "pJ", "32-bit floating-point multiply"),
    "int_add_8b_um2": _h(36.0, "um^2", "8-bit integer adder area"),
    "int_add_16b_um2": _h(67.0, "um^2", "16-bit integer adder area"),
    "int_add_32b_um2": _h(137.0, "um^2", "32-bit integer adder area"),
    "int_mult_8b_um2": _h(282.0, "um^2", "8-bit integer multiplier area"),
    "int_mult_32b_um2": _h(3495.0, "um^2", "32-bit integer multiplier area"),
    "fp16_add_um2": _h(1360.0, "um^2", "16-bit floating-point adder area"),
    "fp32_add_um2": _h(4184.0, "um^2", "32-bit floating-point adder area"),
    "fp16_mult_um2": _h(1640.0, "um^2", "16-bit floating-point multiplier area"),
    "fp32_mult_um2": _h(7700.0, "um^2", "32-bit floating-point multiplier area"),
    "sram_8kb_64b_read_pj": _h(10.0, "pJ", "64-bit read of an 8 KB cache"),
    "sram_32kb_64b_read_pj": _h(20.0, "pJ", "64-bit read of a 32 KB cache"),
    "sram_1mb_64b_read_pj": _h(100.0, "pJ", "64-bit read of a 1 MB cache"),
    # DRAM is an off-chip interface: its energy does not follow the logic node's scaling.
    "dram_64b_read_pj": Constant(1300.0, "pJ", f"{_H}: DRAM 64-bit access, 1.3-2.6 nJ (low end)"),
}

_A = ("Shao et al., 'Aladdin: a pre-RTL, power-performance accelerator simulator', ISCA 2014, "
      "TSMC 40 nm characterization at 1 GHz (as tabulated in Accelergy's hwcomponents library)")

#: Aladdin ISCA 2014, TSMC 40 nm (0.9 V nominal of the 40G process).
ALADDIN_40NM: dict[str, Constant] = {
    "register_bit_pj": Constant(0.009, "pJ", f"{_A}: 1-bit register, dynamic energy per access",
                                40.0, 0.9),
    "register_bit_um2": Constant(5.98, "um^2", f"{_A}: 1-bit register area", 40.0, 0.9),
}

#: SRAM area at 16 nm.
SRAM_16NM: dict[str, Constant] = {
    "bitcell_um2": Constant(0.07, "um^2", "Wu et al., 'A 16nm FinFET CMOS technology for mobile SoC "
                            "and computing applications', IEDM 2013: 0.07 um^2 high-density 6T SRAM cell",
                            16.0, 0.8),
}

#: On-chip wires.
WIRE_45NM: dict[str, Constant] = {
    "link_pj_per_bit_mm": Constant(0.0404, "pJ/bit/mm", "Park, Qazi, Peh, Chandrakasan, '40.4fJ/bit/mm "
                                   "low-swing on-chip signaling with self-resetting logic repeaters embedded "
                                   "within a mesh NoC in 45nm SOI CMOS', DATE 2013", 45.0, 0.9),
}

_EV = ("Mrazek, Hrbacek, Vasicek, Sekanina, 'EvoApprox8b: library of approximate adders and multipliers for "
       "circuit design and benchmarking of approximation methods', DATE 2017, and its library EvoApproxLib "
       "(github.com/ehw-fit/evoapproxlib, Mrazek et al. ICCAD 2016, TVLSI 2018): exact (error-free) unsigned "
       "multiplier synthesized to the 45 nm PDK, power as in the circuit's name")

#: EvoApproxLib's exact unsigned n x n multipliers (45 nm PDK, Synopsys Design Compiler), power in mW at the
#: library's common operating point; only their ratios are used: how a multiplier's energy grows with its width.
EVOAPPROX_45NM: dict[str, Constant] = {
    f"mult_{n}x{n}_mw": Constant(p, "mW", f"{_EV}: {name}", 45.0)
    for n, p, name in ((7, 0.277, "mul7u_pwr_0_277_mae_00_0000"), (8, 0.391, "mul8u_pwr_0_391_mae_00_0000"),
                       (11, 0.930, "mul11u_pwr_0_930_mae_00_0000"), (12, 1.157, "mul12u_pwr_1_157_mae_00_0000"),
                       (16, 2.202, "mul16u_pwr_2_202_ep_00"))
}


def multiplier_energy_exponent() -> float:
    """k in E(a x b) ~ (a b)^k: the least-squares slope of log power against log(n^2) over EvoApproxLib's exact
    n x n multipliers (7 to 16 bits: 1.27): the array of a b partial-product cells, and the glitches that
    ripple through its carry-save tree, which grow with its depth (Horowitz's 8- and 32-bit points give 0.99,
    but his 32-bit multiplier is a processor's, outside the 3-20-bit widths of a vector MAC)."""
    pts = [(math.log(int(k.split("_")[1].split("x")[0]) ** 2), math.log(c.value)) for k, c in EVOAPPROX_45NM.items()]
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


_SB = ("Stillmaker & Baas, 'Scaling equations for the accurate prediction of CMOS device performance "
       "from 180 nm to 7 nm', Integration 58 (2017) 74-81")

# Energy fits E(Vdd) = a Vdd^2 + b Vdd + c (relative units), 45/32 nm from PTM HP, 20-7 nm from ITRS HP
# (the coefficient table as also used by Accelergy's hwcomponents and UCLA's nodeScale).
_ENERGY_FIT = {
    45: (1.018, -0.3107, 0.1539),
    32: (0.8367, -0.4341, 0.1701),
    20: (0.373, -0.1582, 0.04104),
    16: (0.2958, -0.1241, 0.03024),
    14: (0.2363, -0.09675, 0.02239),
    10: (0.2068, -0.09311, 0.02375),
    7: (0.1776, -0.09097, 0.02447),
}
# Area factors from 45 nm to each node (row '45' of the paper's area table).
_AREA_FROM_45 = {45: 1.0, 32: 0.46, 20: 0.21, 16: 0.19, 14: 0.17, 10: 0.1, 7: 0.059}

STILLMAKER_BAAS: dict[str, Constant] = {}
for _n, (_a, _b, _c) in _ENERGY_FIT.items():
    _model = "PTM HP" if _n >= 32 else "ITRS HP"
    STILLMAKER_BAAS[f"energy_{_n}nm_a"] = Constant(_a, "1/V^2", f"{_SB}: {_n} nm ({_model}) energy fit, Vdd^2 term", _n)
    STILLMAKER_BAAS[f"energy_{_n}nm_b"] = Constant(_b, "1/V", f"{_SB}: {_n} nm ({_model}) energy fit, Vdd term", _n)
    STILLMAKER_BAAS[f"energy_{_n}nm_c"] = Constant(_c, "1", f"{_SB}: {_n} nm ({_model}) energy fit, constant", _n)
for _n, _f in _AREA_FROM_45.items():
    STILLMAKER_BAAS[f"area_45nm_to_{_n}nm"] = Constant(_f, "1", f"{_SB}: area scaling factor 45 nm -> {_n} nm", _n)

#: Modelling choices: not technology data, each says why.
DESIGN: dict[str, Constant] = {
    "sram_array_efficiency": Constant(
        0.5, "1", "choice: bitcell area / macro area of the PE's SRAM macros (periphery, sense amps, "
        "decoders, redundancy); a round value for small (KB-range) macros, not a foundry number"),
    "sram_small_exponent": Constant(
        0.5, "1", "choice: below Horowitz's smallest (8 KB) point the per-bit read energy falls as "
        "sqrt(capacity) (bitline and wordline length of a square array), the slope of Horowitz's "
        "8 KB -> 32 KB points"),
    "sram_write_over_read": Constant(
        1.0, "1", "choice: an SRAM write costs the same per bit as a read (Horowitz gives reads only)"),
    "vdd_16nm": Constant(0.8, "V", "choice: nominal 0.8 V for 16 nm FinFET (TSMC 16FF+ core voltage)", 16.0),
    "vdd_7nm": Constant(0.7, "V", "choice: nominal 0.7 V for 7 nm", 7.0),
    "vdd_45nm": Constant(0.9, "V", "Horowitz ISSCC 2014 quotes his 45 nm numbers at 0.9 V", 45.0),
    "noc_hop_mm": Constant(
        0.5, "mm", "choice: one NoC hop spans one PE tile, ~sqrt(PE area) of the magnet16 PE at 16 nm"),
    "noc_router_ports": Constant(
        5.0, "1", "choice: a 2-D mesh router has 4 neighbour ports and the local PE port"),
    "noc_router_regs_per_bit": Constant(
        2.0, "1", "choice: a router stage latches every flit bit twice (input buffer + output register)"),
    "reciprocal_passes": Constant(
        3.0, "1", "choice: the PPU reciprocal is a Newton-Raphson unit, one fp32 multiply + add per "
        "pass, 3 passes for fp32 accuracy from a small seed table"),
    "shifter_bit_over_adder_bit": Constant(
        0.5, "1", "choice: one bit of one barrel-shifter stage (a 2:1 mux) costs half an adder bit, energy and "
        "area (a transmission-gate 2:1 mux is ~6-12 transistors, a mirror full adder 28); prices the alignment "
        "of fp element products into the fixed-point adder tree and the normalization of a block-scaled "
        "partial sum to fp32, which Horowitz does not tabulate"),
    "and_gate_over_adder_bit": Constant(
        6.0 / 28.0, "1", "choice: a 2-input AND gate (a NAND2 and an inverter, 6 transistors) costs 6/28 of an "
        "adder bit (the 28-transistor mirror full adder; Weste & Harris, 'CMOS VLSI Design', 4th ed., Sec. 11.2.1), "
        "energy and area; prices the 1-bit x A-bit products of the bit-serial vector MAC (a bit plane ANDed with "
        "the activations: PrecisionBatching's 1-bit operations, Lam et al., arXiv:2003.00822), which Horowitz does "
        "not tabulate"),
    "gelu_fp_ops": Constant(
        6.0, "1", "choice: GELU (tanh form) costs ~6 fp32 multiply+add pairs in the PPU"),
    "gate_dot_product": Constant(
        1.0, "bool", "choice: a rounded scale product of 0 gates the lane for that vector: the "
        "accumulation (VS-Quant Sec. 5: 'data gating of costly accumulation operations'), the scale "
        "multiply (its operand is 0) and, by operand isolation, the dot product. The scales sit beside "
        "the vectors in the buffers, so the ws x as product (a few bits wide) is known in the operand-"
        "fetch stage, before the V multipliers switch. 0.0 gates only the accumulation and the scale "
        "multiply (studies.paper prints both)"),
    "gate_full_width": Constant(
        0.0, "bool", "choice: the zero detect and the gating sit in the scale-product rounding unit, so "
        "only a datapath that rounds its scale product (R < ws+as) gates. VS-Quant Sec. 5: 'scale factor "
        "rounding truncates many small values and converts them to zero, thereby providing opportunities "
        "for data gating'; Sec. 6 takes Fig. 4's full-width energies from Fig. 3's yellow (full-width) "
        "bars, which studies.paper prices from data-independent (never gated) runs. 1.0 also gates a "
        "full-width product that is 0 because a scale is 0"),
}

ALL_TABLES: dict[str, Mapping[str, Constant]] = {
    "HOROWITZ_45NM": HOROWITZ_45NM,
    "ALADDIN_40NM": ALADDIN_40NM,
    "SRAM_16NM": SRAM_16NM,
    "WIRE_45NM": WIRE_45NM,
    "EVOAPPROX_45NM": EVOAPPROX_45NM,
    "STILLMAKER_BAAS": STILLMAKER_BAAS,
    "DESIGN": DESIGN,
}


def all_constants() -> dict[str, Constant]:
    """Every constant of every table as ``"TABLE.name" -> Constant``."""
    return {f"{t}.{k}": c for t, tab in ALL_TABLES.items() for k, c in tab.items()}


# -- Stillmaker & Baas scaling ------------------------------------------------------------

_NODES = sorted(_ENERGY_FIT, reverse=True)   # 45, 32, 20, 16, 14, 10, 7


def _bracket(node_nm: float) -> tuple[int, int, float]:
    """Table nodes around ``node_nm`` and the linear interpolation weight of the smaller one."""
    if not _NODES[-1] <= node_nm <= _NODES[0]:
        raise ValueError(f"technology node {node_nm} nm is outside the Stillmaker & Baas range "
                         f"[{_NODES[-1]}, {_NODES[0]}] nm")
    for big, small in zip(_NODES, _NODES[1:], strict=False):
        if small <= node_nm <= big:
            return big, small, (big - node_nm) / (big - small)
    return _NODES[0], _NODES[0], 0.0  # pragma: no cover


def _energy_fit(node_nm: float, vdd: float) -> float:
    big, small, t = _bracket(node_nm)

    def e(n):
        a = STILLMAKER_BAAS[f"energy_{n}nm_a"].value
        b = STILLMAKER_BAAS[f"energy_{n}nm_b"].value
        c = STILLMAKER_BAAS[f"energy_{n}nm_c"].value
        return a * vdd * vdd + b * vdd + c

    return (1 - t) * e(big) + t * e(small)


def _area_from_45(node_nm: float) -> float:
    big, small, t = _bracket(node_nm)
    fa = STILLMAKER_BAAS[f"area_45nm_to_{big}nm"].value
    fb = STILLMAKER_BAAS[f"area_45nm_to_{small}nm"].value
    return (1 - t) * fa + t * fb


def energy_scale(from_nm: float, from_vdd: float, to_nm: float, to_vdd: float) -> float:
    """Factor that converts an energy at (from_nm, from_vdd) to (to_nm, to_vdd), Stillmaker & Baas."""
    return _energy_fit(to_nm, to_vdd) / _energy_fit(from_nm, from_vdd)


def area_scale(from_nm: float, to_nm: float) -> float:
    """Factor that converts an area at from_nm to to_nm, Stillmaker & Baas area table."""
    return _area_from_45(to_nm) / _area_from_45(from_nm)


# -- the technology -------------------------------------------------------------------------

def _power_law(x0, y0, x1, y1):
    """y = y0 * (x / x0) ** k through two points."""
    k = math.log(y1 / y0) / math.log(x1 / x0)
    return lambda x: y0 * (x / x0) ** k


def _linear(x0, y0, x1, y1):
    s = (y1 - y0) / (x1 - x0)
    return lambda x: y0 + s * (x - x0)


@dataclass(frozen=True)
class Technology:
    """A technology node: the primitives' energies (pJ) and areas (um^2) scaled to it."""

    name: str
    node_nm: float
    vdd: float
    dram_pj_per_bit_override: float | None = None
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    # -- scaling from a constant's own node ---------------------------------------------------
    def e(self, c: Constant) -> float:
        """A published energy scaled to this node (node-free constants are returned as is)."""
        if c.node_nm is None:
            return float(c.value)
        key = ("e", c.node_nm, c.vdd)
        f = self._cache.get(key)
        if f is None:
            f = energy_scale(c.node_nm, c.vdd if c.vdd is not None else self.vdd, self.node_nm, self.vdd)
            self._cache[key] = f
        return float(c.value) * f

    def a(self, c: Constant) -> float:
        """A published area scaled to this node."""
        if c.node_nm is None:
            return float(c.value)
        return float(c.value) * area_scale(c.node_nm, self.node_nm)

    @property
    def energy_scale_from_45nm(self) -> float:
        return energy_scale(45.0, 0.9, self.node_nm, self.vdd)

    @property
    def area_scale_from_45nm(self) -> float:
        return area_scale(45.0, self.node_nm)

    # -- integer arithmetic (Horowitz) --------------------------------------------------------
    def int_add_pj(self, bits: float) -> float:
        """An integer add of ``bits``-bit operands: linear in width through Horowitz's 8 and 32 bit points."""
        if bits <= 0:
            return 0.0
        H = HOROWITZ_45NM
        f = _linear(8, H["int_add_8b_pj"].value, 32, H["int_add_32b_pj"].value)
        return max(f(bits), 0.0) * self.energy_scale_from_45nm

    def int_add_um2(self, bits: float) -> float:
        if bits <= 0:
            return 0.0
        H = HOROWITZ_45NM
        f = _linear(8, H["int_add_8b_um2"].value, 32, H["int_add_32b_um2"].value)
        return max(f(bits), 0.0) * self.area_scale_from_45nm

    def int_mult_pj(self, a_bits: float, b_bits: float) -> float:
        """An a x b-bit integer multiply: Horowitz's 8x8-bit energy times (a b / 64)^k, k from synthesized
        multipliers of 7 to 16 bits (:func:`multiplier_energy_exponent`, 1.27)."""
        if a_bits <= 0 or b_bits <= 0:
            return 0.0
        k = self._cache.get("mult_k")
        if k is None:
            k = self._cache["mult_k"] = multiplier_energy_exponent()
        return (HOROWITZ_45NM["int_mult_8b_pj"].value * (a_bits * b_bits / 64.0) ** k
                * self.energy_scale_from_45nm)

    def int_mult_um2(self, a_bits: float, b_bits: float) -> float:
        if a_bits <= 0 or b_bits <= 0:
            return 0.0
        H = HOROWITZ_45NM
        f = _power_law(64.0, H["int_mult_8b_um2"].value, 1024.0, H["int_mult_32b_um2"].value)
        return f(a_bits * b_bits) * self.area_scale_from_45nm

    # -- floating point (Horowitz) ------------------------------------------------------------
    def fp_mult_pj(self, bits: int = 32) -> float:
        return self.e(HOROWITZ_45NM["fp16_mult_pj" if bits <= 16 else "fp32_mult_pj"])

    def fp_add_pj(self, bits: int = 32) -> float:
        return self.e(HOROWITZ_45NM["fp16_add_pj" if bits <= 16 else "fp32_add_pj"])

    def fp_mult_um2(self, bits: int = 32) -> float:
        return self.a(HOROWITZ_45NM["fp16_mult_um2" if bits <= 16 else "fp32_mult_um2"])

    def fp_add_um2(self, bits: int = 32) -> float:
        return self.a(HOROWITZ_45NM["fp16_add_um2" if bits <= 16 else "fp32_add_um2"])

    # -- shifters (DESIGN.shifter_bit_over_adder_bit of an adder bit) ----------------------------------
    def shifter_pj(self, bits: int, stages: int) -> float:
        """A barrel shifter of ``stages`` 2:1-mux stages over ``bits`` bits."""
        return stages * DESIGN["shifter_bit_over_adder_bit"].value * self.int_add_pj(bits) if stages > 0 else 0.0

    def shifter_um2(self, bits: int, stages: int) -> float:
        return stages * DESIGN["shifter_bit_over_adder_bit"].value * self.int_add_um2(bits) if stages > 0 else 0.0

    # -- AND gates (DESIGN.and_gate_over_adder_bit of an adder bit) ------------------------------------
    def and_gate_pj(self) -> float:
        """One 2-input AND gate switching: a bit of a 1-bit x A-bit product."""
        return DESIGN["and_gate_over_adder_bit"].value * self.int_add_pj(8) / 8

    def and_gate_um2(self) -> float:
        return DESIGN["and_gate_over_adder_bit"].value * self.int_add_um2(8) / 8

    # -- storage --------------------------------------------------------------------------------
    def register_pj_per_bit(self) -> float:
        """Writing (clocking) one flip-flop bit (Aladdin, 40 nm)."""
        return self.e(ALADDIN_40NM["register_bit_pj"])

    def register_um2_per_bit(self) -> float:
        return self.a(ALADDIN_40NM["register_bit_um2"])

    def sram_pj_per_bit(self, words: float, write: bool = False) -> float:
        """Energy per bit accessed in an SRAM bank of ``words`` entries (rows), any entry width.

        Horowitz gives 64-bit reads of 8 KB / 32 KB / 1 MB caches, i.e. banks of 1 K / 4 K / 128 K
        64-bit words. The bitline, decoder and sense energy per accessed bit is set by the number
        of words (rows), while the wordline and I/O grow with the entry width, so a bank of
        ``words`` entries of any width costs per bit what Horowitz's 64-bit-word cache of the same
        number of words costs per bit: interpolated log-log between his points; below 1 K words
        the sqrt law (``DESIGN.sram_small_exponent``), never below a register bit; above 128 K
        words the 32 KB -> 1 MB slope.
        """
        H = HOROWITZ_45NM
        kb = max(words, 1.0) * 64 / 8192.0        # capacity of the equivalent 64-bit-word cache, KB
        pts = [(8.0, H["sram_8kb_64b_read_pj"].value / 64), (32.0, H["sram_32kb_64b_read_pj"].value / 64),
               (1024.0, H["sram_1mb_64b_read_pj"].value / 64)]
        if kb <= pts[0][0]:
            e45 = pts[0][1] * (kb / pts[0][0]) ** DESIGN["sram_small_exponent"].value
        elif kb <= pts[1][0]:
            e45 = _power_law(*pts[0], *pts[1])(kb)
        else:
            e45 = _power_law(*pts[1], *pts[2])(kb)
        e = e45 * self.energy_scale_from_45nm
        if write:
            e *= DESIGN["sram_write_over_read"].value
        return max(e, self.register_pj_per_bit())

    def sram_um2_per_bit(self) -> float:
        """Macro area per bit: the 16 nm bitcell over the array efficiency, scaled to this node."""
        return self.a(SRAM_16NM["bitcell_um2"]) / DESIGN["sram_array_efficiency"].value

    # -- wires and DRAM -----------------------------------------------------------------------
    def wire_pj_per_bit_mm(self) -> float:
        return self.e(WIRE_45NM["link_pj_per_bit_mm"])

    def noc_hop_mm(self) -> float:
        """One hop of PE pitch; shrinks with the linear dimension (sqrt of the area factor) from 16 nm."""
        return DESIGN["noc_hop_mm"].value * math.sqrt(area_scale(16.0, self.node_nm))

    def dram_pj_per_bit(self) -> float:
        if self.dram_pj_per_bit_override is not None:
            return float(self.dram_pj_per_bit_override)
        return HOROWITZ_45NM["dram_64b_read_pj"].value / 64.0

    def describe(self) -> str:
        return (f"{self.name}: {self.node_nm:g} nm at {self.vdd:g} V; energies x{self.energy_scale_from_45nm:.3f} "
                f"and areas x{self.area_scale_from_45nm:.3f} of Horowitz's 45 nm (Stillmaker & Baas 2017)")


TECHNOLOGIES: dict[str, Technology] = {
    "45nm": Technology("45nm", 45.0, DESIGN["vdd_45nm"].value),
    "16nm": Technology("16nm", 16.0, DESIGN["vdd_16nm"].value),
    "7nm": Technology("7nm", 7.0, DESIGN["vdd_7nm"].value),
}


def technology(spec=None) -> Technology:
    """A :class:`Technology` from a name (``"16nm"``), a node in nm (16), or a Technology.

    ``None`` gives 16 nm, the VS-Quant paper's node. Nodes between the table's points are
    interpolated (Vdd from the nearest named node).
    """
    if spec is None:
        return TECHNOLOGIES["16nm"]
    if isinstance(spec, Technology):
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower().replace(" ", "")
        if key in TECHNOLOGIES:
            return TECHNOLOGIES[key]
        try:
            spec = float(key.removesuffix("nm"))
        except ValueError:
            raise ValueError(f"unknown technology {spec!r}; use one of {', '.join(TECHNOLOGIES)} "
                             "or a node in nm") from None
    if isinstance(spec, (int, float)):
        for t in TECHNOLOGIES.values():
            if t.node_nm == float(spec):
                return t
        _bracket(float(spec))   # raises outside the range
        nearest = min(TECHNOLOGIES.values(), key=lambda t: abs(t.node_nm - float(spec)))
        return Technology(f"{float(spec):g}nm", float(spec), nearest.vdd)
    raise TypeError(f"technology takes a name, a node in nm or a Technology, got {type(spec).__name__}")
