"""The fast fake-quant path equals the TLM path exactly on a full small model; STE fine-tuning works."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _models import need_model  # skip without the weights, fail in CI
from mapping.backends import reference_backend
from mapping.capture import capture
from mapping.interpret import QuantInterpreter
from mapping.network import simulate_numerics
from studies.qat import finetune_digits, quantize_model
from tlm import load_hardware
from workloads.digits import load_digits_cnn, load_digits_split

BLOCK = ["nvfp4", "mxfp8_e4m3", "mxfp4/mxfp8_e4m3", "mxfp4/8"]   # MX and NVFP4 (and mixed with VS-Quant)


@pytest.mark.parametrize("arch", ["8/8/-/-", "4/8/6/10", "4/4U/4/6", "6/8/6/-", *BLOCK, "4/8/fp16/fp16", "4/4/4/4,R=4",
                                  "4/8/6/10,requantize,nonzero"])
def test_equals_the_tlm_on_digits_cnn(arch):
    model = load_digits_cnn()
    x = torch.from_numpy(load_digits_split()[2][:48]).double()
    cap = capture(copy.deepcopy(model).double(), (x,))
    with torch.no_grad():
        y = quantize_model(copy.deepcopy(model).double(), arch)(x)
    tlm = simulate_numerics(cap, arch, load_hardware("magnet16")).output
    assert torch.equal(y, tlm)


def _assert_module_equals_reference(model, x, arch):
    """quantize_model(model) on x equals the vsquant reference interpreter bit for bit."""
    ref = QuantInterpreter(capture(copy.deepcopy(model), (x,)), reference_backend(arch)).forward()
    with torch.no_grad():
        y = quantize_model(copy.deepcopy(model), arch)(x)
    assert torch.equal(y, ref)


class Mixed(nn.Module):
    """Grouped conv with channels not a multiple of V, dilation, stride, a 3-D linear input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(20, 24, 3, stride=2, padding=2, dilation=2, groups=2)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(y.flatten(2).transpose(1, 2))


@pytest.mark.parametrize("arch", ["8/8/-/-", "4/8/6/10", "3/4/4/6", *BLOCK, "mxint8"])
def test_equals_the_reference_on_grouped_conv_and_linear(arch):
    torch.manual_seed(0)
    _assert_module_equals_reference(Mixed().double().eval(), torch.randn(2, 20, 9, 9, dtype=torch.float64), arch)


