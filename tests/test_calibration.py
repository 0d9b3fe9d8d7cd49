"""Tests of vsquant.calibration: the alpha (amax) calibrators of Eq. 1 (Sec. 3)."""
from __future__ import annotations

import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import optimize, stats
from scipy.stats import entropy as scipy_entropy

from vsquant.calibration import (
    CALIBRATION_METHODS,
    calibrate_amax,
    fake_quantize_symmetric,
)

N_LARGE = 1_000_000


@pytest.fixture(scope="module")
def gauss():
    return np.random.default_rng(1234).standard_normal(N_LARGE)


@pytest.fixture(scope="module")
def laplace():
    return np.random.default_rng(99).laplace(size=N_LARGE)


def mse_of(x, amax, bits, unsigned=False):
    return float(np.mean((x - fake_quantize_symmetric(x, amax, bits, unsigned)) ** 2))


def gaussian_quant_mse(alpha, bits):
    """Exact E[(X - Q(X))^2] for X ~ N(0, 1) and the signed quantizer of Eq. 1-3."""
    q = 2 ** (bits - 1) - 1
    s = alpha / q
    k = np.arange(q)
    lo = np.maximum((k - 0.5) * s, 0.0)
    hi = (k + 0.5) * s
    c = k * s

    def seg(lo, hi, c, hi_inf=False):  # int_lo^hi (x - c)^2 phi(x) dx
        m0 = stats.norm.cdf(hi) - stats.norm.cdf(lo)
        m1 = stats.norm.pdf(lo) - stats.norm.pdf(hi)
        m2 = m0 + lo * stats.norm.pdf(lo) - (0.0 if hi_inf else hi * stats.norm.pdf(hi))
        return m2 - 2 * c * m1 + c * c * m0

    inner = seg(lo, hi, c).sum()
    tail = seg((q - 0.5) * s, np.inf, q * s, hi_inf=True)
    return 2.0 * (inner + tail)


def gaussian_optimal_clip(bits):
    res = optimize.minimize_scalar(lambda a: gaussian_quant_mse(a, bits), bounds=(0.5, 8.0),
                                   method="bounded", options={"xatol": 1e-7})
    return res.x


