"""Whole networks through the TLM: BERT-base and ResNet50 equal the vsquant reference layer by layer."""
import numpy as np
import pytest
import torch

from mapping.backends import reference_backend
from mapping.capture import capture
from mapping.interpret import QuantInterpreter
from mapping.lower import lower
from mapping.network import simulate_numerics, simulate_timing
from tlm import load_hardware
from workloads.models import get_workload


@pytest.fixture(scope="module")
def hw():
    return load_hardware("magnet16")


def _compare(cap, arch, hw):
    ref = QuantInterpreter(cap, reference_backend(arch))
    out_ref = ref.forward()
    run = simulate_numerics(cap, arch, hw)
    assert list(run.layer_outputs) == list(ref.layer_outputs)
    for name, y in ref.layer_outputs.items():
        assert torch.equal(run.layer_outputs[name], y), name
    return run, out_ref


def test_bert_base_seq128_tlm_equals_reference_layer_by_layer(hw):
    torch.manual_seed(0)
    model, inputs, _ = get_workload("bert-base", seq=128)
    cap = capture(model.double(), inputs)
    run, out_ref = _compare(cap, "4/8/6/10", hw)
    S, H, FF, L = 128, 768, 3072, 12
    assert len(run.layers) == L * 8 + 1                     # Q, K, V, O, FFN1, FFN2, QK^T, AV per layer + pooler
    assert run.macs == L * (4 * S * H * H + 2 * S * H * FF + 2 * S * S * H) + H * H
    assert run.cycles > 0 and 0 < run.utilization <= 1
    # the network output through the TLM is the reference network's output
    out = run.output
    last_ref = out_ref["last_hidden_state"] if isinstance(out_ref, dict) else out_ref[0]
    last = out["last_hidden_state"] if isinstance(out, dict) else out[0]
    assert torch.equal(last, last_ref)


def test_resnet50_4_4u_4_6_tlm_equals_reference(hw):
    torch.manual_seed(0)
    model, inputs, _ = get_workload("resnet50")
    cap = capture(model.double(), tuple(t.double() for t in inputs))
    run, _ = _compare(cap, "4/4U/4/6", hw)
    assert len(run.layers) == 54
    assert abs(run.macs - 4.09e9) / 4.09e9 < 0.01
    gated = sum(r.gated for _, r in run.layers)
    assert gated > 0  # zero-padding pixels and all-zero vectors after ReLU carry scale 0


def test_timing_only_matches_numerics_cycles(hw):
    model, inputs, _ = get_workload("bert-base", seq=32)
    cap = capture(model.double(), inputs)
    timing = simulate_timing(lower(cap), "4/8/6/10", hw)
    numerics = simulate_numerics(cap, "4/8/6/10", hw)
    assert [r.cycles for _, r in timing.layers] == [r.cycles for _, r in numerics.layers]
    # BERT-base at 32 tokens, counted by hand: per encoder layer Q, K, V and the output projection
    # (4 x 32x768x768), scores and context for 12 heads (2 x 12 x 32x64x32), the FFN (2 x 32x768x3072); the pooler
    per_layer = 4 * 32 * 768 * 768 + 2 * 12 * 32 * 64 * 32 + 2 * 32 * 768 * 3072
    assert timing.macs == numerics.macs == 12 * per_layer + 768 * 768
    table = numerics.layer_table()
    assert list(table.columns[:4]) == ["name", "kind", "M", "K"] and len(table) == len(numerics.layers)
    assert np.all(table["utilization"] <= 1.0)
