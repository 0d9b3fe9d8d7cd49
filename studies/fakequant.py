"""A fast PyTorch fake-quant path with a straight-through estimator (STE), for accuracy sweeps and
quantization-aware fine-tuning (paper Sec. 7, Table 9).

``quantize_model(model, cfg)`` swaps every ``nn.Linear`` and ``nn.Conv2d`` for a module that
computes exactly what the ``vsquant`` reference (and so the TLM) computes: weights quantized per
output channel, activations dynamically per layer, the per-vector scales of Eq. 7 along the
reduction axis, the integer vector MAC as one float64 GEMM of scaled integers (exact below 2^53)
and the PPU's coarse scales and bias. It runs on torch tensors, batched, with autograd: the
backward pass treats the quantizers as identity (STE), so a model can be fine-tuned through them.

Supported: full-width scale products with integer per-vector or per-channel/per-layer scales
(the paper's Sec. 6 design space). Rounded scale products (``,R=``) and fp scales raise; use the
reference interpreter for those.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mapping.interpret import unsigned_policy
from vsquant import QuantConfig


def _qmax(bits: int, unsigned: bool) -> int:
    return (1 << bits) - 1 if unsigned else (1 << (bits - 1)) - 1


def _safe(s: torch.Tensor) -> torch.Tensor:
    return torch.where(s > 0, s, torch.full_like(s, float("inf")))


def _scaled_integers(x: torch.Tensor, bits: int, fmt, V: int, unsigned: bool, per_row: bool):
    """(values * integer per-vector scale, coarse scale per row) of ``x`` (rows, L), as vsquant.

    ``fmt`` kind "int": two-level Eq. 7a-7g (gamma per row or per tensor); "coarse": per-channel
    (per row) or per-tensor max scaling, Eq. 1-2. Vectors along the last axis, zero-padded.
    """
    q = _qmax(bits, unsigned)
    lo = 0 if unsigned else -q
    rows, L = x.shape
    if fmt.kind == "coarse":
        mag = x.clamp_min(0) if unsigned else x.abs()
        amax = mag.amax(dim=1) if per_row else mag.max().expand(rows)
        scale = amax / q
        v = torch.round(x / _safe(scale)[:, None]).clamp(lo, q)
        return v, scale
    nv = -(-L // V)
    xv = F.pad(x, (0, nv * V - L)).view(rows, nv, V)
    mag = xv.clamp_min(0) if unsigned else xv.abs()
    s = mag.amax(dim=2) / q                                            # Eq. 7a-7b
    smax_int = (1 << fmt.bits) - 1
    smax = s.amax(dim=1) if per_row else s.max().expand(rows)
    gamma = smax / smax_int                                            # Eq. 7e-7f
    sq = torch.round(s / _safe(gamma)[:, None]).clamp(0, smax_int)     # Eq. 7g
    v = torch.round(xv / _safe(s)[..., None]).clamp(lo, q)             # Eq. 7c
    return (v * sq[..., None]).reshape(rows, nv * V)[:, :L], gamma


def _check(cfg: QuantConfig):
    if cfg.float_scales or cfg.scale_product_shift:
        raise ValueError(f"{cfg}: the fake-quant path supports integer or per-channel scales at full width; "
                         "use the reference interpreter for fp scales or rounded scale products")
    if cfg.requantize or cfg.nonzero_scales:
        raise ValueError(f"{cfg}: the Eq. 7 variants are not in the fake-quant path; use the reference interpreter")


class _STE(torch.autograd.Function):
    """Forward: the exact quantized layer output; backward: the float layer's gradients (STE)."""

    @staticmethod
    def forward(ctx, x, w, y_q, fwd_float):
        ctx.save_for_backward(x, w)
        ctx.fwd_float = fwd_float
        return y_q

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        with torch.enable_grad():
            xd, wd = x.detach().requires_grad_(), w.detach().requires_grad_()
            y = ctx.fwd_float(xd, wd)
            gx, gw = torch.autograd.grad(y, (xd, wd), g)
        return gx, gw, None, None


