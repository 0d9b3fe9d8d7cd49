"""OCTAV (Sakr et al., ICML 2022) as the clip of the weights' per-vector scales (``,clip=octav``): the scales are
octav_clip per vector, the option parses and is refused where it has no meaning, and the NumPy reference, the
fake-quant path and the TLM agree bit for bit with it."""
import copy

import numpy as np
import pytest
import torch

from vsquant import QuantConfig, quantize_weight
from vsquant import layers as vsq
from vsquant.calibration import octav_clip
from vsquant.config import qmax
from vsquant.fakequant import _octav_vector_clips, fake_conv2d, fake_linear, fake_matmul, quantized_weight

OCTAV = ["4/8/6/10,clip=octav", "4/8/fp32/fp32,clip=octav", "4/8/fp16/fp16,clip=octav", "4/4/4/4,R=4,clip=octav",
         "3/4/4/6,requantize,nonzero,clip=octav", "4/8/6/-,clip=octav", "6/8/fp32/-,V=4,clip=octav"]


def _heavy(rng, shape):
    return rng.standard_t(3, size=shape)      # heavy tails: OCTAV clips well inside the max


@pytest.mark.parametrize("L", [16, 50, 7])
def test_per_vector_scales_are_octav_clips(L):
    rng = np.random.default_rng(0)
    w = _heavy(rng, (9, L))
    for arch in ("4/8/fp32/fp32,clip=octav", "4/8/fp32/fp32"):
        q = quantize_weight(w, QuantConfig.parse(arch))
        clip = octav_clip(w, 4, per="vector", vector_size=16) if "octav" in arch else \
            np.array([[np.abs(r[j:j + 16]).max() for j in range(0, L, 16)] for r in w])
        assert np.array_equal(q.scales, (clip / qmax(4)).astype(np.float32))
    # two-level: the fp scale of Eq. 7b is clip / qmax, gamma its row max / (2^M - 1), the integer scale rounded
    q = quantize_weight(w, QuantConfig.parse("4/8/6/10,clip=octav"))
    s = octav_clip(w, 4, per="vector", vector_size=16) / qmax(4)
    g = s.max(axis=1) / 63
    assert np.array_equal(q.gamma, g)
    assert np.array_equal(q.scales, np.clip(np.rint(s / g[:, None]), 0, 63).astype(np.int32))
    # OCTAV clips: values beyond the clip saturate at qmax; and the clips beat the max in MSE on such data
    assert np.abs(q.values).max() == qmax(4) and (s * qmax(4) < np.abs(w).reshape(9, -1).max(axis=1)[:, None]).any()
    mse = {a: float(np.mean((quantize_weight(w, QuantConfig.parse(a)).dequantize() - w) ** 2))
           for a in ("4/8/fp32/fp32", "4/8/fp32/fp32,clip=octav")}
    assert mse["4/8/fp32/fp32,clip=octav"] < mse["4/8/fp32/fp32"]


def test_octav_recursion_torch_equals_numpy_by_the_bit():
    rng = np.random.default_rng(1)
    for L, V in ((16, 16), (40, 16), (7, 16), (100, 32), (12, 1), (33, 4)):
        w = _heavy(rng, (21, L))
        for unsigned in (False, True):
            ref = octav_clip(w, 4, unsigned, per="vector", vector_size=V)
            assert np.array_equal(_octav_vector_clips(torch.from_numpy(w), 4, V, unsigned).numpy(), ref)
    zero = np.zeros((3, 16))
    assert not _octav_vector_clips(torch.from_numpy(zero), 4, 16, False).any()


