"""Quantizers: hand-worked examples of Eq. 1-3 and Eq. 7a-7j, named variants, edge cases, properties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vsquant import (
    quantize_per_channel,
    quantize_per_tensor,
    quantize_per_vector,
    quantize_two_level,
    quantize_with_scale,
    sqnr_db,
)

X = np.array([[0.5, -1.0, 0.25, 0.0],
              [4.0, 2.0, -1.0, 1.0]])


def test_eq7_hand_worked():
    """N=4 (qmax 7), M=2 (smax 3), V=2, worked by hand from Eq. 7a-7j."""
    q = quantize_two_level(X, bits=4, scale_bits=2, vector_size=2)
    # 7a-7b: s = [[1/7, 0.25/7], [4/7, 1/7]]; 7c: x/s rounded (3.5 -> 4 ties to even)
    assert q.values.tolist() == [[4, -7, 7, 0], [7, 4, -7, 7]]
    # 7e-7f: gamma = max_i s / 3 = [1/21, 4/21]
    np.testing.assert_allclose(q.gamma, [1 / 21, 4 / 21], rtol=1e-15)
    # 7g: sq = rint(s / gamma) = [[3, rint(0.75)=1], [3, 1]]
    assert q.scales.tolist() == [[3, 1], [3, 1]]
    # 7j: values * sq * gamma
    np.testing.assert_allclose(q.dequantize(), [[12 / 21, -1.0, 7 / 21, 0.0], [4.0, 16 / 7, -4 / 3, 4 / 3]],
                               rtol=1e-14)
    assert q.scales.shape == (2, 2) and q.gamma.shape == (2,)


def test_eq7_requantize_variant():
    """Values taken with the two-level scale sq*gamma (Eq. 7h) instead of s (Eq. 7c)."""
    q = quantize_two_level(X, bits=4, scale_bits=2, vector_size=2, requantize=True)
    # row 0, vector 1: scale 1 * 1/21, 0.25 * 21 = 5.25 -> 5; row 1 vector 1: 1 * 4/21 -> 1 * 21/4 = 5.25 -> 5
    assert q.values.tolist() == [[4, -7, 5, 0], [7, 4, -5, 5]]
    assert q.scales.tolist() == [[3, 1], [3, 1]]
    plain = quantize_two_level(X, bits=4, scale_bits=2, vector_size=2)
    assert np.sum((q.dequantize() - X) ** 2) < np.sum((plain.dequantize() - X) ** 2)


def test_eq7_zero_scale_and_nonzero_variant():
    """A small vector's integer scale rounds to 0 (Eq. 7g) unless nonzero_scales keeps it at 1."""
    x = np.array([[7.0, 0.2]])
    q = quantize_two_level(x, bits=4, scale_bits=2, vector_size=1)
    assert q.scales.tolist() == [[3, 0]]  # 0.2/7 / (1/3) = 0.086 -> 0
    assert q.dequantize()[0, 1] == 0.0
    nz = quantize_two_level(x, bits=4, scale_bits=2, vector_size=1, nonzero_scales=True)
    assert nz.scales.tolist() == [[3, 1]]
    assert nz.dequantize()[0, 1] == pytest.approx(7 / 3)  # values 7, scale 1 * gamma 1/3
    both = quantize_two_level(x, bits=4, scale_bits=2, vector_size=1, nonzero_scales=True, requantize=True)
    assert both.values.tolist() == [[7, 1]] and both.dequantize()[0, 1] == pytest.approx(1 / 3)


def test_static_gamma_saturates_integer_scales():
    x = np.array([[1.0, 1.0, 8.0, 8.0]])
    q = quantize_two_level(x, bits=4, scale_bits=3, vector_size=2, per="tensor", gamma=0.01)
    # s = [1/7, 8/7]; s/gamma = [14.3, 114] -> both clip at 2^3 - 1 = 7
    assert q.scales.tolist() == [[7, 7]]
    np.testing.assert_allclose(q.gamma, [0.01])
    with pytest.raises(ValueError, match=">= 0"):
        quantize_two_level(x, 4, 3, 2, gamma=-1.0)


def test_per_tensor_activation_gamma_is_shared():
    x = np.array([[1.0, 2.0], [30.0, 40.0]])
    q = quantize_two_level(x, bits=8, scale_bits=4, vector_size=2, per="tensor")
    assert np.all(q.gamma == q.gamma[0])
    np.testing.assert_allclose(q.gamma[0], 40 / 127 / 15)


