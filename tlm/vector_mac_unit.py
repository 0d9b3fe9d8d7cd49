"""The VS-Quant vector MAC units of a PE (paper Sec. 5, Fig. 2b).

``lanes`` units share each broadcast activation vector; each holds one weight vector in its
weight collector and computes, per cycle, a V-element integer dot product (W+A+log2 V bits),
the product of the two integer scales sw*sa, optionally rounded to R bits, and their product,
the scaled partial sum. A rounded scale product of 0 gates the accumulation. A tile of
``rows x cols`` outputs over ``nvec`` vectors takes ``rows * nvec * ceil(cols / lanes)`` cycles.

The numerics are :func:`vsquant.vector_mac` on the tile, continuing the collector's
accumulation in ascending vector order, which is what makes the result bit-identical to the
reference.
"""
from __future__ import annotations

from vsquant import QuantConfig, vector_mac

PIPELINE_DEPTH = 4  # buffer read, dot product, scale product, accumulate: cycles before the first result


class VectorMACUnits:
    def __init__(self, env, name: str, lanes: int, vector_size: int, cfg: QuantConfig, actions):
        self.env = env
        self.name = name
        self.lanes = lanes
        self.vector_size = vector_size
        self.cfg = cfg
        self.actions = actions

    def cycles(self, rows: int, cols: int, nvec: int) -> int:
        return rows * nvec * -(-cols // self.lanes)

    def compute(self, tile, a, w, acc):
        """Run a tile; ``a``/``w`` are the GEMM's operands (None in timing-only mode).

        Returns (accumulators or None, gated count or None).
        """
        cfg = self.cfg
        n_dot = tile.rows * tile.cols * tile.nvec
        self.actions.add("vector_mac.dot", n_dot, unit="dot product", weight_bits=cfg.weight_bits,
                         act_bits=cfg.act_bits, vector_size=self.vector_size,
                         out_bits=cfg.dot_product_bits)
        if not cfg.is_baseline:
            self.actions.add("vector_mac.scale_product", n_dot, unit="multiply",
                             weight_scale_bits=cfg.weight_scale.integer_bits or cfg.weight_scale.bits,
                             act_scale_bits=cfg.act_scale.integer_bits or cfg.act_scale.bits,
                             rounded_bits=cfg.rounded_scale_product_bits, float_scales=cfg.float_scales)
            self.actions.add("vector_mac.scale_multiply", n_dot, unit="multiply",
                             dot_bits=cfg.dot_product_bits, scale_bits=cfg.rounded_scale_product_bits)
        if a is None:
            return None, None
        res = vector_mac(a, w, cfg, j0=tile.j0, j1=tile.j1, acc=acc)
        return res.acc, res.gated
