"""Hostile inputs, one table: each gives one clear error naming what is wrong (or a correct result), never a
traceback from deep inside and never silently wrong numbers.

The command-line rows run ``run.main`` in-process (the subprocess round trip is tested in test_cli_errors.py)
and check exit status 2, one line on stderr that contains the expected words, and nothing on stdout."""
from __future__ import annotations

import numpy as np
import pytest

import run
import vsquant as vq
from tlm import load_hardware

TINY = load_hardware("tiny")


def _yaml(tmp_path, text: str) -> str:
    p = tmp_path / "hw.yaml"
    p.write_text(text)
    return str(p)


def _hw_text(**changes) -> str:
    """The tiny preset as YAML text with top-level or ``pe.`` fields changed (None: the field removed)."""
    import yaml
    data = load_hardware("tiny").to_dict()
    for key, value in changes.items():
        where, name = (data["pe"], key[3:]) if key.startswith("pe_") else (data, key)
        if value is None:
            where.pop(name)
        else:
            where[name] = value
    return yaml.safe_dump(data)


# (case id, argv (a callable of tmp_path for files), words the one error line must contain)
CLI_CASES = [
    ("arch-empty", ["--arch", ""], ["--arch"]),
    ("arch-three-fields", ["--arch", "4/8/6"], ["--arch", "W/A"]),
    ("arch-five-fields", ["--arch", "4/8/6/10/2"], ["--arch"]),
    ("arch-bits-zero", ["--arch", "0/8/-/-"], ["--arch", "0"]),
    ("arch-bits-huge", ["--arch", "33/8/-/-"], ["--arch", "33"]),
    ("arch-letters", ["--arch", "x/8/-/-"], ["--arch"]),
    ("arch-bad-scale", ["--arch", "4/8/fp7/-"], ["--arch", "fp7"]),
    ("arch-R-zero", ["--arch", "4/8/6/10,R=0"], ["--arch", "R"]),
    ("arch-V-zero", ["--arch", "4/8/6/10,V=0"], ["--arch", "V"]),
    ("arch-unknown-option", ["--arch", "4/8/6/10,Q=3"], ["--arch", "Q"]),
    ("seq-zero", ["--workload", "bert-base", "--seq", "0"], ["--seq", "positive"]),
    ("batch-negative", ["--workload", "bert-base", "--batch", "-2"], ["--batch", "positive"]),
    ("seq-beyond-positions", ["--workload", "bert-base", "--seq", "100000", "--timing-only"], ["seq", "512"]),
    ("seq-on-a-layer", ["--workload", "gemm:8x16x16", "--seq", "4"], ["seq", "gemm:8x16x16"]),
    ("gemm-zero", ["--workload", "gemm:0x16x16"], ["positive"]),
    ("gemm-malformed", ["--workload", "gemm:16x16"], ["gemm:MxKxN"]),
    ("conv-kernel-too-large", ["--workload", "conv:1x3x4x4,8x7x7"], ["kernel", "padded input"]),
    ("conv-groups-not-dividing", ["--workload", "conv:1x6x8x8,8x3x3,g=4"], ["groups"]),
    ("gemm-too-many-tiles", ["--workload", "gemm:40000x40000x40000", "--timing-only"], ["tile transactions"]),
    ("gemm-too-large-for-memory", ["--workload", "gemm:40000x40000x40000"], ["GiB", "--timing-only"]),
    ("accumulator-overflow", ["--workload", "gemm:8x64x16", "--arch", "16/16/16/16"], ["accumulat"]),
    ("hw-unknown-preset", ["--hw", "nosuchchip"], ["--hw", "magnet16"]),
    ("hw-missing-key", lambda t: ["--hw", _yaml(t, _hw_text(num_pes=None))], ["--hw", "num_pes"]),
    ("hw-missing-pe-key", lambda t: ["--hw", _yaml(t, _hw_text(pe_lanes=None))], ["--hw", "lanes"]),
    ("hw-zero-pes", lambda t: ["--hw", _yaml(t, _hw_text(num_pes=0))], ["--hw", "num_pes"]),
    ("hw-negative-buffer", lambda t: ["--hw", _yaml(t, _hw_text(pe_weight_buffer_bits=-8))],
     ["--hw", "weight_buffer_bits"]),
    ("hw-string-size", lambda t: ["--hw", _yaml(t, _hw_text(dram_latency="soon"))], ["--hw", "dram_latency"]),
    ("hw-unknown-key", lambda t: ["--hw", _yaml(t, _hw_text(sram_magic=3))], ["--hw", "sram_magic"]),
    ("hw-not-yaml", lambda t: ["--hw", _yaml(t, "num_pes: [1, 2\n")], ["--hw", "YAML"]),
    ("hw-buffers-too-small", lambda t: ["--workload", "gemm:8x64x16", "--timing-only", "--hw",
                                         _yaml(t, _hw_text(pe_weight_buffer_bits=64))],
     ["weight buffer (64 bits) is too small"]),
]