def test_per_tensor_and_per_channel_eq1_eq2():
    x = np.array([[0.1, -0.5, 0.2], [3.0, 1.5, -0.75]])
    t = quantize_per_tensor(x, bits=3)  # qmax 3, s = 3 / 3 = 1
    assert t.values.tolist() == [[0, 0, 0], [3, 2, -1]]  # 1.5 -> 2 and -0.75 -> -1 (nearest)
    c = quantize_per_channel(x, bits=3)  # s = [0.5/3, 1]
    assert c.values.tolist() == [[1, -3, 1], [3, 2, -1]]
    np.testing.assert_allclose(c.gamma, [0.5 / 3, 1.0])
    clip = quantize_with_scale(x, 0.1, bits=3)
    assert clip.values.max() == 3 and clip.values.min() == -3


def test_per_vector_fp_scales_eq7d():
    x = np.array([[0.5, -1.0, 0.25, 0.0, 3.0]])
    q = quantize_per_vector(x, bits=4, vector_size=2, scale_format="fp32")
    assert q.scales.dtype == np.float32 and q.scales.shape == (1, 3)
    # values come from the stored scale: fp32(1/7) > 1/7, so 0.5/s = 3.49999 -> 3 (fp64: 3.5 -> 4)
    assert float(np.float32(1 / 7)) > 1 / 7
    assert q.values.tolist() == [[3, -7, 7, 0, 7]]
    assert quantize_per_vector(x, 4, 2, scale_format="fp64").values.tolist() == [[4, -7, 7, 0, 7]]
    np.testing.assert_allclose(q.scales[0], np.float32([1 / 7, 0.25 / 7, 3 / 7]))
    h = quantize_per_vector(x, bits=4, vector_size=2, scale_format="fp16")
    assert h.scales.dtype == np.float16
    assert np.abs(h.values).max() <= 7  # an fp16 scale rounded down cannot overflow the range
    with pytest.raises(ValueError, match="fp16, fp32, fp64"):
        quantize_per_vector(x, 4, 2, scale_format="fp8")


def test_length_not_multiple_of_v_and_all_zero_vectors():
    x = np.zeros((3, 21))
    x[0, :5] = [1, -2, 3, -4, 5]
    x[2, 20] = -9.0  # the last, 5-element... here 1-element vector
    q = quantize_two_level(x, bits=4, scale_bits=4, vector_size=16)
    assert q.values.shape == (3, 21) and q.scales.shape == (3, 2)
    assert q.scales[1].tolist() == [0, 0] and q.gamma[1] == 0.0  # all-zero row: zeros, no NaN
    assert np.all(np.isfinite(q.dequantize()))
    assert q.values[2, 20] == -7
    np.testing.assert_allclose(q.dequantize()[2, 20], -9.0)
    v = quantize_per_vector(np.zeros((2, 5)), 4, 16)
    assert v.values.tolist() == [[0] * 5] * 2 and v.scales.tolist() == [[0.0], [0.0]]


@pytest.mark.parametrize("fn", [
    lambda x: quantize_per_tensor(x, 8),
    lambda x: quantize_per_channel(x, 8),
    lambda x: quantize_per_vector(x, 8),
    lambda x: quantize_two_level(x, 8, 4),
])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_a_clear_error(fn, bad):
    x = np.ones((2, 32))
    x[1, 3] = bad
    with pytest.raises(ValueError, match="1 non-finite values"):
        fn(x)


def test_unsigned_range_eq2():
    x = np.array([[0.0, 1.0, 2.0, 3.0, 15.0, 7.5]])
    q = quantize_two_level(x, bits=4, scale_bits=4, vector_size=8, unsigned=True)
    assert q.values.tolist() == [[0, 1, 2, 3, 15, 8]]  # [0, 2^4 - 1], 7.5 -> 8 (ties to even)
    t = quantize_per_tensor(np.array([[-1.0, 2.0, 4.0]]), bits=2, unsigned=True)
    assert t.values.tolist() == [[0, 2, 3]]  # negatives clip to 0 in an unsigned quantizer


def test_sqnr():
    assert sqnr_db([1.0, 1.0], [1.0, 1.0]) == float("inf")
    assert sqnr_db([1.0, 0.0], [0.9, 0.0]) == pytest.approx(20.0)


# ---- properties -----------------------------------------------------------------------------
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False)
matrices = hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40), elements=finite)


