"""digits-cnn: trained by the project, deterministic, cached, with a real held-out accuracy."""
import torch

from workloads import digits


def test_train_cache_and_accuracy(tmp_path, monkeypatch):
    monkeypatch.setenv("VSQSIM_CACHE", str(tmp_path))
    model = digits.load_digits_cnn()                       # trains and caches
    cached = list(tmp_path.glob("digits_cnn_*.pt"))
    assert len(cached) == 1 and not list(tmp_path.glob("*.tmp"))
    again = digits.load_digits_cnn()                       # loads the cache
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    acc = digits.evaluate_float(again)
    assert acc > 0.95
    _, _, xte, yte = digits.load_digits_split()
    assert xte.shape == (360, 1, 8, 8) and len(yte) == 360 and 0 <= xte.min() and xte.max() <= 1


def test_recipe_changes_the_cache_key(tmp_path, monkeypatch):
    monkeypatch.setenv("VSQSIM_CACHE", str(tmp_path))
    a = digits._cache_path(digits.RECIPE)
    b = digits._cache_path({**digits.RECIPE, "epochs": 1})
    assert a != b and a.parent == tmp_path
