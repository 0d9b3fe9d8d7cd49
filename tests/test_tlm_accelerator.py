"""The transaction-level accelerator: bit-exact against vsquant on every layer kind, cycles, bottlenecks."""
import numpy as np
import pytest

from mapping.tasks import conv2d_task, linear_task, linear_timing_task, matmul_task
from tlm.accelerator import Accelerator
from tlm.hardware import load_hardware
from tlm.vector_mac_unit import PIPELINE_DEPTH
from vsquant import QuantConfig, conv2d, linear, matmul

ARCHS = ["8/8/-/-", "4/8/6/10", "4/4U/4/6", "6/6/4/4,R=4",
         "nvfp4", "mxfp4/mxfp8_e4m3", "mxfp8_e4m3", "mxint8", "mxfp4/8"]   # block formats: MX and NVFP4


@pytest.fixture(scope="module")
def tiny():
    return load_hardware("tiny")


def _same_quantized(q, ref):
    np.testing.assert_array_equal(q.values, ref.values)
    if ref.scales is None:
        assert q.scales is None
    else:
        np.testing.assert_array_equal(q.scales, ref.scales)
    np.testing.assert_array_equal(np.broadcast_to(q.gamma, ref.gamma.shape), ref.gamma)


def _check(run, ref):
    """Output, its requantization and the data-gating count equal the reference bit for bit."""
    assert run.output.shape == ref.output.shape
    np.testing.assert_array_equal(run.output, ref.output)
    _same_quantized(run.output_q, ref.output_q)
    assert run.gated == ref.gated
    a = run.actions
    assert a["vector_mac.dot"] == ref.accumulations
    assert a["accumulator.add"] + a["accumulator.gated"] == ref.accumulations


