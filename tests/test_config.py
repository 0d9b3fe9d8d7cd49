"""QuantConfig: every form in the paper parses, str() round-trips, bad strings say what is wrong."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsquant import QuantConfig, ScaleFormat

PAPER_FORMS = ["8/8/-/-", "6/8/6/-", "6/3/-/4", "4/4U/4/6", "4/8/fp16/fp16", "4/8/fp32/fp32",
               "4/8/6/10", "4/4/4/4", "6/6/4/4", "8/8/6/-", "4/6/4/-", "4/3/4/6", "6/4/-/6"]


@pytest.mark.parametrize("text", PAPER_FORMS)
def test_paper_forms_round_trip(text):
    cfg = QuantConfig.parse(text)
    assert str(cfg) == text
    assert QuantConfig.parse(str(cfg)) == cfg


def test_fields_of_4_8_6_10():
    cfg = QuantConfig.parse("4/8/6/10")
    assert (cfg.weight_bits, cfg.act_bits, cfg.act_unsigned) == (4, 8, False)
    assert cfg.weight_scale == ScaleFormat("int", 6) and cfg.act_scale == ScaleFormat("int", 10)
    assert cfg.vector_size == 16 and cfg.scale_product_bits is None
    assert cfg.full_scale_product_bits == 16
    # Sec. 5: 2N + log2 V dot product, + 2M partial sum (here W + A + log2 V, + ws + as)
    assert cfg.dot_product_bits == 4 + 8 + 4
    assert cfg.partial_sum_bits == 16 + 16
    assert cfg.accumulator_bits(48) == 32 + 6
    # Sec. 4.4: storage overhead M / (V N); N = M = 4, V = 16 -> 4.25 effective bits
    assert QuantConfig.parse("4/4/4/4").weight_storage_bits == pytest.approx(4.25)


def test_unsigned_and_per_channel_forms():
    cfg = QuantConfig.parse("4/4U/4/6")
    assert cfg.act_unsigned and cfg.act_qmax == 15 and cfg.weight_qmax == 7
    base = QuantConfig.parse("8/8/-/-")
    assert base.is_baseline and base.full_scale_product_bits == 0 and base.partial_sum_bits == 8 + 8 + 4
    half = QuantConfig.parse("6/3/-/4")
    assert not half.weight_scale.per_vector and half.act_scale.per_vector and not half.is_baseline
    fp = QuantConfig.parse("4/8/fp16/fp16")
    assert fp.float_scales and not fp.integer_scales and fp.weight_scale.storage_bits == 16


def test_scale_product_rounding_and_vector_size():
    cfg = QuantConfig.parse("4/4/4/4,R=4")
    assert cfg.scale_product_bits == 4 and cfg.scale_product_shift == 4 and cfg.partial_sum_bits == 4 + 4 + 4 + 4
    assert str(cfg) == "4/4/4/4,R=4"
    # Fig. 3 text: for 8/8/6/- a 6-bit rounding is the full width
    assert QuantConfig.parse("8/8/6/-,R=6").scale_product_shift == 0
    assert QuantConfig.parse("6/8/6/-", scale_product=4, vector_size=32) == QuantConfig.parse("6/8/6/-,R=4,V=32")
    assert QuantConfig.parse("6/8/6/-,R=4", scale_product="full").scale_product_bits is None
    assert str(QuantConfig.parse("6/8/6/-,V=32")) == "6/8/6/-,V=32"
    assert str(QuantConfig.parse("4/8/6/10,nonzero,requantize")) == "4/8/6/10,requantize,nonzero"


@pytest.mark.parametrize("text, words", [
    ("8/8/-", ["four fields"]),
    ("8/8/-/-/-", ["four fields"]),
    ("x/8/-/-", ["weight (W)", "[2, 16]"]),
    ("8/9Q/-/-", ["activation (A)", "'U'"]),
    ("1/8/-/-", ["weight (W)"]),
    ("8/8/foo/-", ["weight (ws)", "fp16"]),
    ("8/8/-/0", ["activation (as)", "[1, 16]"]),
    ("4/8/6/fp16", ["mix an integer and a float"]),
    ("4/4/-/-,R=4", ["needs an integer per-vector scale"]),
    ("4/4/4/4,R=0", ["positive"]),
    ("4/4/4/4,V=0", ["V="]),
    ("4/4/4/4,Q=1", ["not allowed", "R=", "V="]),
    ("", ["four fields"]),
])
def test_malformed_strings_name_the_field(text, words):
    with pytest.raises(ValueError) as e:
        QuantConfig.parse(text)
    for w in words:
        assert w in str(e.value)


def test_non_string_rejected():
    with pytest.raises(ValueError, match="string"):
        QuantConfig.parse(4)


_scale = st.one_of(st.just("-"), st.integers(1, 16).map(str), st.sampled_from(["fp16", "fp32"]))


@given(w=st.integers(2, 16), a=st.integers(2, 16), u=st.booleans(), ws=_scale, as_=_scale,
       r=st.one_of(st.none(), st.integers(1, 32)), v=st.sampled_from([1, 2, 8, 16, 32, 64]))
def test_round_trip_property(w, a, u, ws, as_, r, v):
    text = f"{w}/{a}{'U' if u else ''}/{ws}/{as_}"
    if r is not None:
        text += f",R={r}"
    if v != 16:
        text += f",V={v}"
    try:
        cfg = QuantConfig.parse(text)
    except ValueError as e:  # only the documented combinations are refused
        msg = str(e)
        assert ("mix an integer and a float" in msg or "needs an integer per-vector scale" in msg
                or "is wider than the" in msg)
        return
    assert str(cfg) == text
    assert QuantConfig.parse(str(cfg)) == cfg


def test_for_layer_is_the_one_operand_rule():
    cfg = QuantConfig.parse("4/8/6/10,R=8")
    assert cfg.for_layer("linear") is cfg and cfg.for_layer("conv2d") is cfg
    m = cfg.for_layer("matmul")
    assert (m.weight_bits, str(m.weight_scale), m.scale_product_bits) == (8, "10", 8)
    with pytest.raises(ValueError, match="'relu' is not a MAC layer kind; kinds: linear, conv2d, matmul"):
        cfg.for_layer("relu")