@settings(max_examples=200, deadline=None)
@given(x=matrices, bits=st.integers(2, 8), v=st.sampled_from([1, 3, 4, 16]))
def test_error_within_half_a_step(x, bits, v):
    """|x - x_q| <= s/2 per element for per-tensor, per-channel and fp64 per-vector (max calibration)."""
    for q in (quantize_per_tensor(x, bits), quantize_per_channel(x, bits),
              quantize_per_vector(x, bits, v, scale_format="fp64")):
        step = q.element_scales()
        assert np.all(np.abs(x - q.dequantize()) <= step / 2 * (1 + 1e-9) + 1e-300)


@settings(max_examples=200, deadline=None)
@given(x=matrices, bits=st.integers(2, 8), m=st.integers(1, 10), v=st.sampled_from([1, 4, 16]))
def test_two_level_error_bound(x, bits, m, v):
    """Eq. 7c then 7j: |x - xq*sq*gamma| <= s/2 + |xq| * gamma/2 (value rounding + scale rounding);
    with requantize the values are within half a two-level step unless the scale saturated/flushed."""
    q = quantize_two_level(x, bits, m, v)
    s = quantize_per_vector(x, bits, v, scale_format="fp64").element_scales()
    g = np.broadcast_to(q.gamma[:, None], x.shape)
    bound = s / 2 + np.abs(q.values) * g / 2
    assert np.all(np.abs(x - q.dequantize()) <= bound * (1 + 1e-9) + 1e-300)
    r = quantize_two_level(x, bits, m, v, requantize=True)
    step = r.element_scales()
    ok = step > 0
    err = np.abs(x - r.dequantize())
    within = err <= step / 2 * (1 + 1e-9)
    clipped = np.abs(r.values) == (1 << (bits - 1)) - 1
    assert np.all(within | clipped | ~ok)


@settings(max_examples=200, deadline=None)
@given(x=matrices, bits=st.integers(2, 8), v=st.sampled_from([1, 2, 8, 16]))
def test_per_vector_never_worse_than_per_channel_bound(x, bits, v):
    """A vector's max is <= its channel's max, so per-vector error never exceeds the per-channel bound,
    and per-vector SQNR is at least that of per-channel minus the rounding slack."""
    ch = quantize_per_channel(x, bits)
    pv = quantize_per_vector(x, bits, v, scale_format="fp64")
    assert np.all(pv.element_scales() <= ch.element_scales() * (1 + 1e-12))
    assert np.all(np.abs(x - pv.dequantize()) <= ch.element_scales() / 2 * (1 + 1e-9) + 1e-300)


@settings(max_examples=100, deadline=None)
@given(x=matrices, bits=st.integers(2, 8), v=st.sampled_from([1, 4, 16]))
def test_quantize_dequantize_round_trip(x, bits, v):
    """Quantizing what was dequantized gives the same integers (idempotent fixed point)."""
    for make in (lambda t: quantize_per_channel(t, bits),
                 lambda t: quantize_per_vector(t, bits, v, scale_format="fp64")):
        q1 = make(x)
        q2 = make(q1.dequantize())
        np.testing.assert_array_equal(q1.values, q2.values)


def test_per_vector_beats_per_channel_on_heavy_tails():
    rng = np.random.default_rng(0)
    w = rng.standard_t(3, size=(64, 256))
    ch = sqnr_db(w, quantize_per_channel(w, 4).dequantize())
    pv = sqnr_db(w, quantize_per_vector(w, 4, 16).dequantize())
    tl = sqnr_db(w, quantize_two_level(w, 4, 6, 16).dequantize())
    assert pv > ch + 4.0
    assert abs(tl - pv) < 0.2


@pytest.mark.parametrize("method", ["max", "percentile", "entropy", "mse"])
def test_per_channel_and_per_tensor_with_each_calibration(method):
    """Per-channel quantization takes alpha from the chosen calibrator; clipping ones trade range for step."""
    rng = np.random.default_rng(11)
    w = rng.standard_t(3, size=(8, 4096))
    q = quantize_per_channel(w, 4, method=method)
    mx = np.abs(w).max(axis=1)
    alpha = q.gamma * 7
    assert q.gamma.shape == (8,) and np.all(alpha <= mx * (1 + 1e-12)) and np.all(alpha > 0)
    if method != "max":
        assert np.all(alpha < mx)  # heavy tails: every clipping calibrator clips
    if method == "mse":  # MSE calibration is at least as good as max in MSE, per channel
        qm = quantize_per_channel(w, 4, method="max")
        assert np.all(((q.dequantize() - w) ** 2).mean(1) <= ((qm.dequantize() - w) ** 2).mean(1) + 1e-15)
    t = quantize_per_tensor(w, 4, method=method)
    assert np.all(t.gamma == t.gamma.flat[0]) and t.gamma.flat[0] * 7 <= mx.max() * (1 + 1e-12)
