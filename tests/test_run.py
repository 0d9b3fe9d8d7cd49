"""run.py: the whole pipeline from the command line; stable JSON; one-line errors with status 2."""
import json
import subprocess
import sys

import pytest

import run

SMALL = ["--workload", "gemm:48x128x64", "--arch", "6/6/4/4,R=4"]


def _run(args, tmp_path=None):
    return subprocess.run([sys.executable, "run.py", *args], capture_output=True, text=True, timeout=600)


def test_json_schema_and_determinism(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    outputs = ["--json", str(a), "--csv", str(tmp_path / "l.csv"), "--plot", str(tmp_path / "p.png")]
    assert run.main(SMALL + outputs) == 0
    assert run.main(SMALL + ["--json", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()          # same command and seed, same JSON
    r = json.loads(a.read_text())
    assert set(r) >= {"workload", "arch", "hardware", "totals", "accuracy", "layers", "ops"}
    assert set(r["totals"]) >= {"macs", "cycles", "utilization", "energy_fj_per_op", "energy_norm", "area_mm2",
                                "area_norm", "perf_per_area_norm"}
    assert set(r["accuracy"]) >= {"metric", "kind", "value"} and r["accuracy"]["kind"] == "fidelity"
    assert r["totals"]["macs"] == 48 * 128 * 64 and len(r["layers"]) == 1
    layer = r["layers"][0]
    assert {"name", "kind", "macs", "cycles", "energy_pj"} <= set(layer) and layer["gated"] is not None
    assert (tmp_path / "l.csv").read_text().startswith("name,kind,")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    c = tmp_path / "c.json"
    assert run.main(SMALL + ["--json", str(c), "--seed", "1"]) == 0
    assert json.loads(c.read_text())["accuracy"] != r["accuracy"]  # the seed changes the tensors


def test_timing_only_network_summary(capsys):
    assert run.main(["--workload", "digits-cnn", "--arch", "4/4U/4/6", "--timing-only"]) == 0
    out = capsys.readouterr().out
    assert "digits-cnn at 4/4U/4/6" in out and "not measured (--timing-only)" in out and "per layer" in out


def test_digits_cnn_real_accuracy_through_the_tlm(tmp_path):
    p = tmp_path / "d.json"
    assert run.main(["--workload", "digits-cnn", "--arch", "8/8/-/-", "--json", str(p)]) == 0
    acc = json.loads(p.read_text())["accuracy"]
    assert acc["kind"] == "task" and acc["metric"] == "top-1 accuracy"
    assert abs(acc["value"] - acc["float_value"]) <= 0.02 and acc["value"] > 0.9


@pytest.mark.parametrize("args, words", [
    (["--arch", "4/8/x/1"], "--arch: weight (ws) scale 'x'"),
    (["--arch", "4/8/6"], "four fields"),
    (["--workload", "bert-huge"], "known: bert-base"),
    (["--hw", "nope"], "magnet16"),
    (["--seq", "0"], "--seq must be a positive integer"),
    (["--scale-product", "x"], "scale-product rounding"),
])
def test_bad_arguments_exit_2_with_one_line(args, words):
    p = _run(args)
    assert p.returncode == 2
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and words in lines[0], p.stderr


def test_help_explains_each_option():
    p = _run(["--help"])
    assert p.returncode == 0
    for opt in ("--workload", "--arch", "--seq", "--batch", "--hw", "--scale-product", "--timing-only",
                "--checkpoint", "--json", "--csv", "--plot", "--seed"):
        assert opt in p.stdout


def test_known_workloads_are_the_registered_ones():
    """run.py lists the workloads without importing torch (fast --help); the list must stay the registry's."""
    from workloads.models import WORKLOADS
    assert run.KNOWN == tuple(WORKLOADS)