def _inputs(arch, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.lognormal(0, 1.0, size=shape)
    return np.abs(x) if QuantConfig.parse(arch).act_unsigned else x


@pytest.mark.parametrize("arch", ARCHS)
def test_gemm_bit_exact(tiny, arch):
    rng = np.random.default_rng(1)
    x = _inputs(arch, (2, 23, 70), 1)
    w = rng.standard_normal((48, 70))
    b = rng.standard_normal(48)
    cfg = QuantConfig.parse(arch)
    kw = dict(activation="relu", out_unsigned=cfg.act_unsigned)
    run = Accelerator(tiny, cfg).run_layer(linear_task(x, w, b, cfg, tiny, **kw))
    _check(run, linear(x, w, b, cfg, **kw))


CONVS = {
    "1x1": dict(C=32, K=48, R=1, stride=1, padding=0, groups=1, H=6),
    "3x3s2": dict(C=24, K=32, R=3, stride=2, padding=1, groups=1, H=9),
    "depthwise": dict(C=32, K=32, R=3, stride=1, padding=1, groups=32, H=6),
}


@pytest.mark.parametrize("name", CONVS)
@pytest.mark.parametrize("arch", ARCHS)
def test_conv_bit_exact(tiny, name, arch):
    c = CONVS[name]
    rng = np.random.default_rng(len(name))
    x = _inputs(arch, (2, c["C"], c["H"], c["H"]), 2)
    w = rng.standard_normal((c["K"], c["C"] // c["groups"], c["R"], c["R"])) * 0.3
    b = rng.standard_normal(c["K"])
    cfg = QuantConfig.parse(arch)
    kw = dict(stride=c["stride"], padding=c["padding"], groups=c["groups"])
    out = dict(activation="relu", out_unsigned=cfg.act_unsigned)
    run = Accelerator(tiny, cfg).run_layer(conv2d_task(x, w, b, cfg, tiny, **kw, **out))
    _check(run, conv2d(x, w, b, cfg, **kw, **out))


@pytest.mark.parametrize("arch", ARCHS)
def test_attention_matmul_bit_exact(tiny, arch):
    rng = np.random.default_rng(7)
    q = rng.standard_normal((2, 3, 12, 32))
    k = rng.standard_normal((2, 3, 32, 12))
    cfg = QuantConfig.parse(arch)
    run = Accelerator(tiny, cfg).run_layer(matmul_task(q, k, cfg, tiny))
    _check(run, matmul(q, k, cfg))
    # A V: the probabilities are non-negative, unsigned when the config has unsigned activations
    p = np.abs(rng.standard_normal((2, 3, 12, 12)))
    v = rng.standard_normal((2, 3, 12, 32))
    kw = dict(a_unsigned=cfg.act_unsigned)
    _check(Accelerator(tiny, cfg).run_layer(matmul_task(p, v, cfg, tiny, **kw)), matmul(p, v, cfg, **kw))


def test_fp_scales_bit_exact_with_k_tiles(tiny):
    """fp per-vector scales accumulate in float: exact only because K-tiles run in ascending order."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 600))   # 38 vectors: more than one vector tile on the tiny preset
    w = rng.standard_normal((32, 600))
    task = linear_task(x, w, None, "4/8/fp16/fp16", tiny)
    assert task.tilings[0].j_tile < 38
    _check(Accelerator(tiny, "4/8/fp16/fp16").run_layer(task), linear(x, w, None, "4/8/fp16/fp16"))


def test_gating_counted_from_real_scale_products(tiny):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 256)) * rng.lognormal(0, 2.0, size=(16, 256))
    w = rng.standard_normal((32, 256)) * rng.lognormal(0, 2.0, size=(32, 256))
    run = Accelerator(tiny, "6/6/4/4,R=4").run_layer(linear_task(x, w, None, "6/6/4/4,R=4", tiny))
    ref = linear(x, w, None, "6/6/4/4,R=4")
    assert run.gated == ref.gated > 0


def _fast(hw):
    """The same array with memories so fast that nothing can stall."""
    return hw.with_(dram_bits_per_cycle=1 << 30, global_buffer_bits_per_cycle=1 << 30, noc_bits_per_cycle=1 << 30,
                    dram_latency=0, noc_hop_latency=0)


@pytest.mark.parametrize("arch", ["8/8/-/-", "4/8/6/10"])
def test_cycles_equal_ideal_plus_fill_when_nothing_stalls(arch):
    hw = _fast(load_hardware("magnet16"))
    M, K, N = 256, 512, 1024  # divides evenly over 16 PEs x 16 lanes x V=16
    run = Accelerator(hw, arch).run_layer(linear_timing_task(M, K, N, arch, hw))
    ideal = M * K * N // (16 * 16 * 16)
    assert run.ideal_cycles == ideal
    assert all(s == 0 for s in run.stall_cycles)
    assert set(run.compute_cycles) == {ideal + PIPELINE_DEPTH}
    assert run.cycles == ideal + run.fill_cycles
    # the fill, part by part: the first weight tile through the buffer's write ports (plus at most one
    # cycle per channel per PE of queueing), the pipeline, the last block's PPU, the requantization pass
    t = hw.pe
    tiling = linear_timing_task(M, K, N, arch, hw).tilings[0]
    first_w = -(-(tiling.n_tile * tiling.j_tile) // t.weight_buffer_ports)
    last_rows = (M - 1) % tiling.m_tile + 1       # the last row tile may be shorter
    ppu_block = -(-last_rows * tiling.n_tile // t.ppu_elements_per_cycle)
    requant = M * (N // 16) // t.ppu_elements_per_cycle
    assert run.requant_cycles == requant
    assert first_w + PIPELINE_DEPTH + ppu_block + requant <= run.fill_cycles
    assert run.fill_cycles <= first_w + PIPELINE_DEPTH + ppu_block + requant + 4 * 2 * 16 + 2
    assert run.bottleneck == "compute"
    assert run.utilization > 0.9


@pytest.mark.parametrize("slow, name", [("dram_bits_per_cycle", "dram"), ("noc_bits_per_cycle", "noc")])
def test_bandwidth_bottleneck_is_named(slow, name):
    hw = load_hardware("magnet16")
    starved = hw.with_(**{slow: 8})
    fast = Accelerator(hw, "8/8/-/-").run_layer(linear_timing_task(384, 768, 3072, "8/8/-/-", hw))
    run = Accelerator(starved, "8/8/-/-").run_layer(linear_timing_task(384, 768, 3072, "8/8/-/-", starved))
    assert run.cycles > run.ideal_cycles + run.fill_cycles
    assert run.cycles > 2 * fast.cycles
    assert run.bottleneck == name
    assert max(run.stall_cycles) > 0


def test_lower_precision_moves_fewer_bits():
    """Per-vector 4-bit weights with 6-bit scales move fewer weight bits than 8-bit per-channel."""
    hw = load_hardware("magnet16")
    # 64 rows: the input fits the global buffer, so DRAM reads are the weights, each once
    a = Accelerator(hw, "8/8/-/-").run_layer(linear_timing_task(64, 768, 3072, "8/8/-/-", hw))
    b = Accelerator(hw, "4/8/6/10").run_layer(linear_timing_task(64, 768, 3072, "4/8/6/10", hw))
    assert a.actions["dram.read"] == 3072 * 48 * 16 * 8
    assert b.actions["dram.read"] == 3072 * 48 * (16 * 4 + 6)
    assert b.cycles <= a.cycles
    # with 384 rows the input (384 x 48 vectors) exceeds the 128 KB global buffer and streams from DRAM too
    c = Accelerator(hw, "8/8/-/-").run_layer(linear_timing_task(384, 768, 3072, "8/8/-/-", hw))
    assert c.actions["dram.read"] > 3072 * 48 * 16 * 8


def test_timing_only_counts_equal_numerics_counts(tiny):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((24, 96))
    w = rng.standard_normal((40, 96))
    num = Accelerator(tiny, "4/8/6/10").run_layer(linear_task(x, w, np.zeros(40), "4/8/6/10", tiny))
    tim = Accelerator(tiny, "4/8/6/10").run_layer(linear_timing_task(24, 96, 40, "4/8/6/10", tiny))
    assert num.cycles == tim.cycles
    data_dependent = {"accumulator.add", "accumulator.gated"}
    for action, n in tim.actions.counts.items():
        if action not in data_dependent:
            assert num.actions[action] == n, action
    assert tim.output is None and tim.gated is None


def test_collector_and_buffer_capacities_respected(tiny):
    task = linear_timing_task(100, 1000, 64, "8/8/-/-", tiny)
    t = task.tilings[0]
    wv = tiny.weight_buffer_vectors(8, 0) // 2
    av = tiny.activation_buffer_vectors(8, 0) // 2
    assert t.n_tile * t.j_tile <= wv and t.m_tile * t.j_tile <= av
    assert t.m_tile * t.n_tile <= tiny.pe.accumulation_collector_entries
    # 4/8/6/10 stores more weight vectors per buffer than 8/8/-/-
    assert tiny.weight_buffer_vectors(4, 6) > tiny.weight_buffer_vectors(8, 0)


def test_vector_size_mismatch_is_an_error(tiny):
    with pytest.raises(ValueError, match="V=32"):
        Accelerator(tiny, "4/8/6/10,V=32")


def test_collector_overflow_is_reported_not_wrapped(tiny):
    """A collector with no headroom above the partial-sum width overflows on a long reduction."""
    hw = tiny.with_(accumulator_headroom_bits=0)
    x = np.ones((4, 1024))
    w = np.ones((16, 1024))  # every product 127 * 127, summed over 1024 elements: needs 25 bits
    from vsquant import AccumulatorOverflow
    with pytest.raises(AccumulatorOverflow, match="20-bit collector"):
        Accelerator(hw, "8/8/-/-").run_layer(linear_task(x, w, None, "8/8/-/-", hw))
    ok = Accelerator(tiny, "8/8/-/-").run_layer(linear_task(x, w, None, "8/8/-/-", tiny))  # 8 headroom bits
    assert ok.output[0, 0] == pytest.approx(1024.0)


def test_buffer_too_small_is_a_clear_error(tiny):
    """The message names the sizes that do not fit (it used to say "got 0" for a buffer set to 100 bits)."""
    hw = tiny.with_(weight_buffer_bits=100)
    with pytest.raises(ValueError, match=r"buffers are too small for 8/8/-/-: double buffering needs room for 2 "
                                         r"vectors each, a weight vector is 128 bits .* weight_buffer_bits=100"):
        linear_timing_task(8, 64, 16, "8/8/-/-", hw)


@pytest.mark.parametrize("arch", ["4/8/6/10", "6/6/4/4,R=4", "8/8/-/-"])
def test_replayed_layer_is_bit_identical_to_a_fresh_simulation(tiny, arch):
    """A repeated layer shape reuses the cached timing; outputs, gating and every count stay exact."""
    rng = np.random.default_rng(9)
    cfg = QuantConfig.parse(arch)
    make = [
        lambda: linear_task(rng.standard_normal((20, 96)) * 3, rng.standard_normal((40, 96)),
                            rng.standard_normal(40), cfg, tiny, activation="relu"),
        lambda: conv2d_task(rng.standard_normal((1, 16, 6, 6)), rng.standard_normal((24, 16, 3, 3)), None, cfg,
                            tiny, padding=1),
        lambda: matmul_task(rng.standard_normal((2, 10, 32)), rng.standard_normal((2, 32, 10)), cfg, tiny),
    ]
    for build in make:
        first, second = build(), build()   # same shapes, different data
        acc = Accelerator(tiny, cfg)
        acc.run_layer(first)
        replayed = acc.run_layer(second)
        assert replayed.extra.get("replayed_from")
        fresh = Accelerator(tiny, cfg, replay=False).run_layer(second)
        np.testing.assert_array_equal(replayed.output, fresh.output)
        _same_quantized(replayed.output_q, fresh.output_q)
        assert replayed.gated == fresh.gated
        assert replayed.cycles == fresh.cycles and replayed.stall_cycles == fresh.stall_cycles
        assert dict(replayed.actions.counts) == dict(fresh.actions.counts)


def test_attention_on_a_narrow_weight_port_takes_bit_slices(tiny):
    """At 4/8/6/10 a matmul of two 8-bit activations runs in 2 passes of the 4-bit weight port."""
    rng = np.random.default_rng(10)
    q, k = rng.standard_normal((1, 32, 64)) * 3, rng.standard_normal((1, 64, 32)) * 3
    fast = _fast(tiny)
    mm = Accelerator(fast, "4/8/6/10").run_layer(matmul_task(q, k, "4/8/6/10", fast))
    same = Accelerator(fast, "8/8/6/10").run_layer(matmul_task(q, k, "8/8/6/10", fast))
    assert set(mm.compute_cycles) == {2 * c - PIPELINE_DEPTH for c in same.compute_cycles}
    np.testing.assert_array_equal(mm.output, matmul(q, k, "4/8/6/10").output)
    # long reductions of 8-bit x 8-bit products with 10-bit scales fit the collector (seq 384)
    p, v = np.abs(rng.standard_normal((1, 384, 384))), rng.standard_normal((1, 384, 64)) * 5
    run = Accelerator(tiny, "4/8/6/10").run_layer(matmul_task(p, v, "4/8/6/10", tiny, a_unsigned=False))
    np.testing.assert_array_equal(run.output, matmul(p, v, "4/8/6/10").output)
