"""Results store and point runner: each finished point is kept, a killed sweep resumes, no point twice."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from studies.layer_report import layer_point
from studies.runner import run_points
from studies.store import ResultStore, point_key

POINTS = [{"workload": "gemm:32x64x48", "arch": a, "seed": 0} for a in ("8/8/-/-", "4/8/6/10", "6/6/4/4,R=4")]


def test_store_round_trip_and_key_order(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as s:
        s.put({"a": 1, "b": "x"}, {"v": 2.5, "nested": {"k": 1}}, seconds=0.1)
        assert {"b": "x", "a": 1} in s and len(s) == 1
        assert s.get({"b": "x", "a": 1}) == {"v": 2.5, "nested": {"k": 1}}
        assert s.get({"a": 2}) is None
        df = s.to_frame()
        assert list(df["v"]) == [2.5] and "nested" not in df
    assert point_key({"a": 1, "b": 2}) == point_key({"b": 2, "a": 1}) != point_key({"a": 1, "b": 3})
    with ResultStore(tmp_path / "r.sqlite") as s:  # persisted
        assert len(s) == 1


@pytest.mark.parametrize("scheduler", ["serial", "processes"])
def test_run_points_matches_direct_calls(tmp_path, scheduler):
    with ResultStore(tmp_path / f"{scheduler}.sqlite") as s:
        out = run_points(layer_point, POINTS, s, scheduler=scheduler, workers=2)
        assert out == [layer_point(p) for p in POINTS]
        assert len(s) == 3


def test_finished_points_are_not_recomputed(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as s:
        s.put(POINTS[0], {"marker": "already here"})
        seen = []
        run_points(layer_point, POINTS, s, scheduler="serial", progress=lambda d, n: seen.append((d, n)))
        assert s.get(POINTS[0]) == {"marker": "already here"}
        assert seen[0] == (1, 3) and seen[-1] == (3, 3)


def test_killed_sweep_loses_nothing_and_resumes(tmp_path):
    """A sweep killed with SIGKILL mid-way keeps every finished point; the rerun computes only the rest."""
    db = tmp_path / "kill.sqlite"
    log = tmp_path / "computed.log"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from studies.store import ResultStore
        from studies.runner import run_points
        def fn(p):
            with open({str(log)!r}, "a") as f:
                f.write(str(p["i"]) + "\\n")
            time.sleep(0.3)
            return {{"square": p["i"] ** 2}}
        points = [{{"i": i}} for i in range(40)]
        with ResultStore({str(db)!r}) as s:
            out = run_points(fn, points, s, scheduler="serial")
        print("finished", len(out))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 30
    while time.time() < deadline:
        if log.exists() and len(log.read_text().split()) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with ResultStore(db) as s:
        kept = len(s)
        assert kept >= 3
        for point, result in s.items():
            assert result == {"square": point["i"] ** 2}
    first = log.read_text().split()
    done = subprocess.run([sys.executable, "-c", script.replace("range(40)", "range(6)")], capture_output=True,
                          text=True, timeout=60)
    assert "finished 6" in done.stdout
    rerun = log.read_text().split()[len(first):]
    assert len(rerun) == max(0, 6 - kept)  # only the points the killed run had not finished
    with ResultStore(db) as s:
        assert all(s.get({"i": i}) == {"square": i * i} for i in range(6))


def test_dask_local_cluster_gives_the_same_results(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        with distributed.Client(c) as client, ResultStore(tmp_path / "d.sqlite") as s:
            out = run_points(layer_point, POINTS, s, scheduler=client)
    assert out == [layer_point(p) for p in POINTS]


_SLOW_SWEEP = """
import os, sys, time
sys.path.insert(0, {cwd!r})
from studies.store import ResultStore
from studies.runner import run_points, SweepInterrupted
def fn(p):
    with open({log!r}, "a") as f:
        f.write(f"{{p['i']}} {{os.getpid()}}\\n")
    time.sleep(0.4)
    return {{"square": p["i"] ** 2}}
if __name__ == "__main__":
    with ResultStore({db!r}) as s:
        try:
            run_points(fn, [{{"i": i}} for i in range(200)], s, scheduler="processes", workers=2)
        except SweepInterrupted as e:
            print(e, file=sys.stderr)
            sys.exit(130)
"""


def _start_slow_sweep(tmp_path):
    db, log = tmp_path / "sig.sqlite", tmp_path / "sig.log"
    script = tmp_path / "slow_sweep.py"
    script.write_text(_SLOW_SWEEP.format(cwd=os.getcwd(), log=str(log), db=str(db)))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 6):
        time.sleep(0.05)
    assert log.exists(), "the sweep never started"
    return proc, db, log


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie (dead, not yet reaped by init) is not alive
        return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGINT, signal.SIGINT), (signal.SIGTERM,)])
def test_signal_stops_a_sweep_cleanly(tmp_path, signals):
    """The first signal stops handing out points, keeps the finished ones and stops the workers; a second
    Ctrl-C does not deadlock; the sweep exits with one line, and resumes from the store."""
    proc, db, log = _start_slow_sweep(tmp_path)
    for s in signals:
        proc.send_signal(s)
        time.sleep(0.05)
    t0 = time.time()
    _, err = proc.communicate(timeout=30)
    assert time.time() - t0 < 10
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "points are finished and kept in" in lines[0], err
    started = len(log.read_text().splitlines())
    time.sleep(1.0)
    assert len(log.read_text().splitlines()) == started      # nothing computes after the exit
    assert started < 60                                       # it stopped handing out points
    workers = {int(line.split()[1]) for line in log.read_text().splitlines()}
    assert not any(_alive(w) for w in workers)
    with ResultStore(db) as s:
        kept = list(s.items())
    assert len(kept) >= 3 and all(r == {"square": p["i"] ** 2} for p, r in kept)
    assert f" {len(kept)} of 200 points" in lines[0]


def test_workers_die_with_a_killed_sweep(tmp_path):
    proc, db, log = _start_slow_sweep(tmp_path)
    workers = {int(line.split()[1]) for line in log.read_text().splitlines()}
    assert len(workers) == 2
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a worker outlived its killed parent"


def test_two_sweeps_writing_one_store_at_once_lose_and_duplicate_nothing(tmp_path):
    """Two `python -m studies.sweep` processes on the same store at the same time, with overlapping points:
    the store ends with exactly the union (one row per point, every row's checksum valid), and both print
    the points they asked for."""
    db = tmp_path / "shared.sqlite"
    archs = [["8/8/-/-", "4/8/6/10", "6/6/4/4", "4/4/4/6"], ["4/4/4/6", "6/6/4/4", "6/8/6/-", "4/8/-/-"]]
    procs = [subprocess.Popen([sys.executable, "-m", "studies.sweep", "--workload", "gemm:64x64x64", "--archs",
                               ",".join(a), "--store", str(db), "--scheduler", "serial"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in archs]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    with ResultStore(db) as st:                        # opening verifies every row's checksum
        rows = list(st.items())
        assert len(st) == len(rows) == 6               # the union of 4 + 4 points with 2 in common
        assert {p["arch"] for p, _ in rows} == {a for group in archs for a in group}