@pytest.mark.parametrize("arch", ["4/8/6/10", "4/8/6/10,R=4", "4/8/fp16/fp16", "4/8/6/10,requantize"])
def test_ste_gradients(arch):
    torch.manual_seed(1)
    model = quantize_model(Mixed().double(), arch)
    x = torch.randn(2, 20, 9, 9, dtype=torch.float64, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert model.conv.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0


#: the configs the fake-quant path once left to the reference: fp per-vector scales (any V, one side '-'),
#: rounded scale products (signed and unsigned activations, one side '-'), the Eq. 7 variants
ORDERED = ["4/8/fp16/fp16", "4/8/fp32/fp32", "6/6/fp32/fp32,V=1", "4/8/fp16/fp16,V=4", "8/8/fp16/fp16,V=64",
           "4/8/-/fp16", "4/8/fp32/-", "4/4/4/4,R=4", "4/8/6/10,R=6", "3/4/4/6,R=5", "4/4U/4/6,R=4", "4/8/6/-,R=3",
           "4/8/6/10,requantize", "4/8/6/10,nonzero", "4/4/4/4,requantize,nonzero"]


@pytest.mark.parametrize("arch", ORDERED)
def test_fp_scales_rounded_products_and_variants_equal_the_reference(arch):
    """Wide-ranging data (scales spread over many binades: the ordered float sum) and narrow data (one GEMM where
    exact), in linear, grouped and depthwise conv (stride, padding) and batched matmul: bit for bit."""
    import numpy as np

    from vsquant import QuantConfig
    from vsquant import layers as vsq
    from vsquant.fakequant import fake_conv2d, fake_linear, fake_matmul
    cfg = QuantConfig.parse(arch)
    rng = np.random.default_rng(3)
    t = torch.from_numpy
    for spread in (0.0, 4.0):
        x = rng.standard_normal((6, 96)) * np.exp(rng.standard_normal((1, 96)) * spread)
        w = rng.standard_normal((10, 96)) * np.exp(rng.standard_normal((1, 96)) * spread)
        ref = vsq.linear(x, w, None, cfg, requantize_output=False, unsigned_input=False).output
        assert np.array_equal(fake_linear(t(x), t(w), None, cfg).numpy(), ref)
        xc = rng.standard_normal((2, 40, 5, 5)) * np.exp(rng.standard_normal((1, 40, 1, 1)) * spread)
        wc = rng.standard_normal((16, 20, 3, 3))
        ref = vsq.conv2d(xc, wc, None, cfg, 1, 1, 1, 2, requantize_output=False, unsigned_input=False).output
        assert np.array_equal(fake_conv2d(t(xc), t(wc), None, cfg, 1, 1, 1, 2).numpy(), ref)
        xd, wd = np.maximum(rng.standard_normal((2, 8, 6, 6)), 0), rng.standard_normal((8, 1, 3, 3))
        u = cfg.act_unsigned
        ref = vsq.conv2d(xd, wd, None, cfg, 2, 1, 1, 8, requantize_output=False, unsigned_input=u).output
        assert np.array_equal(fake_conv2d(t(xd), t(wd), None, cfg, 2, 1, 1, 8, unsigned=u).numpy(), ref)
        a = rng.standard_normal((2, 7, 64)) * np.exp(rng.standard_normal(64) * spread)
        b = rng.standard_normal((2, 64, 5))
        ref = vsq.matmul(a, b, cfg, requantize_output=False).output
        assert np.array_equal(fake_matmul(t(a), t(b), cfg).numpy(), ref)


def test_fp_scales_keep_the_reference_range_checks():
    """An fp16 per-vector scale that overflows raises as the reference does; one that underflows flushes its
    vector with the reference's warning, and the outputs still agree."""
    import numpy as np

    from vsquant import QuantConfig
    from vsquant import layers as vsq
    from vsquant.fakequant import fake_linear
    from vsquant.quantize import ScaleRangeError, ScaleUnderflowWarning
    cfg = QuantConfig.parse("4/8/fp16/fp16")
    w = np.ones((4, 32))
    with pytest.raises(ScaleRangeError, match="overflow fp16"):
        fake_linear(torch.full((2, 32), 1e9, dtype=torch.float64), torch.from_numpy(w), None, cfg)
    x = np.ones((2, 32))
    x[0, :16] = 1e-12                                   # one vector's scale below fp16's smallest subnormal
    with pytest.warns(ScaleUnderflowWarning):
        ref = vsq.linear(x, w, None, cfg, requantize_output=False, unsigned_input=False).output
    with pytest.warns(ScaleUnderflowWarning):
        got = fake_linear(torch.from_numpy(x), torch.from_numpy(w), None, cfg).numpy()
    assert np.array_equal(got, ref)
    with pytest.raises(ValueError, match="take no calibrated amax"):
        fake_linear(torch.from_numpy(x), torch.from_numpy(w), None, cfg, act_amax=1.0)


@pytest.mark.parametrize("arch", ["mxfp4", "mxfp8_e4m3", "nvfp4", "mxfp4/8"])
def test_block_formats_take_both_accumulation_orders_and_equal_the_reference(arch):
    """Wide-ranging data (a scale spread of many binades per row) forces the ordered per-vector sum, narrow
    data allows one GEMM; both equal the reference bit for bit, in linear, conv and matmul."""
    import numpy as np

    from vsquant import QuantConfig
    from vsquant import layers as vsq
    from vsquant.fakequant import _exact, _operand, fake_conv2d, fake_linear, fake_matmul
    cfg = QuantConfig.parse(arch)
    rng = np.random.default_rng(11)
    orders = set()
    for spread in (0.0, 4.0):
        x = rng.standard_normal((6, 96)) * np.exp(rng.standard_normal((1, 96)) * spread)
        w = rng.standard_normal((10, 96)) * np.exp(rng.standard_normal((1, 96)) * spread)
        ref = vsq.linear(x, w, None, cfg, requantize_output=False).output
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        orders.add(_exact(_operand(xt, cfg, "act", False, False), _operand(wt, cfg, "weight", False, True), cfg, 6))
        assert np.array_equal(fake_linear(xt, wt, None, cfg).numpy(), ref)
        xc = rng.standard_normal((2, 40, 5, 5)) * np.exp(rng.standard_normal((1, 40, 1, 1)) * spread)
        wc = rng.standard_normal((16, 20, 3, 3))
        ref = vsq.conv2d(xc, wc, None, cfg, 1, 1, 1, 2, requantize_output=False).output
        assert np.array_equal(fake_conv2d(torch.from_numpy(xc), torch.from_numpy(wc), None, cfg, 1, 1, 1, 2).numpy(),
                              ref)
        xc, wc = xc[:, :16], rng.standard_normal((8, 16, 3, 3))   # 16 channels: an MX block (32) per kernel position
        ref = vsq.conv2d(xc, wc, None, cfg, 2, 1, 1, 1, requantize_output=False).output
        assert np.array_equal(fake_conv2d(torch.from_numpy(xc), torch.from_numpy(wc), None, cfg, 2, 1, 1, 1).numpy(),
                              ref)
        a = rng.standard_normal((2, 7, 64)) * np.exp(rng.standard_normal(64) * spread)
        b = rng.standard_normal((2, 64, 5))
        ref = vsq.matmul(a, b, cfg, requantize_output=False).output
        assert np.array_equal(fake_matmul(torch.from_numpy(a), torch.from_numpy(b), cfg).numpy(), ref)
    if arch == "mxfp8_e4m3":
        assert orders == {True, False}   # both paths ran


def test_qat_recovers_accuracy_at_2_bit_weights():
    """Measured: 2/3U/4/6 held-out top-1 0.783 after PTQ, 0.961 after one STE epoch (fp32 0.972)."""
    h = finetune_digits("2/3U/4/6", epochs=1)
    assert h[1] > h[0] + 0.1 and h[1] > 0.93


TINY_BERT = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", ["8/8/-/-", "4/8/6/10", "4/4U/4/6", "nvfp4", "mxfp8_e4m3", "4/8/fp32/fp32",
                                  "4/4U/4/6,R=5"])
