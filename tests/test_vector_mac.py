"""The integer vector MAC (Eq. 4-5, Sec. 5): exact against int64, rounding, gating, widths, tiling."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsquant import (
    AccumulatorOverflow,
    QuantConfig,
    quantize_activation,
    quantize_weight,
    round_scale_product,
    vector_mac,
)
from vsquant.quantize import to_vectors


def int64_vector_mac(a, w, cfg):
    """Independent int64 model of Eq. 4-5: per-vector dots, rounded scale products, accumulation."""
    V = cfg.vector_size
    av = to_vectors(a.values.astype(np.int64), V)
    wv = to_vectors(w.values.astype(np.int64), V)
    dots = np.einsum("mjv,njv->mnj", av, wv)
    J = av.shape[1]
    sa = np.ones((a.shape[0], J), np.int64) if a.scales is None else a.scales.astype(np.int64)
    sw = np.ones((w.shape[0], J), np.int64) if w.scales is None else w.scales.astype(np.int64)
    p = sa[:, None, :] * sw[None, :, :]
    sh = cfg.scale_product_shift
    if sh:
        p = np.minimum((p + (1 << (sh - 1))) >> sh, (1 << cfg.rounded_scale_product_bits) - 1)
    gated = 0 if cfg.is_baseline else int((p == 0).sum())
    return (dots * p).sum(axis=-1), dots, gated


def test_round_scale_product_hand_worked():
    # 4-bit scales, product rounded to 4 bits: shift 4, half-up, saturating
    assert round_scale_product(np.array([225.0]), 4, 4).tolist() == [14.0]   # (225 + 8) >> 4
    assert round_scale_product(np.array([6.0, 7.0, 8.0]), 4, 4).tolist() == [0.0, 0.0, 1.0]
    assert round_scale_product(np.array([64449.0]), 12, 4).tolist() == [15.0]  # 16.2 saturates at 2^4 - 1
    p = np.arange(10.0)
    assert round_scale_product(p, 0, 8) is p  # full width: untouched


CONFIGS = ["8/8/-/-", "4/8/6/10", "4/4U/4/6", "6/6/4/4,R=4", "6/6/4/4,R=6", "6/8/6/-", "6/3/-/4",
           "4/4/4/4,R=4", "8/8/8/8,V=8", "3/3/3/3,V=4,R=2"]


def _operands(cfg, M, K, N, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, K)) * rng.lognormal(0, 1.5, size=(M, K))  # wide dynamic range per vector
    if cfg.act_unsigned:
        x = np.abs(x)
    w = rng.standard_normal((N, K)) * rng.lognormal(0, 1.5, size=(N, K))
    return quantize_activation(x, cfg), quantize_weight(w, cfg)


@pytest.mark.parametrize("arch", CONFIGS)
@pytest.mark.parametrize("shape", [(7, 48, 5), (3, 37, 9), (1, 16, 1), (12, 200, 11)])
def test_exact_against_int64(arch, shape):
    cfg = QuantConfig.parse(arch)
    a, w = _operands(cfg, *shape, seed=sum(shape))
    res = vector_mac(a, w, cfg)
    acc, dots, gated = int64_vector_mac(a, w, cfg)
    np.testing.assert_array_equal(res.acc, acc.astype(np.float64))
    assert np.array_equal(res.acc.astype(np.int64), acc)
    assert res.gated == gated
    assert res.accumulations == shape[0] * shape[2] * -(-shape[1] // cfg.vector_size)
    # the widths of Sec. 5 hold
    assert np.abs(dots).max() < 2 ** (cfg.dot_product_bits - 1)
    assert np.abs(acc).max() < 2 ** (cfg.accumulator_bits(res.num_vectors) - 1)


@settings(max_examples=60, deadline=None)
@given(arch=st.sampled_from(CONFIGS), M=st.integers(1, 9), K=st.integers(1, 70), N=st.integers(1, 9),
       seed=st.integers(0, 2 ** 31))
def test_exact_property(arch, M, K, N, seed):
    cfg = QuantConfig.parse(arch)
    a, w = _operands(cfg, M, K, N, seed)
    res = vector_mac(a, w, cfg)
    acc, _, gated = int64_vector_mac(a, w, cfg)
    assert np.array_equal(res.acc.astype(np.int64), acc) and res.gated == gated


@pytest.mark.parametrize("arch", ["4/8/6/10", "6/6/4/4,R=4", "4/8/fp16/fp16", "4/8/fp32/fp32", "8/8/-/-"])
def test_tiled_accumulation_is_bit_identical(arch):
    """K-tiles accumulated in ascending order reproduce the whole layer exactly (also with fp scales)."""
    cfg = QuantConfig.parse(arch)
    a, w = _operands(cfg, 9, 130, 7, seed=3)
    whole = vector_mac(a, w, cfg)
    acc, gated = None, 0
    for j0, j1 in [(0, 3), (3, 4), (4, 9)]:
        part = vector_mac(a, w, cfg, j0=j0, j1=j1, acc=acc)
        acc, gated = part.acc, gated + part.gated
    assert np.array_equal(acc, whole.acc)
    assert gated == whole.gated


def test_scale_product_rounding_gates_accumulations():
    """Fig. 3 text: rounding the scale product to few bits turns small products to 0 and gates them."""
    cfg_full = QuantConfig.parse("6/6/4/4")
    cfg_r4 = QuantConfig.parse("6/6/4/4,R=4")
    a, w = _operands(cfg_full, 16, 256, 16, seed=1)
    full = vector_mac(a, w, cfg_full)
    r4 = vector_mac(a, w, cfg_r4)
    assert r4.gated > full.gated
    assert 0 < r4.gated / r4.accumulations < 1
    assert r4.scale_shift == 4 and full.scale_shift == 0


def test_accumulator_overflow_is_reported():
    cfg = QuantConfig.parse("8/8/-/-")
    a, w = _operands(cfg, 4, 64, 4, seed=0)
    res = vector_mac(a, w, cfg)
    need = int(res.max_abs_acc).bit_length() + 1
    vector_mac(a, w, cfg, accumulator_bits=need)
    with pytest.raises(AccumulatorOverflow, match=f"{need - 1}-bit signed accumulation collector"):
        vector_mac(a, w, cfg, accumulator_bits=need - 1)


def test_operand_errors():
    cfg = QuantConfig.parse("8/8/8/8")
    a, w = _operands(cfg, 4, 32, 4, seed=0)
    a2, _ = _operands(cfg, 4, 48, 4, seed=0)
    with pytest.raises(ValueError, match="reduction lengths differ"):
        vector_mac(a2, w, cfg)
    with pytest.raises(ValueError, match="outside"):
        vector_mac(a, w, cfg, j0=1, j1=5)


def test_float64_exactness_guard():
    """Integers beyond 2^53 would not be exact in float64: refused instead of silently rounded."""
    cfg = QuantConfig.parse("16/16/16/16")
    a, w = _operands(cfg, 2, 64, 2, seed=0)
    with pytest.raises(AccumulatorOverflow, match="2\\^53"):
        vector_mac(a, w, cfg)
