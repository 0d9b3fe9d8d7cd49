"""Results that stay true under faults, edits and odd hardware (issue 19): each case here was silently wrong
or hung before; the signal and orphan cases are in test_studies_store.py, the numerics API's in
test_validation.py, the checkpoint's in test_pretrained.py."""
import json
import sqlite3

import numpy as np
import pytest

import run
from mapping.tiling import choose_tiling, simulated_cycles
from studies.pipeline import run_design_point
from studies.store import ResultStore, StoreError
from studies.sweep import sweep
from tlm import baseline_config, datapath_config, load_hardware
from tlm.transactions import GemmShape
from vsquant import QuantConfig

GEMM = "gemm:64x64x64"


# --- 3: the store key covers the hardware's content and the code's version --------------------------------

def test_an_edited_hardware_file_is_simulated_afresh(tmp_path):
    """The store used to key a point by the --hw path: an edited YAML got the old cycles back."""
    yaml_path = tmp_path / "hw.yaml"
    yaml_path.write_text(load_hardware("tiny").to_yaml())
    db = str(tmp_path / "s.sqlite")
    first = sweep(GEMM, ["8/8/-/-"], hw=str(yaml_path), store=db, scheduler="serial")
    yaml_path.write_text(load_hardware("tiny").with_(num_pes=1, dram_bits_per_cycle=4).to_yaml())
    edited = sweep(GEMM, ["8/8/-/-"], hw=str(yaml_path), store=db, scheduler="serial")
    fresh = sweep(GEMM, ["8/8/-/-"], hw=str(yaml_path), store=str(tmp_path / "fresh.sqlite"), scheduler="serial")
    assert int(edited["cycles"][0]) == int(fresh["cycles"][0]) > 2 * int(first["cycles"][0])
    with ResultStore(db) as s:
        assert len(s) == 2          # the old row stays, under its own key


def test_a_row_of_other_code_is_never_served(tmp_path):
    with ResultStore(tmp_path / "r.sqlite", version="old") as s:
        s.put({"a": 1}, {"v": 1})
        assert {"a": 1} in s
    with ResultStore(tmp_path / "r.sqlite", version="new") as s:
        assert {"a": 1} not in s and s.get({"a": 1}) is None and len(s) == 0
    with ResultStore(tmp_path / "r.sqlite") as s:    # the default version is a hash of the sources
        assert s.version != "old" and len(s.version) == 16 and {"a": 1} not in s


# --- 10: a damaged store is refused with one line ----------------------------------------------------------

def _filled(path, n=30):
    with ResultStore(path) as s:
        for i in range(n):
            s.put({"i": i}, {"square": i * i, "pad": "x" * 200})
    con = sqlite3.connect(path)           # fold the WAL into the file, as a finished sweep leaves it
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def test_a_changed_result_fails_its_checksum(tmp_path):
    db = tmp_path / "r.sqlite"
    _filled(db)
    data = db.read_bytes()
    assert data.count(b'"square": 25,') == 1
    db.write_bytes(data.replace(b'"square": 25,', b'"square": 26,'))
    with pytest.raises(StoreError, match="1 row.* fail their checksum; move it away or delete it"):
        ResultStore(db)


def test_random_bytes_in_the_middle_are_refused(tmp_path):
    db = tmp_path / "r.sqlite"
    _filled(db)
    data = bytearray(db.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 512] = np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged") as e:
        ResultStore(db)
    assert "\n" not in str(e.value)