def test_transformer_with_attention_equals_the_tlm(arch, attention):
    """A full (small) BERT, attention matmuls included: the interpreter's fake-quant backend and the
    quantized module both equal the TLM, bit for bit."""
    from mapping.backends import fakequant_backend
    from workloads.models import get_workload
    model, inputs, _ = get_workload("bert-base", seq=12, batch=2, config=TINY_BERT, attention=attention)
    cap = capture(copy.deepcopy(model).double(), inputs)
    tlm = simulate_numerics(cap, arch, load_hardware("tiny")).output
    fq = QuantInterpreter(cap, fakequant_backend(arch)).forward()
    with torch.no_grad():
        mod = quantize_model(copy.deepcopy(model).double(), arch)(**inputs)
    for key in ("last_hidden_state", "pooler_output"):
        assert torch.equal(fq[key], tlm[key]), key
        assert torch.equal(mod[key], tlm[key]), key


def test_fast_backend_is_the_fake_quant_path_and_the_mode_catches_parameter_matmuls():
    from mapping.backends import fast_backend
    for arch in ("4/8/6/10,R=4", "6/8/6/-", "4/8/fp16/fp16", "4/8/6/10,nonzero"):
        assert fast_backend(arch).__name__.startswith("fakequant_backend")

    class XW(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(16, 4, dtype=torch.float64))

        def forward(self, x):
            return x @ self.w

    with pytest.raises(ValueError, match="parameter operand"):
        quantize_model(XW(), "4/8/6/10")(torch.randn(3, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(quantize_model(Mixed(), "4/8/6/10"), "8/8/-/-")


def test_static_scales_equal_the_reference_layers():
    """Calibrated (static) per-tensor activation and per-channel weight scales, as studies.ptq uses them:
    fake_linear / fake_conv2d / fake_matmul with amax equal vsquant.layers with act_amax, bit for bit,
    including values clipped by an amax below the tensor's max."""
    import numpy as np

    from vsquant import QuantConfig
    from vsquant import layers as vsq
    from vsquant.fakequant import fake_conv2d, fake_linear, fake_matmul, quantized_conv_weight, quantized_weight
    from vsquant.ppu import quantize_activation, quantize_weight
    rng = np.random.default_rng(3)
    cfg = QuantConfig.parse("4/6U/-/-")
    x, w, b = rng.standard_normal((5, 7, 40)), rng.standard_normal((24, 40)), rng.standard_normal(24)
    wamax = np.abs(w).max(axis=1) * 0.8
    ref = vsq.linear(x, quantize_weight(w, cfg, amax=wamax), b, cfg, unsigned_input=False, act_amax=1.5,
                     requantize_output=False).output
    got = fake_linear(torch.from_numpy(x), None, torch.from_numpy(b), cfg,
                      quantized_weight(torch.from_numpy(w), cfg, wamax), unsigned=False, act_amax=1.5)
    assert np.array_equal(got.numpy(), ref)
    xc, wc = np.abs(rng.standard_normal((2, 20, 6, 6))), rng.standard_normal((8, 20, 3, 3))
    camax = np.abs(wc.reshape(8, -1)).max(axis=1) * 0.9
    padded = vsq._pad_channels(wc.transpose(0, 2, 3, 1), cfg.vector_size)
    ref = vsq.conv2d(xc, wc, None, cfg, (1, 1), (1, 1), (1, 1), 1, unsigned_input=True, act_amax=2.0,
                     requantize_output=False, weight_q=quantize_weight(padded, cfg, amax=camax)).output
    got = fake_conv2d(torch.from_numpy(xc), None, None, cfg, (1, 1), (1, 1), (1, 1), 1,
                      quantized_conv_weight(torch.from_numpy(wc), cfg, camax), unsigned=True, act_amax=2.0)
    assert np.array_equal(got.numpy(), ref)
    a, bb = rng.standard_normal((2, 3, 9, 32)), rng.standard_normal((2, 3, 32, 9))
    qa = quantize_activation(a, cfg, unsigned=False, amax=2.0)
    qb = quantize_activation(np.swapaxes(bb, -1, -2), cfg, unsigned=False, amax=1.0)
    gemms = []
    for idx in np.ndindex(2, 3):
        ops = [vsq.QuantizedTensor(q.values[idx], None, np.broadcast_to(q.gamma, q.shape[:-1])[idx].copy(), q.bits,
                                   q.unsigned, q.vector_size, q.scheme, q.scale_bits) for q in (qa, qb)]
        gemms.append(vsq.run_gemm(vsq.GemmOperands(*ops), cfg.for_activation_operands())[1])
    got = fake_matmul(torch.from_numpy(a), torch.from_numpy(bb), cfg, a_unsigned=False, b_unsigned=False,
                      a_amax=2.0, b_amax=1.0)
    assert np.array_equal(got.numpy(), np.stack(gemms).reshape(2, 3, 9, 9))


def test_qat_minilm_moves_the_embeddings_toward_fp32():
    """Measured (3 epochs, README): 4/8/-/- mean cos 0.905 -> 0.935, 4/8/6/10 0.9695 -> 0.985. Epoch 0 is
    post-training quantization and equals the PTQ table's number (the same exact datapath)."""
    from studies import ptq
    from studies.qat import finetune_embeddings
    h = need_model(finetune_embeddings, "4/8/6/10", epochs=1)
    assert h[0]["mean_cos"] == ptq.evaluate_config(ptq.load_workload("minilm"), "4/8/6/10")["mean_cos"]
    assert h[1]["mean_cos"] > h[0]["mean_cos"] + 0.005 and h[1]["spearman"] > h[0]["spearman"]
    with pytest.raises(ValueError, match="finetune_embeddings supports"):
        finetune_embeddings("4/8/6/10", workload="bert-base")


class Depthwise(nn.Module):
    """MobileNet's pattern: depthwise 3x3 (stride 2) between 1x1 convs, ReLU6."""

    def __init__(self):
        super().__init__()
        self.expand, self.dw = nn.Conv2d(8, 24, 1), nn.Conv2d(24, 24, 3, stride=2, padding=1, groups=24)
        self.project = nn.Conv2d(24, 8, 1)

    def forward(self, x):
        return self.project(F.relu6(self.dw(F.relu6(self.expand(x)))))


@pytest.mark.parametrize("arch", ["8/8/-/-", "4/8U/6/10", "4/4U/4/6", "nvfp4", "mxfp8_e4m3"])
def test_depthwise_conv_equals_the_reference(arch):
    torch.manual_seed(2)
    _assert_module_equals_reference(Depthwise().double().eval(), torch.randn(2, 8, 11, 11, dtype=torch.float64),
                                    arch)
