"""Lowering one MAC layer to a :class:`tlm.transactions.LayerTask` (GEMM view, tiles per PE).

Linear, conv2d and matmul become GEMMs with the reduction axis cut into vectors of V, using
the same operand lowering as the ``vsquant`` reference layers (so the TLM and the reference
see the same integers), then :mod:`mapping.tiling` spreads them over the PE array.
:func:`linear_timing_task` (and :func:`mapping.network.timing_task`) give timing-only tasks: shapes
and schedule, no tensors.
"""
from __future__ import annotations

from tlm.hardware import HardwareSpec
from tlm.transactions import GemmShape, LayerTask
from vsquant import QuantConfig
from vsquant.layers import conv2d_operands, linear_operands, matmul_operands

from .tiling import schedule_layer


def layer_task(name, kind, shapes, cfg, hw: HardwareSpec, operands, activation, out_unsigned, has_bias,
               extra) -> LayerTask:
    """A :class:`~tlm.transactions.LayerTask` with its tilings and per-PE schedule."""
    # a matmul of two activations stores A-bit vectors with activation scales on both sides
    tilings, schedule = schedule_layer(shapes, cfg.for_layer(kind), hw)
    return LayerTask(name, shapes, tilings, schedule, operands=operands, activation=activation,
                     out_unsigned=out_unsigned, kind=kind, has_bias=has_bias, extra=extra)


def linear_task(x, weight, bias, cfg, hw: HardwareSpec, *, activation=None, name="linear", unsigned_input=None,
                out_unsigned=False) -> LayerTask:
    cfg = QuantConfig.parse(cfg)
    g, lead = linear_operands(x, weight, bias, cfg, unsigned_input=unsigned_input)
    N, K = g.w.shape
    return layer_task(name, "linear", [GemmShape(g.a.shape[0], K, N)], cfg, hw, [g], activation, out_unsigned,
                      bias is not None, {"out_shape": lead + (N,)})


def linear_timing_task(M, K, N, cfg, hw: HardwareSpec, *, has_bias=True, activation=None, name="linear") -> LayerTask:
    cfg = QuantConfig.parse(cfg)
    return layer_task(name, "linear", [GemmShape(M, K, N)], cfg, hw, None, activation, False, has_bias,
                 {"out_shape": (M, N)})


def conv2d_task(x, weight, bias, cfg, hw: HardwareSpec, stride=1, padding=0, dilation=1, groups=1, *, activation=None,
                name="conv2d", unsigned_input=None, out_unsigned=False, weight_q=None) -> LayerTask:
    cfg = QuantConfig.parse(cfg)
    gemms, out_nhwc = conv2d_operands(x, weight, bias, cfg, stride, padding, dilation, groups,
                                      unsigned_input=unsigned_input, weight_q=weight_q)
    shapes = [GemmShape(g.a.shape[0], g.a.shape[1], g.w.shape[0]) for g in gemms]
    return layer_task(name, "conv2d", shapes, cfg, hw, gemms, activation, out_unsigned, bias is not None,
                 {"out_nhwc": out_nhwc})


def matmul_task(a, b, cfg, hw: HardwareSpec, *, a_unsigned=False, b_unsigned=False, name="matmul",
                out_unsigned=False) -> LayerTask:
    cfg = QuantConfig.parse(cfg)
    gemms, batch, (M, K, N) = matmul_operands(a, b, cfg, a_unsigned=a_unsigned, b_unsigned=b_unsigned)
    shapes = [GemmShape(g.a.shape[0], g.a.shape[1], g.w.shape[0]) for g in gemms]
    return layer_task(name, "matmul", shapes, cfg, hw, gemms, None, out_unsigned, False,
                 {"out_shape": tuple(batch) + (M, N)})
