"""The bit-serial datapath (PrecisionBatching, arXiv:2003.00822): bit planes, top-k truncation, the TLM's passes
equal the bit-parallel reference bit for bit, cycles scale with the weight bits, equal-area lanes, the cost."""
import numpy as np
import pytest

from costmodels import evaluate, technology
from costmodels.area import equal_area_bit_serial_lanes
from mapping.tasks import conv2d_task, linear_task, linear_timing_task, matmul_task
from tlm.accelerator import Accelerator
from tlm.hardware import list_presets, load_hardware
from vsquant import QuantConfig, conv2d, linear, matmul, quantize_activation, quantize_conv_weight, quantize_weight
from vsquant.bitserial import (
    bit_planes,
    bit_serial_vector_mac,
    from_planes,
    plane_weights,
    top_planes,
    truncate_weight,
)
from vsquant.vector_mac import vector_mac

ARCHS = ["8/8/-/-", "4/8/6/10", "4/4U/4/6", "6/6/4/4,R=4"]


@pytest.fixture(scope="module")
def tiny_bs():
    return load_hardware("tiny").with_datapath("bit-serial")


def test_planes_two_complement_round_trip():
    v = np.arange(-128, 128)
    p = bit_planes(v, 8)
    assert p.shape == (8, 256) and set(np.unique(p)) <= {0, 1}
    np.testing.assert_array_equal(from_planes(p, 8), v)
    assert list(plane_weights(4)) == [1, 2, 4, -8]
    assert list(plane_weights(4, unsigned=True)) == [1, 2, 4, 8]
    u = np.arange(0, 16)
    np.testing.assert_array_equal(from_planes(bit_planes(u, 4, unsigned=True), 4, unsigned=True), u)
    for k in range(1, 9):   # the top k planes are the floor truncation
        np.testing.assert_array_equal(top_planes(v, 8, k), from_planes(np.concatenate(
            [np.zeros((8 - k, 256), np.uint8), p[8 - k:]]), 8))
        np.testing.assert_array_equal(top_planes(v, 8, k), np.floor(v / 2 ** (8 - k)) * 2 ** (8 - k))
    with pytest.raises(ValueError, match="do not fit"):
        bit_planes(np.array([8]), 4)
    with pytest.raises(ValueError, match="planes must be"):
        top_planes(v, 8, 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_bit_serial_mac_equals_parallel(arch):
    rng = np.random.default_rng(0)
    cfg = QuantConfig.parse(arch)
    w = quantize_weight(rng.standard_normal((24, 80)), cfg)
    x = rng.standard_normal((10, 80))
    a = quantize_activation(np.abs(x) if cfg.act_unsigned else x, cfg)
    full = bit_serial_vector_mac(a, w, cfg)
    ref = vector_mac(a, w, cfg)
    np.testing.assert_array_equal(full.acc, ref.acc)
    assert full.gated == ref.gated
    for k in range(1, cfg.weight_bits):
        for mid in (False, True):
            np.testing.assert_array_equal(bit_serial_vector_mac(a, w, cfg, planes=k, midpoint=mid).acc,
                                          vector_mac(a, truncate_weight(w, k, mid), cfg).acc)
    mid = truncate_weight(w, 1, midpoint=True).values - truncate_weight(w, 1).values
    assert np.all(mid == (2 ** (cfg.weight_bits - 1) - 1) / 2)


def test_bit_serial_refuses_float_scales(tiny_bs):
    with pytest.raises(ValueError, match="bit-serial"):
        Accelerator(tiny_bs, "4/8/fp16/fp16")
    with pytest.raises(ValueError, match="needs a bit-serial"):
        Accelerator(load_hardware("tiny"), "8/8/-/-", planes=4)


def _same(run, ref):
    np.testing.assert_array_equal(run.output, ref.output)
    np.testing.assert_array_equal(run.output_q.values, ref.output_q.values)
    assert run.gated == ref.gated


@pytest.mark.parametrize("arch", ARCHS)
def test_tlm_linear_bit_exact(tiny_bs, arch):
    rng = np.random.default_rng(1)
    cfg = QuantConfig.parse(arch)
    x = rng.standard_normal((2, 23, 70))
    x = np.abs(x) if cfg.act_unsigned else x
    w, b = rng.standard_normal((48, 70)), rng.standard_normal(48)
    kw = dict(activation="relu", out_unsigned=cfg.act_unsigned)
    run = Accelerator(tiny_bs, cfg).run_layer(linear_task(x, w, b, cfg, tiny_bs, **kw))
    _same(run, linear(x, w, b, cfg, **kw))
    assert run.actions.widths["vector_mac.dot"]["weight_planes"] == cfg.weight_bits
    # run-time precision: the top k planes of the same stored weights = the reference on the truncated weights
    wq = quantize_weight(w, cfg)
    for k in (1, cfg.weight_bits // 2):
        for mid in (False, True):
            run = Accelerator(tiny_bs, cfg, planes=k, midpoint=mid).run_layer(linear_task(x, wq, b, cfg, tiny_bs,
                                                                                          **kw))
            _same(run, linear(x, truncate_weight(wq, k, mid), b, cfg, **kw))
            assert run.actions.widths["vector_mac.dot"]["weight_planes"] == k
            assert (run.actions["vector_mac.plane_offset"] == run.actions["vector_mac.dot"]) == mid
            assert (run.actions["vector_mac.activation_sum"] == run.actions["activation_buffer.read"]) == mid


@pytest.mark.parametrize("arch", ["8/8/-/-", "4/8/6/10"])
def test_tlm_conv_bit_exact(tiny_bs, arch):
    rng = np.random.default_rng(2)
    cfg = QuantConfig.parse(arch)
    x = rng.standard_normal((2, 24, 9, 9))
    w, b = rng.standard_normal((32, 24, 3, 3)) * 0.3, rng.standard_normal(32)
    kw = dict(stride=2, padding=1)
    _same(Accelerator(tiny_bs, cfg).run_layer(conv2d_task(x, w, b, cfg, tiny_bs, **kw)), conv2d(x, w, b, cfg, **kw))
    wq = truncate_weight(quantize_conv_weight(w, cfg), 3)
    run = Accelerator(tiny_bs, cfg, planes=3).run_layer(conv2d_task(x, w, b, cfg, tiny_bs, **kw,
                                                                    weight_q=quantize_conv_weight(w, cfg)))
    _same(run, conv2d(x, w, b, cfg, **kw, weight_q=wq))


@pytest.mark.parametrize("arch", ["8/8/-/-", "4/4U/4/6"])
def test_tlm_matmul_bit_exact(tiny_bs, arch):
    """An attention matmul's activation operand on the weight port runs all its planes (unsigned: positive top)."""
    rng = np.random.default_rng(7)
    cfg = QuantConfig.parse(arch)
    q, k = rng.standard_normal((2, 12, 32)), rng.standard_normal((2, 32, 12))
    _same(Accelerator(tiny_bs, cfg, planes=2).run_layer(matmul_task(q, k, cfg, tiny_bs)), matmul(q, k, cfg))
    p, v = np.abs(rng.standard_normal((2, 12, 12))), np.abs(rng.standard_normal((2, 12, 32)))
    kw = dict(a_unsigned=cfg.act_unsigned, b_unsigned=cfg.act_unsigned)
    _same(Accelerator(tiny_bs, cfg).run_layer(matmul_task(p, v, cfg, tiny_bs, **kw)), matmul(p, v, cfg, **kw))


def test_cycles_8_bit_weights_twice_4_bit():
    """A compute-bound GEMM: a pass per weight bit, so 8-bit weights take about twice the cycles of 4-bit."""
    hw = load_hardware("magnet16").with_datapath("bit-serial")
    M, K, N = 1024, 1024, 1024        # weights stay resident: compute-bound
    runs = {}
    for arch in ("8/8/-/-", "4/8/-/-"):
        runs[arch] = Accelerator(hw, arch).run_layer(linear_timing_task(M, K, N, arch, hw))
        assert runs[arch].bottleneck == "compute"
    r8, r4 = runs["8/8/-/-"], runs["4/8/-/-"]
    ratio = (r8.cycles - r8.fill_cycles) / (r4.cycles - r4.fill_cycles)
    assert ratio == pytest.approx(2.0, rel=0.02)                  # measured 2.016
    assert r8.cycles / r4.cycles == pytest.approx(2.0, rel=0.05)  # measured 1.93 (the fill is not halved)
    assert max(r8.compute_cycles) - 4 == 2 * (max(r4.compute_cycles) - 4)   # 4: the pipeline depth
    # the same stored 8-bit weights at run-time precision 4 take the 4-bit weights' compute cycles
    r84 = Accelerator(hw, "8/8/-/-", planes=4).run_layer(linear_timing_task(M, K, N, "8/8/-/-", hw))
    assert max(r84.compute_cycles) == max(r4.compute_cycles)


@pytest.mark.parametrize("name", list_presets())
def test_presets_state_equal_area_lanes(name):
    hw = load_hardware(name)
    assert hw.pe.bit_serial_lanes == equal_area_bit_serial_lanes(hw)
    bs = hw.with_datapath("bit-serial")
    assert bs.pe.lanes == hw.pe.bit_serial_lanes and bs.pe.bit_serial
    assert load_hardware(name).to_dict() == hw.to_dict()
    # the most bit-serial lanes whose datapath fits the parallel one's area
    from costmodels import area_breakdown_um2
    t = technology(hw.technology_nm)

    cfg = QuantConfig.parse("8/8/-/-").with_(vector_size=hw.vector_size)

    def area(h):
        return area_breakdown_um2(h, cfg, t)["datapath"]
    assert area(bs) <= area(hw) < area(bs.replace_pe(lanes=bs.pe.lanes + 1))


def test_energy_per_pass_no_multipliers(tiny_bs):
    """A bit-serial dot product costs its passes: fewer planes, less datapath energy; no multiplier priced."""
    hw = tiny_bs
    e = {}
    for k in (2, 4, 8):
        run = Accelerator(hw, "8/8/-/-", planes=k).run_layer(linear_timing_task(64, 256, 48, "8/8/-/-", hw))
        e[k] = evaluate([run], hw, "8/8/-/-").energy_pj["datapath"]
    assert e[2] < e[4] < e[8]
    assert e[8] / e[4] == pytest.approx(2.0, rel=1e-9)


@pytest.mark.parametrize("arch,planes,mid", [("8/8/-/-", None, False), ("8/8/-/-", 3, False), ("8/8/-/-", 3, True),
                                            ("4/8/6/10", 2, True), ("4/4U/4/6", None, False)])
def test_digits_cnn_bit_serial_equals_reference_and_fakequant(arch, planes, mid):
    """The whole digits-cnn through the bit-serial TLM = the vsquant reference = the fake-quant path, on the same
    stored weights at run-time precision ``planes``."""
    import copy

    import torch

    from mapping.backends import FakeQuantBackend, fakequant_backend, reference_backend
    from mapping.capture import capture
    from mapping.interpret import QuantInterpreter
    from mapping.network import simulate_numerics
    from workloads.digits import load_digits_cnn, load_digits_split
    model = load_digits_cnn().double()
    x = torch.from_numpy(load_digits_split()[2][:32]).double()
    cap = capture(copy.deepcopy(model), (x,))
    hw = load_hardware("magnet16").with_datapath("bit-serial")
    tlm = simulate_numerics(cap, arch, hw, planes=planes, midpoint=mid).output
    ref = QuantInterpreter(cap, reference_backend(arch, planes, mid)).forward()
    fq = QuantInterpreter(cap, FakeQuantBackend(arch, planes=planes, midpoint=mid) if planes
                          else fakequant_backend(arch)).forward()
    assert torch.equal(tlm, ref) and torch.equal(fq, ref)
    if planes is None:   # all planes: the bit-parallel TLM's output
        par = simulate_numerics(cap, arch, load_hardware("magnet16")).output
        assert torch.equal(tlm, par)


@pytest.mark.parametrize("workload", ["gemm:64x64x64", "digits-cnn"])
def test_run_py_bit_serial_same_accuracy_as_parallel(tmp_path, workload):
    """run.py --datapath bit-serial: the same outputs (so the same accuracy) as the parallel datapath, W passes
    on the equal-area bit-serial lanes."""
    import json

    import run
    out = {}
    for dp in ("parallel", "bit-serial"):
        path = tmp_path / f"{dp}.json"
        assert run.main(["--workload", workload, "--arch", "8/8/-/-", "--datapath", dp, "--json", str(path)]) == 0
        out[dp] = json.loads(path.read_text())
    par, bs = out["parallel"], out["bit-serial"]
    assert bs["hardware"]["datapath"] == "bit-serial" and bs["hardware"]["lanes"] == 54
    assert par["hardware"]["datapath"] == "parallel" and par["hardware"]["lanes"] == 16
    assert bs["accuracy"]["value"] == par["accuracy"]["value"] is not None
    for k in ("cosine", "sqnr_db"):
        assert bs["accuracy"].get(k) == par["accuracy"].get(k)
    assert bs["totals"]["macs"] == par["totals"]["macs"]


def test_run_py_refuses_bit_serial_float_scales():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "run.py", "--workload", "gemm:64x64x64", "--arch", "4/8/fp16/fp16",
                        "--datapath", "bit-serial"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--arch" in r.stderr and "bit-serial" in r.stderr


def test_datapath_field_checked_and_kept_out_of_parallel_presets():
    hw = load_hardware("tiny")
    with pytest.raises(ValueError, match="pe.datapath must be one of parallel, bit-serial"):
        hw.replace_pe(datapath="serial")
    with pytest.raises(ValueError, match="states no pe.bit_serial_lanes"):
        hw.replace_pe(bit_serial_lanes=0).with_datapath("bit-serial")
    bs = hw.with_datapath("bit-serial")
    assert bs.with_datapath("bit-serial") is bs and "bit-serial lanes" in bs.summary()
    with pytest.raises(ValueError, match="is bit-serial"):
        bs.with_datapath("parallel")
    # a parallel PE without bit_serial_lanes writes no datapath keys (its hash is as before the field existed)
    assert "datapath" not in hw.pe.to_dict() and "datapath" in bs.pe.to_dict()
    assert type(bs).from_dict(bs.to_dict()) == bs


def test_run_py_planes(tmp_path):
    """run.py --planes K: the stored weights' top K planes through the TLM; the accuracy is the fake-quant path's at
    K planes (what studies.precision reports); fewer cycles; refused without a bit-serial datapath."""
    import json
    import subprocess
    import sys

    import run
    from studies.precision import _accuracy
    p = tmp_path / "r.json"
    args = ["--workload", "digits-cnn", "--arch", "8/8/-/-", "--datapath", "bit-serial", "--json", str(p)]
    assert run.main(args + ["--planes", "4", "--midpoint"]) == 0
    r = json.loads(p.read_text())
    assert r["options"]["planes"] == 4 and r["options"]["midpoint"] is True
    assert r["accuracy"]["value"] == _accuracy("digits-cnn", "8/8/-/-", 4, True)["value"]
    cycles = {}
    for k in ("8", "2"):
        assert run.main(args + ["--planes", k, "--timing-only"]) == 0
        cycles[k] = json.loads(p.read_text())["totals"]["cycles"]
    assert cycles["2"] < cycles["8"]
    for bad, why in ((["--planes", "4"], "needs --datapath bit-serial"),
                     (["--datapath", "bit-serial", "--planes", "9"], "must be in [1, 8]"),
                     (["--datapath", "bit-serial", "--midpoint"], "needs --planes")):
        out = subprocess.run([sys.executable, "run.py", "--workload", "gemm:64x64x64", "--arch", "8/8/-/-", *bad],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 2 and why in out.stderr, out.stderr
