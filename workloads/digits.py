"""``digits-cnn``: a small ResNet-style CNN trained by vsqsim on scikit-learn's 8x8 digits.

A real trained network with a real held-out accuracy, small enough to run end to end through
the transaction-level accelerator. Data: ``sklearn.datasets.load_digits`` (1797 images of 8x8,
16 grey levels, shipped with scikit-learn), a stratified 80/20 split with a fixed seed.

The weights the project uses ship with it (``workloads/data/digits_cnn.pt``, 448 KB, checked
against :data:`SHIPPED_SHA256` when loaded), trained once with :data:`RECIPE` by
``python -m workloads.digits --retrain``. Why shipped and not trained on first use: float32
training is seeded and deterministic on one machine, but the order of the floating-point sums
in its kernels depends on the CPU's vector instructions and the thread count (seen here: AVX-512
and AVX2 builds of the same recipe, or 1 and 2 threads, give different networks, 0.969-0.972
held-out top-1), and 40 epochs amplify an ulp into a different network. Every machine must
measure the same network, so the numbers in the README and the tests hold everywhere.
``load_digits_cnn(retrain=True)`` trains the recipe on this machine (one thread, ~20 s) into
the cache (``$VSQSIM_CACHE`` or ``~/.cache/vsqsim``), with a hash beside it that is checked on
every load.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .metrics import top1
from .pretrained import cache_root

RECIPE = {"seed": 0, "epochs": 40, "lr": 3e-3, "batch": 64, "width": 32, "weight_decay": 1e-4, "split_seed": 0,
          "test_fraction": 0.2, "version": 1}


class ResidualBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.conv1(x))
        return self.relu(x + self.conv2(y))


class DigitsCNN(nn.Module):
    """stem conv 3x3 (1->w), two residual blocks, a strided conv (w->2w), global average pool, fc."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.relu = nn.ReLU()
        self.block1 = ResidualBlock(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.block2 = ResidualBlock(2 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x):
        x = self.relu(self.stem(x))
        x = self.block1(x)
        x = self.relu(self.down(x))
        x = self.block2(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def load_digits_split(recipe: dict = RECIPE):
    """(x_train, y_train, x_test, y_test): images (N, 1, 8, 8) scaled to [0, 1], stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=recipe["test_fraction"],
                                          random_state=recipe["split_seed"], stratify=d.target)
    return xtr, ytr, xte, yte


SHIPPED_PATH = Path(__file__).parent / "data" / "digits_cnn.pt"
SHIPPED_SHA256 = "ac04ac07adda7189c04fabbca5d781ffb3e4fe65f6e1390ebd0f467aa2b7c047"


def _cache_path(recipe: dict) -> Path:
    root = cache_root()
    tag = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return root / f"digits_cnn_{tag}.pt"


def train_digits_cnn(recipe: dict = RECIPE, log=None) -> DigitsCNN:
    """Train from scratch on one thread: the same network for a recipe on machines with the same CPU
    vector instructions (see the module docstring for why not across all machines)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(recipe, log)
    finally:
        torch.set_num_threads(threads)


def _train(recipe: dict, log) -> DigitsCNN:
    torch.manual_seed(recipe["seed"])
    xtr, ytr, _, _ = load_digits_split(recipe)
    model = DigitsCNN(recipe["width"])
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe["epochs"])
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    g = torch.Generator().manual_seed(recipe["seed"])
    for epoch in range(recipe["epochs"]):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), recipe["batch"]):
            idx = perm[i:i + recipe["batch"]]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if log:
            log(epoch, float(loss))
    return model.eval()


class DigitsWeightsError(RuntimeError):
    """The digits CNN's weights file is missing or damaged."""


def _load_checked(path: Path, sha256: str, width: int, what: str) -> DigitsCNN:
    from .pretrained import file_sha256
    if not path.is_file():
        raise DigitsWeightsError(f"{what} {str(path)!r} is missing; reinstall vsqsim or run "
                                 "`python -m workloads.digits --retrain`")
    got = file_sha256(path)
    if got != sha256:
        raise DigitsWeightsError(f"{what} {str(path)!r} is damaged (SHA-256 {got[:12]}..., expected "
                                 f"{sha256[:12]}...); delete it and run `python -m workloads.digits --retrain`")
    model = DigitsCNN(width)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def _save_atomic(model: DigitsCNN, path: Path) -> str:
    """Write the state dict atomically (a killed run never leaves a half-written file); returns its SHA-256."""
    from .pretrained import file_sha256
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise DigitsWeightsError(f"cannot write the digits CNN to {str(path)!r}: {e.strerror or e}; set "
                                 "VSQSIM_CACHE to a writable directory") from e
    return file_sha256(path)


def load_digits_cnn(recipe: dict = RECIPE, *, retrain: bool = False) -> DigitsCNN:
    """The trained network: the shipped weights (hash-checked), or with ``retrain`` the recipe trained on
    this machine and cached (reused while its hash file matches; a damaged cache is retrained)."""
    if not retrain and recipe == RECIPE:
        return _load_checked(SHIPPED_PATH, SHIPPED_SHA256, recipe["width"], "the shipped digits CNN")
    path = _cache_path(recipe)
    digest = path.with_name(path.name + ".sha256")
    if path.is_file() and digest.is_file():
        try:
            return _load_checked(path, digest.read_text().strip(), recipe["width"], "the cached digits CNN")
        except DigitsWeightsError:
            pass   # damaged: train again
    _check_writable(path.parent)
    model = train_digits_cnn(recipe)
    sha = _save_atomic(model, path)
    digest.write_text(sha + "\n")
    return model


def _check_writable(directory: Path) -> None:
    """Fail before training, not after, when the cache cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DigitsWeightsError(f"the cache directory {str(directory)!r} is not writable ({e.strerror or e}); set "
                                 "VSQSIM_CACHE to a writable directory") from e


def evaluate_float(model: DigitsCNN, recipe: dict = RECIPE) -> float:
    """Held-out top-1 accuracy of the fp32 network."""
    _, _, xte, yte = load_digits_split(recipe)
    with torch.no_grad():
        return top1(model(torch.from_numpy(xte)), yte)


def main(argv=None) -> int:
    """``python -m workloads.digits --retrain``: train the recipe here; ``--ship`` writes the shipped file."""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m workloads.digits", description=main.__doc__)
    ap.add_argument("--retrain", action="store_true", help="train RECIPE on this machine (one thread, ~20 s)")
    ap.add_argument("--ship", action="store_true", help="write the result to workloads/data/digits_cnn.pt "
                                                        "(then update SHIPPED_SHA256)")
    args = ap.parse_args(argv)
    model = train_digits_cnn() if args.retrain else load_digits_cnn()
    print(f"held-out top-1 {evaluate_float(model):.4f}")
    if args.ship:
        print(f"wrote {SHIPPED_PATH}, SHA-256 {_save_atomic(model, SHIPPED_PATH)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
