"""The VS-Quant vector MAC units of a PE (paper Sec. 5, Fig. 2b).

``lanes`` units share each broadcast activation vector; each holds one weight vector in its
weight collector and computes, per cycle, a V-element integer dot product (W+A+log2 V bits),
the product of the two integer scales sw*sa, optionally rounded to R bits, and their product,
the scaled partial sum. A rounded scale product of 0 gates the accumulation. A tile of
``rows x cols`` outputs over ``nvec`` vectors takes ``rows * nvec * ceil(cols / lanes)`` cycles,
times ``passes`` when the operand on the weight port is wider than the datapath's W bits (an
attention matmul's A-bit activations on a 4-bit datapath run as ceil(A/W) bit slices).

Bit-serial units (``pe.datapath: bit-serial``; PrecisionBatching, Lam et al., arXiv:2003.00822) hold the
W-bit weight vector in the weight collector and pass over its two's-complement bit planes, most significant
first, one a cycle: V AND gates of a weight bit with an A-bit activation, an adder tree of V A-bit inputs, a
shift-add into the dot-product register (the top plane subtracts); the scale product, scale multiply and
accumulation follow once per vector. A tile takes ``planes`` times the cycles (W passes, or the top k planes
at run-time precision k), and the numerics are :func:`vsquant.bitserial.bit_serial_vector_mac`, pass by pass.
With ``midpoint`` (k < W) the dropped planes' mean times the activation sum is added: the PE sums each broadcast
activation vector once (``vector_mac.activation_sum``, an adder tree shared by the lanes) and every lane
shift-adds it into its dot product (``vector_mac.plane_offset``), overlapped with the passes (no cycles).

The numerics are :func:`vsquant.vector_mac` (bit-parallel). Timing and action counts are per tile; the
values of consecutive tiles that share a resident weight tile are evaluated in one call over
their rows and their whole vector range, in ascending vector order. Integer accumulation is
exact and the fp order is the reference's, so this is bit-identical to evaluating tile by tile
(tests compare with the reference) and keeps a BERT-sized layer fast.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from vsquant import QuantConfig, vector_mac
from vsquant.bitserial import bit_serial_vector_mac

from .actions import action

# the actions this component counts (tlm.actions.ACTIONS declares them; a misspelling fails at import)
VECTOR_MAC_DOT = action("vector_mac.dot")
VECTOR_MAC_SCALE_MULTIPLY = action("vector_mac.scale_multiply")
VECTOR_MAC_SCALE_PRODUCT = action("vector_mac.scale_product")
VECTOR_MAC_PLANE_OFFSET = action("vector_mac.plane_offset")
VECTOR_MAC_ACTIVATION_SUM = action("vector_mac.activation_sum")


if TYPE_CHECKING:
    import simpy

    from vsquant import MacResult, QuantizedTensor

    from .actions import ActionCounts

PIPELINE_DEPTH = 4  # buffer read, dot product, scale product, accumulate: cycles before the first result


def mac_numerics(a: QuantizedTensor, w: QuantizedTensor, cfg: QuantConfig, planes: int, j0: int = 0,
                 j1: int | None = None, midpoint: bool = False) -> MacResult:
    """Eq. 5 as the units compute it: bit-parallel (``planes`` 0) or bit-serial over the top ``planes`` bit
    planes of ``w`` (all of them when ``planes`` is its bits; ``midpoint``: and the dropped planes' mean)."""
    if planes:
        return bit_serial_vector_mac(a, w, cfg, planes=min(planes, w.bits), j0=j0, j1=j1, midpoint=midpoint)
    return vector_mac(a, w, cfg, j0=j0, j1=j1)


class VectorMACUnits:
    def __init__(self, env: simpy.Environment, name: str, lanes: int, vector_size: int, cfg: QuantConfig,
                 actions: ActionCounts, passes: int = 1, planes: int = 0, midpoint: bool = False) -> None:
        self.env = env
        # an operand wider than the W-bit weight port runs in bit slices; a bit-serial unit passes over
        # ``planes`` weight bit planes (0: a bit-parallel unit)
        self.passes = planes or passes
        self.planes = planes
        self.midpoint = midpoint and 0 < planes < cfg.weight_bits    # the offset of the dropped planes
        self.name = name
        self.lanes = lanes
        self.vector_size = vector_size
        self.cfg = cfg
        self.actions = actions

    def cycles(self, rows: int, cols: int, nvec: int) -> int:
        return rows * nvec * -(-cols // self.lanes) * self.passes

    def count(self, n_dot: int) -> None:
        """Count ``n_dot`` V-wide dot products and, with per-vector scales, their scale products."""
        cfg = self.cfg
        wf, af = cfg.weight_format, cfg.act_format
        # block formats also name their elements' exponent widths and the product width (fp codes are wider
        # than the element bits); VS-Quant's integer datapath keeps the paper's keys
        block = {"weight_exp_bits": wf.element.exp_bits, "act_exp_bits": af.element.exp_bits,
                 "product_bits": cfg.product_bits} if cfg.block_formats else {}
        if self.planes:
            block["weight_planes"] = self.planes
        self.actions.add(VECTOR_MAC_DOT, n_dot, weight_bits=cfg.weight_bits,
                         act_bits=cfg.act_bits, vector_size=self.vector_size,
                         out_bits=cfg.dot_product_bits, **block)
        if self.midpoint:   # one more (fraction) bit in the dot-product register for the half-integer offset
            self.actions.add(VECTOR_MAC_PLANE_OFFSET, n_dot, out_bits=cfg.dot_product_bits + 1)
        if not cfg.is_baseline:
            scales = {f"{side}_scale_mantissa_bits": f.scale.significand_bits
                      for side, f in (("weight", wf), ("act", af)) if f.scale.is_block}
            self.actions.add(VECTOR_MAC_SCALE_PRODUCT, n_dot,
                             weight_scale_bits=cfg.weight_scale.integer_bits or cfg.weight_scale.bits,
                             act_scale_bits=cfg.act_scale.integer_bits or cfg.act_scale.bits,
                             rounded_bits=cfg.rounded_scale_product_bits, float_scales=cfg.float_scales, **scales)
            if cfg.block_formats:   # the product's significand: E4M3 4 bits a side, E8M0 none
                sig = sum(f.scale.significand_bits + 1 for f in (wf, af) if f.scale.significand_bits)
                self.actions.add(VECTOR_MAC_SCALE_MULTIPLY, n_dot, dot_bits=cfg.dot_product_bits, scale_bits=sig,
                                 block_scales=True)
            else:
                self.actions.add(VECTOR_MAC_SCALE_MULTIPLY, n_dot,
                                 dot_bits=cfg.dot_product_bits, scale_bits=cfg.rounded_scale_product_bits)

    def count_activation_sums(self, n: int) -> None:
        """With ``midpoint``: ``n`` broadcast activation vectors summed (one adder tree per PE)."""
        if self.midpoint:
            self.actions.add(VECTOR_MAC_ACTIVATION_SUM, n, act_bits=self.cfg.act_bits, vector_size=self.vector_size)

    def evaluate(self, a: QuantizedTensor, w: QuantizedTensor, j0: int, j1: int) -> MacResult:
        """The numerics of consecutive tiles on rows of ``a`` and ``w`` over vectors [j0, j1)."""
        return mac_numerics(a, w, self.cfg, self.planes, j0, j1, self.midpoint)