def reference_entropy_bin(calib_hist, num_bits, unsigned, start_bin=128):
    """Port of pytorch-quantization's _compute_amax_entropy loop (returns the edge index).

    Same steps as the original (hist[0] = hist[1]; digitize into nbins groups; Q spread over the
    non-empty bins of each group; outliers folded into P's last bin; scipy.stats.entropy; last
    argmin), with the per-bin Python loops replaced by equivalent numpy indexing.
    """
    bins = np.asarray(calib_hist, dtype=np.float64).copy()
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1 + int(unsigned))
    start_bin = min(start_bin, len(bins))
    divergences = []
    for i in range(start_bin, len(bins) + 1):
        space = np.linspace(0, i, num=nbins + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        keep = digitized != -1
        counts = np.zeros(nbins)
        np.add.at(counts, digitized[keep], bins[:i][keep])
        members = np.bincount(digitized[keep], minlength=nbins)
        counts = np.where(members > 0, counts / np.maximum(members, 1), counts)
        new_density = np.zeros(i)
        new_density[keep] = counts[digitized[keep]]
        reference = bins[:i].copy()
        reference[-1] += bins[i:].sum()
        divergences.append(scipy_entropy(reference, new_density))
    divergences = np.array(divergences)
    return len(divergences) - 1 - int(np.argmin(divergences[::-1])) + start_bin


# ----------------------------------------------------------------------------------------
# basics


def test_methods_tuple():
    assert CALIBRATION_METHODS == ("max", "percentile", "entropy", "mse", "octav")


def test_max_known_data():
    x = np.array([[1.0, -5.0, 2.0], [0.5, 3.0, -0.25]])
    a = calibrate_amax(x, "max")
    assert isinstance(a, float) and a == 5.0
    np.testing.assert_array_equal(calibrate_amax(x, "max", channel_axis=0), [5.0, 3.0])
    np.testing.assert_array_equal(calibrate_amax(x, "max", channel_axis=1), [1.0, 5.0, 2.0])
    np.testing.assert_array_equal(calibrate_amax(x, "max", channel_axis=-1), [1.0, 5.0, 2.0])
    # unsigned: negative values are clipped at 0
    assert calibrate_amax(x, "max", unsigned=True) == 3.0
    np.testing.assert_array_equal(calibrate_amax(x, "max", unsigned=True, channel_axis=0),
                                  [2.0, 3.0])
    assert calibrate_amax([-1, -2], "max", unsigned=True) == 0.0
    assert calibrate_amax(np.array([3, -7], dtype=np.int8), "max") == 7.0


@pytest.mark.parametrize("p", [50.0, 99.0, 99.9, 99.99, 100.0])
def test_percentile_matches_numpy(p):
    x = np.random.default_rng(3).standard_normal((8, 5, 300))
    assert calibrate_amax(x, "percentile", percentile=p) == pytest.approx(
        np.percentile(np.abs(x), p), rel=1e-12)
    per_ch = calibrate_amax(x, "percentile", percentile=p, channel_axis=1)
    expect = [np.percentile(np.abs(x[:, c, :]), p) for c in range(5)]
    np.testing.assert_allclose(per_ch, expect, rtol=1e-12)
    relu = np.maximum(x, 0)
    assert calibrate_amax(x, "percentile", percentile=p, unsigned=True) == pytest.approx(
        np.percentile(relu, p), rel=1e-12)


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_per_channel_shapes_and_consistency(method):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((6, 500)) * (2.0 ** np.arange(6))[:, None]  # rows: different spread
    a0 = calibrate_amax(w, method, bits=4, channel_axis=0)
    a1 = calibrate_amax(w, method, bits=4, channel_axis=1)
    assert isinstance(a0, np.ndarray) and a0.shape == (6,) and a0.dtype == np.float64
    assert a1.shape == (500,)
    np.testing.assert_array_equal(a1, calibrate_amax(w, method, bits=4, channel_axis=-1))
    # one alpha per row == calibrating each row on its own
    for c in range(6):
        assert a0[c] == pytest.approx(calibrate_amax(w[c], method, bits=4), rel=1e-12)
    assert np.all(np.diff(a0) > 0)  # wider rows get larger alphas
    # 4-D conv weights (K, C, R, S), channel_axis=0 reduces over C, R, S
    k = rng.standard_normal((3, 4, 5, 5))
    ak = calibrate_amax(k, method, channel_axis=0)
    assert ak.shape == (3,)
    for c in range(3):
        assert ak[c] == pytest.approx(calibrate_amax(k[c], method), rel=1e-12)


def test_channel_axis_errors():
    with pytest.raises(ValueError, match="out of range"):
        calibrate_amax(np.ones((2, 3)), "max", channel_axis=2)
    with pytest.raises(TypeError):
        calibrate_amax(np.ones((2, 3)), "max", channel_axis=(0, 1))
    with pytest.raises(ValueError, match="empty"):
        calibrate_amax(np.ones((2, 0)), "max", channel_axis=0)


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
@pytest.mark.parametrize("unsigned", [False, True])
def test_all_zero_gives_zero(method, unsigned):
    assert calibrate_amax(np.zeros((4, 10)), method, unsigned=unsigned) == 0.0
    x = np.zeros((3, 10))
    x[1] = np.linspace(0.1, 1.0, 10)
    a = calibrate_amax(x, method, unsigned=unsigned, channel_axis=0)
    assert a[0] == 0.0 and a[2] == 0.0 and 0.0 < a[1] <= 1.0


# ----------------------------------------------------------------------------------------
# entropy


def test_entropy_gaussian_band(gauss):
    xmax = np.abs(gauss).max()
    a8 = calibrate_amax(gauss, "entropy", bits=8)
    a4 = calibrate_amax(gauss, "entropy", bits=4)
    assert 3.5 < a8 < xmax  # measured ~4.66 sigma (max |x| ~ 4.9)
    assert 2.5 < a4 < a8  # measured ~3.5; fewer bits -> clip harder
    assert a4 < 0.85 * xmax


def test_entropy_is_fast(gauss):
    calibrate_amax(gauss[:1000], "entropy")  # warm-up
    t0 = time.perf_counter()
    calibrate_amax(gauss, "entropy", bits=8, num_bins=2048)
    assert time.perf_counter() - t0 < 1.0


def test_entropy_laplace_clips_harder_than_percentile_at_4_bits(laplace):
    xmax = np.abs(laplace).max()
    p9999 = calibrate_amax(laplace, "percentile", percentile=99.99)
    e4 = calibrate_amax(laplace, "entropy", bits=4)
    e8 = calibrate_amax(laplace, "entropy", bits=8)
    assert e4 < 0.8 * p9999  # measured: entropy(4b) ~6.1 vs p99.99 ~9.2
    assert e4 < e8 < xmax  # 8 bits clips too, but less (measured ~10.4 > p99.99)


@pytest.mark.parametrize("bits,unsigned", [(4, False), (8, False), (8, True), (3, True),
                                           (12, False), (16, True)])
@pytest.mark.parametrize("dist", ["gauss", "laplace", "relu", "discrete", "sparse"])
def test_entropy_matches_pytorch_quantization_loop(bits, unsigned, dist):
    rng = np.random.default_rng(zlib.crc32(f"{bits}-{unsigned}-{dist}".encode()))
    n, num_bins = 20_000, 384
    x = {
        "gauss": lambda: rng.standard_normal(n),
        "laplace": lambda: rng.laplace(size=n),
        "relu": lambda: np.maximum(rng.standard_normal(n), 0),
        "discrete": lambda: rng.integers(-20, 21, n).astype(float),
        "sparse": lambda: rng.standard_normal(300) ** 3,
    }[dist]()
    mag = np.maximum(x, 0) if unsigned else np.abs(x)
    m = mag.max()
    hist, _ = np.histogram(mag / m, bins=num_bins, range=(0.0, 1.0))
    i_ref = reference_entropy_bin(hist, bits, unsigned)
    got = calibrate_amax(x, "entropy", bits=bits, unsigned=unsigned, num_bins=num_bins)
    assert got == pytest.approx(i_ref / num_bins * m, rel=1e-12)


@pytest.mark.parametrize("n_low,n_high", [(1000, 1), (7, 3), (123457, 98765)])
def test_entropy_ties_go_to_the_last_threshold(n_low, n_high):
    # two magnitudes, 0.5 (bin 1024) and 1 (bin 2047): candidates i = 1025 and i = 2048 both
    # have KL == 0 (P and Q are one identical spike / identical), every other one has
    # KL = inf, except i = 1024 whose Q is all zero (nan in pytorch-quantization, where
    # np.argmin would pick it; inf here). Ties go to the last candidate: amax = max.
    x = np.concatenate([np.full(n_low, -0.5), np.full(n_high, 1.0)])
    hist = np.histogram(np.abs(x), bins=2048, range=(0.0, 1.0))[0].astype(float)
    hist[0] = hist[1]
    for i in (1025, 2048):
        p, q = hist[:i].copy(), hist[:i].copy()
        p[-1] += hist[i:].sum()
        assert scipy_entropy(p, q) == 0.0
    assert calibrate_amax(x, "entropy") == 1.0


def test_entropy_ties_robust_to_roundoff():
    # the two KL == 0 candidates come out as +-1e-16 in floating point; a tie tolerance keeps
    # the last one (without it about 1 in 5 of these count pairs picks 0.5)
    rng = np.random.default_rng(2024)
    for n_low, n_high in rng.integers(1, 10**5, size=(40, 2)):
        x = np.concatenate([np.full(n_low, 0.5), np.full(n_high, -1.0)])
        assert calibrate_amax(x, "entropy") == 1.0


def test_entropy_end_to_end_against_reference_histogram(gauss):
    # the reference bins |x| over [0, max] (np.histogram edges), as pytorch-quantization does
    mag = np.abs(gauss[:200_000])
    hist, edges = np.histogram(mag, bins=2048, range=(0, mag.max()))
    i_ref = reference_entropy_bin(hist, 8, False)
    assert calibrate_amax(gauss[:200_000], "entropy") == pytest.approx(edges[i_ref], rel=1e-9)


def test_entropy_few_bins_and_bad_num_bins():
    x = np.random.default_rng(0).standard_normal(1000)
    # fewer bins than start_bin=128: the only candidate is the full range
    assert calibrate_amax(x, "entropy", num_bins=64) == pytest.approx(np.abs(x).max())
    assert calibrate_amax(x, "entropy", num_bins=1) == pytest.approx(np.abs(x).max())
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="num_bins"):
            calibrate_amax(x, "entropy", num_bins=bad)


