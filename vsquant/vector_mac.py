"""The integer vector MAC of Sec. 4.2 and Sec. 5 (Eq. 4-5, Fig. 2b).

For output (m, n) and reduction vector j the vector MAC unit computes

    dot[m, n, j]  = sum_i aq[m, j, i] * wq[n, j, i]            (Eq. 4, W+A+log2 V bits)
    p[m, n, j]    = round_R(sa[m, j] * sw[n, j])                (scale product, ws+as or R bits)
    acc[m, n]    += dot[m, n, j] * p[m, n, j]                   (Eq. 5, in the accumulation collector)

A rounded scale product of 0 gates the accumulation; the gated count is returned. A side with
per-channel/per-layer scaling ('-') has integer per-vector scale 1; the baseline datapath (both
sides '-') has no scale product at all and ``acc = aq @ wq.T``.

Exactness and speed: the integer path runs in float64 BLAS, which is exact while every integer
stays below 2^53 (checked; the result is the same as an int64 computation). At full width the
scale product is separable, so the whole layer is one GEMM ``(aq*sa) @ (wq*sw).T``. With
rounding, or with floating-point scales, per-vector dot products are formed in chunks of
vectors and accumulated in ascending vector order: that order is part of the contract, so a
tiled hardware model that accumulates K-tiles in ascending order reproduces float results bit
for bit. Where the float sums are provably exact (:func:`float_sum_exact`: the scales of a row
span few binades), every order gives that result and the layer is one GEMM again.

Block formats (OCP MX, NVFP4) run on the same datapath: their elements are integer codes in
units of the element ulp (``vsquant.quantize.quantize_block_operand``), so the element products
and the block dot product are exact fixed-point sums, and the block scale is a float per-vector
scale (E8M0: a power of two, the hardware's exponent add; E4M3: an FP8 multiply).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np

from .config import QuantConfig
from .quantize import QuantizedTensor, expand_vector_scales, qmax, to_vectors

EXACT_BITS = 53
EXACT_LIMIT = 2.0 ** EXACT_BITS
_CHUNK_ELEMS = 1 << 23  # float64 elements per chunk of per-vector dot products (64 MiB)


class AccumulatorOverflow(OverflowError):
    """An integer result does not fit the width Sec. 5 gives it."""


def round_scale_product(p: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """Round an integer scale product to ``bits`` bits by a right shift, half up, saturating.

    ``round_R(p) = min((p + 2^(shift-1)) >> shift, 2^bits - 1)``; the 2^shift is folded into the
    PPU's coarse scale. Small products become 0 (the data gating of Fig. 3's text).
    """
    if shift <= 0:
        return p
    p = np.asarray(p, np.float64)
    return np.minimum(np.floor((p + float(1 << (shift - 1))) / float(1 << shift)), float((1 << bits) - 1))


def _per_vector_scales(t: QuantizedTensor) -> np.ndarray:
    """Integer/fp per-vector scales as float64, 1 for coarse-scaled operands."""
    shape = t.values.shape[:-1] + (t.num_vectors,)
    if t.scales is None:
        return np.ones(shape)
    return t.scales.astype(np.float64)


@dataclass(frozen=True, eq=False)
class MacResult:
    """What the accumulation collectors hold after a layer, before the PPU."""

    acc: np.ndarray            # (M, N) float64 holding integers (or float sums for fp scales)
    num_vectors: int           # vectors along the reduction axis
    gated: int                 # accumulations gated because the rounded scale product was 0
    accumulations: int         # M * N * num_vectors vector-MAC partial sums
    scale_shift: int           # 2^scale_shift folds back the scale-product rounding
    max_abs_acc: float
    max_abs_dot: float | None  # max |dot product| when per-vector dots were formed


def _check_exact(bound: float, what: str) -> None:
    if bound >= EXACT_LIMIT:
        raise AccumulatorOverflow(
            f"{what} can reach {bound:.3g} >= 2^53; float64 accumulation would not be exact. "
            "Use fewer bits or a smaller reduction length.")


def _scale_product_table(cfg: QuantConfig) -> np.ndarray | None:
    """Zero mask of round_R(sa*sw) over all integer scale pairs, for the gating count."""
    if not cfg.integer_scales:
        return None
    na = (1 << cfg.act_scale.integer_bits) if cfg.act_scale.kind == "int" else 2
    nw = (1 << cfg.weight_scale.integer_bits) if cfg.weight_scale.kind == "int" else 2
    p = np.arange(na, dtype=np.float64)[:, None] * np.arange(nw, dtype=np.float64)[None, :]
    return cast(np.ndarray, round_scale_product(p, cfg.scale_product_shift, cfg.rounded_scale_product_bits) == 0)


def gated_count(sa: np.ndarray, sw: np.ndarray, cfg: QuantConfig, j0: int = 0, j1: int | None = None) -> int:
    """Number of (m, n, j) whose rounded scale product is 0, from per-vector scale histograms."""
    j1 = sa.shape[1] if j1 is None else j1
    if cfg.is_baseline or j1 <= j0:
        return 0
    a, w = sa[:, j0:j1], sw[:, j0:j1]
    if cfg.float_scales or cfg.scale_product_shift == 0:  # only a zero scale gives a zero product
        za = (a == 0).sum(axis=0).astype(np.int64)
        zw = (w == 0).sum(axis=0).astype(np.int64)
        return int(np.sum(za * w.shape[0] + zw * a.shape[0] - za * zw))
    table = _scale_product_table(cfg)
    if table is None:
        raise ValueError(f"{cfg} has no integer per-vector scales: no scale product to gate")
    zero = table.astype(np.int64)
    na, nw = zero.shape
    J = j1 - j0
    offs = np.arange(J, dtype=np.int64)
    ca = np.bincount((a.astype(np.int64) + offs * na).ravel(), minlength=J * na).reshape(J, na)
    cw = np.bincount((w.astype(np.int64) + offs * nw).ravel(), minlength=J * nw).reshape(J, nw)
    return int(np.einsum("ja,ab,jb->", ca, zero, cw))


def exponent_span(s: np.ndarray) -> int:
    """The largest spread of binades, max - min of floor(log2 s), among one row's non-zero scales (rows: all
    axes but the last; 0 when no row has two)."""
    if s.size == 0:
        return 0
    nz = s > 0
    _, p = np.frexp(np.where(nz, s, 1.0))
    hi = np.where(nz, p, np.iinfo(np.int32).min).max(axis=-1)
    lo = np.where(nz, p, np.iinfo(np.int32).max).min(axis=-1)
    spans = np.where(nz.any(axis=-1), hi - lo, 0)
    return int(spans.max())


def float_sum_exact(sa: np.ndarray, sw: np.ndarray, cfg: QuantConfig, nvec: int) -> bool:
    """Whether every partial sum of sum_j dot_j * sa_j * sw_j over ``nvec`` vectors is exact in float64, so any
    order of the additions (one GEMM of the scaled operands, a tiled one) gives the ascending-order result.

    Each term is a multiple of 2^(ea + ew - pa - pw) (p: the scales' fraction bits) below
    2^(D + 1 + ea + ew) (D: the dot product's signed width); so the sums are exact when
    D + 1 + ceil(log2 nvec) + span_a + span_w + pa + pw <= 53, with span the largest spread of binades of one
    row's scales. Integer scales at full width are exact anyway (checked by the caller)."""
    if not cfg.float_scales:
        return False
    return float_sum_bits(cfg, nvec, exponent_span(sa), exponent_span(sw)) <= EXACT_BITS


def float_sum_bits(cfg: QuantConfig, nvec: int, span_a: int, span_w: int) -> int:
    """The significand width the float partial sums of :func:`float_sum_exact` can need (the one formula the
    reference and the fake-quant path share)."""
    return (cfg.dot_product_bits + 1 + math.ceil(math.log2(max(nvec, 1))) + span_a + span_w
            + cfg.weight_scale.significand_bits + cfg.act_scale.significand_bits)


def scaled_operand(t: QuantizedTensor, j0: int, j1: int) -> np.ndarray:
    """Integer values times their integer per-vector scale, float64, for vectors [j0, j1).

    At full width Eq. 5 is separable: sum_j dot_j * sa_j * sw_j = (aq*sa) @ (wq*sw).T.
    Cached on the operand: a weight tile that stays resident is scaled once for all its row tiles.
    """
    hit = t.cache.get(("scaled", j0, j1))
    if hit is not None:
        return hit
    out = _scaled_operand(t, j0, j1)
    t.cache[("scaled", j0, j1)] = out
    return out


def _scaled_operand(t: QuantizedTensor, j0: int, j1: int) -> np.ndarray:
    V, K = t.vector_size, t.shape[-1]
    k0, k1 = j0 * V, min(j1 * V, K)
    if t.scales is None:
        return t.values[:, k0:k1].astype(np.float64)
    s = t.scales[:, j0:j1].astype(np.float64)
    if k1 - k0 == (j1 - j0) * V:  # whole vectors: broadcast on the vector view, no repeat
        v = t.values[:, k0:k1].reshape(t.shape[0], j1 - j0, V) * s[..., None]
        return v.reshape(t.shape[0], k1 - k0)
    return cast(np.ndarray, t.values[:, k0:k1] * expand_vector_scales(s, k1 - k0, V))


def vector_mac(a: QuantizedTensor, w: QuantizedTensor, cfg: QuantConfig, *, j0: int = 0,
               j1: int | None = None, acc: np.ndarray | None = None,
               accumulator_bits: int | None = None) -> MacResult:
    """Accumulate Eq. 5 over reduction vectors [j0, j1) of activations a (M, K) and weights w (N, K).

    ``acc`` continues an accumulation (a tiled caller passes K-tiles in ascending order).
    ``accumulator_bits`` (signed width of the collector) raises :class:`AccumulatorOverflow`
    when a result does not fit it.
    """
    if a.values.ndim != 2 or w.values.ndim != 2:
        raise ValueError(f"vector_mac takes 2-D operands (M, K) and (N, K); got {a.shape} and {w.shape}")
    if a.shape[1] != w.shape[1]:
        raise ValueError(f"reduction lengths differ: activations K={a.shape[1]}, weights K={w.shape[1]}")
    if a.vector_size != w.vector_size:
        raise ValueError(f"vector sizes differ: activations V={a.vector_size}, weights V={w.vector_size}")
    V = a.vector_size
    M, K = a.shape
    N = w.shape[0]
    J = a.num_vectors
    j1 = J if j1 is None else j1
    if not 0 <= j0 <= j1 <= J:
        raise ValueError(f"vector range [{j0}, {j1}) is outside [0, {J})")
    k0, k1 = j0 * V, min(j1 * V, K)
    sa, sw = _per_vector_scales(a), _per_vector_scales(w)
    shift = cfg.scale_product_shift
    nvec = j1 - j0
    max_dot = None

    # exactness bound from the formats, not the data: |q| <= qmax, scales <= 2^M - 1
    dot_bound = float(qmax(a.bits, a.unsigned)) * float(qmax(w.bits, w.unsigned)) * min(V, K)
    if not cfg.float_scales:
        smax = float((1 << cfg.act_scale.integer_bits) * (1 << cfg.weight_scale.integer_bits))
        prior = float(np.abs(acc).max()) if acc is not None and acc.size else 0.0
        _check_exact(dot_bound * smax * max(nvec, 1) + prior, "the accumulated partial sums")

    if cfg.separable or \
            (acc is None and float_sum_exact(sa[:, j0:j1], sw[:, j0:j1], cfg, nvec)):
        out = scaled_operand(a, j0, j1) @ scaled_operand(w, j0, j1).T   # exact: one GEMM (any order)
        if acc is not None:
            out += acc
    else:
        out = np.zeros((M, N)) if acc is None else np.array(acc, dtype=np.float64, copy=True)
        av = to_vectors(a.values[:, k0:k1].astype(np.float64), V)   # (M, nvec, V)
        wv = to_vectors(w.values[:, k0:k1].astype(np.float64), V)   # (N, nvec, V)
        av_t, wv_t = av.transpose(1, 0, 2), wv.transpose(1, 2, 0)   # (nvec, M, V), (nvec, V, N)
        step = max(1, _CHUNK_ELEMS // max(M * N, 1))
        max_dot = 0.0
        for c0 in range(0, nvec, step):  # (nvec == 0 leaves out as it was)
            c1 = min(c0 + step, nvec)
            dots = np.matmul(av_t[c0:c1], wv_t[c0:c1])                  # Eq. 4, (c, M, N)
            max_dot = max(max_dot, float(np.abs(dots).max()))
            for c in range(c1 - c0):
                j = j0 + c0 + c
                p = sa[:, j, None] * sw[None, :, j]
                if not cfg.float_scales:
                    p = round_scale_product(p, shift, cfg.rounded_scale_product_bits)
                out += dots[c] * p                                       # Eq. 5
    gated = gated_count(sa, sw, cfg, j0, j1)
    max_acc = max(float(out.max()), -float(out.min())) if out.size else 0.0
    if accumulator_bits is not None and max_acc > 2.0 ** (accumulator_bits - 1) - 1:
        raise AccumulatorOverflow(
            f"accumulation reached |acc| = {max_acc:.0f}, which needs more than the "
            f"{accumulator_bits}-bit signed accumulation collector of {cfg}")
    if max_dot is not None and max_dot > 2.0 ** (cfg.dot_product_bits - 1) - 1:
        raise AccumulatorOverflow(
            f"a dot product reached {max_dot:.0f}, wider than the {cfg.dot_product_bits} bits of Sec. 5")
    return MacResult(out, nvec, gated, M * N * nvec, shift, max_acc, max_dot)
