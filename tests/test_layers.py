"""Reference layers: linear, conv2d (stride, padding, dilation, groups), matmul; PPU; errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vsquant import QuantConfig, conv2d, linear, matmul, quantize_activation, quantize_weight
from vsquant.ppu import apply_activation, coarse_scale

FULL_WIDTH = ["8/8/-/-", "4/8/6/10", "8/8/8/8", "4/8/fp32/fp32", "6/3/-/4", "6/8/6/-"]


def _dq_gemm_reference(res):
    """Float GEMM on the dequantized operands: what full-width hardware computes, up to fp rounding."""
    return np.concatenate([g.a.dequantize() @ g.w.dequantize().T for g in res.gemms], axis=1)


@pytest.mark.parametrize("arch", FULL_WIDTH)
def test_linear_equals_gemm_of_dequantized_operands(arch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 40))
    w = rng.standard_normal((24, 40))
    b = rng.standard_normal(24)
    res = linear(x, w, b, arch)
    ref = _dq_gemm_reference(res) + b
    np.testing.assert_allclose(res.output.reshape(-1, 24), ref, rtol=1e-9, atol=1e-9)
    assert res.output.shape == (2, 5, 24)
    assert res.real_macs == 10 * 24 * 40
    # and it approximates the float layer
    err = np.abs(res.output - (x @ w.T + b)).max() / np.abs(x @ w.T + b).max()
    cfg = QuantConfig.parse(arch)
    assert err < (0.05 if min(cfg.weight_bits, cfg.act_bits) >= 6 else 0.25)


def test_linear_output_is_requantized_per_vector():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 32))
    w = rng.standard_normal((40, 32))
    res = linear(x, w, None, "4/8/6/10", activation="relu", out_unsigned=True)
    q = res.output_q
    assert q.scheme == "two_level" and q.unsigned and q.values.shape == (6, 40) and q.scales.shape == (6, 3)
    np.testing.assert_array_equal(q.values, quantize_activation(res.output, QuantConfig.parse("4/8/6/10"),
                                                                 unsigned=True).values)
    assert np.all(res.output >= 0)
    # chaining: the next layer consumes the quantized tensor as it is
    nxt = linear(q, rng.standard_normal((8, 40)), None, "4/8/6/10")
    assert nxt.gemms[0].a is not None and nxt.output.shape == (6, 8)


def test_static_weights_and_activation_scale():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 32))
    w = rng.standard_normal((8, 32))
    cfg = QuantConfig.parse("8/8/-/-")
    a = linear(x, quantize_weight(w, cfg), None, cfg)
    b = linear(x, w, None, cfg)
    np.testing.assert_array_equal(a.output, b.output)
    clipped = linear(x, w, None, cfg, act_amax=0.5)  # a calibrated (static) per-layer scale clips
    assert np.abs(clipped.gemms[0].a.dequantize()).max() <= 0.5 + 1e-12


def test_ppu_bias_activation_and_coarse_scale():
    np.testing.assert_allclose(coarse_scale(np.array([2.0, 3.0]), np.array([5.0]), 2), [[40.0], [60.0]])
    y = np.array([-1.0, 0.0, 2.0, 7.0])
    assert apply_activation(y, "relu").tolist() == [0.0, 0.0, 2.0, 7.0]
    assert apply_activation(y, "relu6").tolist() == [0.0, 0.0, 2.0, 6.0]
    np.testing.assert_allclose(apply_activation(y, "gelu"), F.gelu(torch.tensor(y)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(apply_activation(y, "gelu_tanh"),
                               F.gelu(torch.tensor(y), approximate="tanh").numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="not supported by the PPU; allowed: .*relu"):
        apply_activation(y, "swish")


CONV_CASES = [
    dict(C=16, K=32, R=1, S=1, stride=1, padding=0, dilation=1, groups=1, H=6),   # 1x1
    dict(C=24, K=16, R=3, S=3, stride=2, padding=1, dilation=1, groups=1, H=9),   # 3x3 strided, C % V != 0
    dict(C=32, K=32, R=3, S=3, stride=1, padding=1, dilation=1, groups=32, H=7),  # depthwise
    dict(C=32, K=16, R=3, S=3, stride=1, padding=2, dilation=2, groups=2, H=8),   # dilated, grouped
    dict(C=3, K=8, R=7, S=7, stride=2, padding=3, dilation=1, groups=1, H=16),    # ResNet stem-like
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c['R']}x{c['S']}s{c['stride']}g{c['groups']}")
@pytest.mark.parametrize("arch", ["8/8/-/-", "4/8/6/10", "8/8/fp32/fp32"])
def test_conv2d_equals_torch_conv_of_dequantized_operands(case, arch):
    rng = np.random.default_rng(case["C"] + case["K"])
    c = case
    x = rng.standard_normal((2, c["C"], c["H"], c["H"] + 1))
    w = rng.standard_normal((c["K"], c["C"] // c["groups"], c["R"], c["S"])) * 0.2
    b = rng.standard_normal(c["K"])
    kw = dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"], groups=c["groups"])
    res = conv2d(x, w, b, arch, **kw)
    cfg = QuantConfig.parse(arch)
    # dequantized operands in NCHW from the quantized GEMM view, then torch's conv on them
    xq = quantize_activation(np.pad(x.transpose(0, 2, 3, 1).reshape(2, c["H"], c["H"] + 1, c["groups"], -1),
                                    ((0, 0),) * 4 + ((0, (-(c["C"] // c["groups"])) % 16),)), cfg)
    xd = xq.dequantize()[..., :c["C"] // c["groups"]].reshape(2, c["H"], c["H"] + 1, c["C"]).transpose(0, 3, 1, 2)
    wq = quantize_weight(np.pad(w.transpose(0, 2, 3, 1), ((0, 0),) * 3 + ((0, (-w.shape[1]) % 16),)), cfg)
    wd = wq.dequantize()[..., :w.shape[1]].transpose(0, 3, 1, 2)
    ref = F.conv2d(torch.tensor(xd), torch.tensor(wd), torch.tensor(b), **kw).numpy()
    assert res.output.shape == ref.shape
    np.testing.assert_allclose(res.output, ref, rtol=1e-9, atol=1e-9)
    # and the float conv, loosely
    flt = F.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), **kw).numpy()
    assert np.abs(res.output - flt).max() / np.abs(flt).max() < 0.25
    Ho, Wo = ref.shape[2:]
    assert res.real_macs == 2 * Ho * Wo * c["K"] * (c["C"] // c["groups"]) * c["R"] * c["S"]
    assert len(res.gemms) == c["groups"]


def test_conv2d_padding_pixels_gate_with_scale_zero():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 16, 4, 4))
    w = rng.standard_normal((8, 16, 3, 3))
    res = conv2d(x, w, None, "8/8/8/8", padding=1)
    # 4x4 output, 3x3 kernel, padding 1: kernel rows/cols see 3+4+3 = 10 valid outputs each, so
    # 100 of the 144 window positions are real pixels and 44 fall on padding (scale 0): 1 vector each
    assert res.gated == 8 * (144 - 10 * 10)
    assert res.output_q.values.shape == (1, 4, 4, 8)


def test_matmul_attention_both_dynamic():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, 4, 10, 32))
    k = rng.standard_normal((2, 4, 10, 32))
    res = matmul(q, np.swapaxes(k, -1, -2), "4/8/6/10")
    assert res.output.shape == (2, 4, 10, 10) and len(res.gemms) == 8
    for g in res.gemms:  # both operands are activations: per-vector scales along the reduction axis
        assert g.a.scheme == g.w.scheme == "two_level" and g.a.shape == (10, 32) and g.w.shape == (10, 32)
        assert np.all(g.w.gamma == g.w.gamma[0])  # per-layer gamma
    ref = np.stack([g.a.dequantize() @ g.w.dequantize().T for g in res.gemms]).reshape(2, 4, 10, 10)
    np.testing.assert_allclose(res.output, ref, rtol=1e-9, atol=1e-9)
    probs = np.abs(rng.standard_normal((2, 4, 10, 10)))
    av = matmul(probs, rng.standard_normal((2, 4, 10, 32)), "4/4U/4/6", a_unsigned=True)
    assert av.gemms[0].a.unsigned and not av.gemms[0].w.unsigned and av.output.shape == (2, 4, 10, 32)
    assert res.real_macs == 8 * 10 * 10 * 32


@pytest.mark.parametrize("call, match", [
    (lambda: linear(np.ones((2, 5)), np.ones((3, 4))), "in_features=4"),
    (lambda: linear(np.ones((2, 4)), np.ones((3, 4, 1))), "2-D"),
    (lambda: linear(np.full((2, 4), np.nan), np.ones((3, 4))), "non-finite"),
    (lambda: linear(-np.ones((2, 4)), np.ones((3, 4)), cfg="4/4U/4/6"), "unsigned activations .* negative"),
    (lambda: linear(np.ones((2, 4)), np.ones((3, 4)), cfg="4/8/6/q"), "activation \\(as\\)"),
    (lambda: conv2d(np.ones((1, 6, 5, 5)), np.ones((4, 3, 3, 3)), groups=4), "groups=4 must divide"),
    (lambda: conv2d(np.ones((1, 6, 5, 5)), np.ones((4, 2, 3, 3))), "weight has 2 input channels"),
    (lambda: conv2d(np.ones((6, 5, 5)), np.ones((4, 6, 3, 3))), "\\(B, C, H, W\\)"),
    (lambda: conv2d(np.ones((1, 6, 2, 2)), np.ones((4, 6, 3, 3))), "empty"),
    (lambda: conv2d(np.ones((1, 6, 5, 5)), np.ones((4, 6, 3, 3)), stride=(1, 2, 3)), "stride"),
    (lambda: matmul(np.ones((2, 3)), np.ones((4, 2))), "\\(..., M, K\\) @ \\(..., K, N\\)"),
])
def test_bad_input_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_matmul_of_activations_uses_activation_widths():
    """QK^T / AV: both operands are A-bit activations with as-bit scales, so the scale product has
    as + as bits and R rounding shifts by as + as - R (not ws + as - R)."""
    from vsquant.quantize import to_vectors
    rng = np.random.default_rng(8)
    a = rng.standard_normal((1, 6, 48)) * 4
    b = rng.standard_normal((1, 48, 5)) * 4
    cfg = QuantConfig.parse("4/8/6/10,R=8")
    mc = cfg.for_activation_operands()
    assert (mc.weight_bits, mc.full_scale_product_bits, mc.scale_product_shift) == (8, 20, 12)
    res = matmul(a, b, cfg)
    g = res.gemms[0]
    av = to_vectors(g.a.values.astype(np.int64), 16)
    bv = to_vectors(g.w.values.astype(np.int64), 16)
    dots = np.einsum("mjv,njv->mnj", av, bv)
    p = g.a.scales.astype(np.int64)[:, None, :] * g.w.scales.astype(np.int64)[None, :, :]
    p = np.minimum((p + (1 << 11)) >> 12, 255)
    np.testing.assert_array_equal(res.macs[0].acc, (dots * p).sum(-1))
    assert QuantConfig.parse("6/8/6/-,R=4").for_activation_operands().scale_product_bits is None


def test_conv_stride_that_is_no_int_nor_pair_is_a_clear_error():
    x, w = np.zeros((1, 2, 4, 4)), np.zeros((2, 2, 3, 3))
    with pytest.raises(ValueError, match="conv2d stride must be an int or a pair of ints, got None"):
        conv2d(x, w, None, "8/8/-/-", stride=None)
