"""Quantizers of the VS-Quant paper on NumPy arrays; vectors lie along the last axis.

- per-tensor and per-channel scale-only quantization, Eq. 1-3 (Sec. 3), with a calibrated
  clipping range alpha (``vsquant.calibration``: max, percentile, entropy, MSE);
- per-vector quantization with a floating-point scale per vector, Eq. 7a-7d (Sec. 4.1);
  ``clip="octav"`` sets each vector's scale from its OCTAV clip instead of its max (Sakr et al.,
  ICML 2022: ``s = clip / qmax`` in Eq. 7b, the values beyond it clipped by Eq. 7c), for single-level
  and two-level scales alike;
- two-level quantization with an M-bit unsigned integer scale per vector and an fp coarse
  scale gamma per row (weights: per output channel) or per tensor (activations), Eq. 7a-7j
  (Sec. 4.4);
- the block formats of :mod:`vsquant.formats` (OCP MX, NVFP4) as the datapath stores them
  (:func:`quantize_block_operand`): element codes, the block scale of each vector, gamma = ulp.

All return a :class:`QuantizedTensor`: ``x ~= values * scales (per vector) * gamma (per row)``.
Rounding is to nearest, ties to even (``np.rint``, as ``torch.round``), so a PyTorch
fake-quant path can reproduce these integers exactly.

The paper's order (Eq. 7c) takes the integer values from the fp per-vector scale and only
dequantizes with the two-level scale (Eq. 7j). Named options change that:

- ``requantize=True``: take the integer values with the two-level scale ``sq*gamma`` instead
  (what the options paragraph after Eq. 7 calls "back-calculating"), so values and the scale
  they are dequantized with agree.
- ``nonzero_scales=True``: a non-zero vector whose integer scale rounds to 0 (Eq. 7g) gets
  scale 1 instead, so it is not flushed to zero.
- ``gamma=...``: a static (calibrated) coarse scale instead of the dynamic one of Eq. 7e-7f;
  integer scales that then exceed 2^M-1 saturate.
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .calibration import CLIP_METHODS, _check_bits, calibrate_amax, octav_clip
from .config import MAX_SCALE_BITS, MIN_SCALE_BITS
from .config import qmax as qmax  # re-exported: callers import it from here
from .formats import NumberFormat, block_format, quantize_block


class ScaleRangeError(ValueError):
    """A floating-point per-vector scale does not fit its format (overflow, or every vector underflows)."""


class ScaleUnderflowWarning(UserWarning):
    """Some non-zero vectors' fp per-vector scales underflow to 0 in their format: those vectors are
    flushed to zero, as the hardware would."""


def check_bits(bits: object, what: str = "bits") -> int:
    """An integer bit width N in [2, 16] (the range of every quantizer), else ValueError naming ``what``."""
    try:
        return _check_bits(bits)
    except ValueError:
        raise ValueError(f"{what} must be an int in [2, 16], got {bits!r}") from None


def check_scale_bits(bits: object, what: str = "scale_bits") -> int:
    """An integer per-vector scale width M in [1, 16]."""
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, numbers.Integral) or \
            not MIN_SCALE_BITS <= int(bits) <= MAX_SCALE_BITS:
        raise ValueError(f"{what} must be an int in [{MIN_SCALE_BITS}, {MAX_SCALE_BITS}], got {bits!r}")
    return int(bits)


def check_vector_size(v: object, what: str = "vector_size") -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or int(v) < 1:
        raise ValueError(f"{what} must be a positive int, got {v!r}")
    return int(v)


def check_static_scale(x: np.ndarray, scale: np.ndarray, what: str) -> None:
    """A static (calibrated) scale or gamma per row must be finite and >= 0, and 0 only for rows that are all
    zero: a zero scale would flush a row's non-zero values to zero without a word."""
    if not np.isfinite(scale).all():
        raise ValueError(f"{what} must be finite, got {int((~np.isfinite(scale)).sum())} NaN/Inf value(s)")
    if (scale < 0).any():
        raise ValueError(f"{what} must be >= 0, got {float(scale.min())}")
    zero = scale == 0
    if zero.any() and x.size:
        flushed = int((np.broadcast_to(zero[..., None], x.shape) & (x != 0)).sum())
        if flushed:
            raise ValueError(f"{what} is 0 for rows that hold {flushed} non-zero values, which would all quantize "
                             "to 0; calibrate on data that covers them, or use a dynamic scale")


def qmin(bits: int, unsigned: bool = False) -> int:
    return 0 if unsigned else -qmax(bits, False)


