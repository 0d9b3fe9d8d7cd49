"""Calibration: choosing the clipping range alpha (amax) of Eq. 1, ``s = alpha / (2^(N-1)-1)``.

Implements the alpha selection that Sec. 3 of the VS-Quant paper (Dai et al., MLSys 2021,
arXiv:2102.04503) describes and Table 2 compares -- "max", "percentile", "entropy" (KL
divergence) and "mse" -- as pure NumPy functions, per tensor or per channel.

Sources:

- Dai et al. 2021, "VS-Quant: Per-vector Scaled Quantization for Accurate Low-Precision
  Neural Network Inference", Sec. 3 (Eq. 1-3) and Table 2.
- NVIDIA pytorch-quantization (TensorRT repo, ``tools/pytorch-quantization``),
  ``calib/histogram.py``: ``HistogramCalibrator`` and ``_compute_amax_entropy``, which the
  "entropy" method reproduces (see below).
- Wu, Judd, Zhang, Isaev, Micikevicius 2020, "Integer Quantization for Deep Learning
  Inference: Principles and Empirical Evaluation" (arXiv:2004.09602, cited by the paper):
  max, percentile and entropy calibration.
- S. Migacz, "8-bit Inference with TensorRT", GTC 2017 (the KL-divergence calibration).
- Banner, Nahshan, Soudry 2019, "Post training 4-bit quantization of convolutional networks
  for rapid-deployment" (ACIQ): the MSE-optimal clip of a Gaussian, ~2.5 sigma at 4 bits.
- Sakr, Dai, Venkatesan, Zimmer, Dally, Khailany 2022, "Optimal Clipping and Magnitude-aware
  Differentiation for Improved Quantization-aware Training" (OCTAV, ICML 2022): the "octav"
  method, a Newton-Raphson recursion to the MSE-optimal clip under a uniform-noise model.

Conventions (shared with ``vsquant.quantize``): symmetric scale-only quantization with
round-to-nearest-even (``np.rint``).  Signed N-bit values are clipped to
``[-(2^(N-1)-1), 2^(N-1)-1]`` with ``s = alpha / (2^(N-1)-1)``; unsigned ones (e.g. ReLU
outputs, the "U" of Table 2) to ``[0, 2^N-1]`` with ``s = alpha / (2^N-1)`` (the paper's text
prints ``[0, 2^(N-1)-1]``; the full N-bit unsigned range is pytorch-quantization's and
``vsquant.quantize``'s convention).  The magnitude
being calibrated is ``|x|`` for signed and ``max(x, 0)`` for unsigned quantization (negative
values are clipped to 0 by an unsigned quantizer whatever alpha is).  Every method returns
``0 <= alpha <= max magnitude``; an all-zero input (or channel) gives alpha 0, and callers
handle the zero scale.

"entropy" follows ``_compute_amax_entropy(calib_hist, calib_bin_edges, num_bits, unsigned,
stride=1, start_bin=128)`` of pytorch-quantization step by step, vectorized over the
candidate thresholds (closed form per quantization group, so 2048 bins take milliseconds):

1. histogram of the magnitudes with ``num_bins`` uniform bins over ``[0, max]``;
2. ``hist[0] = hist[1]`` (suppresses a spike of exact zeros, e.g. from a ReLU);
3. ``nbins = 1 << (bits - 1 + unsigned)`` quantization levels;
4. for every candidate ``i`` in ``start_bin .. num_bins`` (stride 1): reference ``P = hist[:i]``
   with all outlier counts ``sum(hist[i:])`` added to ``P[i-1]``; bin ``j < i`` belongs to group
   ``floor(j * nbins / i)`` (exactly ``np.digitize(range(i), np.linspace(0, i, nbins+1)) - 1``);
   ``Q[j]`` is the total of the *un-folded* ``hist`` over the group's non-empty bins spread
   evenly over those bins, and 0 where ``hist[j] == 0``;
5. ``KL(P/sum(P) || Q/sum(Q))`` (``scipy.stats.entropy``; ``inf`` if some ``P > 0`` where
   ``Q == 0``); the *last* minimizing ``i`` wins and alpha is the bin edge ``edges[i]``.

Deviations from pytorch-quantization, all in degenerate corners: ``start_bin`` is
``min(128, num_bins)`` (pytorch-quantization fails on fewer than 128 bins); a candidate
whose ``Q`` is all zero scores ``inf`` instead of ``nan`` (there ``np.argmin`` would pick the
nan, e.g. data with only the magnitudes 0.5 and 1 gives 0.5 instead of 1); KL values within a relative
``1e-12`` of the minimum count as ties (so round-off cannot move the last-argmin choice); the
histogram is taken of ``magnitude / max`` over ``[0, 1]`` and the edges rescaled, which avoids
overflow/underflow for extreme magnitudes; for unsigned data the magnitude is ``max(x, 0)``
rather than ``|x|``.

"mse" minimizes the exact (sample) mean squared error between ``x`` and
``fake_quantize_symmetric(x, alpha, bits, unsigned)`` over alpha: a grid of 128 fractions
``k/128`` of the max magnitude, then 33 points spanning the two neighbouring grid cells of
the best one; ties go to the larger alpha.  It is evaluated on the data itself (not on a
histogram), vectorized over channels.

Measured on 1e6 samples of N(0, 1) (max |x| = 4.73; seed 0): 8 bits -- max 4.73,
percentile(99.99) 3.89, entropy 4.66, mse 3.92; 4 bits -- entropy 3.60, mse 2.48 (the exact
optimum of this 15-level quantizer for a Gaussian is 2.474 sigma, 3.921 sigma at 8 bits).
Per call: entropy ~13 ms (2048 bins), mse ~0.4 s; per-channel entropy loops over channels.
"""
from __future__ import annotations

