"""digits-cnn: trained by the project, shipped with it (hash-checked), with a real held-out accuracy."""
import pytest
import torch

from workloads import digits


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_shipped_weights_load_checked_and_accurate():
    model = digits.load_digits_cnn()
    assert digits.evaluate_float(model) == pytest.approx(0.9722, abs=5e-5)     # 350 of 360 held-out images
    _, _, xte, yte = digits.load_digits_split()
    assert xte.shape == (360, 1, 8, 8) and len(yte) == 360 and 0 <= xte.min() and xte.max() <= 1


def test_damaged_shipped_weights_are_refused(tmp_path, monkeypatch):
    bad = tmp_path / "digits_cnn.pt"
    bad.write_bytes(digits.SHIPPED_PATH.read_bytes()[:-10] + b"0123456789")
    monkeypatch.setattr(digits, "SHIPPED_PATH", bad)
    with pytest.raises(digits.DigitsWeightsError, match="damaged"):
        digits.load_digits_cnn()


def test_retrain_caches_with_a_hash_and_rebuilds_a_damaged_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VSQSIM_CACHE", str(tmp_path))
    model = digits.load_digits_cnn(retrain=True)                 # trains (one thread) and caches
    cached = list(tmp_path.glob("digits_cnn_*.pt"))
    assert len(cached) == 1 and (cached[0].parent / (cached[0].name + ".sha256")).is_file()
    assert not list(tmp_path.glob("*.tmp"))
    assert digits.evaluate_float(model) > 0.95                   # same recipe: as good as the shipped network
    recipe = digits.RECIPE
    # a damaged cache is not trusted: it is trained again
    calls = []
    monkeypatch.setattr(digits, "train_digits_cnn", lambda r=recipe, log=None: calls.append(1) or model)
    cached[0].write_bytes(b"garbage")
    again = digits.load_digits_cnn(recipe, retrain=True)
    assert calls == [1] and _same(again, model)
    assert _same(digits.load_digits_cnn(recipe, retrain=True), model) and calls == [1]   # valid cache: reused


def test_unwritable_cache_fails_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("VSQSIM_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(digits, "train_digits_cnn", lambda *a, **k: pytest.fail("trained before checking the cache"))
    with pytest.raises(digits.DigitsWeightsError, match="VSQSIM_CACHE"):
        digits.load_digits_cnn(retrain=True)


def test_recipe_changes_the_cache_key(tmp_path, monkeypatch):
    monkeypatch.setenv("VSQSIM_CACHE", str(tmp_path))
    a = digits._cache_path(digits.RECIPE)
    b = digits._cache_path({**digits.RECIPE, "epochs": 1})
    assert a != b and a.parent == tmp_path


def test_the_workload_owns_its_metric_calibration_and_options():
    """get_workload returns a Workload: model, inputs, info, metric key, calibration inputs and options; it
    unpacks as (model, inputs, info)."""
    from workloads.metrics import METRICS
    from workloads.models import DIGITS_CALIB_IMAGES, Workload, get_workload
    wl = get_workload("digits-cnn", batch=10)
    assert isinstance(wl, Workload) and wl.metric == "top1" and wl.options == {"batch": 10}
    model, (x,), info = wl
    assert model is wl.model and x.shape[0] == 10 and len(info["labels"]) == 10
    (xc,) = wl.calibration_inputs()
    assert xc.shape == (DIGITS_CALIB_IMAGES,) + tuple(x.shape[1:])
    assert not any((xc[:1] == x).all(dim=(1, 2, 3)))            # calibration images are not the held-out ones
    layer = get_workload("gemm:4x16x8")
    assert layer.metric == "cosine" and layer.options == {}
    with pytest.raises(ValueError, match="has no calibration set; workloads with one: digits-cnn"):
        layer.calibration_inputs()
    with pytest.raises(ValueError, match="unknown metric 'accuracy'; metrics: " + ", ".join(METRICS)):
        Workload("x", model, (x,), {}, "accuracy")
