"""Inputs the numerics API must refuse (or report), never turn into silently wrong numbers (issue #19, item 9-10).

Each case here returned NaN, garbage or silent zeros before the checks existed."""
import numpy as np
import pytest

from vsquant import QuantConfig, conv2d, quantize_per_vector, quantize_two_level, quantize_with_scale
from vsquant.quantize import ScaleRangeError, ScaleUnderflowWarning

RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 32))


@pytest.mark.parametrize("bits", [1, 0, 17, 40, 2.5, True, "4"])
def test_two_level_bits_checked_like_per_tensor(bits):
    with pytest.raises(ValueError, match=r"\[2, 16\]"):
        quantize_two_level(X, bits, 6)


@pytest.mark.parametrize("scale_bits", [0, 17, 30, True])
def test_two_level_scale_bits_checked(scale_bits):
    with pytest.raises(ValueError, match=r"scale_bits must be an int in \[1, 16\]"):
        quantize_two_level(X, 4, scale_bits)


@pytest.mark.parametrize("gamma", [float("nan"), float("inf"), -1.0])
def test_static_gamma_must_be_finite_and_non_negative(gamma):
    with pytest.raises(ValueError, match="static gamma"):
        quantize_two_level(X, 4, 6, per="tensor", gamma=gamma)


def test_zero_static_gamma_or_scale_would_flush_data():
    with pytest.raises(ValueError, match="non-zero values"):
        quantize_two_level(X, 4, 6, per="tensor", gamma=0.0)
    with pytest.raises(ValueError, match="non-zero values"):
        quantize_with_scale(X, 0.0, 8)
    # an all-zero tensor may have a zero scale
    assert not quantize_with_scale(np.zeros((2, 4)), 0.0, 8).values.any()


@pytest.mark.parametrize("kw, what", [({"dilation": 0}, "dilation"), ({"stride": 0}, "stride"),
                                      ({"padding": -1}, "padding"), ({"stride": 1.5}, "stride"),
                                      ({"groups": 0}, "groups")])
def test_conv2d_geometry_checked_like_torch(kw, what):
    x, w = RNG.standard_normal((1, 4, 6, 6)), RNG.standard_normal((4, 4, 3, 3))
    with pytest.raises(ValueError, match=what):
        conv2d(x, w, None, "8/8/-/-", **kw)


def test_fp16_scale_overflow_is_an_error_not_non_finite():
    x = np.full((1, 16), 1e7)          # 1e7 / 127 > 65504
    with pytest.raises(ScaleRangeError, match="overflow fp16"):
        quantize_per_vector(x, 8, 16, scale_format="fp16")
    quantize_per_vector(x, 8, 16, scale_format="fp32")   # fits fp32


def test_fp16_scale_underflow_is_reported_with_the_count():
    tiny = np.full((1, 32), 1e-9)
    with pytest.raises(ScaleRangeError, match="every non-zero vector"):
        quantize_per_vector(tiny, 8, 16, scale_format="fp16")
    mixed = np.concatenate([np.full(16, 1e-9), np.full(16, 1.0)])[None]
    with pytest.warns(ScaleUnderflowWarning, match="1 of 2 non-zero vectors"):
        q = quantize_per_vector(mixed, 8, 16, scale_format="fp16", what="activation")
    assert not q.values[0, :16].any() and q.values[0, 16:].all()


@pytest.mark.parametrize("text", ["4/8/6/10,R=99", "4/8/6/10,R=17", "4/4/4/4,R=9", "8/8/6/-,R=7"])
def test_rounding_wider_than_the_scale_product_is_refused(text):
    with pytest.raises(ValueError, match="wider than the"):
        QuantConfig.parse(text)
    assert QuantConfig.parse("4/8/6/10,R=16").scale_product_shift == 0   # exactly full width


def test_boolean_scale_product_is_refused():
    with pytest.raises(ValueError, match="must be 'full' or a positive number"):
        QuantConfig.parse("4/8/6/10", scale_product=True)


@pytest.mark.parametrize("v", ["7", "100000", "0", "3", "512"])
def test_vector_sizes_the_datapath_cannot_have(v):
    with pytest.raises(ValueError, match="power of two"):
        QuantConfig.parse(f"4/8/6/10,V={v}")
    with pytest.raises(ValueError, match="power of two"):
        QuantConfig(vector_size=int(v))
