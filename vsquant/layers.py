"""Reference layers: what the VS-Quant hardware produces for linear, conv2d and matmul.

Each layer takes float tensors and a :class:`~vsquant.config.QuantConfig`, quantizes its
operands as the hardware stores them (weights per output channel, activations per layer, the
per-vector scales of Eq. 7 along the reduction axis), runs the integer vector MAC (Eq. 4-5,
Sec. 5) and the PPU (Sec. 5, Fig. 2c), and returns a :class:`LayerResult` with the float PPU
output, its dynamic per-vector requantization for the next layer, and every integer
intermediate for checking.

GEMM view: activations (M, K) and weights (N, K) with K the reduction axis cut into vectors
of V. For conv2d, K is ordered (r, s, c) with the input channels of each group padded to a
multiple of V, so every vector is V consecutive input channels at one kernel position: the
vector the activation buffer stores for one pixel (Sec. 4.1). A depthwise conv (one channel
per group) therefore has vectors of a single element. Zero padding pixels carry scale 0.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .config import QuantConfig
from .ppu import post_process, quantize_activation, quantize_weight
from .quantize import QuantizedTensor, check_finite, num_vectors
from .vector_mac import MacResult, vector_mac


@dataclass(frozen=True, eq=False)
class GemmOperands:
    """One MAC problem in GEMM view: activations (M, K) and weights (N, K), quantized."""

    a: QuantizedTensor
    w: QuantizedTensor
    bias: np.ndarray | None = None

    @property
    def mnk(self) -> tuple[int, int, int]:
        return self.a.shape[0], self.w.shape[0], self.a.shape[1]


@dataclass(frozen=True, eq=False)
class LayerResult:
    """Output and integer intermediates of one reference layer."""

    output: np.ndarray                       # float64 PPU output, in the layer's own layout
    output_q: QuantizedTensor | None         # requantized for the next layer (vectors on the channel axis)
    gemms: list[GemmOperands]                # one per group (conv) or batch matrix (matmul)
    macs: list[MacResult]
    real_macs: int                           # multiply-accumulates of the unpadded layer
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gated(self) -> int:
        return sum(m.gated for m in self.macs)

    @property
    def accumulations(self) -> int:
        return sum(m.accumulations for m in self.macs)


def _as_gemm_activation(q: QuantizedTensor) -> QuantizedTensor:
    """Flatten leading axes of a quantized activation to rows (M, K)."""
    K = q.shape[-1]
    scales = None if q.scales is None else q.scales.reshape(-1, q.scales.shape[-1])
    gamma = np.broadcast_to(q.gamma, q.shape[:-1]).reshape(-1)
    return QuantizedTensor(q.values.reshape(-1, K), scales, gamma, q.bits, q.unsigned, q.vector_size,
                           q.scheme, q.scale_bits)


def _output_q(y: np.ndarray, cfg: QuantConfig, requantize_output: bool, out_unsigned: bool | None,
              out_gamma: npt.ArrayLike | None, out_amax: float | None) -> QuantizedTensor | None:
    if not requantize_output:
        return None
    unsigned = cfg.act_unsigned if out_unsigned is None else out_unsigned
    return quantize_activation(y, cfg, unsigned=unsigned, gamma=out_gamma, amax=out_amax)


def run_gemm(g: GemmOperands, cfg: QuantConfig, activation: str | None = None,
             accumulator_bits: int | None = None) -> tuple[MacResult, np.ndarray]:
    mac = vector_mac(g.a, g.w, cfg, accumulator_bits=accumulator_bits)
    y = post_process(mac.acc, g.a.gamma, g.w.gamma, mac.scale_shift, g.bias, activation)
    return mac, y


def linear_operands(x: npt.ArrayLike | QuantizedTensor, weight: npt.ArrayLike | QuantizedTensor,
                    bias: npt.ArrayLike | None, cfg: QuantConfig, *, unsigned_input: bool | None = None,
                    act_gamma: npt.ArrayLike | None = None, act_amax: float | None = None,
                    weight_method: str = "max") -> tuple[GemmOperands, tuple[int, ...]]:
    """Quantize a linear layer's operands into one GEMM (rows of x, K) x (N, K); returns it and x's
    leading shape. ``x``/``weight`` may already be quantized (a previous PPU's output, static weights)."""
    if isinstance(weight, QuantizedTensor):  # quantized offline (static weights, Sec. 4.3)
        wq = weight
    else:
        weight = check_finite(weight, "weight")
        if weight.ndim != 2:
            raise ValueError(f"linear weight must be 2-D (out_features, in_features), got shape {weight.shape}")
        wq = quantize_weight(weight, cfg, method=weight_method)
    K = wq.shape[1]
    if isinstance(x, QuantizedTensor):
        xq = x
    else:
        x = check_finite(x, "input")
        if x.ndim < 1 or x.shape[-1] != K:
            raise ValueError(f"linear input last axis must be in_features={K}, got shape {x.shape}")
        xq = quantize_activation(x, cfg, unsigned=unsigned_input, gamma=act_gamma, amax=act_amax)
    if xq.shape[-1] != K:
        raise ValueError(f"linear input last axis must be in_features={K}, got shape {xq.shape}")
    g = GemmOperands(_as_gemm_activation(xq), wq, None if bias is None else check_finite(bias, "bias"))
    return g, xq.shape[:-1]


def linear(x: npt.ArrayLike | QuantizedTensor, weight: npt.ArrayLike | QuantizedTensor,
           bias: npt.ArrayLike | None = None, cfg: QuantConfig | str = "8/8/-/-", *, activation: str | None = None,
           unsigned_input: bool | None = None, act_gamma: npt.ArrayLike | None = None,
           act_amax: float | None = None, weight_method: str = "max", requantize_output: bool = True,
           out_unsigned: bool | None = None, out_gamma: npt.ArrayLike | None = None, out_amax: float | None = None,
           accumulator_bits: int | None = None) -> LayerResult:
    """y = act(x @ weight.T + bias) on the VS-Quant datapath.

    ``x`` (..., K): float, or a QuantizedTensor from a previous layer's PPU. ``weight`` (N, K):
    float, or a QuantizedTensor from :func:`~vsquant.ppu.quantize_weight` (static weights).
    """
    cfg = QuantConfig.parse(cfg)
    g, lead = linear_operands(x, weight, bias, cfg, unsigned_input=unsigned_input, act_gamma=act_gamma,
                              act_amax=act_amax, weight_method=weight_method)
    N, K = g.w.shape
    mac, y = run_gemm(g, cfg, activation, accumulator_bits)
    y = y.reshape(lead + (N,))
    return LayerResult(y, _output_q(y, cfg, requantize_output, out_unsigned, out_gamma, out_amax),
                       [g], [mac], int(np.prod(lead, dtype=np.int64)) * N * K)


def _pair(v: Any, name: str, minimum: int) -> tuple[int, ...]:
    """A conv2d stride/padding/dilation as a pair of ints >= ``minimum`` (PyTorch's rules)."""
    try:
        t = (v, v) if np.isscalar(v) else tuple(v)
    except TypeError:   # neither a scalar nor iterable (None, an object): the same message as a bad pair
        raise ValueError(f"conv2d {name} must be an int or a pair of ints, got {v!r}") from None
    if len(t) != 2 or any(isinstance(e, (bool, np.bool_)) or not isinstance(e, (int, np.integer)) for e in t):
        raise ValueError(f"conv2d {name} must be an int or a pair of ints, got {v!r}")
    if any(e < minimum for e in t):
        raise ValueError(f"conv2d {name} must be >= {minimum}, got {v!r}")
    return tuple(int(e) for e in t)


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pad_channels(x: np.ndarray, multiple: int) -> np.ndarray:
    c = x.shape[-1]
    cp = num_vectors(c, multiple) * multiple
    if cp == c:
        return x
    return np.concatenate([x, np.zeros(x.shape[:-1] + (cp - c,), x.dtype)], axis=-1)


def _im2col(v: np.ndarray, kh: int, kw: int, stride: tuple[int, ...], dilation: tuple[int, ...], ho: int,
            wo: int) -> np.ndarray:
    """(B, Hp, Wp, C) -> (B, ho, wo, kh, kw, C) windows (a copy)."""
    sh, sw = stride
    dh, dw = dilation
    cols = [v[:, r * dh: r * dh + sh * (ho - 1) + 1: sh, s * dw: s * dw + sw * (wo - 1) + 1: sw, :]
            for r in range(kh) for s in range(kw)]
    out = np.stack(cols, axis=3)
    return out.reshape(out.shape[:3] + (kh, kw) + out.shape[4:])


def quantize_conv_weight(weight: npt.ArrayLike, cfg: QuantConfig, *, method: str = "max") -> QuantizedTensor:
    """A conv weight (K, C/groups, R, S) as the weight buffer stores it: (K, R, S, C/groups padded to
    whole vectors), vectors of V input channels at each kernel position, per output channel k."""
    weight = check_finite(weight, "weight")
    if weight.ndim != 4:
        raise ValueError(f"conv weight must be (K, C/groups, R, S), got shape {weight.shape}")
    return quantize_weight(_pad_channels(weight.transpose(0, 2, 3, 1), cfg.vector_size), cfg, method=method)


def conv2d_operands(x: npt.ArrayLike, weight: npt.ArrayLike, bias: npt.ArrayLike | None, cfg: QuantConfig,
                    stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                    dilation: int | Sequence[int] = 1, groups: int = 1, *, unsigned_input: bool | None = None,
                    act_gamma: npt.ArrayLike | None = None, act_amax: float | None = None,
                    weight_method: str = "max", weight_q: QuantizedTensor | None = None,
                    ) -> tuple[list[GemmOperands], tuple[int, int, int, int]]:
    """Quantize a conv's operands and lower them to one GEMM per group, plus the output geometry.

    ``weight_q``: the weight already quantized by :func:`quantize_conv_weight` (static weights)."""
    x = check_finite(x, "input")
    weight = check_finite(weight, "weight")
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d takes input (B, C, H, W) and weight (K, C/groups, R, S); "
                         f"got {x.shape} and {weight.shape}")
    B, C, H, W = x.shape
    Kout, Cg, R, S = weight.shape
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)) or groups < 1 \
            or C % groups or Kout % groups:
        raise ValueError(f"groups={groups} must divide input channels {C} and output channels {Kout}")
    if C // groups != Cg:
        raise ValueError(f"weight has {Cg} input channels per group; input has {C} channels / "
                         f"{groups} groups = {C // groups}")
    stride, padding, dilation = _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    Ho = conv_output_size(H, R, stride[0], padding[0], dilation[0])
    Wo = conv_output_size(W, S, stride[1], padding[1], dilation[1])
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d output would be empty ({Ho}x{Wo}) for input {H}x{W}, kernel {R}x{S}")
    V = cfg.vector_size
    Kg = Kout // groups
    # activations as the buffer stores them: channels last, per group, padded to whole vectors
    xh = x.transpose(0, 2, 3, 1).reshape(B, H, W, groups, Cg)
    xq = quantize_activation(_pad_channels(xh, V), cfg, unsigned=unsigned_input, gamma=act_gamma, amax=act_amax)
    ph, pw = padding
    pad4 = ((0, 0), (ph, ph), (pw, pw), (0, 0), (0, 0))
    vals = np.pad(xq.values, pad4)
    scales = None if xq.scales is None else np.pad(xq.scales, pad4)
    a_gamma = float(np.asarray(xq.gamma).reshape(-1)[0]) if np.asarray(xq.gamma).size else 0.0
    wq = quantize_conv_weight(weight, cfg, method=weight_method) if weight_q is None else weight_q
    if wq.shape[:3] != (Kout, R, S) or wq.shape[3] != num_vectors(Cg, V) * V:
        raise ValueError(f"pre-quantized conv weight has shape {wq.shape}; expected {(Kout, R, S)} + "
                         f"({num_vectors(Cg, V) * V},) from quantize_conv_weight")
    M = B * Ho * Wo
    gemms = []
    for gi in range(groups):
        av = _im2col(vals[..., gi, :], R, S, stride, dilation, Ho, Wo).reshape(M, -1)
        asc = None
        if scales is not None:
            asc = _im2col(scales[..., gi, :], R, S, stride, dilation, Ho, Wo).reshape(M, -1)
        a = QuantizedTensor(av, asc, np.full(M, a_gamma), xq.bits, xq.unsigned, V, xq.scheme, xq.scale_bits)
        ks = slice(gi * Kg, (gi + 1) * Kg)
        wsc = None if wq.scales is None else wq.scales[ks].reshape(Kg, -1)
        w = QuantizedTensor(wq.values[ks].reshape(Kg, -1), wsc, np.ascontiguousarray(wq.gamma[ks, 0, 0]),
                            wq.bits, wq.unsigned, V, wq.scheme, wq.scale_bits)
        gemms.append(GemmOperands(a, w, None if bias is None else check_finite(bias, "bias")[ks]))
    return gemms, (B, Ho, Wo, Kout)