def check_finite(x: npt.ArrayLike, what: str = "input") -> np.ndarray:
    """Reject NaN/Inf with an error that says how many there are."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be a real numeric array, got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{what} is empty (shape {x.shape}); quantization needs at least one value")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            raise ValueError(
                f"{what} has {int(bad.sum())} non-finite values (NaN or Inf) out of {x.size}; "
                "quantization needs finite inputs")
    return np.asarray(x, dtype=np.float64)


def num_vectors(length: int, vector_size: int) -> int:
    return -(-length // vector_size)


def to_vectors(x: np.ndarray, vector_size: int) -> np.ndarray:
    """View the last axis as ceil(L/V) vectors of V, zero-padding the last vector."""
    length = x.shape[-1]
    nv = num_vectors(length, vector_size)
    pad = nv * vector_size - length
    if pad:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,), x.dtype)], axis=-1)
    return x.reshape(x.shape[:-1] + (nv, vector_size))


def from_vectors(xv: np.ndarray, length: int) -> np.ndarray:
    return xv.reshape(xv.shape[:-2] + (-1,))[..., :length]


def expand_vector_scales(scales: np.ndarray, length: int, vector_size: int) -> np.ndarray:
    """Broadcast one scale per vector to every element (the 'broadcast correspondingly' of Eq. 7c)."""
    return np.repeat(scales, vector_size, axis=-1)[..., :length]


def int_dtype(bits: int) -> type[np.signedinteger[Any]]:
    """Smallest signed NumPy integer type holding an N-bit (or N-bit unsigned) value."""
    return np.int8 if bits <= 7 else np.int16 if bits <= 15 else np.int32


def _safe_scale(s: np.ndarray) -> np.ndarray:
    """Scales with 0 replaced by +inf, so x / s is 0 for an all-zero vector or tensor."""
    return np.where(s > 0, s, np.inf)


def _round_clip_into(y: np.ndarray, bits: int, unsigned: bool) -> np.ndarray:
    """Eq. 2's round-to-nearest (ties to even) and clip, in place, then to the integer type."""
    np.rint(y, out=y)
    np.clip(y, qmin(bits, unsigned), qmax(bits, unsigned), out=y)
    return y.astype(int_dtype(bits + (1 if unsigned else 0)))


def _quantize_rows(x: np.ndarray, scale: np.ndarray, bits: int, unsigned: bool) -> np.ndarray:
    """Eq. 2 with one scale per row (all axes but the last)."""
    return _round_clip_into(x / _safe_scale(scale)[..., None], bits, unsigned)


def _quantize_vectors(xv: np.ndarray, s: np.ndarray, length: int, bits: int, unsigned: bool) -> np.ndarray:
    """Eq. 7c on the vector view (..., nv, V) with one scale per vector; returns (..., length)."""
    q = _round_clip_into(xv / _safe_scale(s)[..., None], bits, unsigned)
    return np.ascontiguousarray(from_vectors(q, length))


@dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """Integer values with their scales: ``x ~= values * expand(scales) * gamma``.

    ``values``  integers (int32), same shape as the input.
    ``scales``  one per vector along the last axis, shape ``x.shape[:-1] + (ceil(L/V),)``:
                int32 for two-level (Eq. 7g), float for single-level fp per-vector scales
                (Eq. 7b), ``None`` for per-tensor/per-channel quantization.
    ``gamma``   the fp coarse scale, shape ``x.shape[:-1]`` (one per row): Eq. 7f for two-level,
                Eq. 1 for per-tensor/per-channel, 1.0 for single-level per-vector.
    """

    values: np.ndarray
    scales: np.ndarray | None
    gamma: np.ndarray
    bits: int
    unsigned: bool
    vector_size: int
    scheme: str  # "tensor" | "channel" | "vector" | "two_level" | "block"
    scale_bits: int = 0  # M for two-level, 16/32 for fp per-vector, a block scale's bits per vector for "block"
    # derived arrays the vector MAC reuses (e.g. a resident weight tile's scaled integers); not data
    cache: dict[Hashable, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    @property
    def num_vectors(self) -> int:
        return num_vectors(self.values.shape[-1], self.vector_size)

    def element_scales(self) -> npt.NDArray[np.float64]:
        """The full scale of every element: expand(scales) * gamma (float64)."""
        g: npt.NDArray[np.float64] = np.broadcast_to(self.gamma, self.values.shape[:-1])[..., None]
        if self.scales is None:
            return np.broadcast_to(g, self.values.shape).astype(np.float64)
        s = expand_vector_scales(self.scales.astype(np.float64), self.values.shape[-1], self.vector_size)
        return s * g

    def dequantize(self) -> np.ndarray:
        """Simulated-quantized values: Eq. 3, Eq. 7d (single-level) or Eq. 7j (two-level)."""
        return self.values.astype(np.float64) * self.element_scales()

    def take_rows(self, r0: int, r1: int) -> "QuantizedTensor":
        """Rows [r0, r1) of a 2-D quantized operand (views, no copy): a tile's slice."""
        sc = None if self.scales is None else self.scales[r0:r1]
        cache = {k: v[r0:r1] for k, v in self.cache.items()}   # row slices of derived arrays stay valid
        return QuantizedTensor(self.values[r0:r1], sc, self.gamma[r0:r1], self.bits, self.unsigned,
                               self.vector_size, self.scheme, self.scale_bits, cache)

    @property
    def storage_bits(self) -> int:
        """Bits to store values plus per-vector scales (the buffers' view, Sec. 4.4)."""
        n = self.values.size * self.bits
        if self.scales is not None:
            n += self.scales.size * self.scale_bits
        return n


def _rows_gamma(x: np.ndarray, gamma: npt.ArrayLike) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(gamma, np.float64), x.shape[:-1]))


