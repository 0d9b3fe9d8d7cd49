"""Bit-serial weights: two's-complement bit planes, their top-k truncation and the bit-serial vector MAC.

PrecisionBatching (Lam, Yedidia, Banbury, Janapa Reddi, "Quantized Neural Network Inference with Precision
Batching", arXiv:2003.00822, 2020) decomposes a layer's quantized weights into 1-bit bitlayers, multiplies each
with the (higher-precision) activations using 1-bit operations and accumulates them; the number of bitlayers
accumulated is a run-time knob trading accuracy for speed. On VS-Quant's integer vector MAC (Sec. 5, Eq. 4) a
W-bit weight w, signed in two's complement (the numerics contract's [-(2^(W-1)-1), 2^(W-1)-1] fits), is

    w = -2^(W-1) b_{W-1} + sum_{p < W-1} 2^p b_p          b_p in {0, 1}: bit plane p

so the V-wide dot product of Eq. 4 is W passes, one plane each, most significant first:

    dot = sum_p c_p (b_p . a),    c_p = 2^p for p < W-1,  c_{W-1} = -2^(W-1)   (the negative top plane)

each pass V A-bit AND gates (the 1-bit x A-bit products), an adder tree of V A-bit inputs and a shift-add into
the lane's dot-product register; the scale product, scale multiply and accumulation of Eq. 5 follow once per
vector, as on the bit-parallel datapath. An unsigned operand on the weight port (an attention matmul's
``U`` activations) has a positive top plane, c_{W-1} = 2^(W-1).

Top-k planes (run-time precision): running only planes W-1 ... W-k gives the weight

    w_k = sum_{p >= W-k} c_p b_p = floor(w / 2^(W-k)) * 2^(W-k)

(two's-complement truncation toward -infinity, in units of the stored weight's LSB, so its scales apply
unchanged); k = W is w itself. For k < W it is a different (truncated) weight: its accuracy is measured.
Truncation is biased (the dropped planes are lost, -(2^(W-k) - 1)/2 on average), and the bias adds up
coherently over a dot product's V elements. With ``midpoint`` the dropped planes are replaced by their mean,

    w_k + (2^(W-k) - 1) / 2,    dot = sum_{p >= W-k} c_p (b_p . a) + (2^(W-k) - 1)/2 * (1 . a)

a half-integer offset (exact in float64) whose hardware is one activation sum per broadcast activation vector
(an adder tree shared by the PE's lanes) and one shift-add per dot product (``(sum << s) - sum``, halved by
the one fraction bit the dot-product register gets), overlapped with the plane passes.

Exactness: every plane's partial sums are integers (integer per-vector scales, rounded or not, or none), so
sum_p c_p (sum_j dot_pj P_j) = sum_j dot_j P_j exactly in float64 (below 2^53, checked): the bit-serial result
equals :func:`vsquant.vector_mac` on the same (or the truncated) weights bit for bit. Float per-vector scales and
block formats would need the planes combined before the float scale multiply; they are refused.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .config import QuantConfig
from .quantize import QuantizedTensor, qmax
from .vector_mac import EXACT_LIMIT, AccumulatorOverflow, MacResult, vector_mac

__all__ = ["plane_weights", "bit_planes", "from_planes", "top_planes", "dropped_planes_mean", "truncate_weight",
           "check_bit_serial", "bit_serial_vector_mac"]


def plane_weights(bits: int, unsigned: bool = False) -> np.ndarray:
    """c_p of planes p = 0 .. bits-1: 2^p, the top plane -2^(bits-1) in two's complement (+ when unsigned)."""
    c = np.array([1 << p for p in range(bits)], dtype=np.int64)
    if not unsigned:
        c[-1] = -c[-1]
    return c


def _check_range(values: np.ndarray, bits: int, unsigned: bool) -> np.ndarray:
    v = np.asarray(values)
    if v.size and not np.array_equal(v, np.round(v)):
        raise ValueError("bit planes are taken of integers; got non-integer values")
    v = v.astype(np.int64)
    lo, hi = (0, (1 << bits) - 1) if unsigned else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    if v.size and (v.min() < lo or v.max() > hi):
        kind = "unsigned" if unsigned else "two's-complement"
        raise ValueError(f"values in [{v.min()}, {v.max()}] do not fit {bits}-bit {kind} planes [{lo}, {hi}]")
    return v


def bit_planes(values: np.ndarray, bits: int, unsigned: bool = False) -> np.ndarray:
    """The ``bits`` bit planes of integer ``values`` (two's complement, or unsigned): uint8 of shape
    ``(bits,) + values.shape``, plane p holding bit p; :func:`from_planes` inverts it."""
    v = _check_range(values, bits, unsigned) & ((1 << bits) - 1)
    return np.stack([((v >> p) & 1).astype(np.uint8) for p in range(bits)])


def from_planes(planes: np.ndarray, bits: int, unsigned: bool = False) -> np.ndarray:
    """sum_p c_p b_p: the integers whose planes ``planes`` are (int64)."""
    c = plane_weights(bits, unsigned)
    return np.tensordot(c, planes.astype(np.int64), axes=1)