def conv2d(x: npt.ArrayLike, weight: npt.ArrayLike, bias: npt.ArrayLike | None = None,
           cfg: QuantConfig | str = "8/8/-/-", stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
           dilation: int | Sequence[int] = 1, groups: int = 1, *, activation: str | None = None,
           unsigned_input: bool | None = None, act_gamma: npt.ArrayLike | None = None,
           act_amax: float | None = None, weight_method: str = "max", weight_q: QuantizedTensor | None = None,
           requantize_output: bool = True, out_unsigned: bool | None = None, out_gamma: npt.ArrayLike | None = None,
           out_amax: float | None = None, accumulator_bits: int | None = None) -> LayerResult:
    """2-D convolution (NCHW, PyTorch semantics) on the VS-Quant datapath; output NCHW float64.

    ``output_q`` is the output requantized channels-last (B, Ho, Wo, K), vectors along K.
    """
    cfg = QuantConfig.parse(cfg)
    gemms, (B, Ho, Wo, Kout) = conv2d_operands(
        x, weight, bias, cfg, stride, padding, dilation, groups, unsigned_input=unsigned_input,
        act_gamma=act_gamma, act_amax=act_amax, weight_method=weight_method, weight_q=weight_q)
    macs, ys = [], []
    for g in gemms:
        mac, y = run_gemm(g, cfg, activation, accumulator_bits)
        macs.append(mac)
        ys.append(y)
    y_nhwc = np.concatenate(ys, axis=1).reshape(B, Ho, Wo, Kout)
    Kg_in, R, S = np.asarray(weight).shape[1:]
    return LayerResult(y_nhwc.transpose(0, 3, 1, 2),
                       _output_q(y_nhwc, cfg, requantize_output, out_unsigned, out_gamma, out_amax),
                       gemms, macs, B * Ho * Wo * Kout * Kg_in * R * S)


