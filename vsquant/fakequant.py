"""The batched PyTorch twin of the reference layers: the fake-quant datapath (DESIGN.md, "The numerics contract").

Each function equals its NumPy reference in :mod:`vsquant.layers` bit for bit (and so the TLM; tested in
tests/test_fakequant.py): :func:`fake_linear` (:func:`vsquant.linear`), :func:`fake_conv2d`
(:func:`vsquant.conv2d`) and :func:`fake_matmul` (:func:`vsquant.matmul`), each returning the output before
the PPU's requantization. Weights are quantized per output channel (:func:`quantized_weight`,
:func:`quantized_conv_weight`, as :func:`vsquant.quantize_weight` and :func:`vsquant.quantize_conv_weight`),
activations per layer, dynamically or from a calibrated amax, with the per-vector scales of Eq. 7a-7g
along the reduction axis. Where the scale products are full-width integers, the vector MAC (Eq. 5) is one
float64 GEMM of the scaled integers (values times their integer per-vector scales, exact below 2^53, so the
order of the additions does not matter), then the PPU's coarse scales (Eq. 7j, times 2^shift for a rounded
scale product) and bias.

Covered: every config. Integer per-vector or per-channel/per-layer scales (the paper's Sec. 6 design space)
with the Eq. 7 variants (``,requantize``, ``,nonzero``); fp16/fp32 per-vector scales (Eq. 7a-7d, Sec. 4.1, any
V including 1) and the block formats (OCP MX, NVFP4), whose float partial sums are accumulated in the
reference's ascending vector order, or as one GEMM where that sum is provably exact
(``vsquant.vector_mac.float_sum_exact``); rounded scale products (``,R=``, Sec. 5 and Fig. 3), whose integer
terms dot_j * round_R(sa_j * sw_j) are not one GEMM but are summed exactly a chunk of vectors at a time.

``,clip=octav`` (each weight vector's scale from its OCTAV clip, :func:`vsquant.calibration.octav_vector_rows`)
runs the same recursion in torch (:func:`_octav_vector_clips`), its means the same ordered sums, so the clips
and everything after them equal the reference's bit for bit.

Used by the interpreter backends of :mod:`mapping.backends` and by the straight-through-estimator modules
of :mod:`studies.qat`. This module imports torch; ``import vsquant`` does not import it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .bitserial import check_bit_serial, dropped_planes_mean
from .calibration import OCTAV_MAX_ITER, OCTAV_RTOL
from .config import QuantConfig, ScaleFormat, qmax
from .formats import ELEMENT_FORMATS, ElementFormat, NumberFormat
from .layers import conv_output_size, unsigned_policy
from .quantize import _fp_scales
from .vector_mac import EXACT_BITS, float_sum_bits

Amax = float | np.ndarray | torch.Tensor | None   # a calibrated max: one per tensor or one per row
Pair = int | Sequence[int]


class Operand(NamedTuple):
    """One quantized operand of the torch datapath (float64, exact): ``values`` the integers times their
    integer per-vector scales (or, for a block format, the element codes times their block scales: exact) in
    the layer's layout, ``gamma`` the coarse scale per row; for a block format also ``codes`` (rows, L) and
    ``scales`` (rows, vectors), the factors the ordered per-vector accumulation needs."""

    values: torch.Tensor
    gamma: torch.Tensor
    codes: torch.Tensor | None = None
    scales: torch.Tensor | None = None


QuantizedWeight = Operand

__all__ = ["fake_conv2d", "fake_linear", "fake_matmul", "quantized_conv_weight", "quantized_weight"]


def _safe(s: torch.Tensor) -> torch.Tensor:
    return torch.where(s > 0, s, torch.full_like(s, float("inf")))


def _vector_view(x: torch.Tensor, V: int) -> torch.Tensor:
    """``x`` (rows, L) as (rows, vectors, V), the last vector zero-padded; one short vector per row if L <= V
    (a depthwise conv's rows have one channel). Zero padding changes no vector max (|x| >= 0; unsigned x >= 0)."""
    rows, L = x.shape
    if L <= V:
        return x.view(rows, 1, L)
    nv = -(-L // V)
    return (F.pad(x, (0, nv * V - L)) if L % V else x).view(rows, nv, V)


def _from_vectors(v: torch.Tensor, rows: int, L: int) -> torch.Tensor:
    v = v.reshape(rows, -1)
    return v[:, :L] if v.shape[1] != L else v


def _ordered_sum(a: torch.Tensor) -> torch.Tensor:
    """Row sums of ``a`` (R, n) in ascending element order, as ``vsquant.calibration._ordered_sum``."""
    acc = a[:, 0].clone()
    for j in range(1, a.shape[1]):
        acc += a[:, j]
    return acc


def _octav_rows(mag: torch.Tensor, q: int) -> torch.Tensor:
    """``vsquant.calibration.octav_vector_rows`` in torch: the OCTAV fixed point of each row (a vector) of
    magnitudes ``mag`` (R, n), every operation the reference's in its order (so equal bit for bit)."""
    n = mag.shape[1]
    noise = 1.0 / (12.0 * q * q)
    m = mag.amax(dim=1)
    s = _ordered_sum(mag) / n                                          # s_0 = E|x|
    active = s > 0
    for _ in range(OCTAV_MAX_ITER):
        idx = torch.nonzero(active).reshape(-1)
        if idx.numel() == 0:
            break
        a = mag[idx]
        sa = s[idx]
        over = a >= sa[:, None]
        p_over = over.sum(dim=1).to(torch.float64) / n                  # E[1{|x| >= s}]
        num = _ordered_sum(torch.where(over, a, torch.zeros_like(a))) / n   # E[|x| 1{|x| >= s}]
        new = num / (noise * (1.0 - p_over) + p_over)
        done = (new - sa).abs() <= OCTAV_RTOL * sa
        s[idx] = new
        active[idx[done]] = False
    return torch.minimum(s, m)


def _octav_vector_clips(x: torch.Tensor, bits: int, V: int, unsigned: bool) -> torch.Tensor:
    """The OCTAV clip of every vector of ``x`` (rows, L), shape (rows, vectors) as :func:`_vector_view`'s: a
    short last vector on its own elements (``vsquant.calibration.octav_clip(per='vector')``)."""
    q = qmax(bits, unsigned)
    mag = x.clamp_min(0) if unsigned else x.abs()
    rows, L = mag.shape
    full, rest = L // V, L % V
    parts = []
    if full:
        parts.append(_octav_rows(mag[:, :full * V].reshape(-1, V), q).reshape(rows, full))
    if rest:
        parts.append(_octav_rows(mag[:, full * V:].contiguous(), q).reshape(rows, 1))
    return torch.cat(parts, dim=1)


def _vector_clip(x: torch.Tensor, xv: torch.Tensor, bits: int, V: int, unsigned: bool, clip: str) -> torch.Tensor:
    """Each vector's clip (Eq. 7a): its max, or (``clip="octav"``) its OCTAV clip; ``xv`` the vector view."""
    if clip == "max" or x.numel() == 0:
        return _absmax(xv, 2, unsigned)
    if clip != "octav":
        raise ValueError(f"clip {clip!r} is not a per-vector clip method; allowed: max, octav")
    return _octav_vector_clips(x, bits, V, unsigned)


def _scaled_integers(x: torch.Tensor, bits: int, fmt: ScaleFormat, V: int, unsigned: bool, per_row: bool,
                     amax: Amax = None, *, keep: bool = False, requantize: bool = False,
                     nonzero_scales: bool = False, clip: str = "max") -> Operand:
    """``x`` (rows, L) quantized as vsquant: values times their integer per-vector scale and the coarse scale
    per row, and with ``keep`` also the integers (``codes``) and the integer scales apart (the ordered sum of
    rounded scale products needs them).

    ``fmt`` kind "int": two-level Eq. 7a-7g (gamma per row or per tensor), with the ``requantize`` and
    ``nonzero_scales`` variants of ``vsquant.quantize_two_level`` and its ``clip``; "coarse": per-channel (per row) or
    per-tensor scaling, Eq. 1-2, from the max or from a calibrated ``amax`` (a scalar or one per row: static
    scales). Vectors along the last axis, zero-padded.
    """
    q = qmax(bits, unsigned)
    lo = 0 if unsigned else -q
    rows, L = x.shape
    if fmt.kind not in ("coarse", "int"):
        raise ValueError(f"scale kind {fmt.kind!r}: _scaled_integers takes '-' or integer scales")
    if fmt.kind == "coarse":
        if amax is not None:
            amax = torch.as_tensor(amax, dtype=torch.float64).reshape(-1).expand(rows)
        elif per_row:
            amax = _absmax(x, 1, unsigned)
        else:
            amax = _absmax(x.reshape(1, -1), 1, unsigned).expand(rows)
        scale = amax / q
        v = torch.div(x, _safe(scale)[:, None]).round_().clamp_(lo, q)
        return Operand(v, scale, v if keep else None)
    if amax is not None:
        raise ValueError(f"two-level scales ({fmt}) are dynamic here: a calibrated amax applies to per-tensor or "
                         "per-channel ('-') scales")
    xv = _vector_view(x, V)
    s = _vector_clip(x, xv, bits, V, unsigned, clip) / q               # Eq. 7a-7b
    smax_int = (1 << fmt.bits) - 1
    smax = s.amax(dim=1) if per_row else s.max().expand(rows)
    gamma = smax / smax_int                                            # Eq. 7e-7f
    sq = torch.round(s / _safe(gamma)[:, None]).clamp(0, smax_int)     # Eq. 7g
    if nonzero_scales:                                                 # a non-zero vector keeps scale >= 1
        sq = torch.where((s > 0) & (sq == 0), torch.ones_like(sq), sq)
    take = sq * gamma[:, None] if requantize else s                    # the Eq. 7h scale, or Eq. 7c's
    codes = torch.div(xv, _safe(take)[..., None]).round_().clamp_(lo, q)
    if not keep:
        return Operand(_from_vectors(codes.mul_(sq[..., None]), rows, L), gamma)
    return Operand(_from_vectors(codes * sq[..., None], rows, L), gamma, _from_vectors(codes, rows, L), sq)


def _fp_vector(x: torch.Tensor, bits: int, fmt: ScaleFormat, V: int, unsigned: bool, what: str,
               clip: str = "max") -> Operand:
    """``vsquant.quantize_per_vector`` of ``x`` (rows, L): single-level fp16/fp32 scales per vector (Eq. 7a-7d),
    stored in their format with its range checks (``vsquant.quantize._fp_scales``: an overflow raises, an
    underflow flushes the vector with a warning), the integers taken with the stored scale; gamma 1; ``clip``
    as ``vsquant.quantize_per_vector``'s."""
    q = qmax(bits, unsigned)
    rows, L = x.shape
    xv = _vector_view(x, V)
    s64 = _vector_clip(x, xv, bits, V, unsigned, clip) / q             # Eq. 7a-7b
    s = torch.from_numpy(_fp_scales(s64.numpy(), fmt.bits, what).astype(np.float64))
    codes = torch.div(xv, _safe(s)[..., None]).round_().clamp_(0 if unsigned else -q, q)   # Eq. 7c
    return Operand(_from_vectors(codes * s[..., None], rows, L), torch.ones(rows, dtype=torch.float64),
                   _from_vectors(codes, rows, L), s)


def _floor_log2(a: torch.Tensor) -> torch.Tensor:
    """floor(log2 a) exactly for a > 0 (0 where a == 0), as vsquant.formats._floor_log2."""
    _, p = torch.frexp(torch.where(a > 0, a, torch.ones_like(a)))
    return p.to(torch.int64) - 1


def _element_quantize(v: torch.Tensor, el: ElementFormat) -> torch.Tensor:
    """``ElementFormat.quantize`` in torch: nearest (ties to even), saturating at the largest normal."""
    if el.kind == "int":
        return torch.round(v / el.ulp).clamp_(0 if el.unsigned else -el.max_code, el.max_code) * el.ulp
    a = v.abs()
    e = torch.clamp(_floor_log2(a), min=el.emin)
    quantum = torch.ldexp(torch.ones_like(a), e - el.man_bits)
    r = torch.round(a / quantum) * quantum
    return torch.copysign(torch.clamp(r, max=el.max_normal), v)


#: rows of a block operand quantized at a time, as elements: bounds the temporaries (MobileNetV2's first
#: depthwise input at 72 images is 87 M float64 values; whole-tensor temporaries took 19 GB)
_BLOCK_CHUNK_ELEMS = 1 << 22


def _block_operand(x: torch.Tensor, fmt: NumberFormat, V: int) -> Operand:
    """``vsquant.quantize.quantize_block_operand`` of ``x`` (rows, L) in torch: element codes, each vector's
    block scale, gamma = ulp x tensor scale; ``values`` the codes times their block scales (exact). Rows are
    quantized in chunks (every block lies in one row, so chunks change nothing)."""
    rows, L = x.shape
    el = fmt.element
    if fmt.scale.kind == "e8m0":
        tensor_scale = 1.0
    elif fmt.scale.kind == "e4m3":
        t = float(_absmax(x.reshape(1, -1), 1, False)[0]) if x.numel() else 0.0
        tensor_scale = t / (el.max_normal * ELEMENT_FORMATS["e4m3"].max_normal) if t > 0 else 1.0
    else:
        raise ValueError(f"{fmt.name}: scale kind {fmt.scale.kind!r} is not a block scale (e8m0, e4m3)")
    nv = -(-L // V)
    codes = torch.empty(rows, L, dtype=torch.float64)
    values = torch.empty(rows, L, dtype=torch.float64)
    sv = torch.empty(rows, nv, dtype=torch.float64)
    step = max(1, _BLOCK_CHUNK_ELEMS // max(L, 1))
    for r0 in range(0, rows, step):
        r1 = min(r0 + step, rows)
        c, s = _block_codes(x[r0:r1], fmt, tensor_scale)
        codes[r0:r1] = c
        sv[r0:r1] = torch.repeat_interleave(s, fmt.block_size // V, dim=1)[:, :nv]
        values[r0:r1] = c * torch.repeat_interleave(sv[r0:r1], V, dim=1)[:, :L]
    return Operand(values, torch.full((rows,), el.ulp * tensor_scale, dtype=torch.float64), codes, sv)


def _block_codes(x: torch.Tensor, fmt: NumberFormat, tensor_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(element codes (rows, L), block scales (rows, blocks)) of rows ``x`` by ``quantize_block``'s rules."""
    rows, L = x.shape
    k = fmt.block_size
    nb = -(-L // k)
    if L < k:       # one short block per row: no padding (a depthwise conv's rows have one channel)
        xb = x.reshape(rows, 1, L)
    else:           # zero padding of the short last block changes no amax and quantizes to zero
        xb = (F.pad(x, (0, nb * k - L)) if nb * k != L else x).reshape(rows, nb, k)
    amax = _absmax(xb, 2, False)
    el = fmt.element
    if fmt.scale.kind == "e8m0":
        exp = torch.where(amax > 0, _floor_log2(amax) - fmt.emax_elem, torch.full_like(amax, -127, dtype=torch.int64))
        scales = torch.ldexp(torch.ones_like(amax), exp.clamp(-127, 127))
        elems = _element_quantize(xb / scales[..., None], el)
    else:           # e4m3 under the fp32 tensor scale
        scales = _element_quantize(amax / el.max_normal / tensor_scale, ELEMENT_FORMATS["e4m3"])
        denom = scales * tensor_scale
        safe = torch.where(denom > 0, denom, torch.ones_like(denom))
        elems = torch.where(denom[..., None] > 0, _element_quantize(xb / safe[..., None], el), torch.zeros_like(xb))
    return (elems / el.ulp).reshape(rows, -1)[:, :L], scales


def _operand(x: torch.Tensor, cfg: QuantConfig, side: str, unsigned: bool, per_row: bool,
             amax: Amax = None, *, keep: bool | None = None) -> Operand:
    """One operand of ``cfg`` (``side`` "weight" or "act") quantized as vsquant does: the one dispatch on the
    scale kinds. ``keep``: also the integers and the per-vector scales apart (default: where the layer's vector
    MAC is not one GEMM of the scaled operands, ``cfg.separable``)."""
    fmt = cfg.weight_format if side == "weight" else cfg.act_format
    if amax is not None and fmt.scale.kind not in ("coarse", "int"):
        raise ValueError(f"{fmt.name if fmt.scale.is_block else fmt.scale} scales are dynamic (each vector's or "
                         "block's max): they take no calibrated amax")
    if fmt.scale.is_block:
        return _block_operand(x, fmt, cfg.vector_size)
    bits = cfg.weight_bits if side == "weight" else cfg.act_bits
    clip = cfg.weight_clip if side == "weight" else "max"             # ,clip=: the weights' per-vector scales
    if fmt.scale.kind == "fp":
        return _fp_vector(x, bits, fmt.scale, cfg.vector_size, unsigned, "weight" if side == "weight" else "activation",
                          clip)
    return _scaled_integers(x, bits, fmt.scale, cfg.vector_size, unsigned, per_row, amax,
                            keep=not cfg.separable if keep is None else keep, requantize=cfg.requantize,
                            nonzero_scales=cfg.nonzero_scales, clip=clip)


def _span(s: torch.Tensor) -> int:
    """``vsquant.vector_mac.exponent_span``: the largest spread of binades among one row's non-zero scales."""
    if s.numel() == 0:
        return 0
    nz = s > 0
    p = _floor_log2(s)
    hi = torch.where(nz, p, torch.full_like(p, -(1 << 40))).amax(dim=-1)
    lo = torch.where(nz, p, torch.full_like(p, 1 << 40)).amin(dim=-1)
    return int(torch.where(nz.any(dim=-1), hi - lo, torch.zeros_like(hi)).max())


def _exact(a: Operand, w: Operand, cfg: QuantConfig, nvec: int) -> bool:
    """Whether the scaled operands' GEMM is exact (so equal to the ordered per-vector sum)."""
    if cfg.separable or (a.scales is None and w.scales is None):
        return True        # integers below 2^53 (the reference checks the bound)
    if not cfg.float_scales:
        return False       # rounded integer scale products: not one GEMM
    sa = 0 if a.scales is None else _span(a.scales)
    sw = 0 if w.scales is None else _span(w.scales)
    return float_sum_bits(cfg, nvec, sa, sw) <= EXACT_BITS


def _codes(o: Operand) -> torch.Tensor:
    return o.codes if o.codes is not None else o.values


def _product(sa: torch.Tensor, sw: torch.Tensor, cfg: QuantConfig) -> torch.Tensor:
    """The scale product of Eq. 5, ``vsquant.vector_mac``'s p: sa * sw, an integer one rounded to R bits
    (``vsquant.vector_mac.round_scale_product``: half up by a right shift, saturating) at a rounded width."""
    p = sa * sw
    shift = cfg.scale_product_shift
    if cfg.float_scales or not shift:
        return p
    top = float((1 << cfg.rounded_scale_product_bits) - 1)
    return torch.floor((p + float(1 << (shift - 1))) / float(1 << shift)).clamp_(max=top)


#: float64 elements of the per-vector terms formed at once by the ordered sum (2 MiB), and of the block of the
#: output they are added into (256 KiB): both stay in cache between the product that writes the terms and the
#: additions that read them, however large the layer
_TERM_CHUNK_ELEMS = 1 << 18
_OUT_BLOCK_ELEMS = 1 << 15


def _folded_scales(cfg: QuantConfig) -> tuple[bool, bool]:
    """Which operands' float scales the GEMM that forms the terms of a float-scaled MAC may carry (a's, w's).

    The reference forms each term as dot_j * p_j, rounded once, with dot_j an exact integer and p_j = sa_j * sw_j
    exact (two float scales' significands fit in 53 bits). Where dot_j * sa_j is exact (its partial sums are
    multiples of sa_j's lsb below 2^(D + 1 + pa) ulps: :func:`vsquant.vector_mac.float_sum_bits` of one vector
    with only a's fraction bits), the GEMM of a's scaled values and w's codes forms it exactly and one multiply
    by sw_j rounds it once, to the same value RN(dot_j * sa_j * sw_j); likewise for w. Both sides where the
    whole term is exact (every partial sum of a vector's scaled products fits, or V = 1: one product of two
    exact scaled values, rounded once). Integer (rounded) scale products fold neither: terms from the codes."""
    if not cfg.float_scales:
        return False, False
    if cfg.vector_size == 1 or float_sum_bits(cfg, 1, 0, 0) <= EXACT_BITS:
        return True, True
    one_side = cfg.dot_product_bits + 1
    if one_side + cfg.act_scale.significand_bits <= EXACT_BITS:
        return True, False
    return False, one_side + cfg.weight_scale.significand_bits <= EXACT_BITS


def _ordered_mac(a: Operand, w: Operand, cfg: QuantConfig) -> torch.Tensor:
    """Eq. 5 of a GEMM (rows of a, K) x (N, K) per vector in the reference's order (:func:`_ordered_gemms`)."""
    return _ordered_gemms(_batched(a, 1), _batched(w, 1), cfg)[0]


def _batched(o: Operand, n: int) -> Operand:
    """An operand of ``n`` stacked matrices (n * rows, L) as (n, rows, L) (codes and scales likewise)."""
    def view(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.reshape(n, -1, t.shape[-1])
    values = view(o.values)
    assert values is not None
    return Operand(values, o.gamma, view(o.codes), view(o.scales))


def _ordered_gemms(a: Operand, w: Operand, cfg: QuantConfig) -> torch.Tensor:
    """Eq. 5 per vector in the reference's order for a batch of GEMMs a (B, M, K) x w (B, N, K): acc += dot_j *
    p_j, j ascending (``vsquant.vector_mac``'s loop; each dot product is an exact integer, p_j the scale product
    of :func:`_product`), each output element's terms added in that order. With integer scale products every
    term and partial sum is an integer below 2^53, so a chunk of vectors is summed at once; with float scales
    the terms are added one vector after another, as the reference does (each term formed from the scaled
    operands where that is exact, :func:`_folded_scales`). The output is computed a block of rows (or of matrices)
    at a time, so the block and its terms stay in cache: the order of each element's additions is unchanged."""
    V = cfg.vector_size
    fold_a, fold_w = _folded_scales(cfg)
    ac, wc = a.values if fold_a else _codes(a), w.values if fold_w else _codes(w)
    a_scales, w_scales = None if fold_a else a.scales, None if fold_w else w.scales
    scaled = a_scales is None and w_scales is None      # the GEMM forms the terms dot_j * p_j
    B, M, K = ac.shape
    N = wc.shape[1]
    nvec = -(-K // V)
    av = _vector_view(ac.reshape(B * M, K), V).reshape(B, M, nvec, -1).permute(2, 0, 1, 3)   # (nvec, B, M, V)
    wv = _vector_view(wc.reshape(B * N, K), V).reshape(B, N, nvec, -1).permute(2, 0, 3, 1)   # (nvec, B, V, N)
    out = torch.zeros(B, M, N, dtype=torch.float64)
    if out.numel() == 0:
        return out
    one = torch.ones(1, 1, 1, dtype=torch.float64)
    sa = (a_scales if a_scales is not None else one.expand(B, M, nvec)).permute(2, 0, 1)[..., None]
    sw = (w_scales if w_scales is not None else one.expand(B, N, nvec)).permute(2, 0, 1)[:, :, None, :]
    # (nvec, B, M, 1) and (nvec, B, 1, N); a float scale product with one side 1 is the other side's scale
    only = None if scaled or not cfg.float_scales else sa if w_scales is None else sw if a_scales is None else None
    rows = max(1, _OUT_BLOCK_ELEMS // max(N, 1))            # rows of one matrix in a block
    mats = max(1, rows // max(M, 1))                        # whole matrices in a block (small GEMMs)
    rows = min(rows, M)
    step = max(1, _TERM_CHUNK_ELEMS // max(mats * rows * N, 1))
    for b0 in range(0, B, mats):
        b1 = min(b0 + mats, B)
        for m0 in range(0, M, rows):
            m1 = min(m0 + rows, M)
            blk = out[b0:b1, m0:m1]
            for c0 in range(0, nvec, step):
                c1 = min(c0 + step, nvec)
                ta, tw = av[c0:c1, b0:b1, m0:m1], wv[c0:c1, b0:b1]
                # Eq. 4 (times p where scaled); vectors of one element: an outer product (3x a K=1 matmul's speed)
                terms = ta * tw if ta.shape[-1] == 1 else torch.matmul(ta, tw)
                if only is not None:                                             # dot_j * p_j
                    terms.mul_(only[c0:c1, b0:b1, m0:m1] if only is sa else only[c0:c1, b0:b1])
                elif not scaled:
                    terms.mul_(_product(sa[c0:c1, b0:b1, m0:m1], sw[c0:c1, b0:b1], cfg))
                if cfg.float_scales:
                    for t in terms:                                              # Eq. 5, j ascending
                        blk += t
                else:
                    blk += terms.sum(dim=0)
    return out


def _mac(a: Operand, w: Operand, cfg: QuantConfig) -> torch.Tensor:
    """The vector MAC of a GEMM (rows of a, K) x (N, K): one GEMM where exact, else the ordered sum."""
    K = a.values.shape[-1]
    if _exact(a, w, cfg, -(-K // cfg.vector_size)):
        return a.values @ w.values.T
    return _ordered_mac(a, w, cfg)


def _absmax(x: torch.Tensor, dim: int, unsigned: bool) -> torch.Tensor:
    """max |x| (signed) or max(x, 0) (unsigned: x >= 0 by the unsigned policy) along ``dim``, without a
    temporary the size of x."""
    if unsigned:
        return x.amax(dim).clamp_min(0)
    return torch.maximum(x.amax(dim), x.amin(dim).neg())


# --- the datapath as torch functions (float64, exact integers) ----------------------------------

def quantized_weight(w: torch.Tensor, cfg: QuantConfig, amax: Amax = None, planes: int | None = None,
                     midpoint: bool = False) -> Operand:
    """The weight (N, K) as ``vsquant.ppu.quantize_weight``: scaled integers (or block codes) and the
    per-channel coarse scale (``amax``: calibrated per-channel maxima for a per-channel format); ``planes``: its
    top bit planes only (with ``midpoint`` plus the dropped planes' mean), as ``vsquant.bitserial.truncate_weight``
    (a bit-serial datapath's run-time precision)."""
    return _weight_operand(w.double(), cfg, amax, planes, midpoint)


def _weight_operand(x: torch.Tensor, cfg: QuantConfig, amax: Amax, planes: int | None,
                    midpoint: bool = False) -> Operand:
    """A weight (rows, L) quantized, with ``planes`` its integers truncated to their top bit planes:
    floor(q / 2^(W-planes)) * 2^(W-planes) (:func:`vsquant.bitserial.top_planes`; ``midpoint``: plus
    (2^(W-planes) - 1) / 2), the scales unchanged."""
    W = cfg.weight_bits
    if planes is None or planes == W:
        return _operand(x, cfg, "weight", False, True, amax)
    check_bit_serial(cfg)
    if isinstance(planes, bool) or not isinstance(planes, int) or not 1 <= planes <= W:
        raise ValueError(f"planes must be an integer in [1, {W}] (the weights' bits), got {planes!r}")
    op = _operand(x, cfg, "weight", False, True, amax, keep=True)
    assert op.codes is not None
    step = float(1 << (W - planes))
    codes = torch.floor(op.codes / step) * step + (dropped_planes_mean(W, planes) if midpoint else 0.0)
    rows, L = codes.shape
    values = codes if op.scales is None else _from_vectors(
        _vector_view(codes, cfg.vector_size) * op.scales[..., None], rows, L)
    if cfg.separable:
        return Operand(values, op.gamma)
    return Operand(values, op.gamma, codes, op.scales)


def quantized_conv_weight(w: torch.Tensor, cfg: QuantConfig, amax: Amax = None,
                          planes: int | None = None, midpoint: bool = False) -> Operand:
    """A conv weight (K, Cg, R, S) as ``vsquant.layers.quantize_conv_weight``: vectors of V input channels at
    each kernel position, each position's channels zero-padded to whole vectors; ``values`` in (K, Cg, R, S),
    a block format's ``codes`` (K, R, S, Cg padded) and ``scales`` (K, R, S, vectors) in the buffer's order."""
    K, Cg, R, S = w.shape
    wp = F.pad(w.double().permute(0, 2, 3, 1), (0, -Cg % cfg.vector_size))
    if not cfg.weight_scale.is_block:
        op = _weight_operand(wp.reshape(K, -1), cfg, amax, planes, midpoint)
        values = op.values.reshape(K, R, S, -1)[..., :Cg].permute(0, 3, 1, 2)
        if op.codes is None:
            return Operand(values, op.gamma)
        return Operand(values, op.gamma, op.codes.reshape(K, R, S, -1),
                       None if op.scales is None else op.scales.reshape(K, R, S, -1))
    if planes is not None:
        check_bit_serial(cfg)       # block formats have no bit planes to truncate: refused
    # a block format: blocks along each kernel position's channels (a short last block its own), as the reference
    op = _operand(wp.reshape(K * R * S, -1), cfg, "weight", False, True, amax)
    assert op.codes is not None and op.scales is not None
    values = op.values.reshape(K, R, S, -1)[..., :Cg].permute(0, 3, 1, 2)
    return Operand(values, op.gamma[::R * S].contiguous(), op.codes.reshape(K, R, S, -1),
                   op.scales.reshape(K, R, S, -1))


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
    a = _operand(x2, cfg, "act", _unsigned(cfg, x2, unsigned), False, act_amax)
    b = wq if wq is not None else quantized_weight(_weight(w), cfg)
    y = _mac(a, b, cfg) * _coarse_scale(a.gamma[:, None], b.gamma[None, :], cfg)   # Eq. 5, the PPU's scales
    if bias is not None:
        y = y + bias.double()[None, :]
    out: torch.Tensor = y.reshape(xd.shape[:-1] + (b.values.shape[0],))
    return out


def _coarse_scale(ga: torch.Tensor, gw: torch.Tensor, cfg: QuantConfig) -> torch.Tensor:
    """``vsquant.ppu.coarse_scale``: gamma_a * gamma_w, times 2^shift for a rounded scale product."""
    s = ga * gw
    return s * float(2 ** cfg.scale_product_shift) if cfg.scale_product_shift else s


def fake_conv2d(x: torch.Tensor, w: torch.Tensor | None, bias: torch.Tensor | None, cfg: QuantConfig, stride: Pair,
                padding: Pair, dilation: Pair, groups: int, wq: QuantizedWeight | None = None, *,
                unsigned: bool | None = None, act_amax: Amax = None) -> torch.Tensor:
    """``vsquant.layers.conv2d``: activations channels-last, vectors of V channels within each group."""
    xd = x.double()
    B, C, H, W = xd.shape
    xa = xd.permute(0, 2, 3, 1).reshape(B * H * W * groups, C // groups)
    op = _operand(xa, cfg, "act", _unsigned(cfg, xa, unsigned), False, act_amax)
    ga = op.gamma
    b = wq if wq is not None else quantized_conv_weight(_weight(w), cfg)
    K, _, R, S = b.values.shape
    nvec = R * S * -(-(C // groups) // cfg.vector_size)
    a_whole = op if op.scales is None else Operand(op.values, op.gamma, op.codes, op.scales.reshape(1, -1))
    w_rows = b if b.scales is None else Operand(b.values, b.gamma, b.codes, b.scales.reshape(K, -1))
    if not _exact(a_whole, w_rows, cfg, nvec):     # (the activations' span over the tensor: >= any row's)
        acc = _ordered_conv(op, b, (B, H, W, C), cfg, stride, padding, dilation, groups)
    else:
        a = op.values.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()
        if groups == C == K:   # depthwise: float64 F.conv2d is slow here; exact sums in any order
            acc = _depthwise(a, b.values, stride, padding, dilation)
        else:
            acc = F.conv2d(a, b.values, None, stride, padding, dilation, groups)
    y: torch.Tensor = acc * _coarse_scale(ga[0], b.gamma, cfg)[None, :, None, None]
    if bias is not None:
        y = y + bias.double()[None, :, None, None]
    return y


def _pairs(*vs: Pair) -> list[tuple[int, int]]:
    out = []
    for v in vs:
        if isinstance(v, int):
            out.append((v, v))
        else:
            first, second = v
            out.append((int(first), int(second)))
    return out


def _ordered_conv(a: Operand, w: Operand, shape: tuple[int, int, int, int], cfg: QuantConfig, stride: Pair,
                  padding: Pair, dilation: Pair, groups: int) -> torch.Tensor:
    """A conv whose vector MAC is not one GEMM (float per-vector scales, rounded scale products) in the
    reference's order: K runs over kernel positions (r, s) and the vectors of each position's channels, and
    acc += dot_j * p_j (:func:`_product`) for j ascending, all groups at once (``vsquant.layers.conv2d`` lowers
    to the same order)."""
    assert w.codes is not None   # quantized_conv_weight keeps the codes wherever the MAC is not one GEMM
    V = cfg.vector_size
    (sh, sw_), (ph, pw), (dh, dw) = _pairs(stride, padding, dilation)
    B, H, W, C = shape
    G, Cg = groups, C // groups
    K, R, S, Cgp = w.codes.shape
    Kg, nvg = K // G, Cgp // V
    ac = _codes(a).reshape(B, H, W, G, Cg)   # the channel padding to whole vectors adds zero products: left out
    one = torch.ones(B * H * W * G, nvg, dtype=torch.float64)
    sa = (a.scales if a.scales is not None else one).reshape(B, H, W, G, nvg)
    ac = F.pad(ac, (0, 0, 0, 0, pw, pw, ph, ph))                                # zero pixels, scale 0
    sa = F.pad(sa, (0, 0, 0, 0, pw, pw, ph, ph))
    Ho, Wo = conv_output_size(H, R, sh, ph, dh), conv_output_size(W, S, sw_, pw, dw)
    wc = w.codes.reshape(G, Kg, R, S, Cgp)
    sw = (w.scales if w.scales is not None else torch.ones(K, R, S, nvg, dtype=torch.float64)).reshape(G, Kg, R, S,
                                                                                                         nvg)
    out = torch.zeros(B * Ho * Wo, G, Kg, dtype=torch.float64)
    for r in range(R):
        for t in range(S):
            win = ac[:, r * dh: r * dh + sh * (Ho - 1) + 1: sh, t * dw: t * dw + sw_ * (Wo - 1) + 1: sw_]
            swin = sa[:, r * dh: r * dh + sh * (Ho - 1) + 1: sh, t * dw: t * dw + sw_ * (Wo - 1) + 1: sw_]
            win, swin = win.reshape(-1, G, Cg), swin.reshape(-1, G, nvg)
            for v in range(nvg):
                c1 = min((v + 1) * V, Cg)
                d = torch.einsum("mgc,gkc->mgk", win[..., v * V:c1], wc[:, :, r, t, v * V:c1])
                out += d * _product(swin[:, :, v, None], sw[None, :, :, r, t, v], cfg)
    return out.reshape(B, Ho, Wo, K).permute(0, 3, 1, 2)


def _depthwise(a: torch.Tensor, b: torch.Tensor, stride: Pair, padding: Pair, dilation: Pair) -> torch.Tensor:
    """A depthwise convolution of integer-valued float64 tensors as R*S shifted multiply-adds (exact: every
    partial sum is an integer below 2^53, so the order of the additions does not matter)."""
    (sh, sw), (ph, pw), (dh, dw) = _pairs(stride, padding, dilation)
    B, C, H, W = a.shape
    _, _, R, S = b.shape
    Ho, Wo = conv_output_size(H, R, sh, ph, dh), conv_output_size(W, S, sw, pw, dw)
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
    mcfg = cfg.for_layer("matmul")   # A x A bits, as + as scale product
    keep = not mcfg.separable
    oa = _operand(ad, cfg, "act", _unsigned(cfg, ad, a_unsigned), False, a_amax, keep=keep)
    ob = _operand(bt, cfg, "act", _unsigned(cfg, bt, b_unsigned), False, b_amax, keep=keep)
    if _exact(oa, ob, mcfg, -(-K // cfg.vector_size)):
        acc = oa.values.reshape(batch + (M, K)) @ ob.values.reshape(batch + (N, K)).transpose(-1, -2)
    else:   # one ordered per-vector sum per batch matrix, as the reference's one GEMM per matrix
        n = math.prod(batch)
        acc = (_ordered_gemms(_batched(oa, n), _batched(ob, n), mcfg).reshape(batch + (M, N)) if n else
               torch.zeros(batch + (M, N), dtype=torch.float64))
    out: torch.Tensor = acc * _coarse_scale(oa.gamma[0], ob.gamma[0], mcfg)
    return out