def _check_planes(planes: object, bits: int) -> int:
    if isinstance(planes, bool) or not isinstance(planes, (int, np.integer)) or not 1 <= planes <= bits:
        raise ValueError(f"planes must be an integer in [1, {bits}] (the weight's bits), got {planes!r}")
    return int(planes)


def dropped_planes_mean(bits: int, planes: int) -> float:
    """The mean of the planes below the top ``planes`` of a ``bits``-bit integer, (2^(bits-planes) - 1) / 2."""
    return ((1 << (bits - _check_planes(planes, bits))) - 1) / 2


def top_planes(values: np.ndarray, bits: int, planes: int, unsigned: bool = False,
               midpoint: bool = False) -> np.ndarray:
    """The weight of the top ``planes`` bit planes of ``values``: floor(v / 2^(bits-planes)) * 2^(bits-planes)
    (int64), the same value as :func:`from_planes` of planes bits-1 .. bits-planes; with ``midpoint`` plus the
    dropped planes' mean (:func:`dropped_planes_mean`; float64, half-integers)."""
    s = bits - _check_planes(planes, bits)
    v = _check_range(values, bits, unsigned)
    top = (v >> s) << s
    return top + dropped_planes_mean(bits, planes) if midpoint and s else top


def truncate_weight(w: QuantizedTensor, planes: int | None, midpoint: bool = False) -> QuantizedTensor:
    """``w`` with its values replaced by their top ``planes`` bit planes (None or all planes: ``w`` itself), with
    ``midpoint`` plus the dropped planes' mean (float64 values); the scales are the stored weight's."""
    if planes is None or planes == w.bits:
        return w
    values = top_planes(w.values, w.bits, planes, w.unsigned, midpoint)
    return dataclasses.replace(w, values=values if midpoint else values.astype(w.values.dtype), cache={})


def check_bit_serial(cfg: QuantConfig) -> None:
    """Refuse a config the bit-serial datapath does not run exactly (float or block per-vector scales)."""
    if cfg.float_scales or cfg.block_formats:
        raise ValueError(f"{cfg}: the bit-serial datapath runs integer weights with integer per-vector scales or "
                         "per-channel scaling; float per-vector scales and block formats are not supported on it")


def bit_serial_vector_mac(a: QuantizedTensor, w: QuantizedTensor, cfg: QuantConfig, *, planes: int | None = None,
                          j0: int = 0, j1: int | None = None, midpoint: bool = False) -> MacResult:
    """Eq. 5 over vectors [j0, j1) with the dot products of Eq. 4 formed bit-serially: one pass per weight bit
    plane, most significant first, each pass ``vector_mac`` of the activations with the 0/1 plane, shifted
    (times c_p) and added. ``planes``: run the top ``planes`` planes only (None: all ``w.bits``); ``midpoint``:
    add the dropped planes' mean times the activations' sum. Equals
    ``vector_mac(a, truncate_weight(w, planes, midpoint), cfg)`` bit for bit."""
    check_bit_serial(cfg)
    W = w.bits
    k = _check_planes(W if planes is None else planes, W)
    J = a.num_vectors
    nvec = (J if j1 is None else j1) - j0
    # every plane sum is below the W-bit sum's bound times 2^W / qmax(W): check the combined sum's bound
    smax = float((1 << cfg.act_scale.integer_bits) * (1 << cfg.weight_scale.integer_bits))
    bound = float(qmax(a.bits, a.unsigned)) * float(1 << W) * min(a.vector_size, a.shape[1]) * smax * max(nvec, 1)
    if bound >= EXACT_LIMIT:
        raise AccumulatorOverflow(f"the bit-serial partial sums can reach {bound:.3g} >= 2^53; float64 would not "
                                  "be exact. Use fewer bits or a smaller reduction length.")
    bits = bit_planes(w.values, W, w.unsigned)
    c = plane_weights(W, w.unsigned)
    acc: np.ndarray | None = None
    first: MacResult | None = None
    for p in range(W - 1, W - 1 - k, -1):          # most significant plane first
        plane = dataclasses.replace(w, values=bits[p].astype(np.int32), cache={})
        r = vector_mac(a, plane, cfg, j0=j0, j1=j1)
        first = first or r
        acc = r.acc * float(c[p]) if acc is None else acc + r.acc * float(c[p])   # shift and add
    assert acc is not None and first is not None
    if midpoint and k < W:      # the dropped planes' mean times the activation sum (a plane of ones)
        ones = dataclasses.replace(w, values=np.ones(w.shape, np.int32), cache={})
        acc = acc + vector_mac(a, ones, cfg, j0=j0, j1=j1).acc * dropped_planes_mean(W, k)
    max_acc = max(float(acc.max()), -float(acc.min())) if acc.size else 0.0
    # gating is per vector (its scale product), the same for every plane: counted once
    return MacResult(acc, first.num_vectors, first.gated, first.accumulations, first.scale_shift, max_acc, None)
