"""The post-processing unit (PPU) of Sec. 5 and Fig. 2c, and operand quantization per config.

After a layer's accumulation the PPU applies the coarse fp scales (gamma of activations and
weights, times 2^shift for a rounded scale product), adds the bias, applies the activation
function, and quantizes the output dynamically per vector for the next layer: the vector max
unit (Eq. 7a), a reciprocal and shift (Eq. 7b), quantize (Eq. 7c), and for two-level scales
the integer per-vector scales (Eq. 7e-7g). The baseline PPU (``-`` scales) does per-channel /
per-layer scaling instead.

``quantize_weight`` and ``quantize_activation`` map a :class:`~vsquant.config.QuantConfig`
onto the quantizers: weights per output channel (row), activations per layer (tensor); a block
format (MX, NVFP4) quantizes dynamically per block, like the PPU of such hardware.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from .config import QuantConfig
from .quantize import (
    QuantizedTensor,
    check_finite,
    qmax,
    quantize_block_operand,
    quantize_per_channel,
    quantize_per_tensor,
    quantize_per_vector,
    quantize_two_level,
    quantize_with_scale,
)
from .vector_mac import MacResult


def _gelu(y: np.ndarray) -> np.ndarray:
    from scipy.special import erf
    return cast(np.ndarray, 0.5 * y * (1.0 + erf(y / math.sqrt(2.0))))  # scipy.special is untyped


def _gelu_tanh(y: np.ndarray) -> np.ndarray:
    return 0.5 * y * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (y + 0.044715 * y ** 3)))


ACTIVATIONS: dict[str | None, Callable[[np.ndarray], np.ndarray]] = {
    None: lambda y: y,
    "none": lambda y: y,
    "relu": lambda y: np.maximum(y, 0.0),
    "relu6": lambda y: np.clip(y, 0.0, 6.0),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
}


def apply_activation(y: np.ndarray, activation: str | None) -> np.ndarray:
    try:
        fn = ACTIVATIONS[activation]
    except KeyError:
        raise ValueError(f"activation {activation!r} is not supported by the PPU; allowed: "
                         f"{', '.join(str(k) for k in ACTIVATIONS if k)}") from None
    return fn(y)


def coarse_scale(a_gamma: np.ndarray, w_gamma: np.ndarray, shift: int) -> np.ndarray:
    """The PPU's per-output fp scale gamma_a[m] * gamma_w[n] * 2^shift (Eq. 7j applied to Eq. 5)."""
    s = np.asarray(a_gamma, np.float64)[:, None] * np.asarray(w_gamma, np.float64)[None, :]
    return s * float(2 ** shift) if shift else s


def post_process(acc: np.ndarray, a_gamma: np.ndarray, w_gamma: np.ndarray, shift: int,
                 bias: np.ndarray | None = None, activation: str | None = None) -> np.ndarray:
    """Coarse scales, bias and activation on an (M, N) block of accumulators (float64 out)."""
    y = acc * coarse_scale(a_gamma, w_gamma, shift)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)[None, :]
    return apply_activation(y, activation)


def post_process_mac(mac: MacResult, a: QuantizedTensor, w: QuantizedTensor, bias: np.ndarray | None = None,
                     activation: str | None = None) -> np.ndarray:
    return post_process(mac.acc, a.gamma.reshape(-1), w.gamma.reshape(-1), mac.scale_shift, bias, activation)


def quantize_weight(w: npt.ArrayLike, cfg: QuantConfig, *, method: str = "max", **calib: Any) -> QuantizedTensor:
    """Weights per the config: per-channel ('-'), two-level per output channel, fp per vector (both with each
    vector's max or, ``,clip=octav``, its OCTAV clip), or a block format (its per-tensor level, NVFP4's, over
    the whole weight)."""
    fmt = cfg.weight_scale
    if fmt.kind == "coarse":
        return quantize_per_channel(w, cfg.weight_bits, method=method, vector_size=cfg.vector_size, **calib)
    if fmt.kind == "int":
        return quantize_two_level(w, cfg.weight_bits, fmt.bits, cfg.vector_size, per="row",
                                  requantize=cfg.requantize, nonzero_scales=cfg.nonzero_scales,
                                  clip=cfg.weight_clip)
    if fmt.kind == "fp":
        return quantize_per_vector(w, cfg.weight_bits, cfg.vector_size, scale_format=f"fp{fmt.bits}",
                                   what="weight", clip=cfg.weight_clip)
    if fmt.is_block:
        _dynamic_only(cfg.weight_format.name, method != "max" or bool(calib))
        return quantize_block_operand(w, cfg.weight_format, cfg.vector_size)
    raise ValueError(f"weight scale kind {fmt.kind!r} has no quantizer")   # pragma: no cover - SCALE_KINDS


def _dynamic_only(name: str, static: bool) -> None:
    if static:
        raise ValueError(f"{name} is a block format: its scales come from each block's max (and NVFP4's tensor "
                         "scale from the tensor's), so it takes no calibrated scale or method")


def quantize_activation(x: npt.ArrayLike, cfg: QuantConfig, *, unsigned: bool | None = None,
                        gamma: npt.ArrayLike | None = None, amax: float | None = None, method: str = "max",
                        **calib: Any) -> QuantizedTensor:
    """Activations per the config, as the PPU produces them for the next layer.

    ``-``: per-layer scale from ``amax`` (static, calibrated) or from this tensor (dynamic,
    ``method``); integer ``as``: two-level with a per-layer gamma, static if given;
    ``fp16``/``fp32``: single-level fp per-vector scales.
    Unsigned activations (``4U``) must be non-negative: negatives raise instead of being clipped.
    """
    x = check_finite(x, "activation")
    unsigned = cfg.act_unsigned if unsigned is None else unsigned
    if unsigned and x.size and x.min() < 0:
        raise ValueError(
            f"unsigned activations ({cfg.act_bits}U in {cfg}) got {int((x < 0).sum())} negative values; "
            "quantize this tensor as signed (unsigned=False), e.g. the network input")
    fmt = cfg.act_scale
    if fmt.kind == "coarse":
        if amax is not None:
            return quantize_with_scale(x, float(amax) / qmax(cfg.act_bits, unsigned), cfg.act_bits, unsigned,
                                       "tensor", cfg.vector_size)
        return quantize_per_tensor(x, cfg.act_bits, unsigned, method=method, vector_size=cfg.vector_size, **calib)
    if fmt.kind == "int":
        return quantize_two_level(x, cfg.act_bits, fmt.bits, cfg.vector_size, unsigned, per="tensor",
                                  gamma=gamma, requantize=cfg.requantize, nonzero_scales=cfg.nonzero_scales)
    if fmt.kind == "fp":
        return quantize_per_vector(x, cfg.act_bits, cfg.vector_size, unsigned, scale_format=f"fp{fmt.bits}",
                                   what="activation")
    if fmt.is_block:
        _dynamic_only(cfg.act_format.name, gamma is not None or amax is not None or method != "max" or bool(calib))
        return quantize_block_operand(x, cfg.act_format, cfg.vector_size)
    raise ValueError(f"activation scale kind {fmt.kind!r} has no quantizer")   # pragma: no cover - SCALE_KINDS