def matmul_operands(a: npt.ArrayLike, b: npt.ArrayLike, cfg: QuantConfig, *, a_unsigned: bool = False,
                    b_unsigned: bool = False, a_gamma: npt.ArrayLike | None = None,
                    b_gamma: npt.ArrayLike | None = None,
                    ) -> tuple[list[GemmOperands], tuple[int, ...], tuple[int, int, int]]:
    a = check_finite(a, "left operand")
    b = check_finite(b, "right operand")
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul needs (..., M, K) @ (..., K, N); got {a.shape} and {b.shape}")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:])
    bt = np.broadcast_to(np.swapaxes(b, -1, -2), batch + (b.shape[-1], b.shape[-2]))
    qa = quantize_activation(a, cfg, unsigned=a_unsigned, gamma=a_gamma)
    qb = quantize_activation(bt, cfg, unsigned=b_unsigned, gamma=b_gamma)
    M, K = a.shape[-2:]
    N = bt.shape[-2]
    gemms = []
    for idx in np.ndindex(*batch):
        ops = []
        for q, _rows in ((qa, M), (qb, N)):
            sc = None if q.scales is None else q.scales[idx]
            g = np.ascontiguousarray(np.broadcast_to(q.gamma, q.shape[:-1])[idx])
            ops.append(QuantizedTensor(q.values[idx], sc, g, q.bits, q.unsigned, q.vector_size, q.scheme,
                                       q.scale_bits))
        gemms.append(GemmOperands(ops[0], ops[1]))
    return gemms, batch, (M, K, N)