def quantize_with_scale(x: npt.ArrayLike, scale: npt.ArrayLike, bits: int, unsigned: bool = False,
                        scheme: str = "tensor", vector_size: int = 16) -> QuantizedTensor:
    """Eq. 2 with a given scale (scalar, or one per row); used with calibrated (static) scales."""
    x = check_finite(x)
    bits = check_bits(bits)
    gamma = _rows_gamma(x, scale)
    check_static_scale(x, gamma, "a static scale")
    values = _quantize_rows(x, gamma, bits, unsigned)
    return QuantizedTensor(values, None, gamma, bits, unsigned, vector_size, scheme)


def quantize_per_tensor(x: npt.ArrayLike, bits: int, unsigned: bool = False, *, method: str = "max",
                        amax: float | None = None, vector_size: int = 16, **calib: Any) -> QuantizedTensor:
    """Per-tensor (per-layer) scaling, Eq. 1-2: one alpha for the whole tensor."""
    x = check_finite(x)
    bits = check_bits(bits)
    if amax is None:
        amax = float(calibrate_amax(x, method, bits=bits, unsigned=unsigned, **calib))
    return quantize_with_scale(x, float(amax) / qmax(bits, unsigned), bits, unsigned, "tensor", vector_size)


def quantize_per_channel(x: npt.ArrayLike, bits: int, unsigned: bool = False, *, method: str = "max",
                         amax: npt.ArrayLike | None = None, vector_size: int = 16, **calib: Any) -> QuantizedTensor:
    """Per-channel scaling, Eq. 1-2 with one alpha per index of the first axis (output channel)."""
    x = check_finite(x)
    bits = check_bits(bits)
    if x.ndim < 2:
        raise ValueError(f"per-channel quantization needs at least 2 axes (channels first), got shape {x.shape}")
    if amax is None:
        amax = calibrate_amax(x.reshape(x.shape[0], -1), method, bits=bits, unsigned=unsigned,
                              channel_axis=0, **calib)
    amax = np.asarray(amax, np.float64).reshape((x.shape[0],) + (1,) * (x.ndim - 2))
    scale = np.broadcast_to(amax / qmax(bits, unsigned), x.shape[:-1])
    return quantize_with_scale(x, scale, bits, unsigned, "channel", vector_size)


def check_clip(clip: object) -> str:
    """A per-vector clip method from :data:`~vsquant.calibration.CLIP_METHODS`, else a ValueError listing them."""
    if not isinstance(clip, str) or clip not in CLIP_METHODS:
        raise ValueError(f"clip {clip!r} is not a per-vector clip method; allowed: {', '.join(CLIP_METHODS)}")
    return clip


def vector_clip(x: np.ndarray, bits: int, vector_size: int, unsigned: bool, clip: str = "max") -> np.ndarray:
    """The clip of each vector that sets its scale (Eq. 7a): its max (:func:`vector_amax`), or with
    ``clip="octav"`` its OCTAV fixed point (:func:`vsquant.calibration.octav_clip` per vector)."""
    if check_clip(clip) == "max" or x.size == 0:
        return vector_amax(x, vector_size, unsigned)
    return np.asarray(octav_clip(x, bits, unsigned, per="vector", vector_size=vector_size))