# ----------------------------------------------------------------------------------------
# mse


def test_mse_gaussian_4bit_near_2p5_sigma(gauss):
    a4 = calibrate_amax(gauss, "mse", bits=4)
    assert abs(a4 - 2.5) < 0.25  # ACIQ (Banner et al. 2019): ~2.5 sigma at 4 bits
    # exact optimum of this 15-level quantizer for N(0, 1) (numerical integration): ~2.474
    assert abs(a4 - gaussian_optimal_clip(4)) < 0.05


def test_mse_gaussian_8bit_larger(gauss):
    a4 = calibrate_amax(gauss, "mse", bits=4)
    a8 = calibrate_amax(gauss, "mse", bits=8)
    assert a8 > a4 + 1.0
    assert 3.6 < a8 < 4.4
    assert abs(a8 - gaussian_optimal_clip(8)) < 0.15  # exact ~3.92; the sample MSE is flat


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("unsigned", [False, True])
@pytest.mark.parametrize("dist", ["gauss", "laplace"])
def test_mse_is_near_optimal(bits, unsigned, dist):
    rng = np.random.default_rng(bits * 10 + unsigned)
    x = rng.standard_normal(50_000) if dist == "gauss" else rng.laplace(size=50_000)
    a = calibrate_amax(x, "mse", bits=bits, unsigned=unsigned)
    e = mse_of(x, a, bits, unsigned)
    mag_max = (np.maximum(x, 0) if unsigned else np.abs(x)).max()
    others = [mag_max, 0.5 * mag_max, 0.25 * mag_max]
    others += [calibrate_amax(x, m, bits=bits, unsigned=unsigned)
               for m in ("percentile", "entropy")]
    for b in others:
        assert e <= mse_of(x, b, bits, unsigned) * (1 + 1e-9)
    dense = np.linspace(mag_max / 2000, mag_max, 2000)
    best_dense = min(mse_of(x, b, bits, unsigned) for b in dense)
    assert e <= best_dense * (1 + 1e-3)
    assert 0 < a <= mag_max


