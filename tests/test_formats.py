"""Block formats (vsquant.formats): the OCP MX and NVFP4 rules by hand, and bit-exact agreement with torchao.

Deviations of torchao 0.18 from the rules (asserted below, so a change in torchao shows up here):
- NVFP4 without ``per_tensor_scale`` is one-level (block scales only, no fp32 tensor scale); given the rules'
  tensor scale amax / (6 * 448) its block scales and element codes equal ours, except that it clamps a block
  scale to at least E4M3's smallest normal 2^-6 (the rules round it to the nearest E4M3 value, a subnormal or
  0). It computes in fp32 (a reciprocal multiply), so its *dequantized* values differ from ours (float64) in
  the last fp32 bits.
- torchao has no MXINT8; its MX scale mode FLOOR (the default, the spec's rule) is what we compare with.
"""
import os
import pathlib
import sys

import numpy as np
import pytest

from _models import need_model
from vsquant import QuantConfig, linear, quantize_activation
from vsquant.formats import BLOCK_FORMATS, ELEMENT_FORMATS, block_format, int_element, quantize_block
from vsquant.quantize import quantize_block_operand


def test_element_grids_round_to_nearest_even_and_saturate():
    e2m1 = ELEMENT_FORMATS["e2m1"]
    grid = [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert list(e2m1.quantize(grid)) == grid
    # ties to even: 0.25 -> 0, 0.75 -> 1 (1.0 has mantissa 0), 2.5 -> 2, 3.5 -> 4, 5 -> 4; saturation at 6
    assert list(e2m1.quantize([0.25, 0.75, 1.25, 2.5, 3.5, 5, 7, 100, -5, -0.3])) == [0, 1, 1, 2, 4, 4, 6, 6, -4, -0.5]
    e4m3 = ELEMENT_FORMATS["e4m3"]
    assert e4m3.quantize([464, 470, 1e9, 2.0 ** -9, 2.0 ** -10, 1.5 * 2.0 ** -10]).tolist() == \
        [448, 448, 448, 2.0 ** -9, 0, 2.0 ** -9]        # 464 ties to 448 (even); smallest subnormal 2^-9
    assert ELEMENT_FORMATS["e5m2"].quantize([60000, 2.0 ** -16]).tolist() == [57344, 2.0 ** -16]
    assert (e4m3.emax, ELEMENT_FORMATS["e5m2"].emax, ELEMENT_FORMATS["e2m3"].emax,
            ELEMENT_FORMATS["e3m2"].emax, e2m1.emax) == (8, 15, 2, 4, 2)
    int8 = ELEMENT_FORMATS["int8"]
    assert int8.quantize([1 / 128, 3 / 128, 1.0, 2.5, -3]).tolist() == [0, 2 / 64, 1.0, 127 / 64, -127 / 64]


def test_mx_rules_by_hand():
    x = np.array([[0.0] * 32 + [1.0, -3.0, 5.0]])              # an all-zero block, then a short last block of 3
    q = quantize_block(x, "mxfp4")
    assert q.block_scales.tolist() == [[2.0 ** -127, 2.0 ** (2 - 2)]]   # floor(log2 5) - emax(E2M1)
    assert q.values[0, 32:].tolist() == [1.0, -3.0, 4.0]        # 5 -> 4 (ties to even), in units of 2^0
    assert q.tensor_scale == 1.0 and q.dequantize()[0, 32:].tolist() == [1.0, -3.0, 4.0]
    huge = quantize_block(np.full((1, 32), 2.0 ** 140), "mxfp8_e4m3")
    assert huge.block_scales[0, 0] == 2.0 ** 127                 # 140 - 8 clamped to 127; elements saturate
    assert huge.values[0, 0] == 448
    tiny = quantize_block(np.full((1, 32), 2.0 ** -140), "mxint8")
    assert tiny.block_scales[0, 0] == 2.0 ** -127 and tiny.values[0, 0] == 0   # clamped; 2^-13 rounds to 0
    q8 = quantize_block(np.array([[0.7, -0.01, 0.3]]), "mxint8")
    assert q8.block_scales[0, 0] == 2.0 ** -1 and q8.values.tolist() == [[90 / 64, -1 / 64, 38 / 64]]


def test_nvfp4_rules_by_hand():
    x = np.zeros((2, 20))
    q = quantize_block(x, "nvfp4")
    assert q.tensor_scale == 1.0 and not q.values.any() and not q.block_scales.any()
    x[0, :16] = np.linspace(-3, 6, 16)                          # one non-zero block; the rest stays zero
    q = quantize_block(x, "nvfp4")
    assert q.tensor_scale == 6 / (6 * 448)
    assert q.block_scales[0, 0] == 448 and q.block_scales[0, 1] == 0 and q.block_scales[1].tolist() == [0, 0]
    assert q.values[0, 15] == 6 and not q.values[1].any()
    assert np.abs(q.dequantize() - x).max() <= 1.0   # half the step (2) of E2M1's largest binade [4, 6]


def test_stored_bits():
    assert {n: f.bits_per_element for n, f in BLOCK_FORMATS.items()} == {
        "mxfp8_e4m3": 8.25, "mxfp8_e5m2": 8.25, "mxfp6_e2m3": 6.25, "mxfp6_e3m2": 6.25, "mxfp4": 4.25,
        "mxint8": 8.25, "nvfp4": 4.5}
    assert BLOCK_FORMATS["nvfp4"].block_bits == 16 * 4 + 8 and ELEMENT_FORMATS["int8"].bits == 8


def test_bad_formats_and_tensors_are_refused():
    with pytest.raises(ValueError, match="unknown block format 'mxfp3'; formats: mxfp8_e4m3, mxfp8_e5m2"):
        block_format("mxfp3")
    with pytest.raises(ValueError, match="1 non-finite"):
        quantize_block(np.array([1.0, np.nan]), "nvfp4")
    with pytest.raises(ValueError, match="non-empty last axis"):
        quantize_block(np.zeros((2, 0)), "mxfp4")
    from vsquant.formats import ElementFormat, ScaleFormat
    with pytest.raises(ValueError, match="kind 'posit'; kinds: fp, int"):
        ElementFormat("p8", "posit", 2, 5, 0, 1.0)
    with pytest.raises(ValueError, match="scale kind 'ue5m3' is not one of 'coarse', 'int', 'fp', 'e8m0', 'e4m3'"):
        ScaleFormat("ue5m3", 8, 16)
    with pytest.raises(ValueError, match="only with, the block kinds"):
        ScaleFormat("int", 6, 16)
    with pytest.raises(ValueError, match="only with, the block kinds"):
        ScaleFormat("e8m0", 8)
    with pytest.raises(ValueError, match="has no block scale"):
        block_format(QuantConfig.parse("4/8/6/10").weight_format)
    assert set(BLOCK_FORMATS) == {"mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4", "mxint8", "nvfp4"}


def test_one_number_format_type_with_derived_widths():
    """VS-Quant's integers and the block formats are one NumberFormat (element + scale); the widths the TLM,
    the cost model and the fake-quant path read are derived from it once."""
    c = QuantConfig.parse("4/8/6/10")
    assert c.weight_format.element == int_element(4) and c.weight_format.scale.kind == "int"
    assert (c.weight_format.element.code_bits, c.act_format.element.code_bits) == (4, 8)
    assert c.product_bits == 12 and c.dot_product_bits == 16 and c.weight_vector_bits == 16 * 4 + 6
    u = QuantConfig.parse("4/4U/4/6").act_format.element
    assert u.unsigned and u.max_code == 15 and u.code_bits == 4
    # E2M1 codes: 0..12 in units of 0.5 (5 bits signed); E4M3: 448 / 2^-9 = 229376 (19 bits)
    assert (ELEMENT_FORMATS["e2m1"].ulp, ELEMENT_FORMATS["e2m1"].max_code, ELEMENT_FORMATS["e2m1"].code_bits) == \
        (0.5, 12, 5)
    assert (ELEMENT_FORMATS["e4m3"].ulp, ELEMENT_FORMATS["e4m3"].code_bits, ELEMENT_FORMATS["int8"].code_bits) == \
        (2.0 ** -9, 19, 8)
    nv = QuantConfig.parse("nvfp4")
    assert nv.weight_format == BLOCK_FORMATS["nvfp4"] and nv.dot_product_bits == 5 + 5 + 4
    assert nv.weight_vector_bits == 16 * 4 + 8 and nv.weight_storage_bits == 4.5
    mx = QuantConfig.parse("mxfp4/mxfp8_e4m3")
    assert (mx.weight_vector_bits, mx.act_vector_bits) == (16 * 4 + 4, 16 * 8 + 4)   # 8 bits per 32 elements
    assert mx.float_scales and not mx.integer_scales and mx.block_formats and not mx.is_baseline
    assert mx.act_scale.needs_layer_max is False and nv.act_scale.needs_layer_max is True   # NVFP4's tensor scale
    assert QuantConfig.parse("mxfp4,V=32").weight_vector_bits == 32 * 4 + 8


@pytest.mark.parametrize("text", ["nvfp4", "mxfp4", "mxfp8_e4m3", "mxint8", "mxfp6_e2m3", "mxfp6_e3m2",
                                  "mxfp4/mxfp8_e4m3", "nvfp4/mxfp8_e4m3", "mxfp4/8", "mxfp4/8U", "8/mxint8",
                                  "mxfp4,V=32"])
def test_block_config_strings_round_trip(text):
    cfg = QuantConfig.parse(text)
    assert str(cfg) == text and QuantConfig.parse(str(cfg)) == cfg


@pytest.mark.parametrize("text, words", [
    ("mxfp3", ["four fields", "block formats", "nvfp4"]),
    ("mxfp4/6/-/10", ["carries its own scales", "mxfp4/8"]),
    ("mxfp4/4/6/10", ["carries its own scales"]),
    ("mxfp4/fp16", ["activation (A)", "block format"]),
    ("mxfp4,R=4", ["needs an integer per-vector scale"]),
    ("mxfp4,V=64", ["block of 32", "V=64", "[4, 8, 16, 32]"]),
    ("nvfp4,V=1", ["block of 16", "V >= 2"]),
    ("mxfp8_e5m2", ["70 bits", "float64", "narrower"]),
])
def test_bad_block_config_strings_say_what_is_wrong(text, words):
    with pytest.raises(ValueError) as e:
        QuantConfig.parse(text)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4", "mxfp8_e4m3", "mxint8", "mxfp6_e2m3", "mxfp6_e3m2"])
def test_block_operand_is_the_block_quantizer_in_codes(fmt):
    """The datapath's view (integer codes, each vector's block scale, gamma = ulp x tensor scale) dequantizes
    to quantize_block's values, short last blocks included."""
    x = np.random.default_rng(3).standard_t(3, (6, 72)) * 0.1
    q = quantize_block(x, fmt)
    op = quantize_block_operand(x, fmt, 16)
    assert op.scheme == "block" and op.values.dtype.kind == "i"
    if fmt == "nvfp4":   # values * (block scale * gamma) rounds once more than values * block * tensor scale
        np.testing.assert_allclose(op.dequantize(), q.dequantize(), rtol=2.0 ** -52, atol=0)
    else:                # MX: every factor but the element a power of two, so exact
        assert np.array_equal(op.dequantize(), q.dequantize())
    assert op.scales.shape == (6, 5)                         # ceil(72 / 16) vectors, each with its block's scale
    assert np.array_equal(quantize_activation(x, QuantConfig.parse(fmt)).values, op.values)
    with pytest.raises(ValueError, match="block format: its scales come from each block"):
        quantize_activation(x, QuantConfig.parse(fmt), amax=1.0)


def test_block_formats_on_the_reference_datapath_equal_dequantized_products():
    """A linear layer in a block format is the product of the dequantized operands (the datapath's fixed-point
    block dot products and exponent-add scales are exact), to float64 rounding of the final scale."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((9, 80)), rng.standard_normal((11, 80))
    for text in ("mxfp4", "nvfp4", "mxfp8_e4m3", "mxfp4/mxfp8_e4m3", "mxfp4/8"):
        cfg = QuantConfig.parse(text)
        r = linear(x, w, None, cfg, requantize_output=False)
        a, b = r.gemms[0].a.dequantize(), r.gemms[0].w.dequantize()
        np.testing.assert_allclose(r.output, a @ b.T, rtol=1e-13, atol=1e-13)


def _tensors():
    rng = np.random.default_rng(7)
    yield "normal", rng.standard_normal((16, 256)).astype(np.float32)
    yield "student-t(2)", (rng.standard_t(2, (16, 256)) * 0.05).astype(np.float32)   # heavy tails, outliers
    yield "wide range", (rng.standard_normal((16, 256)) * np.exp(rng.uniform(-20, 20, (16, 1)))).astype(np.float32)


def _minilm_tensors():
    from workloads.pretrained import linear_weights, load_minilm
    model, _ = need_model(load_minilm)
    w = linear_weights(model)
    return [(name, w[name][:64, :384].astype(np.float32)) for name in list(w)[:3]]


TORCHAO_DIR = pathlib.Path(__file__).resolve().parent.parent / ".torchao"   # where .ci/run installs it


def _torchao(module: str):
    """torchao's module, from ``.torchao/`` (installed apart: beside transformers, transformers would import it
    for every model); skipped where it is not installed, but in CI (VSQSIM_REQUIRE_MODELS) it must be."""
    if TORCHAO_DIR.is_dir() and str(TORCHAO_DIR) not in sys.path:
        sys.path.append(str(TORCHAO_DIR))
    if os.environ.get("VSQSIM_REQUIRE_MODELS"):
        import importlib
        return importlib.import_module(module)
    return pytest.importorskip(module)


TORCHAO_MX = {"mxfp8_e4m3": "float8_e4m3fn", "mxfp8_e5m2": "float8_e5m2", "mxfp6_e2m3": "fp6_e2m3",
              "mxfp6_e3m2": "fp6_e3m2", "mxfp4": "float4_e2m1fn_x2"}


def _torchao_dtype(name):
    import torch
    from torchao.prototype.mx_formats import constants
    attr = TORCHAO_MX[name]
    return getattr(torch, attr) if hasattr(torch, attr) else getattr(constants, "DTYPE_" + attr.upper())


@pytest.mark.parametrize("fmt", list(TORCHAO_MX))
def test_mx_equals_torchao_bit_for_bit(fmt):
    """Scales and decoded elements equal torchao's MXTensor (scale mode FLOOR, the spec's) on random,
    heavy-tailed, wide-range and real MiniLM tensors."""
    torch = pytest.importorskip("torch")
    mx = _torchao("torchao.prototype.mx_formats.mx_tensor")
    for label, x in [*_tensors(), *_minilm_tensors()]:
        t = mx.MXTensor.to_mx(torch.from_numpy(x), _torchao_dtype(fmt), 32)
        theirs = t.dequantize(torch.float32).numpy()
        q = quantize_block(x, fmt)
        ours = q.dequantize().astype(np.float32)
        assert np.array_equal(theirs, ours), (fmt, label, int((theirs != ours).sum()))
        scales = t.scale.float().reshape(q.block_scales.shape).numpy()
        assert np.array_equal(scales, q.block_scales.astype(np.float32)), (fmt, label)


def test_nvfp4_equals_torchao_codes_given_the_tensor_scale():
    """With the rules' tensor scale amax / (6 * 448), torchao's NVFP4 block scales (E4M3) and element codes
    (E2M1) equal ours; without one, torchao is one-level (a named deviation)."""
    torch = pytest.importorskip("torch")
    nv = _torchao("torchao.prototype.mx_formats.nvfp4_tensor")
    kernels = _torchao("torchao.prototype.mx_formats.kernels")
    for label, x in [*_tensors(), *_minilm_tensors()]:
        q = quantize_block(x, "nvfp4")
        ts = torch.tensor(float(np.abs(x).max()) / (6 * 448), dtype=torch.float32)
        scales, packed = nv.nvfp4_quantize(torch.from_numpy(x), 16, ts)
        elements = kernels.f4_unpacked_to_f32(kernels.unpack_uint4(packed)).reshape(x.shape).numpy()
        theirs = scales.float().numpy()
        # deviation: torchao clamps a block scale to at least E4M3's smallest normal 2^-6 (the rules let it
        # round down, to a subnormal or 0); everywhere else scales and element codes are equal
        normal = q.block_scales >= 2.0 ** -6
        assert np.array_equal(theirs[normal], q.block_scales[normal].astype(np.float32)), label
        assert np.all(theirs[~normal] == 2.0 ** -6), label
        same = np.repeat(normal, 16, axis=-1)[..., :x.shape[-1]]
        assert np.array_equal(elements[same], q.values[same].astype(np.float32)), label
        one_level, _ = nv.nvfp4_quantize(torch.from_numpy(x), 16, None)
        assert not np.array_equal(one_level.float().numpy(), q.block_scales.astype(np.float32)), label