class QuantLinear(nn.Module):
    def __init__(self, linear: nn.Linear, cfg: QuantConfig):
        super().__init__()
        self.weight, self.bias, self.cfg = linear.weight, linear.bias, cfg

    def quantized(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        xd, w = x.double(), self.weight.double()
        lead = xd.shape[:-1]
        x2 = xd.reshape(-1, xd.shape[-1])
        a, ga = _scaled_integers(x2, cfg.act_bits, cfg.act_scale, cfg.vector_size, unsigned_policy(cfg, x2), False)
        b, gw = _scaled_integers(w, cfg.weight_bits, cfg.weight_scale, cfg.vector_size, False, True)
        y = (a @ b.T) * (ga[:, None] * gw[None, :])                    # Eq. 5 exactly, then the PPU's scales
        if self.bias is not None:
            y = y + self.bias.double()[None, :]
        return y.reshape(lead + (w.shape[0],))

    def forward(self, x):
        with torch.no_grad():
            y_q = self.quantized(x)
        return _STE.apply(x.double(), self.weight, y_q,
                          lambda xx, ww: F.linear(xx, ww.double(), None if self.bias is None else self.bias.double()))


class QuantConv2d(nn.Module):
    def __init__(self, conv: nn.Conv2d, cfg: QuantConfig):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"conv padding {conv.padding!r}/{conv.padding_mode!r}: only explicit zero padding")
        self.conv, self.cfg = conv, cfg
        self.weight, self.bias = conv.weight, conv.bias

    def quantized(self, x: torch.Tensor) -> torch.Tensor:
        cfg, c = self.cfg, self.conv
        V, g = cfg.vector_size, c.groups
        xd, w = x.double(), self.weight.double()
        B, C, H, W = xd.shape
        K, Cg, R, S = w.shape
        # activations channels-last, vectors of V channels within each group at each pixel
        xa = xd.permute(0, 2, 3, 1).reshape(B * H * W * g, Cg)
        a, ga = _scaled_integers(xa, cfg.act_bits, cfg.act_scale, V, unsigned_policy(cfg, xa), False)
        a = a.reshape(B, H, W, C).permute(0, 3, 1, 2)
        # weights (K, R, S, Cg): vectors of V input channels at each kernel position, per output channel
        wk = w.permute(0, 2, 3, 1).reshape(K, R * S * Cg)
        if Cg % V:  # pad each kernel position's channels to whole vectors, as the weight buffer stores them
            wk = F.pad(w.permute(0, 2, 3, 1), (0, -Cg % V)).reshape(K, -1)
        b, gw = _scaled_integers(wk, cfg.weight_bits, cfg.weight_scale, V, False, True)
        b = b.reshape(K, R, S, -1)[..., :Cg].permute(0, 3, 1, 2)
        acc = F.conv2d(a, b, None, c.stride, c.padding, c.dilation, g)
        y = acc * (ga[0] * gw)[None, :, None, None]
        if self.bias is not None:
            y = y + self.bias.double()[None, :, None, None]
        return y

    def forward(self, x):
        c = self.conv
        with torch.no_grad():
            y_q = self.quantized(x)
        return _STE.apply(x.double(), self.weight, y_q, lambda xx, ww: F.conv2d(
            xx, ww.double(), None if self.bias is None else self.bias.double(), c.stride, c.padding, c.dilation,
            c.groups))


def quantize_model(model: nn.Module, cfg: QuantConfig | str) -> nn.Module:
    """Swap every Linear and Conv2d of ``model`` (in place) for its fake-quant version; returns it.

    The model's other ops then run in float64 (``model.double()``)."""
    cfg = QuantConfig.parse(cfg)
    _check(cfg)
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, QuantLinear(child, cfg))
        elif isinstance(child, nn.Conv2d):
            setattr(model, name, QuantConv2d(child, cfg))
        else:
            quantize_model(child, cfg)
    return model