def test_mse_per_channel_vectorized():
    rng = np.random.default_rng(11)
    w = rng.standard_normal((5, 2000)) * np.array([0.1, 1, 10, 100, 1000])[:, None]
    a = calibrate_amax(w, "mse", bits=4, channel_axis=0)
    # scale invariance: every row is N(0, sigma^2), so alpha / sigma is the 4-bit ratio
    ratios = a / np.array([0.1, 1, 10, 100, 1000])
    assert np.all((ratios > 2.0) & (ratios < 3.0))


# ----------------------------------------------------------------------------------------
# unsigned (ReLU outputs)


def test_unsigned_relu(gauss):
    relu = np.maximum(gauss, 0)
    xmax = relu.max()
    for method in CALIBRATION_METHODS:
        a_u = calibrate_amax(relu, method, bits=4, unsigned=True)
        assert 0 < a_u <= xmax
    # unsigned 4U has 15 positive levels vs 7 for signed 4-bit: MSE allows a wider range
    assert calibrate_amax(relu, "mse", bits=4, unsigned=True) > \
        calibrate_amax(relu, "mse", bits=4, unsigned=False) + 0.2
    # negative values are ignored by the unsigned calibration (they clip to 0 regardless)
    x = gauss[:100_000].copy()
    x[0] = -50.0
    for method in CALIBRATION_METHODS:
        assert calibrate_amax(x, method, unsigned=True) <= x.max()
    assert calibrate_amax(x, "max", unsigned=False) == 50.0
    # unsigned MSE optimum is optimal for the unsigned quantizer on the signed data
    a = calibrate_amax(x, "mse", bits=4, unsigned=True)
    e = mse_of(x, a, 4, True)
    for b in np.linspace(0.5, x.max(), 50):
        assert e <= mse_of(x, b, 4, True) * (1 + 1e-9)


# ----------------------------------------------------------------------------------------
# fake quantization helper