import numbers
from typing import cast

import numpy as np
import numpy.typing as npt

from .config import qmax

__all__ = ["CALIBRATION_METHODS", "CLIP_METHODS", "OCTAV_MAX_ITER", "OCTAV_RTOL", "calibrate_amax",
           "fake_quantize_symmetric", "octav_clip", "octav_vector_rows"]

CALIBRATION_METHODS = ("max", "percentile", "entropy", "mse", "octav")
#: how a per-vector scale's clip is chosen (Eq. 7a-7b): the vector's max, or its OCTAV fixed point
CLIP_METHODS = ("max", "octav")

_ENTROPY_START_BIN = 128  # pytorch-quantization's start_bin
_ENTROPY_TIE_RTOL = 1e-12
_MSE_GRID = 128  # coarse candidates: k/_MSE_GRID of the max magnitude, k = 1.._MSE_GRID
_MSE_REFINE = 33  # fine candidates across [best - 1/_MSE_GRID, best + 1/_MSE_GRID]
_CHUNK_ELEMS = 1 << 22  # bound on temporaries (elements) in vectorized loops


# --------------------------------------------------------------------------------------
# validation helpers


def _check_bits(bits: object) -> int:
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, numbers.Integral):
        raise ValueError(f"bits must be an int in [2, 16], got {bits!r}")
    bits = int(bits)
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be an int in [2, 16], got {bits}")
    return bits