def vector_amax(x: np.ndarray, vector_size: int, unsigned: bool) -> np.ndarray:
    """Eq. 7a: the absolute maximum of each vector (the PPU's vector max unit); last vector may be short."""
    L = x.shape[-1]
    nv = num_vectors(L, vector_size)
    if x.size == 0:
        return np.zeros(x.shape[:-1] + (nv,))
    mag = np.maximum(x, 0.0) if unsigned else np.abs(x)
    m = np.maximum.reduceat(mag.reshape(-1, L), np.arange(0, L, vector_size), axis=1)
    return m.reshape(x.shape[:-1] + (nv,))


_FLOAT_DTYPES: dict[int, type[np.floating]] = {16: np.float16, 32: np.float32, 64: np.float64}


def _fp_scales(s64: np.ndarray, fbits: int, what: str) -> np.ndarray:
    """Per-vector scales stored in fp16/fp32/fp64 (Eq. 7b), with their range checked: a scale that overflows
    the format raises :class:`ScaleRangeError`; non-zero vectors whose scale underflows to 0 are flushed to
    zero (what the hardware does) with a :class:`ScaleUnderflowWarning` giving the count, and an error if that
    is every non-zero vector (the whole tensor would quantize to zero)."""
    dtype = _FLOAT_DTYPES[fbits]
    with np.errstate(over="ignore", under="ignore"):
        s = s64.astype(dtype)
    over = np.isinf(s)
    if over.any():
        raise ScaleRangeError(
            f"{what}: {int(over.sum())} of {s.size} per-vector scales overflow fp{fbits} (largest amax/qmax "
            f"{float(s64.max()):.3g} > {float(np.finfo(dtype).max):.5g}); use wider scales (fp32) or rescale the "
            "tensor")
    under = (s64 > 0) & (s == 0)
    if under.any():
        n, nz = int(under.sum()), int((s64 > 0).sum())
        msg = (f"{what}: {n} of {nz} non-zero vectors have a per-vector scale below the smallest fp{fbits} "
               f"({float(np.finfo(dtype).smallest_subnormal):.3g}); they quantize to zero")
        if n == nz:
            raise ScaleRangeError(msg + ": every non-zero vector of the tensor; use wider scales (fp32)")
        warnings.warn(msg, ScaleUnderflowWarning, stacklevel=3)
    return s


def quantize_per_vector(x: npt.ArrayLike, bits: int, vector_size: int = 16, unsigned: bool = False, *,
                        scale_format: str | int = "fp32", what: str = "tensor", clip: str = "max") -> QuantizedTensor:
    """Single-level per-vector scaling with fp scales, Eq. 7a-7d.

    The scale ``s = xmax / qmax`` (Eq. 7b; ``clip="octav"``: the vector's OCTAV clip instead of its max) is
    stored in ``scale_format`` (fp16, fp32 or fp64) and the values are taken with the stored scale (Eq. 7c),
    clipped to the N-bit range so a scale rounded down in fp16 cannot overflow it.
    """
    x = check_finite(x)
    bits = check_bits(bits)
    vector_size = check_vector_size(vector_size)
    name = str(scale_format).lower().removeprefix("fp")
    fbits = int(name) if name.isdigit() else None
    if fbits not in _FLOAT_DTYPES:
        raise ValueError(f"scale_format {scale_format!r} must be one of fp16, fp32, fp64")
    xv = to_vectors(x, vector_size)
    s64 = vector_clip(x, bits, vector_size, unsigned, clip) / qmax(bits, unsigned)
    s = _fp_scales(s64, fbits, what)
    values = _quantize_vectors(xv, s.astype(np.float64), x.shape[-1], bits, unsigned)
    gamma = np.ones(x.shape[:-1])
    return QuantizedTensor(values, s, gamma, bits, unsigned, vector_size, "vector", fbits)