def matmul(a: npt.ArrayLike, b: npt.ArrayLike, cfg: QuantConfig | str = "8/8/-/-", *, a_unsigned: bool = False,
           b_unsigned: bool = False, a_gamma: npt.ArrayLike | None = None, b_gamma: npt.ArrayLike | None = None,
           requantize_output: bool = True, out_unsigned: bool | None = False, out_gamma: npt.ArrayLike | None = None,
           out_amax: float | None = None, accumulator_bits: int | None = None) -> LayerResult:
    """a @ b with both operands activations (attention's QK^T and AV), quantized dynamically.

    Both operands take the activation format of ``cfg`` with vectors along the reduction axis:
    rows of ``a`` and columns of ``b``; the arithmetic is ``cfg.for_activation_operands()``
    (A x A-bit dot products, as + as-bit scale products). Batch axes broadcast; one GEMM per
    batch matrix.
    """
    cfg = QuantConfig.parse(cfg)
    gemms, batch, (M, K, N) = matmul_operands(a, b, cfg, a_unsigned=a_unsigned, b_unsigned=b_unsigned,
                                              a_gamma=a_gamma, b_gamma=b_gamma)
    mcfg = cfg.for_layer("matmul")   # A x A bits, as + as scale product
    macs, ys = [], []
    for g in gemms:
        mac, y = run_gemm(g, mcfg, None, accumulator_bits)
        macs.append(mac)
        ys.append(y)
    y = np.stack(ys).reshape(batch + (M, N)) if ys else np.zeros(batch + (M, N))
    return LayerResult(y, _output_q(y, cfg, requantize_output, out_unsigned, out_gamma, out_amax),
                       gemms, macs, int(np.prod(batch, dtype=np.int64)) * M * N * K)


def unsigned_policy(cfg: QuantConfig, x: Any) -> bool:
    """Whether a layer input is quantized unsigned: only with unsigned activations (``4U``) and only for a
    non-negative input (after ReLU, softmax); else signed. ``x``: a NumPy array or a torch tensor, so the
    reference, the TLM and the fake-quant path quantize the same input the same way."""
    return bool(cfg.act_unsigned and math.prod(x.shape) and x.min() >= 0)
