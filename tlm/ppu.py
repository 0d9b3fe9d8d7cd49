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

from typing import TYPE_CHECKING

import numpy as np

from vsquant import QuantConfig, post_process, quantize_activation
from vsquant.quantize import qmax, vector_amax

from .actions import action

# the actions this component counts (tlm.actions.ACTIONS declares them; a misspelling fails at import)
PPU_BIAS = action("ppu.bias")
PPU_SCALE = action("ppu.scale")
PPU_VECTOR_MAX = action("ppu.vector_max")


if TYPE_CHECKING:
    from vsquant import QuantizedTensor

    from .actions import ActionCounts


class PPU:
    def __init__(self, name: str, elements_per_cycle: int, cfg: QuantConfig, actions: ActionCounts) -> None:
        self.name = name
        self.rate = int(elements_per_cycle)
        self.cfg = cfg
        self.actions = actions

    def cycles(self, elements: int) -> int:
        return -(-elements // self.rate)

    def count_blocks(self, elements: int, vectors: int, has_bias: bool, activation: str | None) -> None:
        """Actions of post-processing output blocks of ``elements`` elements in ``vectors`` vectors:
        scale, bias, activation, vector max."""
        self.actions.add(PPU_SCALE, elements)
        if has_bias:
            self.actions.add(PPU_BIAS, elements)
        if activation:
            self.actions.add(f"ppu.{activation}", elements)
        self.actions.add(PPU_VECTOR_MAX, vectors, vector_size=self.cfg.vector_size)

    def post_process(self, acc: np.ndarray, a: QuantizedTensor, w: QuantizedTensor, n0: int, n1: int,
                     bias: np.ndarray | None, activation: str | None) -> np.ndarray:
        """Coarse scales, bias and activation on output rows of ``a`` x channels [n0, n1) of ``w``
        (their gammas line up with ``acc``); returns the float block (its vector maxima are
        :meth:`vector_max`'s)."""
        b = None if bias is None else bias[n0:n1]
        y = post_process(acc, a.gamma, w.gamma, self.cfg.scale_product_shift, b, activation)
        return y

    def vector_max(self, y: np.ndarray, unsigned: bool) -> float:
        """Eq. 7a on a block's output vectors (along the channels): its largest, for the layer max."""
        return float(vector_amax(y, self.cfg.vector_size, unsigned).max()) if y.size else 0.0

    def quantize(self, y: np.ndarray | None, unsigned: bool, layer_amax: float | None) -> QuantizedTensor | None:
        """Eq. 7b-7g on the layer's outputs with the reduced layer max (the accelerator counts the
        actions: ``ppu.reciprocal`` per vector, ``ppu.quantize`` per element). None in timing-only mode."""
        if y is None:
            return None
        cfg = self.cfg
        fmt = cfg.act_scale
        if fmt.kind == "int":   # gamma from the layer's largest per-vector scale (Eq. 7e-7f)
            if layer_amax is None:
                raise ValueError(f"two-level activation scales ({fmt}) need the layer's reduced vector max")
            gamma = layer_amax / qmax(cfg.act_bits, unsigned) / ((1 << fmt.bits) - 1)
            return quantize_activation(y, cfg, unsigned=unsigned, gamma=gamma)
        if fmt.kind == "coarse":  # per-layer scale from the layer max (dynamic per-tensor)
            return quantize_activation(y, cfg, unsigned=unsigned, amax=layer_amax)
        if fmt.kind == "fp" or fmt.is_block:   # per vector / per block (NVFP4's tensor scale: the layer max)
            return quantize_activation(y, cfg, unsigned=unsigned)
        raise ValueError(f"activation scale kind {fmt.kind!r} has no quantizer")   # pragma: no cover