def test_fake_quantize_known_values():
    x = np.array([-1.0, -0.5, 0.26, 0.3, 2.0])
    np.testing.assert_array_equal(fake_quantize_symmetric(x, 1.0, 2), [-1, 0, 0, 0, 1])
    np.testing.assert_allclose(fake_quantize_symmetric(x, 1.0, 3),
                               np.array([-3, -2, 1, 1, 3]) / 3)  # rint(-1.5) = -2
    np.testing.assert_allclose(fake_quantize_symmetric(x, 1.0, 2, unsigned=True),
                               np.array([0, 0, 1, 1, 3]) / 3)
    np.testing.assert_array_equal(fake_quantize_symmetric(x, 0.0, 8), np.zeros(5))
    xs = np.array([[1.0, -2.0], [3.0, 4.0]])
    out = fake_quantize_symmetric(xs + 0.3, np.array([[0.0], [127.0]]), 8)  # row 1: s = 1
    np.testing.assert_allclose(out, [[0.0, 0.0], [3.0, 4.0]])
    assert fake_quantize_symmetric(xs.astype(np.float32), 1.0, 8).dtype == np.float32
    with pytest.raises(ValueError):
        fake_quantize_symmetric(x, -1.0, 8)
    with pytest.raises(ValueError):
        fake_quantize_symmetric(x, 1.0, 1)


def test_fake_quantize_grid_and_range():
    x = np.random.default_rng(5).standard_normal(10_000) * 3
    for bits, unsigned in [(4, False), (4, True), (8, False)]:
        qmax = 2 ** bits - 1 if unsigned else 2 ** (bits - 1) - 1
        y = fake_quantize_symmetric(x, 2.0, bits, unsigned)
        k = y / (2.0 / qmax)
        np.testing.assert_allclose(k, np.rint(k), atol=1e-9)
        assert k.max() == pytest.approx(qmax)
        assert k.min() == pytest.approx(0 if unsigned else -qmax)


# ----------------------------------------------------------------------------------------
# errors


def test_nan_inf_rejected_with_count():
    x = np.arange(10.0)
    x[[1, 4, 7]] = [np.nan, np.inf, -np.inf]
    for method in CALIBRATION_METHODS:
        with pytest.raises(ValueError, match="3 non-finite"):
            calibrate_amax(x, method)
    with pytest.raises(ValueError, match="1 non-finite"):
        calibrate_amax([1.0, np.inf], "max")
    with pytest.raises(ValueError, match="1 non-finite"):
        calibrate_amax([[1.0, np.nan]], "max", channel_axis=0)


def test_unknown_method():
    with pytest.raises(ValueError) as ei:
        calibrate_amax([1.0, 2.0], "kl")
    msg = str(ei.value)
    assert "'kl'" in msg and all(m in msg for m in CALIBRATION_METHODS)


@pytest.mark.parametrize("bits", [1, 0, 17, 32, 8.0, "8", None, True])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        calibrate_amax([1.0, 2.0], "max", bits=bits)


def test_bad_percentile_and_input():
    with pytest.raises(ValueError, match="percentile"):
        calibrate_amax([1.0, 2.0], "percentile", percentile=101)
    with pytest.raises(ValueError, match="empty"):
        calibrate_amax(np.array([]), "max")
    with pytest.raises(TypeError):
        calibrate_amax(np.array([1 + 2j]), "max")


# ----------------------------------------------------------------------------------------
# property: 0 <= amax <= max|x|

finite_floats = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300,
                          max_value=1e300, width=64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=40),
                    elements=finite_floats),
       bits=st.integers(2, 16), unsigned=st.booleans(), per_channel=st.booleans())
def test_amax_bounded_property(x, bits, unsigned, per_channel):
    axis = 0 if per_channel else None
    mag = np.maximum(x, 0) if unsigned else np.abs(x)
    if per_channel:
        upper = mag.reshape(x.shape[0], -1).max(axis=1)
        upper_abs = np.abs(x).reshape(x.shape[0], -1).max(axis=1)
    else:
        upper, upper_abs = mag.max(), np.abs(x).max()
    for method in CALIBRATION_METHODS:
        a = np.asarray(calibrate_amax(x, method, bits=bits, unsigned=unsigned,
                                      channel_axis=axis))
        assert np.all(np.isfinite(a))
        assert np.all(a >= 0)
        assert np.all(a <= upper) and np.all(a <= upper_abs)
        if method != "percentile":  # a quantile of mostly-zero data may be 0
            assert np.all((a > 0) | (upper < 1e-300))  # (tiny alphas may underflow to 0)