def _as_finite_float(x: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"x must be a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.size == 0:
        raise ValueError("x is empty; cannot calibrate an empty array")
    finite = np.isfinite(arr)
    n_bad = arr.size - int(np.count_nonzero(finite))
    if n_bad:
        n_nan = int(np.count_nonzero(np.isnan(arr)))
        raise ValueError(
            f"x contains {n_bad} non-finite value(s) ({n_nan} NaN, {n_bad - n_nan} Inf) out "
            f"of {arr.size}; calibration needs finite inputs")
    return arr


def _rows(arr: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """(C, n) view: one row per channel, or a single row for the whole tensor."""
    if channel_axis is None:
        return arr.reshape(1, -1)
    if isinstance(channel_axis, (bool, np.bool_)) or not isinstance(channel_axis, numbers.Integral):
        raise TypeError(f"channel_axis must be None or an int, got {channel_axis!r}")
    ax = int(channel_axis)
    if not -arr.ndim <= ax < arr.ndim:
        raise ValueError(f"channel_axis {ax} is out of range for an array of shape {arr.shape}")
    moved = np.moveaxis(arr, ax, 0)
    return moved.reshape(moved.shape[0], -1)


# --------------------------------------------------------------------------------------
# fake quantization (Eq. 1-3)


def fake_quantize_symmetric(x: npt.ArrayLike, amax: npt.ArrayLike, bits: int, unsigned: bool = False) -> np.ndarray:
    """Simulated quantization ``s * clip(rint(x / s), lo, hi)`` with ``s = amax / qmax`` (Eq. 1-3).

    ``qmax = 2^(bits-1)-1`` and ``lo = -qmax`` for signed, ``qmax = 2^bits-1`` and ``lo = 0`` for
    unsigned.  ``amax`` (>= 0, finite) broadcasts against ``x`` (e.g. shape ``(C, 1)`` for one
    value per row); where ``amax == 0`` the output is 0.  Returns the input's float dtype
    (float64 for integer inputs).
    """
    bits = _check_bits(bits)
    xa = np.asarray(x)
    if xa.dtype.kind not in "biuf":
        raise TypeError(f"x must be a real numeric array, got dtype {xa.dtype}")
    out_dtype = xa.dtype if xa.dtype.kind == "f" else np.dtype(np.float64)
    a = np.asarray(amax, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("amax must be finite and >= 0")
    q = qmax(bits, bool(unsigned))
    lo = 0.0 if unsigned else -float(q)
    s = a / q
    safe = np.where(s > 0, s, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.clip(np.rint(xa.astype(np.float64, copy=False) / safe), lo, float(q)) * safe
    y = np.where(s > 0, y, 0.0)
    return np.asarray(y, dtype=out_dtype)


# --------------------------------------------------------------------------------------
# entropy (KL divergence) calibration


def _xlogx(v: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)


def _entropy_bin(hist: np.ndarray, nbins: int, start_bin: int) -> int:
    """Index i of the chosen bin edge (amax = edges[i]) for one histogram.

    Vectorized equivalent of pytorch-quantization's ``_compute_amax_entropy`` loop (module
    docstring).  With ``T = sum(P)``, ``C_i = sum(Q) = sum(hist[:i])`` and ``O_i`` the outlier
    count, ``KL_i = (sum P log P - sum P log Q) / T - log T + log C_i`` where
    ``sum_j P_j log Q_j = sum_g S_g log(S_g / n_g) + O_i log Q_{i-1}`` (``S_g``/``n_g``: count and
    number of non-empty bins of group g), so each candidate costs O(nbins).
    """
    h = hist.astype(np.float64)  # copy
    B = h.size
    if B >= 2:
        h[0] = h[1]
    start = min(start_bin, B)
    cand = np.arange(start, B + 1, dtype=np.int64)
    if cand.size == 1:
        return int(cand[0])

    total = h.sum()
    cs = np.concatenate(([0.0], np.cumsum(h)))  # cs[i] = sum(h[:i])
    cn = np.concatenate(([0], np.cumsum(h > 0)))  # non-empty bins among h[:i]
    chl = np.concatenate(([0.0], np.cumsum(_xlogx(h))))  # sum of h log h over h[:i]

    # A_i = sum_g S_g log(S_g / n_g) over the nbins groups of h[:i]
    A = np.empty(cand.size)
    small = cand <= nbins  # at most one bin per group: Q == h on h[:i]
    A[small] = chl[cand[small]]
    big = np.flatnonzero(~small)
    if big.size:
        g = np.arange(nbins + 1, dtype=np.int64)
        step = max(1, _CHUNK_ELEMS // (nbins + 1))
        for c0 in range(0, big.size, step):
            idx = big[c0:c0 + step]
            i = cand[idx][:, None]
            edges = (g * i + nbins - 1) // nbins  # first bin of group g: ceil(g*i/nbins)
            S = cs[edges[:, 1:]] - cs[edges[:, :-1]]
            n = cn[edges[:, 1:]] - cn[edges[:, :-1]]
            with np.errstate(divide="ignore", invalid="ignore"):
                terms = np.where(S > 0, S * np.log(np.where(S > 0, S, 1.0) / np.maximum(n, 1)), 0.0)
            A[idx] = terms.sum(axis=1)

    # last reference bin j = i-1 carries the outliers
    last = cand - 1
    h_last = h[last]
    outl = np.maximum(total - cs[cand], 0.0)
    p_last = h_last + outl
    g_last = (last * nbins) // cand
    lo = (g_last * cand + nbins - 1) // nbins
    hi = ((g_last + 1) * cand + nbins - 1) // nbins
    S_last = cs[hi] - cs[lo]
    n_last = cn[hi] - cn[lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        q_last = np.where(h_last > 0, S_last / np.maximum(n_last, 1), 0.0)
        log_q_last = np.where(q_last > 0, np.log(np.where(q_last > 0, q_last, 1.0)), -np.inf)
        outl_term = np.where(outl > 0, outl * log_q_last, 0.0)  # -inf when P > 0 but Q == 0
        plogp = chl[last] + _xlogx(p_last)
        plogq = A + outl_term
        csum_q = cs[cand]
        kl = (plogp - plogq) / total - np.log(total) + np.log(np.where(csum_q > 0, csum_q, 1.0))
    kl = np.where((csum_q > 0) & np.isfinite(kl), kl, np.inf)

    best = kl.min()
    if not np.isfinite(best):  # cannot happen (i == B has no outliers) but be safe
        return int(cand[-1])
    tol = _ENTROPY_TIE_RTOL * max(abs(best), 1.0)
    k = np.flatnonzero(kl <= best + tol)[-1]
    return int(cand[k])


def _amax_entropy(mag: np.ndarray, m: float, bits: int, unsigned: bool, num_bins: int) -> float:
    if m == 0.0:
        return 0.0
    hist, _ = np.histogram(mag / m, bins=num_bins, range=(0.0, 1.0))
    nbins = 1 << (bits - 1 + int(unsigned))
    i = _entropy_bin(hist, nbins, _ENTROPY_START_BIN)
    return float(min((i / num_bins) * m, m))


# --------------------------------------------------------------------------------------
# MSE calibration


def _mse_errors(y: np.ndarray, f: np.ndarray, qmax: int) -> np.ndarray:
    """Sum of squared fake-quant errors of rows ``y`` (C, n) (magnitudes in [0, 1]) at clip
    fractions ``f`` (C,).  Magnitudes need no lower clip; the error equals that of the signed
    or unsigned value (rint and the clip are symmetric)."""
    s = (f / qmax)[:, None]
    buf = np.empty_like(y)
    np.divide(y, s, out=buf)
    np.rint(buf, out=buf)
    np.minimum(buf, qmax, out=buf)
    np.multiply(buf, s, out=buf)
    np.subtract(y, buf, out=buf)
    return cast(np.ndarray, np.einsum("ij,ij->i", buf, buf))


def _amax_mse(mag: np.ndarray, m: np.ndarray, bits: int, unsigned: bool) -> np.ndarray:
    """Per-row MSE-optimal alpha; ``mag`` (C, n) magnitudes, ``m`` (C,) their maxima."""
    out = np.zeros(m.shape, dtype=np.float64)
    rows = np.flatnonzero(m > 0)
    if rows.size == 0:
        return out
    q_top = qmax(bits, unsigned)
    K, R = _MSE_GRID, _MSE_REFINE
    n = mag.shape[1]
    step = max(1, _CHUNK_ELEMS // max(n, 1))
    for r0 in range(0, rows.size, step):
        sel = rows[r0:r0 + step]
        y = mag[sel] / m[sel][:, None]
        C = sel.size
        # coarse grid k/K, k = 1..K (ties -> larger alpha, hence <=)
        best_f = np.ones(C)
        best_e = np.full(C, np.inf)
        for k in range(K, 0, -1):
            f = np.full(C, k / K)
            e = _mse_errors(y, f, q_top)
            better = e < best_e
            best_f[better], best_e[better] = f[better], e[better]
        # refinement over the neighbouring cells of the best grid point
        lo = np.maximum(best_f - 1.0 / K, 0.5 / K)
        hi = np.minimum(best_f + 1.0 / K, 1.0)
        for t in np.linspace(1.0, 0.0, R):
            f = lo + t * (hi - lo)
            e = _mse_errors(y, f, q_top)
            better = (e < best_e) | ((e == best_e) & (f > best_f))
            best_f[better], best_e[better] = f[better], e[better]
        out[sel] = np.minimum(best_f * m[sel], m[sel])
    return out


# --------------------------------------------------------------------------------------
# OCTAV (Sakr, Dai, Venkatesan et al., ICML 2022)

#: stopping rule of the OCTAV recursion: |s_{n+1} - s_n| <= OCTAV_RTOL * s_n, at most OCTAV_MAX_ITER steps
OCTAV_RTOL = 1e-9
OCTAV_MAX_ITER = 200


def _octav_rows(mag: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """The OCTAV fixed point of each row of magnitudes ``mag`` (R, n) for a quantizer of ``q`` levels a side;
    returns (clips, iterations). Rows converge independently; a row that is all zero gets 0."""
    noise = 1.0 / (12.0 * q * q)      # the quantization noise of the clipped range: step s/q, (s/q)^2 / 12
    m = mag.max(axis=1)
    s = mag.mean(axis=1)              # start at E|x| (> 0 for a non-zero row): the recursion moves it outward
    its = np.zeros(s.shape, dtype=np.int64)
    active = s > 0
    for _ in range(OCTAV_MAX_ITER):
        if not active.any():
            break
        a = mag[active]
        sa = s[active]
        over = a >= sa[:, None]        # a magnitude at the clip itself is a level: no noise, no clipping error
        p_over = over.mean(axis=1)
        num = np.where(over, a, 0.0).mean(axis=1)                 # E[|x| 1{|x| >= s}]
        new = num / (noise * (1.0 - p_over) + p_over)             # / (noise E[1{|x|<s}] + E[1{|x|>=s}])
        done = np.abs(new - sa) <= OCTAV_RTOL * sa
        idx = np.flatnonzero(active)
        s[idx] = new
        its[idx] += 1
        active[idx[done]] = False
    return np.minimum(s, m), its


def octav_clip(x: npt.ArrayLike, bits: int, unsigned: bool = False, *, per: str = "tensor",
               vector_size: int = 16) -> np.ndarray | float:
    """OCTAV's MSE-optimal clipping scalar of a ``bits``-bit symmetric quantizer (Sakr et al., ICML 2022):
    the recursion s_{n+1} = E[|x| 1{|x|>s_n}] / (noise E[1{|x|<=s_n}] + E[1{|x|>s_n}]) with
    noise = 1 / (12 qmax^2) (the noise of this module's quantizer, qmax = 2^(N-1)-1, or 2^N-1 unsigned,
    whose magnitude is max(x, 0)), from s_0 = E|x| until |s_{n+1} - s_n| <= ``OCTAV_RTOL`` s_n (at most
    ``OCTAV_MAX_ITER`` steps; 5-15 on Gaussian, Laplace and Student-t data), capped at the largest magnitude.
    A magnitude equal to s_n counts as clipped (it is a level: no error either way), so data of one magnitude
    c has the fixed point c.

    ``per``: ``"tensor"`` (a float), ``"channel"`` (one per index of the first axis, the weights' output
    channels) or ``"vector"`` (one per vector of ``vector_size`` along the last axis, shape
    ``x.shape[:-1] + (ceil(L / V),)``, the last vector short), so it can set per-vector scales before their
    two-level quantization (``,clip=octav``); per vector the means are ordered sums over the vector's elements
    (:func:`octav_vector_rows`), which the torch twin reproduces bit for bit. All-zero rows give 0; NaN/Inf
    raise ``ValueError``.
    """
    bits = _check_bits(bits)
    arr = _as_finite_float(x)
    q = qmax(bits, bool(unsigned))
    if per == "vector":
        return _octav_vectors(arr, q, vector_size, bool(unsigned))
    if per == "tensor":
        rows = arr.reshape(1, -1)
    elif per == "channel":
        if arr.ndim < 2:
            raise ValueError(f"octav_clip per='channel' needs at least 2 axes (channels first), got shape {arr.shape}")
        rows = arr.reshape(arr.shape[0], -1)
    else:
        raise ValueError(f"octav_clip per={per!r}; allowed: 'tensor', 'channel', 'vector'")
    clips, _ = _octav_rows(np.maximum(rows, 0.0) if unsigned else np.abs(rows), q)
    return float(clips[0]) if per == "tensor" else clips


def _ordered_sum(a: np.ndarray) -> np.ndarray:
    """Row sums of ``a`` (R, n) added in ascending element order, one IEEE addition at a time: the order
    :func:`vsquant.fakequant._octav_vector_clips` adds in too, so the per-vector clips agree bit for bit
    (``np.mean``'s pairwise summation is an order torch does not share)."""
    acc = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        acc += a[:, j]
    return acc


def octav_vector_rows(mag: np.ndarray, q: int) -> np.ndarray:
    """The OCTAV fixed point of each short row (a vector) of magnitudes ``mag`` (R, n), as :func:`_octav_rows`
    but with every mean an ordered sum divided by n (:func:`_ordered_sum`), so the torch twin can reproduce
    it exactly; all-zero rows give 0. The clip of every per-vector OCTAV scale (``,clip=octav``)."""
    n = mag.shape[1]
    noise = 1.0 / (12.0 * q * q)
    m = mag.max(axis=1)
    s = _ordered_sum(mag) / n                                         # s_0 = E|x|
    active = s > 0
    for _ in range(OCTAV_MAX_ITER):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        a = mag[idx]
        sa = s[idx]
        over = a >= sa[:, None]
        p_over = np.count_nonzero(over, axis=1) / n                    # E[1{|x| >= s}]
        num = _ordered_sum(np.where(over, a, 0.0)) / n                 # E[|x| 1{|x| >= s}]
        new = num / (noise * (1.0 - p_over) + p_over)
        done = np.abs(new - sa) <= OCTAV_RTOL * sa
        s[idx] = new
        active[idx[done]] = False
    return cast(np.ndarray, np.minimum(s, m))


def _octav_vectors(arr: np.ndarray, q: int, vector_size: object, unsigned: bool) -> np.ndarray:
    """OCTAV per vector of ``vector_size`` along the last axis (:func:`octav_vector_rows`); a short last vector
    on its own elements."""
    if isinstance(vector_size, (bool, np.bool_)) or not isinstance(vector_size, numbers.Integral) \
            or int(vector_size) < 1:
        raise ValueError(f"vector_size must be a positive int, got {vector_size!r}")
    V = int(vector_size)
    mag = np.maximum(arr, 0.0) if unsigned else np.abs(arr)
    lead, L = mag.shape[:-1], mag.shape[-1]
    full, rest = L // V, L % V
    parts = []
    if full:
        parts.append(octav_vector_rows(mag[..., :full * V].reshape(-1, V), q).reshape(lead + (full,)))
    if rest:
        parts.append(octav_vector_rows(mag[..., full * V:].reshape(-1, rest), q).reshape(lead + (1,)))
    return np.concatenate(parts, axis=-1)


# --------------------------------------------------------------------------------------
# public entry point


def calibrate_amax(x: npt.ArrayLike, method: str = "max", *, bits: int = 8, unsigned: bool = False,
                   channel_axis: int | None = None, percentile: float = 99.99,
                   num_bins: int = 2048) -> np.ndarray | float:
    """Clipping range alpha (amax) of Eq. 1 for ``x``.

    Parameters
    ----------
    x : array_like of real numbers, finite (NaN/Inf raise ``ValueError``).
    method : one of ``CALIBRATION_METHODS``:
        ``"max"``        max magnitude;
        ``"percentile"`` ``np.percentile(magnitude, percentile)`` (linear interpolation);
        ``"entropy"``    KL-divergence calibration of TensorRT / pytorch-quantization;
        ``"mse"``        alpha minimizing ``mean((x - fake_quantize_symmetric(x, alpha))**2)``;
        ``"octav"``      OCTAV's fixed point (:func:`octav_clip`).
    bits : int in [2, 16], the integer bitwidth N.
    unsigned : quantize to ``[0, 2^N-1]``; the magnitude is then ``max(x, 0)`` instead of ``|x|``.
    channel_axis : ``None`` for one alpha for the whole tensor (returned as a Python float), or
        an axis: one alpha per index along it, computed over all other axes, returned as a
        float64 array of shape ``(x.shape[channel_axis],)`` (``channel_axis=0`` on an
        ``(out, in)`` weight matrix gives one alpha per output row).
    percentile : in [0, 100], for ``"percentile"``.
    num_bins : histogram bins for ``"entropy"`` (>= 1).

    All-zero input (or channel) gives alpha 0.  Always ``0 <= alpha <= max magnitude``.
    """
    if not isinstance(method, str) or method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; allowed methods: "
                         + ", ".join(repr(m) for m in CALIBRATION_METHODS))
    bits = _check_bits(bits)
    unsigned = bool(unsigned)
    if isinstance(num_bins, (bool, np.bool_)) or not isinstance(num_bins, numbers.Integral) \
            or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    num_bins = int(num_bins)
    try:
        pct = float(percentile)
    except (TypeError, ValueError):
        raise ValueError(f"percentile must be a number in [0, 100], got {percentile!r}") from None
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile!r}")

    arr = _as_finite_float(x)
    rows = _rows(arr, channel_axis)
    mag = np.maximum(rows, 0.0) if unsigned else np.abs(rows)
    m = mag.max(axis=1)

    if method == "max":
        amax = m
    elif method == "percentile":
        amax = np.minimum(np.percentile(mag, pct, axis=1), m)
    elif method == "entropy":
        amax = np.array([_amax_entropy(mag[c], float(m[c]), bits, unsigned, num_bins)
                         for c in range(mag.shape[0])])
    elif method == "mse":
        amax = _amax_mse(mag, m, bits, unsigned)
    elif method == "octav":
        amax, _ = _octav_rows(mag, qmax(bits, unsigned))
    else:   # pragma: no cover - CALIBRATION_METHODS is checked above
        raise ValueError(f"calibration method {method!r} has no implementation")

    amax = np.asarray(amax, dtype=np.float64)
    if channel_axis is None:
        return float(amax[0])
    return amax