def quantize_two_level(x: npt.ArrayLike, bits: int, scale_bits: int, vector_size: int = 16, unsigned: bool = False, *,
                       per: str = "row", gamma: npt.ArrayLike | None = None, requantize: bool = False,
                       nonzero_scales: bool = False, clip: str = "max") -> QuantizedTensor:
    """Two-level per-vector quantization, Eq. 7a-7j.

    ``per="row"``: one gamma per index of the first axis (weights: per output channel, the
    paper's k; for a 2-D array, per row);
    ``per="tensor"``: one gamma for the tensor (activations: per layer).
    ``gamma``: a static coarse scale (scalar or per row) instead of Eq. 7e-7f.
    ``requantize``, ``nonzero_scales``: the variants described in the module docstring.
    ``clip="octav"``: the fp per-vector scale of Eq. 7b from each vector's OCTAV clip instead of its max;
    gamma (Eq. 7f) and the integer scales (Eq. 7g) follow from those scales as from the max-scaled ones.
    """
    x = check_finite(x)
    bits = check_bits(bits)
    scale_bits = check_scale_bits(scale_bits)
    vector_size = check_vector_size(vector_size)
    if per not in ("row", "tensor"):
        raise ValueError(f"per={per!r}: the coarse scale is per 'row' or per 'tensor'")
    q = qmax(bits, unsigned)
    smax_int = (1 << scale_bits) - 1
    xv = to_vectors(x, vector_size)
    s = vector_clip(x, bits, vector_size, unsigned, clip) / q                        # Eq. 7a-7b
    if gamma is None:
        if per == "row" and x.ndim > 1:  # per index of the first axis (a weight's output channel k)
            smax = s.reshape(s.shape[0], -1).max(axis=1).reshape((-1,) + (1,) * (s.ndim - 2))
        else:
            smax = s.max() if s.size else 0.0
        g = np.broadcast_to(smax / smax_int, x.shape[:-1])                   # Eq. 7e-7f
    else:
        g = _rows_gamma(x, gamma)
        check_static_scale(x, g, "a static gamma")
    sq = s / _safe_scale(g)[..., None]
    np.rint(sq, out=sq)
    np.clip(sq, 0, smax_int, out=sq)                                         # Eq. 7g
    if nonzero_scales:
        sq[(s > 0) & (sq == 0)] = 1.0
    if requantize:
        values = _quantize_vectors(xv, sq * g[..., None], x.shape[-1], bits, unsigned)   # Eq. 7h scale
    else:
        values = _quantize_vectors(xv, s, x.shape[-1], bits, unsigned)                  # Eq. 7c
    return QuantizedTensor(values, sq.astype(np.int32), np.ascontiguousarray(g, np.float64),
                           bits, unsigned, vector_size, "two_level", scale_bits)


def quantize_block_operand(x: npt.ArrayLike, fmt: str | NumberFormat, vector_size: int = 16) -> QuantizedTensor:
    """A block format (:func:`vsquant.formats.quantize_block`'s rules, blocks along the last axis) as the
    datapath stores it: ``values`` the element codes (each element in units of its format's ulp, an integer:
    E2M1's 0.5 steps as 0..12), ``scales`` the block scale of each V-element vector (a block of k elements spans
    k / V vectors; a short last block its own), ``gamma`` the ulp times the per-tensor scale (NVFP4; 1 for MX).
    So ``values * scales * gamma`` is :meth:`BlockQuantized.dequantize` exactly (every factor a power of two
    but the block and tensor scales)."""
    f = block_format(fmt)
    x = check_finite(x)
    vector_size = check_vector_size(vector_size)
    f.scale.check_vector_size(vector_size, f.name)
    q = quantize_block(x, f)
    el = f.element
    codes = q.values / el.ulp                                   # exact: the ulp is a power of two
    values = codes.astype(np.int32 if el.max_code < 2 ** 31 else np.int64)
    nv = num_vectors(x.shape[-1], vector_size)
    scales = np.ascontiguousarray(np.repeat(q.block_scales, f.block_size // vector_size, axis=-1)[..., :nv])
    gamma = np.full(x.shape[:-1], el.ulp * q.tensor_scale)
    return QuantizedTensor(values, scales, gamma, el.bits, False, vector_size, "block",
                           f.scale.bits_per_vector(vector_size))


def sqnr_db(x: npt.ArrayLike, xq: npt.ArrayLike) -> float:
    """Signal-to-quantization-noise ratio 10*log10(sum x^2 / sum (x - xq)^2) in dB."""
    x, xq = np.asarray(x, np.float64), np.asarray(xq, np.float64)
    if x.shape != xq.shape:
        raise ValueError(f"sqnr_db: the signal {x.shape} and its quantized version {xq.shape} differ in shape")
    for a, what in ((x, "the signal"), (xq, "the quantized signal")):
        if not np.isfinite(a).all():
            raise ValueError(f"sqnr_db: {what} has {int((~np.isfinite(a)).sum())} non-finite values (NaN or Inf)")
    top = max(float(np.abs(x).max(initial=0.0)), float(np.abs(xq).max(initial=0.0)))
    if top == 0:
        return float("inf")
    x, xq = x / top, xq / top          # scaled, so a huge signal's squares do not overflow
    err = np.sum((x - xq) ** 2)
    sig = np.sum(x ** 2)
    if err == 0:
        return float("inf")
    return float(10.0 * np.log10(sig / err)) if sig > 0 else float("-inf")