# -- OCTAV (Sakr et al., ICML 2022) -------------------------------------------------------------------

def _grid_best_mse(x, bits, points=500, refine=200):
    """The smallest MSE of the real quantizer over a grid of clips, refined around its best point."""
    from vsquant.calibration import fake_quantize_symmetric
    m = float(np.abs(x).max())
    mse = lambda a: float(np.mean((x - fake_quantize_symmetric(x, a, bits)) ** 2))  # noqa: E731
    grid = np.linspace(m / points, m, points)
    k = int(np.argmin([mse(a) for a in grid]))
    fine = np.linspace(grid[max(k - 1, 0)], grid[min(k + 1, points - 1)], refine)
    return min(mse(a) for a in fine)


@pytest.mark.parametrize("dist", ["gaussian", "laplace", "student-t3"])
@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_octav_clip_is_mse_optimal_within_one_percent(dist, bits):
    """The MSE at OCTAV's clip against a fine grid search of the real quantizer's MSE. Measured (100k samples):
    within 0.2% everywhere except the Gaussian at 2 bits (3 levels), where the recursion's uniform-noise model
    puts the clip at 1.31 sigma against the grid's 1.22 and the MSE 1.35% above the optimum."""
    from vsquant import octav_clip
    from vsquant.calibration import fake_quantize_symmetric
    rng = np.random.default_rng(bits)
    x = {"gaussian": rng.standard_normal, "laplace": rng.laplace,
         "student-t3": lambda n: rng.standard_t(3, n)}[dist](100_000)
    s = octav_clip(x, bits)
    mse = float(np.mean((x - fake_quantize_symmetric(x, s, bits)) ** 2))
    tol = 0.015 if (dist, bits) == ("gaussian", 2) else 0.01
    assert mse <= (1 + tol) * _grid_best_mse(x, bits)


def test_octav_fixed_points_by_hand_and_its_forms():
    from vsquant import calibrate_amax, octav_clip
    from vsquant.calibration import OCTAV_RTOL
    # one magnitude c: the clip is c (a level, no error)
    assert octav_clip(np.array([3.0, -3.0, 3.0]), 4) == pytest.approx(3.0)
    # half zeros, half c: s = E[|x| 1{|x|>=s}] / (noise P(|x|<s) + P(|x|>=s)) = (c/2) / (noise/2 + 1/2)
    x = np.array([0.0, 2.0] * 50)
    q = 7
    assert octav_clip(x, 4) == pytest.approx(2.0 / (1 + 1 / (12 * q * q)), rel=10 * OCTAV_RTOL)
    # unsigned: the magnitude is max(x, 0) (three quarters zeros here), qmax = 2^N - 1
    assert octav_clip(np.concatenate([x, -x]), 4, unsigned=True) == pytest.approx(
        (2.0 / 4) / (3 / 4 / (12 * 15 * 15) + 1 / 4), rel=10 * OCTAV_RTOL)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 50)) * rng.lognormal(0, 1, (6, 1))
    per_row = octav_clip(w, 4, per="channel")
    assert per_row.shape == (6,)
    assert np.allclose(per_row, [octav_clip(r, 4) for r in w], rtol=1e-12, atol=0)
    v = octav_clip(w, 4, per="vector", vector_size=16)              # 50 = 3 vectors of 16 and a short one of 2
    assert v.shape == (6, 4)
    expect = [[octav_clip(r[j:j + 16], 4) for j in range(0, 50, 16)] for r in w]
    assert np.allclose(v, expect, rtol=1e-12, atol=0)
    assert calibrate_amax(w, "octav", bits=4) == octav_clip(w, 4)
    assert np.array_equal(calibrate_amax(w, "octav", bits=4, channel_axis=0), per_row)
    assert octav_clip(np.zeros((3, 4)), 4) == 0.0 and not octav_clip(np.zeros((3, 4)), 4, per="vector").any()
    with pytest.raises(ValueError, match="1 non-finite"):
        octav_clip(np.array([1.0, np.inf]), 4)
    with pytest.raises(ValueError, match="per='row'; allowed: 'tensor', 'channel', 'vector'"):
        octav_clip(w, 4, per="row")
