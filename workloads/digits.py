"""``digits-cnn``: a small ResNet-style CNN trained by vsqsim on scikit-learn's 8x8 digits.

A real trained network with a real held-out accuracy, small enough to run end to end through
the transaction-level accelerator. Training is seeded and deterministic on the CPU (about 10 s);
the weights are cached (``$VSQSIM_CACHE`` or ``~/.cache/vsqsim``) keyed by the training recipe,
so the same network comes back every time. Data: ``sklearn.datasets.load_digits`` (1797 images
of 8x8, 16 grey levels, shipped with scikit-learn), a stratified 80/20 split with a fixed seed.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

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


def _cache_path(recipe: dict) -> Path:
    root = cache_root()
    tag = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return root / f"digits_cnn_{tag}.pt"


def train_digits_cnn(recipe: dict = RECIPE, log=None) -> DigitsCNN:
    """Train from scratch (deterministic for a recipe)."""
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


def load_digits_cnn(recipe: dict = RECIPE, *, retrain: bool = False) -> DigitsCNN:
    """The trained network: from the cache, or trained now and cached."""
    path = _cache_path(recipe)
    model = DigitsCNN(recipe["width"])
    if path.exists() and not retrain:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    model = train_digits_cnn(recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)   # atomic: a killed run never leaves a half-written cache
    return model


def top1(logits, labels) -> float:
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


def evaluate_float(model: DigitsCNN, recipe: dict = RECIPE) -> float:
    """Held-out top-1 accuracy of the fp32 network."""
    _, _, xte, yte = load_digits_split(recipe)
    with torch.no_grad():
        return top1(model(torch.from_numpy(xte)).numpy(), yte)
