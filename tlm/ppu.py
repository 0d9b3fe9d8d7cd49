"""The VS-Quant post-processing unit of a PE (paper Sec. 5, Fig. 2c).

For an output block drained from the accumulation collector: per-layer/per-channel coarse
scaling (gamma_a * gamma_w * 2^shift), bias, the non-linear function, then the calibrate-and-
quantize of the output for the next layer: the vector max unit (Eq. 7a), a reciprocal and
shift (Eq. 7b), and quantize (Eq. 7c, and Eq. 7e-7g for integer scales). A per-layer gamma
needs the maximum over the whole layer, so the accelerator reduces the PEs' vector maxima
before the quantize step (:meth:`quantize`). The arithmetic is :mod:`vsquant.ppu`'s, so the
output equals the reference bit for bit.
"""
from __future__ import annotations

import numpy as np

from vsquant import QuantConfig, post_process, quantize_activation
from vsquant.quantize import qmax, vector_amax


class PPU:
    def __init__(self, name: str, elements_per_cycle: int, cfg: QuantConfig, actions):
        self.name = name
        self.rate = int(elements_per_cycle)
        self.cfg = cfg
        self.actions = actions

    def cycles(self, elements: int) -> int:
        return -(-elements // self.rate)

    def post_process(self, acc, a, w, tile, bias, activation, has_bias: bool):
        """Coarse scales, bias and activation on one output block; ``a``/``w`` are the tile's operand
        rows (their gammas line up with the block). Returns the float block, or None in timing-only mode."""
        n = tile.rows * tile.cols
        self.actions.add("ppu.scale", n, unit="element")
        if has_bias:
            self.actions.add("ppu.bias", n, unit="element")
        if activation:
            self.actions.add(f"ppu.{activation}", n, unit="element")
        if acc is None:
            return None
        b = None if bias is None else bias[tile.n0:tile.n1]
        return post_process(acc, a.gamma, w.gamma, self.cfg.scale_product_shift, b, activation)

    def vector_max(self, y, rows: int, cols: int, unsigned: bool):
        """Eq. 7a on a block's output vectors (along the output channels); the layer max for gamma."""
        V = self.cfg.vector_size
        self.actions.add("ppu.vector_max", rows * -(-cols // V), unit="vector", vector_size=V)
        if y is None:
            return None
        return float(vector_amax(y, V, unsigned).max()) if y.size else 0.0

    def quantize(self, y, unsigned: bool, layer_amax: float | None):
        """Eq. 7b-7g on the layer's outputs with the reduced layer max (the accelerator counts the
        actions: ``ppu.reciprocal`` per vector, ``ppu.quantize`` per element). None in timing-only mode."""
        if y is None:
            return None
        cfg = self.cfg
        fmt = cfg.act_scale
        if fmt.kind == "int":   # gamma from the layer's largest per-vector scale (Eq. 7e-7f)
            gamma = layer_amax / qmax(cfg.act_bits, unsigned) / ((1 << fmt.bits) - 1)
            return quantize_activation(y, cfg, unsigned=unsigned, gamma=gamma)
        if fmt.kind == "coarse":  # per-layer scale from the layer max (dynamic per-tensor)
            return quantize_activation(y, cfg, unsigned=unsigned, amax=layer_amax)
        return quantize_activation(y, cfg, unsigned=unsigned)