def test_config_option_parses_round_trips_and_rejects():
    c = QuantConfig.parse("4/8/6/10,clip=octav")
    assert c.weight_clip == "octav" and str(c) == "4/8/6/10,clip=octav" and QuantConfig.parse(str(c)) == c
    assert QuantConfig.parse("4/8/6/10,CLIP=max") == QuantConfig.parse("4/8/6/10")
    assert str(QuantConfig.parse("4/8/6/10,clip=max")) == "4/8/6/10"     # the default is not written
    c = QuantConfig.parse("4/4/4/4,R=4,V=8,requantize,clip=octav")
    assert QuantConfig.parse(str(c)) == c
    with pytest.raises(ValueError, match=r"clip='mse' is not allowed: use clip=max or clip=octav"):
        QuantConfig.parse("4/8/6/10,clip=mse")
    with pytest.raises(ValueError, match=r"clip=octav sets the weights' per-vector scales, and ws=- has none"):
        QuantConfig.parse("4/8/-/10,clip=octav")
    with pytest.raises(ValueError, match=r"ws=- has none"):
        QuantConfig.parse("8/8/-/-,clip=octav")
    with pytest.raises(ValueError, match=r"has none"):
        QuantConfig.parse("nvfp4,clip=octav")                          # block scales are the format's own
    with pytest.raises(ValueError, match=r"clip=max\|octav"):
        QuantConfig.parse("4/8/6/10,clipp=octav")
    # the attention matmul's operands are activations: the weights' clip does not follow them there
    assert QuantConfig.parse("4/8/6/-,clip=octav").for_layer("matmul") == QuantConfig.parse("8/8/-/-")
    assert QuantConfig.parse("4/8/6/10,clip=octav").for_layer("matmul").weight_clip == "max"


@pytest.mark.parametrize("arch", OCTAV)
def test_reference_equals_fake_quant_on_linear_conv_and_matmul(arch):
    cfg = QuantConfig.parse(arch)
    rng = np.random.default_rng(3)
    t = torch.from_numpy
    x, w = rng.standard_normal((6, 70)), _heavy(rng, (10, 70))
    ref = vsq.linear(x, w, None, cfg, requantize_output=False, unsigned_input=False).output
    assert np.array_equal(fake_linear(t(x), t(w), None, cfg).numpy(), ref)
    base = vsq.linear(x, w, None, QuantConfig.parse(arch.replace(",clip=octav", "")), requantize_output=False,
                      unsigned_input=False).output
    assert not np.array_equal(ref, base)                                 # the option changes the weights
    xc, wc = rng.standard_normal((2, 40, 5, 5)), _heavy(rng, (16, 20, 3, 3))
    ref = vsq.conv2d(xc, wc, None, cfg, 1, 1, 1, 2, requantize_output=False, unsigned_input=False).output
    assert np.array_equal(fake_conv2d(t(xc), t(wc), None, cfg, 1, 1, 1, 2).numpy(), ref)
    a, b = rng.standard_normal((2, 7, 64)), rng.standard_normal((2, 64, 5))
    ref = vsq.matmul(a, b, cfg, requantize_output=False).output
    assert np.array_equal(fake_matmul(t(a), t(b), cfg).numpy(), ref)
    wq = quantized_weight(t(w), cfg)                                    # the operand itself: values and gamma
    rq = quantize_weight(w, cfg)
    assert np.array_equal(wq.gamma.numpy(), rq.gamma)


@pytest.mark.parametrize("arch", ["4/8/6/10,clip=octav", "4/8/fp16/fp16,clip=octav"])
def test_fake_quant_equals_the_tlm_on_digits_cnn(arch):
    from mapping.capture import capture
    from mapping.network import simulate_numerics
    from studies.qat import quantize_model
    from tlm import load_hardware
    from workloads.digits import load_digits_cnn, load_digits_split
    model = load_digits_cnn()
    x = torch.from_numpy(load_digits_split()[2][:24]).double()
    cap = capture(copy.deepcopy(model).double(), (x,))
    with torch.no_grad():
        y = quantize_model(copy.deepcopy(model).double(), arch)(x)
    assert torch.equal(y, simulate_numerics(cap, arch, load_hardware("magnet16")).output)
