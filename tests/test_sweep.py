"""Design-space sweeps: Table 8, the store, Pareto fronts, plots."""
import pandas as pd
import pytest

from studies.store import ResultStore
from studies.sweep import design_point, pareto_front, plot_design_space, sweep, table8_archs
from tlm import load_hardware
from vsquant import QuantConfig


def test_table8_space():
    archs = table8_archs()
    assert len(archs) == 576 and len(set(archs)) == 576
    assert "8/8/-/-" in archs and "4/8/6/10" in archs and "3/3/10/10" in archs
    for a in archs:
        QuantConfig.parse(a)
    assert all("U/" in a for a in table8_archs(unsigned_activations=True))


def test_sweep_stores_each_point_and_resumes(tmp_path):
    archs = ["8/8/-/-", "4/4/4/6", "6/8/6/-"]
    db = tmp_path / "s.sqlite"
    df = sweep("digits-cnn", archs, store=str(db), scheduler="serial")
    assert list(df["arch"]) == archs and len(df) == 3
    base = df.set_index("arch").loc["8/8/-/-"]
    assert base["energy_norm"] == pytest.approx(1.0) and base["area_norm"] == pytest.approx(1.0)
    lower = df.set_index("arch").loc["4/4/4/6"]
    assert lower["area_norm"] < 1 and lower["energy_norm"] < 1 and lower["perf_per_area_norm"] > 1
    with ResultStore(db) as st:
        assert len(st) == 3
        st.put({"workload": "digits-cnn", "arch": "8/8/-/-", "hw": "magnet16",
                "hw_hash": load_hardware("magnet16").content_hash(), "seq": None}, {"marker": 1})
    again = sweep("digits-cnn", archs, store=str(db), scheduler="serial")
    assert again.set_index("arch").loc["8/8/-/-", "marker"] == 1       # from the store, not recomputed


def test_the_python_api_shows_progress_unless_told_not_to(tmp_path, capsys):
    archs = ["8/8/-/-", "4/4/4/6"]
    sweep("digits-cnn", archs, store=str(tmp_path / "p.sqlite"), scheduler="processes", workers=1)
    err = capsys.readouterr().err    # not a terminal: a line per stage and the last count
    assert "sweep: capture and 8/8/-/- baseline of digits-cnn" in err and "sweep: 2 of 2 points" in err
    seen = []
    sweep("digits-cnn", archs, store=str(tmp_path / "q.sqlite"), scheduler="serial", progress=False)
    sweep("digits-cnn", archs, store=str(tmp_path / "r.sqlite"), scheduler="serial",
          progress=lambda d, n: seen.append((d, n)))
    assert capsys.readouterr().err == "" and seen[-1] == (2, 2)


def test_processes_give_the_same_points(tmp_path):
    archs = ["8/8/-/-", "4/8/6/10"]
    a = sweep("digits-cnn", archs, store=str(tmp_path / "a.sqlite"), scheduler="serial")
    b = sweep("digits-cnn", archs, store=str(tmp_path / "b.sqlite"), scheduler="processes", workers=2)
    pd.testing.assert_frame_equal(a, b)
    assert design_point({"workload": "digits-cnn", "arch": "4/8/6/10", "hw": "magnet16", "seq": None}) == \
        b.drop(columns=["workload", "arch", "hw", "hw_hash", "seq"]).iloc[1].to_dict()


def test_pareto_front():
    df = pd.DataFrame({"arch": list("abcde"), "energy_norm": [1.0, 0.5, 0.6, 0.4, 0.9],
                       "perf_per_area_norm": [1.0, 1.5, 1.4, 1.2, 1.6], "band": [0, 0, 1, 1, 1]})
    assert list(pareto_front(df)["arch"]) == ["b", "d", "e"]
    assert sorted(pareto_front(df, by="band")["arch"]) == ["b", "c", "d", "e"]


def test_plot_design_space(tmp_path):
    df = pd.DataFrame({"arch": ["8/8/-/-", "4/4/4/6"], "energy_norm": [1.0, 0.7], "perf_per_area_norm": [1.0, 1.6],
                       "band": [">75%", ">74%"]})
    p = plot_design_space(df, tmp_path / "f.png", color="band", title="t")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG" and str(p).endswith("f.png")


def test_sweep_with_accuracy_and_bands(tmp_path):
    from studies.sweep import accuracy_bands
    df = sweep("digits-cnn", ["8/8/-/-", "4/4U/4/6"], store=str(tmp_path / "a.sqlite"), scheduler="serial",
               accuracy=True)
    assert set(df["accuracy_kind"]) == {"task"} and (df["accuracy"] > 0.9).all()
    assert accuracy_bands([0.76, 0.745, 0.70, None], (0.74, 0.75)) == [">75.0%", ">74.0%", "below", "below"]


def test_sweep_command_on_a_dask_cluster(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    from studies.sweep import main
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        rc = main(["--workload", "digits-cnn", "--archs", "8/8/-/-,4/8/6/10", "--store", str(tmp_path / "d.sqlite"),
                   "--scheduler", c.scheduler_address, "--csv", str(tmp_path / "d.csv"),
                   "--plot", str(tmp_path / "d.png")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "energy_norm" in out and "digits-cnn" in out
    df = pd.read_csv(tmp_path / "d.csv")
    local = sweep("digits-cnn", ["8/8/-/-", "4/8/6/10"], store=str(tmp_path / "l.sqlite"), scheduler="serial")
    assert list(df["energy_norm"]) == pytest.approx(list(local["energy_norm"]), rel=1e-12)
    assert (tmp_path / "d.png").exists()
    with pytest.raises(SystemExit) as e:
        main(["--workload", "digits-cnn", "--archs", "4/8/x/1", "--store", str(tmp_path / "e.sqlite")])
    assert e.value.code == 2


def test_a_sequence_length_no_workload_takes_is_refused(tmp_path):
    from studies.sweep import sweep
    with pytest.raises(ValueError, match="seq=64: none of the workloads resnet18 takes a sequence length"):
        sweep(["resnet18"], ["8/8/-/-"], seq=64, store=str(tmp_path / "s.sqlite"), progress=False)
