"""The persistent cache of timing-only runs (studies.cache): a cached run gives the same report as an uncached one,
a damaged entry is rebuilt and never used, keys follow the code and the workload's contents, and a repeated
timing-only run.py imports no torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studies import cache
from studies.pipeline import json_safe, run_design_point

ROOT = Path(__file__).resolve().parent.parent
MODULE = '''
import torch
import torch.nn as nn

def build():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, {n}))
    return net, torch.randn(2, 3, 8, 8)
'''


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VSQSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VSQSIM_NO_CACHE", raising=False)
    monkeypatch.setitem(cache._state, "broken", False)
    return tmp_path / "cache" / "runs"


def _module(tmp_path, n=10) -> str:
    f = tmp_path / "net.py"
    f.write_text(MODULE.format(n=n))
    return f"module:{f}:build"


def _run(workload, arch="4/8/6/10", **kw):
    stats: dict = {}
    rep = run_design_point(workload, arch, timing_only=True, use_cache=True, stats=stats, **kw)
    return json.dumps(json_safe(rep), sort_keys=True), stats["cache"]


def test_cached_run_is_the_uncached_run(cache_dir, tmp_path):
    wl = _module(tmp_path)
    plain = json.dumps(json_safe(run_design_point(wl, "4/8/6/10", timing_only=True)), sort_keys=True)
    first, s1 = _run(wl)
    second, s2 = _run(wl)
    assert s1 == {"lowering": "miss", "4/8/6/10": "miss", "8/8/-/-": "miss"}
    assert s2 == {"lowering": "hit", "4/8/6/10": "hit", "8/8/-/-": "hit"}
    assert first == second == plain
    assert len(list(cache_dir.glob("*.pkl"))) == 3          # the lowering, the design point, the baseline
    # a new datapath on the cached workload: the lowering and the baseline come from the cache
    other, s3 = _run(wl, "4/4/4/6")
    assert s3 == {"lowering": "hit", "4/4/4/6": "miss", "8/8/-/-": "hit"}
    assert other == json.dumps(json_safe(run_design_point(wl, "4/4/4/6", timing_only=True)), sort_keys=True)


def test_a_gemm_layer_and_a_named_network_cached_alike(cache_dir):
    for wl in ("gemm:64x256x128", "conv:1x16x8x8,32x3x3,p=1"):
        plain = json.dumps(json_safe(run_design_point(wl, "6/8/-/10", timing_only=True)), sort_keys=True)
        assert _run(wl, "6/8/-/10")[0] == _run(wl, "6/8/-/10")[0] == plain


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "header", "wrong type"])
def test_damaged_entries_are_rebuilt_never_used(cache_dir, tmp_path, damage):
    import pickle
    wl = _module(tmp_path)
    good, _ = _run(wl)
    for f in cache_dir.glob("*.pkl"):
        data = f.read_bytes()
        if damage == "flip":
            data = data[:-40] + bytes(b ^ 0xFF for b in data[-40:])
        elif damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "empty":
            data = b""
        elif damage == "header":
            data = b"something else\n" + data[len(cache.MAGIC):]
        else:   # a sound entry of the wrong type (as a stale format would be)
            import hashlib
            payload = pickle.dumps({"not": "a lowering"})
            data = cache.MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        f.write_bytes(data)
    again, stats = _run(wl)
    assert stats == {"lowering": "miss", "4/8/6/10": "miss", "8/8/-/-": "miss"}
    assert again == good
    assert _run(wl)[1]["lowering"] == "hit"   # rebuilt entries are sound


def test_keys_follow_the_code_and_the_workload_file(cache_dir, tmp_path, monkeypatch):
    wl = _module(tmp_path, n=10)
    _run(wl)
    _module(tmp_path, n=12)              # the user's module changed: its lowering is a new entry
    rep, stats = _run(wl)
    assert stats["lowering"] == "miss" and '"N": 12' in rep
    monkeypatch.setitem(cache._state, "code", "another version of the simulator")
    assert _run(wl)[1] == {"lowering": "miss", "4/8/6/10": "miss", "8/8/-/-": "miss"}
    assert len(cache.code_version()) > 10
    monkeypatch.delitem(cache._state, "code")
    assert cache.code_version() == cache.code_version() != "another version of the simulator"


def test_off_by_environment_and_on_an_unwritable_directory(cache_dir, tmp_path, monkeypatch, capsys):
    wl = _module(tmp_path)
    monkeypatch.setenv("VSQSIM_NO_CACHE", "1")
    assert _run(wl)[1] == {"lowering": "off"}
    assert not cache_dir.exists()
    monkeypatch.delenv("VSQSIM_NO_CACHE")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("VSQSIM_CACHE", str(blocker))
    rep, _ = _run(wl)
    assert "is not writable" in capsys.readouterr().err and '"cycles"' in rep
    assert not cache.enabled()                  # said once, then off for the process


def test_repeated_timing_run_imports_no_torch(tmp_path):
    env = {**os.environ, "VSQSIM_CACHE": str(tmp_path / "c")}
    env.pop("VSQSIM_NO_CACHE", None)
    probe = ("import sys, run; rc = run.main(['--workload', 'gemm:64x256x128', '--timing-only', '--verbose']); "
             "print('torch imported:', 'torch' in sys.modules); sys.exit(rc)")
    outs = [subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    for o in outs:
        assert o.returncode == 0, o.stderr
    assert "cache: lowering miss" in outs[0].stdout and "torch imported: True" in outs[0].stdout
    assert "cache: lowering hit; layer runs: 4/8/6/10 hit, 8/8/-/- hit" in outs[1].stdout
    assert "torch imported: False" in outs[1].stdout
    assert "simulate 8/8/-/-" in outs[1].stdout
    # the two runs print the same report (the wall times aside)
    strip = [o.stdout.split("\n  (")[0] for o in outs]
    assert strip[0] == strip[1]