def test_a_file_that_is_not_a_store_is_refused(tmp_path, capsys):
    from studies.sweep import main
    bad = tmp_path / "notes.sqlite"
    bad.write_text("these are my notes, not a database\n" * 100)
    assert main(["--workload", GEMM, "--archs", "8/8/-/-", "--store", str(bad), "--scheduler", "serial"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "StoreError" in err[0] and "notes.sqlite" in err[0]


def test_stored_results_keep_the_column_order_of_fresh_ones(tmp_path):
    """The PTQ long CSV's columns came out sorted when its rows came from the store."""
    with ResultStore(tmp_path / "r.sqlite") as s:
        fresh = {"top1": 0.9, "kl": 0.1, "config": "4/8/6/10", "calibration": "dynamic", "seconds": 1.0}
        s.put({"p": 1}, fresh)
        assert list(s.get({"p": 1})) == list(fresh)


# --- 4: any vector size the hardware declares, the simba preset included ----------------------------------

def test_simba_runs_end_to_end_with_the_baseline_at_its_own_V(tmp_path, capsys):
    simba = load_hardware("simba")
    assert simba.vector_size == 8
    assert baseline_config(simba) == QuantConfig.parse("8/8/-/-,V=8")
    assert datapath_config("4/8/6/10", simba).vector_size == 8
    out = tmp_path / "s.json"
    assert run.main(["--workload", GEMM, "--hw", "simba", "--arch", "4/8/6/10", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["hardware"]["vector_size"] == 8 and r["arch"] == "4/8/6/10,V=8"
    assert run.main(["--workload", GEMM, "--hw", "simba", "--arch", "8/8/-/-,V=8", "--timing-only"]) == 0
    df = sweep(GEMM, ["8/8/-/-", "4/8/6/10"], hw="simba", store=str(tmp_path / "s.sqlite"), scheduler="serial")
    assert list(df["arch"]) == ["8/8/-/-,V=8", "4/8/6/10,V=8"] and df["energy_norm"].iloc[0] == pytest.approx(1.0)
    assert df["energy_norm"].iloc[1] == pytest.approx(r["totals"]["energy_norm"], rel=1e-9)   # as run.py says


def test_a_V_the_hardware_does_not_have_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        run.main(["--workload", GEMM, "--hw", "simba", "--arch", "8/8/-/-,V=16"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "V=16 but hardware simba has V=8" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("v", ["7", "100000", "0", "12"])
def test_the_parser_accepts_only_sizes_the_datapath_can_have(v):
    with pytest.raises(ValueError, match="power of two"):
        QuantConfig.parse(f"4/8/6/10,V={v}")


# --- 6: the bound is the resource that made the layer longer, by measured time -----------------------------

@pytest.mark.parametrize("starve, hw_name, workload, bound", [
    ({"noc_bits_per_cycle": 1}, "magnet16", GEMM, "noc"),
    ({"dram_bits_per_cycle": 1}, "magnet16", GEMM, "dram"),
    ({"dram_latency": 10 ** 9}, "magnet16", GEMM, "dram"),
    ({"global_buffer_bits_per_cycle": 1}, "magnet16", GEMM, "global_buffer"),
    ({}, "magnet16", GEMM, "dram"),                        # 64^3 on 256 PEs waits for its first tiles
    ({"ppu_elements_per_cycle": 1}, "tiny", "gemm:256x16x256", "ppu"),
    ({}, "tiny", "gemm:256x256x256", "compute"),
])
def test_the_bound_names_the_starved_resource(starve, hw_name, workload, bound):
    hw = load_hardware(hw_name).with_(**starve)
    layer = run_design_point(workload, "8/8/-/-", hw=hw, timing_only=True)["layers"][0]
    assert layer["bottleneck"] == bound, layer


# --- 7: adding PEs never slows a layer down --------------------------------------------------------------------

POWERS = [2 ** k for k in range(13)]                 # 1 .. 4096 PEs
OTHERS = [3, 5, 6, 7, 12, 24, 48, 100, 384, 1000, 3000, 4095]


@pytest.mark.parametrize("shape", [GemmShape(64, 64, 64), GemmShape(100, 200, 48), GemmShape(7, 32, 700)])
def test_more_pes_never_make_a_layer_slower(shape):
    """The mapper used to fall back to one PE when no exact split fit: a 64^3 GEMM took 558 cycles on 256 PEs
    and 2,095 on 4096. Now doubling the PEs, or adding PEs to a power of two, never slows a layer down."""
    base = load_hardware("magnet16")
    cfg = baseline_config(base)

    def cycles(p):
        hw = base.with_(num_pes=p)
        return simulated_cycles(shape, cfg, hw, choose_tiling(shape, cfg, hw))
    on_powers = [cycles(p) for p in POWERS]
    worse = [(POWERS[i], POWERS[i + 1], a, b)
             for i, (a, b) in enumerate(zip(on_powers, on_powers[1:], strict=False)) if b > a]
    assert not worse, worse
    assert on_powers[-1] < on_powers[0]
    for p in OTHERS:
        below = 1 << (p.bit_length() - 1)
        assert cycles(p) <= on_powers[POWERS.index(below)], (p, below)
    if shape == GemmShape(64, 64, 64):
        assert on_powers[POWERS.index(4096)] <= on_powers[POWERS.index(256)] < 558


# --- 8: output paths are checked before any work -------------------------------------------------------------

@pytest.mark.parametrize("flag, name, words", [
    ("--plot", None, "is a directory"),
    ("--plot", "energy", "has no file suffix"),
    ("--json", "no/such/dir/r.json", "does not exist"),
    ("--graph", "g.txt", "must end in .graphml, .json"),
    ("--csv", None, "is a directory"),
])
def test_an_output_path_that_cannot_be_written_is_one_line(tmp_path, capsys, flag, name, words):
    target = tmp_path if name is None else tmp_path / name
    with pytest.raises(SystemExit) as e:
        run.main(["--workload", GEMM, flag, str(target)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert list(tmp_path.parent.glob(tmp_path.name + ".png")) == []      # nothing written beside it


# --- 10: all-zero outputs, standard JSON, messages that say what is wrong ------------------------------------

ZERO_MODEL = """
import torch
def build():
    m = torch.nn.Linear(32, 16)
    torch.nn.init.zeros_(m.weight); torch.nn.init.zeros_(m.bias)
    return m, (torch.randn(4, 32),)
def no_mac():
    return torch.nn.ReLU(), (torch.randn(4, 32),)
"""


def test_an_all_zero_model_reports_null_with_a_reason(tmp_path, capsys):
    f = tmp_path / "zero.py"
    f.write_text(ZERO_MODEL)
    out = tmp_path / "z.json"
    assert run.main(["--workload", f"module:{f}:build", "--arch", "8/8/-/-", "--json", str(out)]) == 0
    text = out.read_text()
    acc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))["accuracy"]
    assert acc["value"] is None and acc["cosine"] is None and "all zero" in acc["reason"]
    assert "undefined: the float model's output is all zero" in capsys.readouterr().out


def test_misleading_messages_now_say_what_is_wrong(tmp_path, capsys):
    f = tmp_path / "zero.py"
    f.write_text(ZERO_MODEL)
    assert run.main(["--workload", f"module:{f}:no_mac"]) == 2
    assert "has no MAC layer (linear, conv2d or matmul)" in capsys.readouterr().err
    assert run.main(["--workload", f"module:{tmp_path}:build"]) == 2
    assert "is a directory; give the Python file" in capsys.readouterr().err