@pytest.mark.parametrize("argv,words", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_command_line_hostile_input_is_one_clear_line(argv, words, tmp_path, capsys):
    argv = argv(tmp_path) if callable(argv) else argv
    with pytest.raises(SystemExit) as e:
        raise SystemExit(run.main(argv))
    out, err = capsys.readouterr()
    assert e.value.code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("vsqsim: ")]   # stage lines aside
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]
    assert out == ""


V16 = np.linspace(-1, 1, 16)
# (case id, call, the exception type, words its message contains); None: a correct result is checked below
API_CASES = [
    ("per-vector-nan", lambda: vq.quantize_per_vector(np.where(V16 > 0.5, np.nan, V16)[None], 4), ValueError,
     ["non-finite", "NaN"]),
    ("per-vector-inf", lambda: vq.quantize_per_vector(np.where(V16 > 0.5, np.inf, V16)[None], 4), ValueError,
     ["non-finite"]),
    ("per-channel-nan", lambda: vq.quantize_per_channel(np.array([[1.0, np.nan]]), 4), ValueError, ["non-finite"]),
    ("per-tensor-minus-inf", lambda: vq.quantize_per_tensor(np.array([1.0, -np.inf]), 8), ValueError,
     ["non-finite"]),
    ("two-level-nan", lambda: vq.quantize_two_level(np.where(V16 > 0, np.nan, V16)[None], 4, 6), ValueError,
     ["non-finite"]),
    ("per-vector-empty", lambda: vq.quantize_per_vector(np.zeros((0, 16)), 4), ValueError, ["empty", "(0, 16)"]),
    ("per-tensor-empty", lambda: vq.quantize_per_tensor(np.zeros(0), 8), ValueError, ["empty"]),
    ("linear-empty", lambda: vq.linear(np.zeros((0, 16)), np.ones((4, 16)), None, "4/8/6/10"), ValueError,
     ["empty"]),
    ("linear-shape", lambda: vq.linear(np.zeros((2, 16)), np.ones((4, 15)), None, "4/8/6/10"), ValueError,
     ["in_features=15"]),
    ("fp32-scales-overflow", lambda: vq.quantize_per_vector(np.full((2, 16), 1e300), 4, scale_format="fp32"),
     vq.quantize.ScaleRangeError, ["overflow fp32"]),
    ("fp32-scales-underflow", lambda: vq.quantize_per_vector(np.full((2, 16), 1e-310), 4, scale_format="fp32"),
     vq.quantize.ScaleRangeError, ["below the smallest fp32"]),
    ("bits-zero", lambda: vq.quantize_per_vector(np.ones((2, 16)), 0), ValueError, ["bits", "[2, 16]"]),
    ("qmax-one-bit-signed", lambda: vq.qmax(1), ValueError, ["bits", ">= 2"]),
    ("string-tensor", lambda: vq.quantize_per_tensor(np.array(["a", "b"]), 8), TypeError, ["numeric"]),
    ("sqnr-nan", lambda: vq.sqnr_db(np.array([1.0, np.nan]), np.ones(2)), ValueError, ["non-finite"]),
    ("sqnr-shapes", lambda: vq.sqnr_db(np.ones(3), np.ones(2)), ValueError, ["shape"]),
    ("config-unknown-scale", lambda: vq.QuantConfig.parse("4/8/int3x/-"), ValueError, ["int3x"]),
]


@pytest.mark.parametrize("call,exc,words", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_vsquant_hostile_input_is_a_clear_error(call, exc, words):
    with pytest.raises(exc) as e:
        call()
    msg = str(e.value)
    assert all(w in msg for w in words), msg


def test_extreme_but_valid_inputs_give_correct_numbers():
    huge = np.full((2, 16), 1e300)            # float64 coarse scales hold it: exact at the top of the range
    qt = vq.quantize_two_level(huge, 4, 6)
    np.testing.assert_allclose(qt.dequantize(), huge, rtol=1e-12)
    assert vq.sqnr_db(huge, huge * (1 + 1e-3)) == pytest.approx(60.0, abs=1e-6)   # no overflow in the squares
    zeros = vq.quantize_per_vector(np.zeros((3, 16)), 4)
    assert not zeros.dequantize().any()
    one = vq.linear(np.ones((1, 1)), np.full((1, 1), 0.5), None, "8/8/-/-")     # a 1x1x1 GEMM
    assert one.output.shape == (1, 1) and one.output[0, 0] == pytest.approx(0.5, rel=1e-2)
    assert vq.sqnr_db(np.zeros(4), np.zeros(4)) == float("inf")
