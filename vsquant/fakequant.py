"""The batched PyTorch twin of the reference layers: the fake-quant datapath (DESIGN.md, "The numerics contract").

Each function equals its NumPy reference in :mod:`vsquant.layers` bit for bit (and so the TLM; tested in
tests/test_fakequant.py): :func:`fake_linear` (:func:`vsquant.linear`), :func:`fake_conv2d`
(:func:`vsquant.conv2d`) and :func:`fake_matmul` (:func:`vsquant.matmul`), each returning the output before
the PPU's requantization. Weights are quantized per output channel (:func:`quantized_weight`,
:func:`quantized_conv_weight`, as :func:`vsquant.quantize_weight` and :func:`vsquant.quantize_conv_weight`),
activations per layer, dynamically or from a calibrated amax, with the per-vector scales of Eq. 7a-7g
along the reduction axis. The integer vector MAC (Eq. 5) is one float64 GEMM of the scaled integers
(values times their integer per-vector scales, exact below 2^53, so the order of the additions does not
matter), then the PPU's coarse scales (Eq. 7j) and bias.

Covered: full-width scale products with integer per-vector or per-channel/per-layer scales (the paper's
Sec. 6 design space); :func:`supports` says whether a config is covered. Rounded scale products (``,R=``),
fp per-vector scales and the Eq. 7 variants are not (``mapping.backends.fast_backend`` runs those on the
NumPy reference).

Used by the interpreter backends of :mod:`mapping.backends` and by the straight-through-estimator modules
of :mod:`studies.qat`. This module imports torch; ``import vsquant`` does not import it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import QuantConfig, ScaleFormat, qmax
from .layers import unsigned_policy

Amax = float | np.ndarray | torch.Tensor | None   # a calibrated max: one per tensor or one per row
Pair = int | Sequence[int]
QuantizedWeight = tuple[torch.Tensor, torch.Tensor]   # (scaled integers, coarse scale per channel)

__all__ = ["check_supported", "fake_conv2d", "fake_linear", "fake_matmul", "quantized_conv_weight",
           "quantized_weight", "supports"]


def _safe(s: torch.Tensor) -> torch.Tensor:
    return torch.where(s > 0, s, torch.full_like(s, float("inf")))


def _scaled_integers(x: torch.Tensor, bits: int, fmt: ScaleFormat, V: int, unsigned: bool, per_row: bool,
                     amax: Amax = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(values * integer per-vector scale, coarse scale per row) of ``x`` (rows, L), as vsquant.

    ``fmt`` kind "int": two-level Eq. 7a-7g (gamma per row or per tensor); "coarse": per-channel
    (per row) or per-tensor scaling, Eq. 1-2, from the max or from a calibrated ``amax`` (a scalar or
    one per row: static scales). Vectors along the last axis, zero-padded.
    """
    q = qmax(bits, unsigned)
    lo = 0 if unsigned else -q
    rows, L = x.shape
    if fmt.kind == "coarse":
        if amax is not None:
            amax = torch.as_tensor(amax, dtype=torch.float64).reshape(-1).expand(rows)
        elif per_row:
            amax = _absmax(x, 1, unsigned)
        else:
            amax = _absmax(x.reshape(1, -1), 1, unsigned).expand(rows)
        scale = amax / q
        return torch.div(x, _safe(scale)[:, None]).round_().clamp_(lo, q), scale
    nv = -(-L // V)
    if L <= V:    # one (short) vector per row: no padding (a depthwise conv's rows have one channel)
        xv = x.view(rows, 1, L)
    else:         # zero padding to whole vectors changes no vector max (|x| >= 0; unsigned x >= 0)
        xv = (F.pad(x, (0, nv * V - L)) if L % V else x).view(rows, nv, V)
    s = _absmax(xv, 2, unsigned) / q                                   # Eq. 7a-7b
    smax_int = (1 << fmt.bits) - 1
    smax = s.amax(dim=1) if per_row else s.max().expand(rows)
    gamma = smax / smax_int                                            # Eq. 7e-7f
    sq = torch.round(s / _safe(gamma)[:, None]).clamp(0, smax_int)     # Eq. 7g
    v = torch.div(xv, _safe(s)[..., None]).round_().clamp_(lo, q)      # Eq. 7c
    v = v.mul_(sq[..., None]).reshape(rows, -1)
    return (v[:, :L] if v.shape[1] != L else v), gamma


def _absmax(x: torch.Tensor, dim: int, unsigned: bool) -> torch.Tensor:
    """max |x| (signed) or max(x, 0) (unsigned: x >= 0 by the unsigned policy) along ``dim``, without a
    temporary the size of x."""
    if unsigned:
        return x.amax(dim).clamp_min(0)
    return torch.maximum(x.amax(dim), x.amin(dim).neg())


def _unsupported(cfg: QuantConfig) -> str | None:
    """Why the fake-quant path does not cover ``cfg``, or None."""
    if cfg.float_scales or cfg.scale_product_shift:
        return (f"{cfg}: the fake-quant path supports integer or per-channel scales at full width; "
                "use the reference interpreter for fp scales or rounded scale products")
    if cfg.requantize or cfg.nonzero_scales:
        return f"{cfg}: the Eq. 7 variants are not in the fake-quant path; use the reference interpreter"
    return None


def supports(cfg: QuantConfig | str) -> bool:
    """Whether the fake-quant path covers ``cfg`` (where not, ``mapping.backends.fast_backend`` uses the reference)."""
    return _unsupported(QuantConfig.parse(cfg)) is None


def check_supported(cfg: QuantConfig) -> None:
    """Raise ``ValueError`` saying why when the fake-quant path does not cover ``cfg``."""
    if (why := _unsupported(cfg)) is not None:
        raise ValueError(why)


# --- the datapath as torch functions (float64, exact integers) ----------------------------------

def quantized_weight(w: torch.Tensor, cfg: QuantConfig, amax: Amax = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(scaled integer weight (N, K), per-channel coarse scale (N,)) as ``vsquant.ppu.quantize_weight``
    (``amax``: calibrated per-channel maxima for a per-channel format)."""
    return _scaled_integers(w.double(), cfg.weight_bits, cfg.weight_scale, cfg.vector_size, False, True, amax)


def quantized_conv_weight(w: torch.Tensor, cfg: QuantConfig,
                          amax: Amax = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv weight (K, Cg, R, S) as ``vsquant.layers.quantize_conv_weight``: vectors of V input channels at
    each kernel position, each position's channels zero-padded to whole vectors; returned in (K, Cg, R, S)."""
    K, Cg, R, S = w.shape
    wk = F.pad(w.double().permute(0, 2, 3, 1), (0, -Cg % cfg.vector_size)).reshape(K, -1)
    b, gw = _scaled_integers(wk, cfg.weight_bits, cfg.weight_scale, cfg.vector_size, False, True, amax)
    return b.reshape(K, R, S, -1)[..., :Cg].permute(0, 3, 1, 2), gw


def _unsigned(cfg: QuantConfig, x: torch.Tensor, unsigned: bool | None) -> bool:
    return unsigned_policy(cfg, x) if unsigned is None else unsigned


def _weight(w: torch.Tensor | None) -> torch.Tensor:
    if w is None:
        raise ValueError("a fake-quant layer needs its weight or its quantized weight (wq); got neither")
    return w


def fake_linear(x: torch.Tensor, w: torch.Tensor | None, bias: torch.Tensor | None, cfg: QuantConfig,
                wq: QuantizedWeight | None = None, *, unsigned: bool | None = None,
                act_amax: Amax = None) -> torch.Tensor:
    """``vsquant.layers.linear`` (output before requantization): x (..., K) per layer, dynamically (or with a
    calibrated ``act_amax``), w (N, K) or its quantized ``wq``; ``unsigned`` defaults to the unsigned policy."""
    xd = x.double()
    x2 = xd.reshape(-1, xd.shape[-1])
    a, ga = _scaled_integers(x2, cfg.act_bits, cfg.act_scale, cfg.vector_size, _unsigned(cfg, x2, unsigned),
                             False, act_amax)
    b, gw = wq if wq is not None else quantized_weight(_weight(w), cfg)
    y = (a @ b.T) * (ga[:, None] * gw[None, :])                    # Eq. 5 exactly, then the PPU's scales
    if bias is not None:
        y = y + bias.double()[None, :]
    out: torch.Tensor = y.reshape(xd.shape[:-1] + (b.shape[0],))
    return out


def fake_conv2d(x: torch.Tensor, w: torch.Tensor | None, bias: torch.Tensor | None, cfg: QuantConfig, stride: Pair,
                padding: Pair, dilation: Pair, groups: int, wq: QuantizedWeight | None = None, *,
                unsigned: bool | None = None, act_amax: Amax = None) -> torch.Tensor:
    """``vsquant.layers.conv2d``: activations channels-last, vectors of V channels within each group."""
    xd = x.double()
    B, C, H, W = xd.shape
    xa = xd.permute(0, 2, 3, 1).reshape(B * H * W * groups, C // groups)
    a, ga = _scaled_integers(xa, cfg.act_bits, cfg.act_scale, cfg.vector_size, _unsigned(cfg, xa, unsigned),
                             False, act_amax)
    a = a.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()
    b, gw = wq if wq is not None else quantized_conv_weight(_weight(w), cfg)
    if groups == C == b.shape[0]:   # depthwise: float64 F.conv2d is slow here; integers sum exactly in any order
        acc = _depthwise(a, b, stride, padding, dilation)
    else:
        acc = F.conv2d(a, b, None, stride, padding, dilation, groups)
    y: torch.Tensor = acc * (ga[0] * gw)[None, :, None, None]
    if bias is not None:
        y = y + bias.double()[None, :, None, None]
    return y


def _depthwise(a: torch.Tensor, b: torch.Tensor, stride: Pair, padding: Pair, dilation: Pair) -> torch.Tensor:
    """A depthwise convolution of integer-valued float64 tensors as R*S shifted multiply-adds (exact: every
    partial sum is an integer below 2^53, so the order of the additions does not matter)."""
    (sh, sw), (ph, pw), (dh, dw) = (tuple(v) if isinstance(v, (tuple, list)) else (v, v)
                                    for v in (stride, padding, dilation))
    B, C, H, W = a.shape
    _, _, R, S = b.shape
    Ho, Wo = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1, (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
    ap = F.pad(a, (pw, pw, ph, ph))
    acc = torch.zeros(B, C, Ho, Wo, dtype=a.dtype)
    for r in range(R):
        for t in range(S):
            win = ap[:, :, r * dh: r * dh + sh * (Ho - 1) + 1: sh, t * dw: t * dw + sw * (Wo - 1) + 1: sw]
            acc.addcmul_(win, b[:, 0, r, t].reshape(1, C, 1, 1))
    return acc


def fake_matmul(a: torch.Tensor, b: torch.Tensor, cfg: QuantConfig, *, a_unsigned: bool | None = None,
                b_unsigned: bool | None = None, a_amax: Amax = None, b_amax: Amax = None) -> torch.Tensor:
    """``vsquant.layers.matmul``: a (..., M, K) @ b (..., K, N), both activations (attention's QK^T, AV),
    each quantized per tensor (dynamically, or with a calibrated amax) with vectors along K (rows of a,
    columns of b); batched."""
    if a.dim() < 2 or b.dim() < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul needs (..., M, K) @ (..., K, N); got {tuple(a.shape)} and {tuple(b.shape)}")
    batch = torch.Size(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))  # type: ignore[no-untyped-call]
    (M, K), N = a.shape[-2:], b.shape[-1]
    ad = a.double().expand(batch + (M, K)).reshape(-1, K)
    bt = b.double().transpose(-1, -2).expand(batch + (N, K)).reshape(-1, K)
    fmt, V = cfg.act_scale, cfg.vector_size
    ai, ga = _scaled_integers(ad, cfg.act_bits, fmt, V, _unsigned(cfg, ad, a_unsigned), False, a_amax)
    bi, gb = _scaled_integers(bt, cfg.act_bits, fmt, V, _unsigned(cfg, bt, b_unsigned), False, b_amax)
    acc = ai.reshape(batch + (M, K)) @ bi.reshape(batch + (N, K)).transpose(-1, -2)
    out: torch.Tensor = acc * (ga[0] * gb[0])
    return out
